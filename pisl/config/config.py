"""yacs config with ``_BASE_`` inheritance, project extensions and helpful unknown-key errors."""
import difflib
import importlib
import os

import yaml
from yacs.config import CfgNode as _YacsCfgNode

BASE_KEY = "_BASE_"
_EXTENSIONS = []
_CHECKS = []


class ConfigError(KeyError):
    def __str__(self):  # KeyError quotes its message; keep it readable.
        return self.args[0]


def register_config_extension(add_config_fn):
    """A project calls this at import time with its ``add_<project>_config(cfg)``; every later
    ``get_cfg()`` includes the project's keys."""
    if add_config_fn not in _EXTENSIONS:
        _EXTENSIONS.append(add_config_fn)
    return add_config_fn


def register_config_check(check_fn):
    """A project registers ``check(cfg) -> list of problems`` for its keys; ``load_config`` runs
    every check once, up front, so that a bad value fails before any data is read."""
    if check_fn not in _CHECKS:
        _CHECKS.append(check_fn)
    return check_fn


def _load_yaml_with_base(filename):
    """Load a YAML file, recursively merging the files named by ``_BASE_`` (relative paths are
    relative to the including file) under it. Returns a plain dict."""
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"Config file not found: {filename}")
    with open(filename) as f:
        cfg = yaml.safe_load(f) or {}
    base = cfg.pop(BASE_KEY, None)
    if base is None:
        return cfg
    base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(filename), base)
    merged = _load_yaml_with_base(base_path)
    _deep_update(merged, cfg)
    return merged


def _deep_update(dst, src):
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_update(dst[key], value)
        else:
            dst[key] = value


def _check_keys(node, loaded, prefix=""):
    """Raise ConfigError naming the first unknown key, with the closest known key if any.
    Integers given for float keys (``EPS: 1``, ``-1``) become floats in ``loaded``."""
    for key, value in loaded.items():
        full = prefix + key
        if key not in node:
            close = difflib.get_close_matches(key, list(node.keys()), n=1)
            hint = f" Did you mean '{prefix + close[0]}'?" if close else ""
            if not prefix and not close:
                hint = (f" If it is a project's section, list the project in IMPORTS "
                        f"(e.g. IMPORTS: [\"projects.{key}\"]) so that its keys exist.")
            raise ConfigError(f"Unknown config key '{full}'.{hint}")
        if isinstance(node[key], _YacsCfgNode) and isinstance(value, dict):
            _check_keys(node[key], value, full + ".")
        elif _is_int_for_float(node[key], value):
            loaded[key] = float(value)


def _is_int_for_float(default, value):
    return isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)


class CfgNode(_YacsCfgNode):
    def merge_from_file(self, cfg_filename):
        loaded = _load_yaml_with_base(cfg_filename)
        _check_keys(self, loaded)
        self.merge_from_other_cfg(type(self)(loaded))

    def merge_from_list(self, cfg_list):
        if len(cfg_list) % 2:
            raise ConfigError(f"Overrides must be KEY VALUE pairs, got an odd list: {cfg_list}")
        cfg_list = list(cfg_list)
        for i, full_key in enumerate(cfg_list[0::2]):
            node, parts = self, full_key.split(".")
            for depth, part in enumerate(parts):
                prefix = ".".join(parts[:depth])
                _check_keys(node, {part: None}, prefix + "." if prefix else "")
                node = node[part]
            if _is_int_for_float(node, self._decode_cfg_value(cfg_list[2 * i + 1])):
                cfg_list[2 * i + 1] = str(float(self._decode_cfg_value(cfg_list[2 * i + 1])))
        super().merge_from_list(cfg_list)


def read_imports(cfg_filename):
    """The project modules a config file (or its bases) asks for, read before the config is built
    so that their keys and registered components exist."""
    return list(_load_yaml_with_base(cfg_filename).get("IMPORTS", []))


def import_projects(module_names):
    for name in module_names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"Cannot import project module '{name}' listed in IMPORTS: {err}") from err


def get_cfg():
    """A fresh copy of the default config, with every registered project extension applied."""
    from .defaults import _C

    cfg = _C.clone()
    for add_config in _EXTENSIONS:
        add_config(cfg)
    return cfg


def load_config(cfg_filename, opts=()):
    """The default config merged with a file and KEY VALUE overrides, after importing the
    projects that the file or an ``IMPORTS`` override lists, then checked (``check_config``)."""
    opts = list(opts)
    from_opts = [_YacsCfgNode._decode_cfg_value(v) for k, v in zip(opts[0::2], opts[1::2]) if k == "IMPORTS"]
    import_projects(read_imports(cfg_filename) + [name for names in from_opts for name in names])
    cfg = get_cfg()
    cfg.merge_from_file(cfg_filename)
    cfg.merge_from_list(opts)
    check_config(cfg)
    return cfg


def check_config(cfg):
    """Run the core's and the projects' value checks; one ConfigError lists every problem."""
    from .checks import core_checks

    problems = [p for check in [core_checks, *_CHECKS] for p in check(cfg)]
    if problems:
        raise ConfigError("Invalid config values:\n  " + "\n  ".join(problems))
