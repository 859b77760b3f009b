"""k-reciprocal re-ranking (Zhong et al. 2017) of query-gallery distances, with the sparse
Jaccard distance that clustering uses (on query + gallery together)."""
import numpy as np
import torch

from ..cluster import compute_jaccard_distance
from .metrics import pairwise_distance


def re_ranking(query_feats, gallery_feats, k1=20, k2=6, lam=0.3):
    """(1 - lam) * Jaccard + lam * original squared distance, as a query x gallery array."""
    nq = len(query_feats)
    feats = torch.cat([query_feats, gallery_feats]).float()
    jaccard = compute_jaccard_distance(feats, k1, k2)[:nq, nq:].tocoo()
    dense = np.ones((nq, len(gallery_feats)), dtype=np.float32)  # pairs not stored are at 1
    dense[jaccard.row, jaccard.col] = jaccard.data
    original = pairwise_distance(query_feats, gallery_feats).numpy()
    return (1 - lam) * dense + lam * original
