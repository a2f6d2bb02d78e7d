"""benchmarks/compare_extractor.py: pooling over machine types as the demo does, reuse of finished runs,
the side-by-side table, and a clear error for a missing demo run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import compare_extractor as ce  # noqa: E402
from test_ensemble_tune import make_tables  # noqa: E402

from hybrid_asd.evaluation.metrics import evaluate_scores  # noqa: E402
from hybrid_asd.scores import ScoreTable  # noqa: E402


def fake_demo(root: Path, seed: int, machines=("fan", "valve")) -> None:
    """A finished demo run: results.json with the demo's systems, one demo_hybrid experiment per machine."""
    demo = root / f"seed{seed}"
    for m in machines:
        (demo / "exp" / "demo_hybrid" / m).mkdir(parents=True)
    (demo / "data").mkdir()
    result = {"official_score": 0.5 + seed / 100, "source": {"auc": 0.6}, "target": {"auc": 0.55}}
    (demo / "results.json").write_text(json.dumps({name: result for name in ce.DEMO_SYSTEMS}))


def fake_runs(out_root: Path, seed: int, machines=("fan", "valve")) -> list[ScoreTable]:
    """Finished runs of the judged config: knn.csv per machine type (so nothing is run)."""
    tables = []
    for i, m in enumerate(machines):
        table = make_tables({"knn": 1.0 + i}, machines=(m,), sections=(0, 1), seed=seed + i)[0]
        path = out_root / f"seed{seed}" / m / "scores" / "knn.csv"
        path.parent.mkdir(parents=True)
        table.to_csv(path)
        tables.append(ScoreTable.from_csv(path, "knn"))
    return tables


def test_pooled_scores_equal_the_evaluation_of_the_concatenated_tables(tmp_path):
    tables = fake_runs(tmp_path, 0)
    pooled = ce.pooled_scores([tmp_path / "seed0" / m for m in ("fan", "valve")])
    expected = evaluate_scores(ScoreTable.concat(tables, "knn"))
    assert list(pooled) == ["knn"]
    assert pooled["knn"]["official_score"] == pytest.approx(expected.official_score, abs=1e-12)
    assert pooled["knn"]["source_auc"] == pytest.approx(expected.by_domain()["source"]["auc"], abs=1e-12)
    # a harmonic mean over the union of both machine types' values lies between their own
    single = [evaluate_scores(t).official_score for t in tables]
    assert min(single) <= pooled["knn"]["official_score"] <= max(single)


def test_table_over_seeds_reuses_finished_runs(tmp_path, capsys):
    demo_root, out_root = tmp_path / "demo", tmp_path / "runs"
    for seed in (0, 1):
        fake_demo(demo_root, seed)
        fake_runs(out_root, seed)
    config = tmp_path / "judged.yaml"  # never read: every run is already finished
    assert ce.main(["--demo-root", str(demo_root), "--seeds", "0", "1", "--config", str(config), "--out-root",
                    str(out_root), "--json", str(tmp_path / "out.json")]) == 0
    text = capsys.readouterr().out
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "judged/knn" in rows and "AE baseline" in rows
    # the demo's numbers are copied per seed: 0.50 and 0.51, mean 0.505
    assert "| 0.5000 | 0.5100 | 0.5050 ± 0.0071 |" in rows["AE baseline"]
    numbers = json.loads((tmp_path / "out.json").read_text())
    assert set(numbers) == {"0", "1"} and "judged/knn" in numbers["0"]


def test_missing_demo_run_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ce.main(["--demo-root", str(tmp_path), "--seeds", "3", "--config", "x.yaml", "--out-root", str(tmp_path)])
    assert "no finished demo run for seed 3" in capsys.readouterr().err
