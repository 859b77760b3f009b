from collections import Counter

import pytest

from pisl.data.samplers import CameraAwareSampler, PKSampler

TARGETS = [0] * 6 + [1] * 5 + [2] * 4 + [3] * 1 + [4] * 8
CAMS = [0, 0, 0, 1, 1, 2] + [0] * 5 + [0, 1, 0, 1] + [0] + [1] * 8


def _batches(sampler, per_rank):
    idx = list(sampler)
    return [idx[i: i + per_rank] for i in range(0, len(idx), per_rank)]


def test_pk_batches_are_identity_groups():
    s = PKSampler(TARGETS, CAMS, batch_size=8, num_instances=4, num_iters=5, seed=1)
    batches = _batches(s, 8)
    assert len(batches) == 5 and len(s) == 40
    for b in batches:
        counts = Counter(TARGETS[i] for i in b)
        assert sorted(counts.values()) == [4, 4]


def test_camera_aware_prefers_other_cameras():
    s = CameraAwareSampler(TARGETS, CAMS, batch_size=8, num_instances=4, num_iters=20, seed=0)
    idx = list(s)
    # Group the stream by runs of the same identity: the anchor is first, then K-1 others.
    groups, cur = [], [idx[0]]
    for i in idx[1:]:
        if TARGETS[i] == TARGETS[cur[0]] and len(cur) < 4:
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    checked = 0
    for g in groups:
        anchor, rest = g[0], g[1:]
        pid = TARGETS[anchor]
        has_other_cam = any(CAMS[j] != CAMS[anchor] for j in range(len(TARGETS)) if TARGETS[j] == pid)
        if pid == 3:
            assert rest == []  # singleton identity: the anchor only
        elif has_other_cam and rest:
            assert all(CAMS[j] != CAMS[anchor] for j in rest)
            checked += 1
    assert checked > 5


def test_stream_depends_only_on_seed_and_epoch():
    a = PKSampler(TARGETS, CAMS, 8, 4, 3, seed=5)
    b = PKSampler(TARGETS, CAMS, 8, 4, 3, seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_ranks_split_each_global_batch(monkeypatch):
    from pisl.utils import comm

    full = PKSampler(TARGETS, CAMS, 8, 4, 4, seed=2)
    stream = list(full)
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(comm, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(comm, "get_world_size", lambda: 2)
        shares.append(_batches(PKSampler(TARGETS, CAMS, 8, 4, 4, seed=2), 4))
    merged = [i for b0, b1 in zip(*shares) for i in b0 + b1]
    assert merged == stream


def test_batch_not_divisible_by_world(monkeypatch):
    from pisl.utils import comm

    monkeypatch.setattr(comm, "get_world_size", lambda: 3)
    with pytest.raises(ValueError, match="not divisible"):
        PKSampler(TARGETS, CAMS, 8, 4, 4)


@pytest.mark.parametrize("sampler", [PKSampler, CameraAwareSampler])
def test_zero_instances_is_an_error_not_a_hang(sampler):
    with pytest.raises(ValueError, match="NUM_INSTANCE"):
        sampler(TARGETS, CAMS, batch_size=8, num_instances=0, num_iters=5)


def test_sampler_without_images_raises_when_iterated():
    with pytest.raises(RuntimeError, match="cannot draw a batch from 0 images"):
        next(iter(PKSampler([], [], batch_size=8, num_instances=4, num_iters=5)))
