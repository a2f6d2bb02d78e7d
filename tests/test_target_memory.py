"""benchmarks/target_memory.py: where the target training clips lie against the unseen target clips."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import target_memory as tm  # noqa: E402

from hybrid_asd.data.clips import Clip, write_clip_list  # noqa: E402
from hybrid_asd.errors import DataError  # noqa: E402


def clip(section: int, domain: str, split: str, label: str, i: int) -> Clip:
    return Clip(path=Path(f"/d/fan/{split}/section_{section:02d}_{domain}_{split}_{label}_{i:04d}.wav"),
                machine="fan", section=section, domain=domain, split=split, label=label, index=i)


def fake_experiment(root: Path, target_train_at: str) -> Path:
    """Section 00: source clips around e0, unseen target clips around 0.8 e0 + 0.6 e1 (cosine distance 0.2 from
    the source), the 3 target training clips either on e2 (a region of their own) or with the unseen target
    clips. Section 01 has no target clips."""
    rng = np.random.default_rng(0)
    clips, rows = [], []
    def unit(*pairs: tuple[int, float]) -> np.ndarray:
        v = np.zeros(8)
        for i, x in pairs:
            v[i] = x
        return v

    spots = {"source": unit((0, 1.0)), "unseen": unit((0, 0.8), (1, 0.6)), "own": unit((2, 1.0))}

    def add(c: Clip, spot: np.ndarray) -> None:
        clips.append(c)
        rows.append(spot + 0.01 * rng.standard_normal(8))

    for i in range(20):
        add(clip(0, "source", "train", "normal", i), spots["source"])
        add(clip(1, "source", "train", "normal", i), unit((5, 1.0)))
    for i in range(3):
        add(clip(0, "target", "train", "normal", i), spots["unseen" if target_train_at == "with_unseen" else "own"])
    for i in range(10):
        add(clip(0, "target", "test", "normal", i), spots["unseen"])
        add(clip(0, "target", "test", "anomaly", i), unit((7, 1.0)))
        # source test clips at cosine distance 0.05 (normal) and 0.2 (anomalous) from the source clips: shift 4
        add(clip(0, "source", "test", "normal", i), unit((0, 0.95), (4, np.sqrt(1 - 0.95**2))))
        add(clip(0, "source", "test", "anomaly", i), unit((0, 0.8), (6, 0.6)))
    exp = root / target_train_at
    (exp / "embeddings").mkdir(parents=True)
    write_clip_list(exp / "embeddings" / "clips.csv", clips)
    np.save(exp / "embeddings" / "embeddings.npy", np.array(rows, dtype=np.float32))
    return exp


def test_target_clips_in_a_region_of_their_own_never_hold_the_nearest_neighbour(tmp_path):
    summary = tm.section_summary(*tm.load(fake_experiment(tmp_path, "own_region")))
    assert list(summary) == [0]  # section 01 has no target clips: left out
    s = summary[0]
    assert s["nearest is target"] == 0.0
    assert s["to target train"] == pytest.approx(1.0, abs=0.02)  # orthogonal: cosine distance 1
    assert s["to source train"] == pytest.approx(0.2, abs=0.02)
    assert s["target spread"] == pytest.approx(0.0, abs=0.01)
    assert s["fault shift (source)"] == pytest.approx(4.0, rel=0.15)


def test_target_clips_with_the_unseen_ones_hold_it_and_the_table_shows_it(tmp_path, capsys):
    exp = fake_experiment(tmp_path, "with_unseen")
    s = tm.section_summary(*tm.load(exp))[0]
    assert s["nearest is target"] > 0.5
    assert s["to target train"] == pytest.approx(0.0, abs=0.01)
    out = tmp_path / "table.md"
    table = tm.main([str(exp), "--out", str(out)])
    assert out.read_text() == table == capsys.readouterr().out
    assert table.splitlines()[2].startswith(f"| fan ({exp}) | 00 | ")


def test_fault_shift_is_undefined_without_both_kinds_of_clips_and_shows_as_n_a():
    memory = np.eye(3)[:1]
    assert np.isnan(tm.fault_shift(np.eye(3)[1:], np.empty((0, 3)), memory))
    assert np.isnan(tm.fault_shift(memory, np.eye(3)[1:], memory))  # normal clips on the memory: distance 0
    table = tm.format_table({"x": {0: {k: float("nan") if k == "fault shift (source)" else 0.5 for k in tm.COLUMNS}}})
    assert table.splitlines()[2] == "| x | 00 | 0.500 | 0.500 | 0.500 | 0.500 | n/a |"


def test_missing_or_misaligned_embeddings_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"clips\.csv: missing; run the 'extract' stage"):
        tm.load(tmp_path)
    exp = fake_experiment(tmp_path, "own_region")
    np.save(exp / "embeddings" / "embeddings.npy", np.zeros((3, 8), dtype=np.float32))
    with pytest.raises(DataError, match=r"embeddings\.npy: shape \(3, 8\) for 83 clips"):
        tm.load(exp)
