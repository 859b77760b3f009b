"""Checkpoint files: atomic writes, safe reads, and loading that says what did not fit."""
import logging
import os
import pickle
import tempfile
import zipfile

import torch

logger = logging.getLogger(__name__)

# Tensors whose shape follows the data, not the architecture: classifiers sized to a dataset's
# identities or to an epoch's clusters, and losses' per-epoch state (memories, proxies,
# agreement scores), which the clustering hook rebuilds every epoch.
_DATA_SIZED = ("classifier", "losses.")


def atomic_save(obj, path, keep_previous=None):
    """Write to a temporary file in the same folder, then rename: a run killed while saving
    leaves the previous checkpoint intact. With ``keep_previous`` (a path), the file that
    ``path`` held moves there first, so that one bad file cannot cost a run. The file gets the
    mode the umask gives, as ``open`` would (the temporary file's own mode is 0600)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        if keep_previous and os.path.isfile(path):
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def checkpoint_file_problem(key, path):
    """One line when ``path`` (the value of config key ``key``) cannot be a torch checkpoint:
    missing, unreadable, or neither torch's zip format nor a legacy pickle; else None. It
    reads four bytes, so the pre-run check can call it on any file."""
    if os.path.isdir(path):
        return f"{key} '{path}' is a folder: give the checkpoint file in it (e.g. {os.path.join(path, 'model_final.pth')})"
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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, corrupt, or unsafe to unpickle), or
    whose tensors do not fit the model. The message is one line."""


def read_checkpoint(path):
    """Load a checkpoint with ``weights_only=True`` (a pickle of arbitrary objects can run code;
    this toolbox writes only tensors and plain Python values). Errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    problem = checkpoint_file_problem("Checkpoint", path)
    if problem:
        raise CheckpointError(problem)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"Checkpoint {path} holds Python objects other than tensors and plain values, which are not loaded "
            f"because unpickling them can run code. If you trust the file, re-save its state dict: "
            f"torch.save(torch.load(path, weights_only=False)['model'], new_path). ({_first_line(err)})") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        # A file cut short (a full disk, a copy stopped half-way) fails in torch's zip reader,
        # with a RuntimeError or a bare "OSError: [Errno 22] Invalid argument".
        raise CheckpointError(f"Cannot read checkpoint {path} ({os.path.getsize(path)} bytes): the file is truncated "
                              f"or corrupt ({_first_line(err)})") from err


def _first_line(err):
    """The first sentence of an error's message: torch's zip reader adds a paragraph of advice."""
    text = str(err).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(err).__name__


def state_dict_of(checkpoint):
    """The model tensors of a checkpoint (a full one, or a bare state dict), without the
    ``module.`` prefix that a DDP-wrapped model's state dict carries."""
    state = checkpoint.get("model", checkpoint)
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def fit_problem(path, model_name, own, state, partial=False):
    """One line when the tensors of ``state`` cannot load into a model whose state dict is
    ``own`` (name -> tensor; only shapes are read, so a model on the meta device will do), else
    None: every tensor of the architecture must be in the file with its shape, except the
    data-sized ones (classifiers, loss state), unless ``partial``; and something must fit."""
    fitting = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    required = [k for k in own if k not in fitting and not any(part in k for part in _DATA_SIZED)]
    if fitting and (partial or not required):
        return None
    unexpected = [k for k in state if k not in own]
    # PARTIAL_LOAD helps only where some tensors fit; with none, the file is another model.
    hint = (" To load only the tensors that fit (e.g. a Baseline into PISL), set MODEL.PARTIAL_LOAD True."
            if fitting and not partial else "")
    return (f"{path} does not fit this {model_name} model: {len(required)} of its {len(own)} tensors are missing or "
            f"have another shape in the file ({_some(required)}); the file has {len(unexpected)} tensors the model "
            f"does not know ({_some(unexpected)}). Is it a checkpoint of another architecture or config?{hint}")


def load_model_weights(model, path, checkpoint=None, partial=False):
    """Load ``path`` (a full checkpoint or a bare state dict; ``checkpoint`` if already read)
    into ``model``.

    Every tensor of the architecture (backbone, heads, part modules) must be in the file with
    its shape; only data-sized tensors (classifiers, loss state) may differ or be missing, and
    are then skipped with a warning. ``partial=True`` (``MODEL.PARTIAL_LOAD``) loads whatever
    fits, e.g. a Baseline's weights into a PISL model.
    """
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    state = state_dict_of(checkpoint)
    own = unwrap(model).state_dict()
    name = type(unwrap(model)).__name__
    problem = fit_problem(path, name, own, state, partial)
    if problem:
        raise CheckpointError(problem)
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = [k for k in state if k in own and own[k].shape != state[k].shape]
    unexpected = [k for k in state if k not in own]
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
