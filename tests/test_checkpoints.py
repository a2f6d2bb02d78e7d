"""Shipped checkpoints load offline (weights_only) and score the real clips in ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybrid_asd.data.names import parse_clip_path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "checkpoints").iterdir() if (p / "checkpoint.pt").is_file())


def test_at_least_one_checkpoint_is_shipped_with_its_card():
    assert SHIPPED, "checkpoints/ holds no published checkpoint"
    for folder in SHIPPED:
        for name in ("config.yaml", "meta.json", "MODEL_CARD.md"):
            assert (folder / name).is_file(), f"{folder} lacks {name}"
        assert (folder / "checkpoint.pt").stat().st_size < 20 * 2**20


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_checkpoint_scores_real_clips(folder, shared_data):
    from hybrid_asd.checkpoints import load_published
    from hybrid_asd.config import load_config
    from hybrid_asd.extractor.embed import extract
    from hybrid_asd.features.cache import FeatureCache

    model, ckpt = load_published(folder)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["sections"] == ckpt["meta"]["sections"]
    machines = {s.split("/")[0] for s in meta["sections"]}
    raw = shared_data / "dcase2023t2-samples" / "dev_data" / "raw"
    clips = [parse_clip_path(p) for m in sorted(machines) for p in sorted((raw / m).glob("*/*.wav"))]
    clips = [c for c in clips if f"{c.machine}/{c.section_name}" in meta["sections"]]
    if not clips:
        pytest.skip(f"no real clips of {sorted(machines)} section 00 in {raw}")
    config = load_config(folder / "config.yaml")  # the published config validates as it is
    cache = FeatureCache(config.features, config.data)
    emb, oe = extract(folder / "checkpoint.pt", clips, cache, device="cpu", progress=False)
    assert emb.shape == (len(clips), config.extractor.embedding_dim)
    assert np.isfinite(emb).all() and np.isfinite(oe).all()
    again, oe_again = extract(folder / "checkpoint.pt", clips, cache, device="cpu", progress=False)
    np.testing.assert_array_equal(emb, again)
    np.testing.assert_array_equal(oe, oe_again)
    # Real recordings differ from the synthetic training data: they must not all look alike.
    assert np.ptp(oe) > 0
