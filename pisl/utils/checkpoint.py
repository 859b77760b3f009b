"""Checkpoint files: atomic writes, and loading that tolerates another model's keys."""
import logging
import os
import tempfile

import torch

logger = logging.getLogger(__name__)


def atomic_save(obj, path):
    """Write to a temporary file in the same folder, then rename: a run killed while saving
    leaves the previous checkpoint intact."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def read_checkpoint(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_model_weights(model, path, checkpoint=None):
    """Load ``path`` (a full checkpoint or a bare state dict; ``checkpoint`` if already read)
    into ``model``.

    Keys with another shape (e.g. a classifier sized for another clustering) are skipped with a
    warning; if *no* key fits, the file belongs to another model and this is an error.
    """
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    state = checkpoint.get("model", checkpoint)
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    own = unwrap(model).state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise ValueError(f"{path} holds no weight of this model ({type(unwrap(model)).__name__}): wrong checkpoint?")
    mismatched = [k for k in state if k in own and own[k].shape != state[k].shape]
    missing = [k for k in own if k not in fitting]
    unexpected = [k for k in state if k not in own]
    for what, keys in (("shape mismatch, skipped", mismatched), ("not in checkpoint", missing), ("not in model", unexpected)):
        if keys:
            logger.warning(f"Loading {path}: {len(keys)} keys {what}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
    unwrap(model).load_state_dict(fitting, strict=False)
    logger.info(f"Loaded {len(fitting)}/{len(own)} model tensors from {path}")
