"""Seeding and device selection: the one place where the run decides where tensors live."""
import functools
import logging
import platform
import random

import numpy as np
import torch

from . import comm

logger = logging.getLogger(__name__)


def seed_all(seed):
    """Seed Python, NumPy and torch (all devices) with one integer."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def resolve_device(name="auto"):
    """Turn ``MODEL.DEVICE`` ("auto", "cpu", "cuda", "cuda:1") into a torch.device.

    Under DDP each process uses the GPU of its local rank.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"MODEL.DEVICE is '{name}' but CUDA is not available; use 'cpu' or 'auto'")
        if name == "cuda" and comm.get_world_size() > 1:
            name = f"cuda:{comm.get_rank() % torch.cuda.device_count()}"
    return torch.device(name)


def processor_description(device):
    """The processor a run computes on, for its log: a CPU's model, instruction set and threads, or
    the GPU's name. Results on the CPU depend on the instruction set (its float rounding changes
    the clusters), so a run's figures are only comparable with the processor beside them."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:  # Linux names the model here; platform.processor() gives "x86_64"
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"


def amp_dtype(cfg):
    """The autocast dtype of SOLVER.AMP (None = fp32) for the run's device."""
    if not cfg.SOLVER.AMP.ENABLED:
        return None
    device = resolve_device(cfg.MODEL.DEVICE)
    if cfg.SOLVER.AMP.DTYPE == "float16" and device.type != "cuda":
        raise ValueError("SOLVER.AMP.DTYPE float16 needs CUDA; use bfloat16 on the CPU")
    if device.type == "cpu":
        _warn_if_cpu_lacks_bf16()
    return getattr(torch, cfg.SOLVER.AMP.DTYPE)


@functools.cache  # once per process
def _warn_if_cpu_lacks_bf16():
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        logger.warning(f"SOLVER.AMP: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bf16 "
                       "instructions (avx512_bf16 / AMX), so bf16 autocast is emulated and much slower than fp32 "
                       "(synthetic demo on an AVX2 CPU: training 8.5x, extraction 22x); it saves memory, not time")


def rng_state():
    """Everything needed to continue a random stream exactly (saved in checkpoints)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # NumPy's key array as a tensor: checkpoints hold only what weights_only loading accepts.
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
