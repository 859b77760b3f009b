"""An epoch-based trainer with hooks (before/after train, epoch and step)."""
import logging
import time
import weakref

import numpy as np
import torch

from ..data import set_loader_epoch
from ..utils import comm
from ..utils.env import seed_all

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Raised by a hook when training cannot go on (e.g. clustering keeps failing). The run
    ends without results and exits non-zero; completed epochs stay in their checkpoint."""


class HookBase:
    """Override any of the six callbacks. ``self.trainer`` is set when registered. A hook with
    state that a resumed run needs implements ``state_dict``/``load_state_dict``."""

    trainer = None

    def before_train(self): pass
    def after_train(self): pass
    def before_epoch(self): pass
    def after_epoch(self): pass
    def before_step(self): pass
    def after_step(self): pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class TrainerBase:
    """Runs ``run_step`` ``iters_per_epoch`` times per epoch, from ``start_epoch`` to
    ``max_epoch``, calling hooks around. ``epoch`` is the current 0-based epoch; ``iter`` counts
    iterations within it. ``storage`` holds the latest scalars (numbers or 0-d tensors) for
    writers; ``epoch_metrics`` the scalars that hooks measure once an epoch (e.g. clustering
    diagnostics), written with the epoch's summary."""

    def __init__(self):
        self._hooks = []
        self.start_epoch, self.max_epoch, self.epoch, self.iter = 0, 0, 0, 0
        self.storage, self.epoch_metrics = {}, {}
        self.untrained_epochs = []  # epochs that ran no iteration (e.g. no usable clusters)

    def register_hooks(self, hooks):
        for hook in hooks:
            if hook is None:
                continue
            hook.trainer = weakref.proxy(self)  # no reference cycle trainer <-> hook
            self._hooks.append(hook)

    @property
    def hooks(self):
        return list(self._hooks)

    def train(self, start_epoch, max_epoch):
        self.start_epoch, self.max_epoch = start_epoch, max_epoch
        logger.info(f"Starting training from epoch {start_epoch} to {max_epoch}")
        self._call("before_train")
        try:
            for self.epoch in range(start_epoch, max_epoch):
                self.before_epoch()
                if self.iters_per_epoch == 0:
                    self.untrained_epochs.append(self.epoch)
                    logger.warning(f"Epoch {self.epoch} trains no iteration: the run will not train as configured")
                for self.iter in range(self.iters_per_epoch):
                    self._call("before_step")
                    self.run_step()
                    self._call("after_step")
                self._call("after_epoch")
        finally:
            self._call("after_train")

    def before_epoch(self):
        self.epoch_metrics = {}
        self._call("before_epoch")

    def _call(self, name):
        for hook in self._hooks:
            getattr(hook, name)()

    @property
    def iters_per_epoch(self):
        raise NotImplementedError

    def run_step(self):
        raise NotImplementedError


class SimpleTrainer(TrainerBase):
    """One optimisation step per iteration: batch -> loss dict -> sum -> backward -> step.

    The random streams of an epoch (sampler order, augmentation, any noise inside the model)
    are re-seeded from (SEED, epoch, rank) when the epoch starts, so a run resumed at an epoch
    boundary repeats exactly what an uninterrupted run does.
    """

    def __init__(self, model, train_loader, optimizer, seed=0, amp_dtype=None):
        super().__init__()
        self.model, self.train_loader, self.optimizer, self.seed = model, train_loader, optimizer, seed
        self._data_iter = None
        # Mixed precision: forward and losses under autocast (None = fp32). fp16 needs loss
        # scaling against gradient underflow; bf16 has fp32's range and does not.
        self.amp_dtype = amp_dtype
        self._scaler = torch.amp.GradScaler() if amp_dtype == torch.float16 else None

    @property
    def iters_per_epoch(self):
        """Iterations of the current epoch; 0 when a hook left no training data (an epoch
        without pseudo-labels)."""
        return len(self.train_loader) if self.train_loader is not None else 0

    def before_epoch(self):
        seed_all(int(np.random.SeedSequence([self.seed, self.epoch, comm.get_rank()]).generate_state(1)[0]))
        super().before_epoch()  # hooks may replace self.train_loader (e.g. clustering)
        if self.train_loader is not None:
            set_loader_epoch(self.train_loader, self.epoch, self.seed)
            self._data_iter = iter(self.train_loader)

    def run_step(self):
        start = time.perf_counter()
        batch = next(self._data_iter)
        data_time = time.perf_counter() - start
        self.model.train()
        device_type = next(self.model.parameters()).device.type
        with torch.autocast(device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss_dict = self.model(batch)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad(set_to_none=True)
        if self._scaler is not None:
            self._scaler.scale(losses).backward()
            self._scaler.unscale_(self.optimizer)
        else:
            losses.backward()
        # The norm of the whole gradient, before the step: spikes show which batches drive it.
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        if self._scaler is not None:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            self.optimizer.step()
        # Tensors, not numbers: a writer converts them when it logs, so a step does not wait
        # for the device (``time`` is host time: on CUDA it excludes queued work).
        self.storage = {"loss": losses.detach(), **{k: v.detach() for k, v in loss_dict.items()},
                        "grad_norm": grad_norm, "data_time": data_time, "time": time.perf_counter() - start}
