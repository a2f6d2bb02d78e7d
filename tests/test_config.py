"""The typed config: defaults, YAML, dotted overrides, every value and component name checked at
load time with one line naming the key, the shipped JSON Schema, experiment folder rules."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from hybrid_asd.config import Config, apply_override, config_schema, dump_config, fingerprint, load_config
from hybrid_asd.errors import ConfigError, StageError
from hybrid_asd.experiment import Experiment, first_difference

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "hybrid_asd" / "configs"
SHIPPED_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
SCHEMA_FILE = CONFIG_DIR / "config.schema.json"
PUBLISHED_CONFIGS = sorted((ROOT / "checkpoints").glob("*/config.yaml"))


def test_defaults_are_the_official_front_end():
    config = load_config()
    assert config.features.n_fft == 1024
    assert config.features.hop_length == 512
    assert config.features.n_mels == 128
    assert config.features.patch_frames == 64 and config.features.patch_hop == 8
    assert config.extractor.optimizer.lr == 1e-5 and config.extractor.epochs == 20


def test_override_sets_nested_and_list_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detectors:\n  - {name: knn, conf: {k: 1}}\n")
    config = load_config(path, ["detectors.0.conf.k=3", "extractor.epochs=2", "data.machine=fan",
                                "detectors.0.adaptation.n_splits=2"])
    entry = config.detectors[0]
    assert entry.conf == {"k": 3} and entry.id == "knn" and entry.adaptation.n_splits == 2
    assert config.extractor.epochs == 2 and config.data.machine == "fan"


def test_config_is_immutable():
    config = load_config()
    with pytest.raises(Exception, match="frozen"):
        config.seed = 3  # type: ignore[misc]


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
    with pytest.raises(ConfigError, match=r"bad\.yaml: config key 'features\.n_mel' does not exist; known keys here: "
                                          r"n_fft, hop_length, n_mels"):
        load_config(path)


def test_unknown_detector_entry_key_and_duplicate_ids(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detectors:\n  - {name: knn, inptu: embedding}\n")
    with pytest.raises(ConfigError, match=r"detectors\.0\.inptu"):
        load_config(path)
    path.write_text("detectors:\n  - {name: knn}\n  - {name: knn}\n")
    with pytest.raises(ConfigError, match=r"detectors\.1\.id = 'knn': duplicate detector id"):
        load_config(path)


def test_missing_config_file_and_bad_override_form(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_override(load_config().to_dict(), "extractor.epochs")


# Every bad value is caught when the config is loaded, before any stage runs, as one line that names
# the dotted key and the value and says what is allowed.
BAD_VALUES = [
    ("features.n_mels=abc", "features.n_mels = 'abc': must be a valid integer"),
    ("data.sample_rate=abc", "data.sample_rate = 'abc': must be a valid integer"),
    ("data.duration=abc", "data.duration = 'abc': must be a valid number"),
    ("seed=abc", "seed = 'abc': must be a valid integer"),
    ("seed=-1", "seed = -1: must be greater than or equal to 0"),
    ("device=tpu", "device = 'tpu': must be one of auto, cpu, cuda, cuda:N or mps"),
    ("evaluation.threshold_quantile=abc", "evaluation.threshold_quantile = 'abc': must be a valid number"),
    ("evaluation.threshold_quantile=1.5", "evaluation.threshold_quantile = 1.5: must be less than 1"),
    ("evaluation.max_fpr=0", "evaluation.max_fpr = 0: must be greater than 0"),
    ("extractor=abc", "extractor = 'abc': must be a mapping"),
    ("features.hop_length=0", "features.hop_length = 0: must be greater than 0"),
    ("features={fmin: 200.0, fmax: 100.0}", "features.fmax = 100.0: must be above fmin (200.0)"),
    ("extractor.epochs=2.5", "extractor.epochs = 2.5: must be a valid integer"),
    ("extractor.amp=maybe", "extractor.amp = 'maybe': must be a valid boolean"),
    ("detectors=[{name: knnx}]", "detectors.0.name = 'knnx': unknown detector 'knnx'; known: ae, flow, gmm, idnn, "
                                 "knn, mahalanobis"),
    ("detectors=[{name: knn, input: stats}]", "detectors.0.input = 'stats': must be 'embedding', 'logmel_stats' or "
                                              "'logmel_frames'"),
    ("detectors=[{name: knn, conf: {k: 0}}]", "detectors.0.conf = {'k': 0}: detector 'knn': k=0 is invalid"),
    ("detectors=[{name: knn, conf: {kk: 1}}]", "detectors.0.conf = {'kk': 1}: detector 'knn' conf: unknown key(s)"),
    ("detectors=[{name: knn, adaptation: {mode: min}}]", "detectors.0.adaptation.mode = 'min': must be 'none', "
                                                         "'pooled', 'domain_min' or 'mean_shift'"),
    ("detectors=[{name: knn, id: oe}]", "detectors.0.id = 'oe': 'oe' names another stage's score table"),
    ("ensemble.members=[knn]", "ensemble.members.0 = 'knn': is no score table of this config; known: oe"),
    ("ensemble.rule=mean", "ensemble.rule = 'mean': unknown fusion rule 'mean'; known: max, min, rank_mean, "
                           "weighted_sum"),
    ("ensemble.normalise=zscore", "ensemble.normalise = 'zscore': must be 'znorm' or 'none'"),
    ("ensemble.weights={oe: -1}", "ensemble.weights = {'oe': -1}: weight of oe is -1"),
    ("ensemble.weights={knn: 1}", "ensemble.weights.knn = 1.0: 'knn' is not fused; fused: oe"),
    ("evaluation.protocol=dcase2099", "evaluation.protocol = 'dcase2099': must be 'dcase2021', 'dcase2022' or 'dcase2025'"),
    ("extractor.head.name=arcfase", "extractor.head.name = 'arcfase': unknown head 'arcfase'; known: adacos, arcface, softmax, "
                                    "subcluster_adacos"),
    ("extractor.backbone.name=tiny_cnnn", "extractor.backbone.name = 'tiny_cnnn': unknown backbone 'tiny_cnnn'"),
    ("extractor.labels=machine", "extractor.labels = 'machine': must be 'section', 'section_domain', "
                                 "'section_attribute_domain' or 'section_attribute'"),
    ("extractor.optimizer.name=sgd", "extractor.optimizer.name = 'sgd': must be 'adam' or 'adamw'"),
    ("extractor.scheduler.name=linear", "extractor.scheduler.name = 'linear': must be 'none', 'cosine' or 'step'"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_values_are_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    text = str(info.value)
    assert text.startswith(f"--set: {message}"), text  # where the value came from, then the key
    assert "\n" not in text


def test_embedding_input_needs_an_extractor():
    with pytest.raises(ConfigError, match=r"detectors\.0\.input = 'embedding': needs an extractor"):
        load_config(None, ["extractor=null", "detectors=[{name: knn}]"])
    config = load_config(None, ["extractor=null", "detectors=[{name: knn, input: logmel_stats}]",
                                "ensemble.members=[knn]"])
    assert config.score_tables == ["knn"]


def test_yaml_values_are_validated_with_the_file_named(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("ensemble:\n  members: [oe, knnn]\ndetectors:\n  - {name: knn}\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: ensemble\.members\.1 = 'knnn': is no score table of this "
                                          r"config; known: oe, knn"):
        load_config(path)


def test_float_fields_take_ints_and_yaml_exponents_but_no_booleans():
    config = load_config(None, ["extractor.optimizer.lr=1e-3", "evaluation.max_fpr=1"])
    assert config.extractor.optimizer.lr == 0.001 and config.evaluation.max_fpr == 1.0
    with pytest.raises(ConfigError, match="expected a number, not a boolean"):
        load_config(None, ["evaluation.max_fpr=true"])


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_validates_at_load_and_against_the_schema(path):
    config = load_config(path)
    assert config.name == path.stem
    jsonschema.validate(yaml.safe_load(path.read_text()), json.loads(SCHEMA_FILE.read_text()))
    # the resolved config (as saved beside the outputs) validates too, and loads back unchanged
    jsonschema.validate(config.to_dict(), json.loads(SCHEMA_FILE.read_text()))
    assert Config.parse(yaml.safe_load(dump_config(config))) == config


def test_shipped_schema_is_the_current_one():
    assert json.loads(SCHEMA_FILE.read_text()) == config_schema(), \
        "regenerate it: hybrid-asd schema --out hybrid_asd/configs/config.schema.json"


def test_schema_rejects_what_load_rejects():
    schema = json.loads(SCHEMA_FILE.read_text())
    for bad in ({"features": {"n_mels": "abc"}}, {"detectors": [{"name": "knnx"}]}, {"evaluation": {"protocol": "x"}},
                {"ensemble": {"rule": "mean"}}, {"device": "tpu"}, {"features": {"n_mel": 64}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


@pytest.mark.parametrize("path", PUBLISHED_CONFIGS, ids=lambda p: p.parent.name)
def test_published_checkpoint_configs_still_load(path):
    config = load_config(path)
    assert config.extractor is not None and config.data.machine


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


def test_saved_config_is_validated_when_read(tmp_path):
    exp = Experiment(tmp_path / "exp")
    exp.init(load_config())
    exp.config_path.write_text(exp.config_path.read_text().replace("n_mels: 128", "n_mels: many"))
    with pytest.raises(ConfigError, match=r"config\.yaml: features\.n_mels = 'many'"):
        exp.load_config()


def test_reading_paths_creates_nothing(tmp_path):
    exp = Experiment(tmp_path / "exp")
    paths = [exp.config_path, exp.extractor.checkpoint, exp.embeddings_path, exp.detector_dir("knn"),
             exp.score_table_path("knn"), exp.submission_dir("knn"), exp.fusion.fused, exp.result_path("fused"),
             exp.report_dir, exp.marker_path("fit"), exp.manifest_path("train")]
    assert all(isinstance(p, Path) for p in paths) and exp.score_table_paths() == {}
    assert not (tmp_path / "exp").exists()


def test_fingerprint_and_first_difference():
    a = load_config().to_dict()
    b = load_config(None, ["evaluation.max_fpr=0.2"]).to_dict()
    assert fingerprint(a) != fingerprint(b) and fingerprint(a) == fingerprint(load_config().to_dict())
    assert first_difference(a, b) == "evaluation.max_fpr"
    assert "features:" in dump_config(load_config())
