"""The experiment folder: the only channel between stages.

Layout (one folder per approach, machine type and seed, e.g. ``exp/<recipe>/<machine>/seed<k>/``)::

    config.yaml          resolved config (written once; a different config is refused)
    logs/<stage>.log     one log per stage
    manifest/            train.csv, test.csv: the clip lists of this machine type
    extractor/           checkpoint.pt (+ train_state.pt while training), train_log.csv
    embeddings/          clips.csv, embeddings.npy (rows aligned with clips.csv)
    detectors/<id>/      fitted detectors, one folder per detector id
    scores/<id>.csv      score tables (see hybrid_asd.scores); OE scores as scores/oe.csv
    fused/               fused.csv, weights.yaml
    submission/<id>/     official anomaly_score_*/decision_result_* files
    eval/                result tables
    .done/<stage>        completion markers holding the fingerprint of the config they used
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from hybrid_asd.config import dump_config, fingerprint, merge
from hybrid_asd.errors import StageError
from hybrid_asd.utils import atomic_write_text

log = logging.getLogger(__name__)

# Which config sections each stage depends on (for completion markers).
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "prepare": ("data",),
    "features": ("data", "features"),
    "train": ("data", "features", "extractor", "seed"),
    "extract": ("data", "features", "extractor", "seed"),
    "fit": ("data", "features", "extractor", "detectors", "seed"),
    "score": ("data", "features", "extractor", "detectors", "seed"),
    "fuse": ("data", "features", "extractor", "detectors", "ensemble", "seed"),
    "evaluate": ("data", "features", "extractor", "detectors", "ensemble", "evaluation", "seed"),
}


class Experiment:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # --- folders ---------------------------------------------------------------------------
    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest_dir(self) -> Path:
        return self.dir("manifest")

    @property
    def extractor_dir(self) -> Path:
        return self.dir("extractor")

    @property
    def embeddings_dir(self) -> Path:
        return self.dir("embeddings")

    @property
    def detectors_dir(self) -> Path:
        return self.dir("detectors")

    @property
    def scores_dir(self) -> Path:
        return self.dir("scores")

    @property
    def fused_dir(self) -> Path:
        return self.dir("fused")

    @property
    def submission_dir(self) -> Path:
        return self.dir("submission")

    @property
    def eval_dir(self) -> Path:
        return self.dir("eval")

    @property
    def logs_dir(self) -> Path:
        return self.dir("logs")

    # --- config ----------------------------------------------------------------------------
    def load_config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            raise StageError(f"{self.root}: no config.yaml; run an earlier stage (e.g. 'hybrid-asd prepare') first")
        return yaml.safe_load(self.config_path.read_text())

    def init(self, config: dict[str, Any], *, overwrite: bool = False) -> dict[str, Any]:
        """Save ``config`` as this experiment's resolved config.

        If a different config is already saved, refuse (naming the first differing key) unless
        ``overwrite``; stages whose inputs changed lose their completion markers then.
        """
        if self.config_path.is_file():
            old = self.load_config()
            if old != config:
                diff = first_difference(old, config)
                if not overwrite:
                    raise StageError(
                        f"{self.root} already holds a different config (first difference at {diff!r}); "
                        "use another experiment folder or pass --overwrite"
                    )
                log.warning("config changed at %r; invalidating affected stages", diff)
                for stage in STAGE_INPUTS:
                    if not self.stage_done(stage, config):
                        self.clear_stage(stage)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, dump_config(config))
        return config

    # --- stage markers ---------------------------------------------------------------------
    def _marker(self, stage: str) -> Path:
        return self.root / ".done" / stage

    def stage_fingerprint(self, stage: str, config: dict[str, Any]) -> str:
        keys = STAGE_INPUTS.get(stage, tuple(config))
        return fingerprint({k: config.get(k) for k in keys})

    def stage_done(self, stage: str, config: dict[str, Any]) -> bool:
        marker = self._marker(stage)
        return marker.is_file() and marker.read_text().strip() == self.stage_fingerprint(stage, config)

    def mark_done(self, stage: str, config: dict[str, Any]) -> None:
        atomic_write_text(self._marker(stage), self.stage_fingerprint(stage, config) + "\n")

    def clear_stage(self, stage: str) -> None:
        marker = self._marker(stage)
        if marker.exists():
            marker.unlink()

    def require(self, path: Path, stage: str) -> Path:
        """Raise a StageError naming the stage that produces ``path`` when it is missing."""
        if not path.exists():
            raise StageError(f"{path} is missing: run the '{stage}' stage first")
        return path


def first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{prefix}{i}.")
    return prefix.rstrip(".") or "<root>"


__all__ = ["Experiment", "STAGE_INPUTS", "first_difference", "merge"]
