#!/usr/bin/env bash
# DCASE 2026 Task 2 ("noise-aware", two-channel clips) over the shared staged recipe for one machine
# type, recipes/dcase2021/asd.sh: the same stages and options, with 2026 defaults. Later options win.
#
# Usage: asd.sh --machine ToyCar [--config conf/dcase2026_wilkinghoff_serial.yaml | conf/dcase2026_baseline_ae.yaml]
#               [--data-root data/dcase2026/dev_data] [--download] [other recipes/dcase2021/asd.sh options]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in -h|--help) sed -n '2,6p' "$0"; exec "${here}/../dcase2021/asd.sh" --help;; esac
exec "${here}/../dcase2021/asd.sh" --dataset dcase2026 --data-root data/dcase2026/dev_data \
  --config "${here}/conf/dcase2026_wilkinghoff_serial.yaml" "$@"
