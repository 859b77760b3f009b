import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
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


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic dataset drawn once per test session."""
    root = str(tmp_path_factory.mktemp("datasets"))
    from pisl.data.datasets import Synthetic

    Synthetic(root, seed=0, num_train_ids=16, num_test_ids=10, num_cameras=2, images_per_camera=3)
    return root
