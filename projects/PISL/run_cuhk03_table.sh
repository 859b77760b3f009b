#!/usr/bin/env bash
# Reproduce the CUHK03-NP comparison table of projects/PISL/README.md (CPU, about an hour):
#   bash projects/PISL/run_cuhk03_table.sh [extra KEY VALUE overrides]
# Each run writes logs/cuhk03np/<name>/{log.txt,results.json,wall_seconds}; the table is
# printed at the end by tools/collect_results.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
run() {
  local name=$1 config=$2; shift 2
  local out=logs/cuhk03np/$name start
  start=$(date +%s)
  python tools/train_net.py --config-file "$config" "$@" OUTPUT_DIR "$out"
  echo $(( $(date +%s) - start )) > "$out/wall_seconds"
}
run imagenet projects/PISL/configs/cuhk03np.yml --eval-only
run cluster_contrast projects/ClusterContrast/configs/cuhk03np.yml "$@"
run pisl_stripes projects/PISL/configs/cuhk03np_stripes.yml "$@"
run pisl_no_cam projects/PISL/configs/cuhk03np_no_cam.yml "$@"
run pisl projects/PISL/configs/cuhk03np.yml "$@"
python tools/collect_results.py logs/cuhk03np/{imagenet,cluster_contrast,pisl_stripes,pisl_no_cam,pisl}
