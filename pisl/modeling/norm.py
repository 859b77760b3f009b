"""BatchNorm over a fixed number of images, whatever the number of processes (``MODEL.NORM_BATCH``).

Re-ID results depend on how many images each BatchNorm layer normalises over in training: the
reference codes wrap their model in ``nn.DataParallel``, so on 4 GPUs each layer sees a quarter
of the batch. ``BatchNormOver`` makes that number a setting: ghost batches within a process that
holds more images than it (contiguous chunks, as DataParallel scatters a batch), statistics
summed across a group of processes that each hold fewer (a synchronised BN on any backend,
gloo included), plain BN when they match. Under several processes the running statistics are
averaged over all of them after every update, so that one process with ghost batches and
several processes end with the same statistics. Evaluation uses the running statistics, as
plain BN does; the state dict is plain BN's, so checkpoints move freely between settings.
"""
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..utils import comm


def differentiable_all_reduce(tensor, group=None):
    """The sum of ``tensor`` over ``group``, with the gradient of that sum (the sum of the
    upstream gradients of every process)."""
    return _AllReduceSum.apply(tensor, group)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        tensor = tensor.clone()
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class BatchNormOver(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics come from ``norm_batch`` images: ghost batches of that
    many when a forward holds more, statistics summed over ``group`` (a process group of
    norm_batch / process batch processes) when it holds fewer."""

    def __init__(self, num_features, norm_batch, group=None, eps=1e-5, momentum=0.1, affine=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats=True)
        self.norm_batch, self.group = norm_batch, group

    @classmethod
    def replacing(cls, bn, norm_batch, group=None):
        """A BatchNormOver that shares ``bn``'s parameters (frozen ones stay frozen) and copies its
        running statistics."""
        new = cls(bn.num_features, norm_batch, group, bn.eps, bn.momentum, bn.affine)
        if bn.affine:
            new.weight, new.bias = bn.weight, bn.bias
        new.running_mean.copy_(bn.running_mean)
        new.running_var.copy_(bn.running_var)
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
        return new.to(bn.running_mean.device)

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"BatchNormOver expects N x C (x ...) input, got {x.dim()}D")

    def _factor(self):
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        if self.group is not None:
            y = self._synchronised(x)
        elif x.shape[0] % self.norm_batch == 0:
            y = self._ghost(x)
        else:
            raise ValueError(f"MODEL.NORM_BATCH is {self.norm_batch}, but a training forward holds {x.shape[0]} "
                             "images: it must be a multiple of it")
        self._average_running_stats()
        return y

    def _ghost(self, x):
        """Each contiguous chunk of ``norm_batch`` images normalised by its own statistics; the
        running statistics move by the mean of the chunks' (one update). One chunk is plain BN.
        The running statistics are updated through copies, so that averaging them over processes
        afterwards does not touch what autograd saved."""
        splits, c, rest = x.shape[0] // self.norm_batch, x.shape[1], x.shape[2:]
        grouped = x.reshape(splits, self.norm_batch, c, *rest).transpose(0, 1).reshape(self.norm_batch, splits * c, *rest)
        mean, var = self.running_mean.repeat(splits), self.running_var.repeat(splits)
        weight = self.weight.repeat(splits) if self.affine else None
        bias = self.bias.repeat(splits) if self.affine else None
        y = F.batch_norm(grouped, mean, var, weight, bias, True, self._factor(), self.eps)
        with torch.no_grad():
            self.running_mean.copy_(mean.view(splits, c).mean(0))
            self.running_var.copy_(var.view(splits, c).mean(0))
        return y.reshape(self.norm_batch, splits, c, *rest).transpose(0, 1).reshape(x.shape)

    def _synchronised(self, x):
        """Statistics of the images of every process in ``group``, summed with a differentiable
        all-reduce, so that the gradient is the one of a single batch of all of them."""
        dims = [0] + list(range(2, x.dim()))
        c, shape = x.shape[1], [1, x.shape[1]] + [1] * (x.dim() - 2)
        # Sums about the running mean (the same on every process), not about 0: E[x^2] - E[x]^2
        # then cancels far less when the mean is large against the spread.
        shift = self.running_mean.detach().clone()
        centred = x - shift.view(shape)
        count = x.new_full((1,), x.numel() / c)
        stats = differentiable_all_reduce(torch.cat([centred.sum(dims), (centred * centred).sum(dims), count]),
                                          group=self.group)
        total = stats[-1]
        offset = stats[:c] / total
        mean = shift + offset
        var = (stats[c:2 * c] / total - offset * offset).clamp(min=0)
        with torch.no_grad():
            factor = self._factor()
            self.running_mean.mul_(1 - factor).add_(factor * mean.detach())
            self.running_var.mul_(1 - factor).add_(factor * var.detach() * total / (total - 1).clamp(min=1))
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y

    def _average_running_stats(self):
        """Every process's running statistics become their mean over all processes: each update is
        linear in the batch statistics, so this equals one process that saw every group's."""
        if comm.get_world_size() == 1:
            return
        with torch.no_grad():
            both = torch.cat([self.running_mean, self.running_var])
            dist.all_reduce(both)
            both /= comm.get_world_size()
            self.running_mean.copy_(both[:self.num_features])
            self.running_var.copy_(both[self.num_features:])


def norm_plan(norm_batch, process_batch, world_size):
    """(kind, group size) of ``MODEL.NORM_BATCH`` for ``process_batch`` images a process and
    ``world_size`` processes: ("plain", 1), ("ghost", 1) or ("sync", processes a group).
    Raises ValueError naming the key when the numbers do not fit."""
    if norm_batch <= 0 or norm_batch == process_batch:
        return "plain", 1
    if process_batch % norm_batch == 0:
        return "ghost", 1
    size = norm_batch // process_batch
    if norm_batch % process_batch or world_size % size:
        raise ValueError(f"MODEL.NORM_BATCH is {norm_batch} with {process_batch} images in each of {world_size} "
                         "process(es): it must divide a process's images, or be a multiple of them that spans a "
                         "whole number of groups of processes")
    return "sync", size


def describe(norm_batch, process_batch, world_size):
    """One line for the log: what each BatchNorm layer normalises over in training."""
    kind, size = norm_plan(norm_batch, process_batch, world_size)
    per = f"{process_batch} image(s) in each of {world_size} process(es)"
    if kind == "ghost":
        return f"BatchNorm: each layer normalises over {norm_batch} images (ghost batches of the {per})"
    if kind == "sync":
        return f"BatchNorm: each layer normalises over {norm_batch} images (synchronised over {size} processes of {per})"
    return (f"BatchNorm: each layer normalises over the {process_batch} images of its process ({per}"
            f"{'' if norm_batch > 0 else '; MODEL.NORM_BATCH 0'})")


def apply_norm_batch(model, norm_batch, process_batch, world_size):
    """Replace every BatchNorm layer of ``model`` by a BatchNormOver that normalises over
    ``norm_batch`` images (``norm_plan``); nothing for 0 on one process. Returns the model."""
    kind, size = norm_plan(norm_batch, process_batch, world_size)
    if norm_batch <= 0 or (kind == "plain" and world_size == 1):
        return model
    group = None
    if kind == "sync":  # every process makes every group, in the same order
        rank = comm.get_rank()
        for start in range(0, world_size, size):
            made = dist.new_group(list(range(start, start + size)))
            group = made if start <= rank < start + size else group
    norm = norm_batch if kind != "sync" else process_batch

    def convert(module):
        for name, child in module.named_children():
            if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
                setattr(module, name, BatchNormOver.replacing(child, norm, group))
            else:
                convert(child)
    convert(model)
    return model
