#!/usr/bin/env python
"""Write docs/config_reference.md: every config key of the core and of the projects in this
repository, with its default, its type and what it does, read from the comments beside the
key's line in the file that defines it.

    python tools/config_reference.py                 # rewrite docs/config_reference.md
    python tools/config_reference.py --check         # exit 1 if the page is out of date

A key's description is its trailing comment, or else the comment lines right above it; a key
without one is an error (the test suite runs --check), so a new key cannot go undocumented.
"""
import argparse
import ast
import io
import os
import sys
import tokenize

from pisl.config import get_cfg, import_projects
from pisl.config.node import CfgNode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PAGE = os.path.join(REPO, "docs", "config_reference.md")
# Where keys are defined: the core's defaults, then each project's extension, as
# (title, file, module to import, the name the file's assignments start with).
SOURCES = [
    ("Core (`pisl`)", "pisl/config/defaults.py", None, "_C"),
    ("Cluster Contrast (`projects.ClusterContrast`)", "projects/ClusterContrast/cluster_memory.py",
     "projects.ClusterContrast", "cfg"),
    ("PISL (`projects.PISL`)", "projects/PISL/config.py", "projects.PISL", "cfg"),
]


def _dotted(node):
    """``a.B.C`` of an attribute chain, or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def described_keys(path, root_name):
    """``{KEY: description}`` for the config keys that the file at ``path`` assigns
    (``root_name.KEY = value``), from the comments beside or above each assignment."""
    with open(path) as f:
        source = f.read()
    trailing, alone = {}, {}
    code_lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            line = token.start[0]
            text = token.string.lstrip("#").strip()
            (trailing if line in code_lines else alone)[line] = text
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
            code_lines.update(range(token.start[0], token.end[0] + 1))
    keys = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        name = _dotted(node.targets[0])
        if not name or not name.startswith(root_name + "."):
            continue
        above, line = [], node.lineno - 1
        while line in alone:
            above.insert(0, alone[line])
            line -= 1
        text = trailing.get(node.lineno) or " ".join(above)
        keys[name[len(root_name) + 1:]] = text
    return keys


def _leaves(node, prefix=""):
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            yield from _leaves(value, full + ".")
        else:
            yield full, value


def _type_name(value):
    if isinstance(value, (list, tuple)):
        inner = sorted({type(v).__name__ for v in value})
        return f"list of {' / '.join(inner)}" if inner else "list"
    return type(value).__name__


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def render():
    """The page's text, and the keys that have no description."""
    import_projects([module for _, _, module, _ in SOURCES if module])
    cfg = get_cfg()
    lines = [
        "# Config reference",
        "",
        "Every key of the config tree: the core's, then each project's (present when the config's",
        "`IMPORTS` loads the project). Set them in a YAML file (with `_BASE_` to inherit one) or as",
        "`KEY VALUE` pairs after the command; an unknown key or a value of the wrong type is refused",
        "before anything runs. Written by `python tools/config_reference.py` from the comments beside",
        "each key in its source file; the tests fail when a key has no comment or this page is stale.",
        "",
    ]
    undocumented, seen = [], set()
    for title, path, _, root_name in SOURCES:
        described = described_keys(os.path.join(REPO, path), root_name)
        lines += [f"## {title}", "", f"Defined in `{path}`.", "", "| key | default | type | what it does |",
                  "|---|---|---|---|"]
        for key, value in _leaves(cfg):
            if key in seen or key not in described:
                continue
            seen.add(key)
            if not described[key]:
                undocumented.append(f"{key} ({path})")
            lines.append(f"| `{key}` | `{_cell(repr(value))}` | {_type_name(value)} | {_cell(described[key])} |")
        lines.append("")
    undocumented += [f"{key} (defined in no file of SOURCES)" for key, _ in _leaves(cfg) if key not in seen]
    return "\n".join(lines), undocumented


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date or a key has no comment")
    args = parser.parse_args()
    text, undocumented = render()
    for key in undocumented:
        print(f"Error: config key {key} has no comment: add one beside or above its line", file=sys.stderr)
    if args.check:
        current = open(PAGE).read() if os.path.isfile(PAGE) else ""
        if current != text:
            print(f"Error: {os.path.relpath(PAGE, REPO)} is out of date: run python tools/config_reference.py",
                  file=sys.stderr)
            sys.exit(1)
        sys.exit(1 if undocumented else 0)
    with open(PAGE, "w") as f:
        f.write(text)
    print(f"Wrote {PAGE}: {len(text.splitlines())} lines")
    sys.exit(1 if undocumented else 0)


if __name__ == "__main__":
    main()
