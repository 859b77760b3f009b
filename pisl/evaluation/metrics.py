"""Single-query re-ID metrics (mAP, CMC, mINP) with the Market-1501 protocol, vectorised and
chunked over queries so that MSMT17-size problems never hold a full sort in memory."""
import numpy as np
import torch


def pairwise_distance(query, gallery, metric="euclidean"):
    """Distances between rows. On L2-normalised features "euclidean" is the squared distance
    2 - 2 cos (the reference's ranking), "cosine" is 1 - cos."""
    sim = query @ gallery.t()
    if metric == "cosine":
        return 1 - sim
    if metric == "euclidean":
        return (query.pow(2).sum(1, keepdim=True) + gallery.pow(2).sum(1).unsqueeze(0) - 2 * sim).clamp(min=0)
    raise KeyError(f"Unknown TEST.METRIC '{metric}', expected euclidean or cosine")


def rank_metrics(dist, q_pids, g_pids, q_camids, g_camids, max_rank=10):
    """Per-query metrics for one chunk of rows of a query x gallery distance matrix (torch).

    Gallery entries with the query's identity *and* camera are removed. Returns
    ``(cmc_hits[bool, n x max_rank], ap[n], inp[n], valid[n])``; a query whose remaining gallery
    has no match is not valid and is left out of the means.
    """
    order = torch.argsort(dist, dim=1)
    g_pids_sorted, g_cams_sorted = g_pids[order], g_camids[order]
    same_pid = g_pids_sorted == q_pids.unsqueeze(1)
    keep = ~(same_pid & (g_cams_sorted == q_camids.unsqueeze(1)))
    hits = same_pid & keep
    position = torch.cumsum(keep, dim=1)  # 1-based rank among the kept entries
    cum_hits = torch.cumsum(hits, dim=1)
    num_hits = cum_hits[:, -1]
    valid = num_hits > 0
    ap = ((cum_hits / position.clamp(min=1)) * hits).sum(1) / num_hits.clamp(min=1)
    # The rank of the hardest (last) match, for mINP.
    last_hit_rank = torch.where(hits, position, torch.zeros_like(position)).max(1).values
    inp = num_hits / last_hit_rank.clamp(min=1)
    first_hit_rank = torch.where(hits, position, torch.full_like(position, dist.shape[1] + 1)).min(1).values
    cmc = first_hit_rank.unsqueeze(1) <= torch.arange(1, max_rank + 1, device=dist.device).unsqueeze(0)
    return cmc, ap, inp, valid


def evaluate_rank(query_feats, gallery_feats, q_pids, g_pids, q_camids, g_camids, metric="euclidean",
                  max_rank=10, chunk_size=1024, distmat=None):
    """mAP, CMC@1..max_rank and mINP (all in %) over valid queries.

    Either features (distances computed chunk by chunk) or a precomputed ``distmat`` (e.g. after
    re-ranking) are used; a ``distmat`` that computes its rows when read may cap the chunk with
    its ``rows_per_block`` (``ReRankedDistances``: what its memory budget allows).
    """
    as_tensor = lambda a: torch.as_tensor(np.asarray(a))
    q_pids, g_pids, q_camids, g_camids = map(as_tensor, (q_pids, g_pids, q_camids, g_camids))
    # A chunk's ranking holds about 40 bytes per (query, gallery) pair (distances, the order,
    # sorted ids and cameras, running counts): at most 2^25 pairs keeps it near 1.3 GB, e.g.
    # 408 queries a chunk against MSMT17's 82,161 gallery images.
    chunk_size = min(chunk_size, 2 ** 25 // max(1, len(g_pids)), getattr(distmat, "rows_per_block", chunk_size))
    chunk_size = max(1, chunk_size)
    cmc_all, ap_all, inp_all, valid_all = [], [], [], []
    for start in range(0, len(q_pids), chunk_size):
        rows = slice(start, start + chunk_size)
        if distmat is not None:
            dist = torch.as_tensor(distmat[rows])
        else:
            dist = pairwise_distance(query_feats[rows], gallery_feats, metric)
        cmc, ap, inp, valid = rank_metrics(dist, q_pids[rows], g_pids, q_camids[rows], g_camids, max_rank)
        cmc_all.append(cmc[valid])
        ap_all.append(ap[valid])
        inp_all.append(inp[valid])
        valid_all.append(valid)
    num_valid = int(torch.cat(valid_all).sum())
    if num_valid == 0:
        raise ValueError("No query has a valid gallery match: check the query/gallery split")
    cmc = torch.cat(cmc_all).float().mean(0)
    results = {"mAP": 100 * torch.cat(ap_all).mean().item(), "mINP": 100 * torch.cat(inp_all).mean().item()}
    for k in (1, 5, 10):
        if k <= max_rank:
            results[f"Rank-{k}"] = 100 * cmc[k - 1].item()
    results["num_valid_queries"] = num_valid
    return results
