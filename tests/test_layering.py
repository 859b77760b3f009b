"""The core knows no project: nothing under pisl/ or tools/ imports projects (a project is reached
through the registries and the methods its meta-architecture offers)."""
import ast
import glob
import os

from pisl.testing import REPO


def project_imports(path):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        found += [f"{os.path.relpath(path, REPO)}:{node.lineno} imports {n}" for n in names
                  if n == "projects" or n.startswith("projects.")]
    return found


def test_neither_the_core_nor_its_tools_import_a_project():
    files = glob.glob(os.path.join(REPO, "pisl", "**", "*.py"), recursive=True) + glob.glob(os.path.join(REPO, "tools", "*.py"))
    assert len(files) > 40
    offending = [line for path in files for line in project_imports(path)]
    assert not offending, "\n".join(offending)


def test_the_check_sees_an_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f():\n    from projects.PISL.box_stats import box_table\n")
    found = project_imports(str(bad))
    assert len(found) == 1 and found[0].endswith(":4 imports projects.PISL.box_stats")
