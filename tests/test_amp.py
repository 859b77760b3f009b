"""Mixed precision (SOLVER.AMP) on the CPU: bf16 training steps and extraction against fp32."""
import math
import os

import pytest
import torch

from pisl.config import get_cfg, load_config
from pisl.engine import DefaultTrainer
from pisl.utils.env import amp_dtype

from conftest import REPO
from test_train_e2e import TINY

# Metrics of the same weights evaluated in bf16 and fp32 may differ by this many points (%).
EVAL_TOLERANCE = 2.0
# After two epochs of bf16 against fp32 training, the mAP may differ by this many points.
TRAIN_TOLERANCE = 8.0


def _trainer(root, out, *overrides):
    cfg = load_config(os.path.join(REPO, "configs/Synthetic/baseline.yml"),
                      TINY + ["DATASETS.ROOT", root, "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCH", "2", *overrides])
    return DefaultTrainer(cfg)


def test_bf16_training_is_finite_and_close_to_fp32(synthetic_root, tmp_path):
    fp32 = _trainer(synthetic_root, tmp_path / "fp32")
    bf16 = _trainer(synthetic_root, tmp_path / "bf16", "SOLVER.AMP.ENABLED", "True")
    assert bf16.amp_dtype == torch.bfloat16 and fp32.amp_dtype is None
    res32, res16 = fp32.train()["Synthetic"], bf16.train()["Synthetic"]
    assert all(math.isfinite(float(v)) for k, v in bf16.storage.items() if k != "eval")
    assert abs(res16["mAP"] - res32["mAP"]) < TRAIN_TOLERANCE, (res16, res32)

    # The same weights, evaluated with and without autocast.
    bf16_eval = DefaultTrainer.test(bf16.cfg, bf16.model)["Synthetic"]
    fp32_cfg = bf16.cfg.clone()
    fp32_cfg.defrost()
    fp32_cfg.SOLVER.AMP.ENABLED = False
    fp32_eval = DefaultTrainer.test(fp32_cfg, bf16.model)["Synthetic"]
    assert abs(bf16_eval["mAP"] - fp32_eval["mAP"]) < EVAL_TOLERANCE and bf16_eval != fp32_eval


def test_fp16_on_cpu_is_refused():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", "float16"])
    with pytest.raises(ValueError, match="float16 needs CUDA"):
        amp_dtype(cfg)
