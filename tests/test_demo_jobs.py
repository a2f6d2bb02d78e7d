"""`hybrid-asd demo --jobs N`: the experiments run in N spawned worker processes with one thread each; the
table is the same as one after the other (--jobs 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_asd import demo
from hybrid_asd.cli import build_parser
from hybrid_asd.errors import ConfigError


def test_default_jobs_and_cli_option():
    assert demo.default_jobs(6) == min(demo.available_cpus(), 6)
    assert demo.default_jobs(1) == 1
    assert build_parser().parse_args(["demo"]).jobs is None
    assert build_parser().parse_args(["demo", "--jobs", "1"]).jobs == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--jobs", "0"])


def test_bad_jobs_refused(tmp_path):
    with pytest.raises(ConfigError, match="--jobs must be >= 1"):
        demo.run_experiments(tmp_path, ["fan"], tmp_path, seed=0, device="cpu", quick=True, progress=False, jobs=0)


def test_the_unit_that_trains_a_shared_network_runs_first(tmp_path, monkeypatch):
    """demo_hybrid's experiments share one network (extractor.train_machines: all): its first machine type's
    unit trains it and runs before the baselines; every other unit keeps the longest-first order."""
    assert demo.shares_network("demo_hybrid", tmp_path, "fan", 0, "cpu", False)
    assert not demo.shares_network("demo_baselines", tmp_path, "fan", 0, "cpu", False)
    calls = []

    def record(out, name, machine, *args, **kwargs):
        calls.append((name, machine))
        return tmp_path / name / machine, []

    monkeypatch.setattr(demo, "run_unit", record)
    exps, _ = demo.run_experiments(tmp_path, ["ToyCar", "fan"], tmp_path, seed=0, device="cpu", quick=True,
                                   progress=False, jobs=1)
    assert calls == [("demo_hybrid", "ToyCar"), ("demo_baselines", "ToyCar"), ("demo_baselines", "fan"),
                     ("demo_hybrid", "fan")]
    assert [e.root.name for e in exps["demo_hybrid"]] == ["ToyCar", "fan"]


def _table(out: Path) -> list[str]:
    """results.md without its run time line."""
    return [line for line in (out / "results.md").read_text().splitlines() if not line.startswith("Run time")]


@pytest.mark.slow
def test_parallel_demo_equals_sequential(tmp_path):
    """The demo's quick path on tiny data: 2 workers and 1 (in this process) give identical tables."""
    seq = demo.run_demo(tmp_path / "seq", preset="tiny", quick=True, progress=False, jobs=1)
    par = demo.run_demo(tmp_path / "par", preset="tiny", quick=True, progress=False, jobs=2)
    assert _table(tmp_path / "seq") == _table(tmp_path / "par")
    assert json.loads((tmp_path / "seq" / "results.json").read_text()) == \
        json.loads((tmp_path / "par" / "results.json").read_text())
    assert len(seq["reports"]) == len(par["reports"]) == 4
    assert [p.relative_to(tmp_path / "seq") for p in seq["reports"]] == \
        [p.relative_to(tmp_path / "par") for p in par["reports"]]
