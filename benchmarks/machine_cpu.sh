#!/usr/bin/env bash
# Machine-wide busy CPU time while a command runs (Linux: /proc/stat), for benchmarks of commands whose worker
# processes /usr/bin/time does not count: multiprocessing's forkserver starts the data generator's workers as
# children of its server process, not of the command, so `time -v` misses them (docs/benchmarks.md, "Demo on both
# cores"). Counts everything the machine ran meanwhile: measure on an otherwise idle machine.
#
#   bash benchmarks/machine_cpu.sh .venv/bin/hybrid-asd demo --out exp/demo_timed --no-progress
set -u
if [ $# -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: bash benchmarks/machine_cpu.sh COMMAND [ARGS...]  (prints the machine's busy CPU while COMMAND runs)" >&2
  exit 2
fi
busy() { read -r _ user nice system _idle _iowait irq softirq steal _ < /proc/stat; echo $((user + nice + system + irq + softirq + steal)); }
hz=$(getconf CLK_TCK)
b0=$(busy); t0=$(date +%s.%N)
"$@"
rc=$?
b1=$(busy); t1=$(date +%s.%N)
python3 -c "import sys; b, w, n = ($b1 - $b0) / $hz, $t1 - $t0, $(nproc); print(f'machine busy CPU {b:.1f} s in {w:.1f} s wall: {100 * b / w:.0f} % ({n} cores)', file=sys.stderr)"
exit $rc
