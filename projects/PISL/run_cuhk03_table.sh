#!/usr/bin/env bash
# Reproduce the CUHK03-NP comparison table of docs/pisl_cuhk03np.md (CPU, about an hour):
#   bash projects/PISL/run_cuhk03_table.sh [extra KEY VALUE overrides]
# Each run writes $LOG_ROOT/<name>/{log.txt,results.json,wall_seconds} (LOG_ROOT defaults to
# logs/cuhk03np); the table is printed at the end by benchmarks/collect_results.py. Another seed:
#   LOG_ROOT=logs/cuhk03np_seed2 bash projects/PISL/run_cuhk03_table.sh SEED 2
set -euo pipefail
# --help: the comment block above.
case "${1:-}" in -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/../.."
LOG_ROOT=${LOG_ROOT:-logs/cuhk03np}
run() {
  local name=$1 config=$2; shift 2
  local out=$LOG_ROOT/$name start
  start=$(date +%s)
  python tools/train_net.py --config-file "$config" "$@" OUTPUT_DIR "$out"
  echo $(( $(date +%s) - start )) > "$out/wall_seconds"
}
run imagenet projects/PISL/configs/cuhk03np.yml --eval-only
run cluster_contrast projects/ClusterContrast/configs/cuhk03np.yml "$@"
run pisl_stripes projects/PISL/configs/cuhk03np_stripes.yml "$@"
run pisl_no_cam projects/PISL/configs/cuhk03np_no_cam.yml "$@"
run pisl projects/PISL/configs/cuhk03np.yml "$@"
python benchmarks/collect_results.py "$LOG_ROOT"/{imagenet,cluster_contrast,pisl_stripes,pisl_no_cam,pisl}
