from .evaluator import ReidEvaluator, extract_features, results_table
from .metrics import evaluate_rank, pairwise_distance, rank_metrics
