"""Pseudo-labels: DBSCAN on the sparse Jaccard distance, outlier policy, centroids, proxies."""
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.cluster import DBSCAN

from .jaccard import compute_jaccard_distance
from .knn import knn_graph


@dataclass
class Clustering:
    labels: np.ndarray  # (N,) cluster id per sample, -1 for a dropped outlier
    seconds: dict  # wall time per stage

    @property
    def num_clusters(self):
        return int(self.labels.max()) + 1 if (self.labels >= 0).any() else 0


def dbscan_sparse(distance, eps, min_samples=4, n_jobs=-1):
    """DBSCAN on a sparse precomputed distance (absent pairs are farther than any eps < 1).
    Gives the same labels as DBSCAN on the dense matrix."""
    if not 0 < eps < 1:
        raise ValueError(f"eps={eps}: the sparse Jaccard distance needs 0 < eps < 1")
    # Pairs farther than eps are never neighbours; dropping them first spares DBSCAN most of
    # a full matrix (explicit zero distances are kept: they are neighbours). A matrix built
    # with max_distance=eps, as cluster_features builds it, has none to drop.
    if distance.nnz and distance.data.max() > eps:
        coo = distance.tocoo()
        near = coo.data <= eps
        distance = sp.csr_matrix((coo.data[near], (coo.row[near], coo.col[near])), shape=coo.shape)
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed", n_jobs=n_jobs).fit_predict(distance)


def apply_outlier_policy(labels, policy="drop"):
    """"drop": outliers keep -1 and are left out of training (the reference). "singleton":
    each outlier becomes a cluster of its own, numbered after the real clusters."""
    if policy == "drop":
        return labels
    if policy == "singleton":
        labels = labels.copy()
        outliers = labels < 0
        labels[outliers] = labels.max(initial=-1) + 1 + np.arange(outliers.sum())
        return labels
    raise KeyError(f"Unknown outlier policy '{policy}', expected 'drop' or 'singleton'")


def cluster_features(features, eps, k1=30, k2=6, min_samples=4, outliers="drop", knn_result=None, knn_backend="auto",
                     knn_options=None, memory_gb=4.0):
    """L2-normalised features (N x D) -> pseudo-labels, the reference's clustering step.
    ``knn_result`` (k1 columns, from :func:`pisl.cluster.knn_graph`) reuses a search; else
    the search is ``knn_graph(features, k1, backend=knn_backend, **knn_options)``. The Jaccard
    distance keeps within ``memory_gb`` (``CLUSTER.MEMORY_GB``)."""
    seconds = {}
    start = time.perf_counter()
    if knn_result is None:
        knn_result = knn_graph(features, k1, backend=knn_backend, **(knn_options or {}))
        seconds["knn"] = time.perf_counter() - start
    start = time.perf_counter()
    distance = compute_jaccard_distance(features, k1, k2, knn_result=knn_result, max_distance=eps, memory_gb=memory_gb)
    seconds["jaccard"] = time.perf_counter() - start
    start = time.perf_counter()
    labels = dbscan_sparse(distance, eps, min_samples)
    seconds["dbscan"] = time.perf_counter() - start
    return Clustering(apply_outlier_policy(labels, outliers), seconds)


def per_camera_standardised(features, camids, eps=1e-6):
    """Each camera's features shifted to zero mean and scaled to unit std per dimension, then
    L2-normalised. What a camera adds to every image it sees (background, light, colour cast)
    is removed before clustering, so that clusters can span cameras instead of following them
    (camera-based normalisation, as in Zhuang et al., ECCV 2020, applied to the features)."""
    features = torch.as_tensor(features).float()
    camids = torch.as_tensor(np.asarray(camids), device=features.device)
    out = torch.empty_like(features)
    for cam in camids.unique():
        mask = camids == cam
        group = features[mask]
        out[mask] = (group - group.mean(0)) / (group.std(0, unbiased=False) + eps)
    return F.normalize(out, dim=1)


def cluster_centroids(features, labels):
    """L2-normalised mean feature of each cluster (C x D); outliers (-1) ignored."""
    features = torch.as_tensor(features).float()
    labels = torch.as_tensor(labels)
    keep = labels >= 0
    num = int(labels.max()) + 1
    sums = torch.zeros(num, features.shape[1]).index_add_(0, labels[keep], features[keep])
    return F.normalize(sums, dim=1)


def camera_proxies(features, labels, camids):
    """One proxy per (cluster, camera) pair present: the L2-normalised mean feature of the
    cluster's members seen by that camera. Returns (proxies P x D, proxy cluster ids, proxy
    camera ids), ordered by cluster then camera."""
    features = torch.as_tensor(features).float()
    labels, camids = np.asarray(labels), np.asarray(camids)
    keep = labels >= 0
    pairs, inverse = np.unique(np.stack([labels[keep], camids[keep]], 1), axis=0, return_inverse=True)
    sums = torch.zeros(len(pairs), features.shape[1])
    sums.index_add_(0, torch.as_tensor(inverse.ravel()), features[torch.as_tensor(keep)])
    return F.normalize(sums, dim=1), torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
