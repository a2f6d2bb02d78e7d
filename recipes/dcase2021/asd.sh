#!/usr/bin/env bash
# Shared staged recipe for one machine type (ESPnet/Kaldi style). Each stage is one `hybrid-asd`
# subcommand with its own log in <exp>/logs/. A completed stage is skipped; --stage N reruns from N.
#
#   stage 0  data: download (with --download) or check the data root
#   stage 1  prepare: resolve the config, list the machine type's clips
#   stage 2  features: fill the log-mel cache
#   stage 3  train: section-identification extractor (skipped by configs without one)
#   stage 4  extract: embeddings + OE scores
#   stage 5  fit: inlier-model detectors per section and domain
#   stage 6  score: score tables + official files per detector
#   stage 7  fuse: the config's ensemble -> <exp>/fused/ (+ submission/)
#   stage 8  evaluate: official result tables in <exp>/eval/
#
# Usage: asd.sh --machine fan [--config conf/wilkinghoff2021_serial.yaml] [--data-root DIR]
#               [--ground-truth DIR] [--exp-root exp] [--seed 0] [--device auto]
#               [--stage 0] [--stop-stage 8] [--download] [--set key=value ...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

machine=""
config="${here}/conf/wilkinghoff2021_serial.yaml"
data_root="data/dcase2021/dev_data"
ground_truth=""
exp_root="exp"
seed=0
device="auto"
stage=0
stop_stage=8
stage_given=0
download=0
overrides=()
HYBRID_ASD="${HYBRID_ASD:-hybrid-asd}"

while [ $# -gt 0 ]; do
  case "$1" in
    --machine) machine="$2"; shift 2;;
    --config) config="$2"; shift 2;;
    --data-root) data_root="$2"; shift 2;;
    --ground-truth) ground_truth="$2"; shift 2;;
    --exp-root) exp_root="$2"; shift 2;;
    --seed) seed="$2"; shift 2;;
    --device) device="$2"; shift 2;;
    --stage) stage="$2"; stage_given=1; shift 2;;
    --stop-stage) stop_stage="$2"; shift 2;;
    --download) download=1; shift;;
    --set) overrides+=("--set" "$2"); shift 2;;
    -h|--help) sed -n '2,21p' "$0"; exit 0;;
    *) echo "asd.sh: unknown option $1" >&2; exit 2;;
  esac
done
[ -n "$machine" ] || { echo "asd.sh: --machine is required" >&2; exit 2; }
[ -f "$config" ] || { echo "asd.sh: config not found: $config" >&2; exit 2; }

approach="$(basename "$config" .yaml)"
exp="${exp_root}/${approach}/${machine}/seed${seed}"
mkdir -p "${exp}/logs"

# run_stage N NAME CMD...: run stage N unless outside [stage, stop_stage]. Stages from an explicit
# --stage on are forced (rerun); otherwise the command itself skips completed work.
run_stage() {
  local n="$1" name="$2"; shift 2
  if [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ]; then return 0; fi
  local force=()
  if [ "$stage_given" -eq 1 ] && [ "$n" -ge "$stage" ] && [ "$n" -gt 1 ]; then force=(--force); fi
  echo "[$(date +%H:%M:%S)] stage ${n} (${name}): ${exp}"
  "${HYBRID_ASD}" --log-file "${exp}/logs/${name}.log" "$@" "${force[@]}"
}

if [ 0 -ge "$stage" ] && [ 0 -le "$stop_stage" ]; then
  if [ ! -d "${data_root}/${machine}" ]; then
    if [ "$download" -eq 1 ]; then
      dest="$(dirname "$(dirname "$data_root")")"
      "${HYBRID_ASD}" --log-file "${exp}/logs/download.log" download --dest "$dest" --machines "$machine"
    else
      echo "asd.sh: ${data_root}/${machine} not found (pass --download, or --data-root)" >&2; exit 2
    fi
  fi
fi

gt=()
[ -n "$ground_truth" ] && gt=(--set "data.ground_truth=$(cd "$ground_truth" && pwd)")
# Stage 1 also runs when --set overrides are given with a later --stage, so that the changed config
# is saved (stages whose inputs changed then lose their completion markers and are redone).
if { [ 1 -ge "$stage" ] && [ 1 -le "$stop_stage" ]; } || [ "${#overrides[@]}" -gt 0 ]; then
  overwrite=()
  if [ "$stage_given" -eq 1 ] || [ "${#overrides[@]}" -gt 0 ]; then overwrite=(--overwrite); fi
  echo "[$(date +%H:%M:%S)] stage 1 (prepare): ${exp}"
  "${HYBRID_ASD}" --log-file "${exp}/logs/prepare.log" prepare --exp "$exp" --config "$config" \
    --data-root "$data_root" --machine "$machine" --seed "$seed" --device "$device" "${gt[@]}" \
    "${overrides[@]}" "${overwrite[@]}"
fi
run_stage 2 features features --exp "$exp"
run_stage 3 train    train    --exp "$exp"
run_stage 4 extract  extract  --exp "$exp"
run_stage 5 fit      fit      --exp "$exp"
run_stage 6 score    score    --exp "$exp"
run_stage 7 fuse     fuse-exp --exp "$exp"
run_stage 8 evaluate eval-exp --exp "$exp"
echo "done: ${exp}"
