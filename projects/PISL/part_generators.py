"""Part generators: feature map (B x C x H x W) -> P pooled part features (B x P x C).

Both are registered in PART_GENERATOR_REGISTRY and chosen by ``PISL.PART_GENERATOR``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from pisl.utils.registry import Registry

from .affine_boxes import AffineBoxes, stripe_thetas
from .diffusion import Denoiser, GaussianDiffusion
from .partition_boxes import PartitionBoxes
from .person_cues import image_person_extent, person_extent, row_profile

PART_GENERATOR_REGISTRY = Registry("PART_GENERATOR")


@PART_GENERATOR_REGISTRY.register(name="stripes")
class StripeParts(nn.Module):
    """PPLR's parts: P uniform horizontal stripes, average-pooled."""

    def __init__(self, in_channels, num_parts):
        super().__init__()
        self.num_parts = num_parts

    @classmethod
    def from_config(cls, cfg, in_channels):
        return cls(in_channels, cfg.PISL.NUM_PARTS)

    def forward(self, feature_map, global_feature=None, images=None):
        parts = F.adaptive_avg_pool2d(feature_map, (self.num_parts, 1)).squeeze(3)
        thetas = stripe_thetas(self.num_parts).flatten().to(feature_map).expand(len(feature_map), -1)
        return {"parts": parts.transpose(1, 2), "thetas": thetas}


class Localisation(nn.Module):
    """STN localisation net: conv3x3 (no padding) -> BN -> ReLU -> max-pool 3/2 -> GAP -> FC
    512 -> ReLU -> FC, the last FC starting at weight 0 with ``start`` (the box parameters of
    the stripes) as bias."""

    def __init__(self, in_channels, start, channels=4096):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(channels, 512), nn.ReLU(inplace=True), nn.Linear(512, len(start)),
        )
        nn.init.kaiming_normal_(self.features[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.features[-1].weight)
        with torch.no_grad():
            self.features[-1].bias.copy_(start)

    def forward(self, feature_map):
        if min(feature_map.shape[2:]) < 3:
            # Too small for the unpadded 3x3 conv (e.g. 4 x 2 from small inputs): zero-pad by one
            # cell, i.e. a padded conv. Larger maps keep the reference's valid conv (and its cost).
            feature_map = F.pad(feature_map, (1, 1, 1, 1))
        return self.features(feature_map)  # B x the box parameters


@PART_GENERATOR_REGISTRY.register(name="diffusion_stn")
class DiffusionSTNParts(nn.Module):
    """The Spatial Diffusion Model: an STN predicts the box parameters; a diffusion model over
    them, conditioned on the detached L2-normalised global feature, learns to denoise.

    Training: theta_stn = STN(X); x_t = q(theta_stn, t, eps) with t drawn per sample;
    x0_hat = denoised x_t; the part patches are cut with x0_hat, so the part losses
    train the denoiser (semantic control). Eval: theta = DDIM sample from one seeded x_T.

    ``boxes`` says what the parameters are: "affine" (the default, the paper's: six affine
    parameters a part, clamped to the map's range or, with ``limits``, bounded offsets from
    their anchors, ``AffineBoxes``) or "partition" (P + 2 logits of a partition of the image
    height, ``PartitionBoxes``). The keyword defaults are the published recipe's. ``anchors`` is their prior,
    where they start: "stripes" (the same for every image) or "person" (the person's extent in
    each image, found by ``person_cue``: "features", the feature map's activation
    (``person_extent``), or "image", the rows that differ from their own border colour
    (``image_person_extent``; the generator is then called with the input images)).

    The denoiser predicts x0 as the prior plus the MLP's correction (zero at init), and the
    noise estimate eps_hat is the noise that x0_hat implies: an untrained model samples and
    trains on the prior, i.e. starts as PPLR (stripe prior). Predicting x0 rather than the noise keeps the
    patches well-conditioned at every t: recovering x0 from a noise estimate divides by
    sqrt(abar_t), which reaches 5e-5 at t = 999 and turns any error into a patch off the map.
    With the stripe prior the diffusion runs on the parameters themselves, as the reference's;
    with the person prior, which the denoiser does not see, on the offsets from it (``origin``).

    ``condition`` "global+rows" gives the denoiser the feature map's row profile
    (``row_profile``) beside the global feature: where along the height the person is, in a
    form it need not learn to read from a pooled feature.
    """

    def __init__(self, in_channels, num_parts, *, stn_channels=4096, timesteps=1000, cosine_s=0.008,
                 sample_steps=50, sample_seed=0, limits=(), cond_scale=1.0,
                 anchors="stripes", person_quantile=0.02, boxes="affine", min_part_height=0.1, condition="global",
                 row_bins=8, person_cue="features", barrier_target="uniform"):
        super().__init__()
        self.num_parts, self.sample_steps = num_parts, sample_steps
        self.with_rows, self.row_bins = condition == "global+rows", row_bins  # checked by check_pisl_config
        self.person_cue, self.person_quantile = person_cue, person_quantile
        if boxes == "partition":
            self.boxes = PartitionBoxes(num_parts, anchors, min_part_height=min_part_height, barrier_target=barrier_target)
        else:
            self.boxes = AffineBoxes(num_parts, limits=limits, prior=anchors)
        self.stn = Localisation(in_channels, self.boxes.stripes, stn_channels)
        self.diffusion = GaussianDiffusion(timesteps, cosine_s)
        cond_dim = in_channels + (row_bins if self.with_rows else 0)
        self.denoiser = Denoiser(self.boxes.dim, cond_dim, cond_scale=cond_scale)
        # The sampler's start, drawn once on the CPU: the same on every device, and a constant
        # (not a random op) in an exported graph.
        x_T = torch.randn(1, self.boxes.dim, generator=torch.Generator().manual_seed(sample_seed))
        self.register_buffer("x_T", x_T, persistent=False)

    @classmethod
    def from_config(cls, cfg, in_channels):
        d = cfg.PISL.DIFFUSION
        return cls(in_channels, cfg.PISL.NUM_PARTS, stn_channels=cfg.PISL.STN.CHANNELS, timesteps=d.TIMESTEPS,
                   cosine_s=d.COSINE_S, sample_steps=d.SAMPLE_STEPS, sample_seed=d.SAMPLE_SEED, limits=d.BOX_LIMITS,
                   cond_scale=d.COND_SCALE, anchors=d.ANCHORS, person_quantile=d.PERSON_QUANTILE, boxes=d.BOXES,
                   min_part_height=d.MIN_PART_HEIGHT, condition=d.CONDITION, row_bins=d.ROW_BINS,
                   person_cue=d.PERSON_CUE, barrier_target=cfg.PISL.SCD.BARRIER_TARGET)

    @property
    def limits(self):
        """The affine boxes' tanh bounds (6P), None for a partition or clamped affine boxes."""
        return None if getattr(self.boxes, "clamped", True) else self.boxes.limits

    def at_bound(self, features):
        return self.boxes.at_bound(features)

    def conditions(self, feature_map, global_feature):
        """What the denoiser is conditioned on: the unit global feature, with "+rows" the row
        profile. Detached: the denoiser reads them, it does not train the backbone."""
        cond = F.normalize(global_feature.detach(), dim=1)
        if self.with_rows:
            cond = torch.cat([cond, row_profile(feature_map, self.row_bins).to(cond)], dim=1)
        return cond

    def person(self, feature_map, images):
        """(top, extent), B each: where ``person_cue`` finds the person; None with the stripe prior."""
        if self.boxes.prior_name != "person":
            return None
        if self.person_cue == "features":
            return person_extent(feature_map, self.person_quantile)
        if images is None:
            raise ValueError("PISL.DIFFUSION.PERSON_CUE 'image' finds the person in the input images: "
                             "call the part generator with them (generator(feature_map, global_feature, images))")
        return image_person_extent(images, self.person_quantile)

    def cond_and_prior(self, feature_map, global_feature, images):
        """The denoiser's condition and each image's prior parameters (``boxes.prior``, from the
        person's extent with the person prior)."""
        person = self.person(feature_map, images)
        return self.conditions(feature_map, global_feature), self.boxes.prior(feature_map, person)

    def origin(self, prior):
        """What the diffusion's x0 is measured from: 0 with the stripe prior (the parameters
        themselves), the prior with the person prior (the denoiser cannot recover a prior it
        does not see)."""
        return prior if self.boxes.prior_name == "person" else torch.zeros_like(prior)

    def predict_start(self, correction, prior):
        """x0_hat: the prior plus the denoiser's correction, settled (bounded, for affine boxes)."""
        return self.boxes.settle(prior + correction, prior)

    def stn_params(self, feature_map, prior):
        """The STN's box parameters and their unsettled offsets from the prior (the STN starts
        at the stripes, so its output less the stripes is its offset)."""
        offset = self.stn(feature_map) - self.boxes.stripes
        return self.boxes.settle(prior + offset, prior), offset

    def _patches(self, feature_map, params):
        return self.boxes.patches(feature_map, params)

    def _eval_outputs(self, feature_map, params, prior):
        out = {"parts": self._patches(feature_map, params), "thetas": self.boxes.thetas(params)}
        if isinstance(self.boxes, PartitionBoxes):
            out["box_params"] = params
        if self.boxes.prior_name == "person":  # the stripes are implied
            out["anchors"] = self.boxes.thetas(prior)
        return out

    def forward(self, feature_map, global_feature, images=None):
        """``images``: the input batch (B x 3 x H x W) the map was computed from; needed only
        with the image person cue."""
        cond, prior = self.cond_and_prior(feature_map, global_feature, images)
        if not self.training:
            return self._eval_outputs(feature_map, self.sample(cond, prior), prior)
        theta, stn_offset = self.stn_params(feature_map, prior)
        origin = self.origin(prior)
        t = torch.randint(0, self.diffusion.timesteps, (theta.shape[0],), device=theta.device)
        noise = torch.randn_like(theta)
        x_t = self.diffusion.q_sample(theta - origin, t, noise)
        correction = self.denoiser.conditioned(cond)(x_t, t)
        x0_hat = self.predict_start(correction, prior)
        eps_hat = self.diffusion.predict_eps(x_t, t, x0_hat - origin)
        return {"parts": self._patches(feature_map, x0_hat), "theta": theta, "x0_hat": x0_hat,
                "eps_hat": eps_hat, "eps": noise, "snr": self.diffusion.snr(t),
                "saturation": self.boxes.saturation(stn_offset, prior) + self.boxes.saturation(correction, prior)}

    @torch.no_grad()
    def box_sources(self, feature_map, global_feature, images=None, timesteps=(0, 500, 999), seed=0):
        """Diagnostics (``projects/PISL/tools/box_sources.py``): where a trained model's boxes come from.

        Returns {source: (thetas N x 6P, depth or None)} for the prior, the STN's boxes,
        the DDIM sample, and the x0_hat that the denoiser recovers from the STN's boxes noised
        to each t in ``timesteps`` (the training path). ``depth`` is the mean ``bound_depth``
        over images, per parameter (affine boxes; None for a partition, which has no bound).
        """
        cond, prior = self.cond_and_prior(feature_map, global_feature, images)
        origin = self.origin(prior)
        theta, stn_offset = self.stn_params(feature_map, prior)
        thetas = self.boxes.thetas
        sources = {"prior": (thetas(prior), None), "STN theta": (thetas(theta), self.boxes.depth(stn_offset)),
                   "DDIM sample": (thetas(self.sample(cond, prior)), None)}
        denoise = self.denoiser.conditioned(cond)
        generator = torch.Generator().manual_seed(seed)
        for step in timesteps:
            t = torch.full((len(theta),), step, dtype=torch.long, device=theta.device)
            noise = torch.randn(theta.shape, generator=generator).to(theta)
            correction = denoise(self.diffusion.q_sample(theta - origin, t, noise), t)
            sources[f"x0_hat t={step}"] = (thetas(self.predict_start(correction, prior)), self.boxes.depth(correction))
        return sources

    def sample(self, cond, prior):
        """Deterministic DDIM sample of the box parameters for each conditioning row and its prior.
        Every row starts from the same seeded noise, so an image's parts depend on its own
        conditions and prior only, not on the rest of its batch, its place in it or the batch size."""
        denoise = self.denoiser.conditioned(cond)
        origin = self.origin(prior)
        x_T = self.x_T.expand(cond.shape[0], -1)
        x0_fn = lambda x, t: self.predict_start(denoise(x, t), prior) - origin
        return self.diffusion.ddim_sample(x0_fn, x_T, self.sample_steps) + origin
