"""PISL model, training and configs: gradients, P = 2 / 4, the paper configs on stand-in data,
and a short run on real data."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pisl.config import load_config
from pisl.engine import PseudoLabels, notify_pseudo_labels
from pisl.modeling import build_model
from pisl.solver import build_optimizer
from projects.PISL.box_stats import box_statistics

from pisl.testing import (MOBILENET_WEIGHTS, REPO, SHARED_DATA, make_synthetic, requires_cuhk03, requires_mobilenet_weights,
                          train_net)

PISL_DEMO = "projects/PISL/configs/demo.yml"


def _demo_cfg(*overrides):
    return load_config(os.path.join(REPO, PISL_DEMO), ["MODEL.DEVICE", "cpu", *overrides])


def _pseudo_labels(model, images, labels, camids):
    model.eval()
    feats = model.cluster_features({"images": images})
    model.train()
    n = len(labels)
    return PseudoLabels(0, feats, np.asarray(labels), np.asarray(camids), np.arange(n), int(max(labels)) + 1)


def test_gradients_reach_stn_and_denoiser():
    torch.manual_seed(0)
    model = build_model(_demo_cfg("PISL.NUM_PARTS", "2"))
    images = torch.rand(8, 3, 64, 32)
    labels, cams = [0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 0, 1, 0, 1]
    notify_pseudo_labels(model, _pseudo_labels(model, images, labels, cams))
    batch = {"images": images, "targets": torch.tensor(labels), "camids": torch.tensor(cams), "index": torch.arange(8)}
    losses = model(batch)
    assert set(losses) == {"PSCLoss/global", "PSCLoss/part_ce", "PSCLoss/part_kl", "SoftTripletLoss",
                           "CameraContrastLoss", "SCDLoss/noise", "SCDLoss/consistency", "SCDLoss/contrast",
                           "SCDLoss/bound"}  # the partition's share barrier, on by default
    sum(losses.values()).backward()
    gen = model.part_generator
    for name, param in [("stn last fc", gen.stn.features[-1].weight), ("stn last fc bias", gen.stn.features[-1].bias),
                        ("denoiser out", gen.denoiser.net[-1].weight)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # The last FC starts at weight 0 (stripes), so the conv is reached from the second step.
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    sum(model(batch).values()).backward()
    assert gen.stn.features[0].weight.grad.abs().sum() > 0
    assert gen.denoiser.net[0].weight.grad.abs().sum() > 0
    assert model.heads.classifier.num_classes == 4 and model.part_classifiers[1].num_classes == 4


def test_psc_kl_trains_the_part_features_and_classifiers():
    """Agreement-aware smoothing's KL to uniform, as the paper: its gradient reaches the backbone
    through the part features, and the part classifiers."""
    torch.manual_seed(0)
    model = build_model(_demo_cfg("PISL.PSC.LS_START_EPOCH", "0"))
    images = torch.rand(4, 3, 64, 32)
    labels, cams = [0, 0, 1, 1], [0, 1, 0, 1]
    notify_pseudo_labels(model, _pseudo_labels(model, images, labels, cams))
    model.losses["PSCLoss"].agreement.fill_(0.5)  # 4 images all agree; the KL needs 1 - a > 0
    batch = {"images": images, "targets": torch.tensor(labels), "camids": torch.tensor(cams), "index": torch.arange(4)}
    model(batch)["PSCLoss/part_kl"].backward()
    assert sum(p.grad.abs().sum() for p in model.backbone.parameters() if p.grad is not None) > 0
    assert model.part_classifiers[0].weight.grad.abs().sum() > 0


def test_bound_penalty_is_a_logged_scd_term_only_when_weighted():
    torch.manual_seed(0)
    model = build_model(_demo_cfg("PISL.SCD.W_BOUND", "2.0", "PISL.DIFFUSION.BOXES", "affine",
                                  "PISL.DIFFUSION.ANCHORS", "stripes", "PISL.DIFFUSION.BOX_LIMITS",
                                  "[0.25, 0.1, 0.25, 0.1, 0.5, 0.5]"))
    images = torch.rand(4, 3, 64, 32)
    labels, cams = [0, 0, 1, 1], [0, 1, 0, 1]
    notify_pseudo_labels(model, _pseudo_labels(model, images, labels, cams))
    with torch.no_grad():
        model.part_generator.denoiser.net[-1].bias.copy_(3 * model.part_generator.limits)
    batch = {"images": images, "targets": torch.tensor(labels), "camids": torch.tensor(cams), "index": torch.arange(4)}
    losses = model(batch)
    assert losses["SCDLoss/bound"].item() == pytest.approx(0.1 * 2.0 * 4.0, rel=1e-4)  # SCD.SCALE * W_BOUND * (3-1)^2
    model.losses["SCDLoss"].w_bound = 0.0
    assert "SCDLoss/bound" not in model(batch)


def test_box_statistics_of_a_tiny_model(caplog):
    torch.manual_seed(0)
    model = build_model(_demo_cfg("PISL.DIFFUSION.ANCHORS", "stripes")).eval()
    images = torch.rand(6, 3, 64, 32)
    thetas = model.cluster_features({"images": images})["thetas"].view(6, 3, 6)
    untrained = box_statistics(thetas)
    assert all(row[7] < 1e-4 for row in untrained)  # the stripe prior: the same for all images
    torch.nn.init.normal_(model.part_generator.denoiser.net[-1].weight, std=0.05)
    moved = box_statistics(model.cluster_features({"images": images})["thetas"].view(6, 3, 6), anchors=thetas)
    assert all(row[6] > 1e-3 and row[7] > 1e-4 for row in moved)
    labels = [0, 0, 1, 1, 2, 2]
    with caplog.at_level("INFO"):
        notify_pseudo_labels(model, _pseudo_labels(model, images, labels, [0, 1] * 3))
    assert "Part boxes of the 6 training images before epoch 0" in caplog.text and "PSC agreement (jaccard, k=20)" in caplog.text


def test_cluster_features_are_deterministic_and_normalised():
    model = build_model(_demo_cfg()).eval()
    images = torch.rand(4, 3, 64, 32)
    a, b = model.cluster_features({"images": images}), model.cluster_features({"images": images})
    assert torch.equal(a["parts"], b["parts"]) and a["parts"].shape == (4, 3, model.backbone.out_channels)
    assert torch.allclose(a["parts"].norm(dim=2), torch.ones(4, 3), atol=1e-5)


# Clusters for an untrained model on a tiny set: every image that DBSCAN leaves alone becomes
# a cluster of its own, so training always has pseudo-labels to run on.
ALWAYS_CLUSTERS = ["CLUSTER.OUTLIERS", "singleton", "CLUSTER.EPS", "0.3", "CLUSTER.MIN_SAMPLES", "2"]


def _log_and_results(out, dataset):
    with open(os.path.join(out, "results.json")) as f:
        return (out / "log.txt").read_text(), json.load(f)[dataset]


@pytest.mark.parametrize("parts, anchors, boxes, misalign", [(2, "stripes", "partition", "True"),
                                                             (4, "person", "affine", "False")])
def test_pisl_trains_with_p_parts(parts, anchors, boxes, misalign, synthetic_root, tmp_path):
    train_net(tmp_path, synthetic_root, config=PISL_DEMO,
              overrides=["PISL.NUM_PARTS", str(parts), "PISL.DIFFUSION.ANCHORS", anchors, "PISL.DIFFUSION.BOXES", boxes,
                         "INPUT.MISALIGN.ENABLED", misalign, "SOLVER.MAX_EPOCH", "1", *ALWAYS_CLUSTERS,
                         # affine boxes on the demo's partition recipe: bounded, so that its barrier weight has a bound
                         *(["PISL.DIFFUSION.BOX_LIMITS", "[0.25, 0.1, 0.25, 0.1, 0.5, 0.5]"] if boxes == "affine" else [])])
    log, res = _log_and_results(tmp_path, "Synthetic")
    assert "epoch 0 iter 4/4" in log and "SCDLoss" in log and 0 <= res["mAP"] <= 100
    state = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert state["part_generator.stn.features.8.bias"].numel() == (parts + 2 if boxes == "partition" else 6 * parts)
    assert f"part_classifiers.{parts - 1}.weight" in state
    # PartBoxHook: the picture after the only epoch; the box diagnostics in the epoch's metrics
    assert (tmp_path / "part_boxes" / "epoch_000.png").stat().st_size > 10_000
    assert f"Part-box pictures: {tmp_path / 'part_boxes' / 'epoch_000.png'}" in log
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epoch_record = next(r for r in records if "cluster/clusters" in r)
    assert {f"parts/centre_y_std/p{p}" for p in range(parts)} <= set(epoch_record)
    # On misaligned crops the epoch's metrics also say how the boxes follow the applied shift.
    followed = {f"parts/follow_r/p{p}" for p in range(parts)} | {f"parts/follow_slope/p{p}" for p in range(parts)}
    assert (followed <= set(epoch_record)) == (misalign == "True")
    assert {f"parts/iou_next/p{p}" for p in range(parts - 1)} <= set(epoch_record)
    assert f"parts/at_bound_pct/p{parts - 1}" in epoch_record
    # every loss term's epoch mean, and the PSC agreement that weights the smoothing
    assert {"epoch_mean/loss", "epoch_mean/PSCLoss/part_kl", "epoch_mean/SCDLoss/noise", "epoch_mean/grad_norm",
            "PSCLoss/agreement_mean/p0"} <= set(epoch_record)
    terms = [v for k, v in epoch_record.items() if k.startswith("epoch_mean/") and k not in ("epoch_mean/loss",
                                                                                          "epoch_mean/grad_norm")]
    assert epoch_record["epoch_mean/loss"] == pytest.approx(sum(terms), rel=1e-4)  # the loss is the sum of its terms


def test_supervised_pisl_trains_its_parts_on_the_labels(synthetic_root, tmp_path):
    """The supervised testbed's recipe on synthetic data: no clustering, part classifiers sized
    to the labelled identities from the start, and a part CE on the labels."""
    overrides = ["HOOKS", '["PartBoxHook"]', "DATALOADER.SAMPLER", "PKSampler", "SOLVER.MAX_EPOCH", "1",
                 "MODEL.LOSSES.NAMES", '["CrossEntropyLoss", "SoftTripletLoss", "PartCrossEntropyLoss", "SCDLoss"]']
    train_net(tmp_path, synthetic_root, config=PISL_DEMO, overrides=overrides)
    log, res = _log_and_results(tmp_path, "Synthetic")
    assert "Clustering before" not in log and "PartCrossEntropyLoss" in log and "SCDLoss" in log and res["mAP"] > 0
    state = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    # 16 training identities (TINY) in the global and every part classifier
    assert state["heads.classifier.weight"].shape[0] == 16
    assert all(state[f"part_classifiers.{p}.weight"].shape[0] == 16 for p in range(3))


def test_clustering_losses_without_clustering_are_refused_before_the_run(synthetic_root, tmp_path):
    proc = train_net(tmp_path, synthetic_root, config=PISL_DEMO, overrides=["HOOKS", '["PartBoxHook"]'], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "PSCLoss needs the pseudo-labels of HOOKS' ClusteringHook" in proc.stderr
    assert "CameraContrastLoss needs the pseudo-labels" in proc.stderr


def _write_standin(src, root, name):
    """Lay the synthetic images of ``src`` out as dataset ``name`` expects them on disk."""
    splits = {"train": src.train, "query": src.query, "gallery": src.gallery}
    if name == "Market1501":
        shutil.copytree(src.dataset_dir, os.path.join(root, "Market-1501-v15.09.15"))
    elif name == "VeRi":
        folders = {"train": "image_train", "query": "image_query", "gallery": "image_test"}
        for split, items in splits.items():
            os.makedirs(os.path.join(root, "VeRi", folders[split]))
            for k, (path, pid, cam) in enumerate(items):
                shutil.copy(path, os.path.join(root, "VeRi", folders[split], f"{pid:04d}_c{cam + 1:03d}_{k:08d}_0.jpg"))
    elif name == "MSMT17":
        base = os.path.join(root, "MSMT17_V1")
        lists = {"train": ("train", src.train), "val": ("train", []), "query": ("test", src.query),
                 "gallery": ("test", src.gallery)}
        for split, (folder, items) in lists.items():
            lines = []
            for k, (path, pid, cam) in enumerate(items):
                rel = f"{pid:04d}/{pid:04d}_{k:03d}_{cam + 1:02d}_0303morning_0015_0.jpg"
                os.makedirs(os.path.join(base, folder, f"{pid:04d}"), exist_ok=True)
                shutil.copy(path, os.path.join(base, folder, rel))
                lines.append(f"{rel} {pid}\n")
            with open(os.path.join(base, f"list_{split}.txt"), "w") as f:
                f.writelines(lines)


@pytest.mark.parametrize("config,dataset", [("market", "Market1501"), ("msmt17", "MSMT17"), ("veri", "VeRi")])
def test_paper_configs_run_on_standin_data(config, dataset, synthetic_root, tmp_path):
    """The full-scale configs (ResNet-50, 4096-channel STN, Adam, camera-aware sampler) build and
    train; only sizes shrink, and ResNet-50 starts from random weights (none offline here)."""
    src = make_synthetic(synthetic_root)
    root = tmp_path / "datasets"
    _write_standin(src, str(root), dataset)
    out = tmp_path / "out"
    train_net(out, str(root), config=f"projects/PISL/configs/{config}.yml",
              overrides=["MODEL.BACKBONE.PRETRAIN", "False", "SOLVER.IMS_PER_BATCH", "16", "SOLVER.ITERS_PER_EPOCH", "2",
                         "SOLVER.MAX_EPOCH", "1", "TEST.IMS_PER_BATCH", "32", *ALWAYS_CLUSTERS])
    log, res = _log_and_results(out, dataset)
    assert "epoch 0 iter 2/2" in log and res["num_valid_queries"] == 20
    cfg = load_config(str(out / "config.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "resnet50" and cfg.PISL.STN.CHANNELS == 4096


@requires_cuhk03
@requires_mobilenet_weights
def test_pisl_short_run_on_cuhk03(tmp_path):
    train_net(tmp_path, SHARED_DATA, config="projects/PISL/configs/cuhk03np.yml",
              overrides=["MODEL.BACKBONE.PRETRAIN_PATH", MOBILENET_WEIGHTS, "INPUT.SIZE_TRAIN", "[128, 64]",
                         "INPUT.SIZE_TEST", "[128, 64]", "SOLVER.ITERS_PER_EPOCH", "3", "SOLVER.MAX_EPOCH", "1",
                         "DATALOADER.NUM_WORKERS", "2"])
    log, res = _log_and_results(tmp_path, "CUHK03NP")
    assert res["num_valid_queries"] > 1300 and 0 < res["mAP"] < 100
    assert "Clustering before epoch 0" in log and "epoch 0 iter 3/3" in log and "CameraContrastLoss" in log


def test_part_generator_has_its_own_weight_decay_group():
    cfg = _demo_cfg("SOLVER.WEIGHT_DECAY", "5e-4", "PISL.DIFFUSION.WEIGHT_DECAY", "0.0")
    model = build_model(cfg)
    groups = build_optimizer(cfg, model).param_groups
    generator = {id(p) for p in model.part_generator.parameters()}
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert {id(p) for p in groups[1]["params"]} == generator and not generator & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())
    stripes = _demo_cfg("PISL.PART_GENERATOR", "stripes", "MODEL.LOSSES.NAMES", '["PSCLoss"]')
    assert len(build_optimizer(stripes, build_model(stripes)).param_groups) == 1  # no empty group


def test_denoiser_condition_is_scaled_to_the_time_embedding():
    """COND_SCALE s: the first layer sees s c; at s = 16 a unit condition has the norm of the
    512-d time embedding (sqrt(256))."""
    from projects.PISL.diffusion import Denoiser, timestep_embedding
    assert timestep_embedding(torch.tensor([7]), 512).norm().item() == pytest.approx(16.0, rel=1e-5)
    torch.manual_seed(0)
    plain, scaled = Denoiser(6, 4, time_dim=8), Denoiser(6, 4, time_dim=8, cond_scale=16.0)
    torch.nn.init.normal_(plain.net[-1].weight)
    scaled.load_state_dict(plain.state_dict())
    cond, x_t, t = F.normalize(torch.randn(2, 4), dim=1), torch.randn(2, 6), torch.tensor([3, 3])
    first = lambda c: plain.net[0](torch.cat([x_t, c, timestep_embedding(t, 8)], dim=1))
    assert torch.allclose(scaled(x_t, t, cond), plain.net[1:](first(16.0 * cond)), atol=1e-5)
    assert not torch.allclose(scaled(x_t, t, cond), plain(x_t, t, cond), atol=1e-3)
