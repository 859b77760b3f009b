"""The repository explains itself without anything beside it: every relative link in every
Markdown file resolves inside the repository, no README, doc or code comment names a path
outside it, and the config reference is complete and up to date."""
import ast
import io
import json
import os
import re
import subprocess
import sys
import tokenize

import pytest

from pisl.testing import REPO

# Run records (each run's config and log, verbatim) keep the paths the runs used.
RECORDS = "records/"
# The data, weights and specification folder beside the maintainers' checkout, which a clone
# does not have.
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/(spec|data|weights|hooks)\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def tracked(*patterns):
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if not p.startswith(RECORDS)]


pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(REPO, ".git")), reason="needs the git checkout's file list")


def test_every_relative_link_resolves_inside_the_repository():
    dangling = []
    for page in tracked("*.md"):
        with open(os.path.join(REPO, page)) as f:
            text = f.read()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):  # a web address, or an anchor
                continue
            path = os.path.normpath(os.path.join(REPO, os.path.dirname(page), target.split("#")[0]))
            if not path.startswith(REPO + os.sep) or not os.path.exists(path):
                dangling.append(f"{page}: {target}")
    assert not dangling, "\n".join(dangling)


def _comments(path):
    """Comment and docstring text of a Python file, with line numbers."""
    with open(path) as f:
        source = f.read()
    out = [(t.start[0], t.string) for t in tokenize.generate_tokens(io.StringIO(source).readline)
           if t.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((node.body[0].lineno, doc))
    return out


def test_no_doc_or_comment_names_a_path_outside_the_repository():
    found = []
    for page in tracked("*.md"):
        with open(os.path.join(REPO, page)) as f:
            found += [f"{page}:{n}: {line.strip()}" for n, line in enumerate(f, 1) if OUTSIDE.search(line)]
    for source in tracked("*.py"):
        found += [f"{source}:{n}: {text.strip()[:100]}" for n, text in _comments(os.path.join(REPO, source))
                  if OUTSIDE.search(text)]
    for script in tracked("*.sh", "*.yml", "*.yaml"):
        with open(os.path.join(REPO, script)) as f:
            found += [f"{script}:{n}: {line.strip()}" for n, line in enumerate(f, 1)
                      if "#" in line and OUTSIDE.search(line.split("#", 1)[1])]
    assert not found, "\n".join(found)


def test_the_check_finds_a_path_outside_the_repository():
    # What the two tests above look for, on hand-made lines.
    assert OUTSIDE.search("see ../shared/data/cuhk01") and OUTSIDE.search("(shared/weights)")
    assert not OUTSIDE.search("a test run shared the two cores") and not OUTSIDE.search("shared_mobilenet")
    assert LINK.findall("a [page](docs/a.md#x) and [site](https://x.org)") == ["docs/a.md#x", "https://x.org"]


def test_config_reference_is_complete_and_up_to_date():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "config_reference.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_config_reference_reads_each_keys_comment(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "tools"))
    from config_reference import described_keys

    source = tmp_path / "keys.py"
    source.write_text("_C = None\n# above A,\n# two lines\n_C.A = 1\n_C.B.C = 'x'  # beside C\n_C.D = 2\n\n# not D's\n")
    assert described_keys(str(source), "_C") == {"A": "above A, two lines", "B.C": "beside C", "D": ""}


def test_results_tables_are_generated_from_the_records():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "tables.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_hand_edited_table_cell_is_stale():
    sys.path.insert(0, REPO)
    from benchmarks import tables

    page = os.path.join(REPO, "projects", "PISL", "README.md")
    with open(page) as f:
        text = f.read()
    rendered = {name: tables.render(table) for name, table in tables.TABLES.items()}
    assert tables.regenerate(text, rendered, []) == text  # as committed
    cell = re.search(r"\| (\d+\.\d\d) \+- ", text).group(1)
    edited = text.replace(f"| {cell} +- ", f"| {float(cell) + 0.01:.2f} +- ", 1)
    assert edited != text and tables.regenerate(edited, rendered, []) == text  # the edit is undone


def test_no_user_page_names_an_issue():
    pages = [p for p in tracked("*.md") if not p.startswith(".")]
    named = [f"{p}: {m.group(0)}" for p in pages for m in re.finditer(r"\b[Ii]ssues? #?\d+", open(os.path.join(REPO, p)).read())]
    assert not named, "\n".join(named)


def test_a_figure_typed_into_a_results_page_is_found_and_one_quoted_from_its_table_is_not():
    sys.path.insert(0, REPO)
    from benchmarks import tables

    page = os.path.join(REPO, "projects", "PISL", "README.md")
    with open(page) as f:
        text = f.read()
    assert tables.figures_outside_tables(text) == []  # as committed
    cell = re.search(r"\| (\d+\.\d\d) \+- ", text).group(1)  # a cell of one of its tables
    lines = text.count("\n")
    added = (f"\nThe row reached {cell} mAP.\nThe row reached 12.34 mAP, or 56 %.\n"
             "Set `PISL.SCD.W_BOUND 2.5` for that.\nThe paper reports 99.9 mAP (quoted from the paper).\n")
    assert tables.figures_outside_tables(text + added) == [(lines + 3, "12.34"), (lines + 3, "56")]


def test_box_follow_over_seeds_gives_mean_std_per_part_and_the_worst_parts_range(tmp_path, monkeypatch):
    """Two hand-made box_follow records: per part, mean +- sample std over the seeds; the worst
    part's r of each seed (0.6 and 0.7) gives the range."""
    sys.path.insert(0, REPO)
    from benchmarks import tables

    def record(r, slope, anchor):
        parts = [{"follow r": r[i], "follow slope": slope[i]} for i in range(2)]
        return {"provenance": {"processor": "Intel(R) Xeon(R) Processor, AVX512, 2 threads"},
                "result": {"misaligned": {"parts": parts}, "translation": {"parts": parts,
                                                                           "anchors alone": [[0.9, anchor], [0.8, anchor]]}}}
    for seed, args in ((1, ([0.6, 0.8], [0.5, 0.7], 0.4)), (2, ([0.8, 0.7], [0.7, 0.9], 0.6))):
        (tmp_path / f"follow_seed{seed}.json").write_text(json.dumps(record(*args)))
    monkeypatch.setattr(tables, "ROOT", str(tmp_path))
    text = tables.render(tables.BoxFollowSeedsTable({"recipe": "follow_seed[0-9].json"}))
    row = [cell.strip() for cell in next(line for line in text.splitlines() if line.startswith("| recipe")).split("|")[1:-1]]
    # r: part 0 (0.6, 0.8) -> 0.70 +- 0.14, part 1 (0.8, 0.7) -> 0.75 +- 0.07; slopes 0.60 +- 0.14, 0.80 +- 0.14
    assert row == ["recipe", "2", "Xeon AVX512, 2 threads", "0.70 +- 0.14 / 0.75 +- 0.07", "0.60 +- 0.14 / 0.80 +- 0.14",
                   "0.60 - 0.70", "0.70 +- 0.14 / 0.75 +- 0.07", "0.60 +- 0.14 / 0.80 +- 0.14", "0.50 +- 0.14 / 0.50 +- 0.14"]
