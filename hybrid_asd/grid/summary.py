"""The grid's results: ``results.csv`` (one row per cell) and ``summary.md`` / ``summary.json``.

Every mean +- std is over seeds: the mean and the sample standard deviation (``ddof=1``, the
spread a new trial would show; none with one seed) of the per-seed values. Tables:

* per approach, all machine types: the approach's system output (its ``fused`` scores) of every
  machine type evaluated together, so each seed's value is the official score as the challenge
  computes it (harmonic means over every machine type, section and domain); a seed counts only
  when all its machine types are done;
* per approach and machine type: the cells' own values (``results.csv``);
* per score table of each approach (OE, every detector, fused), all machine types: the rows of a
  results table such as docs/results.md's;
* per seed, each cross-approach fusion (``fuse --tune``: weights tuned on the development
  sections, with the leave-one-section-out estimate), then its mean +- std.

Cross-approach members are written under distinct names (``<approach>`` for a system output,
``<approach>.<table>`` for one score table) into ``grid/fusion/<name>/seed<k>/members/``, so two
approaches' ``oe`` tables never collide; the held-out validation clips of an OE table are passed
on as its z-normalisation references.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hybrid_asd.config import Config, fingerprint
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.errors import HybridASDError
from hybrid_asd.experiment import Experiment, GridFiles
from hybrid_asd.grid.cell import DONE, FAILED, METRICS, ROW_COLUMNS
from hybrid_asd.grid.spec import FusionSpec, GridSpec, PlannedCell, fusion_members, fusions
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

METRIC_TITLES = {"source_auc": "source AUC", "source_pauc": "source pAUC", "target_auc": "target AUC",
                 "target_pauc": "target pAUC", "official_score": "official score"}
TABLE_METRICS = ("source_auc", "source_pauc", "target_auc", "target_pauc", "official_score")


# --- arithmetic ---------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n) of the finite values; std is NaN for fewer than two, both NaN for none."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan, 0
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan, int(arr.size)


def format_stat(stat: tuple[float, float, int], n_expected: int | None = None) -> str:
    mean, std, n = stat
    if n == 0:
        return "-"
    text = f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"
    return text + (f" (n={n})" if n_expected is not None and n != n_expected else "")


def stats_of(per_seed: Mapping[int, Mapping[str, float]]) -> dict[str, tuple[float, float, int]]:
    """Per metric, mean +- std over the seeds' values."""
    return {m: mean_std([values.get(m, math.nan) for values in per_seed.values()]) for m in TABLE_METRICS}


# --- results.csv --------------------------------------------------------------------------------------
def write_results(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """One row per cell, columns :data:`~hybrid_asd.grid.cell.ROW_COLUMNS`; NaN as an empty cell."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=ROW_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k, "")) for k in ROW_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


def read_results(path: Path) -> list[dict[str, Any]]:
    """``results.csv`` back as rows (metrics and wall time as floats, NaN where empty)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["seed"] = int(row["seed"])
        for key in (*METRICS, "wall_s"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else math.nan
    return rows


# --- tables ---------------------------------------------------------------------------------------------
def machine_stats(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(approach, machine) -> metric stats over the seeds of its done cells."""
    groups: dict[tuple[str, str], dict[int, Mapping[str, float]]] = {}
    for row in rows:
        if row["status"] == DONE:
            groups.setdefault((row["approach"], row["machine"]), {})[int(row["seed"])] = row
    return {key: stats_of(per_seed) for key, per_seed in groups.items()}


def table_path(exp: Experiment, table: str) -> Path:
    return exp.fusion.fused if table == FUSED_NAME else exp.score_table_path(table)


def combined_table(exps: Sequence[Experiment], table: str, name: str) -> ScoreTable:
    """One score table of every machine type's experiment, concatenated."""
    return ScoreTable.concat([ScoreTable.from_csv(table_path(exp, table), name) for exp in exps], name)


def metrics_of(table: ScoreTable, config: Config) -> dict[str, float]:
    # Lazy: the evaluator loads scikit-learn and scipy (seconds).
    from hybrid_asd.evaluation.metrics import evaluate_scores

    if not any(c.split == "test" and c.label in ("normal", "anomaly") for c in table.clips):
        return {}
    res = evaluate_scores(table, protocol=config.evaluation.protocol, max_fpr=config.evaluation.max_fpr)
    out = {"official_score": res.official_score}
    for domain, values in res.by_domain().items():
        out[f"{domain}_auc"], out[f"{domain}_pauc"] = values["auc"], values["pauc"]
    return out


def complete_seeds(planned: Sequence[PlannedCell], rows: Sequence[Mapping[str, Any]],
                   approaches: Sequence[str]) -> dict[int, dict[str, list[PlannedCell]]]:
    """seed -> approach -> its cells (every machine type), for the approaches whose cells of that seed are all done."""
    done = {(r["approach"], r["machine"], int(r["seed"])) for r in rows if r["status"] == DONE}
    out: dict[int, dict[str, list[PlannedCell]]] = {}
    for p in planned:
        out.setdefault(p.cell.seed, {}).setdefault(p.cell.approach, []).append(p)
    for seed, by_approach in out.items():
        for name in list(by_approach):
            if name not in approaches or not all((c.cell.approach, c.cell.machine, seed) in done
                                                 for c in by_approach[name]):
                del by_approach[name]
    return out


def approach_table_stats(planned: Sequence[PlannedCell], rows: Sequence[Mapping[str, Any]]
                         ) -> dict[tuple[str, str], dict[str, Any]]:
    """(approach, score table) -> metric stats over seeds, every machine type's table evaluated together."""
    names = list(dict.fromkeys(p.cell.approach for p in planned))
    per_seed: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for seed, by_approach in complete_seeds(planned, rows, names).items():
        for name, cells in by_approach.items():
            config = cells[0].config
            for table in config.score_tables + [FUSED_NAME]:
                combined = combined_table([c.experiment for c in cells], table, table)
                per_seed.setdefault((name, table), {})[seed] = metrics_of(combined, config)
    return {key: stats_of(values) for key, values in per_seed.items()}


# --- cross-approach fusion ------------------------------------------------------------------------------
def member_name(approach: str, table: str) -> str:
    return approach if table == FUSED_NAME else f"{approach}.{table}"


def fuse_seed(fusion: FusionSpec, seed: int, cells: Mapping[str, Sequence[PlannedCell]], names: Sequence[str],
              files: GridFiles) -> dict[str, Any]:
    """One fusion of one seed: members over every machine type, tuned or not; returns its numbers.

    Reused from ``result.json`` in its folder when the member files and the fusion are unchanged
    (tuning with leave-one-section-out folds can take minutes), so a re-run grid redoes nothing."""
    folder = files.fusion_dir(fusion.name, seed)
    members = [(member_name(a, t), t, [c.experiment for c in cells[a]]) for a, t in fusion_members(fusion, names)]
    key = fingerprint({"fusion": fusion.to_dict(), "sources": [
        [str(p), p.stat().st_mtime_ns, p.stat().st_size] for _, t, exps in members for p in
        (table_path(exp, t) for exp in exps)]})
    cached = _read_json(folder / "result.json")
    if cached is not None and cached.get("key") == key:
        return cached["result"]
    first_approach = fusion_members(fusion, names)[0][0]
    result = run_member_fusion(fusion, members, folder, cells[first_approach][0].config)
    result["seed"] = seed
    atomic_write_json(folder / "result.json", {"key": key, "result": result})
    return result


def run_member_fusion(fusion: FusionSpec, members: Sequence[tuple[str, str, Sequence[Experiment]]], folder: Path,
                      config: Config) -> dict[str, Any]:
    """Write the members' tables under distinct names and fuse them (``run_fuse``) into ``folder``."""
    # Lazy: fusing and tuning load scikit-learn and scipy (seconds).
    from hybrid_asd.ensemble.stage import discover_references, run_fuse

    paths, references = [], {}
    for name, table, exps in members:
        path = folder / "members" / f"{name}.csv"
        combined_table(exps, table, name).to_csv(path)
        paths.append(path)
        if table != FUSED_NAME:  # e.g. the extractor's held-out validation clips of an OE table, as `fuse` finds them
            held_out = discover_references([exp.score_table_path(table) for exp in exps])
            if held_out:
                references[name] = set().union(*held_out.values())
    evaluation = config.evaluation
    result = run_fuse(paths, folder, rule=fusion.rule, tune=fusion.tune, references=references,
                      protocol=evaluation.protocol, max_fpr=evaluation.max_fpr,
                      thresholds_quantile=evaluation.threshold_quantile)
    out: dict[str, Any] = {"members": [p.stem for p in paths], "official_score": result["official_score"],
                           "folder": str(folder)}
    tuned = result.get("tune_result")
    if tuned is not None:
        out.update({"weights": {k: float(v) if not isinstance(v, Mapping) else {d: float(w) for d, w in v.items()}
                                for k, v in tuned.weights.items()},
                    "in_sample": tuned.score, "loso": tuned.loso_score, "equal_weights": tuned.equal_weight_score})
    return out


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fusion_results(spec: GridSpec, planned: Sequence[PlannedCell], rows: Sequence[Mapping[str, Any]],
                   files: GridFiles, echo: Callable[[str], None]) -> dict[str, list[dict[str, Any]]]:
    """Every fusion of the grid for every seed whose member cells are all done."""
    names = list(dict.fromkeys(p.cell.approach for p in planned))
    out: dict[str, list[dict[str, Any]]] = {}
    for fusion in fusions(spec, names):
        needed = list(dict.fromkeys(a for a, _ in fusion_members(fusion, names)))
        out[fusion.name] = []
        for seed, cells in sorted(complete_seeds(planned, rows, needed).items()):
            if not all(name in cells for name in needed):
                echo(f"fusion {fusion.name}, seed {seed}: skipped (member cells not all done)")
                continue
            try:
                result = fuse_seed(fusion, seed, cells, names, files)
            except HybridASDError as exc:  # e.g. no labelled sections to tune on (evaluation data)
                echo(f"fusion {fusion.name}, seed {seed}: not computed: {exc}")
                continue
            out[fusion.name].append(result)
            echo(f"fusion {fusion.name}, seed {seed}: " + ", ".join(
                f"{k} {result[k]:.4f}" for k in ("official_score", "loso") if result.get(k) is not None))
    return out


# --- summary.md -------------------------------------------------------------------------------------------
def write_summary(spec: GridSpec, planned: Sequence[PlannedCell], rows: Sequence[Mapping[str, Any]],
                  files: GridFiles, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Compute every table and the fusions, write ``summary.md`` and ``summary.json``; returns the json."""
    summary = {
        "seeds": list(spec.seeds),
        "machines": list(spec.machines),
        "approaches": list(dict.fromkeys(p.cell.approach for p in planned)),
        "cells": len(rows),
        "done": sum(r["status"] == DONE for r in rows),
        "failed": sum(r["status"] == FAILED for r in rows),
        "by_machine": _stat_entries(machine_stats(rows), ("approach", "machine")),
        "by_table": _stat_entries(approach_table_stats(planned, rows), ("approach", "table")),
    }
    summary["fusions"] = fusion_results(spec, planned, rows, files, echo)
    atomic_write_json(files.summary_json, summary)
    atomic_write_text(files.summary, format_summary(spec, summary, rows))
    return summary


def _stat_entries(stats: Mapping[tuple[str, str], Mapping[str, tuple[float, float, int]]],
                  names: tuple[str, str]) -> list[dict[str, Any]]:
    out = []
    for key, values in stats.items():
        entry: dict[str, Any] = dict(zip(names, key))
        for metric, (mean, std, n) in values.items():
            entry[metric] = {"mean": None if math.isnan(mean) else mean, "std": None if math.isnan(std) else std,
                             "n": n}
        out.append(entry)
    return out


def _stat(entry: Mapping[str, Any], metric: str) -> tuple[float, float, int]:
    value = entry[metric]
    return (math.nan if value["mean"] is None else value["mean"], math.nan if value["std"] is None else value["std"],
            value["n"])


def _table(head: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(line) + " |"
                                                                         for line in lines]


def format_summary(spec: GridSpec, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    n_seeds = len(spec.seeds)
    metric_head = [METRIC_TITLES[m] for m in TABLE_METRICS]
    out = [
        "# Grid summary", "",
        f"Approaches: {', '.join(summary['approaches'])}; machine types: {', '.join(spec.machines)}; seeds: "
        f"{', '.join(map(str, spec.seeds))}; data root `{spec.data_root}`. Cells: {summary['cells']}, done "
        f"{summary['done']}, failed {summary['failed']}.", "",
        "Every value is the mean ± sample standard deviation (ddof=1) over seeds; `(n=k)` marks a value over "
        "fewer seeds than the grid has (cells failed or missing).", "",
        "## Per approach, all machine types", "",
        "The approach's system output (its fused scores), every machine type evaluated together: the official "
        "score as the challenge computes it (harmonic mean over machine types, sections and domains).", "",
    ]
    fused = [e for e in summary["by_table"] if e["table"] == FUSED_NAME]
    out += _table(["approach", *metric_head],
                  [[e["approach"], *(format_stat(_stat(e, m), n_seeds) for m in TABLE_METRICS)] for e in fused])
    out += ["", "## Per approach and machine type", ""]
    out += _table(["approach", "machine type", *metric_head],
                  [[e["approach"], e["machine"], *(format_stat(_stat(e, m), n_seeds) for m in TABLE_METRICS)]
                   for e in summary["by_machine"]])
    out += ["", "## Every score table, all machine types", "",
            "Each score table of each approach (`oe`: the extractor's OE score; `fused`: the approach's "
            "system output), every machine type evaluated together.", ""]
    out += _table(["approach", "score table", *metric_head],
                  [[e["approach"], e["table"], *(format_stat(_stat(e, m), n_seeds) for m in TABLE_METRICS)]
                   for e in summary["by_table"]])
    for name, per_seed in summary["fusions"].items():
        out += ["", f"## Cross-approach fusion `{name}`", ""]
        if not per_seed:
            out.append("Not computed (no seed has all its member cells done).")
            continue
        out.append(f"Members: {', '.join(per_seed[0]['members'])} (every machine type). `hybrid-asd fuse --tune` "
                   "per seed: in-sample = the tuned weights' official score on the sections they were tuned on; "
                   "LOSO = leave-one-section-out estimate (weights tuned without the section they are scored on).")
        out.append("")
        tuned = "loso" in per_seed[0]
        head = ["seed", "weights", "in-sample", "LOSO", "equal weights"] if tuned else ["seed", "official score"]
        lines = []
        for r in per_seed:
            if tuned:
                lines.append([str(r["seed"]), _weights(r["weights"]), _num(r["in_sample"]), _num(r["loso"]),
                              _num(r["equal_weights"])])
            else:
                lines.append([str(r["seed"]), _num(r["official_score"])])
        if tuned:
            lines.append(["mean ± std", "", *(format_stat(mean_std([r[k] for r in per_seed]), n_seeds)
                                              for k in ("in_sample", "loso", "equal_weights"))])
        else:
            lines.append(["mean ± std", format_stat(mean_std([r["official_score"] for r in per_seed]), n_seeds)])
        out += _table(head, lines)
    failed = [r for r in rows if r["status"] == FAILED]
    if failed:
        out += ["", "## Failed cells", ""]
        out += [f"- {r['approach']}/{r['machine']}/seed{r['seed']}: {r['error']} (log: `{r['log']}`)" for r in failed]
    return "\n".join(out) + "\n"


def _num(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _weights(weights: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in weights.items())


__all__ = ["format_stat", "mean_std", "read_results", "write_results", "write_summary"]
