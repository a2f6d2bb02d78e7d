"""Prepare the GPU check for a device machine that cannot install anything (#16).

The project's GPU machines (the `device` tool) run an image with Python 3.12, CUDA torch, timm, NumPy, SciPy,
scikit-learn, PyYAML, tqdm, matplotlib and nvidia-ml-py, but nothing can be fetched there. The packages of ours
that the image lacks travel as wheels: this script downloads them here, for the device's Python and platform,
into an ignored folder (default ``.whl/``) and prints the one command to run there.

    python benchmarks/device_kit.py                  # download the wheels into .whl/, print the device command
    python benchmarks/device_kit.py --print-command  # only print the command

The versions are the ones installed in this environment (what the tests ran with), so the device runs what CI
tested, apart from the image's own torch/timm/NumPy. FAISS goes as faiss-cpu: faiss-gpu's wheels for CUDA 12 need
the CUDA 12 cuBLAS (about 400 MB, far over what may travel) and there is no CUDA 13 build, so the GPU check's FAISS
section reports the GPU side as unavailable there (docs/benchmarks.md, *GPU check*).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Runtime dependencies (pyproject.toml, with their own dependencies) that the device image lacks, as its package
# list read on 2026-11-17 (/work/.library/device/KINDS.md): pydantic with its three helpers, soundfile with cffi
# and pycparser, soxr, zuko, pooch with platformdirs, and FAISS.
MISSING_ON_DEVICE = (
    "faiss-cpu",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "soundfile",
    "cffi",
    "pycparser",
    "soxr",
    "zuko",
    "pooch",
    "platformdirs",
)
DEVICE_PYTHON = "3.12"
# pip matches each manylinux tag exactly, so list the ones these wheels are built for
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
# what may travel to the device machine in one call: the working tree and the wheels together
TRAVEL_LIMIT_BYTES = 64 * 2**20


def pinned_requirements(names: tuple[str, ...] = MISSING_ON_DEVICE) -> list[str]:
    """``name==version`` of each package as installed here; an error naming the ones that are not."""
    pins, absent = [], []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            absent.append(name)
    if absent:
        raise SystemExit(f"not installed in this environment: {', '.join(absent)} (run scripts/setup.sh first)")
    return pins


def download_command(requirements: list[str], dest: Path, python_version: str = DEVICE_PYTHON) -> list[str]:
    """The ``pip download`` that fetches binary wheels for the device's Python and platform, no dependencies."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
           "--python-version", python_version, "--implementation", "cp"]  # fmt: skip
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    return cmd + requirements


# The tests that skip without CUDA; their modules import nothing beyond the image and the kit.
CUDA_TESTS = ("tests/test_detectors.py", "tests/test_features_cache.py", "tests/test_features_logmel.py")


def device_command(wheels: str = ".whl", budget_s: int = 420) -> str:
    """The command for the device tool's ``run`` (``carry: [<wheels>]``): install the wheels beside the image's
    packages, run the CUDA tests (about half a minute), then the GPU check; the tables and both logs go under
    ``$OUT`` (the only folder that comes back). The command's exit status is the GPU check's."""
    return (
        f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
        f"{wheels}/*.whl || exit 3; export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1; set -o pipefail; "
        f"python3 -m pytest -q -p no:cacheprovider -k cuda {' '.join(CUDA_TESTS)} 2>&1 | tee $OUT/cuda_tests.log; "
        f"python3 benchmarks/gpu_check.py --out $OUT/gpu_check --work /tmp/gpu_work --budget-s {budget_s} "
        f"2>&1 | tee $OUT/gpu_check.log"
    )


def wheels_size(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--dest", type=Path, default=Path(".whl"),
                        help="folder for the wheels (default .whl; keep it ignored by git)")  # fmt: skip
    parser.add_argument("--python-version", default=DEVICE_PYTHON,
                        help=f"the device's Python (default {DEVICE_PYTHON})")  # fmt: skip
    parser.add_argument("--budget-s", type=int, default=420,
                        help="the GPU check's own wall-time target in the printed command (default 420 s)")  # fmt: skip
    parser.add_argument("--print-command", action="store_true", help="print the device command, download nothing")
    args = parser.parse_args(argv)
    if not args.print_command:
        args.dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(download_command(pinned_requirements(), args.dest, args.python_version), check=True)
        size = wheels_size(args.dest)
        print(f"{len(list(args.dest.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {args.dest} "
              f"(the working tree and the wheels may be {TRAVEL_LIMIT_BYTES / 2**20:.0f} MiB together)")  # fmt: skip
        if size > TRAVEL_LIMIT_BYTES:
            print("too large to travel", file=sys.stderr)
            return 1
    print(f"device run (carry: [{args.dest.as_posix()}], timeout_s about {args.budget_s + 120}):")
    print(device_command(args.dest.as_posix(), args.budget_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
