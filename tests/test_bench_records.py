"""Benchmark scripts that keep their rows as records: bench_cluster_scale.py and bench_eval_scale.py --record."""
import json
import os
import subprocess
import sys

from pisl.testing import REPO

SCRIPT = os.path.join(REPO, "benchmarks", "bench_cluster_scale.py")


def test_cluster_scale_record_holds_each_rows_steps_memory_and_quality_with_its_provenance(tmp_path):
    record = tmp_path / "scale.json"
    subprocess.run([sys.executable, SCRIPT, "--sizes", "1500", "--dims", "128", "--methods", "exact", "pca:16",
                    "ivf:16:2", "--recall-queries", "200", "--record", str(record)], check=True, capture_output=True,
                   text=True)
    saved = json.loads(record.read_text())
    assert saved["provenance"]["commit"] and "threads" in saved["provenance"]["processor"]
    exact, pca, ivf = saved["result"]["rows"]
    assert [row["method"] for row in (exact, pca, ivf)] == ["exact", "pca:16", "ivf:16:2"]
    assert saved["result"]["failed"] == []
    for row in (exact, pca, ivf):
        assert row["N"] == 1500 and row["total s"] > 0 and row["peak RSS GiB"] > 0
        assert abs(row["total s"] - row["knn s"] - row["jaccard s"] - row["dbscan s"]) < 1e-6
    assert exact["recall@30"] == 1.0 and 0 < pca["recall@30"] <= 1 and 0 < pca["ARI vs exact"] <= 1
    # 2 of about 38 cells probed: the inverted file misses neighbours that the exhaustive search finds.
    assert 0 < ivf["recall@30"] < pca["recall@30"]


def test_a_configuration_that_fails_is_recorded_and_fails_the_script(tmp_path):
    """The generator needs dim >= its rank (96): 32 fails in its child process."""
    record = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--sizes", "1500", "--dims", "32", "--methods", "pca:16",
                           "--record", str(record)], capture_output=True, text=True)
    assert proc.returncode == 1 and "1 configuration(s) failed: 1500 x 32 pca:16" in proc.stderr
    failed = json.loads(record.read_text())["result"]["failed"]
    assert [(f["N"], f["dim"], f["method"]) for f in failed] == [(1500, 32, "pca:16")]


def test_eval_scale_record_holds_its_row_and_the_chunking_check(tmp_path):
    record = tmp_path / "eval.json"
    subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_eval_scale.py"), "--queries", "200",
                    "--gallery", "2000", "--dim", "128", "--check-queries", "50", "--record", str(record)],
                   check=True, capture_output=True, text=True)
    saved = json.loads(record.read_text())
    assert saved["provenance"]["commit"]
    row = dict(zip(saved["result"]["headers"], saved["result"]["rows"][0]))
    assert (row["queries"], row["gallery"], row["distances"], row["chunked = one chunk"]) == (200, 2000, "plain", True)
    assert row["seconds"] > 0 and row["peak RSS GiB"] > 0 and 0 < row["mAP"] <= 100
