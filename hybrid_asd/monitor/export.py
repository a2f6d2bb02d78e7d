"""A portable system folder: what scoring new recordings needs, with relative paths only.

``hybrid-asd export --exp EXP [--exp EXP2 ... --weights W] --out DIR`` writes::

    DIR/
      system.json                      format, machine type, members, ensemble (rule, weights), the
                                       z-normalisation statistics of every member, the decision
                                       thresholds, the evaluation settings, versions, provenance
      MODEL_CARD.md                    what the system is, its evaluation table, the commands that made it
      evaluation.csv                   the official result table of the fused labelled test clips (if any)
      experiments/<label>/             one per experiment, in the experiment folder's own layout:
        config.yaml                    the resolved config
        extractor/checkpoint.pt        the extractor (only when a member needs it)
        detectors/<id>/<group>/        the fitted detectors of the members (JSON, .npy, FAISS, state_dict)
        scores/<id>.csv                the members' stored score tables (the train rows are the normal
                                       reference scores; ``rank_mean`` ranks new clips among all rows)
        logs/commands.txt              the commands that made it (when recorded)

``load_system(DIR)`` / ``predict --system DIR`` read it on any machine: the z-normalisation
statistics and thresholds come from ``system.json`` (exactly what the source experiments gave), the
models from the copied files; nothing is unpickled. The folder is built under a temporary name and
renamed into place, so an interrupted export leaves no half system.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from hybrid_asd.config import dump_config
from hybrid_asd.errors import StageError
from hybrid_asd.evaluation.metrics import evaluate_scores
from hybrid_asd.evaluation.thresholds import decisions_from_thresholds
from hybrid_asd.experiment import Experiment, command_line
from hybrid_asd.monitor.system import SYSTEM_FILE, SYSTEM_FORMAT, Source, System, load_system
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_json, atomic_write_text, package_versions

log = logging.getLogger(__name__)

EXPERIMENTS_DIR = "experiments"
MODEL_CARD = "MODEL_CARD.md"
EVALUATION_FILE = "evaluation.csv"


def export_system(source: str | Path | Sequence[str | Path], out: str | Path, *, weights: str | Path | None = None,
                  overwrite: bool = False, command: str | None = None) -> Path:
    """Write the portable system folder of ``source`` (experiment folders, as :func:`load_system`)
    into ``out``; returns ``out``. ``command``: the command line for the model card (default: this
    process's)."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not overwrite:
        raise StageError(f"{out} exists and is not empty; pass --overwrite to replace it")
    system = load_system(source, weights=weights, device="cpu")
    if any(s.exp.root.resolve() == out.resolve() for s in system.sources):
        raise StageError(f"{out}: export into a new folder, not into an experiment")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for src in system.sources:
            copy_experiment(src, system, tmp / EXPERIMENTS_DIR / src.label)
        fused = system.reference_fused()
        evaluation = evaluation_table(system, fused, tmp / EVALUATION_FILE)
        atomic_write_json(tmp / SYSTEM_FILE, system_spec(system))
        atomic_write_text(tmp / MODEL_CARD, model_card(system, evaluation, command or command_line()))
        loaded = System.from_folder(tmp, device="cpu").load()  # it must load before it replaces anything
        if loaded.thresholds != system.thresholds:  # pragma: no cover - JSON round-trips floats exactly
            raise StageError(f"{tmp}: thresholds changed on the way through {SYSTEM_FILE}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("exported the system of %s to %s", system.origin, out)
    return out


def copy_experiment(src: Source, system: System, dest: Path) -> None:
    """The parts of one experiment its members need, in the experiment layout."""
    exp, target = src.exp, Experiment(dest)
    atomic_write_text(target.config_path, dump_config(src.config))
    if src.needs_extractor:
        _copy_file(exp.require(exp.extractor.checkpoint, "train"), target.extractor.checkpoint)
    for entry in src.entries:
        groups = [f"section_{s:02d}" for s in system.sections] if entry.per_section else ["all"]
        for group in groups:
            model_dir = exp.require(exp.detector_model_dir(entry.id, group), "fit")
            shutil.copytree(model_dir, target.detector_model_dir(entry.id, group))
    for table_id in src.table_ids:
        _copy_file(exp.require(exp.score_table_path(table_id), "score"), target.score_table_path(table_id))
    if exp.commands_path.is_file():
        _copy_file(exp.commands_path, target.commands_path)


def _copy_file(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)


def system_spec(system: System) -> dict[str, Any]:
    """The contents of ``system.json``."""
    return {
        "format": SYSTEM_FORMAT,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": system.machine,
        "sections": system.sections,
        "experiments": [{"label": s.label, "folder": f"{EXPERIMENTS_DIR}/{s.label}", "exported_from": str(s.exp.root)}
                        for s in system.sources],
        "members": [{"name": m.name, "experiment": m.source.label, "table": m.table_id} for m in system.members],
        "ensemble": system.ensemble.to_dict(),
        "evaluation": system.evaluation.to_dict(),
        "znorm": {m.name: m.znorm.to_dict() for m in system.members if m.znorm is not None},
        "thresholds": [{"machine": k[0], "section": k[1], "domain": k[2], "threshold": v}
                       for k, v in sorted(system.thresholds.items())],
        "versions": {k: str(v) for k, v in package_versions().items()},
    }


def evaluation_table(system: System, fused: ScoreTable, path: Path) -> str | None:
    """The official result table of the fused labelled test clips (decisions at the system's
    thresholds), written to ``path``; None when the experiments have no labelled test clips."""
    if not any(c.split == "test" and c.label in ("normal", "anomaly") for c in fused.clips):
        return None
    ev = system.evaluation
    results = evaluate_scores(fused, protocol=ev.protocol, max_fpr=ev.max_fpr,
                              decisions=decisions_from_thresholds(fused, system.thresholds))
    results.to_official_csv(path)
    return path.read_text()


def model_card(system: System, evaluation: str | None, command: str) -> str:
    ens = system.ensemble
    lines = [
        f"# Anomalous sound detection system: {system.machine}",
        "",
        f"Exported from {system.origin} on {datetime.now(timezone.utc):%Y-%m-%d}. Score new recordings with",
        "",
        "```",
        "hybrid-asd predict --system <this folder> RECORDINGS... --out scores.csv",
        "```",
        "",
        "## What it is",
        f"- machine type `{system.machine}`, sections {', '.join(f'{s:02d}' for s in system.sections)}",
        f"- members: {', '.join(f'`{m}`' for m in system.member_names)}; fusion rule `{ens.rule}`, normalisation "
        f"`{ens.normalise}`{' per domain' if ens.per_domain else ''}, weights {dict(ens.weights) or 'equal'}",
        f"- decisions: score > the gamma {system.evaluation.threshold_quantile} quantile of the fused normal "
        "training scores, per section (and domain where it has 20 or more training clips; an unknown "
        "domain uses the section's pooled threshold)",
    ]
    for src in system.sources:
        cfg = src.config
        ext = cfg.extractor
        extractor = (f"extractor `{ext.backbone.name}` + `{ext.head.name}` ({ext.embedding_dim}-d, labels `{ext.labels}`)"
                     if ext is not None and src.needs_extractor else "no extractor")
        detectors = ", ".join(f"`{e.id}` ({e.name} on {e.input}, adaptation {e.adaptation.mode})" for e in src.entries)
        lines.append(f"- experiment `{src.label}` ({cfg.description or cfg.name}): {extractor}; "
                     f"detectors: {detectors or 'none'}; data {cfg.data.sample_rate} Hz, log-mel "
                     f"{cfg.features.n_mels} bands")
    lines += ["", "## Evaluation", ""]
    if evaluation is None:
        lines.append("Not evaluated: the experiments have no labelled test clips.")
    else:
        lines += [f"Official result table ({system.evaluation.protocol}) of the fused scores of the labelled test "
                  f"clips, as `{EVALUATION_FILE}`:", "", "```", evaluation.strip(), "```"]
    lines += ["", "## How it was made", ""]
    for src in system.sources:
        lines.append(f"Experiment `{src.label}` (`{src.exp.root}`):")
        lines += ["", "```", *recorded_commands(src.exp), "```", ""]
    lines += ["This folder:", "", "```", command, "```", ""]
    return "\n".join(lines)


def recorded_commands(exp: Experiment) -> list[str]:
    """The distinct commands of ``logs/commands.txt`` in order, each with the stages it completed."""
    if not exp.commands_path.is_file():
        return ["# not recorded (the experiment predates logs/commands.txt)"]
    stages: dict[str, list[str]] = {}
    for line in exp.commands_path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            stages.setdefault(parts[2], []).append(parts[1])
    return [f"{cmd}    # {', '.join(dict.fromkeys(done))}" for cmd, done in stages.items()] or ["# none recorded"]
