"""benchmarks/machine_cpu.sh: machine-wide busy CPU while a command runs, the command's exit status passed on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "machine_cpu.sh"
pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc/stat")


def test_counts_the_cpu_of_a_busy_child_and_passes_its_exit_status_on():
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\nraise SystemExit(3)"
    done = subprocess.run(["bash", str(SCRIPT), sys.executable, "-c", spin], capture_output=True, text=True)
    assert done.returncode == 3
    m = re.search(r"machine busy CPU ([\d.]+) s in ([\d.]+) s wall: (\d+) % \((\d+) cores\)", done.stderr)
    assert m, done.stderr
    assert float(m.group(1)) >= 0.4  # the child's 0.5 s of CPU, whatever else the machine ran
    assert float(m.group(2)) >= 0.5


def test_without_a_command_prints_usage():
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: bash benchmarks/machine_cpu.sh COMMAND" in done.stderr
