"""One-command GPU check: what the GPU paths of hybrid_asd deliver on one CUDA GPU, in at most ~8 minutes.

    python benchmarks/gpu_check.py --out exp/gpu_check          # on a machine with one CUDA GPU
    python benchmarks/gpu_check.py --quick --out /tmp/gpu_check  # CPU smoke run (tiny networks, tiny data), < 1 min

It writes ``gpu_check.json`` and ``gpu_check.md`` (the same tables) into ``--out`` and prints the markdown.
Sections, in the order they run:

1. **data**: the ``full`` synthetic preset for ONE machine type (``--machine``, default fan: 6 sections x
   (1000 + 3) training clips and the test clips, 10 s), generated with every CPU core (``--quick``: the
   ``tiny`` preset). Reused when ``--work`` already holds the same preset and seed.
2. **log-mel**: ``FeatureCache.logmel_batch`` (the project's front end: stack, host->device copy, torch.stft +
   Slaney filterbank, copy back) on the CPU and on the GPU over the same in-memory clips, batches of 32: clips/s
   of both and the largest difference in dB (must stay below 1e-3), plus the CPU float32 result against a
   float64 computation.
3. **FAISS**: ``KNNDetector`` (exact, cosine, k=1) with ``use_gpu`` false vs true on a 100,000 x 128 bank and
   10,000 queries (random Gaussian, fixed seed): queries/s, largest score difference (must be <= 1e-5) and the
   share of equal neighbour ids.
4. **extractor training** (patches/s) with the extractor section of shipped configs (backbone, head, labels,
   batch size, mixup): ``baseline_mobilenetv2`` (mobilenetv2_100, batch 32), ``wilkinghoff2021_serial``
   (mobilenetv2_100, 64), ``morita2021_serial`` (resnet18, 64), ``demo_hybrid`` (tiny_cnn, 64) and
   ``multibranch_scac_knn`` (the multi-branch whole-clip network, width 128, on 10 s waveform crops of a
   ``CropDataset``, 64; its rate counts crops, ``--quick`` shrinks it to width 8 on 1 s crops), each in
   float32, AMP float16 (autocast + GradScaler, what ``extractor.amp: true`` does on CUDA) and bfloat16
   (autocast): "model" = forward + backward + optimiser step on batches already on the GPU; "pipeline" = the
   project's training loop (``train_one_epoch`` over ``make_loader``'s DataLoader of a ``PatchDataset``, whole
   batches gathered in one NumPy call and copied with one transfer). For each: peak GPU memory, the share of
   the loop's wall time spent waiting for the next batch (loader wait) and the GPU busy fraction sampled by
   NVML (``pynvml``, optional) or ``nvidia-smi``. Variants for the wilkinghoff network in float16: DataLoader
   workers (``extractor.num_workers: 2``, spawned), pinned host memory (a DataLoader option the project does
   not set yet: measured here to decide) and the NCHW layout (``extractor.channels_last: false``; every other
   row runs the default channels-last layout).
   The training loop's AMP is float16 only, so bfloat16 has model rows only.
5. **end to end**: that machine type through ``hybrid_asd/configs/wilkinghoff2021_serial.yaml`` on the GPU,
   every stage timed (the ``features`` stage computes log-mels on the CPU: it takes no device), the GPU busy
   fraction per stage, and the official score of each score table. The config trains 20 epochs; when the
   training rate measured in section 4 says they do not fit ``--budget-s``, fewer epochs run
   (``--e2e-epochs`` forces a number) and the table gives the projected time of all 20.
   ``--e2e-train-clips N`` scales the data down (source training clips per section), ``--skip-e2e`` skips it.

Without CUDA the full check stops at once with "CUDA not available". ``--quick`` runs every section at tiny
sizes on whatever there is: tiny_cnn and the shrunken multi-branch network only, on the GPU when CUDA is
available, else on the CPU with every GPU row marked unavailable ("CUDA not available"), with BLAS limited to
one thread (OpenBLAS threads busy-wait on a shared CPU); the test suite runs it (tests/test_gpu_check.py).
Exit status: 0 when every measured check passed, 1 when a check failed or a section raised (the JSON says
which), 2 when CUDA is missing without ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

# Before torch loads OpenMP (see hybrid_asd.cli.main); nothing may download at run time.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

SCHEMA = 1
CONFIG_DIR = ROOT / "hybrid_asd" / "configs"
E2E_CONFIG = "wilkinghoff2021_serial"
# (config, what the row shows): the extractor sections whose training throughput is measured
TRAINING_CONFIGS = ("baseline_mobilenetv2", E2E_CONFIG, "morita2021_serial", "demo_hybrid", "multibranch_scac_knn")
QUICK_TRAINING_CONFIGS = ("demo_hybrid", "multibranch_scac_knn")
# --quick shrinks the multi-branch network so that a CPU step takes well under a second (the full one
# trains ~7 crops/s on 2 CPU cores); the GPU check runs the shipped config unchanged
QUICK_OVERRIDES = {"multibranch_scac_knn": ("extractor.backbone.conf.width=8", "extractor.backbone.conf.clip_seconds=1.0",
                                            "extractor.embedding_dim=16", "extractor.batch_size=8")}
PRECISIONS = ("fp32", "fp16", "bf16")
LOGMEL_TOLERANCE_DB = 1e-3
FAISS_TOLERANCE = 1e-5
NO_CUDA = "CUDA not available"
UNAVAILABLE, SKIPPED, OK, FAILED = "unavailable", "skipped", "ok", "failed"


# --- helpers ----------------------------------------------------------------------------------------
def say(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def finite(value: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf/None)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def unavailable(reason: str = NO_CUDA, status: str = UNAVAILABLE) -> dict[str, Any]:
    return {"status": status, "reason": reason}


def failed(exc: BaseException) -> dict[str, Any]:
    say(f"FAILED: {type(exc).__name__}: {exc}")
    traceback.print_exc()
    return {"status": FAILED, "reason": f"{type(exc).__name__}: {exc}"[:500]}


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


class GpuSampler:
    """The GPU's busy fraction (NVML ``utilization.gpu``: the share of the last sample period in which a kernel
    ran) sampled every ``interval`` s between :meth:`start` and :meth:`stop`, from ``pynvml`` when it imports,
    else from ``nvidia-smi``; ``source`` says which, or why none (then :meth:`stop` returns None)."""

    def __init__(self, device: str, interval: float = 0.1):
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self.index = 0
        if device.startswith("cuda"):
            import torch

            self.index = torch.device(device).index or 0
        self.source = self._pick(device)

    def _pick(self, device: str) -> str:
        if not device.startswith("cuda"):
            return f"none: {NO_CUDA}"
        try:
            import pynvml  # optional (pip install nvidia-ml-py)

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self._nvml = pynvml
            return "nvml"
        except Exception:  # noqa: BLE001 - not installed or no driver access: try nvidia-smi
            pass
        if shutil.which("nvidia-smi"):
            return "nvidia-smi"
        return "none: neither pynvml nor nvidia-smi available"

    def start(self) -> "GpuSampler":
        self.samples = []
        self._stop.clear()
        if self.source == "nvml":
            self._thread = threading.Thread(target=self._poll_nvml, daemon=True)
            self._thread.start()
        elif self.source == "nvidia-smi":
            ms = max(int(self.interval * 1000), 50)
            self._proc = subprocess.Popen(
                ["nvidia-smi", "-i", str(self.index), "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", str(ms)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read_smi, daemon=True)
            self._thread.start()
        return self

    def _poll_nvml(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu / 100.0)
            self._stop.wait(self.interval)

    def _read_smi(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if self._stop.is_set():
                break
            try:
                self.samples.append(float(line.strip()) / 100.0)
            except ValueError:
                continue

    def stop(self) -> dict[str, Any] | None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if not self.samples:
            return None
        return {"mean": finite(sum(self.samples) / len(self.samples)), "samples": len(self.samples),
                "source": self.source}


class TimedLoader:
    """Wraps a DataLoader; ``wait`` sums the seconds the consumer waited for the next batch. The training loop
    reads the loss of every step (a device sync), so time spent here is time the GPU had nothing queued."""

    def __init__(self, loader: Any):
        self.loader, self.wait = loader, 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):  # noqa: ANN204
        it = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                self.wait += time.perf_counter() - start
                return
            self.wait += time.perf_counter() - start
            yield batch


# --- 1. data -------------------------------------------------------------------------------------------
def make_data(work: Path, machine: str, quick: bool, train_clips: int | None, seed: int) -> dict[str, Any]:
    from hybrid_asd.data.synthetic import generate

    preset = "tiny" if quick else "full"
    overrides = {} if train_clips is None else {"n_source_train": int(train_clips)}
    root = work / (f"data_{preset}_{machine}_seed{seed}" + (f"_n{train_clips}" if train_clips else ""))
    record = root / "synthetic.json"
    cores = os.cpu_count() or 1
    workers = 1 if quick else cores
    if record.is_file():
        say(f"data: reusing {root}")
        seconds, reused = 0.0, True
    else:
        if root.exists():
            shutil.rmtree(root)
        say(f"data: generating the {preset} preset for {machine} with {workers} worker(s) into {root}")
        start = time.perf_counter()
        generate(root, preset=preset, seed=seed, machines=[machine], progress=False, workers=workers, **overrides)
        seconds, reused = time.perf_counter() - start, False
    n_clips = sum(1 for _ in (root / machine).rglob("*.wav"))
    return {"status": OK, "root": str(root), "preset": preset, "machine": machine, "seed": seed,
            "overrides": overrides, "clips": n_clips, "workers": workers, "cpu_cores": cores,
            "seconds": finite(seconds), "reused": reused}


# --- 2. log-mel ----------------------------------------------------------------------------------------
def synthetic_waves(n: int, seconds: float, sr: int = 16000, seed: int = 0):  # noqa: ANN201
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    waves = []
    for _ in range(n):
        f0 = rng.uniform(80, 400)
        y = sum(0.05 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 8))
        waves.append((y + rng.normal(0, 0.02, t.size)).astype(np.float32))
    return waves


def logmel_rate(cache: Any, waves: list, batch: int, device: str, repeat: int) -> tuple[float, list]:
    """Best clips/s of ``repeat`` passes of ``logmel_batch`` over ``waves`` in batches, and the last outputs."""
    out: list = []
    cache.logmel_batch(waves[:batch])  # warm-up (cuFFT plans, oneDNN kernels)
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = []
        for i in range(0, len(waves), batch):
            out += cache.logmel_batch(waves[i:i + batch])
        sync(device)
        best = min(best, time.perf_counter() - start)
    return len(waves) / best, out


def check_logmel(quick: bool, cuda: bool, work: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from hybrid_asd.config import Config
    from hybrid_asd.features.cache import FeatureCache
    from hybrid_asd.features.logmel import LogMel

    n, seconds, batch = (16, 3.0, 8) if quick else (256, 10.0, 32)
    config = Config()
    waves = synthetic_waves(n, seconds)
    cpu = FeatureCache(config.features, config.data, cache_dir=work / "logmel_cache", device="cpu")
    cpu_rate, cpu_out = logmel_rate(cpu, waves, batch, "cpu", 1 if quick else 2)
    reference = LogMel.from_config(config.features, config.data.sample_rate)
    with torch.no_grad():
        ref64 = [reference(torch.from_numpy(w.astype(np.float64))).numpy() for w in waves[: min(n, 16)]]
    diff64 = max(float(np.abs(a - b).max()) for a, b in zip(cpu_out, ref64))
    result: dict[str, Any] = {
        "status": OK, "clips": n, "clip_seconds": seconds, "batch": batch, "torch_threads": torch.get_num_threads(),
        "cpu": {"status": OK, "clips_per_s": finite(cpu_rate)},
        "max_diff_db_cpu_float32_vs_float64": finite(diff64),
    }
    if not cuda:
        result["gpu"] = unavailable()
        result["max_diff_db_gpu_vs_cpu"] = None
        result["pass"] = None
        return result
    gpu = FeatureCache(config.features, config.data, cache_dir=work / "logmel_cache", device="cuda")
    gpu_rate, gpu_out = logmel_rate(gpu, waves, batch, "cuda", 1 if quick else 3)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(cpu_out, gpu_out))
    result["gpu"] = {"status": OK, "clips_per_s": finite(gpu_rate)}
    result["max_diff_db_gpu_vs_cpu"] = finite(diff)
    result["pass"] = bool(diff < LOGMEL_TOLERANCE_DB)
    return result


# how the markdown names the GPU search that ran (check_faiss's "gpu_backend")
GPU_SEARCH_NOTES = {"faiss": " (FAISS GPU index)", "torch": " (torch search: no faiss-gpu)"}


# --- 3. FAISS ------------------------------------------------------------------------------------------
def check_faiss(quick: bool, cuda: bool) -> dict[str, Any]:
    import numpy as np

    from hybrid_asd.detectors.knn import KNNDetector, faiss_gpu_available, import_faiss

    n_bank, dim, n_query, k = (2000, 128, 200, 1) if quick else (100_000, 128, 10_000, 1)
    faiss = import_faiss()
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((n_bank, dim), dtype=np.float32)
    queries = rng.standard_normal((n_query, dim), dtype=np.float32)
    result: dict[str, Any] = {"status": OK, "bank": [n_bank, dim], "queries": n_query, "k": k, "metric": "cosine",
                              "faiss": getattr(faiss, "__version__", "?"), "faiss_cpu_threads": faiss.omp_get_max_threads()}

    def run(use_gpu: bool) -> tuple[dict[str, Any], Any, Any]:
        det = KNNDetector(k=k, metric="cosine", use_gpu=use_gpu)
        start = time.perf_counter()
        det.fit(bank)
        fit_s = time.perf_counter() - start
        det.decision_function(queries[:100])  # warm-up
        best = float("inf")
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            scores = det.decision_function(queries)
            best = min(best, time.perf_counter() - start)
        _, ids = det.index_.search(det._prepare(queries), k)
        return {"status": OK, "queries_per_s": finite(n_query / best), "fit_s": finite(fit_s)}, scores, ids

    result["cpu"], cpu_scores, cpu_ids = run(False)
    if not cuda:
        result["gpu"], result["max_abs_diff"], result["ids_equal_fraction"], result["pass"] = unavailable(), None, None, None
        return result
    # without faiss-gpu, use_gpu=true searches in torch on the CUDA device (KNNDetector's TorchFlatIndex)
    result["gpu_backend"] = "faiss" if faiss_gpu_available() else "torch"
    result["gpu"], gpu_scores, gpu_ids = run(True)
    diff = float(np.abs(np.asarray(cpu_scores) - np.asarray(gpu_scores)).max())
    result["max_abs_diff"] = finite(diff)
    result["ids_equal_fraction"] = finite(float((cpu_ids == gpu_ids).mean()))
    result["pass"] = bool(diff <= FAISS_TOLERANCE)
    return result


# --- 4. extractor training ------------------------------------------------------------------------------
def crop_dataset(quick: bool, samples: int, classes: int):  # noqa: ANN201
    """A CropDataset of synthetic waveforms (``input: waveform`` networks; labels cycle over ``classes``)."""
    import numpy as np

    from hybrid_asd.extractor.waveforms import CropDataset

    n = 8 if quick else 64
    seconds = max(samples / 16000, 3.0 if quick else 10.0)
    waves = synthetic_waves(n, seconds, seed=1)
    return CropDataset(waves, np.arange(n) % classes, samples, repeats=np.full(n, 8 if quick else 64), seed=0)


def training_dataset(quick: bool, frames: int, hop: int):  # noqa: ANN201
    """A PatchDataset of real log-mel patches of synthetic clips (labels cycle over 6 classes, valid for every
    config's head: throughput does not depend on the label values)."""
    import numpy as np

    from hybrid_asd.config import Config
    from hybrid_asd.extractor.dataset import PatchDataset
    from hybrid_asd.features.cache import FeatureCache

    n, seconds = (8, 3.0) if quick else (64, 10.0)
    config = Config()
    cache = FeatureCache(config.features, config.data, cache_dir=tempfile.mkdtemp(), device="cpu")
    mels = cache.logmel_batch(synthetic_waves(n, seconds, seed=1))
    labels = np.arange(n) % n_classes("section")  # the fewest classes of any config's head
    repeats = np.full(n, 8 if quick else 64)  # the loop needs more patches than the clips have
    return PatchDataset(mels, labels, frames, hop, repeats=repeats, seed=0), mels


def extractor_conf(config_name: str, overrides: tuple[str, ...] = ()):  # noqa: ANN201
    from hybrid_asd.config import load_config

    conf = load_config(CONFIG_DIR / f"{config_name}.yaml", overrides)
    return conf.extractor, conf.features


def input_samples(conf: Any) -> int:
    """Crop length of a waveform network, read off the network itself."""
    from hybrid_asd.extractor.backbones import build_model

    return int(build_model(conf, n_classes=n_classes(conf.labels)).backbone.samples)


def n_classes(labels: str) -> int:
    return 12 if labels == "section_domain" else 6  # 6 sections (x 2 domains), as DCASE 2021


def autocast(device: str, precision: str):  # noqa: ANN201
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype or torch.float32,
                          enabled=dtype is not None)


def model_rate(conf: Any, x: Any, y: Any, device: str, precision: str, seconds: float) -> dict[str, Any]:
    """Patches/s of forward + backward + optimiser step on one batch resident on ``device``."""
    import torch

    from hybrid_asd.extractor.backbones import build_model
    from hybrid_asd.extractor.train import make_optimizer

    torch.manual_seed(0)
    model = build_model(conf, n_classes=n_classes(conf.labels)).to(device)  # its layout: extractor.channels_last
    model.train()
    opt = make_optimizer(model, conf)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.startswith("cuda"))

    def step() -> None:
        with autocast(device, precision):
            _, logits = model(x, y)
        loss = model.head.loss_from_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(3):  # warm-up: kernel choice, allocator
        step()
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    steps, start = 0, time.perf_counter()
    while True:  # chunks of 5 steps between syncs, until ``seconds`` have passed
        for _ in range(5):
            step()
        steps += 5
        sync(device)
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    out = {"model_patches_per_s": finite(steps * len(x) / elapsed), "model_steps": steps}
    if device.startswith("cuda"):
        out["model_peak_memory_mib"] = finite(torch.cuda.max_memory_allocated(device) / 2**20)
    return out


def pipeline_rate(conf: Any, dataset: Any, device: str, precision: str, n_patches: int, *, workers: int = 0,
                  pin_memory: bool = False, sampler: GpuSampler | None = None) -> dict[str, Any]:
    """Patches/s of the project's training loop (``train_one_epoch`` over ``make_loader``) on ``n_patches``."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Subset

    from hybrid_asd.extractor import ddp
    from hybrid_asd.extractor.backbones import build_model
    from hybrid_asd.extractor.dataset import identity_collate
    from hybrid_asd.extractor.train import make_loader, make_optimizer, train_one_epoch

    torch.manual_seed(0)
    model = build_model(conf, n_classes=n_classes(conf.labels)).to(device)
    opt = make_optimizer(model, conf)
    use_amp = precision == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def loader_of(n: int) -> Any:
        subset = Subset(dataset, range(min(n, len(dataset))))
        if pin_memory:  # make_loader's DataLoader plus pin_memory (not an option of the project)
            return DataLoader(subset, batch_size=conf.batch_size, shuffle=True, collate_fn=identity_collate,
                              num_workers=workers, pin_memory=True,
                              multiprocessing_context="spawn" if workers > 0 else None)
        return make_loader(subset, conf.batch_size, ddp.DistInfo(), shuffle=True, seed=0, num_workers=workers)[0]

    def run(loader: Any) -> None:
        train_one_epoch(model, model, loader, opt, scaler, device=device, use_amp=use_amp, mixup=conf.mixup,
                        rng=np.random.default_rng(0), desc="", progress=False)

    run(loader_of(conf.batch_size * 3))  # warm-up
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    timed = TimedLoader(loader_of(n_patches))
    if sampler is not None:
        sampler.start()
    start = time.perf_counter()
    run(timed)
    sync(device)
    elapsed = time.perf_counter() - start
    busy = sampler.stop() if sampler is not None else None
    n = min(n_patches, len(dataset))
    out: dict[str, Any] = {"pipeline_patches_per_s": finite(n / elapsed), "pipeline_patches": n,
                           "pipeline_seconds": finite(elapsed), "loader_wait_fraction": finite(timed.wait / elapsed),
                           "gpu_busy_fraction": busy}
    if device.startswith("cuda"):
        out["pipeline_peak_memory_mib"] = finite(torch.cuda.max_memory_allocated(device) / 2**20)
    return out


def check_training(quick: bool, cuda: bool) -> list[dict[str, Any]]:
    import torch

    device = "cuda" if cuda else "cpu"
    model_seconds, pipe_seconds = (0.5, 1.0) if quick else (2.0, 3.0)
    sampler = GpuSampler(device)
    rows: list[dict[str, Any]] = []
    confs = {name: extractor_conf(name, QUICK_OVERRIDES.get(name, ()) if quick else ()) for name in TRAINING_CONFIGS}
    features = confs["demo_hybrid"][1]
    patches, _ = training_dataset(quick, features.patch_frames, features.patch_hop)
    chosen = QUICK_TRAINING_CONFIGS if quick else TRAINING_CONFIGS
    for name in TRAINING_CONFIGS:
        conf = confs[name][0]
        # waveform networks get fixed-length crops of whole clips instead of log-mel patches
        dataset = crop_dataset(quick, input_samples(conf), n_classes(conf.labels)) if conf.input == "waveform" else patches
        base = {"config": name, "backbone": conf.backbone.name, "head": conf.head.name, "batch": conf.batch_size,
                "input": conf.input, "device": device}
        for precision in PRECISIONS:
            row = {**base, "precision": precision, "variant": "default"}
            if name not in chosen:
                rows.append({**row, **unavailable("--quick runs tiny_cnn only", SKIPPED)})
                continue
            if precision != "fp32" and not cuda:
                rows.append({**row, **unavailable()})
                continue
            say(f"training: {name} ({conf.backbone.name}, batch {conf.batch_size}) {precision} on {device}")
            try:
                x, y = dataset.__getitems__(list(range(conf.batch_size)))
                x, y = x.to(device), y.to(device)
                row.update(status=OK, **model_rate(conf, x, y, device, precision, model_seconds))
                if precision == "bf16":
                    row["pipeline"] = "n/a: the training loop's AMP is float16 (extractor.amp)"
                else:
                    rate = row["model_patches_per_s"] or 1.0
                    n = int(min(max(rate * pipe_seconds, 10 * conf.batch_size), len(dataset)))
                    row.update(pipeline_rate(conf, dataset, device, precision, n, sampler=sampler))
                    row["pipeline_over_model"] = finite(row["pipeline_patches_per_s"] / rate)
            except Exception as exc:  # noqa: BLE001 - one failed row must not lose the rest of a GPU run
                row.update(failed(exc))
                if cuda:
                    torch.cuda.empty_cache()
            rows.append(row)
    # variants of the e2e network in float16: loader options that could feed the GPU better (measured, not yet set)
    # and the NCHW layout (every other row runs the default channels-last)
    conf, dataset = confs[E2E_CONFIG][0], patches
    base = {"config": E2E_CONFIG, "backbone": conf.backbone.name, "head": conf.head.name, "batch": conf.batch_size,
            "device": device, "precision": "fp16"}
    # (label, the network's settings, pipeline_rate options)
    variants = (("loader workers 2 (spawn)", conf, {"workers": 2}), ("pinned memory", conf, {"pin_memory": True}),
                ("NCHW layout (channels_last: false)", conf.model_copy(update={"channels_last": False}), {}))
    for label, variant_conf, kwargs in variants:
        row = {**base, "variant": label}
        if quick or not cuda:
            rows.append({**row, **(unavailable("--quick runs tiny_cnn only", SKIPPED) if quick else unavailable())})
            continue
        say(f"training: {E2E_CONFIG} fp16, {label}")
        try:
            reference = next(r for r in rows if r["config"] == E2E_CONFIG and r["precision"] == "fp16"
                             and r.get("status") == OK)
            n = int(min(max(reference["model_patches_per_s"] * pipe_seconds, 10 * conf.batch_size), len(dataset)))
            row.update(status=OK, **pipeline_rate(variant_conf, dataset, device, "fp16", n, sampler=sampler,
                                                  **kwargs))
        except Exception as exc:  # noqa: BLE001
            row.update(failed(exc))
        rows.append(row)
    return rows


# --- 5. end to end -------------------------------------------------------------------------------------
def e2e_epochs(rows: list[dict[str, Any]], n_windows: int, config_epochs: int, seconds_left: float,
               n_clips: int, logmel_cpu_rate: float | None) -> tuple[int, dict[str, Any]]:
    """Epochs that fit ``seconds_left``, from the measured fp16 pipeline rate of the e2e network."""
    rate = next((r.get("pipeline_patches_per_s") for r in rows if r["config"] == E2E_CONFIG
                 and r["precision"] == "fp16" and r["variant"] == "default" and r.get("status") == OK), None)
    if not rate:  # unknown speed: a short run rather than a blown budget
        return min(2, config_epochs), {"basis": "no fp16 pipeline rate measured: 2 epochs"}
    epoch_s = 1.1 * n_windows / rate  # + validation
    other_s = 60.0 + (n_clips / logmel_cpu_rate if logmel_cpu_rate else 60.0) + n_clips * 32 / (3 * rate)
    fit = int((seconds_left - other_s) // epoch_s)
    return max(1, min(config_epochs, fit)), {
        "basis": "measured fp16 pipeline rate", "patches_per_s": finite(rate), "projected_epoch_s": finite(epoch_s),
        "projected_other_stages_s": finite(other_s), "projected_config_epochs_s": finite(config_epochs * epoch_s)}


def check_e2e(data: dict[str, Any], work: Path, quick: bool, cuda: bool, rows: list[dict[str, Any]],
              epochs: int | None, deadline: float, logmel_cpu_rate: float | None, seed: int) -> dict[str, Any]:
    from hybrid_asd.config import load_config
    from hybrid_asd.experiment import Experiment
    from hybrid_asd.pipeline import check_data, run_stage
    from hybrid_asd.stages import STAGES
    from hybrid_asd.utils import seed_everything

    device = "cuda" if cuda else "cpu"
    root, machine = Path(data["root"]), data["machine"]
    overrides = [f"data.root={root.resolve()}", f"data.machine={machine}", f"seed={seed}", f"device={device}"]
    if quick:  # the tests' tiny settings (tests/test_pipeline.py)
        overrides += ["extractor.backbone.name=tiny_cnn", "extractor.backbone.conf={}", "extractor.batch_size=32",
                      "extractor.max_patches_per_clip=4", "detectors.0.adaptation.n_splits=2",
                      "detectors.1.adaptation.n_splits=2"]
    config_epochs = load_config(CONFIG_DIR / f"{E2E_CONFIG}.yaml").extractor.epochs
    result: dict[str, Any] = {"config": E2E_CONFIG, "machine": machine, "device": device,
                              "config_epochs": config_epochs}
    exp = Experiment(work / "e2e" / f"{E2E_CONFIG}_{machine}")
    if exp.root.exists():
        shutil.rmtree(exp.root)
    # prepare first: the number of training windows decides how many epochs fit
    config = load_config(CONFIG_DIR / f"{E2E_CONFIG}.yaml", overrides + ["extractor.epochs=1"])
    seed_everything(config.seed)
    check_data(config)
    exp.init(config)
    stages: list[dict[str, Any]] = []
    sampler = GpuSampler(device)

    def timed_stage(name: str, cfg: Any) -> Any:
        say(f"e2e: stage {name}")
        sampler.start()
        start = time.perf_counter()
        out = run_stage(exp, cfg, name, progress=False, force=True)
        stages.append({"stage": name, "seconds": finite(time.perf_counter() - start), "gpu_busy": sampler.stop()})
        return out

    timed_stage("prepare", config)
    train = exp.train_clips()
    n_train, n_target = len(train), sum(c.domain == "target" for c in train)
    # windows per epoch, estimated: 90 % of the clips train (val_fraction 0.1), target clips repeated
    # target_oversample times, 32 patches per 10 s clip
    n_windows = int((0.9 * (n_train - n_target) + config.extractor.target_oversample * n_target) * 32)
    if quick:
        chosen, planning = 1, {"basis": "--quick: one epoch"}
    elif epochs is not None:
        chosen, planning = epochs, {"basis": "--e2e-epochs"}
    else:
        chosen, planning = e2e_epochs(rows, n_windows, config_epochs, deadline - time.perf_counter(),
                                      data["clips"], logmel_cpu_rate)
    say(f"e2e: {chosen} of {config_epochs} epochs ({planning['basis']})")
    result.update(epochs=chosen, scaled=chosen != config_epochs, planning=planning, train_clips=n_train,
                  test_clips=len(exp.test_clips()))
    config = load_config(CONFIG_DIR / f"{E2E_CONFIG}.yaml", overrides + [f"extractor.epochs={chosen}"])
    exp.init(config, overwrite=True)
    evaluated = None
    for stage in STAGES[1:]:
        evaluated = timed_stage(stage.name, config)
    result["stages"] = stages
    train_log = exp.extractor.train_log
    if train_log.is_file():
        import csv

        with open(train_log) as handle:
            secs = [float(r["seconds"]) for r in csv.DictReader(handle)]
        result["epoch_seconds"] = [finite(s) for s in secs]
        result["projected_config_epochs_train_s"] = finite(sum(secs) / len(secs) * config_epochs) if secs else None
    result["official_score"] = {k: finite(v.official_score) for k, v in (evaluated or {}).items()}
    result["wall_s"] = finite(sum(s["seconds"] or 0.0 for s in stages))
    result["experiment"] = str(exp.root)
    result["status"] = OK
    return result


# --- report --------------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if digits >= 4 and value != 0 and abs(value) < 10 ** -(digits - 2):
            return f"{value:.1e}"
        return f"{value:,.{digits}f}"
    return str(value)


def cell(part: dict[str, Any], key: str, digits: int = 1) -> str:
    if part.get("status") != OK:
        return f"{part.get('status')}: {part.get('reason', '')}"
    return fmt(part.get(key), digits)


def busy(value: dict[str, Any] | None) -> str:
    return "-" if not value or value.get("mean") is None else f"{100 * value['mean']:.0f}% ({value['source']})"


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# GPU check ({report['mode']})", "",
             f"{env['device_name']}; torch {env['torch']} (CUDA {env['torch_cuda']}), faiss {env['faiss']} "
             f"(GPU support: {env['faiss_gpu']}), {env['cpu_cores']} CPU cores, Python {env['python']}; "
             f"TF32 matmul {env['tf32_matmul']}, cuDNN TF32 {env['tf32_cudnn']}. Total {fmt(report['wall_s'])} s.", ""]
    data = report["data"]
    lines += ["## Data", ""]
    if data.get("status") == OK:
        lines += [f"`{data['preset']}` preset, {data['machine']}: {data['clips']:,} clips, generated in "
                  f"{fmt(data['seconds'])} s with {data['workers']} worker(s)" + (" (reused)" if data["reused"] else ""),
                  ""]
    else:
        lines += [f"{data.get('status')}: {data.get('reason')}", ""]
    lm = report["logmel"]
    lines += ["## Log-mel front end (FeatureCache.logmel_batch)", "",
              "| clips | batch | CPU clips/s | GPU clips/s | GPU / CPU | max diff GPU vs CPU (dB) | CPU f32 vs f64 (dB) | pass (< 1e-3 dB) |",
              "|---|---|---|---|---|---|---|---|"]
    if lm.get("status") == OK:
        ratio = (lm["gpu"]["clips_per_s"] / lm["cpu"]["clips_per_s"]
                 if lm["gpu"].get("status") == OK and lm["cpu"]["clips_per_s"] else None)
        lines.append(f"| {lm['clips']} x {lm['clip_seconds']:g} s | {lm['batch']} | {cell(lm['cpu'], 'clips_per_s')} | "
                     f"{cell(lm['gpu'], 'clips_per_s')} | {fmt(ratio)} | {fmt(lm['max_diff_db_gpu_vs_cpu'], 6)} | "
                     f"{fmt(lm['max_diff_db_cpu_float32_vs_float64'], 6)} | {fmt(lm['pass'])} |")
    else:
        lines.append(f"| {lm.get('status')}: {lm.get('reason')} | | | | | | | |")
    fa = report["faiss"]
    lines += ["", "## FAISS exact kNN (KNNDetector, cosine)", "",
              "| bank | queries | k | CPU queries/s | GPU queries/s | max score diff | equal ids | pass (<= 1e-5) |",
              "|---|---|---|---|---|---|---|---|"]
    if fa.get("status") == OK:
        lines.append(f"| {fa['bank'][0]:,} x {fa['bank'][1]} | {fa['queries']:,} | {fa['k']} | {cell(fa['cpu'], 'queries_per_s')} | "
                     f"{cell(fa['gpu'], 'queries_per_s')}{GPU_SEARCH_NOTES.get(fa.get('gpu_backend'), '')} | {fmt(fa['max_abs_diff'], 7)} | "
                     f"{fmt(fa['ids_equal_fraction'], 4)} | {fmt(fa['pass'])} |")
    else:
        lines.append(f"| {fa.get('status')}: {fa.get('reason')} | | | | | | | |")
    lines += ["", "## Extractor training (patches/s; crops/s for waveform networks)", "",
              "| config | backbone | batch | precision | variant | model | pipeline | pipeline / model | loader wait | GPU busy | peak memory MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["training"]:
        head = f"| {r['config']} | {r['backbone']} | {r['batch']} | {r['precision']} | {r['variant']} |"
        if r.get("status") != OK:
            lines.append(f"{head} {r.get('status')}: {r.get('reason')} | | | | | |")
            continue
        pipe = r.get("pipeline") or fmt(r.get("pipeline_patches_per_s"))
        wait = r.get("loader_wait_fraction")
        memory = max((v for v in (r.get("model_peak_memory_mib"), r.get("pipeline_peak_memory_mib")) if v is not None),
                     default=None)
        lines.append(f"{head} {fmt(r.get('model_patches_per_s'))} | {pipe} | {fmt(r.get('pipeline_over_model'), 2)} | "
                     f"{'-' if wait is None else f'{100 * wait:.0f}%'} | {busy(r.get('gpu_busy_fraction'))} | "
                     f"{fmt(memory, 0)} |")
    e2e = report["end_to_end"]
    lines += ["", f"## End to end: {E2E_CONFIG} on one machine type", ""]
    if e2e.get("status") != OK:
        lines.append(f"{e2e.get('status')}: {e2e.get('reason')}")
    else:
        plan = e2e["planning"]
        lines += [f"{e2e['machine']}, {e2e['train_clips']:,} training and {e2e['test_clips']:,} test clips on {e2e['device']}; "
                  f"{e2e['epochs']} of the config's {e2e['config_epochs']} epochs ({plan['basis']})"
                  + (f"; projected training time of all {e2e['config_epochs']} epochs: "
                     f"{fmt(e2e.get('projected_config_epochs_train_s'))} s" if e2e.get("scaled") else "") + ".", "",
                  "| stage | seconds | GPU busy |", "|---|---|---|"]
        for s in e2e["stages"]:
            lines.append(f"| {s['stage']} | {fmt(s['seconds'])} | {busy(s['gpu_busy'])} |")
        lines.append(f"| total | {fmt(e2e['wall_s'])} | |")
        scores = ", ".join(f"{k} {fmt(v, 4)}" for k, v in e2e["official_score"].items())
        lines += ["", f"Official score: {scores}."]
    checks = report["checks"]
    lines += ["", "## Checks", "", "| check | result |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in checks.items()]
    return "\n".join(lines) + "\n"


def environment(cuda: bool) -> dict[str, Any]:
    import torch

    import hybrid_asd

    try:
        from hybrid_asd.detectors.knn import faiss_gpu_available, import_faiss

        faiss_version = getattr(import_faiss(), "__version__", "?")
        faiss_gpu = faiss_gpu_available() if cuda else False
    except ImportError:
        faiss_version, faiss_gpu = "not installed", False
    return {
        "hybrid_asd": hybrid_asd.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": cuda,
        "device_name": torch.cuda.get_device_name(0) if cuda else f"CPU only ({NO_CUDA})",
        "gpu_count": torch.cuda.device_count() if cuda else 0, "faiss": faiss_version, "faiss_gpu": faiss_gpu,
        "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32), "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark), "platform": platform.platform(),
    }


def section(name: str, fn: Callable[[], Any]) -> Any:
    say(f"--- {name}")
    start = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - report it and go on with the next section
        return failed(exc)
    say(f"--- {name} done in {time.perf_counter() - start:.1f} s")
    return out


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The pass/fail lines: None where the check could not run."""
    lm, fa, e2e = report["logmel"], report["faiss"], report["end_to_end"]
    failures = [name for name in ("data", "logmel", "faiss", "end_to_end") if report[name].get("status") == FAILED]
    failures += [f"training {r['config']} {r['precision']} {r['variant']}" for r in report["training"]
                 if r.get("status") == FAILED]
    return {
        "logmel_gpu_vs_cpu_below_1e-3_db": lm.get("pass"),
        "faiss_gpu_equals_cpu_1e-5": fa.get("pass"),
        "end_to_end_ran": e2e.get("status") == OK if e2e.get("status") != SKIPPED else None,
        "failed_sections": ", ".join(failures) or "none",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("exp/gpu_check"), help="where gpu_check.json/.md go")
    parser.add_argument("--work", type=Path, default=None, help="data, caches and the e2e experiment (default OUT/work)")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run: tiny_cnn on tiny data, tiny sizes (GPU rows unavailable without CUDA)")
    parser.add_argument("--machine", default="fan", help="machine type of the end-to-end run (default fan)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="wall-time budget of the whole check; the e2e run trains as many epochs as fit (default 480)")
    parser.add_argument("--e2e-epochs", type=int, default=None,
                        help="force this many e2e training epochs (default: the config's 20 when they fit the budget)")
    parser.add_argument("--e2e-train-clips", type=int, default=None,
                        help="scale the e2e data down: source training clips per section (default: the preset's)")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the data generation and end-to-end run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        print(f"gpu_check: {NO_CUDA} (torch {torch.__version__}, built for CUDA {torch.version.cuda}); run it on a "
              "machine with a CUDA GPU, or use --quick for the CPU smoke run", file=sys.stderr)
        return 2
    if args.quick:
        # OpenBLAS threads busy-wait on a shared CPU: the e2e fit stage (GMM, 128 x 128 Cholesky factorisations)
        # took 9 s with 2 threads and 0.6 s with 1 on the project's loaded 2-core machine
        try:
            from threadpoolctl import threadpool_limits  # a scikit-learn dependency

            threadpool_limits(1, user_api="blas")
        except ImportError:
            pass
    start = time.perf_counter()
    deadline = start + args.budget_s
    out = args.out
    work = args.work or out / "work"
    work.mkdir(parents=True, exist_ok=True)
    os.environ["HYBRID_ASD_CACHE"] = str((work / "feature_cache").resolve())
    report: dict[str, Any] = {"schema": SCHEMA, "mode": "quick" if args.quick else "full",
                              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                              "environment": environment(cuda)}
    say(f"{report['environment']['device_name']}, torch {torch.__version__}, mode {report['mode']}")
    if args.skip_e2e:
        report["data"] = unavailable("--skip-e2e", SKIPPED)
    else:
        report["data"] = section("data", lambda: make_data(work, args.machine, args.quick, args.e2e_train_clips,
                                                           args.seed))
    report["logmel"] = section("log-mel", lambda: check_logmel(args.quick, cuda, work))
    report["faiss"] = section("faiss", lambda: check_faiss(args.quick, cuda))
    training = section("training", lambda: check_training(args.quick, cuda))
    report["training"] = training if isinstance(training, list) else [
        {"config": "-", "backbone": "-", "batch": "-", "precision": "-", "variant": "-", **training}]
    if report["data"].get("status") != OK:
        report["end_to_end"] = (report["data"] if report["data"].get("status") == SKIPPED
                                else unavailable("no data", FAILED))
    else:
        cpu_rate = report["logmel"].get("cpu", {}).get("clips_per_s") if report["logmel"].get("status") == OK else None
        report["end_to_end"] = section("end to end", lambda: check_e2e(
            report["data"], work, args.quick, cuda, report["training"], args.e2e_epochs, deadline, cpu_rate, args.seed))
    report["wall_s"] = finite(time.perf_counter() - start)
    report["checks"] = summarise(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    text = markdown(report)
    (out / "gpu_check.md").write_text(text)
    print(text, flush=True)
    say(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} in {report['wall_s']:.0f} s")
    checks = report["checks"]
    bad = checks["failed_sections"] != "none" or False in (checks["logmel_gpu_vs_cpu_below_1e-3_db"],
                                                           checks["faiss_gpu_equals_cpu_1e-5"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
