"""Identity samplers. Each yields, for one epoch, this rank's share of ``num_iters`` global
batches; the stream is a pure function of (seed, epoch), so a resumed run sees the same data."""
from collections import defaultdict

import numpy as np
from torch.utils.data import Sampler

from ..utils import comm
from ..utils.registry import Registry

SAMPLER_REGISTRY = Registry("SAMPLER")


class EpochBatchSampler(Sampler):
    """Base class: subclasses implement ``_one_pass(rng)`` returning a list of indices whose
    consecutive groups of ``num_instances`` share an identity (a "pass" over the identities)."""

    def __init__(self, targets, camids, batch_size, num_instances, num_iters, seed=0):
        world = comm.get_world_size()
        if batch_size < 1 or num_instances < 1:
            raise ValueError(f"SOLVER.IMS_PER_BATCH ({batch_size}) and DATALOADER.NUM_INSTANCE ({num_instances}) "
                             "must be at least 1")
        if batch_size % world:
            raise ValueError(f"SOLVER.IMS_PER_BATCH={batch_size} is not divisible by {world} processes")
        self.targets = np.asarray(targets)
        self.camids = np.asarray(camids)
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.num_iters = num_iters or max(1, len(self.targets) // batch_size)
        self.seed = seed
        self.epoch = 0
        self.rank, self.world = comm.get_rank(), world
        self.pid_to_indices = defaultdict(list)
        for index, pid in enumerate(self.targets):
            self.pid_to_indices[int(pid)].append(index)
        self.pids = sorted(self.pid_to_indices)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.num_iters * (self.batch_size // self.world)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        needed = self.num_iters * self.batch_size
        stream = []
        while len(stream) < needed:
            one_pass = self._one_pass(rng)
            if not one_pass:
                raise RuntimeError(f"{type(self).__name__} cannot draw a batch from {len(self.targets)} images "
                                   f"(NUM_INSTANCE {self.num_instances}); check the training set")
            # Whole batches only, as the reference's drop_last loader.
            stream += one_pass[: len(one_pass) - len(one_pass) % self.batch_size] or one_pass
        per_rank = self.batch_size // self.world
        for start in range(0, needed, self.batch_size):
            yield from stream[start + self.rank * per_rank: start + (self.rank + 1) * per_rank]

    def _choose(self, rng, candidates, count):
        replace = len(candidates) < count
        return list(rng.choice(candidates, size=count, replace=replace))


class InferenceSampler(Sampler):
    """This rank's contiguous share of ``range(size)``, in order, without padding: the shares of
    all ranks, concatenated in rank order, are exactly ``range(size)``."""

    def __init__(self, size):
        world, rank = comm.get_world_size(), comm.get_rank()
        # Balanced split: every rank has work whenever size >= world.
        self.indices = range(rank * size // world, (rank + 1) * size // world)

    def __len__(self):
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


@SAMPLER_REGISTRY.register()
class PKSampler(EpochBatchSampler):
    """P identities x K images: every identity in random order, K of its images each."""

    def _one_pass(self, rng):
        out = []
        for pid in rng.permutation(self.pids):
            out += [int(i) for i in self._choose(rng, self.pid_to_indices[int(pid)], self.num_instances)]
        return out


@SAMPLER_REGISTRY.register()
class CameraAwareSampler(EpochBatchSampler):
    """The reference's RandomMultipleGallerySampler: a random anchor per identity, then K-1
    images from *other* cameras when the identity has any, else from the same camera; a
    singleton identity contributes its anchor only."""

    def _one_pass(self, rng):
        out = []
        for pid in rng.permutation(self.pids):
            indices = np.asarray(self.pid_to_indices[int(pid)])
            anchor = int(rng.choice(indices))
            out.append(anchor)
            if len(indices) == 1:
                continue
            others = indices[indices != anchor]
            other_cams = others[self.camids[others] != self.camids[anchor]]
            pool = other_cams if len(other_cams) else others
            out += [int(i) for i in self._choose(rng, pool, self.num_instances - 1)]
        return out


@SAMPLER_REGISTRY.register()
class RandomSampler(EpochBatchSampler):
    """Plain shuffling, for methods that do not need identity batches."""

    def _one_pass(self, rng):
        return [int(i) for i in rng.permutation(len(self.targets))]
