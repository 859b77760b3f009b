"""Pure functions from feature matrices to pseudo-labels (no model, no data loading)."""
from .dbscan import (Clustering, apply_outlier_policy, camera_proxies, cluster_centroids, cluster_features, dbscan_sparse,
                     per_camera_standardised)
from .jaccard import compute_jaccard_distance, expanded_sets, k_reciprocal_sets
from .knn import knn, knn_graph, knn_hnsw, knn_ivf, knn_pca, knn_self, knn_torch
