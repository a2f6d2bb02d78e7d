"""Running stages of the table (:mod:`hybrid_asd.stages`) on an experiment folder.

One place decides whether a stage runs: :func:`run_stage` skips a stage whose completion marker
matches the config (unless forced), resolves the device for stages that take one, runs the stage's
function and marks it done. The CLI's stage subcommands, ``run`` and the demo all go through it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from hybrid_asd.config import Config, load_config
from hybrid_asd.data.stage import find_clips
from hybrid_asd.experiment import Experiment
from hybrid_asd.stages import Stage, get_stage, stages_between
from hybrid_asd.utils import is_main_process, remove_stale_temp_files, resolve_device, seed_everything

log = logging.getLogger(__name__)


def make_config(
    config_path: str | Path | None,
    overrides: Iterable[str] = (),
    *,
    data_root: str | Path | None = None,
    machine: str | None = None,
    seed: int | None = None,
    device: str | None = None,
    mimii_test_normals: int | None = None,
) -> Config:
    """Resolve an approach config with the common command-line options folded in (as overrides,
    so they are validated like any other value)."""
    extra = list(overrides)
    if data_root is not None:
        extra.append(f"data.root={Path(data_root).resolve()}")
    if machine is not None:
        extra.append(f"data.machine={machine}")
    if seed is not None:
        extra.append(f"seed={seed}")
    if device is not None:
        extra.append(f"device={device}")
    if mimii_test_normals is not None:
        extra.append(f"data.mimii_test_normals={mimii_test_normals}")
    return load_config(config_path, extra)


def run_stage(
    exp: Experiment,
    config: Config,
    stage: Stage | str,
    *,
    device: str | None = None,
    progress: bool = True,
    force: bool = False,
) -> Any:
    """Run one stage unless it completed with the same config (``force`` reruns it).

    ``device`` (default: the config's) is resolved only for stages that take one. Returns what
    the stage's function returns (None when skipped).
    """
    stage = get_stage(stage) if isinstance(stage, str) else stage
    if not force and exp.stage_done(stage.name, config):
        log.info("stage %s already complete; skipping", stage.name)
        return None
    exp.clear_stage(stage.name)
    remove_stale_temp_files(exp.root)
    kwargs: dict[str, Any] = {"progress": progress}
    if stage.takes_device:
        kwargs["device"] = resolve_device(device or config.device)
    log.info("=== stage %s (%s)", stage.name, exp.root)
    result = stage.function()(exp, config, **kwargs)
    if is_main_process():  # under torchrun, rank 0 alone has written everything when it returns
        exp.mark_done(stage.name, config)
    return result


def run_stages(
    exp: Experiment,
    config: Config,
    *,
    stage: str = "prepare",
    stop_stage: str = "evaluate",
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> Any:
    """Save the config into ``exp`` and run stages ``stage``..``stop_stage`` in order.

    A stage that completed with the same config is skipped, except ``stage`` itself, which is
    rerun (as the recipes' ``--stage N``). Returns the last stage's result (the ``evaluate``
    stage's: result tables by score-table id).
    """
    chosen = stages_between(stage, stop_stage)
    seed_everything(config.seed)
    if chosen[0].name == "prepare":
        check_data(config)  # before the config is saved: fixing a wrong data root needs no --overwrite
    exp.init(config, overwrite=overwrite)
    result = None
    for i, current in enumerate(chosen):
        result = run_stage(exp, config, current, device=device, progress=progress, force=i == 0)
    return result


def check_data(config: Config) -> None:
    """Fail, before anything is saved, when ``data`` names no usable training clips."""
    find_clips(config, report=False)


__all__ = ["check_data", "make_config", "run_stage", "run_stages"]
