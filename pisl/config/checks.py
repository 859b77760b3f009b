"""Value checks of the core keys, run once by ``load_config`` before anything is built."""
from ..cluster.knn import MAX_CODE_DIM
from ..data.misalign import misalignment_problems


def _size_problems(key, size):
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        return [f"{key} is {list(size)}: give [height, width], two positive integers (e.g. [256, 128])"]
    return []


def core_checks(cfg):
    """A list of problems, each naming the key, its value and what would be valid."""
    problems = []
    batch, instances = cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE
    norm = cfg.MODEL.NORM_BATCH
    if norm < 0 or (norm > 0 and batch % norm):
        problems.append(f"MODEL.NORM_BATCH is {norm}: use 0 (each process's images) or a number of images that divides "
                        f"SOLVER.IMS_PER_BATCH ({batch})")
    if instances < 1:
        problems.append(f"DATALOADER.NUM_INSTANCE is {instances}: images per identity in a batch must be at least 1")
    if batch < 1:
        problems.append(f"SOLVER.IMS_PER_BATCH is {batch}: must be at least 1")
    elif instances >= 1 and batch % instances:
        problems.append(f"SOLVER.IMS_PER_BATCH ({batch}) is not a multiple of DATALOADER.NUM_INSTANCE ({instances}): "
                        f"use e.g. {max(instances, batch - batch % instances)}")
    if not cfg.DIST.TIMEOUT_MINUTES > 0:
        problems.append(f"DIST.TIMEOUT_MINUTES is {cfg.DIST.TIMEOUT_MINUTES}: must be positive (minutes a process "
                        "waits for the others, e.g. for rank 0's clustering)")
    if not 0 < cfg.CLUSTER.EPS < 1:
        problems.append(f"CLUSTER.EPS is {cfg.CLUSTER.EPS}: it is a Jaccard distance, so 0 < EPS < 1 (typically 0.4-0.7)")
    if cfg.CLUSTER.KNN.METHOD not in ("auto", "exact", "pca", "hnsw", "ivf"):
        problems.append(f"CLUSTER.KNN.METHOD is '{cfg.CLUSTER.KNN.METHOD}': use auto, exact, pca, hnsw or ivf")
    knn_counts = {key: cfg.CLUSTER.KNN[key] for key in ("PCA_DIM", "REFINE", "EF_SEARCH", "IVF_PROBES")}
    if min(knn_counts.values()) < 1:
        problems.append(", ".join(f"CLUSTER.KNN.{key} ({value})" for key, value in knn_counts.items())
                        + " must each be at least 1")
    if cfg.CLUSTER.KNN.METHOD in ("auto", "pca") and cfg.CLUSTER.KNN.PCA_DIM > MAX_CODE_DIM:
        problems.append(f"CLUSTER.KNN.PCA_DIM is {cfg.CLUSTER.KNN.PCA_DIM}: the pca search's 8-bit codes keep their "
                        f"distances exact up to {MAX_CODE_DIM} directions")
    for key, value in (("CLUSTER.MEMORY_GB", cfg.CLUSTER.MEMORY_GB), ("TEST.RERANK.MEMORY_GB", cfg.TEST.RERANK.MEMORY_GB)):
        if value <= 0:
            problems.append(f"{key} is {value}: give the memory budget in GiB, more than 0")
    if cfg.CLUSTER.MIN_SAMPLES < 1:
        problems.append(f"CLUSTER.MIN_SAMPLES is {cfg.CLUSTER.MIN_SAMPLES}: must be at least 1")
    problems += _size_problems("INPUT.SIZE_TRAIN", cfg.INPUT.SIZE_TRAIN)
    problems += _size_problems("INPUT.SIZE_TEST", cfg.INPUT.SIZE_TEST)
    problems += misalignment_problems(cfg)
    for key in ("SOLVER.MAX_EPOCH", "TEST.IMS_PER_BATCH", "SOLVER.LOG_PERIOD", "SOLVER.CHECKPOINT_PERIOD"):
        section, name = key.split(".")
        if cfg[section][name] < 1:
            problems.append(f"{key} is {cfg[section][name]}: must be at least 1")
    for key in ("SOLVER.ITERS_PER_EPOCH", "TEST.EVAL_PERIOD", "DATALOADER.NUM_WORKERS"):
        section, name = key.split(".")
        if cfg[section][name] < 0:
            problems.append(f"{key} is {cfg[section][name]}: must be 0 or more")
    if cfg.SOLVER.BASE_LR <= 0:
        problems.append(f"SOLVER.BASE_LR is {cfg.SOLVER.BASE_LR}: must be positive")
    if cfg.SOLVER.AMP.DTYPE not in ("bfloat16", "float16"):
        problems.append(f"SOLVER.AMP.DTYPE is '{cfg.SOLVER.AMP.DTYPE}': use bfloat16 or float16")
    if not cfg.DATASETS.NAMES or not cfg.DATASETS.TESTS:
        problems.append("DATASETS.NAMES and DATASETS.TESTS each need at least one dataset")
    return problems
