"""numba's compiled kernels beside torch: numba's OpenMP threading layer shares the OpenMP runtime
with torch, and a parallel kernel can leave that runtime's thread count at numba's (every core):
after the heaps' tiled kernel (``heaps._add_both_ways``), torch.get_num_threads() was seen to go
from 1 to 2. torch's float sums change with its thread count, so a run that set one thread a
process would train differently depending on when the kernels ran."""
import functools

import torch


def keeps_torch_threads(function):
    """``function``, after which torch's thread count is what it was before."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        threads = torch.get_num_threads()
        try:
            return function(*args, **kwargs)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
    return call
