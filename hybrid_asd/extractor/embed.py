"""Clip embeddings and outlier-exposure (OE) scores from a trained extractor checkpoint.

For every clip: its log-mel is cut into patches as in training (or fed whole for ``input:
clip``; its waveform cut into crops of the network's input length for ``input: waveform``), each
patch is embedded, and

- the clip embedding is the mean of its patch embeddings; for angular heads (ArcFace, AdaCos,
  sub-cluster AdaCos) patch embeddings are L2-normalised before averaging and the mean is
  L2-normalised again;
- the clip's OE score is the mean over its patches of the head's per-patch score for the clip's
  own section (softmax: the baseline's ``log((1 - p) / p)``; angular heads: cosine distance to
  the nearest centre of the section). Higher = more anomalous.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hybrid_asd.data.clips import Clip
from hybrid_asd.errors import DataError
from hybrid_asd.extractor.checkpoint import checkpoint_settings, load_checkpoint
from hybrid_asd.extractor.labels import section_key
from hybrid_asd.extractor.waveforms import waveform_windows
from hybrid_asd.features.patches import make_patches
from hybrid_asd.utils import resolve_device

log = logging.getLogger(__name__)

CLIPS_PER_CHUNK = 64  # log-mels fetched from the cache at a time (bounds memory)


def section_masks(meta: dict[str, Any]) -> np.ndarray:
    """``(n_sections, n_classes)`` boolean: which classes belong to each section."""
    c2s = np.asarray(meta["class_to_section"], dtype=np.int64)
    return np.arange(len(meta["sections"]))[:, None] == c2s[None, :]


def clip_windows(logmel: np.ndarray, meta: dict[str, Any], name: str) -> np.ndarray:
    """``(n_windows, 1, n_mels, frames)`` network inputs of one clip, as in training
    (``data.channel: all``: ``(n_windows, channels, n_mels, frames)``; ``input: waveform``:
    ``(n_windows, 1, samples)`` crops of the clip's waveform)."""
    # a (channels, n_mels, T) log-mel has channel planes; (n_mels, T) log-mels and 1-D waveforms one
    planes, got = int(meta.get("in_channels", 1)), int(logmel.shape[0]) if logmel.ndim == 3 else 1
    if got != planes:
        raise DataError(f"{name}: log-mel with {got} channel plane(s), but the extractor was trained on {planes} "
                        "(data.channel must be what it was in training)")
    if meta.get("input", "patches") == "clip":
        return logmel[None] if logmel.ndim == 3 else logmel[None, None]
    if meta.get("input") == "waveform":
        return waveform_windows(logmel, int(meta["input_samples"]))[:, None]
    try:
        patches = make_patches(logmel, int(meta["patch_frames"]), int(meta["patch_hop"]))
    except ValueError as exc:
        raise DataError(f"{name}: {exc}") from None
    # (n, n_mels, frames) -> (n, 1, n_mels, frames); (channels, n, n_mels, frames) -> (n, channels, ...)
    return patches[:, None] if logmel.ndim == 2 else np.ascontiguousarray(patches.transpose(1, 0, 2, 3))


class Embedder:
    """A trained extractor checkpoint loaded once, ready to embed clips (see :func:`extract`);
    ``hybrid_asd.monitor`` keeps one to score new recordings one batch after another."""

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu", batch_size: int = 256):
        self.checkpoint_path = Path(checkpoint_path)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.model, ckpt = load_checkpoint(checkpoint_path, self.device)
        self.meta: dict[str, Any] = ckpt["meta"]
        self.masks = torch.from_numpy(section_masks(self.meta))
        self.section_index = {name: i for i, name in enumerate(self.meta["sections"])}
        self.settings = checkpoint_settings(ckpt, checkpoint_path)
        self.use_amp = self.device.startswith("cuda") and self.settings.amp
        self.angular = bool(getattr(self.model.head, "angular", False))

    def __call__(self, clips: Sequence[Clip], features: Any, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings ``(N, D)`` float32 and OE scores ``(N,)`` float64 of ``clips`` (rows aligned)."""
        sections = []
        for clip in clips:
            key = section_key(clip)
            if key not in self.section_index:
                raise DataError(f"{clip.path}: section {key!r} was not in the extractor's training data "
                                f"({', '.join(self.meta['sections'])}); checkpoint {self.checkpoint_path}")
            sections.append(self.section_index[key])
        embeddings = np.zeros((len(clips), self.settings.embedding_dim), dtype=np.float32)
        scores = np.zeros(len(clips), dtype=np.float64)
        bar = tqdm(total=len(clips), desc="extract", disable=not progress, dynamic_ncols=True)
        for start in range(0, len(clips), CLIPS_PER_CHUNK):
            chunk = range(start, min(start + CLIPS_PER_CHUNK, len(clips)))
            logmels = features.get_many([clips[i].path for i in chunk], progress=False)
            windows = [clip_windows(m, self.meta, str(clips[i].path)) for i, m in zip(chunk, logmels)]
            emb, sc = _embed_windows(self.model, windows, [sections[i] for i in chunk], self.masks, self.device,
                                     self.batch_size, self.use_amp, self.angular)
            embeddings[chunk.start:chunk.stop] = emb
            scores[chunk.start:chunk.stop] = sc
            bar.update(len(chunk))
        bar.close()
        return embeddings, scores


def extract(
    checkpoint_path: str | Path,
    clips: Sequence[Clip],
    features: Any,
    device: str = "cpu",
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``(N, D)`` float32 and OE scores ``(N,)`` float64 of ``clips`` (rows aligned).

    ``features`` supplies log-mels (a FeatureCache: ``get_many(paths, progress)``). A clip whose
    section the extractor was not trained on raises :class:`DataError`.
    """
    return Embedder(checkpoint_path, device, batch_size)(clips, features, progress=progress)


@torch.inference_mode()
def _embed_windows(
    model: torch.nn.Module, windows: list[np.ndarray], sections: list[int], masks: torch.Tensor,
    device: str, batch_size: int, use_amp: bool, angular: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip embeddings and scores of a chunk of clips' windows."""
    per_clip_emb: list[torch.Tensor] = []
    per_clip_score: list[torch.Tensor] = []
    # windows of equal size are batched across clips; whole clips of other lengths run alone
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, w in enumerate(windows):
        groups.setdefault(tuple(w.shape[1:]), []).append(j)
    patch_emb: list[torch.Tensor | None] = [None] * len(windows)
    patch_score: list[torch.Tensor | None] = [None] * len(windows)
    for members in groups.values():
        x = torch.from_numpy(np.concatenate([windows[j] for j in members]))
        owner = torch.cat([torch.full((len(windows[j]),), sections[j]) for j in members])
        outs_e, outs_s = [], []
        for b in range(0, len(x), batch_size):
            xb = x[b:b + batch_size].to(device)
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=use_amp):
                e = model.embed(xb)
            e = e.float()
            outs_s.append(model.head.anomaly_scores(e, masks[owner[b:b + batch_size]].to(device)).double().cpu())
            outs_e.append((F.normalize(e, dim=1) if angular else e).cpu())
        e_all, s_all = torch.cat(outs_e), torch.cat(outs_s)
        pos = 0
        for j in members:
            n = len(windows[j])
            patch_emb[j], patch_score[j] = e_all[pos:pos + n], s_all[pos:pos + n]
            pos += n
    for e, s in zip(patch_emb, patch_score):
        mean = e.mean(dim=0)
        per_clip_emb.append(F.normalize(mean, dim=0) if angular else mean)
        per_clip_score.append(s.mean())
    return torch.stack(per_clip_emb).numpy().astype(np.float32), torch.stack(per_clip_score).numpy()
