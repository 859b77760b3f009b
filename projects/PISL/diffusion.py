"""The diffusion machinery of the Spatial Diffusion Model, on vectors of affine parameters."""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def cosine_alphas_cumprod(timesteps=1000, s=0.008):
    """abar_t for t = 0..T-1 from the cosine schedule (Nichol & Dhariwal), with betas clipped
    to 0.999 as in the reference."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64)
    f = torch.cos(((steps / timesteps) + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(0, 0.999)
    return torch.cumprod(1 - betas, dim=0)


def timestep_embedding(t, dim=512):
    """[sin(t w), cos(t w)] with w_i = exp(-i ln(10000) / (dim/2 - 1)), sines first."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1))
    args = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class Denoiser(nn.Module):
    """An MLP on [x_t ; s c ; emb(t)] -> 1024 -> 512 -> dim(x). Its last layer starts at 0, so at
    first it adds nothing to the prior it corrects (see DiffusionSTNParts.predict_start).

    ``cond_scale`` s multiplies the (unit-norm) condition c. The time embedding's norm is
    sqrt(time_dim / 2) (16 for 512): with s = 1 the condition's share of the first layer's
    input is 16x smaller than the time's at init, and nothing made the output depend on it,
    so a trained denoiser ignored the image (the same boxes for every image)."""

    def __init__(self, x_dim, cond_dim, time_dim=512, cond_scale=1.0):
        super().__init__()
        self.x_dim, self.cond_dim, self.time_dim, self.cond_scale = x_dim, cond_dim, time_dim, cond_scale
        self.net = nn.Sequential(
            nn.Linear(x_dim + cond_dim + time_dim, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Linear(512, x_dim),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def conditioned(self, cond):
        """The denoiser for fixed conditions, as a function of (x_t, t).

        The first layer is applied to the concatenation piece by piece: the condition's share
        is computed once (not once per sampling step) and the time embedding's once per
        distinct t (one row per DDIM step instead of one per sample); most of the layer's
        work lies in those two pieces.
        """
        first = self.net[0]
        w_x, w_c, w_t = first.weight.split([self.x_dim, self.cond_dim, self.time_dim], dim=1)
        cond_part = F.linear(self.cond_scale * cond, w_c, first.bias)

        def denoise(x_t, t):
            """``t``: one step per row (a tensor), or one step for all rows (an int, as in
            sampling: no data-dependent op, so the sampler exports to ONNX)."""
            if isinstance(t, int):
                time_part = F.linear(timestep_embedding(torch.tensor([t], device=x_t.device), self.time_dim), w_t)
            else:
                steps, which = t.unique(return_inverse=True)
                time_part = F.linear(timestep_embedding(steps, self.time_dim), w_t)[which]
            return self.net[1:](cond_part + F.linear(x_t, w_x) + time_part)

        return denoise

    def forward(self, x_t, t, cond):
        return self.conditioned(cond)(x_t, t)


class GaussianDiffusion(nn.Module):
    """Forward noising, the noise an x0 prediction implies, and deterministic DDIM (eta = 0)
    sampling."""

    def __init__(self, timesteps=1000, cosine_s=0.008):
        super().__init__()
        self.timesteps = timesteps
        abar = cosine_alphas_cumprod(timesteps, cosine_s)
        self.register_buffer("alphas_cumprod", abar.float())

    def _coef(self, t):
        """sqrt(abar_t), sqrt(1 - abar_t): a column for a tensor of per-row steps, scalars for an
        int step."""
        abar = self.alphas_cumprod[t]
        if torch.is_tensor(t):
            abar = abar.unsqueeze(1)
        return abar.sqrt(), (1 - abar).sqrt()

    def snr(self, t):
        """Signal-to-noise ratio abar_t / (1 - abar_t) of step t."""
        abar = self.alphas_cumprod[t]
        return abar / (1 - abar)

    def q_sample(self, x0, t, noise):
        a, b = self._coef(t)
        return a * x0 + b * noise

    def predict_eps(self, x_t, t, x0):
        """The noise that takes ``x0`` to ``x_t`` at step t."""
        a, b = self._coef(t)
        return (x_t - a * x0) / b

    def sample_timesteps(self, steps):
        """``steps`` timesteps from T-1 down to 0, evenly spaced (Python ints)."""
        ts = np.linspace(self.timesteps - 1, 0, steps).round().astype(int).tolist()
        return [t for i, t in enumerate(ts) if i == 0 or t != ts[i - 1]]

    @torch.no_grad()
    def ddim_sample(self, x0_fn, x_T, steps=50):
        """DDIM (eta = 0) from the noise ``x_T``: at each step ``x0_fn(x_t, t)`` predicts the
        (bounded) x0, the noise it implies is recomputed and x moves to the previous timestep.
        Returns the final x0."""
        x = x0 = x_T
        ts = self.sample_timesteps(steps)
        for i, t in enumerate(ts):
            x0 = x0_fn(x, t)
            eps = self.predict_eps(x, t, x0)
            if i + 1 < len(ts):
                a_prev, b_prev = self._coef(ts[i + 1])
                x = a_prev * x0 + b_prev * eps
        return x0
