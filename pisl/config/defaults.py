"""Default values of every core config key. Projects add theirs through an extension."""
from .node import CfgNode as CN

_C = CN()

# Python modules imported before the config is built: they register a project's components
# and config keys (e.g. ["projects.PISL"]).
_C.IMPORTS = []
_C.SEED = 1  # the seed of every random stream (each process adds its rank)
_C.OUTPUT_DIR = "logs/default"  # the run folder: config, log, metrics, checkpoints, results
# Extra registered hooks (pisl.engine.HOOK_REGISTRY), e.g. ["ClusteringHook"] for unsupervised
# methods; a hook that provides the training loader makes the run ignore identity labels.
_C.HOOKS = []

_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "Baseline"  # registered meta-architecture (META_ARCH_REGISTRY): Baseline, or a project's
# "auto" = CUDA when available, else CPU. Every tensor placement goes through this key.
_C.MODEL.DEVICE = "auto"
# A checkpoint to start from (or to evaluate with --eval-only); "" = none.
_C.MODEL.WEIGHTS = ""
# Load only the tensors of MODEL.WEIGHTS that fit (e.g. a Baseline's into PISL). By default
# every architecture tensor must be in the file; only classifiers and loss state may differ.
_C.MODEL.PARTIAL_LOAD = False
# DDP: look for parameters that a training step leaves unused (an extra pass over the autograd
# graph every iteration). Only a model that leaves some unused needs it (e.g. a classifier no
# loss reads); without it such a model fails at its second step with a message naming this key.
_C.MODEL.DDP_FIND_UNUSED_PARAMETERS = False
# Images each BatchNorm layer normalises over in training, whatever the number of processes:
# ghost batches within a process that holds more, statistics synchronised over processes that
# hold fewer (pisl/modeling/norm.py). 0: each process's own images (SOLVER.IMS_PER_BATCH /
# processes), so the statistics change with --num-gpus.
_C.MODEL.NORM_BATCH = 0
_C.MODEL.PIXEL_MEAN = [0.485, 0.456, 0.406]  # per-channel mean subtracted from images in [0, 1] (ImageNet's)
_C.MODEL.PIXEL_STD = [0.229, 0.224, 0.225]  # per-channel std the images are divided by (ImageNet's)

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "resnet50"  # registered backbone: resnet50 | mobilenet_v2 | small_cnn
_C.MODEL.BACKBONE.LAST_STRIDE = 1  # stride of the last stage: 1 doubles the feature map's size (re-ID's usual choice)
# Load ImageNet weights: from PRETRAIN_PATH when set, else from torchvision's cache.
_C.MODEL.BACKBONE.PRETRAIN = True
_C.MODEL.BACKBONE.PRETRAIN_PATH = ""  # a file of ImageNet weights in torchvision's layout; "" = torchvision's cache

_C.MODEL.HEADS = CN()
_C.MODEL.HEADS.NAME = "EmbeddingHead"  # registered head (HEAD_REGISTRY): pooling, BN neck, classifier
_C.MODEL.HEADS.POOL = "avg"  # pooling of the feature map: avg | gem
_C.MODEL.HEADS.GEM_P = 3.0  # the power of GeM pooling (POOL gem)

_C.MODEL.LOSSES = CN()
# Registered losses (LOSS_REGISTRY) that the model sums; each has its weight key (SCALE).
_C.MODEL.LOSSES.NAMES = ["CrossEntropyLoss", "SoftTripletLoss"]
_C.MODEL.LOSSES.CE = CN()
_C.MODEL.LOSSES.CE.EPSILON = 0.1  # label smoothing of CrossEntropyLoss
_C.MODEL.LOSSES.CE.SCALE = 1.0  # weight of CrossEntropyLoss
_C.MODEL.LOSSES.TRI = CN()
_C.MODEL.LOSSES.TRI.SCALE = 1.0  # weight of SoftTripletLoss (batch-hard, soft margin)

_C.INPUT = CN()
_C.INPUT.SIZE_TRAIN = [256, 128]  # height, width of training images (after the random crop)
_C.INPUT.SIZE_TEST = [256, 128]  # height, width of evaluated and clustered images
_C.INPUT.FLIP_PROB = 0.5  # probability of a horizontal flip in training
_C.INPUT.PADDING = 10  # pixels of padding before the random crop back to SIZE_TRAIN
_C.INPUT.REA = CN()
_C.INPUT.REA.ENABLED = True  # random erasing in training
_C.INPUT.REA.PROB = 0.5  # probability of erasing a rectangle of an image
# Misaligned crops (pisl/data/misalign.py): every image of every loader (training, clustering,
# evaluation) re-framed as a detector would frame it, the same way each time (drawn from its
# file name). For benchmarks where following the person matters: hand-cut crops align everyone.
_C.INPUT.MISALIGN = CN()
_C.INPUT.MISALIGN.ENABLED = False  # off: the crops as they are
_C.INPUT.MISALIGN.SHIFT = 0.15  # vertical shift, uniform in [-SHIFT, SHIFT] image heights (+: down)
_C.INPUT.MISALIGN.SCALE = [0.8, 1.05]  # the person's scale about the image centre, uniform in [low, high]
_C.INPUT.MISALIGN.OFFSET = 0.1  # horizontal offset, uniform in [-OFFSET, OFFSET] image widths
_C.INPUT.MISALIGN.FILL = "mean"  # uncovered pixels: mean (each image's mean colour) | pixel_mean (MODEL.PIXEL_MEAN)
_C.INPUT.MISALIGN.SEED = 0  # mixed with the file name's checksum: another SEED frames every image anew

_C.DATASETS = CN()
_C.DATASETS.ROOT = "datasets"  # the folder that holds the datasets (datasets/README.md)
_C.DATASETS.NAMES = ["Synthetic"]  # registered datasets to train on (concatenated)
_C.DATASETS.TESTS = ["Synthetic"]  # registered datasets to evaluate on (query against gallery), each reported alone
# Synthetic dataset generator (see pisl/data/datasets/synthetic.py).
_C.DATASETS.SYNTHETIC = CN()
_C.DATASETS.SYNTHETIC.SEED = 0  # the seed the synthetic dataset is drawn with
_C.DATASETS.SYNTHETIC.NUM_TRAIN_IDS = 60  # identities in its training set
_C.DATASETS.SYNTHETIC.NUM_TEST_IDS = 40  # identities in its query and gallery
_C.DATASETS.SYNTHETIC.NUM_CAMERAS = 3  # cameras (each with its own background and light)
_C.DATASETS.SYNTHETIC.IMAGES_PER_CAMERA = 3  # images of each identity in each camera
# Your own data in the Market-1501 layout (dataset name "MarketLayout"; datasets/README.md).
_C.DATASETS.MARKET_LAYOUT = CN()
_C.DATASETS.MARKET_LAYOUT.DIR = ""  # the dataset's folder, relative to DATASETS.ROOT
# The train, query and gallery sub-folders.
_C.DATASETS.MARKET_LAYOUT.FOLDERS = ["bounding_box_train", "query", "bounding_box_test"]
# Two groups, identity then camera, searched in each file name; identity -1 = junk (dropped).
_C.DATASETS.MARKET_LAYOUT.PATTERN = r"([-\d]+)_c(\d+)"
_C.DATASETS.MARKET_LAYOUT.EXTENSIONS = [".jpg", ".png"]  # file endings of the images (case-sensitive)
# Your own data as list files (dataset name "ListFiles"): one "path pid camid" per line, paths
# relative to the list file's folder; each file relative to DATASETS.ROOT.
_C.DATASETS.LIST_FILES = CN()
_C.DATASETS.LIST_FILES.TRAIN = ""  # the training list file
_C.DATASETS.LIST_FILES.QUERY = ""  # the query list file
_C.DATASETS.LIST_FILES.GALLERY = ""  # the gallery list file

_C.DATALOADER = CN()
_C.DATALOADER.SAMPLER = "PKSampler"  # PKSampler | CameraAwareSampler | RandomSampler
_C.DATALOADER.NUM_INSTANCE = 4  # images of each identity in a training batch (IMS_PER_BATCH / NUM_INSTANCE identities)
_C.DATALOADER.NUM_WORKERS = 2  # loader processes per training or test loader; 0 = load in the main process

_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER = "Adam"  # Adam | SGD
_C.SOLVER.BASE_LR = 3.5e-4  # learning rate after warm-up, before the first STEPS decay
_C.SOLVER.WEIGHT_DECAY = 5e-4  # L2 weight decay of every parameter group without its own
_C.SOLVER.MOMENTUM = 0.9  # SGD's (Nesterov) momentum
_C.SOLVER.IMS_PER_BATCH = 64  # training batch size, over all processes (a multiple of NUM_INSTANCE)
_C.SOLVER.MAX_EPOCH = 50  # epochs to train; an unsupervised run re-clusters before each
_C.SOLVER.ITERS_PER_EPOCH = 400  # 0 = one pass over the training set
_C.SOLVER.SCHEDULER = "StepLR"  # StepLR | CosineAnnealingLR
_C.SOLVER.STEPS = [20]  # epochs at which StepLR multiplies the LR by GAMMA
_C.SOLVER.GAMMA = 0.1  # StepLR's factor at each of STEPS
_C.SOLVER.WARMUP_EPOCHS = 0  # epochs of linear warm-up of the LR; 0 = none
_C.SOLVER.CHECKPOINT_PERIOD = 1  # epochs
_C.SOLVER.LOG_PERIOD = 20  # iterations
# Mixed precision for training and feature extraction: autocast to DTYPE (bfloat16 on CPU or
# CUDA; float16 on CUDA only, with loss scaling). Parameters and optimizer state stay fp32.
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False  # train and extract under autocast (see DTYPE)
_C.SOLVER.AMP.DTYPE = "bfloat16"  # bfloat16 | float16

_C.TEST = CN()
_C.TEST.EVAL_PERIOD = 5  # epochs; 0 = only at the end
_C.TEST.IMS_PER_BATCH = 128  # batch size of feature extraction (evaluation and clustering)
_C.TEST.METRIC = "euclidean"  # euclidean (on L2-normalised features) | cosine
_C.TEST.RERANK = CN()
_C.TEST.RERANK.ENABLED = False  # k-reciprocal re-ranking of the query-gallery distances
_C.TEST.RERANK.K1 = 20  # re-ranking's k1 (k-reciprocal neighbours)
_C.TEST.RERANK.K2 = 6  # re-ranking's k2 (neighbours of the local query expansion)
_C.TEST.RERANK.LAMBDA = 0.3  # weight of the original distance against the Jaccard distance
# Memory of re-ranking, in GiB: first the k-reciprocal encodings, then half of what they leave
# for the Jaccard pair sums and half for the blocks of query rows ranked (encodings or a query
# row that cannot fit stop the evaluation with this key's name).
_C.TEST.RERANK.MEMORY_GB = 4.0
# Query rows per chunk when ranking the gallery (at most; fewer for a large gallery, so that a
# chunk holds at most 2^25 query-gallery pairs, about 1.3 GB): bounds memory at MSMT17 size.
_C.TEST.CHUNK_SIZE = 1024

# Pseudo-labels of unsupervised methods (the ClusteringHook, enabled by HOOKS).
# Multi-process runs (--num-gpus, torchrun).
_C.DIST = CN()
# How long a process waits for the others at a collective before the run stops, in minutes: the
# other ranks wait at the pseudo-label broadcast while rank 0 clusters, so this must cover the
# clustering of the training set (torch's default, 10 min for NCCL, does not at scale).
_C.DIST.TIMEOUT_MINUTES = 120.0
_C.CLUSTER = CN()
_C.CLUSTER.EPS = 0.6  # DBSCAN's radius: the largest Jaccard distance between neighbours of one cluster
_C.CLUSTER.MIN_SAMPLES = 4  # DBSCAN's min_samples: neighbours within EPS that make an image a core point
_C.CLUSTER.K1 = 30  # k-reciprocal neighbours of the Jaccard distance
_C.CLUSTER.K2 = 6  # neighbours of the Jaccard distance's local query expansion
_C.CLUSTER.OUTLIERS = "drop"  # drop (reference) | singleton
# Standardise each camera's features (zero mean, unit std per dimension) before clustering, so
# that clusters span cameras instead of following each camera's background and light
# (pisl.cluster.per_camera_standardised). Off in the reference; the synthetic PISL demo uses it.
_C.CLUSTER.PER_CAMERA_NORM = False
# The exact search's top-k: auto (faiss when installed) | faiss (compiled heaps on a CPU, faiss's
# search on a GPU) | torch (torch.topk)
_C.CLUSTER.KNN_BACKEND = "auto"
# The k-NN search under the Jaccard distance (pisl.cluster.knn_graph; README "Clustering
# hundreds of thousands of images").
_C.CLUSTER.KNN = CN()
# exact | pca (every pair in PCA_DIM principal directions, as 8-bit codes, gives REFINE x K1
# candidates, re-ranked exactly) | hnsw (the candidates from an HNSW graph in those directions) | ivf
# (from the IVF_PROBES nearest cells of an inverted file in those directions; what each costs
# and finds: docs/benchmarks.md) | auto (exact below EXACT_BELOW images or on CUDA, else pca).
_C.CLUSTER.KNN.METHOD = "auto"
_C.CLUSTER.KNN.EXACT_BELOW = 50000  # auto: the exact search below this many training images
_C.CLUSTER.KNN.PCA_DIM = 128  # pca (at most 1040), hnsw, ivf: principal directions of the candidate search
_C.CLUSTER.KNN.REFINE = 2  # pca, hnsw, ivf: candidates per image, in multiples of K1, re-ranked with the full features
_C.CLUSTER.KNN.EF_SEARCH = 192  # hnsw: rows kept in the search's frontier (more: higher recall, slower)
_C.CLUSTER.KNN.IVF_PROBES = 32  # ivf: cells searched per image, of about 4 sqrt(N) (more: higher recall, slower)
# Memory of the Jaccard distance, in GiB: the k-reciprocal encodings, then the pair sums, whose
# rows go in blocks that fit what the encodings leave, so the step's peak follows this budget
# and not how many images share neighbours; encodings or a row that cannot fit stop the run
# (exit 1) with this key's name, before the memory runs out.
_C.CLUSTER.MEMORY_GB = 4.0
_C.CLUSTER.SAMPLER = "CameraAwareSampler"  # sampler of the pseudo-labelled loader (DATALOADER.SAMPLER's names)
# Stop (cleanly) after this many consecutive epochs with fewer than 2 clusters; 0 = never.
_C.CLUSTER.MAX_DEGENERATE_EPOCHS = 3
