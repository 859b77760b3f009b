"""What made a record: the commit (and whether the tree had changes), the command line, the
processor and the library versions, so that a figure in a document can be traced to the code
and machine that measured it."""
import datetime
import json
import os
import subprocess
import sys

import torch

from .env import processor_description

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def provenance(device=torch.device("cpu")):
    """{commit, dirty, command, processor, python, torch, time} of this process."""
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": None if status is None else bool(status),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "processor": processor_description(device),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(path, result, config=None):
    """Write ``result`` (JSON-serialisable) as a record at ``path``, with its provenance and,
    when given, the merged config it ran with (a CfgNode, kept as its YAML text)."""
    record = {"provenance": provenance(), "result": result}
    if config is not None:
        record["config"] = config.dump()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
    return path


def report_table(headers, rows, *, record="", config=None, setting="", floatfmt=".3f", tables=None):
    """Print a tool's result table (after ``setting``, a line saying what it measured) and, when
    ``record`` names a file, write it there as a record (``write_record``: headers, rows and
    setting, with the provenance and ``config``) that ``benchmarks/tables.py`` can render.
    ``tables`` (name -> (headers, rows)) adds further tables to the record."""
    from tabulate import tabulate

    if setting:
        print(setting)
    print(tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=floatfmt))
    if record:
        result = {"setting": setting, "headers": list(headers), "rows": [list(r) for r in rows]}
        if tables:
            result["tables"] = {name: {"headers": list(h), "rows": [list(r) for r in rs]} for name, (h, rs) in tables.items()}
        write_record(record, result, config)
