from .build import LOSS_REGISTRY, CrossEntropyLoss, ReidLoss, SoftTripletLoss, build_losses, compute_losses
from .functional import cross_entropy_label_smooth, euclidean_dist, soft_target_cross_entropy, soft_triplet
