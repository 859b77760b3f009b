"""docs/write_a_project.md, run as written: its files are written to a folder outside the
repository, and its shell commands train and evaluate the project with tools/train_net.py."""
import json
import os
import re
import shlex
import subprocess
import sys

from pisl.testing import REPO

PAGE = os.path.join(REPO, "docs", "write_a_project.md")
FENCE = re.compile(r"^```(\w+)(?: file=(\S+))?\n(.*?)^```", re.S | re.M)


def page_blocks():
    """``[(language, file name or None, text)]`` of the page's fenced code blocks."""
    with open(PAGE) as f:
        return FENCE.findall(f.read())


def shell_commands(text):
    """The commands of a bash block, with backslash-continued lines joined."""
    return [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_walkthrough_trains_and_evaluates_a_project_outside_the_repository(tmp_path):
    work = tmp_path / "work"
    files = [(name, text) for _, name, text in page_blocks() if name]
    assert {name for name, _ in files} >= {"my_project/__init__.py", "my_project/losses.py", "my_project/hooks.py",
                                            "my_project/meta_arch.py", "my_project/configs/demo.yml"}
    for name, text in files:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert not os.path.commonpath([str(work), REPO]) == REPO  # not inside the repository

    commands = [cmd for lang, _, text in page_blocks() if lang == "bash" for cmd in shell_commands(text)]
    assert len(commands) == 2 and "--eval-only" in commands[1]
    for command in commands:
        # The page says "python" as a user types it; run it with the interpreter that runs the tests
        # (a venv's python need not be first on PATH).
        command = re.sub(r"(^|\s)python(?=\s)", lambda m: m.group(1) + shlex.quote(sys.executable), command)
        proc = subprocess.run(command.replace("REPO/", REPO + "/"), shell=True, cwd=work, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run = work / "logs" / "my_project" / "demo"
    results = json.loads((run / "results.json").read_text())["Synthetic"]
    assert results["num_valid_queries"] == 20 and 0 < results["mAP"] <= 100
    # The evaluation of the saved model gives the run's own table.
    assert json.loads((work / "logs" / "my_project" / "eval" / "eval_results.json").read_text())["Synthetic"] == results
    with open(run / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    timed = [r["epoch"] for r in records if "my_project/epoch_seconds" in r]
    assert timed == [0, 1]  # the hook ran and its metric was written every epoch
    assert any("epoch_mean/PartCenterLoss" in r for r in records)  # the loss trained
    log = (run / "log.txt").read_text()
    assert "Model PartBaseline" in log and "Epoch 1 took" in log
