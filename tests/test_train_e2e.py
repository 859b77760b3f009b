"""Short end-to-end runs of tools/train_net.py: train, eval-only, resume after a kill, DDP."""
import json
import os
import signal
import time

import pytest
import torch

from pisl.utils.env import processor_description

from pisl.testing import results, train_net

@pytest.fixture(scope="module")
def full_run(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("full")
    train_net(out, synthetic_root)
    return out


def test_training_writes_results_config_and_checkpoints(full_run):
    res = results(full_run)
    assert 0 <= res["mAP"] <= 100 and res["num_valid_queries"] == 20
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "last_checkpoint.pth", "model_final.pth"):
        assert os.path.isfile(full_run / name), name
    with open(full_run / "provenance.json") as f:  # what made the run, for its record
        made_by = json.load(f)
    assert len(made_by["commit"] or "0" * 40) == 40 and "train_net.py" in made_by["command"]
    assert "threads" in made_by["processor"] and made_by["torch"]


def test_eval_only_reproduces_final_metrics(full_run, synthetic_root, tmp_path):
    train_net(tmp_path, synthetic_root, ["--eval-only"], ["MODEL.WEIGHTS", str(full_run / "model_final.pth")])
    assert results(tmp_path, "eval_results.json") == results(full_run)


def test_resume_after_kill_mid_epoch_matches_uninterrupted(full_run, synthetic_root, tmp_path):
    proc = train_net(tmp_path, synthetic_root, wait=False)
    log = tmp_path / "log.txt"
    deadline = time.time() + 300
    # Kill once the first checkpoint exists and the next epoch has started.
    while time.time() < deadline:
        if log.exists() and "epoch 1 iter 2/4" in log.read_text():
            break
        assert proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results.json").exists()
    out = train_net(tmp_path, synthetic_root, ["--resume"])
    assert "Resuming from" in out.stdout
    assert results(tmp_path) == results(full_run)


def test_two_process_ddp_on_cpu(synthetic_root, tmp_path):
    train_net(tmp_path, synthetic_root, ["--num-gpus", "2"], ["SOLVER.MAX_EPOCH", "1"])
    assert results(tmp_path)["num_valid_queries"] == 20
    assert os.path.isfile(tmp_path / "log.rank1.txt")


def test_logs_have_epoch_lines_and_no_progress_bar_clutter(full_run):
    log = (full_run / "log.txt").read_text()
    assert "\r" not in log and "it/s]" not in log  # tqdm only draws on a terminal
    assert all(f"Epoch {e} done: 4 iterations" in log for e in range(3))
    assert "Extracting" not in log or "images in" in log
    assert log.count("TensorBoard is not installed") <= 1


def test_log_names_the_processor(full_run):
    # CPU figures depend on the instruction set, so the log says which one a run used.
    log = (full_run / "log.txt").read_text()
    model = processor_description(torch.device("cpu")).split(", ")[0]
    assert f"device cpu ({model}, {torch.backends.cpu.get_cpu_capability()}, " in log
