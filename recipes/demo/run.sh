#!/usr/bin/env bash
# The demo: generate the synthetic `demo` data, run the baselines and a serial and a parallel hybrid end
# to end, fuse, print the official table and write the reports. Same as `hybrid-asd demo`.
# Usage: recipes/demo/run.sh [--out exp/demo] [--seed 0] [--quick]
set -euo pipefail
exec "${HYBRID_ASD:-hybrid-asd}" demo "$@"
