"""benchmarks/collect_results.py: records of finished runs and the mean +- std table over seeds."""
import gzip
import json
import os
import sys

import pytest
import torch

from pisl.testing import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import collect_results  # noqa: E402


def _fake_run(folder, mAP, clusters, history_in_checkpoint=False, per_epoch_maps=(), parts_mAP=None):
    os.makedirs(folder / "pseudo_labels")
    evaluations = [{"epoch": e, "D/mAP": m, "D/global+parts/mAP": 99.0} for e, m in enumerate(per_epoch_maps)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [{"epoch": 0, "iter": 1}, *evaluations]))
    results = {"D": {"mAP": mAP, "Rank-1": mAP / 2}, "D/global+parts": {"mAP": mAP + 1 if parts_mAP is None else parts_mAP,
                                                             "Rank-1": 0.0}}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "wall_seconds").write_text("120\n")
    (folder / "log.txt").write_text("log\n")
    history = [{"epoch": 0, "clusters": 1}, {"epoch": 1, "clusters": clusters, "ARI": 0.5}]
    if history_in_checkpoint:  # a run from before the hook wrote history.json
        torch.save({"hooks": {"ClusteringHook": {"history": history}}}, folder / "last_checkpoint.pth")
    else:
        (folder / "pseudo_labels" / "history.json").write_text(json.dumps(history))


def test_records_give_mean_and_sample_std_over_seeds(tmp_path, capsys):
    runs, records = tmp_path / "logs", tmp_path / "records"
    _fake_run(runs / "seed1" / "row", 1.0, 10, history_in_checkpoint=True, per_epoch_maps=[9.0, 1.0, 2.0, 3.0])
    _fake_run(runs / "seed2" / "row", 3.0, 20, per_epoch_maps=[4.0, 5.0, 6.0], parts_mAP=5.0)
    for seed in ("seed1", "seed2"):
        collect_results.record(str(runs / seed / "row"), str(records / seed / "row"))
    assert not (records / "seed1" / "row" / "last_checkpoint.pth").exists()
    # The bulky files gzipped, byte for byte what the run wrote; the clustering history from the checkpoint.
    assert sorted(os.listdir(records / "seed1" / "row")) == ["log.txt.gz", "metrics.jsonl.gz", "pseudo_labels",
                                                              "results.json", "wall_seconds"]
    with gzip.open(records / "seed1" / "row" / "log.txt.gz", "rt") as f:
        assert f.read() == "log\n"
    assert collect_results.clustering_history(str(records / "seed1" / "row"))[-1]["clusters"] == 10

    collect_results.seeds_table(str(records), ["row"])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| row"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # mAP 1 and 3: mean 2, sample std sqrt(2); the means of the last 3 evaluations 2 and 5:
    # 3.5 +- 2.12 (epoch 0's 9 of seed 1 left out; global+parts never counted); the last
    # clustering's 10 and 20 clusters: 15 +- 7.07; global+parts 2 and 5, each run's gain over its
    # global mAP 1 and 2: 1.5 +- 0.71
    assert cells[:8] == ["row", "2", "2.00 +- 1.41", "3.50 +- 2.12", "1.00 +- 0.71", "3.50 +- 2.12", "1.50 +- 0.71",
                         "2.0 +- 0.0"]
    assert cells[8] == "15 +- 7" and cells[-1] == "0.500 +- 0.000"


def test_a_recorded_log_leaves_out_the_merged_config_that_config_yaml_keeps(tmp_path):
    run = tmp_path / "run"
    _fake_run(run, 1.0, 10)
    dump = "[12/07 04:00:00 pisl.engine.defaults]: Running with config:\nCLUSTER:\n  EPS: 0.5\nSEED: 1\n"
    (run / "log.txt").write_text("[12/07 04:00:00 pisl.engine.defaults]: Command line: x\n" + dump
                                 + "[12/07 04:00:01 pisl.engine.trainer]: Starting training\n  indented detail\n")
    (run / "config.yaml").write_text("CLUSTER:\n  EPS: 0.5\nSEED: 1\n")
    collect_results.record(str(run), str(tmp_path / "record"))
    with gzip.open(tmp_path / "record" / "log.txt.gz", "rt") as f:
        assert f.read() == ("[12/07 04:00:00 pisl.engine.defaults]: Command line: x\n"
                            "[12/07 04:00:00 pisl.engine.defaults]: Running with config:\n"
                            "[12/07 04:00:01 pisl.engine.trainer]: Starting training\n  indented detail\n")
    with gzip.open(tmp_path / "record" / "config.yaml.gz", "rt") as f:
        assert f.read() == "CLUSTER:\n  EPS: 0.5\nSEED: 1\n"


def test_unfinished_run_is_not_recorded(tmp_path, capsys):
    os.makedirs(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        collect_results.record(str(tmp_path / "run"), str(tmp_path / "record"))
    assert exit_info.value.code == 2 and "did not finish" in capsys.readouterr().err
    assert not (tmp_path / "record").exists()


def test_a_start_that_evaluates_differently_from_its_record_stops_the_benchmark(tmp_path, capsys):
    _fake_run(tmp_path / "start", 23.08, 10)
    _fake_run(tmp_path / "record", 23.08, 10)
    collect_results.same_start(str(tmp_path / "start"), str(tmp_path / "record"))
    assert "evaluates as recorded: mAP 23.08" in capsys.readouterr().out
    _fake_run(tmp_path / "retrained", 21.35, 10)
    with pytest.raises(SystemExit) as exit_info:
        collect_results.same_start(str(tmp_path / "retrained"), str(tmp_path / "record"))
    assert exit_info.value.code == 2 and "mAP 21.350000 (recorded 23.080000)" in capsys.readouterr().err


def test_paired_differences_use_the_common_seeds(tmp_path, capsys):
    for seed, (a, b) in {"seed1": (2.0, 1.0), "seed2": (5.0, 2.0), "seed3": (4.0, None)}.items():
        _fake_run(tmp_path / seed / "a", a, 10, per_epoch_maps=[a - 2, a - 1, a] if seed == "seed1" else [a])
        if b is not None:
            _fake_run(tmp_path / seed / "b", b, 10, per_epoch_maps=[b, b, b], parts_mAP=b + 3)
    collect_results.paired_table(str(tmp_path), ["a", "b"], ["b"])
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| a - b"))
    # seeds 1-2 only: differences +1 and +3, mean 2, sample std sqrt(2); the means of the last 3
    # evaluations only on seed 1, where a was evaluated 3 times: 1 - 1 = 0; global+parts (a + 1
    # against b + 3): 3 - 4 = -1 and 6 - 5 = +1
    assert [c.strip() for c in line.strip("|").split("|")] == ["a - b", "2", "2.00 +- 1.41", "+1.00, +3.00", "0.00",
                                                               "+0.00", "0.00 +- 1.41", "-1.00, +1.00"]


def test_epoch_terms_sum_a_loss_prefix_and_show_per_epoch_figures(tmp_path, capsys):
    records = [{"epoch": 0, "iter": 5, "loss": 9.0}, {"epoch": 0, "epoch_mean/loss": 3.0, "epoch_mean/P/a": 1.0,
                                                      "epoch_mean/P/b": 0.5, "epoch_mean/Q": 1.5},
               {"epoch": 0, "D/mAP": 7.0, "D/global+parts/mAP": 8.0},
               {"epoch": 0, "P/agreement": 0.25, "cluster/n": 5}]  # a per-epoch record: shown, not summed
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
    collect_results.epoch_terms(str(tmp_path), "P")
    row = [c.strip() for c in capsys.readouterr().out.splitlines()[-1].strip("|").split("|")]
    # epoch, loss, P/a, P/agreement, P/b, the sum of the loss terms P/a and P/b, mAP
    assert row == ["0", "3.000", "1.000", "0.250", "0.500", "1.500", "7.000"]


def test_epoch_terms_of_a_wildcard_average_the_runs_epoch_by_epoch(tmp_path, capsys):
    """Two runs: epoch 0 in both (loss 3 and 5, mAP 7 and 9: means 4 and 8), epoch 1 in the
    first only (its own figures)."""
    for name, records in {"seed1": [{"epoch": 0, "epoch_mean/loss": 3.0, "epoch_mean/P/a": 1.0}, {"epoch": 0, "D/mAP": 7.0},
                                    {"epoch": 1, "epoch_mean/loss": 2.0, "epoch_mean/P/a": 0.5}, {"epoch": 1, "D/mAP": 6.0}],
                          "seed2": [{"epoch": 0, "epoch_mean/loss": 5.0, "epoch_mean/P/a": 2.0},
                                    {"epoch": 0, "D/mAP": 9.0}]}.items():
        os.makedirs(tmp_path / name / "row")
        (tmp_path / name / "row" / "metrics.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
    collect_results.epoch_terms(str(tmp_path / "seed*" / "row"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Means over the 2 runs")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[-2:]]
    assert rows == [["0", "4.000", "1.500", "8.000"], ["1", "2.000", "0.500", "6.000"]]


def test_a_record_made_with_another_config_is_refused(tmp_path, capsys):
    """--same-config: the same config and overrides pass; a changed key exits 2 naming it; a key
    the record lacks counts as its default; keys the run does not read are left out."""
    from pisl.config import load_config

    config = os.path.join(REPO, "projects", "PISL", "configs", "cuhk03np_stripes.yml")
    record = tmp_path / "record"
    record.mkdir()
    cfg = load_config(config, ["SEED", "3"], check=False)
    text = cfg.dump().replace("  NORM_BATCH: 0\n", "")  # a record from before the key existed
    text = text.replace("BOXES: affine", "BOXES: partition")  # not read by stripes
    collect_results.write_gzip(str(record / "config.yaml.gz"), text.encode())
    assert collect_results.config_differences(str(record), config, ["SEED", "3"]) == []
    assert collect_results.config_differences(str(record), config, ["SEED", "4"]) == ["SEED: recorded 3, now 4"]
    with pytest.raises(SystemExit) as exit_:
        collect_results.same_config(str(record), config, ["SEED", "3", "PISL.PSC.K", "10"])
    assert exit_.value.code == 2 and "PISL.PSC.K: recorded 20, now 10" in capsys.readouterr().err
