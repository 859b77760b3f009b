"""Per-sample, per-part agreement between part and global neighbourhoods (PSC score),
vectorised over samples."""
import torch

from pisl.cluster import knn_self

# Bandwidths of the multi-kernel MMD, as the reference (shared/spec/reference.md 3.4).
MMD_SIGMAS = torch.tensor([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 5, 10, 15, 20, 25, 30, 35, 100, 1e3, 1e4, 1e5, 1e6],
                          dtype=torch.float64)
MAX_DISCREPANCY = 0.95  # (19 - 0) / 20: the largest value the reference's score can take


def neighbours(features, k, knn_backend="auto"):
    """The k nearest neighbours of every row, itself excluded (N x k)."""
    _, idx = knn_self(features, k + 1, backend=knn_backend)
    return torch.as_tensor(idx[:, 1:], dtype=torch.long)


def normalised_neighbour_distances(features, nbrs, chunk=1024):
    """For each sample n, the k x k Euclidean distances among its neighbours' features, divided
    by their max (+1e-8). Returns N x k x k."""
    out = []
    for start in range(0, len(nbrs), chunk):
        group = features[nbrs[start: start + chunk]].double()  # c x k x D
        d = torch.cdist(group, group)
        out.append(d / (d.amax(dim=(1, 2), keepdim=True) + 1e-8))
    return torch.cat(out)


def mmd_discrepancy(d_global, d_part):
    """The reference's single-sample multi-kernel MMD, scaled: (19 - sum_s exp(-d^2/2s)) / 20
    with d^2 = ||vec D_g - vec D_p||^2. In [0, 0.95]."""
    d2 = (d_global - d_part).pow(2).flatten(1).sum(1, keepdim=True)
    return (len(MMD_SIGMAS) - torch.exp(-d2 / (2 * MMD_SIGMAS)).sum(1)) / 20


def jaccard_agreement(nbrs_a, nbrs_b):
    """|A & B| / |A | B| of two k-NN sets per row (PPLR's cross-agreement)."""
    k = nbrs_a.shape[1]
    inter = (nbrs_a.unsqueeze(2) == nbrs_b.unsqueeze(1)).sum(dim=(1, 2)).double()
    return inter / (2 * k - inter)


def consistency_scores(global_feats, part_feats, k=20, method="mmd", knn_backend="auto"):
    """Agreement a[n, p] in [0, 1] between part p's and the global neighbourhood of sample n.

    "mmd": 1 - s / 0.95 with s the reference's MMD discrepancy of the normalised k x k
    neighbour-distance matrices (the reference uses s itself, inverting its meaning).
    "jaccard": the overlap of the two k-NN sets.
    """
    global_feats, part_feats = torch.as_tensor(global_feats).float(), torch.as_tensor(part_feats).float()
    k = min(k, len(global_feats) - 1)
    g_nbrs = neighbours(global_feats, k, knn_backend)
    if method == "mmd":
        d_global = normalised_neighbour_distances(global_feats, g_nbrs)
    scores = []
    for p in range(part_feats.shape[1]):
        p_feats = part_feats[:, p].contiguous()
        p_nbrs = neighbours(p_feats, k, knn_backend)
        if method == "mmd":
            s = mmd_discrepancy(d_global, normalised_neighbour_distances(p_feats, p_nbrs))
            scores.append(1 - s / MAX_DISCREPANCY)
        elif method == "jaccard":
            scores.append(jaccard_agreement(g_nbrs, p_nbrs))
        else:
            raise KeyError(f"Unknown PISL.PSC.SCORE '{method}', expected mmd or jaccard")
    return torch.stack(scores, dim=1).float().clamp(0, 1)
