"""What the test suites of the core (tests/) and of the projects (projects/*/tests/) share: where
the checkout and the real data beside it are, the markers that skip a test whose data is absent,
and the tiny synthetic training setting with its runner. Needs pytest (the ``test`` extra)."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
SHARED_DATA = os.path.join(SHARED, "data")
MOBILENET_WEIGHTS = os.path.join(SHARED, "weights", "mobilenet_v2_imagenet.pth")

requires_cuhk03 = pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED_DATA, "cuhk03-np", "detected")),
    reason="real data ../shared/data/cuhk03-np is not beside this checkout",
)
requires_cuhk01 = pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED_DATA, "cuhk01", "campus")),
    reason="real data ../shared/data/cuhk01 is not beside this checkout",
)
requires_mobilenet_weights = pytest.mark.skipif(
    not os.path.isfile(MOBILENET_WEIGHTS), reason="../shared/weights/mobilenet_v2_imagenet.pth is not beside this checkout"
)

# The tiny synthetic setting (the ``synthetic_root`` fixture's dataset): a few seconds a run.
TINY = [
    "MODEL.DEVICE", "cpu", "INPUT.SIZE_TRAIN", "[64, 32]", "INPUT.SIZE_TEST", "[64, 32]", "INPUT.PADDING", "4",
    "DATASETS.SYNTHETIC.NUM_TRAIN_IDS", "16", "DATASETS.SYNTHETIC.NUM_TEST_IDS", "10",
    "DATASETS.SYNTHETIC.NUM_CAMERAS", "2", "DATASETS.SYNTHETIC.IMAGES_PER_CAMERA", "3",
    "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "16", "SOLVER.ITERS_PER_EPOCH", "4",
    "SOLVER.MAX_EPOCH", "3", "TEST.EVAL_PERIOD", "0", "SOLVER.LOG_PERIOD", "2",
]


def make_synthetic(root):
    """The tiny synthetic dataset under ``root`` (what ``TINY`` describes)."""
    from pisl.data.datasets import Synthetic

    return Synthetic(root, seed=0, num_train_ids=16, num_test_ids=10, num_cameras=2, images_per_camera=3)


def train_net(out, root, flags=(), overrides=(), config="configs/Synthetic/baseline.yml", wait=True, check=True,
              capture=False):
    """Run tools/train_net.py on the tiny synthetic setting; ``wait=False`` returns the running
    process (its output kept as text pipes with ``capture``, else discarded)."""
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", os.path.join(REPO, config),
           *flags, *TINY, "DATASETS.ROOT", root, "OUTPUT_DIR", str(out), *overrides]
    if not wait:
        output = subprocess.PIPE if capture else subprocess.DEVNULL
        return subprocess.Popen(cmd, stdout=output, stderr=output, text=True)
    # A guard against a hung run, not a speed test: the short real-data runs extract thousands of
    # images, which takes many minutes on 2 shared cores.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 or not check, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def results(out, name="results.json"):
    """The synthetic test set's metrics that a run wrote to ``out``."""
    with open(os.path.join(out, name)) as f:
        return json.load(f)["Synthetic"]
