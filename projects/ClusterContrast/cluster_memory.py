import torch
import torch.nn.functional as F

from pisl.cluster import cluster_centroids
from pisl.config import CfgNode, register_config_extension
from pisl.modeling.losses import LOSS_REGISTRY, ReidLoss
from pisl.utils import comm


@register_config_extension
def add_cluster_contrast_config(cfg):
    cfg.MODEL.LOSSES.CM = CfgNode()
    cfg.MODEL.LOSSES.CM.TEMP = 0.05  # temperature of the contrast against the cluster memory
    cfg.MODEL.LOSSES.CM.MOMENTUM = 0.2  # momentum of the memory's update with each batch feature
    cfg.MODEL.LOSSES.CM.SCALE = 1.0  # weight of ClusterMemoryLoss


def cluster_memory_loss(features, targets, memory, temperature):
    """InfoNCE of L2-normalised features against all cluster centroids."""
    return F.cross_entropy(F.normalize(features, dim=1) @ memory.t() / temperature, targets)


@torch.no_grad()
def momentum_update(memory, features, targets, momentum):
    """A new memory with m_c <- normalize(mu m_c + (1 - mu) f), one instance at a time in batch
    order as the reference's backward does. (Out of place: this step's loss graph still holds
    the old memory.)"""
    memory = memory.clone()
    for f, y in zip(F.normalize(features, dim=1), targets):
        memory[y] = F.normalize(momentum * memory[y] + (1 - momentum) * f, dim=0)
    return memory


@LOSS_REGISTRY.register()
class ClusterMemoryLoss(ReidLoss):
    """Cluster-level contrastive loss with a momentum-updated memory of centroids, re-built
    from the clustering every epoch (through ``on_pseudo_labels``)."""

    def __init__(self, temperature=0.05, momentum=0.2, scale=1.0):
        super().__init__()
        self.temperature, self.momentum, self.scale = temperature, momentum, scale
        self.register_buffer("memory", torch.zeros(0, 0))

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.LOSSES.CM
        return cls(c.TEMP, c.MOMENTUM, c.SCALE)

    def on_pseudo_labels(self, state):
        keep = state.clustered
        centroids = cluster_centroids(state.features["global"][keep], state.labels[keep])
        self.memory = centroids.to(self.memory.device)

    def forward(self, outputs, batch):
        if self.memory.numel() == 0:
            raise RuntimeError("ClusterMemoryLoss has no memory: it needs the ClusteringHook (HOOKS: [ClusteringHook])")
        feats, targets = outputs["features"], batch["targets"].to(self.memory.device)
        loss = cluster_memory_loss(feats, targets, self.memory, self.temperature)
        # Under DDP every process applies every process's samples, so memories stay equal.
        self.memory = momentum_update(self.memory, comm.all_gather_tensor(feats.detach()), comm.all_gather_tensor(targets),
                                      self.momentum)
        return self.scale * loss
