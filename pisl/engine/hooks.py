"""Core hooks: LR schedule, checkpointing, periodic evaluation and metric writers."""
import datetime
import json
import logging
import os
import time
import warnings

import torch

from ..evaluation import results_table
from ..utils import comm
from ..utils.checkpoint import CheckpointError, atomic_save, read_checkpoint, unwrap
from ..utils.env import rng_state
from ..utils.registry import Registry
from .trainer import HookBase

HOOK_REGISTRY = Registry("HOOK")
logger = logging.getLogger(__name__)


class LRScheduler(HookBase):
    """Steps an epoch-based scheduler after every epoch, trained or not (an unsupervised epoch
    without clusters trains nothing), so the schedule stays tied to the epoch number."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def after_epoch(self):
        with warnings.catch_warnings():
            # torch warns when the scheduler steps before any optimizer step; after an epoch
            # that trained nothing this is intended.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            self.scheduler.step()


class Checkpointer(HookBase):
    """After every ``period`` epochs (and the last), atomically writes ``last_checkpoint.pth``
    with everything a resumed run needs: model, optimizer, scheduler, next epoch, every hook's
    state and the RNG state. The checkpoint it replaces stays beside it as
    ``previous_checkpoint.pth``, which ``--resume`` falls back to when the last one cannot be
    read. The last epoch also writes ``model_final.pth``."""

    LAST = "last_checkpoint.pth"
    PREVIOUS = "previous_checkpoint.pth"

    def __init__(self, output_dir, period=1, scheduler=None):
        self.output_dir, self.period, self.scheduler = output_dir, period, scheduler

    def checkpoint(self):
        t = self.trainer
        return {
            "model": unwrap(t.model).state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "epoch": t.epoch + 1,
            "hooks": {type(h).__name__: h.state_dict() for h in t.hooks},
            "rng": rng_state(),
        }

    def after_epoch(self):
        last = self.trainer.epoch + 1 == self.trainer.max_epoch
        if not comm.is_main_process() or not (last or (self.trainer.epoch + 1) % self.period == 0):
            return
        state = self.checkpoint()
        atomic_save(state, os.path.join(self.output_dir, self.LAST),
                    keep_previous=os.path.join(self.output_dir, self.PREVIOUS))
        if last:
            atomic_save({"model": state["model"]}, os.path.join(self.output_dir, "model_final.pth"))
        logger.info(f"Saved checkpoint of epoch {self.trainer.epoch} to {self.output_dir}")

    @classmethod
    def newest_readable(cls, output_dir):
        """``(path, checkpoint, problems)``: the newest checkpoint of ``output_dir`` that can be
        read (the last, else the previous one; ``(None, None, ...)`` when neither can), and one
        line for each that exists but cannot be read."""
        problems = []
        for name in (cls.LAST, cls.PREVIOUS):
            path = os.path.join(output_dir, name)
            if not os.path.isfile(path):
                continue
            try:
                return path, read_checkpoint(path), problems
            except CheckpointError as err:
                problems.append(str(err))
        return None, None, problems


class EvalHook(HookBase):
    """Calls ``eval_fn()`` -> ``{dataset: metrics}`` every ``period`` epochs and after the last
    one, logs a table and keeps the latest results in the trainer's storage."""

    def __init__(self, period, eval_fn):
        self.period, self.eval_fn = period, eval_fn
        self.history = []

    def after_epoch(self):
        epoch = self.trainer.epoch
        if epoch + 1 == self.trainer.max_epoch or (self.period > 0 and (epoch + 1) % self.period == 0):
            start = time.perf_counter()
            results = self.eval_fn()
            comm.synchronize()
            logger.info(f"Evaluation after epoch {epoch} ({time.perf_counter() - start:.1f} s):\n{results_table(results)}")
            self.history.append({"epoch": epoch, **{name: r for name, r in results.items()}})
            self.trainer.storage["eval"] = results

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = state.get("history", [])


class MetricsWriter(HookBase):
    """Logs losses, LR, speed and ETA every ``period`` iterations, a summary line per epoch
    (the epoch's mean of the loss and of each term, ``epoch_mean/<name>``) and the epoch's
    ``trainer.epoch_metrics``, to the console and to ``metrics.jsonl`` (JSON
    Lines), and to TensorBoard when it is installed. A resumed run first drops the records of
    the epochs it redoes, so the file holds each epoch once."""

    def __init__(self, output_dir, period=20):
        self.output_dir, self.period = output_dir, period
        self._tb = None
        self._json = None

    def before_train(self):
        if not comm.is_main_process():
            return
        kept = _records_before(metrics_file(self.output_dir), self.trainer.start_epoch)
        os.makedirs(self.output_dir, exist_ok=True)
        self._json = open(os.path.join(self.output_dir, METRICS_FILE), "w")
        self._json.writelines(kept)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(self.output_dir)
        except ImportError:
            logger.info(f"TensorBoard is not installed (pip install tensorboard): metrics go to {METRICS_FILE} only")
            self._tb = None
        self._start = time.perf_counter()
        self._steps_done = 0

    def before_epoch(self):
        self._epoch_start, self._epoch_sums, self._epoch_steps = time.perf_counter(), {}, 0

    def after_step(self):
        t = self.trainer
        if not comm.is_main_process():
            return
        self._steps_done += 1
        self._epoch_steps += 1
        for key, value in t.storage.items():  # the loss, each term and the gradient norm, summed on the device
            if isinstance(value, torch.Tensor):
                self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + value
        last_iter = t.iter + 1 == t.iters_per_epoch
        if (t.iter + 1) % self.period and not last_iter:
            return
        global_step = t.epoch * t.iters_per_epoch + t.iter + 1
        lr = t.optimizer.param_groups[0]["lr"]
        remaining = (t.max_epoch - t.epoch) * t.iters_per_epoch - t.iter - 1
        eta = datetime.timedelta(seconds=int(remaining * (time.perf_counter() - self._start) / self._steps_done))
        scalars = {k: float(v) for k, v in t.storage.items() if isinstance(v, (float, torch.Tensor))}
        text = "  ".join(f"{k}: {v:.4g}" for k, v in scalars.items())
        logger.info(f"epoch {t.epoch} iter {t.iter + 1}/{t.iters_per_epoch}  {text}  lr: {lr:.3g}  eta: {eta}")
        self._write({"epoch": t.epoch, "iter": t.iter + 1, "lr": lr, **scalars}, global_step)

    def after_epoch(self):
        results = self.trainer.storage.pop("eval", None)
        if not comm.is_main_process():
            return
        steps = self._epoch_steps
        means = {k: float(v) / steps for k, v in self._epoch_sums.items()} if steps else {}
        terms = ", ".join(f"{k} {v:.4g}" for k, v in means.items() if k != "loss")
        mean = f"mean loss {means['loss']:.4g} ({terms})" if steps else "no training data"
        logger.info(f"Epoch {self.trainer.epoch} done: {steps} iterations in "
                    f"{time.perf_counter() - self._epoch_start:.1f} s, {mean}")
        step = (self.trainer.epoch + 1) * self.trainer.iters_per_epoch
        epoch_record = {**{f"epoch_mean/{k}": v for k, v in means.items()}, **self.trainer.epoch_metrics}
        if epoch_record:
            self._write({"epoch": self.trainer.epoch, **epoch_record}, step)
        for name, metrics in (results or {}).items():
            self._write({"epoch": self.trainer.epoch, **{f"{name}/{k}": v for k, v in metrics.items()}}, step)

    def _write(self, record, step):
        self._json.write(json.dumps(record) + "\n")
        self._json.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key not in ("epoch", "iter"):
                    self._tb.add_scalar(key, value, step)

    def after_train(self):
        if self._json:
            self._json.close()
        if self._tb:
            self._tb.close()


METRICS_FILE = "metrics.jsonl"


def metrics_file(run_dir):
    """A run's metrics file: metrics.jsonl, or metrics.json as runs before it wrote (the same
    JSON Lines under a misleading name)."""
    path = os.path.join(run_dir, METRICS_FILE)
    old = os.path.join(run_dir, "metrics.json")
    return old if not os.path.isfile(path) and os.path.isfile(old) else path


def _records_before(path, epoch):
    """The lines of a metrics file written by epochs before ``epoch`` (none if no file)."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [line for line in f if line.strip() and json.loads(line)["epoch"] < epoch]
