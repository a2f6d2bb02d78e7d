"""benchmarks/real_vs_synthetic.py: the clip statistics on signals of known answer, and the whole comparison
on the real clips of ../shared/data against a tiny generated synthetic set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import real_vs_synthetic as rvs  # noqa: E402

from hybrid_asd.config import Config  # noqa: E402
from hybrid_asd.features.cache import FeatureCache  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def logmel(tmp_path_factory):
    config = Config()
    cache = FeatureCache(config.features, config.data, cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")
    return lambda wave: cache.logmel_batch([np.asarray(wave, dtype=np.float32)])[0]


def test_statistics_of_signals_with_known_answers(logmel):
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    noise = 0.1 * rng.standard_normal(len(t))
    sine = 0.1 * np.sin(2 * np.pi * 1000 * t)
    gated = noise * (np.sin(2 * np.pi * 2 * t) > 0)  # on half the time, off the other half
    # white noise: flat mel power (Slaney filters are area-normalised); a sine: one band
    assert rvs.flatness_db(logmel(noise)) > -2.0
    assert rvs.flatness_db(logmel(sine)) < -15.0
    # stationary noise barely moves frame to frame; gated noise jumps by far more than 10 dB
    assert rvs.frame_energy_std_db(logmel(noise)) < 0.5
    assert rvs.frame_energy_std_db(logmel(gated)) > 10.0
    # twice the amplitude is +6.02 dB at every band, and nothing else
    level, shape = rvs.level_and_shape_difference(rvs.mean_spectrum_db(logmel(2 * noise)),
                                                  rvs.mean_spectrum_db(logmel(noise)))
    assert level == pytest.approx(20 * np.log10(2), abs=1e-3) and shape < 1e-3
    level, shape = rvs.level_and_shape_difference(np.array([0.0, 0.0, 2.0, 2.0]), np.zeros(4))
    assert (level, shape) == (1.0, 1.0)


def test_the_comparison_on_the_real_clips(tmp_path, shared_data):
    real = shared_data / "dcase2023t2-samples" / "dev_data" / "raw"
    clips = rvs.real_clips(real, "fan")
    assert {(c.domain, c.split, c.label) for c in clips} >= {("source", "train", "normal"),
                                                              ("target", "test", "normal")}
    out = tmp_path / "table.md"
    assert rvs.main(["--real", str(real), "--work", str(tmp_path / "work"), "--machines", "fan", "valve",
                     "--clips", "4", "--seconds", "1", "--pairs", "2", "--workers", "1", "--out", str(out)]) == 0
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith(("| fan", "| valve"))]
    assert [(r[0], r[1]) for r in rows] == [("| fan", "real"), ("| fan", "synthetic"), ("| valve", "real"),
                                            ("| valve", "synthetic")]
    for r in rows:
        values = [float(v) for v in (c.strip(" |") for c in r[2:]) if v != "-"]
        assert len(values) >= 4 and all(np.isfinite(values))
    # the real valve set has no target-domain normal: no shift figure; the real fan set has one
    assert rows[2][-1].strip(" |") == "-" and rows[0][-1].strip(" |") != "-"


def test_missing_real_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        rvs.main(["--real", str(tmp_path / "nowhere")])
    assert "nowhere: no such folder" in capsys.readouterr().err
