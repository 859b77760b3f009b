"""PISL (Tao et al., IEEE TIP 2024) as a plugin of the pisl toolbox: registers the PISL
meta-architecture, the part generators (stripes, diffusion_stn), the PSC, camera-contrast
and SCD losses and the part-box picture hook, and adds the PISL.* config keys."""
from . import config, hooks, losses, meta_arch, part_generators  # noqa: F401  (registration)
