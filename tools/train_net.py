#!/usr/bin/env python
"""Train or evaluate any project's model from a config file.

    python tools/train_net.py --config-file projects/PISL/configs/market.yml [KEY VALUE ...]
    python tools/train_net.py --config-file F --eval-only MODEL.WEIGHTS path/to/model.pth
    python tools/train_net.py --config-file F --resume          # continue a killed run

The config's IMPORTS name the project modules to load; nothing project-specific is imported here.
Exit status: 0 with results written, 1 when the run failed (no results written; also when a
process of a multi-process run died), 2 for bad input found before anything ran (config,
dataset folders, weight files, OUTPUT_DIR, command line: every problem listed, one line each),
3 when results were written but some epoch trained no iteration (e.g. its clustering found no
usable cluster).
"""
import json
import logging
import os
import sys

import torch.multiprocessing as mp

from pisl.cluster.jaccard import MemoryBudgetError
from pisl.config import ConfigError
from pisl.engine import (Checkpointer, DefaultTrainer, OutputDirError, TrainingError, argument_problems,
                         claim_output_dir, default_argument_parser, describe_process_failure, launch, setup)
from pisl.engine.preflight import checked_config, report_bad_input
from pisl.modeling.norm import norm_plan
from pisl.evaluation import results_table
from pisl.modeling import build_model
from pisl.utils import comm
from pisl.utils.checkpoint import load_model_weights

logger = logging.getLogger("pisl.train_net")


def main(args):
    cfg = setup(args)
    untrained = []
    try:
        if args.eval_only:
            model = build_model(cfg)
            if cfg.MODEL.WEIGHTS:
                load_model_weights(model, cfg.MODEL.WEIGHTS, partial=cfg.MODEL.PARTIAL_LOAD)
            else:  # the pre-run check made sure that the backbone is ImageNet-initialised
                logger.warning("--eval-only without MODEL.WEIGHTS: evaluating the ImageNet-initialised model")
            results = DefaultTrainer.test(cfg, model)
        else:
            trainer = DefaultTrainer(cfg)
            trainer.resume_or_load(resume=args.resume)
            results = trainer.train()
            untrained = trainer.untrained_epochs
    except TrainingError as err:
        logger.error(f"Training failed: {err}. No results written; completed epochs are checkpointed in {cfg.OUTPUT_DIR}")
        raise SystemExit(1)
    except comm.WaitTimeout as err:  # raised on a rank that logs to its own file only: say it here
        logger.error(f"{err}: {err.__cause__}")
        print(f"Error: {err}, DIST.TIMEOUT_MINUTES ({cfg.DIST.TIMEOUT_MINUTES}): raise it. The run stopped; completed "
              f"epochs are checkpointed in {cfg.OUTPUT_DIR}", file=sys.stderr)
        raise SystemExit(1)
    except MemoryBudgetError as err:  # the evaluation's re-ranking
        logger.error(f"Evaluation stopped: {err}. No results written; completed epochs are checkpointed in {cfg.OUTPUT_DIR}")
        raise SystemExit(1)
    logger.info(f"Final results:\n{results_table(results)}")
    if comm.is_main_process():
        name = "eval_results.json" if args.eval_only else "results.json"
        with open(os.path.join(cfg.OUTPUT_DIR, name), "w") as f:
            json.dump(results, f, indent=1)
    if not args.eval_only and untrained:
        logger.error(f"The run did not train as configured: epochs {untrained} ran no iteration (see the warnings "
                     f"above). Results were written, but they are not those of {cfg.SOLVER.MAX_EPOCH} trained epochs.")
        raise SystemExit(3)
    return results


def report_dead_process(err, cfg, eval_only):
    """One line for a process of a multi-process run that died (its traceback, if any, goes to
    the run's log.txt), and where the run can go on from."""
    rank, how, trace = describe_process_failure(err)
    log = os.path.join(cfg.OUTPUT_DIR, "log.txt")
    if trace:
        with open(log, "a") as f:
            f.write(f"The process of rank {rank} {how}:\n{trace}\n")
        how += f" (traceback in {log})"
    where = ""
    if not eval_only:
        path, state, _ = Checkpointer.newest_readable(cfg.OUTPUT_DIR)
        where = (f" The last checkpoint, {path}, holds {state['epoch']} trained epoch(s): --resume continues from it."
                 if path else " No epoch was checkpointed: the run must start afresh (--overwrite).")
    print(f"Error: the process of rank {rank} {how}; the run stopped.{where}", file=sys.stderr)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    try:
        # Every input is checked here, before any model, loader or process exists.
        cfg = checked_config(args.config_file, args.opts, eval_only=args.eval_only,
                             output_dir=dict(resume=args.resume, overwrite=args.overwrite),
                             problems=argument_problems(args))
        world = int(os.environ.get("WORLD_SIZE", args.num_gpus))  # torchrun says; else --num-gpus
        try:  # MODEL.NORM_BATCH against the number of processes, known only here
            norm_plan(cfg.MODEL.NORM_BATCH, cfg.SOLVER.IMS_PER_BATCH // world, world)
        except ValueError as err:
            raise ConfigError([str(err)]) from None
        if int(os.environ.get("RANK", 0)) == 0:  # one claim per job, also under torchrun
            claim_output_dir(cfg.OUTPUT_DIR, args.resume, args.overwrite, args.eval_only)
    except (ConfigError, OutputDirError) as err:
        report_bad_input(err)
        sys.exit(2)
    try:
        launch(main, args.num_gpus, args=(args,), timeout_minutes=cfg.DIST.TIMEOUT_MINUTES)
    except (mp.ProcessExitedException, mp.ProcessRaisedException) as err:
        if isinstance(err, mp.ProcessExitedException) and err.exit_code in (1, 2, 3):
            sys.exit(err.exit_code)  # a worker that ended by this script's own exit status has said why
        report_dead_process(err, cfg, args.eval_only)
        sys.exit(1)
