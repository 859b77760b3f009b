#!/usr/bin/env bash
# The multi-seed benchmarks of projects/PISL/README.md, printed as mean +- std with paired
# differences:
#   bash projects/PISL/run_seeds.sh PROTOCOL [extra KEY VALUE overrides]
# PROTOCOL:
#   cuhk03np  unsupervised CUHK03-NP from ImageNet (6 epochs x 100 iterations, evaluated at
#             the end; about 25 min a run on 2 CPU cores).
#   cuhk01    cross-domain CUHK03-NP (labelled) -> CUHK01 (unlabelled): every row starts from
#             the supervised CUHK03-NP model SOURCE (default: the maintainers' fixed copy,
#             source_cuhk03np_mobilenetv2.pth in the weights folder beside the checkout, so that
#             records made on any CPU start from the same model; without it
#             logs/source_cuhk03np/model_final.pth, trained first with configs/CUHK03NP/baseline.yml,
#             7 epochs, about 30 min, when missing),
#             trains on CUHK01's 1,940 training crops with the configs' 6 epochs x 50
#             iterations and is evaluated on CUHK01's test split after every epoch (the table
#             reports the final epoch; no test-set model selection). About 14 min a run on
#             an AMD EPYC (AVX2) 2-core machine, 6-8 min on an Intel Xeon (AVX512) one.
#   cuhk01_misaligned  the same on misaligned crops (INPUT.MISALIGN.ENABLED True: each CUHK01
#             image re-framed as a detector would frame it, the same way in training, clustering
#             and evaluation), where following the person can pay off.
#   cuhk03np_supervised  the supervised parts testbed: CUHK03-NP with its identity
#             labels, the source model's recipe (7 epochs x 120 iterations) with the global
#             feature only, with stripe parts, or with diffusion-STN parts
#             (configs/cuhk03np_supervised.yml), evaluated on CUHK03-NP's test split at the end.
#   cuhk03np_supervised_misaligned  the same on misaligned crops (INPUT.MISALIGN.ENABLED True).
# SEEDS (default "1 2 3") and ROWS (default: the protocol's rows) choose what runs. A row is a
# config and overrides (see row() below). The starting model (cuhk03np and cuhk03np_supervised:
# ImageNet; cuhk01: the source model) is evaluated as is, in every invocation, and must
# evaluate as recorded. Each run trains in LOG_ROOT (default logs/<PROTOCOL>_seeds)/seed<S>/<row>/; when it finishes,
# what it is judged by (results, metrics, log, config, wall time, clustering history; no
# checkpoint) is recorded in RECORD_ROOT (default records/<PROTOCOL>_seeds,
# committed), and a run with a record is skipped if its recorded config is the one it would run
# now (the script stops, naming the keys that differ, otherwise): a benchmark longer than one
# session continues from its records in the next one, and never mixes two configs in one row. Seeds run in turn, all rows of a seed before the
# next seed, so a benchmark stopped early still compares the rows on the same seeds. The table
# is printed from the records, with each row's paired difference to PAIRED_TO (default: the
# protocol's reference rows).
set -euo pipefail
# --help: the comment block above.
case "${1:-}" in -h|--help|"") awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; [ -n "${1:-}" ] || exit 2; exit 0 ;; esac
cd "$(dirname "$0")/../.."
PROTOCOL=$1; shift
SEEDS=${SEEDS:-"1 2 3"}
LOG_ROOT=${LOG_ROOT:-logs/${PROTOCOL}_seeds}
RECORD_ROOT=${RECORD_ROOT:-records/${PROTOCOL}_seeds}
FIXED_SOURCE=../shared/weights/source_cuhk03np_mobilenetv2.pth
if [ -f "$FIXED_SOURCE" ]; then SOURCE=${SOURCE:-$FIXED_SOURCE}; else SOURCE=${SOURCE:-logs/source_cuhk03np/model_final.pth}; fi
case $PROTOCOL in
  cuhk03np)
    START=imagenet
    ROWS=${ROWS:-"cluster_contrast pisl_stripes pisl_published pisl_partition pisl_no_scd pisl_no_psc pisl_no_cam"}
    PAIRED_TO=${PAIRED_TO:-"pisl_stripes"}
    PROTOCOL_ARGS=(TEST.EVAL_PERIOD 0 SOLVER.ITERS_PER_EPOCH 100) ;;
  cuhk01|cuhk01_misaligned)
    START=source
    ROWS=${ROWS:-"cluster_contrast pisl_stripes pisl_published pisl_partition"}
    PAIRED_TO=${PAIRED_TO:-"pisl_stripes cluster_contrast"}
    PROTOCOL_ARGS=(TEST.EVAL_PERIOD 1 DATASETS.NAMES '["CUHK01"]' DATASETS.TESTS '["CUHK01"]'
                   MODEL.WEIGHTS "$SOURCE" MODEL.PARTIAL_LOAD True)
    if [ "$PROTOCOL" = cuhk01_misaligned ]; then PROTOCOL_ARGS+=(INPUT.MISALIGN.ENABLED True); fi
    ;;
  cuhk03np_supervised|cuhk03np_supervised_misaligned)
    START=imagenet
    ROWS=${ROWS:-"supervised_global supervised_stripes supervised_pisl"}
    PAIRED_TO=${PAIRED_TO:-"supervised_global supervised_stripes"}
    PROTOCOL_ARGS=()
    if [ "$PROTOCOL" = cuhk03np_supervised_misaligned ]; then PROTOCOL_ARGS+=(INPUT.MISALIGN.ENABLED True); fi
    ;;
  *) echo "Unknown PROTOCOL '$PROTOCOL': use cuhk03np, cuhk01, cuhk01_misaligned, cuhk03np_supervised or" \
          "cuhk03np_supervised_misaligned" >&2; exit 2 ;;
esac
# row NAME: the config file, then the row's own overrides, one per line. Each row is named by
# what it runs; a row whose config changes gets a new name (recorded rows are checked: see
# --same-config below). Rows of earlier recipes are in the records only (records/README.md).
STRIPES=projects/PISL/configs/cuhk03np_stripes.yml
row() {
  case $1 in
    source) echo configs/CUHK03NP/baseline.yml; printf '%s\n' --eval-only ;;
    imagenet) echo projects/PISL/configs/cuhk03np.yml; printf '%s\n' --eval-only ;;
    # The supervised parts testbed: the source model's recipe (7 epochs, LR drop after epoch 5)
    # with the global feature only, stripe parts, or the partition recipe's parts.
    supervised_global) echo configs/CUHK03NP/baseline.yml; printf '%s\n' SOLVER.MAX_EPOCH 7 SOLVER.STEPS "[5]" TEST.EVAL_PERIOD 7 ;;
    supervised_stripes) echo projects/PISL/configs/cuhk03np_supervised.yml; printf '%s\n' PISL.PART_GENERATOR stripes \
      MODEL.LOSSES.NAMES '["CrossEntropyLoss", "SoftTripletLoss", "PartCrossEntropyLoss"]' ;;
    supervised_pisl) echo projects/PISL/configs/cuhk03np_supervised.yml ;;
    # The methods: Cluster Contrast, PPLR + camera contrast (stripes), PISL's two recipes.
    cluster_contrast) echo projects/ClusterContrast/configs/cuhk03np.yml ;;
    pisl_stripes) echo "$STRIPES" ;;
    pisl_published) echo projects/PISL/configs/cuhk03np.yml ;;
    pisl_partition) echo projects/PISL/configs/cuhk03np_partition.yml ;;
    # The published recipe with BatchNorm over 16 images (the reference's per-GPU batch,
    # MODEL.NORM_BATCH) instead of the CPU rows' whole batch of 64.
    pisl_published_bn16) row pisl_published; printf '%s\n' MODEL.NORM_BATCH 16 ;;
    # The partition recipe's barrier: off, or lowest at each image's prior partition.
    pisl_partition_unbarred) echo projects/PISL/configs/cuhk03np_partition.yml; printf '%s\n' PISL.SCD.W_BOUND 0.0 ;;
    pisl_partition_prior_barrier) echo projects/PISL/configs/cuhk03np_partition.yml
      printf '%s\n' PISL.SCD.BARRIER_TARGET prior ;;
    # Ablations of the partition recipe.
    pisl_no_scd|pisl_no_psc|pisl_no_cam) echo "projects/PISL/configs/cuhk03np_${1#pisl_}.yml" ;;
    # Stripes with PSC's agreement-aware smoothing from epoch 2 and cosine logits x 10, and both
    # stripe rows with 4x longer epochs (200 iterations; the LR drop at the same epoch).
    pisl_stripes_psc_cosine) echo "$STRIPES"; printf '%s\n' PISL.PSC.LS_START_EPOCH 2 PISL.PSC.PART_LOGIT_SCALE 10.0 ;;
    pisl_stripes_long) echo "$STRIPES"; printf '%s\n' SOLVER.ITERS_PER_EPOCH 200 ;;
    pisl_stripes_psc_cosine_long) echo "$STRIPES"
      printf '%s\n' PISL.PSC.LS_START_EPOCH 2 PISL.PSC.PART_LOGIT_SCALE 10.0 SOLVER.ITERS_PER_EPOCH 200 ;;
    *) echo "Unknown row '$1': see row() in $0" >&2; return 2 ;;
  esac
}
train() {  # train NAME OUT [overrides]: one run, recorded when it finishes
  local name=$1 out=$2 start spec; shift 2
  mapfile -t spec < <(row "$name") && [ ${#spec[@]} -gt 0 ] || exit 2
  start=$(date +%s)
  python tools/train_net.py --config-file "${spec[0]}" --overwrite "${spec[@]:1}" "${PROTOCOL_ARGS[@]}" "$@" OUTPUT_DIR "$out"
  echo $(( $(date +%s) - start )) > "$out/wall_seconds"
}
if [ "$START" = source ] && [ ! -f "$SOURCE" ]; then
  mapfile -t spec < <(row supervised_global)
  python tools/train_net.py --config-file "${spec[0]}" --overwrite "${spec[@]:1}" OUTPUT_DIR "$(dirname "$SOURCE")"
fi
# The starting model is evaluated in every invocation and must evaluate as recorded: new runs
# pair with the recorded ones only if they start from the same model on a CPU that rounds
# floats the same way (collect_results.py --same-start exits 2 otherwise).
train "$START" "$LOG_ROOT/$START"
if [ -f "$RECORD_ROOT/$START/eval_results.json" ]; then
  python benchmarks/collect_results.py --same-start "$LOG_ROOT/$START" "$RECORD_ROOT/$START"
else
  python benchmarks/collect_results.py --record "$LOG_ROOT/$START" "$RECORD_ROOT/$START"
fi
for seed in $SEEDS; do
  for name in $ROWS; do
    out=$LOG_ROOT/seed$seed/$name
    if [ -f "$RECORD_ROOT/seed$seed/$name/results.json" ]; then
      # A recorded row is skipped only if it would run the same config now (exit 2 otherwise).
      mapfile -t spec < <(row "$name")
      python benchmarks/collect_results.py --same-config "$RECORD_ROOT/seed$seed/$name" "${spec[0]}" "${spec[@]:1}" \
        "${PROTOCOL_ARGS[@]}" "$@" SEED "$seed"
      continue
    fi
    train "$name" "$out" SEED "$seed" "$@"
    python benchmarks/collect_results.py --record "$out" "$RECORD_ROOT/seed$seed/$name"
  done
done
python benchmarks/collect_results.py --seeds "$RECORD_ROOT" $ROWS --paired-to $PAIRED_TO
