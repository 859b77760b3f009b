import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from pisl.evaluation import evaluate_rank

# Gallery: g0 junk for q0 (same id, same camera), g3 a distractor (pid 0).
G_PIDS = [1, 2, 1, 0, 1]
G_CAMS = [0, 1, 1, 1, 2]
Q_PIDS = [1, 2, 3]
Q_CAMS = [0, 0, 0]
DIST = np.array([
    [0.1, 0.2, 0.3, 0.4, 0.5],  # q0: junk, miss, hit@2, distractor, hit@4
    [0.5, 0.1, 0.2, 0.3, 0.4],  # q1: hit@1
    [0.1, 0.2, 0.3, 0.4, 0.5],  # q2: no valid match -> left out
])


def test_hand_computed_case():
    res = evaluate_rank(None, None, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, distmat=DIST)
    # q0: AP = (1/2 + 2/4) / 2 = 0.5, INP = 2 / 4; q1: AP = INP = 1.
    assert res["mAP"] == pytest.approx(75.0)
    assert res["mINP"] == pytest.approx(75.0)
    assert res["Rank-1"] == pytest.approx(50.0)
    assert res["Rank-5"] == pytest.approx(100.0)
    assert res["num_valid_queries"] == 2


def test_chunking_does_not_change_results():
    a = evaluate_rank(None, None, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, distmat=DIST, chunk_size=1)
    b = evaluate_rank(None, None, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, distmat=DIST, chunk_size=100)
    assert a == b


def test_matches_sklearn_average_precision_on_random_features():
    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(30, 8, generator=gen), dim=1)
    g = torch.nn.functional.normalize(torch.randn(80, 8, generator=gen), dim=1)
    q_pids, g_pids = np.arange(30) % 10, np.arange(80) % 10
    q_cams, g_cams = np.zeros(30, int), np.arange(80) % 3
    res = evaluate_rank(q, g, q_pids, g_pids, q_cams, g_cams, chunk_size=7)
    dist = torch.cdist(q, g).numpy()
    aps = []
    for i in range(30):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        matches = g_pids[keep] == q_pids[i]
        if matches.any():
            aps.append(average_precision_score(matches, -dist[i][keep]))
    assert res["mAP"] == pytest.approx(100 * np.mean(aps), abs=1e-4)


def test_no_valid_query_is_an_error():
    with pytest.raises(ValueError, match="No query"):
        evaluate_rank(None, None, [5], [1], [0], [1], distmat=np.array([[0.1]]))


def test_re_ranking_keeps_a_clear_structure():
    from pisl.evaluation.rerank import re_ranking

    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 16, generator=gen)
    ids = torch.arange(10).repeat_interleave(8)
    feats = torch.nn.functional.normalize(centres[ids] + 0.3 * torch.randn(80, 16, generator=gen), dim=1)
    q, g = feats[::8], feats[torch.arange(80) % 8 != 0]
    q_ids, g_ids = ids[::8].numpy(), ids[torch.arange(80) % 8 != 0].numpy()
    dist = re_ranking(q, g, k1=6, k2=3, lam=0.3)
    assert dist.shape == (10, 70)
    res = evaluate_rank(None, None, q_ids, g_ids, np.zeros(10), np.ones(70), distmat=dist)
    assert res["mAP"] > 90


def test_evaluator_warns_when_most_queries_have_no_cross_camera_match(caplog):
    from pisl.config import get_cfg
    from pisl.evaluation.evaluator import ReidEvaluator

    ev = ReidEvaluator.__new__(ReidEvaluator)  # no loader needed to rank given features
    ev.cfg, ev.dataset_name = get_cfg(), "toy"
    ev.query = [("q0", 0, 0), ("q1", 1, 0), ("q2", 2, 0)]
    ev.gallery = [("g0", 0, 1), ("g1", 1, 0), ("g2", 2, 0), ("g3", 3, 1)]  # only q0 has a match in another camera
    feats = torch.nn.functional.normalize(torch.randn(7, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    res = ev._rank(feats, torch.arange(7))
    assert res["num_valid_queries"] == 1
    assert "only 1 of 3 queries have a gallery match in another camera" in caplog.text
    caplog.clear()
    ev.gallery[1] = ("g1", 1, 1)  # now 2 of 3: no warning
    ev._rank(feats, torch.arange(7))
    assert "queries have a gallery match" not in caplog.text
