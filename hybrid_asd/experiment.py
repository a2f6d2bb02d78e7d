"""The experiment folder: the only channel between stages, and the only code that knows its layout.

Layout (one folder per approach, machine type and seed, ``exp/<approach>/<machine>/seed<k>/``)::

    config.yaml          resolved config (written once; a different config is refused)
    logs/<stage>.log     one log per stage (written by the recipes)
    logs/commands.txt    the command line that completed each stage (appended by mark_done)
    manifest/            train.csv, test.csv: the clip lists of this machine type; supplemental.csv:
                         its DCASE 2025+ supplemental clips (when the data root has any);
                         adapted.csv: normal clips added by 'adapt' (kept in train.csv by 'prepare')
    extractor/           checkpoint.pt (+ train_state.pt while training), train_log.csv
    embeddings/          clips.csv, embeddings.npy (rows aligned with clips.csv)
    detectors/<id>/      section_<nn>/ (or all/) fitted models, train_scores.csv (out-of-fold)
    scores/<id>.csv      score tables (see hybrid_asd.scores); OE scores as scores/oe.csv
    submission/<id>/     official anomaly_score_*/decision_result_* files of each score table
    thresholds/<id>.csv  the decision thresholds of those files (per machine, section, domain)
    fused/               fused.csv, weights.yaml, tuning.txt, submission/, thresholds.csv
    eval/result_<id>.csv official result tables
    report/              figures, manifest.json, report.html
    grid_cell.json       where/when ``hybrid-asd grid`` ran this folder as a cell (logs/grid.log: its log)
    .done/<stage>        completion markers holding the fingerprint of the config sections they used

Every path is an accessor here; reading one never creates anything (writers create the parent
folders of what they write, see :func:`hybrid_asd.utils.atomic_path`).
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hybrid_asd.config import Config, dump_config, fingerprint, read_yaml_mapping
from hybrid_asd.data.clips import Clip, read_clip_list, write_clip_list
from hybrid_asd.errors import HybridASDError, StageError
from hybrid_asd.stages import STAGES, fingerprint_keys, stages_after
from hybrid_asd.utils import atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractorFiles:
    """What training the extractor writes into its folder."""

    folder: Path
    checkpoint: Path
    train_state: Path  # resumable state while training; removed when the checkpoint is written
    train_log: Path

    @classmethod
    def in_folder(cls, folder: str | Path) -> "ExtractorFiles":
        folder = Path(folder)
        return cls(folder, folder / "checkpoint.pt", folder / "train_state.pt", folder / "train_log.csv")


@dataclass(frozen=True)
class FusionFiles:
    """What fusing score tables writes into its output folder (an experiment's ``fused/`` or any
    ``hybrid-asd fuse --out`` folder)."""

    folder: Path
    fused: Path  # the fused score table
    weights: Path  # ensemble: {rule, weights, ...}, a config fragment
    tuning: Path  # the tuning report (fuse --tune only)
    submission: Path  # official files of the fused scores
    thresholds: Path  # the decision thresholds of those files

    @classmethod
    def in_folder(cls, folder: str | Path) -> "FusionFiles":
        folder = Path(folder)
        return cls(folder, folder / "fused.csv", folder / "weights.yaml", folder / "tuning.txt", folder / "submission",
                   folder / "thresholds.csv")


@dataclass(frozen=True)
class GridFiles:
    """What ``hybrid-asd grid`` writes into ``<exp_root>/grid/`` (the cells' own folders are ordinary
    experiments ``<exp_root>/<approach>/<machine>/seed<k>/``)."""

    folder: Path
    spec: Path  # grid.yaml: the resolved grid (configs, machines, seeds, resources)
    results: Path  # results.csv: one row per cell
    summary: Path  # summary.md: mean +- std tables and the cross-approach fusions
    summary_json: Path  # summary.json: the same numbers, for plots and scripts
    figure: Path  # approaches.png: per-approach means with error bars (hybrid-asd report)

    @classmethod
    def in_folder(cls, folder: str | Path) -> "GridFiles":
        folder = Path(folder)
        return cls(folder, folder / "grid.yaml", folder / "results.csv", folder / "summary.md",
                   folder / "summary.json", folder / "approaches.png")

    @classmethod
    def of_exp_root(cls, exp_root: str | Path) -> "GridFiles":
        return cls.in_folder(Path(exp_root) / "grid")

    def fusion_dir(self, name: str, seed: int) -> Path:
        """A cross-approach fusion of one seed (a :class:`FusionFiles` folder plus ``members/``)."""
        return self.folder / "fusion" / name / f"seed{seed}"


class Experiment:
    """One experiment folder; see the module docstring for its layout."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def for_run(cls, exp_root: str | Path, approach: str, machine: str, seed: int) -> "Experiment":
        """The conventional folder ``<exp_root>/<approach>/<machine>/seed<seed>`` (as the recipes use)."""
        return cls(Path(exp_root) / approach / machine / f"seed{seed}")

    @classmethod
    def of_score_table(cls, path: str | Path) -> "Experiment | None":
        """The experiment a ``scores/<id>.csv`` file belongs to, or None for a score table elsewhere."""
        path = Path(path)
        return cls(path.parent.parent) if path.parent.name == "scores" else None

    def __repr__(self) -> str:
        return f"Experiment({str(self.root)!r})"

    # --- paths ---------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    def log_path(self, stage: str) -> Path:
        return self.root / "logs" / f"{stage}.log"

    @property
    def commands_path(self) -> Path:
        """``logs/commands.txt``: one line per completed stage, ``<UTC time>\t<stage>\t<command line>``."""
        return self.root / "logs" / "commands.txt"

    def manifest_path(self, split: str) -> Path:
        """``manifest/train.csv``, ``manifest/test.csv`` or ``manifest/supplemental.csv``."""
        if split not in ("train", "test", "supplemental"):
            raise ValueError(f"split must be 'train', 'test' or 'supplemental', got {split!r}")
        return self.root / "manifest" / f"{split}.csv"

    @property
    def adapted_manifest_path(self) -> Path:
        """``manifest/adapted.csv``: the clips that ``adapt`` added to the training clips."""
        return self.root / "manifest" / "adapted.csv"

    @property
    def extractor(self) -> ExtractorFiles:
        return ExtractorFiles.in_folder(self.root / "extractor")

    @property
    def embedding_clips_path(self) -> Path:
        return self.root / "embeddings" / "clips.csv"

    @property
    def embeddings_path(self) -> Path:
        return self.root / "embeddings" / "embeddings.npy"

    def detector_dir(self, detector_id: str) -> Path:
        return self.root / "detectors" / detector_id

    def detector_model_dir(self, detector_id: str, group: str) -> Path:
        """A fitted model of one group (``section_<nn>``, or ``all`` for one model of every section)."""
        return self.detector_dir(detector_id) / group

    def detector_train_scores_path(self, detector_id: str) -> Path:
        return self.detector_dir(detector_id) / "train_scores.csv"

    def score_table_path(self, table_id: str) -> Path:
        return self.root / "scores" / f"{table_id}.csv"

    def score_table_paths(self) -> dict[str, Path]:
        """Every score table present, by id (sorted)."""
        folder = self.root / "scores"
        return {p.stem: p for p in sorted(folder.glob("*.csv"))} if folder.is_dir() else {}

    def submission_dir(self, table_id: str) -> Path:
        return self.root / "submission" / table_id

    def thresholds_path(self, table_id: str) -> Path:
        """The decision thresholds of a score table's official files (``fused``: the fused table's)."""
        if table_id == "fused":
            return self.fusion.thresholds
        return self.root / "thresholds" / f"{table_id}.csv"

    @property
    def fusion(self) -> FusionFiles:
        return FusionFiles.in_folder(self.root / "fused")

    def result_path(self, table_id: str) -> Path:
        """The official result table of one score table (``fused`` for the fused one)."""
        return self.root / "eval" / f"result_{table_id}.csv"

    def result_paths(self) -> dict[str, Path]:
        """Every official result table present, by score-table id (sorted)."""
        folder = self.root / "eval"
        found = sorted(folder.glob("result_*.csv")) if folder.is_dir() else []
        return {p.stem.removeprefix("result_"): p for p in found}

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def marker_path(self, stage: str) -> Path:
        return self.root / ".done" / stage

    @property
    def grid_record_path(self) -> Path:
        """``grid_cell.json``: the state of this folder as a ``hybrid-asd grid`` cell (where and when it
        ran, attempts, wall time, device); its log is ``log_path("grid")``."""
        return self.root / "grid_cell.json"

    def require(self, path: Path, stage: str) -> Path:
        """``path``, or a StageError naming the stage that produces it when it is missing."""
        if not path.exists():
            raise StageError(f"{path} is missing: run the '{stage}' stage first")
        return path

    # --- clip lists --------------------------------------------------------------------------------
    def write_clips(self, split: str, clips: list[Clip]) -> None:
        write_clip_list(self.manifest_path(split), clips)

    def train_clips(self) -> list[Clip]:
        """The machine type's normal training clips (the 'prepare' stage's list)."""
        return read_clip_list(self.require(self.manifest_path("train"), "prepare"))

    def test_clips(self) -> list[Clip]:
        """The test clips; empty when the data root has none."""
        path = self.manifest_path("test")
        return read_clip_list(path) if path.is_file() else []

    def supplemental_clips(self) -> list[Clip]:
        """The machine type's supplemental clips (DCASE 2025+); empty when there are none."""
        path = self.manifest_path("supplemental")
        return read_clip_list(path) if path.is_file() else []

    def adapted_clips(self) -> list[Clip]:
        """Clips added by ``adapt`` (empty when none were)."""
        path = self.adapted_manifest_path
        return read_clip_list(path) if path.is_file() else []

    def clips_differ(self, split: str, clips: list[Clip]) -> bool:
        """Whether a saved clip list exists and differs from ``clips`` (False when none is saved)."""
        path = self.manifest_path(split)
        return path.is_file() and read_clip_list(path) != list(clips)

    # --- config ------------------------------------------------------------------------------------
    def load_config(self) -> Config:
        """The saved resolved config, validated (an old or hand-edited file gets the same checks)."""
        if not self.config_path.is_file():
            raise StageError(f"{self.root}: no config.yaml; run an earlier stage (e.g. 'hybrid-asd prepare') first")
        return Config.parse(read_yaml_mapping(self.config_path), source=str(self.config_path))

    def init(self, config: Config, *, overwrite: bool = False) -> Config:
        """Save ``config`` as this experiment's resolved config.

        If a different config is already saved, refuse (naming the first differing key) unless
        ``overwrite``; stages whose inputs changed lose their completion markers then. A saved config
        that lacks only keys added to the schema since (their defaults) is the same config; markers
        whose fingerprint the new keys change still send their stages back to work.
        """
        if self.config_path.is_file():
            old = with_current_defaults(read_yaml_mapping(self.config_path), str(self.config_path))
            new = config.to_dict()
            if old != new:
                diff = first_difference(old, new)
                if not overwrite:
                    raise StageError(
                        f"{self.root} already holds a different config (first difference at {diff!r}); "
                        "use another experiment folder or pass --overwrite"
                    )
                log.warning("config changed at %r; invalidating affected stages", diff)
                for stage in STAGES:
                    if not self.stage_done(stage.name, config):
                        self.clear_stage(stage.name)
        atomic_write_text(self.config_path, dump_config(config))
        return config

    # --- completion markers ------------------------------------------------------------------------
    def stage_fingerprint(self, stage: str, config: Config) -> str:
        """Hash of the config keys that ``stage`` depends on (see :func:`hybrid_asd.stages.fingerprint_keys`)."""
        return fingerprint(config.sections(fingerprint_keys(stage)))

    def stage_done(self, stage: str, config: Config) -> bool:
        marker = self.marker_path(stage)
        return marker.is_file() and marker.read_text().strip() == self.stage_fingerprint(stage, config)

    def mark_done(self, stage: str, config: Config) -> None:
        atomic_write_text(self.marker_path(stage), self.stage_fingerprint(stage, config) + "\n")
        self.record_command(stage)

    def record_command(self, stage: str) -> None:
        """Append the command line that completed ``stage`` to :attr:`commands_path` (an append-only
        log, like the stage logs; the model card of ``hybrid-asd export`` quotes it)."""
        self.commands_path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with open(self.commands_path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp}\t{stage}\t{command_line()}\n")

    def clear_stage(self, stage: str) -> None:
        self.marker_path(stage).unlink(missing_ok=True)

    def clear_stages_after(self, stage: str) -> None:
        """Forget the completion of every stage after ``stage`` (their inputs were rewritten)."""
        for later in stages_after(stage):
            self.clear_stage(later.name)


def command_line(argv: list[str] | None = None) -> str:
    """The running command as a shell line; the CLI's own entry points appear as ``hybrid-asd``."""
    argv = list(sys.argv if argv is None else argv) or ["python"]
    program = argv[0].replace("\\", "/")
    if program.endswith(("hybrid_asd/cli.py", "hybrid_asd/__main__.py")) or Path(program).name == "hybrid-asd":
        argv[0] = "hybrid-asd"
    return shlex.join(argv)


def with_current_defaults(saved: dict[str, Any], source: str) -> dict[str, Any]:
    """A saved config as the current schema reads it (keys added since get their defaults); the
    saved mapping itself when it no longer validates (the difference is then reported as it is)."""
    try:
        return Config.parse(saved, source=source).to_dict()
    except HybridASDError:
        return saved


def first_difference(a: Any, b: Any, prefix: str = "") -> str:
    """The dotted key of the first difference between two config trees."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{prefix}{i}.")
    return prefix.rstrip(".") or "<root>"


__all__ = ["Experiment", "ExtractorFiles", "FusionFiles", "GridFiles", "command_line", "first_difference"]
