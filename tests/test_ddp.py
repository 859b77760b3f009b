"""Multi-process training and evaluation (2 gloo processes on the CPU) against one process."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from pisl.config import import_projects
from pisl.engine.launch import _free_port
from pisl.modeling.losses.functional import soft_triplet
from pisl.utils import comm

from pisl.testing import REPO, TINY, results, train_net

import_projects(["projects.PISL"])
from projects.PISL.losses import supervised_contrastive  # noqa: E402

# A batch where every identity has samples on both ranks' halves, so that the hardest
# positive and negative of many anchors lie in the other process's half.
FEATURES = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
TARGETS = torch.tensor([0, 1, 2, 3, 1, 0, 3, 2])
LOSSES = {"soft_triplet": soft_triplet, "supervised_contrastive": supervised_contrastive}


def _global_batch_grads(rank, world, url, loss_name, out):
    dist.init_process_group("gloo", init_method=url, world_size=world, rank=rank)
    try:
        torch.manual_seed(0)
        model = comm.create_ddp_model(nn.Linear(5, 4))
        rows = slice(rank * 4, rank * 4 + 4)
        feats = comm.all_gather_with_grad(model(FEATURES[rows]))
        loss = LOSSES[loss_name](feats, comm.all_gather_tensor(TARGETS[rows]))
        loss.backward()
        if rank == 0:
            torch.save({"loss": loss.detach(), "grad": model.module.weight.grad}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_batch_losses_see_the_global_batch_under_ddp(loss_name, tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(5, 4)
    loss = LOSSES[loss_name](model(FEATURES), TARGETS)
    loss.backward()
    mp.spawn(_global_batch_grads, nprocs=2, args=(2, f"tcp://127.0.0.1:{_free_port()}", loss_name, tmp_path / "r0.pt"))
    ddp = torch.load(tmp_path / "r0.pt")
    assert ddp["loss"].item() == pytest.approx(loss.item(), abs=1e-6)
    assert torch.allclose(ddp["grad"], model.weight.grad, atol=1e-6)


def _gather_rows(rank, world, url, out):
    dist.init_process_group("gloo", init_method=url, world_size=world, rank=rank)
    try:
        local = torch.arange(rank * 3 + 1, dtype=torch.float32).view(-1, 1) + 10 * rank  # 1 row, then 4 rows
        torch.save(comm.all_gather_rows(local), out / f"r{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_all_gather_rows_with_unequal_shares(tmp_path):
    mp.spawn(_gather_rows, nprocs=2, args=(2, f"tcp://127.0.0.1:{_free_port()}", tmp_path))
    expected = torch.tensor([[0.0], [10.0], [11.0], [12.0], [13.0]])
    for rank in range(2):
        assert torch.equal(torch.load(tmp_path / f"r{rank}.pt"), expected)


def _saved_labels(out, epoch):
    return np.load(os.path.join(out, "pseudo_labels", f"epoch_{epoch:03d}.npz"))["labels"]


@pytest.mark.parametrize("config, extra", [("projects/PISL/configs/demo.yml", []),
                                           ("projects/PISL/configs/demo.yml", ["PISL.DIFFUSION.BOXES", "affine",
                                                                                "PISL.DIFFUSION.ANCHORS", "stripes",
                                                                                             "PISL.SCD.W_BOUND", "0"]),
                                           ("projects/ClusterContrast/configs/demo.yml", [])],
                         ids=["pisl_partition", "pisl_published_boxes", "cluster_contrast"])
def test_unsupervised_two_processes_match_one(config, extra, synthetic_root, tmp_path):
    """Both runs cluster the same untrained model: one process and two sharded processes must
    find the same first pseudo-labels. Training then differs (per-process BN statistics and
    augmentation), so the 2-process run is checked for training every epoch (a later
    clustering re-sizes the classifiers of a model DDP already wrapped) with valid metrics, and
    the evaluation itself is compared with --eval-only on one and two processes."""
    overrides = ["SOLVER.MAX_EPOCH", "3", "SOLVER.ITERS_PER_EPOCH", "3", "CLUSTER.EPS", "0.05",
                 "CLUSTER.MIN_SAMPLES", "2", "CLUSTER.OUTLIERS", "singleton", *extra]
    one, two = tmp_path / "one", tmp_path / "two"
    train_net(one, synthetic_root, config=config, overrides=overrides)
    train_net(two, synthetic_root, ["--num-gpus", "2"], config=config, overrides=overrides)
    labels_one, labels_two = _saved_labels(one, 0), _saved_labels(two, 0)
    assert labels_one.max() >= 1 and np.array_equal(labels_one, labels_two)
    assert "epoch 2 iter 3/3" in (two / "log.txt").read_text()
    history = json.loads((two / "pseudo_labels" / "history.json").read_text())
    # So the classifiers were re-sized under DDP at least once. Three clusterings, not two: on an
    # AVX512 CPU the first two gave the same count (81, 81), on AVX2 they did not.
    clusters = [h["clusters"] for h in history]
    assert len(set(clusters)) > 1, clusters
    assert results(two)["num_valid_queries"] == 20

    weights = ["MODEL.WEIGHTS", str(two / "model_final.pth")]
    train_net(tmp_path / "eval1", synthetic_root, ["--eval-only"], config=config, overrides=overrides + weights)
    train_net(tmp_path / "eval2", synthetic_root, ["--eval-only", "--num-gpus", "2"], config=config,
              overrides=overrides + weights)
    one_proc, two_proc = results(tmp_path / "eval1", "eval_results.json"), results(tmp_path / "eval2", "eval_results.json")
    assert one_proc.keys() == two_proc.keys()
    for key in one_proc:
        assert two_proc[key] == pytest.approx(one_proc[key], abs=1e-4), key
    # The saved model is the evaluated one: re-evaluating model_final reproduces the run's own
    # final table (before: each process extracted with its own BatchNorm statistics).
    run = results(two)
    for key in one_proc:
        assert one_proc[key] == pytest.approx(run[key], abs=1e-4), key


def test_torchrun_two_nodes_give_the_two_process_table(synthetic_root, tmp_path):
    """Multi-node: two torchrun agents on this host (node ranks from the c10d rendezvous), one
    process each, join one group through ``launch`` and give the final table of --num-gpus 2.
    One thread per process in both runs: torchrun's default, and the same float sums."""
    config = "projects/PISL/configs/demo.yml"
    overrides = [*TINY, "DATASETS.ROOT", synthetic_root, "SOLVER.MAX_EPOCH", "2", "SOLVER.ITERS_PER_EPOCH", "3",
                 "CLUSTER.EPS", "0.05", "CLUSTER.MIN_SAMPLES", "2", "CLUSTER.OUTLIERS", "singleton"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = [os.path.join(REPO, "tools", "train_net.py"), "--config-file", os.path.join(REPO, config), *overrides]
    spawned = tmp_path / "spawned"
    subprocess.run([sys.executable, *script, "OUTPUT_DIR", str(spawned), "--num-gpus", "2"], env=env, check=True,
                   capture_output=True, timeout=900)
    nodes = tmp_path / "nodes"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "pisl-test"]
    agents = [subprocess.Popen([*torchrun, *script, "OUTPUT_DIR", str(nodes)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [agent.communicate(timeout=900)[0] for agent in agents]
    assert all(agent.returncode == 0 for agent in agents), outputs[0][-3000:] + outputs[1][-3000:]
    assert os.path.isfile(nodes / "log.rank1.txt")  # both processes were one group
    assert json.loads((nodes / "results.json").read_text()) == json.loads((spawned / "results.json").read_text())


SLOW_CLUSTERING = '''
"""Test helper: rank 0's clustering takes SECONDS longer (the other ranks wait at the label broadcast)."""
import time

import pisl.engine.cluster_hook as cluster_hook

SECONDS = {seconds}
_cluster_features = cluster_hook.cluster_features


def slow_cluster_features(*args, **kwargs):
    time.sleep(SECONDS)
    return _cluster_features(*args, **kwargs)


cluster_hook.cluster_features = slow_cluster_features
'''


def test_a_clustering_longer_than_the_timeout_stops_with_one_line_and_the_key_lets_it_finish(
        synthetic_root, tmp_path, monkeypatch):
    """Rank 0 clusters for 30 s while rank 1 waits at the label broadcast: with a 15 s timeout
    (DIST.TIMEOUT_MINUTES 0.25; the ranks' other waits are far shorter, even on a shared CPU)
    the run stops, exit 1, with one line naming the key; with 1 minute it trains to the end."""
    (tmp_path / "slow_clustering.py").write_text(SLOW_CLUSTERING.format(seconds=30))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    config = "projects/ClusterContrast/configs/demo.yml"
    overrides = ["IMPORTS", '["projects.ClusterContrast", "slow_clustering"]', "SOLVER.MAX_EPOCH", "1",
                 "CLUSTER.EPS", "0.05", "CLUSTER.MIN_SAMPLES", "2", "CLUSTER.OUTLIERS", "singleton", "DIST.TIMEOUT_MINUTES"]
    proc = train_net(tmp_path / "short", synthetic_root, ["--num-gpus", "2"], config=config, overrides=[*overrides, "0.25"],
                     check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "rank 1 waited for rank 0's clustering" in errors[0], proc.stderr[-2000:]
    assert "DIST.TIMEOUT_MINUTES" in errors[0] and "Traceback" not in proc.stderr
    assert "terminate called" not in proc.stderr, proc.stderr[-2000:]  # the waiting rank left cleanly
    train_net(tmp_path / "long", synthetic_root, ["--num-gpus", "2"], config=config, overrides=[*overrides, "1"])
    assert (tmp_path / "long" / "results.json").is_file()
