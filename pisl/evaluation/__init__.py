from .evaluator import ReidEvaluator, extract_features, results_table, with_misalignment
from .metrics import evaluate_rank, pairwise_distance, rank_metrics
