"""The stage table: the one list of pipeline stages that the CLI, ``run``, the completion markers and
the recipes (through ``hybrid-asd stages``) all read.

Each stage reads some config keys and the files of the stages before it, and writes files into
the experiment folder. Its completion marker fingerprints the keys it reads *and* those of every
earlier stage (their outputs are its inputs), so a changed key reruns exactly the stages from the
first one that reads it; e.g. ``evaluation.threshold_quantile`` (read by ``score`` for the
decision files) reruns ``score``, ``fuse`` and ``evaluate``.

Run functions are named as ``module:function`` and imported when a stage runs, so that building
the CLI's parser or listing the stages does not load torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from hybrid_asd.errors import StageError

# The top-level config keys a stage may read.
CONFIG_KEYS = ("data", "features", "extractor", "detectors", "ensemble", "evaluation", "seed")


@dataclass(frozen=True)
class Stage:
    number: int
    name: str
    reads: tuple[str, ...]  # config keys this stage reads itself
    takes_device: bool  # whether it computes on a device (CLI --device)
    run: str  # "module:function", called as function(exp, config, progress=..., [device=...])
    help: str
    aliases: tuple[str, ...] = ()  # older CLI names

    def function(self) -> Callable[..., Any]:
        module, name = self.run.split(":")
        return getattr(importlib.import_module(module), name)


STAGES: tuple[Stage, ...] = (
    Stage(1, "prepare", ("data",), False, "hybrid_asd.data.stage:run_prepare",
          "resolve the config and list the machine type's clips"),
    Stage(2, "features", ("data", "features"), False, "hybrid_asd.features.stage:run_features",
          "compute and cache log-mel features of every clip"),
    Stage(3, "train", ("data", "features", "extractor", "seed"), True, "hybrid_asd.extractor.stage:run_train",
          "train the section-identification feature extractor (resumable)"),
    Stage(4, "extract", ("data", "features", "extractor"), True, "hybrid_asd.extractor.stage:run_extract",
          "write embeddings and OE scores of every clip"),
    Stage(5, "fit", ("data", "features", "detectors", "seed"), True, "hybrid_asd.detectors.stage:run_fit",
          "fit the inlier-model detectors per section and domain"),
    Stage(6, "score", ("data", "features", "detectors", "evaluation"), True, "hybrid_asd.detectors.stage:run_score",
          "score test clips; write score tables and the official files of every score table"),
    Stage(7, "fuse", ("ensemble", "evaluation"), False, "hybrid_asd.ensemble.stage:run_fuse_stage",
          "fuse the experiment's score tables with its ensemble config", aliases=("fuse-exp",)),
    Stage(8, "evaluate", ("evaluation",), False, "hybrid_asd.evaluation.stage:run_evaluate",
          "official result table of every score table of the experiment", aliases=("eval-exp",)),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name_or_number: str | int) -> Stage:
    """A stage by name, old CLI alias or number (``"5"``, ``5``, ``"fit"``)."""
    key = str(name_or_number)
    for stage in STAGES:
        if key in (stage.name, str(stage.number), *stage.aliases):
            return stage
    raise StageError(f"unknown stage {key!r}; stages: {', '.join(f'{s.number} {s.name}' for s in STAGES)}")


def stage_name(name_or_number: str) -> str:
    """The stage name of a name, alias or number; anything else unchanged (for argparse ``choices``)."""
    try:
        return get_stage(name_or_number).name
    except StageError:
        return name_or_number


def fingerprint_keys(name: str) -> tuple[str, ...]:
    """The config keys a stage's marker fingerprints: what it and every earlier stage read."""
    stage = get_stage(name)
    keys = {key for s in STAGES if s.number <= stage.number for key in s.reads}
    return tuple(k for k in CONFIG_KEYS if k in keys)


def stages_between(first: str | int, last: str | int) -> tuple[Stage, ...]:
    start, stop = get_stage(first).number, get_stage(last).number
    return tuple(s for s in STAGES if start <= s.number <= stop)


def stages_after(name: str | int) -> tuple[Stage, ...]:
    number = get_stage(name).number
    return tuple(s for s in STAGES if s.number > number)


def format_table() -> str:
    """The table as ``hybrid-asd stages`` prints it."""
    rows = [("#", "stage", "device", "reads config", "what it does")]
    rows += [(str(s.number), s.name + "".join(f" ({a})" for a in s.aliases), "yes" if s.takes_device else "",
              ", ".join(s.reads), s.help) for s in STAGES]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows)


__all__ = ["CONFIG_KEYS", "STAGES", "STAGE_NAMES", "Stage", "fingerprint_keys", "format_table", "get_stage",
           "stage_name", "stages_after", "stages_between"]
