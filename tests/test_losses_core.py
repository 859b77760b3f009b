import math

import pytest
import torch

from pisl.modeling.losses import cross_entropy_label_smooth, soft_triplet


def test_label_smoothing_ce_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [0.25, 0.75]
    loss = cross_entropy_label_smooth(logits, torch.tensor([1]), epsilon=0.2)
    # target = [0.1, 0.9]
    expected = -(0.1 * math.log(0.25) + 0.9 * math.log(0.75))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_soft_triplet_hand_computed():
    feats = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: d_ap = 3 (to 1), d_an = 1 (to 2)  -> log(1 + e^2)
    # anchor 1: d_ap = 3, d_an = sqrt(10)          -> log(1 + e^(3 - sqrt 10))
    # anchor 2: d_ap = 4 (to 3), d_an = 1 (to 0)   -> log(1 + e^3)
    # anchor 3: d_ap = 4, d_an = 5 (to 0)          -> log(1 + e^-1)
    terms = [2.0, 3 - math.sqrt(10), 3.0, -1.0]
    expected = sum(math.log1p(math.exp(t)) for t in terms) / 4
    assert soft_triplet(feats, labels).item() == pytest.approx(expected, rel=1e-5)


def test_soft_triplet_without_negatives_is_zero_with_gradient():
    feats = torch.randn(4, 3, requires_grad=True)
    loss = soft_triplet(feats, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and feats.grad is not None
