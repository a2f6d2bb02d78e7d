#!/usr/bin/env bash
# All development machine types of DCASE 2026 Task 2 with one approach config, then the result table
# over all of them (fused system output of each machine type) with the 2025/2026 scores (dcase2025).
#
# Usage: run.sh [--config conf/X.yaml] [--data-root DIR] [--exp-root exp] [--seed 0]
#               [--machines "ToyCar fan"] [other asd.sh options]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
machines="ToyCar ToyCarEmu bearingEmu fan gearboxEmu sliderEmu valveEmu"
config="${here}/conf/dcase2026_wilkinghoff_serial.yaml"
exp_root="exp"
seed=0
data_root="data/dcase2026/dev_data"
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --machines) machines="$2"; shift 2;;
    --config) config="$2"; pass+=("$1" "$2"); shift 2;;
    --exp-root) exp_root="$2"; pass+=("$1" "$2"); shift 2;;
    --seed) seed="$2"; pass+=("$1" "$2"); shift 2;;
    --data-root) data_root="$2"; pass+=("$1" "$2"); shift 2;;
    -h|--help) sed -n '2,6p' "$0"; exit 0;;
    *) pass+=("$1"); shift;;
  esac
done
HYBRID_ASD="${HYBRID_ASD:-hybrid-asd}"
approach="$(basename "$config" .yaml)"
dirs=()
labels=(--data-root "$data_root")
for m in $machines; do
  "${here}/asd.sh" --machine "$m" --config "$config" "${pass[@]}"
  dirs+=("${exp_root}/${approach}/${m}/seed${seed}/fused/submission")
  labels+=(--machine "$m")
done
"${HYBRID_ASD}" evaluate --scores "${dirs[@]}" "${labels[@]}" --protocol dcase2025 \
  --out "${exp_root}/${approach}/result_seed${seed}.csv"
