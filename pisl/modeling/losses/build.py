import torch.nn as nn

from ...utils import comm
from ...utils.registry import Registry
from .functional import cross_entropy_label_smooth, soft_triplet

LOSS_REGISTRY = Registry("LOSS")


class ReidLoss(nn.Module):
    """A registered loss: ``forward(outputs, batch)`` reads what it needs from the model's
    training outputs and the batch, and returns a scalar already multiplied by its weight, or
    a dict of such scalars (named terms, summed into the total and logged one by one)."""

    @classmethod
    def from_config(cls, cfg):
        return cls()


@LOSS_REGISTRY.register()
class CrossEntropyLoss(ReidLoss):
    """Label-smoothed identity loss on ``outputs["logits"]``."""

    def __init__(self, epsilon=0.1, scale=1.0):
        super().__init__()
        self.epsilon, self.scale = epsilon, scale

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.MODEL.LOSSES.CE.EPSILON, cfg.MODEL.LOSSES.CE.SCALE)

    def forward(self, outputs, batch):
        logits = outputs["logits"]
        return self.scale * cross_entropy_label_smooth(logits, batch["targets"].to(logits.device), self.epsilon)


@LOSS_REGISTRY.register()
class SoftTripletLoss(ReidLoss):
    """Batch-hard soft-margin triplet on the (un-normalised) BN-neck ``outputs["features"]``.
    Under DDP the hardest positive and negative are mined in the global batch, as one process
    would."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.MODEL.LOSSES.TRI.SCALE)

    def forward(self, outputs, batch):
        features = outputs["features"]
        targets = batch["targets"].to(features.device)
        return self.scale * soft_triplet(comm.all_gather_with_grad(features), comm.all_gather_tensor(targets))


def build_losses(cfg):
    return nn.ModuleDict({name: LOSS_REGISTRY.get(name).from_config(cfg) for name in cfg.MODEL.LOSSES.NAMES})


def compute_losses(losses, outputs, batch):
    """``{name: weighted scalar}`` for a ModuleDict of ReidLosses; a loss that returns named
    terms contributes ``name/term`` entries."""
    out = {}
    for name, loss in losses.items():
        value = loss(outputs, batch)
        out.update({f"{name}/{term}": v for term, v in value.items()} if isinstance(value, dict) else {name: value})
    return out
