"""Small helpers around torch.distributed that also work when it is not initialised."""
import torch
import torch.distributed as dist


def is_dist():
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    return dist.get_world_size() if is_dist() else 1


def get_rank():
    return dist.get_rank() if is_dist() else 0


def is_main_process():
    return get_rank() == 0


def synchronize():
    if is_dist() and get_world_size() > 1:
        dist.barrier()


def _collective_device():
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_tensor(tensor):
    """Concatenate a tensor (same shape on every rank) along dim 0 across ranks."""
    if get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_rows(tensor):
    """Concatenate along dim 0 tensors whose row counts differ between ranks (rank order).
    The result is on the tensor's own device."""
    if get_world_size() == 1:
        return tensor
    device = _collective_device()
    local = tensor.to(device)
    counts = all_gather_tensor(torch.tensor([len(local)], device=device)).tolist()
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[: len(local)] = local
    gathered = all_gather_tensor(padded).split(max(counts))
    return torch.cat([rows[:n] for rows, n in zip(gathered, counts)]).to(tensor.device)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward returns this rank's slice of the gradient times the world
    size. Every rank computes the same loss on the gathered batch, so each rank's slice
    gradient is dL/d(own rows); DDP then *averages* parameter gradients over ranks, and the
    factor makes the result sum_r dL/d(rows_r) d(rows_r)/dtheta, the single-process gradient."""

    @staticmethod
    def forward(ctx, tensor):
        ctx.rows = len(tensor)
        return all_gather_tensor(tensor)

    @staticmethod
    def backward(ctx, grad):
        start = get_rank() * ctx.rows
        return grad[start: start + ctx.rows] * get_world_size()


def all_gather_with_grad(tensor):
    """The whole global batch (same rows per rank) for losses that compare samples with each
    other (batch-hard triplet, supervised contrast), with gradients for this rank's rows."""
    if get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def create_ddp_model(model, find_unused_parameters=False):
    """Wrap ``model`` in DistributedDataParallel when more than one process runs, else return
    it. Called again after a module changed a parameter's shape (classifiers re-sized to a new
    cluster count): DDP's gradient buckets are laid out for the shapes seen at wrap time.
    ``find_unused_parameters`` only for a model whose steps leave parameters unused: it costs
    a pass over the autograd graph every iteration."""
    if get_world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused_parameters)


def broadcast_buffers(module, src=0):
    """Copy ``src``'s buffers (BatchNorm running statistics) to every process. Each process
    updates its own in training, so without this every process would extract with other
    statistics than the model that rank 0 saves."""
    if get_world_size() == 1:
        return
    with torch.no_grad():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)


class WaitTimeout(RuntimeError):
    """A process waited at a collective for longer than the process group's timeout."""


def broadcast_object(obj, src=0, waiting_for=None):
    """``obj`` of process ``src`` on every process. ``waiting_for`` (what ``src`` computes
    meanwhile, e.g. "rank 0's clustering"): a receiving process whose wait fails (past the
    group's timeout) raises ``WaitTimeout`` naming it, chained to the backend's error."""
    if get_world_size() == 1:
        return obj
    holder = [obj]
    try:
        dist.broadcast_object_list(holder, src=src)
    except RuntimeError as err:  # gloo and NCCL report a timeout as a DistBackendError
        if waiting_for is None or get_rank() == src:
            raise
        raise WaitTimeout(f"rank {get_rank()} waited for {waiting_for} longer than the processes' timeout") from err
    return holder[0]
