#!/usr/bin/env bash
# Shared staged recipe for one machine type (ESPnet/Kaldi style). Each stage is one `hybrid-asd`
# subcommand with its own log in <exp>/logs/. A completed stage is skipped; --stage N reruns from N.
# Stage 0 (data) downloads with --download, or checks the data root; stages 1.. are those of
# `hybrid-asd stages` (the stage table, printed below with -h), by number or name.
#
# Usage: asd.sh --machine fan [--config conf/wilkinghoff2021_serial.yaml] [--data-root DIR]
#               [--ground-truth DIR] [--exp-root exp] [--seed 0] [--device auto]
#               [--stage 0] [--stop-stage LAST] [--download] [--dataset dcase2021] [--set key=value ...]
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
stop_stage=""
stage_given=0
download=0
dataset="dcase2021"  # what --download fetches (recipes/dcase2026/asd.sh passes dcase2026)
overrides=()
HYBRID_ASD="${HYBRID_ASD:-hybrid-asd}"
stage_list="$("${HYBRID_ASD}" stages --names)"  # "NUMBER NAME" lines, from the stage table

# stage_number NAME_OR_NUMBER: the stage's number (0 is the data stage of this recipe).
stage_number() {
  if [ "$1" = 0 ] || [ "$1" = data ]; then echo 0; return; fi
  local n name
  while read -r n name; do
    if [ "$1" = "$n" ] || [ "$1" = "$name" ]; then echo "$n"; return; fi
  done <<< "$stage_list"
  echo "asd.sh: unknown stage $1; stages: 0 data, $(echo $stage_list)" >&2; exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --machine) machine="$2"; shift 2;;
    --config) config="$2"; shift 2;;
    --data-root) data_root="$2"; shift 2;;
    --ground-truth) ground_truth="$2"; shift 2;;
    --exp-root) exp_root="$2"; shift 2;;
    --seed) seed="$2"; shift 2;;
    --device) device="$2"; shift 2;;
    --stage) stage="$(stage_number "$2")"; stage_given=1; shift 2;;
    --stop-stage) stop_stage="$(stage_number "$2")"; shift 2;;
    --download) download=1; shift;;
    --dataset) dataset="$2"; shift 2;;
    --set) overrides+=("--set" "$2"); shift 2;;
    -h|--help) sed -n '2,9p' "$0"; echo "#"; "${HYBRID_ASD}" stages | sed 's/^/# /'
               echo "# (and stage 0, data: --download fetches the data, else the data root is checked)"; exit 0;;
    *) echo "asd.sh: unknown option $1" >&2; exit 2;;
  esac
done
[ -n "$machine" ] || { echo "asd.sh: --machine is required" >&2; exit 2; }
[ -n "$stop_stage" ] || stop_stage="$(tail -n 1 <<< "$stage_list" | cut -d' ' -f1)"
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
      "${HYBRID_ASD}" --log-file "${exp}/logs/download.log" download --dest "$dest" --dataset "$dataset" \
        --machines "$machine"
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
# Stages 2.. as listed by the stage table (stage 1, prepare, ran above with the config options).
while read -r -u 3 n name; do
  if [ "$n" -gt 1 ]; then run_stage "$n" "$name" "$name" --exp "$exp"; fi
done 3<<< "$stage_list"
echo "done: ${exp}"
