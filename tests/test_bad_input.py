"""Bad input gets a clear answer and never costs a run (issue 10): output folders, flags,
test sets, evaluation failures."""
import fcntl
import json
import os
import shutil

import pytest
import torch

from pisl.config import get_cfg, load_config
from pisl.engine import DefaultTrainer, EvalHook
from pisl.modeling import build_model

from conftest import REPO
from test_train_e2e import TINY, train_net

ONE_EPOCH = ["SOLVER.MAX_EPOCH", "1"]


def test_used_output_dir_is_refused_then_overwritten_with_a_flag_after_overrides(synthetic_root, tmp_path):
    train_net(tmp_path, synthetic_root, overrides=ONE_EPOCH)
    first = (tmp_path / "model_final.pth").stat().st_mtime_ns
    proc = train_net(tmp_path, synthetic_root, overrides=ONE_EPOCH, check=False)
    assert proc.returncode == 2 and "holds an earlier run" in proc.stderr and "--overwrite" in proc.stderr
    assert (tmp_path / "model_final.pth").stat().st_mtime_ns == first
    # The flag after the KEY VALUE overrides (before: "odd list" error).
    train_net(tmp_path, synthetic_root, overrides=ONE_EPOCH + ["--overwrite"])
    assert (tmp_path / "model_final.pth").stat().st_mtime_ns != first
    assert not (tmp_path / ".lock").exists()  # a finished run leaves no lock file behind
    log = (tmp_path / "log.txt").read_text()
    assert log.count("Starting training") == 1  # --overwrite starts a clean log
    assert log.count("Dataset Synthetic at") == 1  # trained and tested on: its table is printed once


def test_live_run_locks_its_output_dir(synthetic_root, tmp_path):
    with open(tmp_path / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a live run holds it
        lock.write("12345")
        lock.flush()
        # Weights that pass the pre-run check; never loaded: the lock stops the run first.
        torch.save({"model": build_model(load_config(os.path.join(REPO, "configs/Synthetic/baseline.yml"), TINY)).state_dict()},
                   tmp_path / "weights.pth")
        proc = train_net(tmp_path, synthetic_root, ["--eval-only"], overrides=["MODEL.WEIGHTS", str(tmp_path / "weights.pth")],
                         check=False)
    assert proc.returncode == 2 and "in use by a live run (process 12345)" in proc.stderr
    assert not (tmp_path / "log.txt").exists()


def test_resumed_run_keeps_each_epoch_once_in_metrics(synthetic_root, tmp_path):
    train_net(tmp_path, synthetic_root, overrides=["SOLVER.MAX_EPOCH", "2"])
    ckpt = torch.load(tmp_path / "last_checkpoint.pth", weights_only=True)
    ckpt["epoch"] = 1  # as if killed after the checkpoint of epoch 0: epoch 1 is redone
    torch.save(ckpt, tmp_path / "last_checkpoint.pth")
    train_net(tmp_path, synthetic_root, ["--resume"], overrides=["SOLVER.MAX_EPOCH", "2"])
    with open(tmp_path / "metrics.jsonl") as f:
        steps = [(r["epoch"], r.get("iter")) for r in map(json.loads, f) if "iter" in r]
    assert len(steps) == len(set(steps)) and {e for e, _ in steps} == {0, 1}


def _cfg(root, out, *overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/Synthetic/baseline.yml"))
    cfg.merge_from_list(TINY + ["DATASETS.ROOT", str(root), "OUTPUT_DIR", str(out), *overrides])
    return cfg


def test_empty_query_set_fails_before_training(synthetic_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    query = next((root / "synthetic").iterdir()) / "query"
    for path in query.iterdir():
        path.unlink()
    with pytest.raises(ValueError, match="the query set is empty"):
        DefaultTrainer(_cfg(root, tmp_path / "out"))
    assert not (tmp_path / "out" / "last_checkpoint.pth").exists()


def test_epoch_is_checkpointed_before_a_failing_evaluation(synthetic_root, tmp_path):
    trainer = DefaultTrainer(_cfg(synthetic_root, tmp_path, *ONE_EPOCH))

    def broken_evaluation():
        raise RuntimeError("evaluation failed")

    next(h for h in trainer.hooks if isinstance(h, EvalHook)).eval_fn = broken_evaluation
    with pytest.raises(RuntimeError, match="evaluation failed"):
        trainer.train()
    assert torch.load(tmp_path / "last_checkpoint.pth", weights_only=True)["epoch"] == 1


def test_zero_instances_fails_at_once(synthetic_root, tmp_path):
    # Before: the epoch sampler looped forever at 100 % CPU.
    proc = train_net(tmp_path, synthetic_root, overrides=["DATALOADER.NUM_INSTANCE", "0"], check=False)
    assert proc.returncode == 2 and "DATALOADER.NUM_INSTANCE is 0" in proc.stderr
