"""The standard pieces every training script shares: argument parser, setup, DefaultTrainer."""
import argparse
import logging
import os

import torch

from ..config import load_config
from ..data import build_dataset, build_train_loader
from ..evaluation import ReidEvaluator
from ..modeling import build_model
from ..solver import build_lr_scheduler, build_optimizer
from ..utils import comm
from ..utils.checkpoint import load_model_weights, read_checkpoint, unwrap
from ..utils.env import resolve_device, seed_all, set_rng_state
from ..utils.logger import setup_logger
from .hooks import HOOK_REGISTRY, Checkpointer, EvalHook, LRScheduler, MetricsWriter
from .trainer import SimpleTrainer

logger = logging.getLogger(__name__)


def default_argument_parser():
    parser = argparse.ArgumentParser(description="Train or evaluate a re-ID model from a config file")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS and exit")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint.pth")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes to start (one per GPU; on CPU, gloo processes)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides")
    return parser


def setup(args):
    """Import the config's projects, build and freeze the config, set up logging and seeds,
    and write the merged config to OUTPUT_DIR/config.yaml."""
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(cfg.OUTPUT_DIR)
    if comm.is_main_process():
        with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
            f.write(cfg.dump())
    logger.info(f"Command line: {vars(args)}")
    logger.info(f"Running with config:\n{cfg.dump()}")
    logger.info(f"torch {torch.__version__}, device {resolve_device(cfg.MODEL.DEVICE)}, {comm.get_world_size()} process(es)")
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
        optimizer = build_optimizer(cfg, model)
        self.scheduler = build_lr_scheduler(cfg, optimizer)
        train_loader = None if unsupervised else build_train_loader(cfg, self.train_items)
        super().__init__(comm.create_ddp_model(model), train_loader, optimizer, seed=cfg.SEED)
        self._evaluators = None
        self.register_hooks(
            [LRScheduler(self.scheduler)]
            + extra_hooks
            + [
                EvalHook(cfg.TEST.EVAL_PERIOD, self.evaluate),
                Checkpointer(cfg.OUTPUT_DIR, cfg.SOLVER.CHECKPOINT_PERIOD, self.scheduler),
                MetricsWriter(cfg.OUTPUT_DIR, cfg.SOLVER.LOG_PERIOD),
            ]
        )

    def resume_or_load(self, resume):
        """With ``resume``, continue from OUTPUT_DIR/last_checkpoint.pth when it exists;
        otherwise start from MODEL.WEIGHTS when set."""
        path = os.path.join(self.cfg.OUTPUT_DIR, Checkpointer.LAST)
        if resume and os.path.isfile(path):
            state = read_checkpoint(path)
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
            logger.warning(f"--resume given but {path} does not exist: starting from scratch")
        if self.cfg.MODEL.WEIGHTS:
            load_model_weights(self.model, self.cfg.MODEL.WEIGHTS, partial=self.cfg.MODEL.PARTIAL_LOAD)

    def train(self):
        if self.start_epoch >= self.cfg.SOLVER.MAX_EPOCH:
            logger.info(f"Training already finished ({self.start_epoch} epochs); evaluating")
            return self.test(self.cfg, self.model)
        super().train(self.start_epoch, self.cfg.SOLVER.MAX_EPOCH)
        eval_hook = next(h for h in self.hooks if isinstance(h, EvalHook))
        if not eval_hook.history or eval_hook.history[-1]["epoch"] != self.epoch:
            return self.evaluate()  # stopped early: evaluate what was trained
        return {k: v for k, v in eval_hook.history[-1].items() if k != "epoch"}

    def evaluate(self):
        """The periodic evaluation, with the test sets' loaders built once."""
        if self._evaluators is None:
            self._evaluators = [ReidEvaluator(self.cfg, build_dataset(name, self.cfg)) for name in self.cfg.DATASETS.TESTS]
        return self.test(self.cfg, self.model, self._evaluators)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate on every dataset of DATASETS.TESTS; returns ``{name: metrics}``."""
        evaluators = evaluators or [ReidEvaluator(cfg, build_dataset(name, cfg)) for name in cfg.DATASETS.TESTS]
        return {ev.dataset_name: ev.evaluate(unwrap(model)) for ev in evaluators}
