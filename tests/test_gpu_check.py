"""benchmarks/gpu_check.py --quick: the CPU smoke path of the GPU check (tiny_cnn on tiny data) writes the JSON
and markdown of a full run, with GPU rows marked unavailable where there is no CUDA (and measured where there is)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid_asd.stages import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _reject_constant(name: str) -> float:
    raise AssertionError(f"non-finite number {name} in gpu_check.json")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, str]:
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text(), parse_constant=_reject_constant)
    return proc, report, (out / "gpu_check.md").read_text()


def _numbers(value, path="") -> list[tuple[str, float]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [(path, value)]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{path}[{i}]")]
    return []


def test_quick_report_structure(quick_run):
    _, report, text = quick_run
    assert report["schema"] == 1 and report["mode"] == "quick"
    for key in ("environment", "data", "logmel", "faiss", "training", "end_to_end", "checks", "wall_s"):
        assert key in report, key
    assert all(math.isfinite(v) for _, v in _numbers(report))
    cuda = report["environment"]["cuda_available"]
    assert report["checks"]["failed_sections"] == "none"
    for header in ("## Log-mel front end", "## FAISS exact kNN", "## Extractor training", "## End to end", "## Checks"):
        assert header in text
    if not cuda:
        assert "unavailable: CUDA not available" in text


def test_quick_logmel_and_faiss(quick_run):
    _, report, _ = quick_run
    lm, fa = report["logmel"], report["faiss"]
    assert lm["status"] == "ok" and lm["cpu"]["clips_per_s"] > 0
    assert lm["max_diff_db_cpu_float32_vs_float64"] < 1e-3
    if lm["gpu"]["status"] == "ok":  # both sides ran
        assert lm["max_diff_db_gpu_vs_cpu"] < 1e-3 and lm["pass"] is True
    else:
        assert lm["gpu"] == {"status": "unavailable", "reason": "CUDA not available"}
        assert lm["max_diff_db_gpu_vs_cpu"] is None and lm["pass"] is None
    assert fa["status"] == "ok" and fa["cpu"]["queries_per_s"] > 0 and fa["bank"] == [2000, 128]
    if fa["gpu"]["status"] == "ok":
        assert fa["max_abs_diff"] <= 1e-5 and fa["pass"] is True
    else:
        assert fa["gpu"]["status"] == "unavailable" and fa["max_abs_diff"] is None


def test_quick_training_rows(quick_run):
    _, report, _ = quick_run
    rows = report["training"]
    defaults = [r for r in rows if r["variant"] == "default"]
    configs = {"baseline_mobilenetv2", "wilkinghoff2021_serial", "morita2021_serial", "demo_hybrid",
               "multibranch_scac_knn"}
    assert {r["config"] for r in defaults} == configs and len(defaults) == 5 * 3
    assert {r["backbone"] for r in defaults} == {"mobilenetv2_100", "resnet18", "tiny_cnn", "multibranch"}
    assert {r["batch"] for r in defaults if r["backbone"] == "mobilenetv2_100"} == {32, 64}
    # the multi-branch network trains on waveform crops (shrunk by --quick to batch 8)
    assert {(r["input"], r["batch"]) for r in defaults if r["backbone"] == "multibranch"} == {("waveform", 8)}
    assert {r["input"] for r in defaults if r["backbone"] != "multibranch"} == {"patches"}
    cuda = report["environment"]["cuda_available"]
    for r in defaults:
        if r["backbone"] not in ("tiny_cnn", "multibranch"):
            assert r["status"] == "skipped"
            continue
        if r["precision"] != "fp32" and not cuda:
            assert (r["status"], r["reason"]) == ("unavailable", "CUDA not available")
            continue
        assert r["status"] == "ok" and r["model_patches_per_s"] > 0
        if r["precision"] != "bf16":
            assert r["pipeline_patches_per_s"] > 0 and 0 <= r["loader_wait_fraction"] <= 1
        if cuda:
            assert r["model_peak_memory_mib"] > 0
    assert len([r for r in rows if r["variant"] != "default"]) == 3


def test_quick_end_to_end(quick_run):
    _, report, _ = quick_run
    e2e = report["end_to_end"]
    assert report["data"]["status"] == "ok" and report["data"]["preset"] == "tiny"
    assert e2e["status"] == "ok" and e2e["config"] == "wilkinghoff2021_serial" and e2e["epochs"] == 1
    assert [s["stage"] for s in e2e["stages"]] == list(STAGE_NAMES)
    assert all(s["seconds"] >= 0 for s in e2e["stages"])
    assert set(e2e["official_score"]) >= {"gmm", "knn", "fused"}
    assert all(0 <= v <= 1 for v in e2e["official_score"].values())
    assert report["checks"]["end_to_end_ran"] is True


def test_full_check_needs_cuda(tmp_path):
    """Without --quick and without CUDA the check stops at once with a clear message (exit status 2)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "CUDA not available" in proc.stderr
    assert not (tmp_path / "gpu_check.json").exists()
