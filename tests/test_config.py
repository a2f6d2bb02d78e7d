"""Config resolution: defaults, YAML, dotted overrides, unknown keys, experiment folder rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_asd.config import apply_override, dump_config, fingerprint, load_config
from hybrid_asd.errors import ConfigError, StageError
from hybrid_asd.experiment import Experiment, first_difference

CONFIG_DIR = Path(__file__).resolve().parents[1] / "hybrid_asd" / "configs"


def test_defaults_are_the_official_front_end():
    config = load_config()
    assert config["features"]["n_fft"] == 1024
    assert config["features"]["hop_length"] == 512
    assert config["features"]["n_mels"] == 128
    assert config["features"]["patch_frames"] == 64 and config["features"]["patch_hop"] == 8
    assert config["extractor"]["optimizer"]["lr"] == 1e-5 and config["extractor"]["epochs"] == 20


def test_override_sets_nested_and_list_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detectors:\n  - {name: knn, conf: {k: 1}}\n")
    config = load_config(path, ["detectors.0.conf.k=3", "extractor.epochs=2", "data.machine=fan"])
    assert config["detectors"][0]["conf"]["k"] == 3
    assert config["detectors"][0]["id"] == "knn"
    assert config["extractor"]["epochs"] == 2
    assert config["data"]["machine"] == "fan"


@pytest.mark.parametrize(
    "override, key",
    [("data.sampel_rate=8000", "data.sampel_rate"), ("extractor.optimiser.lr=1", "extractor.optimiser"),
     ("nonsense=1", "nonsense")],
)
def test_unknown_override_key_is_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_unknown_yaml_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("features:\n  n_mel: 64\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*features\.n_mel"):
        load_config(path)


def test_unknown_detector_entry_key_and_duplicate_ids(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detectors:\n  - {name: knn, inptu: embedding}\n")
    with pytest.raises(ConfigError, match=r"detectors\.0\.inptu"):
        load_config(path)
    path.write_text("detectors:\n  - {name: knn}\n  - {name: knn}\n")
    with pytest.raises(ConfigError, match="duplicate detector id 'knn'"):
        load_config(path)


def test_missing_config_file_and_bad_override_form(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_override(load_config(), "extractor.epochs")


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_resolves_and_names_registered_components(path):
    from hybrid_asd.detectors.registry import DETECTORS
    from hybrid_asd.extractor.heads import HEADS

    config = load_config(path)
    assert config["name"] == path.stem
    for entry in config["detectors"]:
        assert entry["name"] in DETECTORS
    if config["extractor"] is not None:
        assert config["extractor"]["head"]["name"] in HEADS


def test_experiment_refuses_a_different_config(tmp_path):
    exp = Experiment(tmp_path / "exp")
    config = load_config(None, ["data.machine=fan"])
    exp.init(config)
    exp.mark_done("features", config)
    assert exp.stage_done("features", config)
    other = load_config(None, ["data.machine=fan", "features.n_mels=64"])
    with pytest.raises(StageError, match="features.n_mels"):
        exp.init(other)
    exp.init(other, overwrite=True)  # allowed, and invalidates the stages that depend on features
    assert not exp.stage_done("features", other)
    assert exp.load_config() == other


def test_fingerprint_and_first_difference():
    a = load_config()
    b = load_config(None, ["evaluation.max_fpr=0.2"])
    assert fingerprint(a) != fingerprint(b) and fingerprint(a) == fingerprint(load_config())
    assert first_difference(a, b) == "evaluation.max_fpr"
    assert "features:" in dump_config(a)
