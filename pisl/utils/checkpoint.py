"""Checkpoint files: atomic writes, safe reads, and loading that says what did not fit."""
import logging
import os
import pickle
import tempfile

import torch

logger = logging.getLogger(__name__)

# Tensors whose shape follows the data, not the architecture: classifiers sized to a dataset's
# identities or to an epoch's clusters, and losses' per-epoch state (memories, proxies,
# agreement scores), which the clustering hook rebuilds every epoch.
_DATA_SIZED = ("classifier", "losses.")


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


def checkpoint_file_problem(key, path):
    """One line when ``path`` (the value of config key ``key``) cannot be a torch checkpoint:
    missing, unreadable, or neither torch's zip format nor a legacy pickle; else None. It
    reads four bytes, so the pre-run check can call it on any file."""
    if not os.path.isfile(path):
        return f"{key} '{path}' does not exist"
    if not os.access(path, os.R_OK):
        return f"{key} '{path}' is not readable"
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK..); torch before 1.6 wrote a pickle (protocol byte 0x80).
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        return (f"{key} '{path}' is not a torch checkpoint ({os.path.getsize(path)} bytes, starting with {head!r}); "
                "give a .pth file written by this toolbox or torch.save")
    return None


def read_checkpoint(path):
    """Load a checkpoint with ``weights_only=True`` (a pickle of arbitrary objects can run code;
    this toolbox writes only tensors and plain Python values). Errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    problem = checkpoint_file_problem("Checkpoint", path)
    if problem:
        raise ValueError(problem)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"Checkpoint {path} holds Python objects other than tensors and plain values, which are "
                         f"not loaded because unpickling them can run code. If you trust the file, re-save "
                         f"its state dict: torch.save(torch.load(path, weights_only=False)['model'], new_path). "
                         f"({err})") from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"Cannot read checkpoint {path} ({os.path.getsize(path)} bytes): {err}. "
                         "The file is truncated or is not a torch checkpoint.") from err


def load_model_weights(model, path, checkpoint=None, partial=False):
    """Load ``path`` (a full checkpoint or a bare state dict; ``checkpoint`` if already read)
    into ``model``.

    Every tensor of the architecture (backbone, heads, part modules) must be in the file with
    its shape; only data-sized tensors (classifiers, loss state) may differ or be missing, and
    are then skipped with a warning. ``partial=True`` (``MODEL.PARTIAL_LOAD``) loads whatever
    fits, e.g. a Baseline's weights into a PISL model.
    """
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    state = checkpoint.get("model", checkpoint)
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    own = unwrap(model).state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = [k for k in state if k in own and own[k].shape != state[k].shape]
    missing = [k for k in own if k not in fitting]
    unexpected = [k for k in state if k not in own]
    name = type(unwrap(model)).__name__
    required = [k for k in missing if not any(part in k for part in _DATA_SIZED)]
    if not fitting or (required and not partial):
        raise ValueError(
            f"{path} does not fit this {name} model: {len(required)} of its {len(own)} tensors are missing or have "
            f"another shape in the file ({_some(required)}); the file has {len(unexpected)} tensors the model does "
            f"not know ({_some(unexpected)}). Is it a checkpoint of another architecture or config? To load only "
            f"the tensors that fit, set MODEL.PARTIAL_LOAD True.")
    absent = [k for k in own if k not in state]  # the mismatched ones are reported once, above
    # Classifiers and loss state follow the data (a dataset's identities, an epoch's clusters):
    # that they differ is expected and worth one quiet line, not a warning.
    data_sized = [k for k in mismatched + absent if any(part in k for part in _DATA_SIZED)]
    if data_sized:
        logger.info(f"Loading {path}: {len(data_sized)} data-sized tensors (classifiers, loss state) not loaded; "
                    f"they are rebuilt from the data: {_some(data_sized, 4)}")
    for what, keys in (("shape mismatch, skipped", mismatched), ("not in checkpoint", absent), ("not in model", unexpected)):
        keys = [k for k in keys if k not in data_sized]
        if keys:
            logger.warning(f"Loading {path}: {len(keys)} keys {what}: {_some(keys)}")
    unwrap(model).load_state_dict(fitting, strict=False)
    logger.info(f"Loaded {len(fitting)}/{len(own)} model tensors from {path}")


def _some(keys, count=8):
    return ", ".join(keys[:count]) + (" ..." if len(keys) > count else "") if keys else "none"
