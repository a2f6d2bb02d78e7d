"""The members of a fusion: score-table files, their names, and their held-out train rows.

**Names.** A member is named by its table id (the file stem: ``knn``, ``oe``). Tables of one id
from experiments of *one* approach (e.g. one per machine type) are one member and are concatenated.
Where one id comes from experiments of *several* approaches (the OE tables of
``wilkinghoff2021_serial`` and ``lopez2021_parallel``) each approach's tables are their own member,
named ``<approach>/<id>`` (``wilkinghoff2021_serial/oe``); the approach is the experiment's config
``name``. Those names are used everywhere a member is named: ``--detectors``, weights files,
tuning reports and the fused table's ``weights.yaml``. Names are given on the whole set of tables
before any ``--detectors`` selection, so a selection never renames a member.

**Held-out train rows.** The train rows of a score table should be out-of-sample scores of normal
clips: z-normalisation statistics and decision thresholds are fitted on them. Inlier detectors
cross-fit them, but whatever the extractor computed from a clip it was trained on is in-sample: the
OE scores, and every detector on its embeddings (its kNN distances of training clips are short
because the network pulled those clips together). Only the extractor's validation clips
(checkpoint ``meta["val_paths"]``) are held out for those tables; :func:`discover_references` finds
them for every ``oe`` table and every table of a detector with ``input: embedding``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from hybrid_asd.config import OE_SCORES, read_yaml_mapping
from hybrid_asd.data.clips import clip_relpath
from hybrid_asd.errors import HybridASDError, ScoreError, StageError
from hybrid_asd.experiment import Experiment
from hybrid_asd.scores import ScoreTable

log = logging.getLogger(__name__)

QUALIFIER_SEPARATOR = "/"


def approach_of(path: str | Path) -> str | None:
    """The approach a score table belongs to: its experiment's config ``name``; None when unknown."""
    exp = Experiment.of_score_table(path)
    if exp is None or not exp.config_path.is_file():
        return None
    try:
        name = read_yaml_mapping(exp.config_path).get("name")
    except HybridASDError:
        return None
    return str(name) if name else None


def member_names(score_paths: Sequence[str | Path]) -> list[str]:
    """The member name of each score-table file (module docstring): its id, or ``<approach>/<id>``
    where that id comes from several approaches (a table of unknown approach, without an experiment
    config, then goes by its folder's name)."""
    ids = [Path(p).stem for p in score_paths]
    approaches = [approach_of(p) for p in score_paths]
    by_id: dict[str, set[str]] = {}
    for table_id, approach in zip(ids, approaches):
        if approach is not None:
            by_id.setdefault(table_id, set()).add(approach)
    names = []
    for path, table_id, approach in zip(map(Path, score_paths), ids, approaches):
        if len(by_id.get(table_id, ())) > 1:
            exp = Experiment.of_score_table(path)
            qualifier = approach or (exp.root if exp is not None else path.parent).name
            names.append(f"{qualifier}{QUALIFIER_SEPARATOR}{table_id}")
        else:
            names.append(table_id)
    return names


def read_score_tables(score_paths: Sequence[str | Path], names: Sequence[str] | None = None) -> list[ScoreTable]:
    """One table per member name (default :func:`member_names`), concatenating its files in order.

    Two files of one member that list the same clip are an error naming both files (e.g. two
    experiments of one approach and machine type, such as two seeds: fuse them under distinct
    config names)."""
    if not score_paths:
        raise ScoreError("no score tables given to fuse")
    names = list(names) if names is not None else member_names(score_paths)
    by_name: dict[str, list[ScoreTable]] = {}
    for path, name in zip(score_paths, names):
        by_name.setdefault(name, []).append(ScoreTable.from_csv(path, name))
    tables = []
    for name, parts in by_name.items():
        seen: dict[str, str] = {}
        for part in parts:
            for key in part.keys():
                if key in seen:
                    raise ScoreError(
                        f"member {name!r}: {part.source} and {seen[key]} both score clip {key}; score tables of one "
                        "detector id are concatenated per approach (config 'name'): give the experiments distinct "
                        "config names, or fuse them separately")
                seen[key] = part.source
        if len(parts) > 1:
            log.info("member %r: concatenated %d score tables (%s)", name, len(parts), ", ".join(p.source for p in parts))
        tables.append(ScoreTable.concat(parts, name))
    return tables


def uses_extractor(exp: Experiment, table_id: str) -> bool:
    """Whether the scores of ``table_id`` depend on the experiment's extractor (OE, embedding inputs)."""
    if table_id == OE_SCORES:
        return True
    if not exp.config_path.is_file():
        return False
    detectors = read_yaml_mapping(exp.config_path).get("detectors") or []
    return any(isinstance(d, dict) and (d.get("id") or d.get("name")) == table_id
               and d.get("input", "embedding") == "embedding" for d in detectors)


def validation_clips(exp: Experiment) -> list[str] | None:
    """The extractor's held-out validation clips as :func:`~hybrid_asd.data.clips.clip_relpath` paths,
    or None without a checkpoint."""
    ckpt = exp.extractor.checkpoint
    if not ckpt.is_file():
        return None
    # Lazy: the checkpoint module loads torch (seconds); only extractor-dependent tables need it.
    from hybrid_asd.extractor.checkpoint import read_checkpoint

    return [clip_relpath(p) for p in (read_checkpoint(ckpt).get("meta") or {}).get("val_paths") or []]


def discover_references(score_paths: Sequence[str | Path], names: Sequence[str] | None = None) -> dict[str, set[str]]:
    """Held-out train clips (paths as in the tables) per member name (module docstring).

    A table that depends on the extractor gets the extractor's validation clips among its train rows;
    a warning says when there are none (``val_fraction: 0``, no checkpoint, or a checkpoint trained on
    other clips), since its statistics and thresholds then come from in-sample scores."""
    names = list(names) if names is not None else member_names(score_paths)
    refs: dict[str, set[str]] = {}
    cache: dict[Path, list[str] | None] = {}
    for path, name in zip(map(Path, score_paths), names):
        exp = Experiment.of_score_table(path)
        if exp is None or not uses_extractor(exp, path.stem):
            continue
        if exp.root not in cache:
            cache[exp.root] = validation_clips(exp)
        val = cache[exp.root]
        if val is None:
            log.warning("%s: no extractor checkpoint at %s; its train rows (in-sample) are used as they are",
                        path, exp.extractor.checkpoint)
            continue
        wanted = set(val)
        train = [str(c.path) for c in ScoreTable.from_csv(path).clips if c.split == "train"]
        held = {p for p in train if clip_relpath(p) in wanted}
        if not held:
            log.warning("%s: none of the extractor's %d validation clip(s) is among its train rows (val_fraction "
                        "0, or a checkpoint trained on other clips); statistics and thresholds come from in-sample "
                        "scores", path, len(wanted))
            continue
        refs.setdefault(name, set()).update(held)
        log.info("%s: %d held-out validation clip(s) of %s give its normal-score statistics", path, len(held),
                 exp.extractor.checkpoint)
    return refs


def collect_score_tables(sources: Sequence[str | Path], detectors: Sequence[str] | None = None
                         ) -> tuple[list[Path], list[str]]:
    """Score-table CSVs from experiment folders (their ``scores/*.csv``), folders of CSVs, or CSV files,
    with their member names; ``detectors`` keeps the members named so, or every member of a plain id
    (``oe`` keeps ``a/oe`` and ``b/oe``)."""
    paths: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            tables = Experiment(src).score_table_paths()
            found = list(tables.values()) if tables else sorted(src.glob("*.csv"))
            if not found:
                raise StageError(f"{src}: no score tables (expected {Experiment(src).score_table_path('<id>')})")
            paths.extend(found)
        elif src.is_file():
            paths.append(src)
        else:
            raise StageError(f"score source not found: {src}")
    names = member_names(paths)
    if detectors:
        known = set(names) | {p.stem for p in paths}
        missing = [d for d in detectors if d not in known]
        if missing:
            raise StageError(f"detector(s) {missing} not found among score tables {sorted(set(names))}")
        keep = [i for i, (p, n) in enumerate(zip(paths, names)) if n in detectors or p.stem in detectors]
        paths, names = [paths[i] for i in keep], [names[i] for i in keep]
    return paths, names


def intersect_references(references: dict[str, set[str]], members: Sequence[str]) -> set[str] | None:
    """The clips held out for every member (a member without references holds out all its rows):
    the out-of-sample train rows of a fused table; None when no member has references."""
    sets = [references[m] for m in members if m in references]
    if not sets:
        return None
    out = set(sets[0])
    for other in sets[1:]:
        out &= other
    return out


__all__ = ["approach_of", "collect_score_tables", "discover_references", "intersect_references", "member_names",
           "read_score_tables", "uses_extractor", "validation_clips"]
