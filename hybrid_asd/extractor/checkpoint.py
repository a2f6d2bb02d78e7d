"""Extractor checkpoints: ``{"model", "config", "meta"}``, written atomically, loaded with
``weights_only=True`` and rebuilt from their own config (as BEATs checkpoints are).

``config`` holds the resolved ``extractor`` and ``features`` sections the weights were trained
with; ``meta`` holds library versions, the training data fingerprint, the seed, the class names,
``class_to_section`` and the section names. A separate training state (``train_state.pt``: model,
optimiser, scheduler, GradScaler, epoch, RNG states, log rows) lets an interrupted run resume.
"""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from hybrid_asd.data.clips import clip_relpath
from hybrid_asd.errors import StageError
from hybrid_asd.extractor.backbones import build_model
from hybrid_asd.extractor.settings import ExtractorSettings
from hybrid_asd.utils import atomic_torch_save, package_versions

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("model", "config", "meta")


def data_fingerprint(paths: Iterable[str | Path]) -> str:
    """A short hash of the (sorted) training clip paths relative to their data root
    (:func:`~hybrid_asd.data.clips.clip_relpath`): the same data gives the same hash on any machine."""
    blob = "\n".join(sorted(clip_relpath(p) for p in paths)).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def make_meta(
    *, train_paths: Iterable[str | Path], seed: int, classes: list[str], class_to_section: list[int],
    sections: list[str], **extra: Any,
) -> dict[str, Any]:
    """Checkpoint metadata (plain Python values only, so ``weights_only`` loading accepts it)."""
    return {
        # str(): torch.__version__ is a TorchVersion, which weights_only loading refuses
        "versions": {k: str(v) for k, v in package_versions().items()},
        "data_fingerprint": data_fingerprint(train_paths),
        "seed": int(seed),
        "classes": list(classes),
        "class_to_section": [int(i) for i in class_to_section],
        "sections": list(sections),
        **extra,
    }


def save_checkpoint(
    path: str | Path, model_state: dict[str, torch.Tensor], config: dict[str, Any], meta: dict[str, Any]
) -> Path:
    """Write ``{"model": state_dict, "config": config, "meta": meta}`` atomically."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model_state.items()}
    atomic_torch_save(path, {"model": state, "config": config, "meta": meta})
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary (tensors on the CPU); clear errors for missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"extractor checkpoint not found: {path} (run the 'train' stage first)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or unsafe files
        raise StageError(f"{path}: not a readable extractor checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        raise StageError(f"{path}: not an extractor checkpoint (needs keys {list(CHECKPOINT_KEYS)})")
    return ckpt


def checkpoint_settings(ckpt: dict[str, Any], path: str | Path) -> ExtractorSettings:
    """The ``extractor`` section a checkpoint was trained with, validated (older files get defaults
    for keys added since)."""
    return ExtractorSettings.parse(ckpt["config"].get("extractor"), where="extractor", source=f"{path} config")


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the extractor from the checkpoint's own config, load its weights, eval mode.

    Returns ``(model, checkpoint_dict)``. A state dict that does not fit the rebuilt model
    raises a :class:`StageError` naming the file.
    """
    ckpt = read_checkpoint(path)
    model = build_model(checkpoint_settings(ckpt, path), n_classes=len(ckpt["meta"]["classes"]),
                        in_channels=int(ckpt["meta"].get("in_channels", 1)))
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:3]
        raise StageError(f"{path}: weights do not match the model its config describes: {' '.join(first)}") from None
    return model.to(device).eval(), ckpt


# --- resumable training state ------------------------------------------------------------
def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states in a ``weights_only``-loadable form."""
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_to_tuple(states["python"]))
    np_state = states["numpy"]
    np.random.set_state(
        ("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
         np_state["cached_gaussian"])
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_tuple(obj: Any) -> Any:
    """Lists back to tuples (``random.setstate`` needs tuples)."""
    if isinstance(obj, (list, tuple)):
        return tuple(_to_tuple(o) for o in obj)
    return obj


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    atomic_torch_save(path, state)


def load_train_state(path: str | Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved training state when it exists and belongs to this run (same fingerprint), else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt state is discarded, training restarts
        log.warning("%s is unreadable (%s); training starts from scratch", path, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("%s belongs to another config or data set; training starts from scratch", path)
        return None
    return state
