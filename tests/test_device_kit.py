"""benchmarks/device_kit.py: the wheels and the one command that run the GPU check on a device machine (#16).

The download itself needs the package index, so it is not run here (docs/benchmarks.md records the run that was
checked in an environment with only the device image's packages); these tests check what the script builds.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_kit():
    spec = importlib.util.spec_from_file_location("device_kit", ROOT / "benchmarks" / "device_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kit = _load_kit()


def test_pins_are_the_installed_versions():
    pins = kit.pinned_requirements(("soundfile", "pydantic-core"))
    assert pins == [f"soundfile=={version('soundfile')}", f"pydantic-core=={version('pydantic-core')}"]


def test_a_package_not_installed_is_named():
    with pytest.raises(SystemExit, match="no-such-package-xyz"):
        kit.pinned_requirements(("soundfile", "no-such-package-xyz"))


def test_every_runtime_dependency_the_image_lacks_is_in_the_kit():
    """pydantic pins its core exactly and soundfile needs cffi: a kit without them fails only on the device."""
    names = set(kit.MISSING_ON_DEVICE)
    assert {"pydantic", "pydantic-core", "soundfile", "cffi", "pycparser", "soxr", "zuko", "faiss-cpu"} <= names
    pins = dict(pin.split("==") for pin in kit.pinned_requirements())
    assert set(pins) == names


def test_download_command_fetches_device_wheels_without_dependencies(tmp_path):
    cmd = kit.download_command(["soxr==1.1.0"], tmp_path, "3.12")
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    assert cmd[cmd.index("--dest") + 1] == str(tmp_path)
    platforms = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--platform"]
    assert platforms == list(kit.PLATFORMS) and all(p.endswith("x86_64") for p in platforms)
    assert cmd[-1] == "soxr==1.1.0"


def test_device_command_fits_the_tool_and_returns_its_files():
    command = kit.device_command(".whl", budget_s=420)
    assert len(command) <= 2000  # the device tool's limit for one command
    assert "--target /tmp/site .whl/*.whl" in command and "--no-index" in command
    assert "--budget-s 420" in command
    # the tables and the log come back ($OUT, at most two folders down); the bulky data stays outside $OUT
    assert "--out $OUT/gpu_check " in command and "tee $OUT/gpu_check.log" in command
    assert re.search(r"--work /tmp/\S+", command)
    # a failed install stops before the check, and the check's exit status survives the tee
    assert "|| exit 3" in command and "set -o pipefail" in command
    # the CUDA tests run first, into their own log; each file exists and holds a test that skips without CUDA
    assert "-k cuda " + " ".join(kit.CUDA_TESTS) in command and "tee $OUT/cuda_tests.log;" in command
    for path in kit.CUDA_TESTS:
        text = (ROOT / path).read_text()
        assert re.search(r"def test_\w*cuda\w*\(", text) and 'reason="CUDA not available"' in text, path


def test_print_command_downloads_nothing(tmp_path, capsys):
    assert kit.main(["--print-command", "--dest", str(tmp_path / "w"), "--budget-s", "300"]) == 0
    out = capsys.readouterr().out
    assert "--budget-s 300" in out and "timeout_s about 420" in out
    assert not (tmp_path / "w").exists()
