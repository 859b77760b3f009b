from pisl.config import CfgNode as CN
from pisl.config import register_config_check, register_config_extension
from pisl.engine.hooks import HOOK_REGISTRY


@register_config_extension
def add_pisl_config(cfg):
    """PISL's keys. Defaults are the paper recipe (docs/method.md), except where a comment says why not."""
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
    # What the diffusion generates (part_generators.PartitionBoxes, AffineBoxes): "partition" (P + 2 logits: a
    # margin above the person, P parts that tile its extent, a margin below; every box inside
    # the image, ordered, never collapsed, no saturating bound) | "affine" (the reference's six
    # affine parameters a part, as bounded offsets from ANCHORS: on CUHK01 and CUHK03-NP the part
    # losses drove them to their bounds in the first epoch, where the tanh passes no gradient,
    # and the boxes were the same for every image; docs/pisl_cuhk01.md. With person ANCHORS and
    # SCD.W_BOUND 1 on misaligned CUHK01, 5 seeds: level with the partition in mAP, +0.07 +-
    # 1.22, but overlapping neighbours (IoU up to 0.5) reaching past the image's edge).
    cfg.PISL.DIFFUSION.BOXES = "partition"
    # Partition: the least height of a part, as a fraction of the image height.
    cfg.PISL.DIFFUSION.MIN_PART_HEIGHT = 0.1
    # Partition: True learns only the person's extent (a margin above, one below) and cuts it
    # into P equal parts, so the parts cannot take height from each other; False learns each
    # part's height.
    cfg.PISL.DIFFUSION.EQUAL_PARTS = False
    # Affine: largest offset of the boxes from the anchors, per affine parameter [sx, shx, tx,
    # shy, sy, ty] (sy and ty in stripe heights, 1/P; the rest in map units), applied smoothly
    # (tanh) to the STN's theta and to x0_hat: boxes 0.5-1.5 stripes high, centres within half a stripe.
    cfg.PISL.DIFFUSION.BOX_LIMITS = [0.25, 0.1, 0.25, 0.1, 0.5, 0.5]
    # Where the boxes start, before the denoiser's correction: "person" (the P stripes of the
    # person's vertical extent in each image, found in the feature map's activation profile:
    # part_generators.person_extent) | "stripes" (the image's P stripes, the same for every
    # image). Partition boxes on misaligned CUHK01 (seed 1): person 21.83 mAP (22.49 with the
    # parts), stripes 21.36 (21.91), both following the applied shift (r 0.80 / 0.75 on the
    # training crops); over 5 seeds level with stripes (-0.56 +- 2.57 mAP; +2.03 +- 2.51 with the
    # parts); docs/pisl_cuhk01.md. Affine boxes with person anchors were 1.49 +- 0.86
    # mAP below stripe anchors on aligned CUHK01 over 3 seeds.
    cfg.PISL.DIFFUSION.ANCHORS = "person"
    # What the denoiser is conditioned on: "global+rows" (the unit global feature and the feature
    # map's row profile in ROW_BINS bins: where along the height the activation is;
    # part_generators.row_profile) | "global" (the global feature only, the paper's). A linear
    # probe reads the applied shift of misaligned CUHK01 crops from the source model's global
    # feature with R^2 0.88, from the 8-bin profile 0.64, from both 0.91 (tools/probe_condition.py).
    # "global+rows+extent" (ANCHORS person): also the person's top and height that the anchors
    # were cut from, which with PERSON_CUE image the denoiser cannot read from the map. With the
    # image cue on misaligned CUHK01 (3 seeds) it lifts the parts' own gain by 1.36 +- 0.48 mAP
    # but leaves the boxes' overshoot (slope 1.25-1.50) and stays 1.5 below the default's parts.
    cfg.PISL.DIFFUSION.CONDITION = "global+rows"
    cfg.PISL.DIFFUSION.ROW_BINS = 8  # rows of the profile the denoiser sees with CONDITION global+rows
    # Person anchors: the extent runs from this share of the cue's mass to 1 minus it.
    cfg.PISL.DIFFUSION.PERSON_QUANTILE = 0.02
    # Person anchors: where the person is found. "features" (the feature map's mean activation
    # per row: part_generators.person_extent; the benchmarks' setting) | "image" (the rows of
    # the input that differ from their own border colour: part_generators.image_person_extent;
    # needs no trained network). On the demo's misaligned synthetic test crops the stripes of
    # the extent follow the applied shift with r 0.90-0.95 from the image, 0.01-0.22 from the
    # map of its small network trained from random weights (tools/box_follow.py's "anchors
    # alone"; docs/benchmarks.md). On misaligned CUHK01 the image's follow with 0.95-0.96, a
    # trained MobileNetV2's map's with 0.79-0.86, but over 3 seeds the image cue's parts take
    # 2.2 mAP from the global feature where the map's add 0.6 (docs/pisl_cuhk01.md): the
    # benchmarks use the map, the demo (a network that has not learned to find people) the image.
    cfg.PISL.DIFFUSION.PERSON_CUE = "features"
    # Share of the training samples whose part patches are cut with the STN's theta rather than
    # the denoised x0_hat, so that the part losses reach the STN. 0: off (the spec: x0_hat only;
    # tried at 0.5 on CUHK03-NP: no gain, the STN's boxes still the same for every image; docs/pisl_cuhk03np.md).
    cfg.PISL.DIFFUSION.STN_PATCH_SHARE = 0.0
    # The denoiser's condition (the unit-norm global feature) times this, against a time
    # embedding of norm 16: 16 puts both on the same scale (1: the condition is drowned).
    cfg.PISL.DIFFUSION.COND_SCALE = 16.0
    # Weight decay of the part generator (STN and denoiser), its own optimizer group: Adam's
    # coupled decay (SOLVER.WEIGHT_DECAY) kept shrinking the denoiser's weights on the condition.
    cfg.PISL.DIFFUSION.WEIGHT_DECAY = 0.0

    cfg.PISL.PSC = CN()
    # jaccard (PPLR's cross-agreement; the default: measured to separate reliable parts) | mmd
    # (PISL's multi-kernel MMD score, nearly constant over samples: docs/pisl_cuhk03np.md).
    cfg.PISL.PSC.SCORE = "jaccard"
    cfg.PISL.PSC.K = 20  # neighbours compared by the part-global agreement score
    cfg.PISL.PSC.REFINE_LAMBDA = 0.5  # weight of the one-hot target in label refinement
    # The part classifiers' smoothing: agreement-aware (the paper's PSC) from this epoch on,
    # plain label smoothing (EPSILON) before it. Default 1000: plain throughout, because on
    # CUHK03-NP -> CUHK01 with short epochs (6 x 50 iterations) neither agreement-aware
    # smoothing nor the two designs below was at least as good on both aligned and misaligned
    # crops; with 200 iterations an epoch agreement-aware smoothing was +1.27 +- 0.12 mAP above plain
    # (3 seeds, aligned; docs/pisl_cuhk01.md), so Base-PISL's long-epoch recipes set 5 (with
    # PART_LOGIT_SCALE 10), the paper's setting.
    cfg.PISL.PSC.LS_START_EPOCH = 1000
    cfg.PISL.PSC.EPSILON = 0.1  # plain label smoothing's epsilon
    cfg.PISL.PSC.SCALE = 1.0  # weight of PSCLoss
    # Part classifiers' logits: 0 = the reference's (BN-neck feature . unit centroid rows, whose
    # scale is the feature norm; what plain smoothing was measured with); s > 0 = s * cosine,
    # which keeps agreement-aware smoothing's KL from growing with the feature norm (10 when
    # it is on). See docs/deviations.md.
    cfg.PISL.PSC.PART_LOGIT_SCALE = 0.0
    # What the smoothing's KL(uniform || p) trains: features (the paper: the part features and
    # classifiers) | classifier (the part classifiers only: their logits on detached features).
    cfg.PISL.PSC.KL_GRADIENT = "features"
    # Iterations over which the KL's weight ramps from 0 to 1 after each epoch's classifier
    # reset, when the reset classifiers are most confident and the KL largest. 0: no ramp.
    cfg.PISL.PSC.KL_RAMP_ITERS = 0

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
    # Weighting of the noise MSE over timesteps: min_snr (min(SNR, SNR_GAMMA) / SNR, bounded at
    # small t) or none (the reference's plain MSE, about SNR = 24,000 times the x0 error at t = 0).
    cfg.PISL.SCD.NOISE_WEIGHTING = "min_snr"
    cfg.PISL.SCD.SNR_GAMMA = 5.0  # min_snr's gamma: the largest weight of a sample's x0 error
    # Weight of the penalty that keeps the boxes off their bounds, on the STN's boxes and the
    # denoiser's. Partition boxes (the default): KL(uniform || shares) of the cells
    # (part_generators.share_barrier), which keeps every part and margin off zero; at 1, on
    # misaligned CUHK01 (5 seeds) it met every box target at the same mAP as without it
    # (docs/pisl_cuhk01.md). Affine boxes: offsets more than one BOX_LIMIT deep in the bound's
    # tanh (part_generators.saturation; 0 is the reference; tried at 10 on CUHK03-NP: no gain;
    # docs/pisl_cuhk03np.md). 0: off.
    cfg.PISL.SCD.W_BOUND = 1.0
    # Weight of the mean IoU of neighbouring parts' patch boxes (part_generators.part_overlap),
    # a diversity penalty that keeps the parts on different regions. 0: off.
    cfg.PISL.SCD.W_OVERLAP = 0.0


@register_config_check
def check_pisl_config(cfg):
    p, problems = cfg.PISL, []
    if p.NUM_PARTS < 1:
        problems.append(f"PISL.NUM_PARTS is {p.NUM_PARTS}: must be at least 1 (the paper uses 3)")
    if not 1 <= p.DIFFUSION.SAMPLE_STEPS <= p.DIFFUSION.TIMESTEPS:
        problems.append(f"PISL.DIFFUSION.SAMPLE_STEPS is {p.DIFFUSION.SAMPLE_STEPS}: must be between 1 and "
                        f"PISL.DIFFUSION.TIMESTEPS ({p.DIFFUSION.TIMESTEPS})")
    if len(p.DIFFUSION.BOX_LIMITS) != 6 or min(p.DIFFUSION.BOX_LIMITS) <= 0:
        problems.append(f"PISL.DIFFUSION.BOX_LIMITS is {list(p.DIFFUSION.BOX_LIMITS)}: give six positive offsets "
                        "[sx, shx, tx, shy, sy, ty] (sy and ty in stripe heights)")
    if p.DIFFUSION.BOXES not in ("partition", "affine"):
        problems.append(f"PISL.DIFFUSION.BOXES is '{p.DIFFUSION.BOXES}': use partition or affine")
    if not 0 <= p.DIFFUSION.MIN_PART_HEIGHT * p.NUM_PARTS < 1:
        problems.append(f"PISL.DIFFUSION.MIN_PART_HEIGHT is {p.DIFFUSION.MIN_PART_HEIGHT}: the {p.NUM_PARTS} parts' "
                        "least heights must sum to less than the image (0 <= MIN_PART_HEIGHT < 1 / NUM_PARTS)")
    if p.DIFFUSION.CONDITION not in ("global", "global+rows", "global+rows+extent") or p.DIFFUSION.ROW_BINS < 1:
        problems.append(f"PISL.DIFFUSION.CONDITION is '{p.DIFFUSION.CONDITION}' and ROW_BINS {p.DIFFUSION.ROW_BINS}: "
                        "use global, global+rows or global+rows+extent, and at least 1 bin")
    if p.DIFFUSION.CONDITION.endswith("+extent") and p.DIFFUSION.ANCHORS != "person":
        problems.append(f"PISL.DIFFUSION.CONDITION is '{p.DIFFUSION.CONDITION}' with ANCHORS "
                        f"'{p.DIFFUSION.ANCHORS}': the extent is the person prior's, set ANCHORS person")
    if p.DIFFUSION.ANCHORS not in ("stripes", "person"):
        problems.append(f"PISL.DIFFUSION.ANCHORS is '{p.DIFFUSION.ANCHORS}': use stripes or person")
    if p.DIFFUSION.PERSON_CUE not in ("features", "image"):
        problems.append(f"PISL.DIFFUSION.PERSON_CUE is '{p.DIFFUSION.PERSON_CUE}': use features or image")
    if not 0 < p.DIFFUSION.PERSON_QUANTILE < 0.5:
        problems.append(f"PISL.DIFFUSION.PERSON_QUANTILE is {p.DIFFUSION.PERSON_QUANTILE}: must be between 0 and 0.5")
    if not 0 <= p.DIFFUSION.STN_PATCH_SHARE <= 1:
        problems.append(f"PISL.DIFFUSION.STN_PATCH_SHARE is {p.DIFFUSION.STN_PATCH_SHARE}: must be between 0 and 1")
    if p.DIFFUSION.COND_SCALE <= 0 or p.DIFFUSION.WEIGHT_DECAY < 0:
        problems.append(f"PISL.DIFFUSION.COND_SCALE ({p.DIFFUSION.COND_SCALE}) must be positive and "
                        f"PISL.DIFFUSION.WEIGHT_DECAY ({p.DIFFUSION.WEIGHT_DECAY}) at least 0")
    if p.PSC.PART_LOGIT_SCALE < 0:
        problems.append(f"PISL.PSC.PART_LOGIT_SCALE is {p.PSC.PART_LOGIT_SCALE}: use 0 (plain logits) or a positive scale")
    if p.PSC.KL_GRADIENT not in ("features", "classifier") or p.PSC.KL_RAMP_ITERS < 0:
        problems.append(f"PISL.PSC.KL_GRADIENT is '{p.PSC.KL_GRADIENT}' and KL_RAMP_ITERS {p.PSC.KL_RAMP_ITERS}: "
                        "use features or classifier, and 0 (no ramp) or more iterations")
    if p.PSC.K < 1:
        problems.append(f"PISL.PSC.K is {p.PSC.K}: must be at least 1 (the paper uses 20)")
    if p.SCD.NOISE_WEIGHTING not in ("min_snr", "none"):
        problems.append(f"PISL.SCD.NOISE_WEIGHTING is '{p.SCD.NOISE_WEIGHTING}': use min_snr or none")
    for key in ("W_BOUND", "W_OVERLAP"):
        if p.SCD[key] < 0:
            problems.append(f"PISL.SCD.{key} is {p.SCD[key]}: must be 0 (off) or positive")
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
