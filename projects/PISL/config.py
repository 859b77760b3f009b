from pisl.config import CfgNode as CN
from pisl.config import register_config_extension


@register_config_extension
def add_pisl_config(cfg):
    """PISL's keys. Defaults are the paper recipe (shared/spec/PISL.md)."""
    cfg.PISL = CN()
    cfg.PISL.NUM_PARTS = 3
    cfg.PISL.PART_GENERATOR = "diffusion_stn"  # diffusion_stn | stripes (= PPLR)
    # Concatenate the part features to the global one at test time (default: global only).
    cfg.PISL.TEST_WITH_PARTS = False

    cfg.PISL.STN = CN()
    cfg.PISL.STN.CHANNELS = 4096  # localisation conv width (reference 4096)

    cfg.PISL.DIFFUSION = CN()
    cfg.PISL.DIFFUSION.TIMESTEPS = 1000
    cfg.PISL.DIFFUSION.COSINE_S = 0.008
    cfg.PISL.DIFFUSION.SAMPLE_STEPS = 50  # DDIM steps at clustering (and test) time
    cfg.PISL.DIFFUSION.SAMPLE_SEED = 0
    cfg.PISL.DIFFUSION.CLAMP = 1.5  # |x0_hat| bound on the affine parameters

    cfg.PISL.PSC = CN()
    cfg.PISL.PSC.SCORE = "mmd"  # mmd (PISL) | jaccard (PPLR's cross-agreement)
    cfg.PISL.PSC.K = 20
    cfg.PISL.PSC.REFINE_LAMBDA = 0.5  # weight of the one-hot target in label refinement
    cfg.PISL.PSC.LS_START_EPOCH = 5  # agreement-aware smoothing from this epoch on
    cfg.PISL.PSC.EPSILON = 0.1  # plain label smoothing before that
    cfg.PISL.PSC.SCALE = 1.0

    cfg.PISL.CAM = CN()
    cfg.PISL.CAM.SCALE = 0.5  # W_cam (1.0 for MSMT17)
    cfg.PISL.CAM.TEMP = 0.07
    cfg.PISL.CAM.NUM_HARD = 50

    cfg.PISL.SCD = CN()
    cfg.PISL.SCD.SCALE = 0.1  # W_diff
    cfg.PISL.SCD.W_CONS = 0.5
    cfg.PISL.SCD.W_CON = 0.3
    cfg.PISL.SCD.TEMP = 0.07
