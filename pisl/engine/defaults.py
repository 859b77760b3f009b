"""The standard pieces every training script shares: argument parser, setup, DefaultTrainer."""
import argparse
import atexit
import glob
import json
import logging
import os
import shutil
import sys

import torch

from ..config import load_config
from ..data import build_dataset, build_train_loader
from ..evaluation import ReidEvaluator
from ..modeling import build_model
from ..modeling.norm import apply_norm_batch
from ..modeling.norm import describe as describe_norm
from ..solver import build_lr_scheduler, build_optimizer
from ..utils import comm
from ..utils.checkpoint import load_model_weights, unwrap
from ..utils.env import amp_dtype, processor_description, resolve_device, seed_all, set_rng_state
from ..utils.logger import setup_logger
from ..utils.provenance import provenance
from .hooks import HOOK_REGISTRY, Checkpointer, EvalHook, LRScheduler, MetricsWriter
from .preflight import RUN_FILES, output_dir_problems
from .trainer import SimpleTrainer, TrainingError

logger = logging.getLogger(__name__)


class OneLineErrorParser(argparse.ArgumentParser):
    """A bad command line is one line and exit status 2, like every other bad input (argparse
    would print its usage block first)."""

    def error(self, message):
        self.exit(2, f"Error: {message} (see {self.prog} --help)\n")


class ConfigArgumentParser(OneLineErrorParser):
    """The command line of every tool that reads a config: ``--config-file FILE``, the tool's
    own flags and KEY VALUE config overrides (``args.opts``), with the flags anywhere on the line,
    before or after the overrides. (argparse alone either stops at the first override or reads
    a value such as ``-1e-3`` as a flag.)"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--config-file", required=True, metavar="FILE")
        self.add_argument("opts", nargs="*", default=[], metavar="KEY VALUE", help="config overrides")

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        flags, overrides, i = [], [], 0
        while i < len(args):
            action = self._option_string_actions.get(args[i].split("=")[0])
            if action is None:
                overrides.append(args[i])
            else:
                takes_value = action.nargs != 0 and "=" not in args[i]
                flags += args[i: i + 1 + takes_value]
                i += takes_value
            i += 1
        if any(o.startswith("--") for o in overrides[0::2]):
            self.error(f"unknown flag {next(o for o in overrides[0::2] if o.startswith('--'))}")
        return super().parse_known_args(flags + (["--", *overrides] if overrides else []), namespace)


def default_argument_parser():
    parser = ConfigArgumentParser(description="Train or evaluate a re-ID model from a config file")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS and exit")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint.pth")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in an OUTPUT_DIR that holds an earlier run (its files are replaced)")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes to start (one per GPU; on CPU, gloo processes)")
    return parser


def argument_problems(args):
    """What is wrong with the parsed command line of ``default_argument_parser``, one line each."""
    if args.num_gpus < 1:
        return [f"--num-gpus is {args.num_gpus}: give the number of processes to start, at least 1 (one per GPU; "
                "on a CPU, gloo processes)"]
    return []


class OutputDirError(RuntimeError):
    """OUTPUT_DIR holds another run's results, or a live run is using it."""


# Held for the life of the process that claimed the folder; the OS drops the lock when it dies.
_OUTPUT_LOCK = None


def claim_output_dir(output_dir, resume=False, overwrite=False, eval_only=False):
    """Refuse a fresh training run in a folder that holds an earlier run's checkpoint or
    results (unless ``resume`` or ``overwrite``), and lock the folder so that a second run
    cannot write into it while this one lives. Call once per job, in the launching process."""
    problems = output_dir_problems(output_dir, resume, overwrite, eval_only)
    if problems:
        raise OutputDirError("\n".join(problems))
    os.makedirs(output_dir, exist_ok=True)
    _lock(output_dir)
    if overwrite and not resume:
        # Gone before the new run writes anything: a crash cannot leave old results looking new,
        # and the new log, metrics and TensorBoard events start clean instead of appending.
        old = [os.path.join(output_dir, n)
               for n in RUN_FILES + ("log.txt", "metrics.jsonl", "metrics.json", "eval_results.json")]
        for path in old + glob.glob(os.path.join(output_dir, "events.out.tfevents.*")):
            if os.path.isfile(path):
                os.remove(path)
        shutil.rmtree(os.path.join(output_dir, "pseudo_labels"), ignore_errors=True)


def _lock(output_dir):
    global _OUTPUT_LOCK
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        logger.warning("fcntl is not available: OUTPUT_DIR is not locked against a concurrent run")
        return
    lock = open(os.path.join(output_dir, ".lock"), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        owner = lock.read().strip() or "unknown"
        lock.close()
        raise OutputDirError(f"OUTPUT_DIR {output_dir} is in use by a live run (process {owner}): wait for it "
                             f"to end or set OUTPUT_DIR to another folder.") from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    _OUTPUT_LOCK = lock
    atexit.register(_release_lock, lock)


def _release_lock(lock):
    """Remove the lock file when the run's process exits, however it exits short of being killed
    (then the OS drops the lock and a stale file is harmless: the next run takes it)."""
    try:
        os.remove(lock.name)
    except OSError:
        pass
    lock.close()


def setup(args):
    """Import the config's projects, build and freeze the config, set up logging and seeds,
    and write the merged config to OUTPUT_DIR/config.yaml and what made the run (commit,
    command, processor) to OUTPUT_DIR/provenance.json."""
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(cfg.OUTPUT_DIR)
    device = resolve_device(cfg.MODEL.DEVICE)
    if comm.is_main_process():
        with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
            f.write(cfg.dump())
        with open(os.path.join(cfg.OUTPUT_DIR, "provenance.json"), "w") as f:
            json.dump(provenance(device), f, indent=1)
    logger.info(f"Command line: {vars(args)}")
    logger.info(f"Running with config:\n{cfg.dump()}")
    logger.info(f"torch {torch.__version__}, device {device} ({processor_description(device)}), "
                f"{comm.get_world_size()} process(es)"
                f"{f', autocast {amp_dtype(cfg)}' if cfg.SOLVER.AMP.ENABLED else ''}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    seed_all(cfg.SEED + comm.get_rank())
    return cfg


def build_train_items(datasets, keep_labels):
    """Concatenate the training sets, with identities relabelled to 0..C-1 and cameras made
    unique across datasets. Without labels every item gets -1 (clustering assigns labels)."""
    items, pid_map, cam_offset = [], {}, 0
    for ds in datasets:
        for path, pid, cam in ds.train:
            label = pid_map.setdefault((ds.name, pid), len(pid_map)) if keep_labels else -1
            items.append((path, label, cam + cam_offset))
        cam_offset += 1 + max(cam for _, _, cam in ds.train)
    return items, len(pid_map)


class DefaultTrainer(SimpleTrainer):
    """Builds everything from the config: data, model, optimizer, schedule and hooks.

    Supervised by default; a registered hook in ``cfg.HOOKS`` with ``provides_train_loader``
    (the clustering hook) supplies pseudo-labelled loaders instead, and no identity label of the
    training set is then used.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        extra_hooks = [HOOK_REGISTRY.get(name).from_config(cfg) for name in cfg.HOOKS]
        unsupervised = any(getattr(h, "provides_train_loader", False) for h in extra_hooks)
        self.train_datasets = [build_dataset(name, cfg) for name in cfg.DATASETS.NAMES]
        self.train_items, num_classes = build_train_items(self.train_datasets, keep_labels=not unsupervised)
        model = build_model(cfg, num_classes)
        process_batch = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
        logger.info(describe_norm(cfg.MODEL.NORM_BATCH, process_batch, comm.get_world_size()))
        apply_norm_batch(model, cfg.MODEL.NORM_BATCH, process_batch, comm.get_world_size())
        optimizer = build_optimizer(cfg, model)
        self.scheduler = build_lr_scheduler(cfg, optimizer)
        train_loader = None if unsupervised else build_train_loader(cfg, self.train_items)
        super().__init__(comm.create_ddp_model(model, cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS), train_loader, optimizer,
                         seed=cfg.SEED, amp_dtype=amp_dtype(cfg))
        # Built (and checked) now: an unusable test set must fail before an epoch is trained.
        self._evaluators = [ReidEvaluator(cfg, build_dataset(name, cfg)) for name in cfg.DATASETS.TESTS]
        self.register_hooks(
            [LRScheduler(self.scheduler)]
            + extra_hooks
            + [
                # Checkpoint first: an evaluation that fails cannot lose the epoch it evaluates.
                Checkpointer(cfg.OUTPUT_DIR, cfg.SOLVER.CHECKPOINT_PERIOD, self.scheduler),
                EvalHook(cfg.TEST.EVAL_PERIOD, self.evaluate),
                MetricsWriter(cfg.OUTPUT_DIR, cfg.SOLVER.LOG_PERIOD),
            ]
        )

    def resume_or_load(self, resume):
        """With ``resume``, continue from OUTPUT_DIR's newest readable checkpoint (the last, or
        the previous one when the last is truncated or corrupt); otherwise start from
        MODEL.WEIGHTS when set."""
        path, state, unreadable = Checkpointer.newest_readable(self.cfg.OUTPUT_DIR) if resume else (None, None, [])
        for problem in unreadable:
            logger.warning(f"{problem}; {'resuming from ' + path + ' instead' if path else 'no checkpoint to resume'}")
        if state is not None:
            load_model_weights(self.model, path, state)
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scheduler"):
                self.scheduler.load_state_dict(state["scheduler"])
            for hook in self.hooks:
                hook.load_state_dict(state["hooks"].get(type(hook).__name__, {}))
            set_rng_state(state["rng"])
            self.start_epoch = state["epoch"]
            logger.info(f"Resuming from {path} at epoch {self.start_epoch}")
            return
        if resume:
            logger.warning(f"--resume given but {self.cfg.OUTPUT_DIR} holds no checkpoint: starting from scratch")
        if self.cfg.MODEL.WEIGHTS:
            load_model_weights(self.model, self.cfg.MODEL.WEIGHTS, partial=self.cfg.MODEL.PARTIAL_LOAD)

    def run_step(self):
        try:
            super().run_step()
        except RuntimeError as err:
            # DDP's own message names its constructor's argument, which a user of this toolbox
            # does not call; name the key that sets it.
            if "find_unused_parameters" not in str(err):
                raise
            raise TrainingError("under DDP, a training step left some of the model's parameters unused (e.g. a "
                                "classifier that no loss reads): set MODEL.DDP_FIND_UNUSED_PARAMETERS True") from err

    def train(self):
        if self.start_epoch >= self.cfg.SOLVER.MAX_EPOCH:
            logger.info(f"Training already finished ({self.start_epoch} epochs); evaluating")
            return self.test(self.cfg, self.model)
        super().train(self.start_epoch, self.cfg.SOLVER.MAX_EPOCH)
        eval_hook = next(h for h in self.hooks if isinstance(h, EvalHook))
        return {k: v for k, v in eval_hook.history[-1].items() if k != "epoch"}  # the last epoch's

    def evaluate(self):
        """The periodic evaluation, with the test sets' loaders built once."""
        return self.test(self.cfg, self.model, self._evaluators)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate on every dataset of DATASETS.TESTS; returns ``{name: metrics}``."""
        evaluators = evaluators or [ReidEvaluator(cfg, build_dataset(name, cfg)) for name in cfg.DATASETS.TESTS]
        return {name: metrics for ev in evaluators for name, metrics in ev.evaluate(unwrap(model)).items()}
