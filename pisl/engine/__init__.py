from .cluster_hook import ClusteringHook, PseudoLabels, cluster_diagnostics, notify_pseudo_labels, reset_stale_optimizer_state
from .defaults import (DefaultTrainer, OneLineErrorParser, OutputDirError, argument_problems, build_train_items,
                       claim_output_dir, default_argument_parser, setup)
from .hooks import HOOK_REGISTRY, Checkpointer, EvalHook, LRScheduler, MetricsWriter
from .launch import describe_process_failure, launch
from .trainer import HookBase, SimpleTrainer, TrainerBase, TrainingError
from .predictor import Predictor
