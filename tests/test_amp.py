"""Mixed precision (SOLVER.AMP) on the CPU: bf16 training steps and extraction against fp32."""
import math
import os

import pytest
import torch

from pisl.config import get_cfg, load_config
from pisl.engine import DefaultTrainer
from pisl.utils.env import amp_dtype, seed_all

from pisl.testing import REPO, TINY

# Metrics of the same weights evaluated in bf16 and fp32 may differ by this many points (%).
EVAL_TOLERANCE = 2.0
# One step from the same weights on the same batch: bf16's 8-bit mantissa (relative rounding
# 2^-8 = 0.4 % per operation) may move the losses and the gradient norm by this share
# (measured: 0.01-0.5 %).
STEP_TOLERANCE = 0.02


def _trainer(root, out, *overrides):
    cfg = load_config(os.path.join(REPO, "configs/Synthetic/baseline.yml"),
                      TINY + ["DATASETS.ROOT", root, "OUTPUT_DIR", str(out), *overrides])
    seed_all(cfg.SEED)  # as tools/train_net.py does before it builds the trainer
    return DefaultTrainer(cfg)


def test_bf16_step_tracks_fp32(synthetic_root, tmp_path):
    """The same seed gives both runs the same weights and the same first batch, so their first
    step must agree up to bf16 rounding. (Final metrics of short runs are not compared: on the
    tiny test set two fp32 seeds already differ by several points.)"""
    one_step = ["SOLVER.MAX_EPOCH", "1", "SOLVER.ITERS_PER_EPOCH", "1"]
    fp32 = _trainer(synthetic_root, tmp_path / "fp32", *one_step)
    bf16 = _trainer(synthetic_root, tmp_path / "bf16", *one_step, "SOLVER.AMP.ENABLED", "True")
    assert bf16.amp_dtype == torch.bfloat16 and fp32.amp_dtype is None
    assert all(torch.equal(a, b) for a, b in zip(fp32.model.state_dict().values(), bf16.model.state_dict().values()))
    fp32.train(), bf16.train()
    keys = [k for k in fp32.storage if k not in ("data_time", "time", "eval")]
    assert "loss" in keys and "grad_norm" in keys
    for key in keys:
        a, b = float(fp32.storage[key]), float(bf16.storage[key])
        assert math.isfinite(b) and abs(b - a) <= STEP_TOLERANCE * abs(a), (key, a, b)
        if key == "loss":
            assert a != b  # autocast did run in bf16


def test_bf16_training_is_finite_and_evaluates_close_to_fp32(synthetic_root, tmp_path):
    bf16 = _trainer(synthetic_root, tmp_path / "bf16", "SOLVER.MAX_EPOCH", "2", "SOLVER.AMP.ENABLED", "True")
    bf16.train()
    assert all(math.isfinite(float(v)) for k, v in bf16.storage.items() if k != "eval")

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


@pytest.mark.parametrize("native", [True, False])
def test_emulated_cpu_bf16_is_warned_once(native, monkeypatch, caplog):
    from pisl.utils import env

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    env._warn_if_cpu_lacks_bf16.cache_clear()
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", "True"])
    assert amp_dtype(cfg) == amp_dtype(cfg) == torch.bfloat16
    assert caplog.text.count("no native bf16") == (0 if native else 1)
    env._warn_if_cpu_lacks_bf16.cache_clear()
