"""MODEL.NORM_BATCH: BatchNorm over a fixed number of images on 1 process or 2 (gloo), ghost
batches within a process, synchronised statistics across processes."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from pisl.config import load_config
from pisl.config.node import ConfigError
from pisl.engine.launch import _free_port
from pisl.modeling.heads.embedding_head import BNNeck
from pisl.modeling.norm import BatchNormOver, apply_norm_batch, norm_plan
from pisl.utils import comm

from pisl.testing import REPO

BATCH = 8
IMAGES = torch.randn(BATCH, 3, 6, 4, generator=torch.Generator().manual_seed(1)) * 2 + 1
TARGET = torch.randn(BATCH, 5, generator=torch.Generator().manual_seed(2))


def small_model():
    """Conv + BN2d + ReLU + pool + linear + a BN neck with its frozen bias: backbone and head alike."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5), BNNeck(5))


def step(model, images, target):
    """One training forward and backward; the loss is a mean over the images given."""
    model.train()
    loss = ((model(images) - target) ** 2).sum(1).mean()
    loss.backward()


def stats_and_grads(model):
    module = getattr(model, "module", model)
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return {"mean": [b.running_mean.clone() for b in bns], "var": [b.running_var.clone() for b in bns],
            "grads": [p.grad.clone() for p in module.parameters() if p.grad is not None]}


def assert_same(a, b):
    for key in a:
        assert len(a[key]) == len(b[key]), key
        for x, y in zip(a[key], b[key]):
            # float32 sums in another order: to 1e-4 of each tensor's scale (some true gradients are 0)
            assert torch.allclose(x, y, atol=1e-4 * max(1.0, x.abs().max().item()), rtol=1e-4), key


def _two_processes(rank, world, url, norm_batch, out):
    dist.init_process_group("gloo", init_method=url, world_size=world, rank=rank)
    try:
        model = apply_norm_batch(small_model(), norm_batch, BATCH // world, world)
        model = comm.create_ddp_model(model)
        rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        for _ in range(2):  # the running statistics of two updates
            model.zero_grad()
            step(model, IMAGES[rows], TARGET[rows])
        if rank == 1:  # the other process: its statistics must be the same as rank 0's
            torch.save(stats_and_grads(model), out)
    finally:
        dist.destroy_process_group()


def run_two(tmp_path, norm_batch):
    mp.spawn(_two_processes, nprocs=2, args=(2, f"tcp://127.0.0.1:{_free_port()}", norm_batch, tmp_path / "r1.pt"))
    return torch.load(tmp_path / "r1.pt")


def one_process(norm_batch):
    model = apply_norm_batch(small_model(), norm_batch, BATCH, 1)
    for _ in range(2):
        model.zero_grad()
        step(model, IMAGES, TARGET)
    return model, stats_and_grads(model)


def test_ghost_batches_on_one_process_equal_two_processes(tmp_path):
    """Ghost batches of 4 in one process of 8 and two DDP processes of 4: the same running
    statistics and the same gradients (DDP averages the two halves' gradients)."""
    model, ghost = one_process(4)
    assert sum(isinstance(m, BatchNormOver) for m in model.modules()) == 2
    assert_same(ghost, run_two(tmp_path, 4))


def test_synchronised_bn_equals_one_big_batch(tmp_path):
    """BN synchronised over two processes of 4 images equals plain BN over all 8 in one process."""
    _, whole = one_process(0)
    assert_same(whole, run_two(tmp_path, 8))


def test_without_the_key_two_processes_differ_from_one(tmp_path):
    """MODEL.NORM_BATCH 0 keeps each process's own statistics: two processes of 4 are not one of 8
    (the check above would pass for nothing if they were)."""
    _, whole = one_process(0)
    with pytest.raises(AssertionError):
        assert_same(whole, run_two(tmp_path, 0))


def test_ghost_batch_hand_case():
    """Two ghost batches [0, 2] and [10, 30] of one channel: each normalised to -1, 1; running
    mean moves by 0.1 of the chunks' mean mean (1 and 20: 10.5), the variance by 0.1 of their
    mean unbiased variance (2 and 200: 101) from 1."""
    bn = BatchNormOver(1, norm_batch=2)
    y = bn.train()(torch.tensor([[0.0], [2.0], [10.0], [30.0]]))
    assert y.view(-1).tolist() == pytest.approx([-1, 1, -1, 1], abs=1e-3)
    assert bn.running_mean.item() == pytest.approx(1.05)
    assert bn.running_var.item() == pytest.approx(0.9 + 10.1)
    assert bn.eval()(torch.tensor([[1.05]])).item() == pytest.approx(0.0, abs=1e-6)  # evaluation: running statistics


def test_conversion_keeps_parameters_state_dict_and_frozen_bias():
    model = small_model()
    keys, neck_bias = list(model.state_dict()), model[6].bias
    apply_norm_batch(model, 4, BATCH, 1)
    assert list(model.state_dict()) == keys and model[6].bias is neck_bias and not model[6].bias.requires_grad


def test_plan_and_config_check():
    assert norm_plan(16, 64, 1) == ("ghost", 1) and norm_plan(64, 16, 4) == ("sync", 4) and norm_plan(0, 64, 4)[0] == "plain"
    with pytest.raises(ValueError, match="MODEL.NORM_BATCH is 48"):
        norm_plan(48, 16, 4)
    with pytest.raises(ConfigError, match="MODEL.NORM_BATCH is 24"):
        load_config(f"{REPO}/configs/Synthetic/baseline.yml", ["MODEL.NORM_BATCH", "24", "SOLVER.IMS_PER_BATCH", "64"])
