"""Where a trained network puts a section's few target training clips, against the unseen target clips.

A serial hybrid adapts to the target domain through the few target training clips it keeps in the kNN's
target memory (``adaptation: domain_min``). That only works if the network embeds those clips where the
unseen target clips of their section fall. For each experiment folder with embeddings (the ``extract``
stage's ``embeddings/clips.csv`` and ``embeddings.npy``), per section, with cosine distances:

- ``target spread``: mean pairwise distance of the target training clips;
- ``to target train`` / ``to source train``: from the centroid of the normal target *test* clips to the
  centroid of the target training clips and to that of the source training clips;
- ``nearest is target``: the share of normal target test clips whose nearest training clip is a target
  clip, i.e. how often the target memory holds the kNN's nearest neighbour;
- ``fault shift (source)``: how far faults move a clip, for scale: the median distance of the anomalous source
  test clips to their nearest source training clip over that of the normal ones (1: faults do not move clips
  at all; n/a without source test clips of both kinds). On generator 2.1.0's seed-0 runs it is about 2.4 on
  fan, valve and ToyCar and 1.2 on gearbox, pump, slider and ToyTrain (docs/synthetic.md).

    python benchmarks/target_memory.py exp/demo/exp/demo_hybrid/*/seed0 [--out exp/target_memory.md]

Numbers and reading: docs/results.md, *Section labels*.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybrid_asd.data.clips import Clip, read_clip_list  # noqa: E402
from hybrid_asd.errors import DataError  # noqa: E402
from hybrid_asd.experiment import Experiment  # noqa: E402
from hybrid_asd.utils import atomic_write_text, load_npy  # noqa: E402

COLUMNS = ("target spread", "to target train", "to source train", "nearest is target", "fault shift (source)")


def load(exp: Path) -> tuple[list[Clip], np.ndarray]:
    """The experiment's clips and their unit-length embeddings; a clear error when extract has not run."""
    clips_csv, npy = Experiment(exp).embedding_clips_path, Experiment(exp).embeddings_path
    for path in (clips_csv, npy):
        if not path.is_file():
            raise DataError(f"{path}: missing; run the 'extract' stage of {exp} first")
    clips = read_clip_list(clips_csv)
    emb = load_npy(npy, "rerun 'extract'").astype(np.float64)
    if emb.ndim != 2 or len(emb) != len(clips):
        raise DataError(f"{npy}: shape {emb.shape} for {len(clips)} clips in {clips_csv}; rerun 'extract'")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return clips, emb / np.where(norms > 0, norms, 1.0)


def _centroid(x: np.ndarray) -> np.ndarray:
    c = x.mean(axis=0)
    return c / max(np.linalg.norm(c), 1e-12)


def nearest_distance(x: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """Cosine distance of each row of ``x`` to its nearest row of ``memory`` (both unit length)."""
    return (1.0 - x @ memory.T).min(axis=1)


def fault_shift(normal: np.ndarray, anomalous: np.ndarray, memory: np.ndarray) -> float:
    """Median nearest-neighbour distance of the anomalous clips over that of the normal ones (NaN if undefined)."""
    if not (len(normal) and len(anomalous)):
        return float("nan")
    base = float(np.median(nearest_distance(normal, memory)))
    return float(np.median(nearest_distance(anomalous, memory))) / base if base > 0 else float("nan")


def section_summary(clips: list[Clip], emb: np.ndarray) -> dict[int, dict[str, float]]:
    """Per section: the figures of the module docstring (sections without target clips are left out)."""
    section_of, split, domain, label = (np.array([getattr(c, key) for c in clips])
                                        for key in ("section", "split", "domain", "label"))
    out = {}
    for section in sorted(set(section_of.tolist())):
        def rows(split_: str, domain_: str, label_: str | None = None, _s: int = section) -> np.ndarray:
            mask = (section_of == _s) & (split == split_) & (domain == domain_)
            return emb[mask if label_ is None else mask & (label == label_)]
        source, target = rows("train", "source"), rows("train", "target")
        unseen = rows("test", "target", "normal")
        if not (len(source) and len(target) and len(unseen)):
            continue
        pairs = 1.0 - target @ target.T
        spread = float(pairs[np.triu_indices(len(target), 1)].mean()) if len(target) > 1 else 0.0
        centre = _centroid(unseen)
        nearest_target = nearest_distance(unseen, target) < nearest_distance(unseen, source)
        out[section] = {"target spread": spread,
                        "to target train": float(1.0 - centre @ _centroid(target)),
                        "to source train": float(1.0 - centre @ _centroid(source)),
                        "nearest is target": float(nearest_target.mean()),
                        "fault shift (source)": fault_shift(rows("test", "source", "normal"),
                                                            rows("test", "source", "anomaly"), source)}
    return out


def format_table(summaries: dict[str, dict[int, dict[str, float]]]) -> str:
    lines = ["| experiment | section | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for name, per_section in summaries.items():
        for section, figures in per_section.items():
            cells = ("n/a" if np.isnan(figures[k]) else f"{figures[k]:.3f}" for k in COLUMNS)
            lines.append(f"| {name} | {section:02d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("experiments", type=Path, nargs="+", help="experiment folders with embeddings/")
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    summaries = {}
    for exp in args.experiments:
        clips, emb = load(exp)
        summaries[f"{clips[0].machine} ({exp})" if clips else str(exp)] = section_summary(clips, emb)
    table = format_table(summaries)
    if args.out:
        atomic_write_text(args.out, table)
    print(table, end="")
    return table


if __name__ == "__main__":
    main()
