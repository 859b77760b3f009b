"""Per-sample, per-part agreement between part and global neighbourhoods (PSC score),
vectorised over samples."""
import torch

from pisl.cluster import knn_self

# Bandwidths of the multi-kernel MMD, as the reference's (examples/maximum_mean_discrepancy.py of
# taoxuefong/Diffusion-reid at 616e7c9).
MMD_SIGMAS = torch.tensor([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 5, 10, 15, 20, 25, 30, 35, 100, 1e3, 1e4, 1e5, 1e6],
                          dtype=torch.float64)


def max_discrepancy(k):
    """The largest value ``mmd_discrepancy`` can take with k neighbours: 19 / k, or 1 when the
    clamp cuts it (k < 19)."""
    return min(len(MMD_SIGMAS) / k, 1.0)


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


def mmd_discrepancy(d_global, d_part, k):
    """The reference's score: clamp(MMD / 2k, 0, 1), where the single-sample multi-kernel MMD
    of the two flattened k x k matrices is 2 sum_s (1 - exp(-d^2 / 2s)), d^2 = ||vec D_g -
    vec D_p||^2; i.e. (19 - sum_s exp(-d^2/2s)) / k, clamped. In [0, max_discrepancy(k)]."""
    d2 = (d_global - d_part).pow(2).flatten(1).sum(1, keepdim=True)
    return ((len(MMD_SIGMAS) - torch.exp(-d2 / (2 * MMD_SIGMAS)).sum(1)) / k).clamp(0, 1)


def jaccard_agreement(nbrs_a, nbrs_b):
    """|A & B| / |A | B| of two k-NN sets per row (PPLR's cross-agreement)."""
    k = nbrs_a.shape[1]
    inter = (nbrs_a.unsqueeze(2) == nbrs_b.unsqueeze(1)).sum(dim=(1, 2)).double()
    return inter / (2 * k - inter)


def consistency_scores(global_feats, part_feats, k=20, method="mmd", knn_backend="auto"):
    """Agreement a[n, p] in [0, 1] between part p's and the global neighbourhood of sample n.

    "mmd": 1 - s / max_discrepancy(k) with s the reference's MMD discrepancy of the normalised
    k x k neighbour-distance matrices (the reference uses s itself, inverting its meaning).
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
            s = mmd_discrepancy(d_global, normalised_neighbour_distances(p_feats, p_nbrs), k)
            scores.append(1 - s / max_discrepancy(k))
        elif method == "jaccard":
            scores.append(jaccard_agreement(g_nbrs, p_nbrs))
        else:
            raise KeyError(f"Unknown PISL.PSC.SCORE '{method}', expected mmd or jaccard")
    return torch.stack(scores, dim=1).float().clamp(0, 1)


def agreement_summary(scores):
    """Rows [part, p10, p50, p90, std, softmax-weight spread] of an N x P agreement matrix.
    The last column is the mean over samples of max_p - min_p of softmax(a): near 0 means label
    refinement weighs the parts almost uniformly, whatever the scores."""
    weights = torch.softmax(scores, dim=1)
    spread = (weights.max(1).values - weights.min(1).values).mean().item()
    q = torch.quantile(scores.float(), torch.tensor([0.1, 0.5, 0.9]), dim=0)
    return [[p, *q[:, p].tolist(), scores[:, p].std().item(), spread] for p in range(scores.shape[1])]
