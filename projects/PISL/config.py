from pisl.config import CfgNode as CN
from pisl.config import register_config_check, register_config_extension
from pisl.engine.hooks import HOOK_REGISTRY


@register_config_extension
def add_pisl_config(cfg):
    """PISL's keys. The defaults are the published method (docs/method.md; the fixes of the
    official code's defects in docs/deviations.md); configs/Base-PISL-partition.yml sets the
    partition recipe's keys."""
    cfg.PISL = CN()
    cfg.PISL.NUM_PARTS = 3  # P, the number of part features
    cfg.PISL.PART_GENERATOR = "diffusion_stn"  # diffusion_stn | stripes (= PPLR)
    # Concatenate the part features to the global one at test time (default: global only).
    cfg.PISL.TEST_WITH_PARTS = False
    # Evaluation also reports the other feature (global+parts, or global with TEST_WITH_PARTS):
    # one DDIM sample per test image more when the main feature is global only.
    cfg.PISL.EVALUATE_BOTH = True

    cfg.PISL.STN = CN()
    cfg.PISL.STN.CHANNELS = 4096  # localisation conv width (reference 4096)

    cfg.PISL.DIFFUSION = CN()
    cfg.PISL.DIFFUSION.TIMESTEPS = 1000  # steps of the forward noising process
    cfg.PISL.DIFFUSION.COSINE_S = 0.008  # offset s of the cosine noise schedule
    cfg.PISL.DIFFUSION.SAMPLE_STEPS = 50  # DDIM steps at clustering (and test) time
    cfg.PISL.DIFFUSION.SAMPLE_SEED = 0  # seed of the sampler's fixed start x_T (the same boxes on every run)
    # What the diffusion generates: "affine" (the paper's six affine parameters a part) |
    # "partition" (P + 2 logits of a partition of the image height: a margin above the person, P
    # parts tiling its extent, a margin below; every box inside the image, ordered, never collapsed).
    cfg.PISL.DIFFUSION.BOXES = "affine"
    # Affine: [] (the paper's) clamps each parameter to the map's coordinate range [-1, 1];
    # six offsets [sx, shx, tx, shy, sy, ty] instead keep each parameter within that much of its
    # anchor, smoothly (tanh; sy and ty in stripe heights 1/P, the rest in map units).
    cfg.PISL.DIFFUSION.BOX_LIMITS = []
    # Partition: the least height of a part, as a fraction of the image height.
    cfg.PISL.DIFFUSION.MIN_PART_HEIGHT = 0.1
    # Where the boxes start before the denoiser's correction: "stripes" (the image's P stripes,
    # the same for every image; the paper's STN start, with the stripes as its bias) | "person"
    # (the P stripes of the person's vertical extent found in each image, see PERSON_CUE).
    cfg.PISL.DIFFUSION.ANCHORS = "stripes"
    # The denoiser's condition: "global" (the unit global feature, the paper's) | "global+rows"
    # (also the feature map's row profile in ROW_BINS bins: where along the height the activation is).
    cfg.PISL.DIFFUSION.CONDITION = "global"
    cfg.PISL.DIFFUSION.ROW_BINS = 8  # bins of the row profile in the "+rows" conditions
    # Person anchors: the extent runs from this share of the cue's mass to 1 minus it.
    cfg.PISL.DIFFUSION.PERSON_QUANTILE = 0.02
    # Person anchors: where the person is found. "features" (each row's mean activation in the
    # feature map; needs a backbone that has learned to find people) | "image" (the rows of the
    # input that differ from their own border colour; needs no trained network).
    cfg.PISL.DIFFUSION.PERSON_CUE = "features"
    # The denoiser's condition (the unit-norm global feature) times this, against a time
    # embedding of norm 16. 1: the paper's unit feature.
    cfg.PISL.DIFFUSION.COND_SCALE = 1.0
    # Weight decay of the part generator (STN and denoiser), its own optimizer group; the paper
    # decays every parameter alike (SOLVER.WEIGHT_DECAY's 5e-4).
    cfg.PISL.DIFFUSION.WEIGHT_DECAY = 5e-4

    cfg.PISL.PSC = CN()
    # The part-global agreement score: mmd (the paper's multi-kernel MMD of the neighbourhoods'
    # distance matrices, turned into an agreement) | jaccard (PPLR's overlap of the k-NN sets).
    cfg.PISL.PSC.SCORE = "mmd"
    cfg.PISL.PSC.K = 20  # neighbours compared by the part-global agreement score
    cfg.PISL.PSC.REFINE_LAMBDA = 0.5  # weight of the one-hot target in label refinement
    # The part classifiers' smoothing: agreement-aware (the paper's PSC) from this epoch on,
    # plain label smoothing (EPSILON) before it. A large value: plain throughout.
    cfg.PISL.PSC.LS_START_EPOCH = 5
    cfg.PISL.PSC.EPSILON = 0.1  # plain label smoothing's epsilon
    cfg.PISL.PSC.SCALE = 1.0  # weight of PSCLoss
    # Part classifiers' logits: 0 = the paper's (BN-neck feature . unit centroid rows, whose
    # scale is the feature norm); s > 0 = s * cosine, which keeps agreement-aware smoothing's
    # KL from growing with the feature norm.
    cfg.PISL.PSC.PART_LOGIT_SCALE = 0.0

    # PartBoxHook: pictures of the part boxes on test images, in OUTPUT_DIR/part_boxes/.
    cfg.PISL.BOX_PICTURE = CN()
    cfg.PISL.BOX_PICTURE.EPOCHS = [0, -1]  # after which epochs to draw (-1: the last; []: none)
    cfg.PISL.BOX_PICTURE.NUM_IMAGES = 16  # test images in each picture

    cfg.PISL.CAM = CN()
    cfg.PISL.CAM.SCALE = 0.5  # W_cam (1.0 for MSMT17)
    cfg.PISL.CAM.TEMP = 0.07  # temperature of the inter-camera proxy contrast
    cfg.PISL.CAM.NUM_HARD = 50  # hardest proxies of other clusters used as negatives

    cfg.PISL.SCD = CN()
    cfg.PISL.SCD.SCALE = 0.1  # W_diff
    cfg.PISL.SCD.W_CONS = 0.5  # weight of SCD's consistency term (x0_hat against the STN's theta)
    cfg.PISL.SCD.W_CON = 0.3  # weight of SCD's part contrast term
    cfg.PISL.SCD.TEMP = 0.07  # temperature of SCD's part contrast
    # Weighting of the noise MSE over timesteps: none (the paper's plain MSE) | min_snr
    # (min(SNR, SNR_GAMMA) / SNR: bounds the weight of the x0 error at small t).
    cfg.PISL.SCD.NOISE_WEIGHTING = "none"
    cfg.PISL.SCD.SNR_GAMMA = 5.0  # min_snr's gamma: the largest weight of a sample's x0 error
    # Weight of the penalty that keeps the boxes off their bounds, on the STN's boxes and the
    # denoiser's: partition boxes, KL(uniform || shares) of the cells (partition_boxes.share_barrier);
    # affine boxes with BOX_LIMITS, offsets more than one limit deep in the tanh. 0: off (the paper).
    cfg.PISL.SCD.W_BOUND = 0.0
    # Partition boxes: where the share barrier is lowest. uniform (equal shares of the free
    # height: one partition, the same for every image) | prior (each image's prior partition).
    cfg.PISL.SCD.BARRIER_TARGET = "uniform"


@register_config_check
def check_pisl_config(cfg):
    p, problems = cfg.PISL, []
    if p.NUM_PARTS < 1:
        problems.append(f"PISL.NUM_PARTS is {p.NUM_PARTS}: must be at least 1 (the paper uses 3)")
    if not 1 <= p.DIFFUSION.SAMPLE_STEPS <= p.DIFFUSION.TIMESTEPS:
        problems.append(f"PISL.DIFFUSION.SAMPLE_STEPS is {p.DIFFUSION.SAMPLE_STEPS}: must be between 1 and "
                        f"PISL.DIFFUSION.TIMESTEPS ({p.DIFFUSION.TIMESTEPS})")
    if len(p.DIFFUSION.BOX_LIMITS) not in (0, 6) or min(p.DIFFUSION.BOX_LIMITS, default=1) <= 0:
        problems.append(f"PISL.DIFFUSION.BOX_LIMITS is {list(p.DIFFUSION.BOX_LIMITS)}: give six positive offsets "
                        "[sx, shx, tx, shy, sy, ty] (sy and ty in stripe heights), or [] for the paper's clamp")
    if p.DIFFUSION.BOXES == "affine" and not p.DIFFUSION.BOX_LIMITS and p.SCD.W_BOUND > 0:
        problems.append(f"PISL.SCD.W_BOUND is {p.SCD.W_BOUND} with affine boxes and BOX_LIMITS []: the clamp has "
                        "no bound to keep off; set W_BOUND 0 or give BOX_LIMITS")
    if p.DIFFUSION.BOXES not in ("partition", "affine"):
        problems.append(f"PISL.DIFFUSION.BOXES is '{p.DIFFUSION.BOXES}': use partition or affine")
    if not 0 <= p.DIFFUSION.MIN_PART_HEIGHT * p.NUM_PARTS < 1:
        problems.append(f"PISL.DIFFUSION.MIN_PART_HEIGHT is {p.DIFFUSION.MIN_PART_HEIGHT}: the {p.NUM_PARTS} parts' "
                        "least heights must sum to less than the image (0 <= MIN_PART_HEIGHT < 1 / NUM_PARTS)")
    if p.DIFFUSION.CONDITION not in ("global", "global+rows") or p.DIFFUSION.ROW_BINS < 1:
        problems.append(f"PISL.DIFFUSION.CONDITION is '{p.DIFFUSION.CONDITION}' and ROW_BINS {p.DIFFUSION.ROW_BINS}: "
                        "use global or global+rows, and at least 1 bin")
    if p.DIFFUSION.ANCHORS not in ("stripes", "person"):
        problems.append(f"PISL.DIFFUSION.ANCHORS is '{p.DIFFUSION.ANCHORS}': use stripes or person")
    if p.DIFFUSION.PERSON_CUE not in ("features", "image"):
        problems.append(f"PISL.DIFFUSION.PERSON_CUE is '{p.DIFFUSION.PERSON_CUE}': use features or image")
    if not 0 < p.DIFFUSION.PERSON_QUANTILE < 0.5:
        problems.append(f"PISL.DIFFUSION.PERSON_QUANTILE is {p.DIFFUSION.PERSON_QUANTILE}: must be between 0 and 0.5")
    if p.DIFFUSION.COND_SCALE <= 0 or p.DIFFUSION.WEIGHT_DECAY < 0:
        problems.append(f"PISL.DIFFUSION.COND_SCALE ({p.DIFFUSION.COND_SCALE}) must be positive and "
                        f"PISL.DIFFUSION.WEIGHT_DECAY ({p.DIFFUSION.WEIGHT_DECAY}) at least 0")
    if p.PSC.PART_LOGIT_SCALE < 0:
        problems.append(f"PISL.PSC.PART_LOGIT_SCALE is {p.PSC.PART_LOGIT_SCALE}: use 0 (plain logits) or a positive scale")
    if p.PSC.K < 1:
        problems.append(f"PISL.PSC.K is {p.PSC.K}: must be at least 1 (the paper uses 20)")
    if p.SCD.NOISE_WEIGHTING not in ("min_snr", "none"):
        problems.append(f"PISL.SCD.NOISE_WEIGHTING is '{p.SCD.NOISE_WEIGHTING}': use min_snr or none")
    if p.SCD.W_BOUND < 0:
        problems.append(f"PISL.SCD.W_BOUND is {p.SCD.W_BOUND}: must be 0 (off) or positive")
    if p.SCD.BARRIER_TARGET not in ("uniform", "prior"):
        problems.append(f"PISL.SCD.BARRIER_TARGET is '{p.SCD.BARRIER_TARGET}': use uniform or prior")
    if p.PSC.SCORE not in ("mmd", "jaccard"):
        problems.append(f"PISL.PSC.SCORE is '{p.PSC.SCORE}': use mmd or jaccard")
    if p.PART_GENERATOR == "stripes" and "SCDLoss" in cfg.MODEL.LOSSES.NAMES:
        problems.append("SCDLoss needs PISL.PART_GENERATOR diffusion_stn: remove it from MODEL.LOSSES.NAMES for stripes")
    # Without a hook that supplies pseudo-labels (the trainer's own test: provides_train_loader)
    # these losses never get their agreement scores or proxies.
    if not any(getattr(HOOK_REGISTRY.get(name), "provides_train_loader", False) for name in cfg.HOOKS if name in HOOK_REGISTRY):
        for loss in ("PSCLoss", "CameraContrastLoss"):
            if loss in cfg.MODEL.LOSSES.NAMES:
                problems.append(f"{loss} needs the pseudo-labels of HOOKS' ClusteringHook; with labels use "
                                "CrossEntropyLoss and PartCrossEntropyLoss (projects/PISL/configs/cuhk03np_supervised.yml)")
    return problems
