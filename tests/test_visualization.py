"""tools/visualize.py on the synthetic data: every picture is written and is a real PNG; the
geometry and the metrics reading against hand cases. PISL's box tools (projects/PISL/tools) on
the same run."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pisl.visualization import read_epoch_metrics

from pisl.testing import REPO, train_net

PISL_DEMO = "projects/PISL/configs/demo.yml"
SMALL = ["SOLVER.MAX_EPOCH", "2", "TEST.EVAL_PERIOD", "1", "CLUSTER.EPS", "0.3", "CLUSTER.MIN_SAMPLES", "2"]


def test_affine_box_corners_of_a_stripe():
    from pisl.config import import_projects

    import_projects(["projects.PISL"])
    from projects.PISL.box_stats import affine_box_corners

    stripe = [1, 0, 0, 0, 1 / 3, -2 / 3]  # the top third of the map
    xy = affine_box_corners(stripe)
    assert np.allclose(xy[:4], [[-1, -1], [1, -1], [1, -1 / 3], [-1, -1 / 3]])


def test_read_epoch_metrics(tmp_path):
    records = [{"epoch": 0, "iter": 4, "loss": 1.0}, {"epoch": 0, "A/mAP": 5.0, "A/Rank-1": 4.0},
               {"epoch": 1, "A/mAP": 7.0, "A/Rank-1": 6.0, "A/global+parts/mAP": 8.0, "A/global+parts/Rank-1": 9.0}]
    (tmp_path / "metrics.json").write_text("\n".join(map(json.dumps, records)) + "\n")
    assert read_epoch_metrics(tmp_path / "metrics.json") == {"A": [(0, 5.0, 4.0), (1, 7.0, 6.0)],
                                                             "A/global+parts": [(1, 8.0, 9.0)]}


@pytest.fixture(scope="module")
def pisl_run(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("pisl_run")
    train_net(out, synthetic_root, config=PISL_DEMO, overrides=SMALL)
    return out


def _visualize(*args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "visualize.py"), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _assert_png(path, min_size=(200, 150)):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        assert len(np.unique(np.asarray(im.convert("L")))) > 10  # a picture, not a blank canvas


def test_saved_pseudo_labels_follow_the_training_items(pisl_run):
    with open(pisl_run / "pseudo_labels" / "items.txt") as f:
        paths = f.read().splitlines()
    for epoch in (0, 1):
        saved = np.load(pisl_run / "pseudo_labels" / f"epoch_{epoch:03d}.npz")
        assert len(saved["labels"]) == len(paths) == len(saved["camids"]) and saved["labels"].max() >= 1
        history = json.loads((pisl_run / "pseudo_labels" / "history.json").read_text())
        assert [h["epoch"] for h in history] == [0, 1]
        assert history[epoch]["clusters"] == saved["labels"].max() + 1
        assert history[epoch]["clustered images"] == (saved["labels"] >= 0).sum()


@pytest.mark.parametrize("command", ["ranked", "parts", "curves", "clusters"])
def test_each_picture_is_written(command, pisl_run, synthetic_root, tmp_path):
    out = str(tmp_path / f"{command}.png")
    if command in ("ranked", "parts"):
        _visualize(command, "--config-file", os.path.join(REPO, PISL_DEMO), "--output", out, "--num-images", "20",
                   "MODEL.WEIGHTS", str(pisl_run / "model_final.pth"), "DATASETS.ROOT", synthetic_root,
                   "MODEL.DEVICE", "cpu", "INPUT.SIZE_TEST", "[64, 32]", "DATALOADER.NUM_WORKERS", "0")
    else:
        _visualize(command, "--run", str(pisl_run), "--output", out)
    _assert_png(out)
    if command == "ranked":
        _assert_png(str(tmp_path / "ranked_cmc.png"))


def test_box_sources_tool_reports_every_source(pisl_run, synthetic_root, tmp_path):
    record = tmp_path / "sources.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "projects", "PISL", "tools", "box_sources.py"), "--config-file",
                           os.path.join(REPO, PISL_DEMO), "--num-images", "20", "--timesteps", "0,999", "--record", str(record),
                           "MODEL.WEIGHTS", str(pisl_run / "model_final.pth"), "DATASETS.ROOT", synthetic_root,
                           "MODEL.DEVICE", "cpu", "INPUT.SIZE_TEST", "[64, 32]", "DATALOADER.NUM_WORKERS", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for source in ("STN theta", "DDIM sample", "x0_hat t=0", "x0_hat t=999"):
        assert f"\n{source} (20 images)\n|   part |" in proc.stdout
    assert "depth in the bound's tanh" not in proc.stdout  # the demo's partition boxes have no bound
    saved = json.loads(record.read_text())
    assert saved["provenance"]["commit"] and "PISL:" in saved["config"]
    sample = saved["result"]["sources"]["DDIM sample"]
    assert sample["images"] == 20 and [row[0] for row in sample["rows"]] == [0, 1, 2] and len(sample["headers"]) == len(
        sample["rows"][0])


def _pisl_tool(name, run, root, *args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "projects", "PISL", "tools", name), "--config-file",
                           os.path.join(REPO, PISL_DEMO), *args, "MODEL.WEIGHTS", str(run / "model_final.pth"),
                           "DATASETS.ROOT", root, "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_box_follow_tool_reports_both_framings_and_the_targets(pisl_run, synthetic_root):
    out = _pisl_tool("box_follow.py", pisl_run, synthetic_root)
    assert "\naligned Synthetic test crops (360)\n|   part |" in out and "\nmisaligned Synthetic test crops (360)" in out
    targets = out.split("| target (worst part)")[1]
    for check in ("centre-y std, aligned", "follow correlation, misaligned", "parameters at a bound", "neighbour IoU"):
        assert check in targets, targets
    assert re.search(r"boxes inside the image \(%\) +\| +100.000 \| 100 +\| True", targets), targets  # a partition
    # The demo's boxes start from person anchors: their own follow figures, one per part.
    anchors = re.search(r"\nanchors alone, per part: follow r (\S+), (\S+), (\S+); follow slope \S+, \S+, \S+\n", out)
    assert anchors and all(-1 <= float(r) <= 1 for r in anchors.groups()), out


def test_probe_condition_tool_fits_the_applied_shift(pisl_run, synthetic_root, tmp_path):
    record = tmp_path / "probe.json"
    out = _pisl_tool("probe_condition.py", pisl_run, synthetic_root, "--bins", "4", "--record", str(record))
    table = out.split("(5-fold CV R^2):")[1]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ") and "dims" not in line}
    assert set(rows) == {"global feature", "row profile", "both"} and "|      4 |" in rows["row profile"]
    # The record holds the printed table, cell for cell.
    saved = json.loads(record.read_text())["result"]
    assert saved["headers"] == ["condition", "dims", "R^2 shift", "R^2 scale"]
    for name, dims, shift, scale in saved["rows"]:
        assert [c.strip() for c in rows[name].split("|")[1:-1]] == [name, str(dims), f"{shift:.3f}", f"{scale:.3f}"]


def test_follow_ceiling_tool_evaluates_own_fixed_and_following_parts(pisl_run, synthetic_root):
    out = _pisl_tool("follow_ceiling.py", pisl_run, synthetic_root)
    table = out.split("that follow the applied misalignment:")[1]
    maps = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in table.splitlines()
            if line.startswith("| ") and "mAP" not in line}
    assert set(maps) == {"global", "global+own", "global+fixed", "global+following", "own parts", "fixed parts",
                         "following parts"}
    # The model's own parts are what its evaluation tests with: the same mAP as the recorded
    # global+parts of a misaligned evaluation of the same weights.
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file",
                           os.path.join(REPO, PISL_DEMO), "--eval-only", "MODEL.WEIGHTS", str(pisl_run / "model_final.pth"),
                           "DATASETS.ROOT", synthetic_root, "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0",
                           "INPUT.MISALIGN.ENABLED", "True", "OUTPUT_DIR", str(pisl_run / "eval_misaligned")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((pisl_run / "eval_misaligned" / "eval_results.json").read_text())
    recorded = {key.split("/")[-1]: value["mAP"] for key, value in results.items()}
    assert abs(maps["global"] - recorded["Synthetic"]) < 0.01
    assert abs(maps["global+own"] - recorded["global+parts"]) < 0.01


def test_metrics_file_is_jsonl_and_the_old_name_is_still_read(tmp_path):
    from pisl.engine.hooks import metrics_file

    assert metrics_file(str(tmp_path)) == str(tmp_path / "metrics.jsonl")  # a new run writes this
    (tmp_path / "metrics.json").write_text("{}\n")  # a run from before the rename
    assert metrics_file(str(tmp_path)) == str(tmp_path / "metrics.json")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    assert metrics_file(str(tmp_path)) == str(tmp_path / "metrics.jsonl")


def test_save_adds_png_and_returns_the_written_path(tmp_path):
    from pisl import visualization as vis

    fig = vis.pyplot().figure()
    written = vis.save(fig, str(tmp_path / "picture"))
    assert written == str(tmp_path / "picture.png") and os.path.isfile(written)


def test_curves_of_several_runs_in_one_picture(tmp_path):
    for run, maps in (("a", (5.0, 7.0)), ("b", (6.0, 4.0))):
        (tmp_path / run).mkdir()
        records = [{"epoch": e, "X/mAP": m, "X/Rank-1": m / 2} for e, m in enumerate(maps)]
        (tmp_path / run / "metrics.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
    _visualize("curves", "--run", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "c.png"))
    _assert_png(tmp_path / "c.png")
