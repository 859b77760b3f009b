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

from pisl.testing import REPO, TINY, train_net

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


def _market_folder(root, names):
    """A Market-layout folder under ``root``/mine whose train, query and gallery hold tiny images
    named ``names[folder]``."""
    from PIL import Image

    for folder, files in names.items():
        (root / "mine" / folder).mkdir(parents=True)
        for name in files:
            Image.new("RGB", (8, 16)).save(root / "mine" / folder / name)
    return ["DATASETS.NAMES", '["MarketLayout"]', "DATASETS.TESTS", '["MarketLayout"]', "DATASETS.MARKET_LAYOUT.DIR", "mine"]


def _one_line_exit_2(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and all(n in proc.stderr for n in needles), proc.stderr


def test_file_names_that_do_not_parse_stop_before_the_run(tmp_path):
    train = [f"img{i:03d}.jpg" for i in range(4)]
    layout = _market_folder(tmp_path, {"bounding_box_train": train, "query": train, "bounding_box_test": train})
    proc = train_net(tmp_path / "out", str(tmp_path), overrides=layout, check=False)
    _one_line_exit_2(proc, "no image name in", "gives an identity and a camera", "'img000.jpg'")
    assert not (tmp_path / "out" / "log.txt").exists()


def test_a_test_split_without_a_valid_query_stops_before_the_run_and_a_partial_one_warns(tmp_path):
    train = [f"{pid:04d}_c{cam}_{k}.jpg" for pid in range(4) for cam in (1, 2) for k in range(2)]
    same_camera = {"bounding_box_train": train, "query": ["0001_c1_0.jpg", "0002_c1_0.jpg"],
                   "bounding_box_test": ["0001_c1_1.jpg", "0002_c1_1.jpg", "0003_c2_1.jpg"]}
    proc = train_net(tmp_path / "out", str(tmp_path), overrides=_market_folder(tmp_path, same_camera), check=False)
    _one_line_exit_2(proc, "no query in", "has a gallery image of its identity from another camera")

    from pisl.data.datasets.market_style import MarketLayoutDataset, name_problems

    half = tmp_path / "half"
    for folder, files in {"bounding_box_train": train, "query": ["0001_c1_0.jpg", "0003_c1_0.jpg"],
                          "bounding_box_test": ["0001_c1_1.jpg", "0003_c2_1.jpg"]}.items():
        (half / folder).mkdir(parents=True)
        for name in files:
            (half / folder / name).write_bytes(b"")
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("pisl.data.datasets.market_style").addHandler(handler)
    try:
        assert name_problems("half", str(half), MarketLayoutDataset.folders, MarketLayoutDataset.pattern, (".jpg",)) == []
    finally:
        logging.getLogger("pisl.data.datasets.market_style").removeHandler(handler)
    assert any("1 of 2 queries have no gallery image" in r.getMessage() for r in records)


def test_a_folder_given_as_weights_is_named_a_folder(synthetic_root, tmp_path):
    proc = train_net(tmp_path / "out", synthetic_root, flags=["--eval-only"], overrides=["MODEL.WEIGHTS", str(tmp_path)],
                     check=False)
    _one_line_exit_2(proc, f"MODEL.WEIGHTS '{tmp_path}' is a folder")


def test_a_key_outside_its_section_is_pointed_to_its_section(synthetic_root, tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text(f"_BASE_: {REPO}/configs/Synthetic/baseline.yml\nBASE_LR: 0.1\n")
    proc = train_net(tmp_path / "out", synthetic_root, config=str(config), check=False)
    _one_line_exit_2(proc, "did you mean 'SOLVER.BASE_LR'")
