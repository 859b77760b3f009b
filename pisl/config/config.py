"""yacs config with ``_BASE_`` inheritance, project extensions and helpful unknown-key errors."""
import importlib
from yacs.config import CfgNode as _YacsCfgNode

from .checks import core_checks
from .defaults import _C
from .node import ConfigError, load_yaml_with_base

_EXTENSIONS = []
_CHECKS = []


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


def read_imports(cfg_filename):
    """The project modules a config file (or its bases) asks for, read before the config is built
    so that their keys and registered components exist."""
    return list(load_yaml_with_base(cfg_filename).get("IMPORTS", []))


def import_projects(module_names):
    for name in module_names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"IMPORTS: cannot import project module '{name}': {err}") from err


def get_cfg():
    """A fresh copy of the default config, with every registered project extension applied."""
    cfg = _C.clone()
    for add_config in _EXTENSIONS:
        add_config(cfg)
    return cfg


def load_config(cfg_filename, opts=(), check=True):
    """The default config merged with a file and KEY VALUE overrides, after importing the
    projects that the file or an ``IMPORTS`` override lists, then checked (``check_config``;
    ``check=False`` leaves that to the caller, e.g. the pre-run check that adds its own)."""
    opts = list(opts)
    from_opts = [_YacsCfgNode._decode_cfg_value(v) for k, v in zip(opts[0::2], opts[1::2]) if k == "IMPORTS"]
    import_projects(read_imports(cfg_filename) + [name for names in from_opts for name in names])
    cfg = get_cfg()
    cfg.merge_from_file(cfg_filename)
    cfg.merge_from_list(opts)
    if check:
        check_config(cfg)
    return cfg


def config_value_problems(cfg):
    """The core's and the projects' value checks, as a list of problems."""
    return [p for check in [core_checks, *_CHECKS] for p in check(cfg)]


def check_config(cfg):
    """Run every value check; one ConfigError lists every problem."""
    problems = config_value_problems(cfg)
    if problems:
        raise ConfigError(problems)
