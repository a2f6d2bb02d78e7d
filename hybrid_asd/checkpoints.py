"""Named, documented checkpoints (the ``checkpoints/`` folder of the project).

A published checkpoint is a folder::

    checkpoints/<name>/
        checkpoint.pt    the extractor weights {"model", "config", "meta"} (loads with weights_only=True)
        config.yaml      the experiment's full resolved config
        meta.json        versions, data fingerprint, seed, classes and sections (from the checkpoint)
        results.csv      the official result table of the experiment's fused scores (when evaluated)
        MODEL_CARD.md    data, metrics, command

``publish`` writes it from a trained experiment folder; ``load_published`` returns the model.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from hybrid_asd.config import Config, dump_config
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.errors import StageError
from hybrid_asd.experiment import Experiment
from hybrid_asd.extractor.checkpoint import load_checkpoint
from hybrid_asd.utils import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_DEST = Path("checkpoints")


def publish(exp_dir: str | Path, name: str, dest: str | Path = DEFAULT_DEST, command: str = "",
            overwrite: bool = False) -> Path:
    """Copy a trained experiment's extractor into ``dest/name`` with a model card."""
    exp = Experiment(exp_dir)
    config = exp.load_config()
    source = exp.require(exp.extractor.checkpoint, "train")
    _, ckpt = load_checkpoint(source, "cpu")  # validates the file before anything is copied
    out = Path(dest) / name
    if out.exists() and not overwrite:
        raise StageError(f"{out} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "checkpoint.pt") as tmp:
        shutil.copyfile(source, tmp)
    atomic_write_text(out / "config.yaml", dump_config(config))
    meta = {k: v for k, v in ckpt["meta"].items() if k != "val_paths"}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    result = exp.result_path(FUSED_NAME)
    if result.is_file():
        with atomic_path(out / "results.csv") as tmp:
            shutil.copyfile(result, tmp)
    atomic_write_text(out / "MODEL_CARD.md", model_card(name, config, meta, exp, command))
    log.info("published %s -> %s", exp.root, out)
    return out


def model_card(name: str, config: Config, meta: dict[str, Any], exp: Experiment, command: str) -> str:
    ext, features = config.extractor, config.features
    if ext is None:  # pragma: no cover - publish requires a checkpoint, which requires an extractor
        raise StageError(f"{exp.root}: the config has no extractor to publish")
    lines = [
        f"# {name}",
        "",
        f"Feature extractor of the approach `{config.name}` ({config.description}).",
        "",
        "## Model",
        f"- backbone `{ext.backbone.name}` {ext.backbone.conf or ''}, head `{ext.head.name}` "
        f"{ext.head.conf or ''}, embedding {ext.embedding_dim}-d, labels `{ext.labels}`",
        f"- input: log-mel {features.n_mels} bands (n_fft {features.n_fft}, hop "
        f"{features.hop_length}), {ext.input} of {features.patch_frames} frames",
        f"- trained {ext.epochs} epochs, {ext.optimizer.name} lr {ext.optimizer.lr}, "
        f"batch {ext.batch_size}, seed {meta.get('seed')}",
        "",
        "## Data",
        f"- machine type `{config.data.machine}`, sections {', '.join(meta.get('sections', []))}",
        f"- classes: {', '.join(meta.get('classes', []))}",
        f"- training data fingerprint `{meta.get('data_fingerprint')}` (hash of the training clip paths)",
        f"- data root at training time: `{config.data.root}`",
        "",
        "## Metrics",
    ]
    result = exp.result_path(FUSED_NAME)
    if result.is_file():
        lines += ["Official result table of the experiment's fused scores: `results.csv` (DCASE 2021 protocol).",
                  "", "```", result.read_text().strip(), "```"]
    else:
        lines.append("Not evaluated.")
    lines += ["", "## Reproduce", "", "```", command or f"hybrid-asd run --config <{config.name}.yaml> ...",
              "```", "", "## Versions", "", "```", json.dumps(meta.get("versions", {}), indent=2), "```", ""]
    return "\n".join(lines)


def load_published(path: str | Path, device: str = "cpu"):
    """``(model, checkpoint dict)`` of a published checkpoint folder (or its checkpoint.pt)."""
    path = Path(path)
    return load_checkpoint(path / "checkpoint.pt" if path.is_dir() else path, device)
