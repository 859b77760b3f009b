"""The pre-run check (issue 24): every input that can be checked before a run is checked
before anything is built, every problem is reported in one go, one line each, exit status 2,
no traceback; and every script's --help exits 0."""
import glob
import os
import subprocess
import sys

import pytest
import torch

from pisl.config import ConfigError, get_cfg
from pisl.config.checks import core_checks
from pisl.engine.preflight import checked_config
from pisl.modeling import build_model

from pisl.testing import REPO

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
BASELINE = os.path.join(REPO, "configs", "Base-Baseline.yml")
SYNTHETIC = os.path.join(REPO, "configs", "Synthetic", "baseline.yml")


def run(args, env=None, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


def assert_bad_input(proc, *expected):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr


def test_missing_dataset_and_imagenet_weights_are_both_reported_before_anything_is_built(tmp_path):
    """ResNet-50 used to ask for its ImageNet weights (a traceback) before the dataset folder
    was looked at. Now both problems come in one report."""
    proc = run([TRAIN_NET, "--config-file", BASELINE, "DATASETS.ROOT", str(tmp_path / "no-such-root"),
                "DATASETS.NAMES", "['CUHK03NP']", "OUTPUT_DIR", str(tmp_path / "out")],
               env={"TORCH_HOME": str(tmp_path / "empty-torch-home")})
    assert_bad_input(proc, "2 problems", "MODEL.BACKBONE.PRETRAIN", "MODEL.BACKBONE.PRETRAIN_PATH",
                     str(tmp_path / "empty-torch-home"), "DATASETS.ROOT", "cuhk03-np/detected")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("  ")]
    assert len(lines) == 2, proc.stderr  # one line per problem
    assert not (tmp_path / "out").exists()  # nothing was made before the check


def test_config_value_and_path_problems_come_together(tmp_path):
    proc = run([TRAIN_NET, "--config-file", SYNTHETIC, "CLUSTER.EPS", "1.5", "MODEL.WEIGHTS", str(tmp_path / "nope.pth"),
                "DATASETS.TESTS", "['Market1501']", "DATASETS.ROOT", str(tmp_path), "OUTPUT_DIR", str(tmp_path / "o")])
    assert_bad_input(proc, "3 problems", "CLUSTER.EPS is 1.5", "MODEL.WEIGHTS", "nope.pth' does not exist",
                     "Market1501 needs the folder")


def test_pca_dim_beyond_exact_8_bit_codes_is_a_problem_of_the_pca_search_only():
    cfg = get_cfg()
    cfg.CLUSTER.KNN.PCA_DIM = 2048
    assert [p for p in core_checks(cfg) if "PCA_DIM" in p] == [
        "CLUSTER.KNN.PCA_DIM is 2048: the pca search's 8-bit codes keep their distances exact up to 1040 directions"]
    cfg.CLUSTER.KNN.METHOD = "hnsw"
    assert not [p for p in core_checks(cfg) if "PCA_DIM" in p]


def test_yaml_syntax_error_is_one_line_with_the_line_number(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("SOLVER:\n  BASE_LR: [1\nSEED: 2\n")
    proc = run([TRAIN_NET, "--config-file", str(bad)])
    assert_bad_input(proc, "is not valid YAML", "line ")


def test_eval_only_without_weights_of_a_random_model(tmp_path):
    proc = run([TRAIN_NET, "--config-file", SYNTHETIC, "--eval-only", "OUTPUT_DIR", str(tmp_path / "o")])
    assert_bad_input(proc, "--eval-only needs MODEL.WEIGHTS")


def test_a_text_file_as_weights_is_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    with pytest.raises(ConfigError, match=r"MODEL.WEIGHTS '.*notes.txt' is not a torch checkpoint"):
        checked_config(SYNTHETIC, ["MODEL.WEIGHTS", str(text)], need_data=False)
    torch.save({"model": {}}, tmp_path / "empty.pth")  # a torch file, but of no model
    with pytest.raises(ConfigError, match=r"MODEL.WEIGHTS: .*empty.pth does not fit this Baseline model"):
        checked_config(SYNTHETIC, ["MODEL.WEIGHTS", str(tmp_path / "empty.pth")], need_data=False)
    cfg = checked_config(SYNTHETIC, need_data=False)
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "ok.pth")  # the configured model's passes
    checked_config(SYNTHETIC, ["MODEL.WEIGHTS", str(tmp_path / "ok.pth")], need_data=False)


def test_type_mismatch_names_key_value_type_and_an_example():
    with pytest.raises(ConfigError) as err:
        checked_config(SYNTHETIC, ["DATASETS.NAMES", "Market1501", "SOLVER.MAX_EPOCH", "two"], need_data=False)
    assert len(err.value.problems) == 2, err.value.problems
    names, epochs = err.value.problems
    assert "DATASETS.NAMES is 'Market1501' (a string) but must be a list" in names and "['Market1501']" in names
    assert "SOLVER.MAX_EPOCH is 'two' (a string) but must be an integer" in epochs


def test_unknown_key_suggests_keys_that_contain_its_parts():
    with pytest.raises(ConfigError, match=r"Did you mean 'SOLVER.ITERS_PER_EPOCH'"):
        checked_config(SYNTHETIC, ["SOLVER.ITERS", "3"], need_data=False)


def test_own_market_layout_with_other_folder_names_points_at_folders_key(tmp_path):
    for folder, camera in (("train", 1), ("query", 1), ("gallery", 2)):  # the query's match in another camera
        (tmp_path / "mine" / folder).mkdir(parents=True)
        (tmp_path / "mine" / folder / f"0001_c{camera}_0001.jpg").touch()  # named only: the check reads no image
    opts = ["DATASETS.NAMES", "['MarketLayout']", "DATASETS.TESTS", "['MarketLayout']", "DATASETS.ROOT", str(tmp_path),
            "DATASETS.MARKET_LAYOUT.DIR", "mine"]
    with pytest.raises(ConfigError) as err:
        checked_config(SYNTHETIC, opts)
    assert len(err.value.problems) == 1  # a dataset used for training and testing is reported once
    assert "DATASETS.MARKET_LAYOUT.FOLDERS" in err.value.problems[0] and "gallery, query, train" in err.value.problems[0]
    checked_config(SYNTHETIC, opts + ["DATASETS.MARKET_LAYOUT.FOLDERS", "['train', 'query', 'gallery']"])
    with pytest.raises(ConfigError, match="DATASETS.MARKET_LAYOUT.DIR 'theirs'"):
        checked_config(SYNTHETIC, opts[:-1] + ["theirs"])


def test_missing_input_of_a_tool_exits_2(tmp_path):
    torch.save({"model": build_model(checked_config(SYNTHETIC, need_data=False)).state_dict()}, tmp_path / "w.pth")
    proc = run([os.path.join(REPO, "tools", "extract_features.py"), "--config-file", SYNTHETIC, "--input",
                str(tmp_path / "nothing"), "--output", str(tmp_path / "f.npz"), "MODEL.WEIGHTS", str(tmp_path / "w.pth")])
    assert_bad_input(proc, "--input", "neither a folder nor a list file")


def test_export_with_parts_of_a_model_without_parts_exits_2(tmp_path):
    proc = run([os.path.join(REPO, "tools", "export_onnx.py"), "--config-file", SYNTHETIC, "--with-parts",
                "--output", str(tmp_path / "m.onnx")])
    assert_bad_input(proc, "has no parts", "export without --with-parts")


def scripts():
    """Every runnable script under tools/, benchmarks/ and projects/*/."""
    found = []
    for pattern in ("tools/**/*", "benchmarks/**/*", "projects/*/**/*"):
        for path in glob.glob(os.path.join(REPO, pattern), recursive=True):
            if path.endswith(".sh") or path.endswith(".py") and "__main__" in open(path).read():
                found.append(path)
    return sorted(found)


def test_every_script_is_found():
    names = {os.path.relpath(p, REPO) for p in scripts()}
    assert {"tools/train_net.py", "tools/visualize.py", "benchmarks/bench_cluster_scale.py",
            "projects/PISL/tools/box_sources.py", "projects/PISL/run_seeds.sh"} <= names, names


@pytest.mark.parametrize("script", scripts(), ids=lambda p: os.path.relpath(p, REPO))
def test_help_exits_0(script):
    cmd = ["bash", script, "--help"] if script.endswith(".sh") else [sys.executable, script, "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) >= 2  # it printed some help
