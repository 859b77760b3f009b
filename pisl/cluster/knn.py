"""k-nearest-neighbour search on L2-normalised features: faiss when installed (GPU index when
faiss-gpu and CUDA are there), else an exact chunked torch search."""
import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def knn_torch(query, base, k, chunk_size=2048):
    """Exact k-NN by squared Euclidean distance, chunked over queries. Returns (dist, index)
    NumPy arrays of shape (Nq, k), nearest first."""
    query, base = torch.as_tensor(query).float(), torch.as_tensor(base).float()
    base_sq = base.pow(2).sum(1)
    dists, idxs = [], []
    for start in range(0, len(query), chunk_size):
        q = query[start: start + chunk_size]
        d = q.pow(2).sum(1, keepdim=True) + base_sq.unsqueeze(0) - 2 * q @ base.t()
        top = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(top.values)
        idxs.append(top.indices)
    return torch.cat(dists).cpu().numpy(), torch.cat(idxs).cpu().numpy()


def knn_faiss(query, base, k):
    faiss = _faiss()
    query = np.ascontiguousarray(torch.as_tensor(query).float().cpu().numpy())
    base = np.ascontiguousarray(torch.as_tensor(base).float().cpu().numpy())
    index = faiss.IndexFlatL2(base.shape[1])
    if torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources"):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), torch.cuda.current_device(), index)
    index.add(base)
    return index.search(query, k)


def knn(query, base, k, backend="auto"):
    """k-NN of every ``query`` row among ``base`` rows: ``backend`` is "faiss", "torch" or
    "auto" (faiss when importable). Returns (squared distances, indices), each (Nq, k)."""
    if k > len(base):
        raise ValueError(f"k={k} neighbours asked among only {len(base)} samples")
    if backend == "faiss" or (backend == "auto" and _faiss() is not None):
        if _faiss() is None:
            raise ImportError("faiss is not installed: pip install faiss-cpu (or faiss-gpu), or use backend 'torch'")
        return knn_faiss(query, base, k)
    if torch.cuda.is_available():
        query, base = torch.as_tensor(query).cuda(), torch.as_tensor(base).cuda()
    return knn_torch(query, base, k)
