"""benchmarks/fidelity.py: the six fidelity checks of issue #12 against hand-made results (thresholds, the
F1 learnability rule, F5 over every system), the mean ± std table, and reading the extractors' training logs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fidelity as fd  # noqa: E402

from hybrid_asd.evaluation.metrics import harmonic_mean  # noqa: E402

STATS = fd.LOGMEL_SYSTEMS[0]


def _result(official: float, source_auc: float = 0.70, target_auc: float = 0.60, pauc: float = 0.55) -> dict:
    return {"official_score": official, "source": {"auc": source_auc, "pauc": pauc},
            "target": {"auc": target_auc, "pauc": pauc}}


def _seed(ae=0.57, serial=0.62, oe=0.58, stats=0.58, **override) -> dict:
    results = {fd.AE: _result(ae), fd.SERIAL: _result(serial), fd.OE: _result(oe), STATS: _result(stats)}
    results.update(override)
    return results


ACCS_OK = {"demo_hybrid": {"fan": [0.60, 0.70, 0.80]}, "demo_baselines": {"fan": [0.50, 0.55, 0.52]}}


def _checks(per_seed: dict, accs: dict | None = None) -> dict:
    accs = {s: accs or ACCS_OK for s in per_seed}
    probes = {s: {"fan": 0.9} for s in per_seed}
    return fd.summarise(per_seed, accs, probes)[1]


def test_every_target_met_on_results_that_meet_them():
    checks = _checks({0: _seed(), 1: _seed(serial=0.64)})
    assert {k: ok for k, (_, _, ok) in checks.items()} == {f"F{i}": True for i in range(1, 7)}
    assert checks["F2"][1].startswith("+0.0600")  # mean of 0.62 and 0.64 minus 0.57


@pytest.mark.parametrize("serial, ok", [(0.5999, False), (0.6001, True)])
def test_f2_threshold_is_exact_and_shown_to_four_digits(serial, ok):
    checks = _checks({0: _seed(ae=0.57, serial=serial)})
    assert checks["F2"][2] is ok
    assert checks["F2"][1].startswith(f"{serial - 0.57:+.4f}")


def test_f2_also_needs_the_target_domain():
    serial = _result(0.65, target_auc=0.50)  # ahead overall, below the AE on the target domain
    assert _checks({0: _seed(**{fd.SERIAL: serial})})["F2"][2] is False


def test_f1_fails_when_a_run_is_best_at_epoch_one_or_too_easy():
    assert _checks({0: _seed()}, {"demo_baselines": {"gearbox": [0.83, 0.75, 0.82]}})["F1"][2] is False
    assert _checks({0: _seed()}, {"demo_hybrid": {"fan": [0.96, 0.97, 0.99]}})["F1"][2] is False
    measured = _checks({0: _seed()}, {"a": {"x": [0.6, 0.7]}, "b": {"y": [0.8, 0.7]}})["F1"][1]
    assert measured == "max epoch-1 0.800; improves in 1/2"


def test_f3_f4_f5_f6():
    assert _checks({0: _seed(oe=0.63)})["F3"][2] is False  # 0.06 from the AE
    assert _checks({0: _seed(stats=0.63)})["F4"][2] is False  # statistics above the serial hybrid
    flat = _result(0.58, source_auc=0.60, target_auc=0.61)
    assert _checks({0: _seed(**{fd.OE: flat})})["F5"][2] is False  # one system's target above its source
    assert _checks({0: _seed(ae=0.53, serial=0.60, oe=0.55, stats=0.55)})["F6"][2] is False


def test_table_is_mean_and_sample_std_over_seeds():
    text, _ = fd.summarise({0: _seed(ae=0.55), 1: _seed(ae=0.58), 2: _seed(ae=0.60)},
                           {s: ACCS_OK for s in range(3)}, {s: {"fan": 0.9} for s in range(3)})
    row = next(line for line in text.splitlines() if line.startswith(f"| {fd.AE} |"))
    values = np.array([0.55, 0.58, 0.60])
    assert row.endswith(f"| {values.mean():.3f} ± {values.std(ddof=1):.3f} |")


def test_epoch_accuracies_reads_each_machine_types_log(tmp_path):
    for machine, accs in (("fan", [0.5, 0.7]), ("valve", [0.4, 0.6, 0.65])):
        log = tmp_path / "exp" / "demo_hybrid" / machine / "seed0" / "extractor" / "train_log.csv"
        log.parent.mkdir(parents=True)
        log.write_text("epoch,train_loss,val_acc\n" + "".join(f"{i + 1},1.0,{a}\n" for i, a in enumerate(accs)))
    assert fd.epoch_accuracies(tmp_path, "demo_hybrid") == {"fan": [0.5, 0.7], "valve": [0.4, 0.6, 0.65]}
    assert fd.epoch_accuracies(tmp_path, "demo_baselines") == {}


def test_reference_results_pool_sections_as_the_official_score():
    """Two sections whose anomalies are shifted: each reference's official score is the harmonic mean of its
    per-section, per-domain AUC and pAUC, as the demo's systems are."""
    rng = np.random.default_rng(0)
    rows, feats = [], []
    for section in ("00", "01"):
        for domain in ("source", "target"):
            for split, label, n, shift in (("train", "normal", 30, 0.0), ("test", "normal", 20, 0.0),
                                           ("test", "anomaly", 20, 1.5 if section == "00" else 0.5)):
                for _ in range(n if domain == "source" or split == "test" else 3):
                    rows.append({"machine": "fan", "section": section, "domain": domain, "split": split, "label": label})
                    feats.append(rng.normal(shift, 1.0, size=4))
    feats = np.array(feats)
    out = fd.reference_results(rows, feats, seed=0)
    # the kNN reference by hand: 1-NN distance to the section's standardised training clips
    aucs, paucs = {"source": [], "target": []}, {"source": [], "target": []}
    for section in ("00", "01"):
        pick = [i for i, r in enumerate(rows) if r["section"] == section]
        train = [i for i in pick if rows[i]["split"] == "train"]
        mu, sd = feats[train].mean(0), feats[train].std(0)
        bank = (feats[train] - mu) / sd
        for domain in ("source", "target"):
            test = [i for i in pick if rows[i]["split"] == "test" and rows[i]["domain"] == domain]
            x = (feats[test] - mu) / sd
            dist = np.sqrt(((x[:, None, :] - bank[None]) ** 2).sum(-1)).min(1)
            y = [rows[i]["label"] == "anomaly" for i in test]
            aucs[domain].append(roc_auc_score(y, dist))
            paucs[domain].append(roc_auc_score(y, dist, max_fpr=0.1))
    knn = out[fd.REF_KNN]
    assert knn["source"]["auc"] == pytest.approx(harmonic_mean(aucs["source"]), abs=1e-12)
    assert knn["target"]["pauc"] == pytest.approx(harmonic_mean(paucs["target"]), abs=1e-12)
    every = [v for d in ("source", "target") for pair in zip(aucs[d], paucs[d]) for v in pair]
    assert knn["official_score"] == pytest.approx(harmonic_mean(every), abs=1e-12)
    assert knn["source"]["auc"] > 0.6  # the shifted anomalies are found
    assert set(out) == {fd.REF_KNN, fd.REF_GMM} and 0.5 < out[fd.REF_GMM]["source"]["auc"] <= 1.0
