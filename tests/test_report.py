"""Experiment reports: figures, the self-contained HTML page, legend numbers vs the results table."""

from __future__ import annotations

import base64
import csv
import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import auc

from hybrid_asd.config import dump_config, load_config
from hybrid_asd.data.clips import Clip, write_clip_list
from hybrid_asd.errors import ConfigError, StageError
from hybrid_asd.evaluation.metrics import evaluate_scores
from hybrid_asd.evaluation.report import format_metric, load_experiment, roc_figures, write_reports
from hybrid_asd.evaluation.report_figures import _roc_points
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_save_npy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = (0, 1, 2)
DETECTORS = {"knn": 1.6, "oe": 0.9}  # detector id -> separation of anomalous from normal scores
CHROMIUM = "/usr/bin/chromium"


def make_clips(sections: tuple[int, ...] = SECTIONS) -> list[Clip]:
    """Per section: 40 source + 3 target normal train clips; 12 normal + 12 anomalous test clips per domain."""
    clips = []
    for section in sections:
        for domain, n_train in (("source", 40), ("target", 3)):
            for i in range(n_train):
                name = f"section_{section:02d}_{domain}_train_normal_{i:04d}_speed_{i % 3}.wav"
                clips.append(Clip(Path("/data/fan/train") / name, "fan", section, domain, "train", "normal", i))
            for label in ("normal", "anomaly"):
                for i in range(12):
                    name = f"section_{section:02d}_{domain}_test_{label}_{i:04d}.wav"
                    clips.append(Clip(Path(f"/data/fan/{domain}_test") / name, "fan", section, domain, "test",
                                      label, i))
    return clips


def make_experiment(root: Path, seed: int = 0, *, stages: bool = True, extractor: bool = True,
                    sections: tuple[int, ...] = SECTIONS, embeddings: bool = True,
                    protocol: str = "dcase2021") -> Path:
    """A hand-built experiment folder: config, manifest and (``stages``) scores and, with
    ``embeddings``, embeddings and the extractor's train log."""
    overrides = ["name=fake", "data.machine=fan", f"seed={seed}", f"evaluation.protocol={protocol}"]
    overrides += [] if extractor else ["extractor=null"]
    config = load_config(None, overrides)
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(dump_config(config))
    clips = make_clips(sections)
    write_clip_list(root / "manifest" / "train.csv", [c for c in clips if c.split == "train"])
    write_clip_list(root / "manifest" / "test.csv", [c for c in clips if c.split == "test"])
    if not stages:
        return root
    rng = np.random.default_rng(seed)
    anomaly = np.array([c.is_anomaly for c in clips])
    target = np.array([c.domain == "target" for c in clips])
    for detector, separation in DETECTORS.items():
        scores = rng.gamma(4.0, 0.5, len(clips)) + separation * anomaly + 0.3 * target
        ScoreTable(detector, clips, scores).to_csv(root / "scores" / f"{detector}.csv")
    if not embeddings:
        return root
    section_of = np.array([sections.index(c.section) for c in clips])
    centres = rng.normal(0.0, 4.0, (len(sections), 16))
    emb = centres[section_of] + 2.5 * target[:, None] + 3.0 * anomaly[:, None] * rng.normal(size=(1, 16))
    emb += rng.normal(size=emb.shape)
    write_clip_list(root / "embeddings" / "clips.csv", clips)
    atomic_save_npy(root / "embeddings" / "embeddings.npy", emb.astype(np.float32))
    log_path = root / "extractor" / "train_log.csv"
    log_path.parent.mkdir(parents=True)
    with open(log_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "lr"])
        for epoch in range(1, 6):
            writer.writerow([epoch, 1.1 / epoch, 1 - 0.5 / epoch, 1.3 / epoch, 1 - 0.6 / epoch, 1.0, 1e-3])
    return root


def data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.fixture(scope="module")
def single_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = make_experiment(tmp_path_factory.mktemp("report") / "exp")
    [page] = write_reports([exp])
    return page


def test_report_writes_valid_figures_and_self_contained_html(single_report: Path) -> None:
    out = single_report.parent
    manifest = json.loads((out / "manifest.json").read_text())
    files = [f["file"] for f in manifest["figures"]]
    kinds = [f["kind"] for f in manifest["figures"]]
    assert files[:3] == [f"roc_fan_section_{s:02d}.png" for s in SECTIONS]
    assert sorted(kinds) == sorted(["roc"] * 3 + ["histogram"] * 2 + ["embedding", "training"])
    assert {"scores_knn.png", "scores_oe.png", "embedding_pca.png", "training_curve.png"} <= set(files)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(files)
    for name in files:
        blob = (out / name).read_bytes()
        assert blob.startswith(PNG_MAGIC) and len(blob) > 5_000, name
    page = single_report.read_text()
    embedded = data_uris(page)
    # Every figure is embedded, byte for byte, and nothing else is.
    assert page.count("data:image/png;base64,") == len(embedded) == len(files)
    assert embedded == [(out / name).read_bytes() for name in files]
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)  # no external resources
    assert "the &#x27;evaluate&#x27; stage has not run" in page  # eval/ was not written: named, not fatal


def test_html_table_and_legends_match_evaluation(single_report: Path) -> None:
    exp = single_report.parent.parent
    page = single_report.read_text()
    manifest = json.loads((single_report.parent / "manifest.json").read_text())
    config = load_config(exp / "config.yaml")
    expected = {}
    for detector in DETECTORS:
        table = ScoreTable.from_csv(exp / "scores" / f"{detector}.csv")
        res = evaluate_scores(table, config.evaluation.protocol, config.evaluation.max_fpr)
        assert f"<td class=\"num\">{format_metric(res.official_score)}</td>" in page
        for row in res.rows:
            expected[(detector, row.section, row.domain)] = (row.auc, row.pauc)
            assert f"<td class=\"num\">{format_metric(row.auc)}</td>" in page
            assert f"<td class=\"num\">{format_metric(row.pauc)}</td>" in page
    entries = {}
    for fig in manifest["figures"]:
        if fig["kind"] != "roc":
            continue
        for entry in fig["legend"]:
            entries[(entry["detector"], entry["section"], entry["domain"])] = (entry["auc"], entry["pauc"])
            # The drawn legend holds the same numbers, formatted as in the table.
            assert entry["label"] in fig["legend_texts"]
            assert f"AUC {format_metric(entry['auc'])}, pAUC {format_metric(entry['pauc'])}" in entry["label"]
    assert entries == expected  # every row of the table has its curve, with identical numbers
    # The numbers are informative: the stronger detector separates better.
    assert np.mean([v[0] for k, v in expected.items() if k[0] == "knn"]) > 0.8
    assert np.mean([v[0] for k, v in expected.items() if k[0] == "oe"]) < np.mean(
        [v[0] for k, v in expected.items() if k[0] == "knn"])


@pytest.mark.parametrize("protocol", ["dcase2021", "dcase2022"])
def test_drawn_curves_have_the_legend_auc(tmp_path: Path, protocol: str) -> None:
    exp = make_experiment(tmp_path / "exp", sections=(0, 1), embeddings=False, protocol=protocol)
    data = load_experiment(exp)
    figures = roc_figures(data)
    for fig in figures:
        assert len(fig.legend) == 4 and len(fig.legend_texts) == 5  # 2 detectors x 2 domains + pAUC region
    table = ScoreTable.from_csv(exp / "scores" / "knn.csv")
    rows = {(r.section, r.domain): r for r in evaluate_scores(table, protocol, 0.1).rows}
    for section in (0, 1):
        for domain in ("source", "target"):
            fpr, tpr = _roc_points(data.detectors["knn"].groups, ("fan", section, domain), protocol)
            # The area under the drawn curve is the AUC printed in the legend and the table.
            assert auc(fpr, tpr) == pytest.approx(rows[(section, domain)].auc, abs=1e-12)
    if protocol == "dcase2022":
        assert "pAUC (section)" in figures[0].legend[0]["label"]


def test_stale_eval_table_is_named(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", sections=(0,), embeddings=False)
    for detector, source in (("knn", "knn"), ("oe", "knn")):  # oe's table holds knn's numbers: stale
        res = evaluate_scores(ScoreTable.from_csv(exp / "scores" / f"{source}.csv"))
        res.to_official_csv(exp / "eval" / f"result_{detector}.csv")
    problems = [n.text for n in load_experiment(exp).notes if n.kind == "problem"]
    assert len(problems) == 1 and "result_oe.csv" in problems[0] and "rerun the 'evaluate' stage" in problems[0]


def test_report_names_missing_stages_instead_of_failing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bare = make_experiment(tmp_path / "bare", stages=False)
    no_extractor = make_experiment(tmp_path / "no_extractor", stages=False, extractor=False)
    with caplog.at_level(logging.INFO, logger="hybrid_asd.evaluation.report"):
        pages = write_reports([bare, no_extractor], overlay=False)
    assert "run the 'score' stage" in caplog.text and "run the 'extract' stage" in caplog.text
    text = pages[0].read_text()
    assert "run the &#x27;score&#x27; stage" in text
    assert "run the &#x27;extract&#x27; stage" in text and "run the &#x27;train&#x27; stage" in text
    assert "data:image/png" not in text
    assert "the config has no extractor" in pages[1].read_text()
    notes = load_experiment(no_extractor).notes
    assert [n.kind for n in notes if "score" in n.text] == ["missing"]
    with pytest.raises(StageError, match="experiment folder not found"):
        write_reports([tmp_path / "absent"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StageError, match="config.yaml"):
        write_reports([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="embedding map method"):
        write_reports([bare], embedding="mds")


def test_several_experiments_are_overlaid_in_each_report(tmp_path: Path) -> None:
    a = make_experiment(tmp_path / "runs" / "a", seed=1, sections=(0, 2), embeddings=False)
    b = make_experiment(tmp_path / "runs" / "b", seed=2, sections=(0,), embeddings=False)
    # A fused table in a: the overlay draws it alone for a (all detectors of b, which has none).
    fused = ScoreTable.from_csv(a / "scores" / "knn.csv", "fused")
    fused.to_csv(a / "fused" / "fused.csv")
    pages = write_reports([a, b], detectors=None)
    for page in pages:
        manifest = json.loads((page.parent / "manifest.json").read_text())
        overlays = [f for f in manifest["figures"] if f["kind"] == "overlay_roc"]
        # Only sections present in two or more experiments are compared.
        assert [f["file"] for f in overlays] == ["overlay_roc_fan_section_00.png"]
        series = {(e["experiment"], e["detector"]) for e in overlays[0]["legend"]}
        assert series == {("a", "fused"), ("b", "knn"), ("b", "oe")}
        assert len(data_uris(page.read_text())) == len(manifest["figures"])
    # Rerunning with one detector drops the figures it no longer draws.
    write_reports([b], detectors=["oe"])
    assert not (b / "report" / "scores_knn.png").exists()
    assert not (b / "report" / "overlay_roc_fan_section_00.png").exists()
    assert (b / "report" / "scores_oe.png").is_file()


def test_embedding_map_with_tsne(tmp_path: Path) -> None:
    exp = make_experiment(tmp_path / "exp", sections=(0,))
    data = load_experiment(exp, detectors=["oe"])
    from hybrid_asd.evaluation.report_figures import embedding_figures

    [fig] = embedding_figures(data, "tsne")
    assert fig.file == "embedding_tsne.png" and fig.png.startswith(PNG_MAGIC) and len(fig.png) > 5_000
    [fig] = embedding_figures(data, "umap")  # falls back to PCA when umap is not installed
    assert fig.file in ("embedding_umap.png", "embedding_pca.png")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(single_report: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (Debian package 'chromium')")
    binary = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    shot = tmp_path / "shot.png"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           single_report.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.is_file() and shot.read_bytes().startswith(PNG_MAGIC)
    assert shot.stat().st_size > 50_000  # text, tables and figures, not a blank page
    assert "ERR_" not in proc.stderr  # no failed loads (net::ERR_FILE_NOT_FOUND and the like)
