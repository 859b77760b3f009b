"""The published recipe, held against the official code: every value the official PISL code
(taoxuefong/Diffusion-reid at 616e7c9, PPLR's code where PISL inherits it) trains with, and the
key that carries it here. A config that drifts fails with the key's name. Where this code
differs on purpose (a defect of the official code, fixed), the key is in FIXES with the title of
its row in docs/deviations.md, which must mark that row as a fix."""
import os

import pytest

from pisl.config import load_config
from pisl.testing import REPO

CONFIGS = os.path.join(REPO, "projects", "PISL", "configs")
DATASETS = ("market", "msmt17", "veri")

# key: (Market-1501, MSMT17, VeRi-776 value, where the official code sets it). One value for all
# three is written once.
OFFICIAL = {
    "MODEL.META_ARCHITECTURE": ("PISL", "pisl/models/resnet_part.py: ResNetPart"),
    "MODEL.BACKBONE.NAME": ("resnet50", "pisl/models/resnet_part.py: resnet50part, torchvision ResNet-50"),
    "MODEL.BACKBONE.LAST_STRIDE": (1, "pisl/models/resnet_part.py: layer4[0] conv2 and downsample stride 1"),
    "MODEL.BACKBONE.PRETRAIN": (True, "pisl/models/resnet_part.py: pretrained=True"),
    "MODEL.HEADS.POOL": ("avg", "pisl/models/resnet_part.py: AdaptiveAvgPool2d(1)"),
    "MODEL.NORM_BATCH": (16, "examples/train_pisl_cam.py: nn.DataParallel over CUDA_VISIBLE_DEVICES 0-3, "
                             "so BatchNorm normalises over 64 / 4 images"),
    "MODEL.LOSSES.NAMES": (["PSCLoss", "SoftTripletLoss", "CameraContrastLoss", "SCDLoss"],
                           "pisl/trainers.py: PISLTrainerCAM.train (PSC_LR + PSC_LS, soft triplet, "
                           "CameraContrast, DiffusionThetaLoss)"),
    "PISL.NUM_PARTS": (3, "examples/train_pisl_cam.py: --part 3"),
    "PISL.PART_GENERATOR": ("diffusion_stn", "pisl/models/resnet_part.py: PatchGenerator + DiffusionPatchGenerator"),
    "PISL.TEST_WITH_PARTS": (False, "pisl/models/resnet_part.py: eval forward returns the global feature only"),
    "PISL.STN.CHANNELS": (4096, "pisl/models/resnet_part.py: PatchGenerator conv 2048 -> 4096"),
    "PISL.DIFFUSION.TIMESTEPS": (1000, "pisl/models/resnet_part.py: DiffusionPatchGenerator timesteps=1000"),
    "PISL.DIFFUSION.COSINE_S": (0.008, "pisl/models/resnet_part.py: cosine_beta_schedule s=0.008"),
    "PISL.DIFFUSION.BOXES": ("affine", "pisl/models/resnet_part.py: fc_loc -> 18 = 3 x (2 x 3) affine parameters"),
    "PISL.DIFFUSION.CONDITION": ("global", "pisl/models/resnet_part.py: net([f_g ; emb(t)])"),
    "PISL.DIFFUSION.WEIGHT_DECAY": (5e-4, "examples/train_pisl_cam.py: one Adam over every parameter, --weight-decay 5e-4"),
    "PISL.PSC.SCORE": ("mmd", "examples/train_pisl_cam.py: compute_semantic_consistency (maximum_mean_discrepancy.py)"),
    "PISL.PSC.K": (20, "examples/train_pisl_cam.py: --knn 20"),
    "PISL.PSC.REFINE_LAMBDA": (0.5, "examples/train_pisl_cam.py: --Wref 0.5"),
    "PISL.PSC.LS_START_EPOCH": (5, "examples/train_pisl_cam.py: --se 5"),
    "PISL.PSC.EPSILON": (0.1, "pisl/loss/crossentropy.py: CrossEntropyLabelSmooth epsilon=0.1"),
    "PISL.PSC.SCALE": (1.0, "pisl/trainers.py: loss = L_gce + L_pce + ..."),
    "PISL.PSC.PART_LOGIT_SCALE": (0.0, "pisl/models/resnet_part.py: classifier{i}(bnneck{i} feature), no scale"),
    "PISL.CAM.SCALE": ((0.5, 1.0, 0.5), "examples/train_pisl_cam.py: --Wcam 0.5; README: 1.0 for MSMT17"),
    "PISL.CAM.TEMP": (0.07, "pisl/loss/loss.py: CameraContrast temp 0.07"),
    "PISL.CAM.NUM_HARD": (50, "pisl/loss/loss.py: CameraContrast top-50 hard negatives"),
    "PISL.SCD.SCALE": (0.1, "examples/train_pisl_cam.py: --Wdiff 0.1"),
    "PISL.SCD.W_CONS": (0.5, "pisl/trainers.py: DiffusionThetaLoss(lam_consistency=0.5)"),
    "PISL.SCD.W_CON": (0.3, "pisl/trainers.py: DiffusionThetaLoss(lam_contrastive=0.3)"),
    "PISL.SCD.TEMP": (0.07, "pisl/trainers.py: DiffusionThetaLoss(temperature=0.07)"),
    "PISL.SCD.NOISE_WEIGHTING": ("none", "pisl/loss/loss.py: DiffusionThetaLoss, plain MSE(noise_pred, noise)"),
    "PISL.SCD.W_BOUND": (0.0, "pisl/loss/loss.py: no penalty on the boxes"),
    "INPUT.SIZE_TRAIN": (([384, 128], [384, 128], [256, 256]), "examples/train_pisl_cam.py: --height/--width; README for VeRi"),
    "INPUT.SIZE_TEST": (([384, 128], [384, 128], [256, 256]), "examples/train_pisl_cam.py: --height/--width; README for VeRi"),
    "INPUT.FLIP_PROB": (0.5, "examples/train_pisl_cam.py: get_train_loader RandomHorizontalFlip(p=0.5)"),
    "INPUT.PADDING": (10, "examples/train_pisl_cam.py: get_train_loader Pad(10)"),
    "INPUT.REA.ENABLED": (True, "examples/train_pisl_cam.py: get_train_loader RandomErasing"),
    "INPUT.REA.PROB": (0.5, "examples/train_pisl_cam.py: RandomErasing(probability=0.5)"),
    "DATALOADER.NUM_INSTANCE": ((4, 4, 8), "examples/train_pisl_cam.py: -n 4; README -n 8 for VeRi"),
    "SOLVER.IMS_PER_BATCH": (64, "examples/train_pisl_cam.py: -b 64"),
    "SOLVER.OPTIMIZER": ("Adam", "examples/train_pisl_cam.py: torch.optim.Adam"),
    "SOLVER.BASE_LR": (3.5e-4, "examples/train_pisl_cam.py: --lr 0.00035"),
    "SOLVER.WEIGHT_DECAY": (5e-4, "examples/train_pisl_cam.py: --weight-decay 5e-4"),
    "SOLVER.MAX_EPOCH": (50, "examples/train_pisl_cam.py: --epochs 50"),
    "SOLVER.ITERS_PER_EPOCH": (400, "examples/train_pisl_cam.py: --iters 400"),
    "SOLVER.SCHEDULER": ("StepLR", "examples/train_pisl_cam.py: StepLR(step_size=20, gamma=0.1)"),
    "SOLVER.STEPS": ([20, 40], "examples/train_pisl_cam.py: --step-size 20 over 50 epochs: drops after 20 and 40"),
    "SOLVER.GAMMA": (0.1, "examples/train_pisl_cam.py: StepLR gamma=0.1"),
    "SOLVER.WARMUP_EPOCHS": (0, "examples/train_pisl_cam.py: no warm-up"),
    "CLUSTER.K1": (30, "examples/train_pisl_cam.py: --k1 30"),
    "CLUSTER.K2": (6, "examples/train_pisl_cam.py: compute_jaccard_distance(k2=6)"),
    "CLUSTER.EPS": ((0.4, 0.6, 0.7), "README: --eps 0.4 / 0.6 / 0.7"),
    "CLUSTER.MIN_SAMPLES": (4, "examples/train_pisl_cam.py: DBSCAN(min_samples=4)"),
    "CLUSTER.OUTLIERS": ("drop", "examples/train_pisl_cam.py: un-clustered images are left out of training"),
    "CLUSTER.SAMPLER": ("CameraAwareSampler", "pisl/utils/data/sampler.py: RandomMultipleGallerySampler"),
    "TEST.EVAL_PERIOD": (5, "examples/train_pisl_cam.py: --eval-step 5"),
}

# Keys whose value here fixes a defect of the official code: key -> (the official code's value or
# behaviour, the title of the docs/deviations.md row that says why).
FIXES = {
    "PISL.DIFFUSION.BOX_LIMITS": ("x_t clamped to [-1, 1], theta = (x_t + 1) / 2 in [0, 1]", "Box range"),
    "PISL.DIFFUSION.ANCHORS": ("STN bias rank-1, the same for every part", "STN start"),
    "PISL.DIFFUSION.COND_SCALE": ("f_g un-normalised in training, L2-normalised in sampling", "Denoiser input"),
    "PISL.DIFFUSION.SAMPLE_STEPS": ("1000 steps of a sampler that is not DDIM", "Sampler"),
}
PUBLISHED_FIXED = {"PISL.DIFFUSION.BOX_LIMITS": [], "PISL.DIFFUSION.ANCHORS": "stripes",
                   "PISL.DIFFUSION.COND_SCALE": 1.0, "PISL.DIFFUSION.SAMPLE_STEPS": 50}


def merged(name, opts=()):
    return load_config(os.path.join(CONFIGS, name), list(opts), check=True)


def value(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return list(node) if isinstance(node, (list, tuple)) else node


def drift(cfg, index):
    """One line for each key of ``cfg`` that is not the official code's value (dataset ``index``)."""
    lines = []
    for key, (expected, source) in OFFICIAL.items():
        expected = expected[index] if isinstance(expected, tuple) else expected
        got = value(cfg, key)
        if got != (pytest.approx(expected) if isinstance(expected, float) else expected):
            lines.append(f"{key} is {got!r}, the official code's {expected!r} ({source})")
    for key, fixed in PUBLISHED_FIXED.items():
        if value(cfg, key) != fixed:
            lines.append(f"{key} is {value(cfg, key)!r}, the published recipe's fix {fixed!r}")
    return lines


@pytest.mark.parametrize("index,dataset", list(enumerate(DATASETS)))
def test_published_configs_merge_to_the_official_codes_values(index, dataset):
    assert not drift(merged(f"{dataset}.yml"), index), f"{dataset}.yml:\n" + "\n".join(drift(merged(f"{dataset}.yml"), index))


def test_a_drifted_key_is_named():
    lines = drift(merged("market.yml", ["PISL.PSC.SCORE", "jaccard", "SOLVER.STEPS", "[20]"]), 0)
    assert len(lines) == 2 and lines[0].startswith("PISL.PSC.SCORE is 'jaccard'") and "SOLVER.STEPS" in lines[1]


def deviation_rows():
    """{row title: its kind} from docs/deviations.md's tables (first column title, second kind)."""
    rows = {}
    with open(os.path.join(REPO, "docs", "deviations.md")) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= set("-: "):
                rows[cells[0]] = cells[1]
    return rows


def test_every_fix_is_a_deviations_row_marked_fix():
    rows = deviation_rows()
    for key, (official, title) in FIXES.items():
        assert title in rows, f"{key}: docs/deviations.md has no row '{title}' (official: {official})"
        assert rows[title] == "fix", f"docs/deviations.md row '{title}' ({key}) is '{rows[title]}', not 'fix'"


def differing_keys(a, b, prefix=""):
    keys = []
    for k in a:
        if isinstance(a[k], dict):
            keys += differing_keys(a[k], b[k], f"{prefix}{k}.")
        elif a[k] != b[k]:
            keys.append(prefix + k)
    return keys


PARTITION_KEYS = {"PISL.DIFFUSION.BOXES", "PISL.DIFFUSION.ANCHORS", "PISL.DIFFUSION.CONDITION",
                  "PISL.DIFFUSION.COND_SCALE", "PISL.DIFFUSION.WEIGHT_DECAY", "PISL.PSC.SCORE",
                  "PISL.SCD.NOISE_WEIGHTING", "PISL.SCD.W_BOUND"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_partition_recipe_changes_only_its_named_keys(dataset):
    published, partition = merged(f"{dataset}.yml"), merged(f"{dataset}_partition.yml")
    changed = set(differing_keys(partition, published)) - {"OUTPUT_DIR"}
    assert changed == PARTITION_KEYS | {"PISL.PSC.PART_LOGIT_SCALE"}


def test_the_cpu_scale_rows_differ_from_their_recipes_only_in_size():
    """cuhk03np.yml is the published recipe and cuhk03np_partition.yml the partition recipe, both
    at CPU size: the same components, the benchmark's backbone, input and schedule."""
    size = {"MODEL.BACKBONE.NAME", "MODEL.BACKBONE.PRETRAIN_PATH", "MODEL.NORM_BATCH", "PISL.STN.CHANNELS", "INPUT.SIZE_TRAIN",
            "INPUT.SIZE_TEST", "INPUT.PADDING", "DATASETS.ROOT", "DATASETS.NAMES", "DATASETS.TESTS",
            "DATALOADER.NUM_WORKERS", "CLUSTER.EPS", "SOLVER.MAX_EPOCH", "SOLVER.ITERS_PER_EPOCH", "SOLVER.STEPS",
            "SOLVER.LOG_PERIOD", "TEST.EVAL_PERIOD", "OUTPUT_DIR"}
    assert set(differing_keys(merged("cuhk03np.yml"), merged("market.yml"))) <= size
    # The partition row also smooths its parts plainly (short epochs), with the reference's logits.
    short_epochs = {"PISL.PSC.LS_START_EPOCH", "PISL.PSC.PART_LOGIT_SCALE"}
    assert set(differing_keys(merged("cuhk03np_partition.yml"), merged("market_partition.yml"))) <= size | short_epochs
    assert set(differing_keys(merged("cuhk03np_partition.yml"), merged("cuhk03np.yml"))) - {"OUTPUT_DIR"} \
        == PARTITION_KEYS | {"PISL.PSC.LS_START_EPOCH"}
