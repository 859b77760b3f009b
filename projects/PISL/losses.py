"""PISL's registered losses: PSC, camera contrast and SCD (docs/method.md)."""
import logging
import math

import torch
import torch.nn.functional as F
from tabulate import tabulate

from pisl.cluster import camera_proxies
from pisl.utils import comm
from pisl.modeling.losses import (LOSS_REGISTRY, CrossEntropyLoss, ReidLoss, cross_entropy_label_smooth,
                                  soft_target_cross_entropy)

from .consistency import agreement_summary, consistency_scores

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- pure functions

def refined_targets(targets, part_logits, agreement, lam):
    """Label refinement: lam * onehot(y) + (1 - lam) * sg(sum_p softmax(a)_p softmax(z_p))."""
    weights = F.softmax(agreement, dim=1)  # B x P
    probs = torch.stack([F.softmax(z.detach(), dim=1) for z in part_logits], dim=1)  # B x P x C
    ensemble = (weights.unsqueeze(2) * probs).sum(1)
    onehot = F.one_hot(targets, ensemble.shape[1]).float()
    return lam * onehot + (1 - lam) * ensemble


def agreement_aware_terms(logits, targets, agreement):
    """The two terms of agreement-aware smoothing: mean_i a_i CE(z_i, y_i) and
    mean_i (1 - a_i) KL(u || softmax(z_i))."""
    log_probs = F.log_softmax(logits, dim=1)
    ce = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    c = logits.shape[1]
    kl_uniform = (-math.log(c) - log_probs).sum(1) / c
    return (agreement * ce).mean(), ((1 - agreement) * kl_uniform).mean()


def agreement_aware_smoothing(logits, targets, agreement):
    """mean_i [a_i CE(z_i, y_i) + (1 - a_i) KL(u || softmax(z_i))]."""
    return sum(agreement_aware_terms(logits, targets, agreement))


def camera_contrast(features, targets, camids, proxies, proxy_pids, proxy_cids, temperature=0.07, num_hard=50):
    """Inter-camera proxy contrast: positives are the sample's cluster's proxies in *other*
    cameras; negatives the ``num_hard`` most similar proxies of other clusters. A sample with
    no positive contributes 0 but counts in the mean."""
    sims = F.normalize(features, dim=1) @ proxies.t() / temperature  # B x M
    same_cluster = targets.unsqueeze(1) == proxy_pids.unsqueeze(0)
    positives = same_cluster & (camids.unsqueeze(1) != proxy_cids.unsqueeze(0))
    # Top-k on detached similarities with other clusters' proxies; when a row has fewer than
    # num_hard of them, the -inf (same-cluster) picks are dropped (the reference keeps them).
    top = sims.detach().masked_fill(same_cluster, float("-inf")).topk(min(num_hard, sims.shape[1]), dim=1)
    hard = torch.zeros_like(positives).scatter_(1, top.indices, torch.isfinite(top.values))
    log_denominator = torch.logsumexp(sims.masked_fill(~(positives | hard), float("-inf")), dim=1, keepdim=True)
    log_prob = (sims - log_denominator).masked_fill(~positives, 0.0)
    per_sample = -log_prob.sum(1) / positives.sum(1).clamp(min=1)
    return per_sample.mean()


def supervised_contrastive(features, targets, temperature=0.07):
    """Per-part loss of SCD: -mean_i sum_j M_ij (S_ij - logsumexp_k S_ik) / (sum_j M_ij + 1e-6),
    S = z z^T / tau on L2-normalised z, M_ij = [y_i = y_j] (diagonal included)."""
    z = F.normalize(features, dim=1)
    sims = z @ z.t() / temperature
    mask = (targets.unsqueeze(0) == targets.unsqueeze(1)).float()
    log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
    return -((mask * log_prob).sum(1) / (mask.sum(1) + 1e-6)).mean()


def noise_loss(eps_hat, eps, snr=None, snr_gamma=None):
    """L_noise: the per-sample MSE(eps_hat, eps), averaged over the batch.

    The denoiser predicts x0 and eps_hat is the noise x0_hat implies, so per sample
    MSE(eps_hat, eps) = SNR(t) MSE(x0_hat, theta), with SNR = abar/(1 - abar) about 24,000 at
    t = 0: unweighted (``snr_gamma`` None, the reference), a few small t dominate the batch's
    gradient. min-SNR-gamma weighting (Hang et al., ICCV 2023) multiplies each sample by
    min(SNR, gamma) / SNR, i.e. the x0 error counts with weight min(SNR, gamma) <= gamma.
    """
    per_sample = (eps_hat - eps).pow(2).mean(1)
    if snr_gamma is not None:
        per_sample = per_sample * snr.clamp(max=snr_gamma) / snr
    return per_sample.mean()


def scd_loss(eps_hat, eps, x0_hat, theta, part_features, targets, w_cons=0.5, w_con=0.3, temperature=0.07,
             snr=None, snr_gamma=None):
    """The three terms of L_scd: ``noise`` (``noise_loss``), ``consistency`` = w_cons
    (MSE(x0_hat, sg theta) + 0.1 (1 - cos)) and ``contrast`` = w_con sum_p softmax(-sg l)_p l_p."""
    theta = theta.detach()
    cons = F.mse_loss(x0_hat, theta) + 0.1 * (1 - F.cosine_similarity(x0_hat, theta, dim=1).mean())
    per_part = torch.stack([supervised_contrastive(f, targets, temperature) for f in part_features.unbind(1)])
    weights = F.softmax(-per_part.detach(), dim=0)
    return {"noise": noise_loss(eps_hat, eps, snr, snr_gamma), "consistency": w_cons * cons,
            "contrast": w_con * (weights * per_part).sum()}


# ---------------------------------------------------------------- registered losses

@LOSS_REGISTRY.register()
class PSCLoss(ReidLoss):
    """Patch Semantic Consistency: label refinement on the global classifier plus
    agreement-aware label smoothing on the part classifiers (plain label smoothing before
    ``ls_start_epoch``). The agreement scores are recomputed every epoch from the clustering
    features (``on_pseudo_labels``) and looked up by the batch's ``index``."""

    def __init__(self, k=20, score="mmd", lam=0.5, ls_start_epoch=5, epsilon=0.1, scale=1.0, knn_backend="auto"):
        super().__init__()
        self.k, self.score, self.lam, self.ls_start_epoch = k, score, lam, ls_start_epoch
        self.epsilon, self.scale, self.knn_backend = epsilon, scale, knn_backend
        self.epoch = 0
        self.register_buffer("agreement", torch.zeros(0, 0))

    @classmethod
    def from_config(cls, cfg):
        p = cfg.PISL.PSC
        return cls(k=p.K, score=p.SCORE, lam=p.REFINE_LAMBDA, ls_start_epoch=p.LS_START_EPOCH, epsilon=p.EPSILON,
                   scale=p.SCALE, knn_backend=cfg.CLUSTER.KNN_BACKEND)

    def on_pseudo_labels(self, state):
        scores = consistency_scores(state.features["global"], state.features["parts"], self.k, self.score, self.knn_backend)
        self.agreement = scores[torch.as_tensor(state.clustered)].to(self.agreement.device)
        self.epoch = state.epoch
        # The mean agreement weights the smoothing's CE (and 1 minus it, its KL to uniform).
        state.metrics.update({f"PSCLoss/agreement_mean/p{p}": a.item() for p, a in enumerate(self.agreement.mean(0))})
        table = tabulate(agreement_summary(scores), headers=["part", "p10", "p50", "p90", "std", "weight spread"],
                         tablefmt="pipe", floatfmt=".3f")
        logger.info(f"PSC agreement ({self.score}, k={self.k}) before epoch {state.epoch}:\n{table}")

    def forward(self, outputs, batch):
        """Three logged terms: ``global`` (label-refined CE), ``part_ce`` and ``part_kl`` (their
        mean over parts: the agreement-weighted CE and uniform-KL of the smoothing, or the plain
        label-smoothing CE and 0 before ``ls_start_epoch``)."""
        targets = batch["targets"].to(outputs["logits"].device)
        agreement = self.agreement[batch["index"].to(self.agreement.device)]
        refined = refined_targets(targets, outputs["part_logits"], agreement, self.lam)
        global_loss = soft_target_cross_entropy(outputs["logits"], refined)
        if self.epoch >= self.ls_start_epoch:
            terms = [agreement_aware_terms(z, targets, agreement[:, p]) for p, z in enumerate(outputs["part_logits"])]
        else:
            zero = global_loss.new_zeros(())
            terms = [(cross_entropy_label_smooth(z, targets, self.epsilon), zero) for z in outputs["part_logits"]]
        part_ce, part_kl = (torch.stack(t).mean() for t in zip(*terms))
        return {"global": self.scale * global_loss, "part_ce": self.scale * part_ce, "part_kl": self.scale * part_kl}


@LOSS_REGISTRY.register()
class PartCrossEntropyLoss(CrossEntropyLoss):
    """Supervised part loss: the mean over parts of each part classifier's label-smoothed CE
    (``MODEL.LOSSES.CE``'s epsilon and scale), on the batch's true identities. PSC's
    counterpart for runs with labels, which have no clustering and so no agreement scores."""

    def forward(self, outputs, batch):
        targets = batch["targets"].to(outputs["logits"].device)
        per_part = [cross_entropy_label_smooth(z, targets, self.epsilon) for z in outputs["part_logits"]]
        return self.scale * torch.stack(per_part).mean()


@LOSS_REGISTRY.register()
class CameraContrastLoss(ReidLoss):
    """W_cam (L_gcam + mean_p L_pcam) with proxies per (cluster, camera), rebuilt each epoch."""

    def __init__(self, temperature=0.07, num_hard=50, scale=0.5):
        super().__init__()
        self.temperature, self.num_hard, self.scale = temperature, num_hard, scale
        for name in ("proxies", "part_proxies", "proxy_pids", "proxy_cids"):
            self.register_buffer(name, torch.zeros(0))

    @classmethod
    def from_config(cls, cfg):
        c = cfg.PISL.CAM
        return cls(temperature=c.TEMP, num_hard=c.NUM_HARD, scale=c.SCALE)

    def on_pseudo_labels(self, state):
        keep = state.clustered
        labels, cams = state.labels[keep], state.camids[keep]
        device = self.proxies.device
        proxies, pids, cids = camera_proxies(state.features["global"][keep], labels, cams)
        parts = state.features["parts"][keep]
        self.part_proxies = torch.stack([camera_proxies(parts[:, p], labels, cams)[0] for p in range(parts.shape[1])]).to(device)
        self.proxies, self.proxy_pids, self.proxy_cids = proxies.to(device), pids.to(device), cids.to(device)

    def forward(self, outputs, batch):
        device = self.proxies.device
        targets, camids = batch["targets"].to(device), batch["camids"].to(device)
        args = (targets, camids)
        common = dict(proxy_pids=self.proxy_pids, proxy_cids=self.proxy_cids, temperature=self.temperature,
                      num_hard=self.num_hard)
        global_loss = camera_contrast(outputs["features"], *args, self.proxies, **common)
        part_loss = torch.stack([camera_contrast(f, *args, self.part_proxies[p], **common)
                                 for p, f in enumerate(outputs["part_features"].unbind(1))]).mean()
        return self.scale * (global_loss + part_loss)


@LOSS_REGISTRY.register()
class SCDLoss(ReidLoss):
    """Semantic Controlled Diffusion loss, weight W_diff, as three logged terms (noise,
    consistency, contrast). Needs the diffusion_stn generator. ``snr_gamma`` None keeps the
    reference's unweighted noise MSE; a number applies min-SNR weighting (``noise_loss``).
    ``w_bound`` > 0 adds a term ``bound``: the generator's ``saturation`` penalty."""

    def __init__(self, w_cons=0.5, w_con=0.3, temperature=0.07, scale=0.1, snr_gamma=5.0, w_bound=0.0):
        super().__init__()
        self.w_cons, self.w_con, self.temperature, self.scale = w_cons, w_con, temperature, scale
        self.snr_gamma, self.w_bound = snr_gamma, w_bound

    @classmethod
    def from_config(cls, cfg):
        s = cfg.PISL.SCD
        gamma = {"min_snr": s.SNR_GAMMA, "none": None}
        if s.NOISE_WEIGHTING not in gamma:
            raise KeyError(f"Unknown PISL.SCD.NOISE_WEIGHTING '{s.NOISE_WEIGHTING}', expected min_snr or none")
        return cls(w_cons=s.W_CONS, w_con=s.W_CON, temperature=s.TEMP, scale=s.SCALE, snr_gamma=gamma[s.NOISE_WEIGHTING],
                   w_bound=s.W_BOUND)

    def forward(self, outputs, batch):
        if "eps_hat" not in outputs:
            raise KeyError("SCDLoss needs PISL.PART_GENERATOR diffusion_stn; remove it from MODEL.LOSSES.NAMES for stripes")
        targets = batch["targets"].to(outputs["eps_hat"].device)
        # The contrast compares samples with each other: under DDP it sees the global batch.
        parts, targets = comm.all_gather_with_grad(outputs["part_features"]), comm.all_gather_tensor(targets)
        terms = scd_loss(outputs["eps_hat"], outputs["eps"], outputs["x0_hat"], outputs["theta"], parts, targets,
                         self.w_cons, self.w_con, self.temperature, outputs["snr"], self.snr_gamma)
        if self.w_bound > 0:
            terms["bound"] = self.w_bound * outputs["saturation"]
        return {name: self.scale * value for name, value in terms.items()}
