#!/usr/bin/env bash
# The CUHK03-NP comparison over several seeds, printed as mean +- std (projects/PISL/README.md):
#   bash projects/PISL/run_cuhk03_seeds.sh [extra KEY VALUE overrides]
# SEEDS (default "1 2 3") and ROWS (default: the three main rows, then the PISL ablations)
# choose what runs; LOG_ROOT (default logs/cuhk03np_seeds) holds seed<S>/<row>/. Runs that
# already have results.json are skipped, so an interrupted benchmark continues where it stopped.
# Schedule: the configs' 6 epochs x 50 iterations, evaluated once at the end (about 12 min a
# run on 2 CPU cores); a longer one is a matter of overrides, e.g. SOLVER.MAX_EPOCH 8 SOLVER.STEPS [7].
set -euo pipefail
cd "$(dirname "$0")/../.."
LOG_ROOT=${LOG_ROOT:-logs/cuhk03np_seeds}
SEEDS=${SEEDS:-"1 2 3"}
ROWS=${ROWS:-"cluster_contrast pisl_stripes pisl pisl_no_scd pisl_no_psc pisl_no_cam"}
SCHEDULE=(TEST.EVAL_PERIOD 0)
config() {
  case $1 in
    cluster_contrast) echo projects/ClusterContrast/configs/cuhk03np.yml ;;
    pisl) echo projects/PISL/configs/cuhk03np.yml ;;
    *) echo "projects/PISL/configs/cuhk03np_${1#pisl_}.yml" ;;
  esac
}
out=$LOG_ROOT/imagenet
[ -f "$out/eval_results.json" ] || python tools/train_net.py --config-file projects/PISL/configs/cuhk03np.yml --eval-only OUTPUT_DIR "$out"
for row in $ROWS; do  # every seed of a row before the next row: the main rows finish first
  for seed in $SEEDS; do
    out=$LOG_ROOT/seed$seed/$row
    [ -f "$out/results.json" ] && continue
    start=$(date +%s)
    python tools/train_net.py --config-file "$(config "$row")" --overwrite SEED "$seed" "${SCHEDULE[@]}" "$@" OUTPUT_DIR "$out"
    echo $(( $(date +%s) - start )) > "$out/wall_seconds"
  done
done
python tools/collect_results.py --seeds "$LOG_ROOT" $ROWS
