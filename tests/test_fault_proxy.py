"""benchmarks/fault_proxy.py: regenerated anomalies equal the data set's own clips while the generator is
unchanged, merged score tables keep the normal rows, per-kind AUCs, a clear error for a missing run, and
fault-constant overrides that change only what they name."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fault_proxy as fp  # noqa: E402

from hybrid_asd.data import synthetic  # noqa: E402
from hybrid_asd.data.synth import machines  # noqa: E402
from hybrid_asd.errors import ConfigError, DataError  # noqa: E402
from hybrid_asd.scores import ScoreTable  # noqa: E402


def test_regenerated_anomalies_are_the_data_sets_own_clips(tmp_path):
    data = tmp_path / "data"
    synthetic.generate(data, preset="tiny", seed=3, machines=["valve"], progress=False)
    preset, seed, version = fp.demo_preset(data)
    assert (preset.machines, seed, version) == (("valve",), 3, synthetic.SYNTH_VERSION)
    anomalies = fp.regenerate_anomalies(preset, seed, tmp_path / "again", workers=1)
    originals = sorted(p for p in data.rglob("*_anomaly_*.wav"))
    assert len(anomalies) == len(originals) == 2 * 2 * preset.n_test_per_class
    for a in anomalies:
        rel = Path(a.path).relative_to(tmp_path / "again")
        assert Path(a.path).read_bytes() == (data / rel).read_bytes(), rel
        assert a.kind in synthetic.MODELS["valve"].anomaly_kinds and 0.15 <= a.severity <= 1.0


def _table(path: Path) -> ScoreTable:
    rows = ["path,machine,section,domain,split,label,score"]
    for i in range(3):
        rows.append(f"/d/valve/train/section_00_source_train_normal_{i:04d}_x.wav,valve,00,source,train,normal,{i}")
    for i in range(4):
        rows.append(f"/d/valve/source_test/section_00_source_test_normal_{i:04d}_x.wav,valve,00,source,test,normal,{i}")
        rows.append(f"/d/valve/source_test/section_00_source_test_anomaly_{i:04d}_x.wav,valve,00,source,test,anomaly,99")
    path.write_text("\n".join(rows) + "\n")
    return ScoreTable.from_csv(path, "knn")


def test_merged_table_replaces_only_the_anomalous_test_rows(tmp_path):
    _table(tmp_path / "knn.csv")
    kinds = ["leak", "leak", "late_close", "late_close"]
    new = {fp.Anomaly(f"/new/section_00_source_test_anomaly_{i:04d}_x.wav", "valve", 0, "source", kinds[i], 0.5):
           float(s) for i, s in enumerate([0.5, 5.0, 1.5, 2.5])}
    merged = fp.merged_table(tmp_path / "knn.csv", new, "knn", tmp_path / "out" / "knn.csv")
    anomalous = {str(c.path): float(s) for c, s in zip(merged.clips, merged.scores) if c.label == "anomaly"}
    assert anomalous == {a.path: s for a, s in new.items()}
    normal = [float(s) for c, s in zip(merged.clips, merged.scores) if c.label == "normal"]
    assert normal == [0, 1, 2, 0, 1, 2, 3]  # the run's normal rows, untouched
    aucs = fp.kind_aucs(merged, {a.path: a for a in new})
    test_normal = [0, 1, 2, 3]
    assert aucs[("leak", "source")] == pytest.approx(roc_auc_score([0] * 4 + [1] * 2, test_normal + [0.5, 5.0]))
    assert aucs[("late_close", "source")] == pytest.approx(roc_auc_score([0] * 4 + [1] * 2, test_normal + [1.5, 2.5]))
    assert set(aucs) == {("leak", "source"), ("late_close", "source")}
    assert np.isfinite(list(aucs.values())).all()


def test_missing_demo_run_names_the_file(tmp_path):
    with pytest.raises(DataError, match="synthetic.json not found"):
        fp.demo_preset(tmp_path / "nothing" / "data")


def test_fault_override_specs_are_checked():
    ov = fp.parse_overrides(["valve.leak=2", "gearbox=0.5"], ["1.5", "pump=3"])
    assert ov.gains[("valve", "leak")] == 2.0
    assert {k for m, k in ov.gains if m == "gearbox"} == set(synthetic.MODELS["gearbox"].anomaly_kinds)
    assert ov.drift == {None: 1.5, "pump": 3.0}
    assert not fp.parse_overrides()
    for gains, drifts, message in [(["vavle=2"], [], "unknown machine type 'vavle'"),
                                   (["valve.squeak=2"], [], "valve has no fault kind 'squeak'"),
                                   (["valve"], [], "expected MACHINE"),
                                   (["valve=lots"], [], "'lots' is not a number"),
                                   ([], ["-1"], "finite number >= 0"),
                                   ([], ["fan=nan"], "finite number >= 0")]:
        with pytest.raises(ConfigError, match=message):
            fp.parse_overrides(gains, drifts)


def test_overrides_change_only_the_named_faults_and_are_undone(tmp_path):
    """A gain override changes exactly the clips of its kind; a drift override every anomalous clip (all are
    faulty units); the constants are the generator's again afterwards, in this process and in rendering workers."""
    data = tmp_path / "data"
    synthetic.generate(data, preset="tiny", seed=3, machines=["valve"], progress=False)
    preset, seed, _ = fp.demo_preset(data)
    before = (copy.deepcopy(machines.ANOMALY_GAIN), machines.FAULT_DRIFT, machines.MODELS["valve"].fault_drift)

    kind = "leak"
    gain = fp.regenerate_anomalies(preset, seed, tmp_path / "gain", workers=2,
                                   overrides=fp.parse_overrides([f"valve.{kind}=3"]))
    per_kind = {}
    for a in gain:
        same = Path(a.path).read_bytes() == (data / Path(a.path).relative_to(tmp_path / "gain")).read_bytes()
        per_kind.setdefault(a.kind, set()).add(same)
    assert per_kind.pop(kind) == {False} and per_kind and all(v == {True} for v in per_kind.values())

    drift = fp.regenerate_anomalies(preset, seed, tmp_path / "drift", workers=1,
                                    overrides=fp.parse_overrides(drifts=["valve=3"]))
    assert all(Path(a.path).read_bytes() != (data / Path(a.path).relative_to(tmp_path / "drift")).read_bytes()
               for a in drift)
    assert (machines.ANOMALY_GAIN, machines.FAULT_DRIFT, machines.MODELS["valve"].fault_drift) == before


def test_a_drift_for_every_type_reaches_the_tonal_types_and_a_named_type_wins():
    """``--fault-drift 1.5`` sets every machine type's drift, the tonal types' own ``TONAL_FAULT_DRIFT`` (3.0)
    included; ``pump=2`` wins over it in either order; afterwards each type has its own drift again."""
    def effective(machine):
        own = machines.MODELS[machine].fault_drift
        return machines.FAULT_DRIFT if own is None else own

    assert (effective("fan"), effective("gearbox"), effective("pump")) == (1.0, 3.0, 3.0)
    for drifts in (["pump=2", "1.5"], ["1.5", "pump=2"]):
        with fp.overridden(fp.parse_overrides(drifts=drifts)):
            assert (effective("fan"), effective("gearbox"), effective("pump")) == (1.5, 1.5, 2.0)
        assert (effective("fan"), effective("gearbox"), effective("pump")) == (1.0, 3.0, 3.0)
