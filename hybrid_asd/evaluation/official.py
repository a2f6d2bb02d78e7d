"""Evaluate official submission folders against ground truth, as the DCASE evaluators do.

The official evaluators read every ``anomaly_score_*`` / ``decision_result_*`` file, sort its rows
by clip name and pair them with the ground truth by position. Here rows are paired by clip name,
and any mismatch (a missing or extra file, a missing or extra clip) is an error that names the
file, instead of a silently wrong pairing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from hybrid_asd.data.clips import Clip, read_clip_list
from hybrid_asd.data.ground_truth import read_ground_truth_dir
from hybrid_asd.errors import ConfigError, DataError, ScoreError
from hybrid_asd.evaluation.metrics import LabelledScores, Results, check_protocol, evaluate_labelled
from hybrid_asd.evaluation.submission import (
    Submission,
    decision_file_name,
    read_submission_dir,
    score_file_name,
)

log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # (machine, section, domain)
Labels = Mapping[Key, Mapping[str, int]]  # key -> {clip file name: 0 normal | 1 anomaly}


def labels_from_clips(clips: Iterable[Clip]) -> dict[Key, dict[str, int]]:
    """Ground-truth labels of the labelled test clips (label normal/anomaly) of a manifest."""
    labels: dict[Key, dict[str, int]] = {}
    for clip in clips:
        if clip.split != "test" or clip.label not in ("normal", "anomaly"):
            continue
        key = (clip.machine, clip.section, clip.domain)
        section = labels.setdefault(key, {})
        if clip.name in section:
            raise DataError(f"{key}: test clip name {clip.name} occurs twice ({clip.path})")
        section[clip.name] = int(clip.is_anomaly)
    if not labels:
        raise DataError("no labelled test clips (label normal/anomaly) among the clips")
    return labels


def _read_dirs(score_dirs: Sequence[Path]) -> Submission:
    if not score_dirs:
        raise ScoreError("no score folders given")
    sub = Submission()
    for folder in score_dirs:
        sub = sub.merge(read_submission_dir(folder))
    return sub


def _check_keys(kind: str, have: Mapping[Key, Path], labels: Labels, where: str) -> None:
    """Every labelled key has a file, and every file has labels; errors name the files."""
    name_of = score_file_name if kind == "score" else decision_file_name
    missing = sorted(set(labels) - set(have))
    if missing:
        names = ", ".join(name_of(*k) for k in missing[:5])
        raise ScoreError(f"{len(missing)} {kind} file(s) missing from {where}: {names}"
                         f"{' ...' if len(missing) > 5 else ''}")
    extra = sorted(set(have) - set(labels))
    if extra:
        names = ", ".join(str(have[k]) for k in extra[:5])
        raise ScoreError(f"{len(extra)} {kind} file(s) without ground truth: {names}"
                         f"{' ...' if len(extra) > 5 else ''}")


def _check_rows(path: Path, values: Mapping[str, object], truth: Mapping[str, int]) -> None:
    if values.keys() == truth.keys():
        return
    missing = sorted(set(truth) - set(values))
    extra = sorted(set(values) - set(truth))
    detail = []
    if missing:
        detail.append(f"{len(missing)} clip(s) missing, e.g. {missing[0]}")
    if extra:
        detail.append(f"{len(extra)} clip(s) not in the ground truth, e.g. {extra[0]}")
    raise ScoreError(f"{path}: {len(values)} rows but the ground truth lists {len(truth)} clips; "
                     + "; ".join(detail))


def evaluate_submission(score_dirs: Sequence[str | Path] | str | Path, labels: Labels,
                        protocol: str = "dcase2021", max_fpr: float = 0.1) -> Results:
    """Evaluate the official files of one or more folders against ``labels``.

    Decision files are optional as a whole: without any, precision/recall/F1 are None; with
    some, every labelled key needs one.
    """
    check_protocol(protocol, max_fpr)
    dirs = [Path(score_dirs)] if isinstance(score_dirs, (str, Path)) else [Path(d) for d in score_dirs]
    where = ", ".join(map(str, dirs))
    sub = _read_dirs(dirs)
    _check_keys("score", sub.score_files, labels, where)
    if sub.decisions:
        _check_keys("decision", sub.decision_files, labels, where)
    else:
        log.info("no decision_result files in %s: precision, recall and F1 are not computed", where)
    groups: dict[Key, LabelledScores] = {}
    for key, truth in labels.items():
        scores = sub.scores[key]
        _check_rows(sub.score_files[key], scores, truth)
        names = list(truth)
        decisions = None
        if sub.decisions:
            _check_rows(sub.decision_files[key], sub.decisions[key], truth)
            decisions = [sub.decisions[key][n] for n in names]
        groups[key] = LabelledScores.build(names, [truth[n] for n in names], [scores[n] for n in names], decisions)
    return evaluate_labelled(groups, protocol, max_fpr)


def evaluate_folder(score_dirs: Sequence[str | Path] | str | Path, ground_truth: str | Path | None = None,
                    clips: Iterable[Clip] | str | Path | None = None, protocol: str = "dcase2021",
                    out_csv: str | Path | None = None, max_fpr: float = 0.1,
                    machines: Sequence[str] | None = None) -> Results:
    """Evaluate submission folder(s) against a ground-truth folder *or* labelled clips.

    ``ground_truth``: a folder of official ``ground_truth_*.csv`` files. ``clips``: Clip records or
    the path of a clip-list CSV (a data root manifest). ``machines`` restricts the ground truth to
    those machine types (to evaluate a partial submission). ``out_csv`` receives the official table.
    """
    if (ground_truth is None) == (clips is None):
        raise ConfigError("give exactly one of ground_truth (a folder) or clips (labelled test clips)")
    if ground_truth is not None:
        labels: dict[Key, dict[str, int]] = read_ground_truth_dir(ground_truth)
    else:
        if isinstance(clips, (str, Path)):
            if not Path(clips).is_file():
                raise DataError(f"clip list not found: {clips}")
            clips = read_clip_list(clips)
        labels = labels_from_clips(clips)  # type: ignore[arg-type]
    if machines is not None:
        labels = {k: v for k, v in labels.items() if k[0] in set(machines)}
        if not labels:
            raise DataError(f"the ground truth has no sections of machine type(s) {list(machines)}")
    results = evaluate_submission(score_dirs, labels, protocol=protocol, max_fpr=max_fpr)
    if out_csv is not None:
        results.to_official_csv(out_csv)
    return results
