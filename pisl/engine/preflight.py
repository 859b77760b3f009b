"""The pre-run check: every input that can be checked before a model, a data loader or a
process group exists (the config's values and names, dataset folders, weight files,
OUTPUT_DIR), reported together, one line each, so that a user fixes them all in one go.
Tools call ``checked_config`` and wrap their ``main`` in ``exit_on_bad_input``: bad input
found before the run exits with status 2 and no traceback."""
import functools
import os
import sys

import torch

from ..config import ConfigError, config_value_problems, load_config
from ..data.datasets import dataset_problems
from ..modeling import META_ARCH_REGISTRY
from ..modeling.backbones import backbone_weight_problems
from ..utils.checkpoint import CheckpointError, checkpoint_file_problem, fit_problem, read_checkpoint, state_dict_of
from ..utils.paths import folder_creation_problem
from .hooks import HOOK_REGISTRY, Checkpointer

# The files by which a folder is recognised as holding an earlier run.
RUN_FILES = (Checkpointer.LAST, Checkpointer.PREVIOUS, "model_final.pth", "results.json")


def output_dir_problems(output_dir, resume=False, overwrite=False, eval_only=False):
    """OUTPUT_DIR must be a folder that can be made and written, a fresh training run must not
    replace an earlier run's files unasked, and ``--resume`` needs a readable checkpoint where
    there is one."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        return [f"OUTPUT_DIR '{output_dir}' is a file, not a folder"]
    blocked = folder_creation_problem(output_dir)
    if blocked:
        return [f"OUTPUT_DIR '{output_dir}' cannot be made or written: {blocked}"]
    earlier = [f for f in RUN_FILES if os.path.isfile(os.path.join(output_dir, f))]
    if earlier and not (resume or overwrite or eval_only):
        return [f"OUTPUT_DIR {output_dir} holds an earlier run ({', '.join(earlier)}). Continue it with --resume, "
                f"replace it with --overwrite, or set OUTPUT_DIR to a new folder."]
    if resume and not eval_only:
        path, _, unreadable = Checkpointer.newest_readable(output_dir)
        if path is None and unreadable:
            return [f"--resume: {problem}" for problem in unreadable] + [
                f"--resume: no readable checkpoint in {output_dir}; start afresh with --overwrite"]
    return []


def weight_problems(cfg, need_weights=False):
    """MODEL.WEIGHTS (required with ``need_weights``): readable, and fitting the configured
    model; and the backbone's ImageNet weights."""
    problems = backbone_weight_problems(cfg)
    if cfg.MODEL.WEIGHTS:
        problems += [p for p in [checkpoint_file_problem("MODEL.WEIGHTS", cfg.MODEL.WEIGHTS)] if p]
    elif need_weights:
        problems.append("MODEL.WEIGHTS is not set: give the trained model, e.g. MODEL.WEIGHTS OUTPUT_DIR/model_final.pth")
    return problems


def weights_fit_problem(cfg):
    """One line when MODEL.WEIGHTS cannot be read in full (truncated, corrupt) or does not fit
    the configured architecture, else None. The model is built on the meta device (shapes
    only: no memory, no ImageNet weights read), so this costs about one read of the file."""
    try:
        state = state_dict_of(read_checkpoint(cfg.MODEL.WEIGHTS))
    except CheckpointError as err:
        return f"MODEL.WEIGHTS: {err}"
    arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    shapes_cfg = cfg.clone()
    shapes_cfg.defrost()
    shapes_cfg.MODEL.BACKBONE.PRETRAIN = False
    with torch.device("meta"):
        model = arch.from_config(shapes_cfg, 0)
    problem = fit_problem(cfg.MODEL.WEIGHTS, cfg.MODEL.META_ARCHITECTURE, model.state_dict(), state,
                          cfg.MODEL.PARTIAL_LOAD)
    return f"MODEL.WEIGHTS: {problem}" if problem else None


def name_problems(cfg):
    """Component names the registries do not know (the project may be missing from IMPORTS),
    and a CUDA device asked for where there is none."""
    problems = []
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        problems.append(f"MODEL.DEVICE is '{cfg.MODEL.DEVICE}' but CUDA is not available: use 'cpu' or 'auto'")
    if cfg.MODEL.META_ARCHITECTURE not in META_ARCH_REGISTRY:
        problems.append(f"MODEL.META_ARCHITECTURE: no architecture named '{cfg.MODEL.META_ARCHITECTURE}' "
                        f"(registered: {', '.join(META_ARCH_REGISTRY.names())}; a project's needs it in IMPORTS)")
    problems += [f"HOOKS: no hook named '{name}' (registered: {', '.join(HOOK_REGISTRY.names())})"
                 for name in cfg.HOOKS if name not in HOOK_REGISTRY]
    return problems


def checked_config(config_file, opts=(), need_data=True, need_weights=False, eval_only=False, output_dir=None,
                   problems=()):
    """The config of ``config_file`` + ``opts``, after every pre-run check: its values, the
    datasets (``need_data``), the weight files (MODEL.WEIGHTS required with ``need_weights``)
    and, for a training run, ``output_dir = dict(resume=..., overwrite=...)`` the run folder.
    Raises one ConfigError that lists every problem, after the caller's own ``problems`` (e.g.
    of its command line)."""
    problems = list(problems)
    try:
        cfg = load_config(config_file, opts, check=False)  # a file that does not parse stops here
    except ConfigError as err:
        raise ConfigError(problems + err.problems) from None
    problems += config_value_problems(cfg) + name_problems(cfg) + weight_problems(cfg, need_weights)
    if eval_only and not cfg.MODEL.WEIGHTS and not cfg.MODEL.BACKBONE.PRETRAIN:
        problems.append("--eval-only needs MODEL.WEIGHTS path/to/model_final.pth (or MODEL.BACKBONE.PRETRAIN True "
                        "to evaluate the ImageNet-initialised model)")
    if need_data:
        problems += dataset_problems(cfg)
    if output_dir is not None:
        problems += output_dir_problems(cfg.OUTPUT_DIR, eval_only=eval_only, **output_dir)
    if not problems and cfg.MODEL.WEIGHTS:
        # Last, and only for an otherwise valid config: it builds the model's skeleton.
        problems += [p for p in [weights_fit_problem(cfg)] if p]
    if problems:
        raise ConfigError(problems)
    return cfg


def report_bad_input(err, stream=sys.stderr):
    """Print ``err``'s problems, one line each."""
    problems = getattr(err, "problems", None) or str(err).splitlines() or [type(err).__name__]
    if len(problems) == 1:
        print(f"Error: {problems[0]}", file=stream)
        return
    print(f"Error: {len(problems)} problems:", file=stream)
    for problem in problems:
        print(f"  {problem}", file=stream)


def exit_on_bad_input(main):
    """Run ``main``; bad input (ConfigError, or an OSError such as a missing --input file) is
    printed one line per problem and exits 2, with no traceback."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ConfigError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as err:
            report_bad_input(err)
            sys.exit(2)
    return wrapper
