"""Training of the feature extractor (section classifier) on log-mel patches, whole log-mels or
waveform crops (``input: waveform``, :mod:`hybrid_asd.extractor.waveforms`).

One entry point, :func:`train_extractor`. It loads every training log-mel once from the feature
cache, holds out a validation split of normal clips (stratified by class, by clip), trains with
Adam/AdamW, an optional per-epoch schedule and optional mixup, and writes into its folder
(:class:`~hybrid_asd.experiment.ExtractorFiles`):

- ``train_state.pt`` every epoch (atomically): model, optimiser, scheduler, GradScaler, epoch,
  RNG states and log rows. Calling again with the same config and data resumes after the last
  completed epoch; the state is removed once the checkpoint is written.
- ``train_log.csv`` every epoch (atomically): epoch, train/val loss and accuracy, the validation
  accuracy on target-domain windows, seconds, lr.

Validation sees the target domain of every class that has target clips (``target_validation``,
see :func:`target_validation_split`): with 3 target clips per section a 10 % split by clip holds
none of them out.
- ``checkpoint.pt`` at the end (see :mod:`hybrid_asd.extractor.checkpoint`).

On CUDA it uses float16 autocast + GradScaler (``amp: true``); on the CPU float32. Under
``torchrun`` it trains with DistributedDataParallel (see :mod:`hybrid_asd.extractor.ddp`).
On the CPU, a seed gives the same weights run after run (and after a resume).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from hybrid_asd.config import fingerprint
from hybrid_asd.data.clips import Clip, clip_relpath
from hybrid_asd.data.settings import SupplementalSettings
from hybrid_asd.errors import DataError
from hybrid_asd.experiment import ExtractorFiles
from hybrid_asd.extractor import ddp
from hybrid_asd.extractor.backbones import ExtractorModel, build_model
from hybrid_asd.extractor.checkpoint import (
    data_fingerprint, load_train_state, make_meta, read_checkpoint, rng_states, save_checkpoint,
    save_train_state, set_rng_states,
)
from hybrid_asd.extractor.dataset import PatchDataset, identity_collate, stratified_split
from hybrid_asd.extractor.labels import make_labels, section_names
from hybrid_asd.extractor.noise import NoiseMixer
from hybrid_asd.extractor.settings import OPTIMIZER_NAMES, ExtractorSettings
from hybrid_asd.extractor.waveforms import CropDataset
from hybrid_asd.features.settings import FeatureSettings
from hybrid_asd.utils import atomic_write_text, resolve_device, seed_everything

log = logging.getLogger(__name__)

LOG_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_target_acc", "seconds", "lr")
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES, "extractor.settings names the optimizers this table builds"


class LogMelSource(Protocol):
    """What training needs from :class:`hybrid_asd.features.cache.FeatureCache`."""

    def get_many(self, paths: Sequence[Any], progress: bool = True) -> list[np.ndarray]: ...


# --- schedule ---------------------------------------------------------------------------------
def lr_factor(epoch: int, *, name: str, epochs: int, warmup_epochs: int = 0, step_size: int = 10,
              gamma: float = 0.1, min_lr_ratio: float = 0.0) -> float:
    """Learning-rate multiplier of ``epoch`` (0-based): linear warm-up, then none/step/cosine."""
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    t = epoch - warmup_epochs
    if name == "step":
        return gamma ** (t // max(int(step_size), 1))
    if name == "cosine":
        span = max(epochs - warmup_epochs, 1)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t / span))
    return 1.0


def make_optimizer(model: torch.nn.Module, conf: ExtractorSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = conf.optimizer
    return OPTIMIZERS[opt.name](params, lr=opt.lr, weight_decay=opt.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, conf: ExtractorSettings) -> torch.optim.lr_scheduler.LambdaLR:
    sched = conf.scheduler
    factor = functools.partial(
        lr_factor, name=sched.name, epochs=conf.epochs, warmup_epochs=sched.warmup_epochs,
        step_size=sched.step_size, gamma=sched.gamma, min_lr_ratio=sched.min_lr_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --- data -------------------------------------------------------------------------------------
@dataclass
class Datasets:
    """What training reads: the training windows, the validation windows (all, and the target-domain
    ones alone), the whole validation clips (``val_idx``) and the input geometry for the meta."""

    train: PatchDataset | CropDataset
    val: PatchDataset | CropDataset | None
    val_target: PatchDataset | None
    train_idx: np.ndarray  # the clips of ``train``, in its order
    val_idx: np.ndarray
    tail_idx: np.ndarray  # target clips whose last window is validation data (target_validation: crops)
    geometry: dict[str, Any]


def target_validation_split(
    clips: Sequence[Clip], label_ids: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, mode: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train_idx, val_idx, tail_idx)`` such that validation sees the target domain of every class
    with target clips.

    A class whose target clips all stayed in training (3 clips x 10 % rounds to none) gets, by
    ``mode``: ``crops``: each of its target clips keeps its first part for training and gives its last
    window to validation (``tail_idx``; the clip stays a training clip everywhere else, e.g. in the
    kNN memory and the OE train rows); ``clips``: one of its target clips (seeded choice) moves to
    validation if the class keeps another; ``none``: nothing.
    """
    in_val = set(val_idx.tolist())
    targets: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        if clip.domain == "target":
            targets.setdefault(int(label_ids[i]), []).append(i)
    missing = {cls: idx for cls, idx in targets.items() if not in_val.intersection(idx)}
    if mode == "none" or not missing:
        return train_idx, val_idx, np.zeros(0, dtype=np.int64)
    if mode == "crops":
        tails = sorted(i for idx in missing.values() for i in idx)
        return train_idx, val_idx, np.asarray(tails, dtype=np.int64)
    moved = []
    for cls, idx in sorted(missing.items()):
        if len(idx) >= 2:
            moved.append(int(rng.choice(idx)))
        else:
            log.warning("class %d has one target clip only: it stays a training clip, validation lacks its target "
                        "domain", cls)
    train = np.setdiff1d(train_idx, moved)
    return train, np.sort(np.r_[val_idx, moved]).astype(np.int64), np.zeros(0, dtype=np.int64)


def build_datasets(
    clips: Sequence[Clip], logmels: Sequence[np.ndarray], label_ids: np.ndarray, conf: ExtractorSettings,
    features: FeatureSettings, seed: int, input_samples: int | None = None,
) -> Datasets:
    """Train/validation datasets, the validation clip indices and the input geometry for the meta.

    ``logmels`` are waveforms for ``input: waveform``, cropped to the network's ``input_samples``.
    """
    rng = np.random.default_rng(seed)
    train_idx, val_idx = stratified_split(label_ids, conf.val_fraction, rng)
    mode = conf.target_validation if conf.val_fraction > 0 else "none"
    if mode == "crops" and conf.input != "patches":
        log.warning("extractor.target_validation 'crops' needs patch input; with %s input validation may lack the "
                    "target domain (use target_validation: clips)", conf.input)
        mode = "none"
    train_idx, val_idx, tail_idx = target_validation_split(clips, label_ids, train_idx, val_idx, mode, rng)
    if conf.input == "waveform":
        train_wave, val_wave = waveform_datasets(logmels, label_ids, clips, train_idx, val_idx, conf, input_samples,
                                                 seed)
        return Datasets(train_wave, val_wave, None, train_idx, val_idx, tail_idx,
                        {"input": "waveform", "input_samples": input_samples})
    names = [str(c.path) for c in clips]
    if conf.input == "patches":
        frames, hop = features.patch_frames, features.patch_hop
        train_hop, val_hop, max_per_clip = hop, hop, conf.max_patches_per_clip
        geometry = {"input": "patches", "patch_frames": frames, "patch_hop": hop}
        # a tail crop leaves at least one whole window for training
        short = [i for i in tail_idx if int(logmels[i].shape[-1]) < 2 * frames]
        if short:
            log.warning("%d target clip(s) shorter than two patches (%d frames) give no validation window",
                        len(short), 2 * frames)
            tail_idx = np.setdiff1d(tail_idx, short)
    else:
        # whole clips: random crops of the shortest training clip's length, one per clip and epoch
        frames = min(int(m.shape[-1]) for m in logmels)
        longest = max(int(m.shape[-1]) for m in logmels)
        train_hop, val_hop, max_per_clip = 1, longest + 1, 1
        geometry = {"input": "clip", "clip_frames": frames}
    repeats = np.asarray(
        [conf.target_oversample if c.domain == "target" else 1 for c in clips], dtype=np.int64
    )
    tails = set(tail_idx.tolist())

    def head(i: int) -> np.ndarray:  # the training part of a clip
        # last axis: frames of (n_mels, T) and of (channels, n_mels, T) (data.channel: all)
        return logmels[i][..., : int(logmels[i].shape[-1]) - frames] if i in tails else logmels[i]

    def dataset(mels: list[np.ndarray], idx: list[int], hop: int, rep: np.ndarray | None, max_pc: int | None,
                suffix: str = "") -> PatchDataset:
        return PatchDataset(mels, label_ids[idx], frames, hop, repeats=rep, max_per_clip=max_pc, seed=seed,
                            names=[names[i] + suffix for i in idx])

    train_ds = dataset([head(i) for i in train_idx], list(train_idx), train_hop, repeats[train_idx], max_per_clip)
    val_items = [(logmels[i], int(i), "") for i in val_idx]
    val_items += [(logmels[i][..., -frames:], int(i), "#tail") for i in tail_idx]
    val_ds = val_target = None
    if val_items:
        val_ds = PatchDataset([m for m, _, _ in val_items], label_ids[[i for _, i, _ in val_items]], frames, val_hop,
                              seed=seed, names=[names[i] + sfx for _, i, sfx in val_items])
        target = [(m, i, sfx) for m, i, sfx in val_items if clips[i].domain == "target"]
        if target:
            val_target = PatchDataset([m for m, _, _ in target], label_ids[[i for _, i, _ in target]], frames,
                                      val_hop, seed=seed, names=[names[i] + sfx for _, i, sfx in target])
    if len(tail_idx):
        log.info("validation: the last window of %d target clip(s) of classes without a target validation clip "
                 "(extractor.target_validation: crops)", len(tail_idx))
    geometry = {**geometry, "n_mels": int(train_ds.n_mels)}
    if train_ds.in_channels > 1:  # data.channel: all (older checkpoints have no key: one plane)
        geometry["in_channels"] = int(train_ds.in_channels)
    return Datasets(train_ds, val_ds, val_target, train_idx, val_idx, tail_idx, geometry)


def waveform_datasets(
    waves: Sequence[np.ndarray], label_ids: np.ndarray, clips: Sequence[Clip], train_idx: np.ndarray,
    val_idx: np.ndarray, conf: ExtractorSettings, samples: int | None, seed: int,
) -> tuple[CropDataset, CropDataset | None]:
    """Training crops at random offsets (one per clip and epoch) and each validation clip's first crop."""
    if samples is None:
        raise ValueError("input: waveform needs the network's input length (input_samples)")
    repeats = np.asarray([conf.target_oversample if clips[i].domain == "target" else 1 for i in train_idx])
    train_ds = CropDataset([waves[i] for i in train_idx], label_ids[train_idx], samples, repeats=repeats, seed=seed)
    val_ds = (CropDataset([waves[i] for i in val_idx], label_ids[val_idx], samples, random=False)
              if len(val_idx) else None)
    return train_ds, val_ds


def make_loader(dataset: PatchDataset, batch_size: int, info: ddp.DistInfo, *, shuffle: bool, seed: int,
                num_workers: int) -> tuple[DataLoader, DistributedSampler]:
    # DistributedSampler with explicit replicas/rank also serves one process (no process group needed)
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=identity_collate, num_workers=num_workers,
        # fork after multithreaded torch can hang (see ARCHITECTURE.md): workers are spawned
        multiprocessing_context="spawn" if num_workers > 0 else None,
    )
    return loader, sampler


# --- one epoch ----------------------------------------------------------------------------------
def mixup_batch(x: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float, rng: np.random.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018) within the batch: ``lam x + (1 - lam) x[perm]`` and soft targets."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(x.shape[0])).to(x.device)
    onehot = torch.nn.functional.one_hot(y, n_classes).float()
    return lam * x + (1.0 - lam) * x[perm], lam * onehot + (1.0 - lam) * onehot[perm]


def train_one_epoch(
    model: torch.nn.Module, core: ExtractorModel, loader: DataLoader, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, *, device: str, use_amp: bool, mixup: float, rng: np.random.Generator,
    desc: str, progress: bool,
) -> tuple[float, float, float]:
    """Returns (summed loss, correct predictions, samples) of this process."""
    model.train()
    head = core.head
    loss_sum = correct = count = 0.0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for x, y in bar:
        if x.shape[0] < 2:  # batch norm cannot train on one sample (the same on every rank)
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        soft = None
        if mixup > 0:
            x, soft = mixup_batch(x, y, head.n_classes, mixup, rng)
            y = soft.argmax(dim=1)  # the dominant class, for accuracy
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=use_amp):
            emb, logits = model(x, soft if soft is not None else y)
        loss = head.loss_from_logits(logits, y, soft)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():
            pred = head(emb.detach().float()).argmax(dim=1)  # accuracy without margin
        n = x.shape[0]
        loss_sum += float(loss.detach()) * n
        correct += float((pred == y).sum())
        count += n
        bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}", refresh=False)
    return loss_sum, correct, count


@torch.no_grad()
def evaluate(core: ExtractorModel, loader: DataLoader, *, device: str, use_amp: bool) -> tuple[float, float, float]:
    """Validation (summed loss, correct, samples) of this process's shard."""
    core.eval()
    loss_sum = correct = count = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=use_amp):
            emb = core.embed(x)
        logits = core.head(emb.float(), y)
        loss_sum += float(core.head.loss_from_logits(logits, y)) * x.shape[0]
        correct += float((core.head(emb.float()).argmax(dim=1) == y).sum())
        count += x.shape[0]
    return loss_sum, correct, count


# --- files ---------------------------------------------------------------------------------------
def state_dict_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as CPU copies (a later epoch's updates do not reach them)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def write_train_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# --- entry point --------------------------------------------------------------------------------
def train_extractor(
    train_clips: list[Clip],
    features: LogMelSource,
    extractor: ExtractorSettings | Mapping[str, Any],
    features_conf: FeatureSettings | Mapping[str, Any],
    out: ExtractorFiles | str | Path,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    *,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    noise_clips: Sequence[Clip] = (),
    noise: SupplementalSettings | None = None,
) -> Path:
    """Train the extractor on the normal ``train_clips``; returns the checkpoint path.

    ``extractor`` and ``features_conf`` are the config sections (mappings are validated into
    them); ``out`` is where the files go (a folder gets the files of :class:`ExtractorFiles`).
    ``features`` supplies log-mels (a FeatureCache). ``on_epoch_end(epoch, row)`` is called after
    each epoch's state is saved (an exception there interrupts training resumably). Under
    torchrun every process calls this; rank 0 writes the files. ``noise_clips`` (noise-only
    recordings) are mixed into the training windows as ``noise`` (``data.supplemental``: ``snr_db``,
    ``noise_prob``) says (:mod:`hybrid_asd.extractor.noise`).
    """
    conf = ExtractorSettings.parse(extractor, where="extractor")
    features_settings = FeatureSettings.parse(features_conf, where="features")
    files = out if isinstance(out, ExtractorFiles) else ExtractorFiles.in_folder(out)
    ckpt_path = files.checkpoint
    if not train_clips:
        raise DataError("train_extractor: no training clips")
    label_ids, classes, class_to_section = make_labels(train_clips, conf.labels)
    if len(classes) < 2:
        log.warning("only one class (%s): the OE scores of a one-class softmax are constant", classes[0])
    paths = [str(c.path) for c in train_clips]
    noise = noise or SupplementalSettings(use="noise")
    run_inputs = {"extractor": conf.to_dict(), "features": features_settings.to_dict(),
                  "data": data_fingerprint(paths), "seed": int(seed)}
    if noise_clips:  # only then: runs without noise keep their fingerprints
        run_inputs["noise"] = {"clips": data_fingerprint(str(c.path) for c in noise_clips),
                               "snr_db": list(noise.snr_db), "prob": noise.noise_prob}
    run_fp = fingerprint(run_inputs)
    if _finished(ckpt_path, run_fp):
        log.info("%s is complete for this config and data; not retraining", ckpt_path)
        return ckpt_path

    info, device = ddp.setup(resolve_device(device))
    try:
        _train(train_clips, features, conf, features_settings, files, device, int(seed), progress, info,
               label_ids, classes, class_to_section, run_fp, on_epoch_end, (list(noise_clips), noise))
    finally:
        ddp.teardown(info)
    return ckpt_path


def _finished(ckpt_path: Path, run_fp: str) -> bool:
    if not ckpt_path.is_file():
        return False
    try:
        return read_checkpoint(ckpt_path)["meta"].get("train_fingerprint") == run_fp
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is simply retrained
        return False


def _train(
    clips: list[Clip], features: LogMelSource, conf: ExtractorSettings, features_conf: FeatureSettings,
    files: ExtractorFiles, device: str, seed: int, progress: bool, info: ddp.DistInfo, label_ids: np.ndarray,
    classes: list[str], class_to_section: list[int], run_fp: str,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    noise: tuple[list[Clip], SupplementalSettings],
) -> None:
    seed_everything(seed)
    model = build_model(conf, n_classes=len(classes))  # before loading data: config errors come first
    show = progress and info.is_main
    logmels = features.get_many([c.path for c in clips], progress=show)  # waveforms for input: waveform
    data = build_datasets(clips, logmels, label_ids, conf, features_conf, seed,
                          input_samples=getattr(model.backbone, "samples", None))
    train_ds, val_ds, val_idx, geometry = data.train, data.val, data.val_idx, data.geometry
    del logmels
    if geometry.get("in_channels", 1) > 1:  # data.channel: all: one input plane per channel
        seed_everything(seed)
        model = build_model(conf, n_classes=len(classes), in_channels=geometry["in_channels"])
    noise_clips, noise_conf = noise
    if noise_clips:
        noise_inputs = features.get_many([c.path for c in noise_clips], progress=show)
        train_ds.add_noise(NoiseMixer(noise_inputs, noise_conf.snr_db, noise_conf.noise_prob,
                                      waves=conf.input == "waveform"))
        log.info("extractor: background noise from %d clip(s) in %.0f%% of the training windows, SNR %g to %g dB",
                 len(noise_clips), 100 * noise_conf.noise_prob, *noise_conf.snr_db)
    if conf.input_norm:
        model.set_input_stats(*train_ds.input_stats())
    model.to(device)
    use_amp = conf.amp and device.startswith("cuda")
    optimizer = make_optimizer(model, conf)
    scheduler = make_scheduler(optimizer, conf)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    log.info("extractor: %d train / %d val clips, %d classes, %d training windows per epoch on %s",
             len(clips) - len(val_idx), len(val_idx), len(classes), len(train_ds), device)

    state_path, log_path = files.train_state, files.train_log
    start_epoch, rows = 0, []
    best: dict[str, Any] = {"val_acc": -1.0, "epoch": 0, "model": None}  # keep: best_val
    state = load_train_state(state_path, run_fp)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
        start_epoch, rows = int(state["epoch"]), list(state["rows"])
        best = state.get("best", best)
        log.info("resuming extractor training after epoch %d of %d", start_epoch, conf.epochs)

    wrapped: torch.nn.Module = model
    if info.enabled:
        device_ids = [torch.device(device).index] if device.startswith("cuda") else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
    bs, workers = conf.batch_size, conf.num_workers
    train_loader, train_sampler = make_loader(train_ds, bs, info, shuffle=True, seed=seed, num_workers=workers)
    val_loader = val_target_loader = None
    if val_ds is not None:
        val_loader, _ = make_loader(
            val_ds, conf.extract_batch_size, info, shuffle=False, seed=seed, num_workers=0
        )
    if data.val_target is not None:
        val_target_loader, _ = make_loader(
            data.val_target, conf.extract_batch_size, info, shuffle=False, seed=seed, num_workers=0
        )

    for epoch in range(start_epoch, conf.epochs):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        train_sampler.set_epoch(epoch)
        rng = np.random.default_rng([seed, epoch, info.rank])
        lr = optimizer.param_groups[0]["lr"]
        sums = train_one_epoch(
            wrapped, model, train_loader, optimizer, scaler, device=device, use_amp=use_amp,
            mixup=conf.mixup, rng=rng, desc=f"epoch {epoch + 1}/{conf.epochs}", progress=show,
        )
        scheduler.step()
        val_sums = evaluate(model, val_loader, device=device, use_amp=use_amp) if val_loader else (0.0, 0.0, 0.0)
        target_sums = (evaluate(model, val_target_loader, device=device, use_amp=use_amp)
                       if val_target_loader else (0.0, 0.0, 0.0))
        tl, tc, tn, vl, vc, vn, _, ttc, ttn = ddp.all_sum(info, [*sums, *val_sums, *target_sums], device)
        row = {"epoch": epoch + 1, "train_loss": _ratio(tl, tn), "train_acc": _ratio(tc, tn),
               "val_loss": _ratio(vl, vn), "val_acc": _ratio(vc, vn), "val_target_acc": _ratio(ttc, ttn),
               "seconds": round(time.perf_counter() - t0, 3), "lr": lr}
        rows.append(row)
        if conf.keep == "best_val" and row["val_acc"] > best["val_acc"]:
            best = {"val_acc": row["val_acc"], "epoch": epoch + 1, "model": state_dict_copy(model)}
        if info.is_main:
            log.info("epoch %d/%d: train loss %.4f acc %.3f, val loss %.4f acc %.3f (target %.3f) (%.1f s)",
                     epoch + 1, conf.epochs, row["train_loss"], row["train_acc"], row["val_loss"],
                     row["val_acc"], row["val_target_acc"], row["seconds"])
            save_train_state(state_path, {
                "fingerprint": run_fp, "epoch": epoch + 1, "rows": rows, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng_states(), "best": best,
            })
            write_train_log(log_path, rows)
        ddp.barrier(info)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    if conf.keep == "best_val" and best["model"] is not None:
        model.load_state_dict(best["model"])
        log.info("extractor: keeping epoch %d of %d (best validation accuracy %.3f)", best["epoch"], conf.epochs,
                 best["val_acc"])
    if info.is_main:
        meta = make_meta(
            train_paths=[c.path for c in clips], seed=seed, classes=classes, class_to_section=class_to_section,
            sections=section_names(clips), train_fingerprint=run_fp, epochs=conf.epochs,
            val_paths=[clip_relpath(clips[i].path) for i in val_idx], **geometry,
        )
        save_checkpoint(files.checkpoint, model.state_dict(),
                        {"extractor": conf.to_dict(), "features": features_conf.to_dict()}, meta)
        write_train_log(log_path, rows)
        if state_path.exists():
            state_path.unlink()
    ddp.barrier(info)
