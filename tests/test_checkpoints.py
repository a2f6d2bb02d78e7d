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


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_published_checkpoint_reproduces_the_reference_numbers_of_its_card(folder, shared_data):
    """The card's numbers of the checkpoint itself, on real clips that never change, are reproduced
    (independent of the synthetic generator that made its training data)."""
    from hybrid_asd.checkpoints import read_reference_scores, reference_scores
    from hybrid_asd.config import load_config

    assert (folder / "reference_scores.csv").is_file(), f"{folder} lacks reference_scores.csv (publish --reference-clips)"
    recorded = read_reference_scores(folder)
    card = (folder / "MODEL_CARD.md").read_text()
    root = shared_data / "dcase2023t2-samples" / "dev_data" / "raw"
    computed = reference_scores(folder, root, load_config(folder / "config.yaml"))
    assert [c for c, _, _ in computed] == [c for c, _, _ in recorded] and recorded
    for (clip, score, dims), (_, want_score, want_dims) in zip(computed, recorded):
        assert score == pytest.approx(want_score, rel=1e-5, abs=1e-6), clip
        np.testing.assert_allclose(dims, want_dims, rtol=1e-5, atol=1e-6)
        assert f"| `{clip}` | {want_score:.6f} |" in card


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_card_says_how_to_use_the_checkpoint_and_stores_no_absolute_paths(folder):
    from hybrid_asd.checkpoints import read_checkpoint
    from hybrid_asd.config import load_config

    card = (folder / "MODEL_CARD.md").read_text()
    name = folder.name
    assert "## Use" in card and f"hybrid-asd prepare --exp exp/{name} --config checkpoints/{name}/config.yaml" in card
    assert f"cp checkpoints/{name}/checkpoint.pt" in card and "hybrid-asd run --exp" in card
    reproduce = card.split("## Reproduce", 1)[1]
    assert f"--config checkpoints/{name}/config.yaml" in reproduce  # the published config itself
    assert load_config(folder / "config.yaml").data.root is None
    val_paths = read_checkpoint(folder / "checkpoint.pt")["meta"]["val_paths"]
    assert val_paths and not any(Path(p).is_absolute() for p in val_paths)
    for text in (card, (folder / "meta.json").read_text(), (folder / "config.yaml").read_text()):
        assert "/work/" not in text and "/home/" not in text
