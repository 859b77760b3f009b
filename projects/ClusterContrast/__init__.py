"""Cluster Contrast (Dai et al., ACCV 2022), built from core parts only: the Baseline
meta-architecture with GeM pooling, the core ClusteringHook, and a cluster-memory loss."""
from .cluster_memory import ClusterMemoryLoss, add_cluster_contrast_config  # noqa: F401
