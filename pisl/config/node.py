"""The config node: yacs's CfgNode with checks that name every unknown key (with the keys it
may have meant) and every value of the wrong type, and ConfigError, which lists them."""
import difflib
import os

import yaml
from yacs.config import CfgNode as _YacsCfgNode

BASE_KEY = "_BASE_"


class ConfigError(KeyError):
    """Bad config input: ``problems`` holds one line per problem, the message lists them all."""

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self):  # KeyError quotes its message; keep it readable.
        return self.args[0]


def load_yaml_with_base(filename, included_by=None):
    """Load a YAML file, recursively merging the files named by ``_BASE_`` (relative paths are
    relative to the including file) under it. Returns a plain dict. ``included_by`` is the file
    whose ``_BASE_`` names ``filename``, for the message when it is missing."""
    if not os.path.isfile(filename):
        if included_by:
            raise ConfigError(f"Config file {included_by}: its _BASE_ {filename} does not exist "
                              "(a relative _BASE_ is relative to the file that names it)")
        raise ConfigError(f"Config file not found: {filename}")
    with open(filename) as f:
        try:
            cfg = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f", line {where.line + 1}" if where else ""
            raise ConfigError(f"Config file {filename}{line} is not valid YAML: "
                              f"{getattr(err, 'problem', None) or err}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"Config file {filename} must hold KEY: value pairs, not a {type(cfg).__name__}")
    base = cfg.pop(BASE_KEY, None)
    if base is None:
        return cfg
    base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(filename), base)
    merged = load_yaml_with_base(base_path, included_by=filename)
    _deep_update(merged, cfg)
    return merged


def _deep_update(dst, src):
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_update(dst[key], value)
        else:
            dst[key] = value


def _suggestions(key, known, count=3):
    """Up to ``count`` known keys that ``key`` may have meant: first those that contain all of its
    ``_``-separated parts (ITERS -> ITERS_PER_EPOCH), then those sharing a part, then the
    spelling neighbours (BASE_LRR -> BASE_LR)."""
    parts = set(key.split("_"))
    by_parts = sorted((k for k in known if parts & set(k.split("_"))),
                      key=lambda k: (not parts <= set(k.split("_")), -len(parts & set(k.split("_"))), k))
    ranked = by_parts + difflib.get_close_matches(key, known, n=count, cutoff=0.6)
    return list(dict.fromkeys(ranked))[:count]


def _sections_holding(key, node, prefix=""):
    """The full names of ``key`` in the sections below ``node`` (``BASE_LR`` -> ``SOLVER.BASE_LR``)."""
    found = []
    for name, child in node.items():
        if isinstance(child, _YacsCfgNode):
            found += [f"{prefix}{name}.{key}"] if key in child else []
            found += _sections_holding(key, child, f"{prefix}{name}.")
    return found


def _unknown_key(full, key, node, prefix):
    holders = _sections_holding(key, node, prefix)
    if holders:  # a key written outside its section, e.g. BASE_LR at the top level
        return (f"Unknown config key '{full}': {key} belongs to a section; did you mean "
                f"{' or '.join(repr(h) for h in holders[:3])}?")
    close = _suggestions(key, list(node.keys()))
    if close:
        return f"Unknown config key '{full}'. Did you mean {' or '.join(repr(prefix + c) for c in close)}?"
    if not prefix:
        return (f"Unknown config key '{full}'. If it is a project's section, list the project in IMPORTS "
                f"(e.g. IMPORTS: [\"projects.{key}\"]) so that its keys exist.")
    return f"Unknown config key '{full}' (the keys of {prefix[:-1]}: {', '.join(node.keys())})"


def _type_name(value):
    return {list: "a list", tuple: "a list", str: "a string", bool: "True or False", int: "an integer",
            float: "a number", type(None): "None"}.get(type(value), type(value).__name__)


def _type_problem(full, default, value):
    """A line naming the key, the value given and the type its default has, with an example, or
    None when yacs would accept the value (it turns tuples into lists; ints pass as floats)."""
    if isinstance(value, str):  # yacs reads strings as Python literals first ("5e-4" -> 0.0005)
        value = _YacsCfgNode._decode_cfg_value(value)
    if isinstance(default, _YacsCfgNode) or value is None and default is None:
        return None
    kinds = {tuple: list}
    if kinds.get(type(value), type(value)) is kinds.get(type(default), type(default)) or _is_int_for_float(default, value):
        return None
    example = repr([value] if isinstance(default, list) and isinstance(value, str) else default)
    return (f"{full} is {value!r} ({_type_name(value)}) but must be {_type_name(default)}, e.g. {full} "
            f"\"{example}\" on the command line or {full.split('.')[-1]}: {example} in a file")


def _check_keys(node, loaded, prefix=""):
    """Every problem of ``loaded`` (unknown keys, with the closest known ones; values whose type
    differs from the default's). Integers given for float keys become floats in ``loaded``."""
    problems = []
    for key, value in loaded.items():
        full = prefix + key
        if key not in node:
            problems.append(_unknown_key(full, key, node, prefix))
        elif isinstance(node[key], _YacsCfgNode) and isinstance(value, dict):
            problems += _check_keys(node[key], value, full + ".")
        elif isinstance(node[key], _YacsCfgNode) or isinstance(value, dict):
            problems.append(f"{full} is a section of keys, not a value" if isinstance(node[key], _YacsCfgNode)
                            else f"{full} takes a value, not a section of keys")
        elif _is_int_for_float(node[key], value):
            loaded[key] = float(value)
        elif (problem := _type_problem(full, node[key], value)) is not None:
            problems.append(problem)
    return problems


def _is_int_for_float(default, value):
    return isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)


class CfgNode(_YacsCfgNode):
    def merge_from_file(self, cfg_filename):
        loaded = load_yaml_with_base(cfg_filename)
        problems = _check_keys(self, loaded)
        if problems:
            raise ConfigError([f"{cfg_filename}: {p}" for p in problems])
        self.merge_from_other_cfg(type(self)(loaded))

    def merge_from_list(self, cfg_list):
        if len(cfg_list) % 2:
            raise ConfigError(f"Overrides must be KEY VALUE pairs, got an odd list: {cfg_list}")
        cfg_list, problems = list(cfg_list), []
        for i, full_key in enumerate(cfg_list[0::2]):
            # {"A": {"B": value}} for "A.B": the same check as a file's keys.
            nested = value = self._decode_cfg_value(cfg_list[2 * i + 1])
            for part in reversed(full_key.split(".")):
                nested = {part: nested}
            found = _check_keys(self, nested)
            problems += found
            if not found and _is_int_for_float(self._default_of(full_key), value):
                cfg_list[2 * i + 1] = str(float(value))
        if problems:
            raise ConfigError(problems)
        super().merge_from_list(cfg_list)

    def _default_of(self, full_key):
        node = self
        for part in full_key.split("."):
            node = node[part]
        return node
