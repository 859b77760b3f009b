"""Loss math as pure functions on tensors (tested against hand-computed cases)."""
import torch
import torch.nn.functional as F


def cross_entropy_label_smooth(logits, targets, epsilon=0.1):
    """Mean CE against (1 - eps) one-hot + eps / C."""
    log_probs = F.log_softmax(logits, dim=1)
    num_classes = logits.shape[1]
    soft = torch.full_like(log_probs, epsilon / num_classes)
    soft.scatter_(1, targets.unsqueeze(1), 1 - epsilon + epsilon / num_classes)
    return -(soft * log_probs).sum(1).mean()


def soft_target_cross_entropy(logits, soft_targets):
    """Mean CE against a distribution per row."""
    return -(soft_targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def euclidean_dist(x, y):
    """Pairwise Euclidean distances, clamped away from 0 before the sqrt for stable gradients."""
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2 * x @ y.t()
    return d2.clamp(min=1e-12).sqrt()


def soft_triplet(features, targets):
    """Batch-hard soft-margin triplet: mean_i log(1 + exp(d_ap - d_an)) with d_ap the farthest
    positive (self included) and d_an the closest negative. An anchor without negatives
    contributes nothing."""
    dist = euclidean_dist(features, features)
    same = targets.unsqueeze(0) == targets.unsqueeze(1)
    d_ap = dist.masked_fill(~same, float("-inf")).max(1).values
    d_an = dist.masked_fill(same, float("inf")).min(1).values
    valid = torch.isfinite(d_an)
    if not valid.any():
        return features.sum() * 0
    return F.softplus(d_ap[valid] - d_an[valid]).mean()
