"""Bad input found late, and faults mid-run, as a user meets them on the command line: each
exits with the README's status and one line (no traceback), and builds nothing or keeps the
earlier checkpoint usable."""
import os
import signal
import stat
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from pisl.config import load_config
from pisl.engine import describe_process_failure
from pisl.modeling import build_model

from pisl.testing import REPO, TINY, results, train_net

PISL_DEMO = "projects/PISL/configs/demo.yml"


def one_line_error(proc, status, *phrases):
    """The run exited with ``status``, printed no traceback, and said why in one line that holds
    every phrase."""
    assert proc.returncode == status, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a /proc file system (Linux)")
def test_output_dir_that_cannot_be_made(synthetic_root, tmp_path):
    # As root, permission bits say every path is writable; /proc refuses all the same.
    proc = train_net("/proc/pisl-run/out", synthetic_root, check=False)
    one_line_error(proc, 2, "OUTPUT_DIR '/proc/pisl-run/out' cannot be made or written")
    assert not os.path.exists("/proc/pisl-run")


def test_output_dir_check_leaves_no_folder_behind_when_another_problem_stops_the_run(synthetic_root, tmp_path):
    proc = train_net(tmp_path / "new" / "run", synthetic_root, overrides=["SOLVER.BASE_LR", "-1"], check=False)
    one_line_error(proc, 2, "SOLVER.BASE_LR is -1")
    assert not (tmp_path / "new").exists()


@pytest.fixture(scope="module")
def baseline_weights(synthetic_root, tmp_path_factory):
    """The weights of an untrained Baseline (another architecture than PISL's)."""
    path = tmp_path_factory.mktemp("baseline") / "model_final.pth"
    cfg = load_config(os.path.join(REPO, "configs/Synthetic/baseline.yml"), TINY + ["MODEL.BACKBONE.PRETRAIN", "False"])
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


def test_eval_only_with_weights_of_another_architecture(synthetic_root, baseline_weights, tmp_path):
    proc = train_net(tmp_path / "run", synthetic_root, ["--eval-only"], config=PISL_DEMO,
                     overrides=["MODEL.WEIGHTS", str(baseline_weights)], check=False)
    one_line_error(proc, 2, f"MODEL.WEIGHTS: {baseline_weights} does not fit this PISL model",
                   "MODEL.PARTIAL_LOAD True")
    assert not (tmp_path / "run").exists()  # checked before the run folder, the log or the model
    # The hint is right: partial loading evaluates it.
    train_net(tmp_path / "partial", synthetic_root, ["--eval-only"], config=PISL_DEMO,
              overrides=["MODEL.WEIGHTS", str(baseline_weights), "MODEL.PARTIAL_LOAD", "True"])


def test_weights_that_fit_nothing_do_not_suggest_partial_loading(synthetic_root, tmp_path):
    path = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    proc = train_net(tmp_path / "run", synthetic_root, ["--eval-only"], overrides=["MODEL.WEIGHTS", str(path)],
                     check=False)
    line = one_line_error(proc, 2, "does not fit this Baseline model")
    assert "PARTIAL_LOAD" not in line


@pytest.fixture(scope="module")
def two_epoch_run(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_epochs")
    train_net(out, synthetic_root, overrides=["SOLVER.MAX_EPOCH", "2"])
    return out


def _truncate(path, size=1000):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_truncated_weights_file(two_epoch_run, synthetic_root, tmp_path):
    weights = tmp_path / "cut.pth"
    weights.write_bytes((two_epoch_run / "model_final.pth").read_bytes()[:100_000])
    proc = train_net(tmp_path / "run", synthetic_root, overrides=["MODEL.WEIGHTS", str(weights)], check=False)
    one_line_error(proc, 2, f"MODEL.WEIGHTS: Cannot read checkpoint {weights}", "truncated or corrupt")
    assert not (tmp_path / "run").exists()


def test_resume_falls_back_to_the_previous_checkpoint(two_epoch_run, synthetic_root, tmp_path):
    run = tmp_path / "run"
    os.system(f"cp -r {two_epoch_run} {run}")
    assert torch.load(run / "previous_checkpoint.pth", weights_only=True)["epoch"] == 1
    _truncate(run / "last_checkpoint.pth")
    proc = train_net(run, synthetic_root, ["--resume"], overrides=["SOLVER.MAX_EPOCH", "3"])
    assert "truncated or corrupt" in proc.stdout
    assert f"Resuming from {run / 'previous_checkpoint.pth'} at epoch 1" in proc.stdout
    assert torch.load(run / "last_checkpoint.pth", weights_only=True)["epoch"] == 3


def test_resume_with_no_readable_checkpoint(two_epoch_run, synthetic_root, tmp_path):
    run = tmp_path / "run"
    os.system(f"cp -r {two_epoch_run} {run}")
    for name in ("last_checkpoint.pth", "previous_checkpoint.pth"):
        _truncate(run / name)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    proc = train_net(run, synthetic_root, ["--resume"], overrides=["SOLVER.MAX_EPOCH", "3"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "last_checkpoint.pth" in proc.stderr and "previous_checkpoint.pth" in proc.stderr
    assert "no readable checkpoint" in proc.stderr and "--overwrite" in proc.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing touched


@pytest.mark.parametrize("split", ["query", "bounding_box_test"])
def test_empty_query_or_gallery_folder(split, synthetic_root, tmp_path):
    # Your own data in the Market layout (a copy of the synthetic set), with one folder emptied.
    drawn = next((Path(synthetic_root) / "synthetic").iterdir())
    os.system(f"cp -r {drawn} {tmp_path / 'mine'}")
    folder = tmp_path / "mine" / split
    for path in folder.iterdir():
        path.unlink()
    own = ["DATASETS.ROOT", str(tmp_path), "DATASETS.NAMES", "('MarketLayout',)", "DATASETS.TESTS", "('MarketLayout',)",
           "DATASETS.MARKET_LAYOUT.DIR", "mine"]
    proc = train_net(tmp_path / "run", synthetic_root, overrides=own, check=False)
    one_line_error(proc, 2, f"mine's folder {folder} holds no .jpg or .png image")
    assert not (tmp_path / "run").exists()


def _kill_rank_1_after_first_checkpoint(run, synthetic_root):
    proc = train_net(run, synthetic_root, ["--num-gpus", "2"], overrides=["SOLVER.MAX_EPOCH", "500"], wait=False,
                     capture=True)
    deadline = time.time() + 300
    while not (run / "last_checkpoint.pth").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before a checkpoint was written"
        time.sleep(0.05)
    # spawn's workers are the launcher's children; rank 1 is the last one started.
    workers = sorted(int(pid) for pid in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split())
    os.kill(workers[-1], signal.SIGKILL)
    start = time.time()
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr, time.time() - start


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds the worker processes in /proc (Linux)")
def test_a_killed_ddp_process_ends_the_run_with_one_line(synthetic_root, tmp_path):
    run = tmp_path / "run"
    status, stderr, seconds = _kill_rank_1_after_first_checkpoint(run, synthetic_root)
    assert status == 1 and "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the process of rank 1 was killed by SIGKILL" in lines[0], stderr
    assert f"The last checkpoint, {run / 'last_checkpoint.pth'}, holds" in lines[0] and "--resume" in lines[0]
    assert seconds < 60  # no hang
    epoch = torch.load(run / "last_checkpoint.pth", weights_only=True)["epoch"]
    train_net(run, synthetic_root, ["--resume"], overrides=["SOLVER.MAX_EPOCH", str(epoch + 1)])
    assert results(run)["num_valid_queries"] == 20


def test_a_process_that_raised_is_described_by_its_exception():
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: out of memory\n'
    err = mp.ProcessRaisedException("\n\n-- Process 1 terminated with the following error:\n" + trace, 1, 4242)
    assert describe_process_failure(err) == (1, "failed with RuntimeError: out of memory", trace.strip())
    killed = mp.ProcessExitedException("process 0 terminated with signal SIGKILL", 0, 4243, -9, "SIGKILL")
    assert describe_process_failure(killed)[:2] == (0, "was killed by SIGKILL (out of memory, or a kill)")


def test_ddp_finds_unused_parameters_only_when_asked(synthetic_root, tmp_path):
    # A supervised Baseline with only the triplet loss: no loss reads its classifier.
    triplet_only = ["MODEL.LOSSES.NAMES", "('SoftTripletLoss',)", "SOLVER.MAX_EPOCH", "1"]
    proc = train_net(tmp_path / "default", synthetic_root, ["--num-gpus", "2"], overrides=triplet_only, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "set MODEL.DDP_FIND_UNUSED_PARAMETERS True" in proc.stdout
    asked = train_net(tmp_path / "asked", synthetic_root, ["--num-gpus", "2"],
                      overrides=triplet_only + ["MODEL.DDP_FIND_UNUSED_PARAMETERS", "True"])
    assert results(tmp_path / "asked")["num_valid_queries"] == 20
    # A model that uses every parameter pays no search, and torch does not warn that it found none.
    full = train_net(tmp_path / "full", synthetic_root, ["--num-gpus", "2"], overrides=["SOLVER.MAX_EPOCH", "1"])
    assert "find_unused_parameters" not in full.stderr + full.stdout
    assert "find_unused_parameters" not in asked.stderr  # it did find the classifier unused


def test_num_gpus_zero_is_refused(synthetic_root, tmp_path):
    proc = train_net(tmp_path / "run", synthetic_root, ["--num-gpus", "0"], check=False)
    one_line_error(proc, 2, "--num-gpus is 0")
    assert not (tmp_path / "run").exists()


def test_bad_flag_value_is_one_line(synthetic_root, tmp_path):
    proc = train_net(tmp_path / "run", synthetic_root, ["--num-gpus", "two"], check=False)
    one_line_error(proc, 2, "argument --num-gpus: invalid int value: 'two'", "--help")


def test_missing_base_names_the_file_that_names_it(synthetic_root, tmp_path):
    child = tmp_path / "child.yml"
    child.write_text("_BASE_: ../nowhere/Base.yml\n")
    proc = train_net(tmp_path / "run", synthetic_root, config=str(child), check=False)
    one_line_error(proc, 2, f"Config file {child}: its _BASE_", "nowhere/Base.yml does not exist")


def test_run_files_take_the_umask_mode_and_the_log_names_the_metrics_file(two_epoch_run):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model_final.pth", "last_checkpoint.pth", "previous_checkpoint.pth"):
        assert stat.S_IMODE((two_epoch_run / name).stat().st_mode) == 0o666 & ~umask, name
    log = (two_epoch_run / "log.txt").read_text()
    assert "{METRICS_FILE}" not in log
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert "metrics go to metrics.jsonl only" in log


def test_a_memory_budget_too_small_stops_the_run_with_the_key(synthetic_root, baseline_weights, tmp_path):
    # Clustering: the Jaccard pair sums of one image would exceed CLUSTER.MEMORY_GB.
    proc = train_net(tmp_path / "cluster", synthetic_root, config=PISL_DEMO, overrides=["CLUSTER.MEMORY_GB", "1e-9"],
                     check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "Training failed: clustering before epoch 0 stopped" in proc.stdout and "CLUSTER.MEMORY_GB" in proc.stdout
    # Re-ranking at evaluation: TEST.RERANK.MEMORY_GB.
    proc = train_net(tmp_path / "eval", synthetic_root, ["--eval-only"], check=False,
                     overrides=["MODEL.WEIGHTS", str(baseline_weights), "TEST.RERANK.ENABLED", "True",
                                "TEST.RERANK.MEMORY_GB", "1e-9"])
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "Evaluation stopped" in proc.stdout and "TEST.RERANK.MEMORY_GB" in proc.stdout
    assert not (tmp_path / "eval" / "eval_results.json").exists()
