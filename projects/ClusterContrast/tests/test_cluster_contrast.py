import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from pisl.config import get_cfg, import_projects
from pisl.engine import DefaultTrainer, TrainingError

from pisl.testing import REPO, SHARED_DATA, TINY, requires_cuhk03, requires_mobilenet_weights, results, train_net

import_projects(["projects.ClusterContrast"])
from projects.ClusterContrast.cluster_memory import cluster_memory_loss, momentum_update  # noqa: E402

CC_DEMO = "projects/ClusterContrast/configs/demo.yml"


def test_cluster_memory_loss_hand_computed():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    feats = torch.tensor([[2.0, 0.0]])  # normalised: [1, 0]; logits [1, 0] / 0.5
    loss = cluster_memory_loss(feats, torch.tensor([0]), memory, temperature=0.5)
    assert loss.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)))


def test_momentum_update_is_sequential_and_out_of_place():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    new = momentum_update(memory, torch.tensor([[0.0, 3.0], [0.0, 1.0]]), torch.tensor([0, 0]), momentum=0.5)
    first = torch.nn.functional.normalize(torch.tensor([0.5, 0.5]), dim=0)
    second = torch.nn.functional.normalize(0.5 * first + 0.5 * torch.tensor([0.0, 1.0]), dim=0)
    assert torch.allclose(new[0], second) and torch.equal(new[1], memory[1])
    assert memory[0].tolist() == [1.0, 0.0]


def _cfg(root, out, *overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, CC_DEMO))
    cfg.merge_from_list(TINY + ["DATASETS.ROOT", root, "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCH", "1", *overrides])
    return cfg


def test_hook_swaps_loader_and_informs_modules(synthetic_root, tmp_path):
    trainer = DefaultTrainer(_cfg(synthetic_root, tmp_path, "CLUSTER.EPS", "0.05", "CLUSTER.MIN_SAMPLES", "2",
                                  "CLUSTER.OUTLIERS", "singleton"))
    assert trainer.train_loader is None  # unsupervised: no loader over true labels
    trainer.train()
    hook = next(h for h in trainer.hooks if type(h).__name__ == "ClusteringHook")
    labels = hook.labels
    assert labels.max() >= 1
    items = trainer.train_loader.dataset.items
    clustered = np.flatnonzero(labels >= 0)
    assert [y for _, y, _ in items] == labels[clustered].tolist()
    assert [p for p, _, _ in items] == [trainer.train_items[i][0] for i in clustered]
    memory = trainer.model.losses["ClusterMemoryLoss"].memory
    assert memory.shape == (labels.max() + 1, trainer.model.backbone.out_channels)
    assert torch.equal(hook.state_dict()["labels"], torch.from_numpy(labels)) and hook.history[0]["clusters"] == labels.max() + 1


@pytest.mark.parametrize("eps, advice", [("0.0001", "every image is an outlier. Raise CLUSTER.EPS"),
                                         ("0.99", "a single cluster .* holds 96 of 96 images: lower CLUSTER.EPS")])
def test_degenerate_clustering_fails_with_the_right_advice(eps, advice, synthetic_root, tmp_path, caplog):
    cfg = _cfg(synthetic_root, tmp_path, "CLUSTER.EPS", eps, "SOLVER.MAX_EPOCH", "5", "CLUSTER.MAX_DEGENERATE_EPOCHS", "2")
    trainer = DefaultTrainer(cfg)
    with pytest.raises(TrainingError, match=advice):
        trainer.train()
    assert "this epoch trains nothing" in caplog.text and trainer.epoch == 1
    assert torch.load(tmp_path / "last_checkpoint.pth", weights_only=True)["epoch"] == 1  # epoch 0 kept


def test_degenerate_run_exits_non_zero_without_results(synthetic_root, tmp_path):
    proc = train_net(tmp_path, synthetic_root, config=CC_DEMO, check=False,
                     overrides=["CLUSTER.EPS", "0.0001", "SOLVER.MAX_EPOCH", "5", "CLUSTER.MAX_DEGENERATE_EPOCHS", "1"])
    assert proc.returncode == 1 and "Raise CLUSTER.EPS" in proc.stdout + proc.stderr
    assert not (tmp_path / "results.json").exists() and "Final results" not in (tmp_path / "log.txt").read_text()


def test_run_with_an_untrained_epoch_writes_results_and_exits_3(synthetic_root, tmp_path):
    """One epoch, no usable cluster: it trains nothing, evaluates, and says so (before: exit 0)."""
    proc = train_net(tmp_path, synthetic_root, config=CC_DEMO, check=False,
                     overrides=["CLUSTER.EPS", "0.0001", "SOLVER.MAX_EPOCH", "1"])
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert (tmp_path / "results.json").exists()
    log = (tmp_path / "log.txt").read_text()
    assert "Epoch 0 trains no iteration" in log and "did not train as configured: epochs [0]" in log


def test_unreadable_training_images_are_left_out_with_a_warning(synthetic_root, tmp_path, caplog):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    train_dir = next((root / "synthetic").iterdir()) / "bounding_box_train"
    broken = sorted(train_dir.iterdir())[:2]
    for path in broken:
        path.write_bytes(b"not an image")
    trainer = DefaultTrainer(_cfg(str(root), tmp_path / "out", "CLUSTER.EPS", "0.05", "CLUSTER.MIN_SAMPLES", "2",
                                  "CLUSTER.OUTLIERS", "singleton"))
    trainer.train()
    hook = next(h for h in trainer.hooks if type(h).__name__ == "ClusteringHook")
    assert sorted(hook.unreadable) == [str(p) for p in broken] and len(hook.labels) == len(trainer.train_items) - 2
    assert "2 of 96 training images could not be read and are left out" in caplog.text


def test_unsupervised_resume_matches_uninterrupted(synthetic_root, tmp_path):
    # Kill-and-resume is covered for the supervised path in test_train_e2e; here a resumed
    # unsupervised run re-clusters from the restored model and must end identically.
    full, part = tmp_path / "full", tmp_path / "part"
    extra = ["CLUSTER.EPS", "0.05", "CLUSTER.MIN_SAMPLES", "2", "CLUSTER.OUTLIERS", "singleton"]
    train_net(full, synthetic_root, config=CC_DEMO, overrides=extra)
    train_net(part, synthetic_root, config=CC_DEMO, overrides=extra + ["SOLVER.MAX_EPOCH", "2"])
    train_net(part, synthetic_root, ["--resume"], config=CC_DEMO, overrides=extra)
    assert results(part) == results(full)
    log = (part / "log.txt").read_text()
    assert "Resuming from" in log and "Clustering before epoch 2" in log and "Clustering before epoch 1" in log


@requires_cuhk03
@requires_mobilenet_weights
def test_cluster_contrast_short_run_on_cuhk03(tmp_path):
    train_net(tmp_path, SHARED_DATA, config="projects/ClusterContrast/configs/cuhk03np.yml",
              overrides=["MODEL.BACKBONE.PRETRAIN_PATH", os.path.join(SHARED_DATA, "..", "weights", "mobilenet_v2_imagenet.pth"),
                         "INPUT.SIZE_TRAIN", "[128, 64]", "INPUT.SIZE_TEST", "[128, 64]",
                         "SOLVER.ITERS_PER_EPOCH", "3", "SOLVER.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "2"])
    with open(tmp_path / "results.json") as f:
        res = json.load(f)["CUHK03NP"]
    assert res["num_valid_queries"] > 1300 and 0 < res["mAP"] < 100
    log = (tmp_path / "log.txt").read_text()
    assert "Clustering before epoch 0" in log and "multi-camera clusters %" in log
