#!/usr/bin/env bash
# All machine types of DCASE 2021 Task 2 with one approach config, then the official table over all
# of them (fused system output of each machine type).
#
# Usage: run.sh [--config conf/X.yaml] [--data-root DIR] [--ground-truth DIR] [--exp-root exp]
#               [--seed 0] [--machines "fan valve"] [other asd.sh options]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
machines="fan gearbox pump slider valve ToyCar ToyTrain"
config="${here}/conf/wilkinghoff2021_serial.yaml"
exp_root="exp"
seed=0
data_root="data/dcase2021/dev_data"
ground_truth=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --machines) machines="$2"; shift 2;;
    --config) config="$2"; pass+=("$1" "$2"); shift 2;;
    --exp-root) exp_root="$2"; pass+=("$1" "$2"); shift 2;;
    --seed) seed="$2"; pass+=("$1" "$2"); shift 2;;
    --data-root) data_root="$2"; pass+=("$1" "$2"); shift 2;;
    --ground-truth) ground_truth="$2"; pass+=("$1" "$2"); shift 2;;
    -h|--help) sed -n '2,7p' "$0"; exit 0;;
    *) pass+=("$1"); shift;;
  esac
done
HYBRID_ASD="${HYBRID_ASD:-hybrid-asd}"
approach="$(basename "$config" .yaml)"
dirs=()
for m in $machines; do
  "${here}/asd.sh" --machine "$m" "${pass[@]}"
  dirs+=("${exp_root}/${approach}/${m}/seed${seed}/fused/submission")
done
labels=(--data-root "$data_root")
[ -n "$ground_truth" ] && labels=(--ground-truth "$ground_truth")
for m in $machines; do labels+=(--machine "$m"); done
"${HYBRID_ASD}" evaluate --scores "${dirs[@]}" "${labels[@]}" --out "${exp_root}/${approach}/official_result_seed${seed}.csv"
