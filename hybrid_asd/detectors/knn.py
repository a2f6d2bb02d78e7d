"""k-nearest-neighbour distance to a memory bank of normal rows, on FAISS exact indexes.

On a GPU: FAISS's GPU index where faiss-gpu is installed, else (``use_gpu=True``) an exact search in
torch on the CUDA device with the same conventions (:class:`TorchFlatIndex`).

Distances: ``metric="cosine"`` L2-normalises rows and searches an inner-product index
(``IndexFlatIP``); the distance is ``1 - cos`` (0..2). ``metric="l2"`` searches ``IndexFlatL2``
and reports the Euclidean distance (the square root of what FAISS returns).
Score per row: the mean of the k nearest distances (``aggregate="mean"``) or the k-th one
(``"kth"``).

Density rescaling (``density_rescaled=True``), after Wilkinghoff et al., "Keeping the balance:
anomaly score calculation for domain generalization", ICASSP 2025: every bank point ``y`` gets
a local scale ``s(y)``, the mean distance from ``y`` to its ``density_k`` nearest other bank
points (computed at fit); the distance from a query ``x`` to ``y`` becomes ``d(x, y) / s(y)``,
and the score aggregates the k smallest rescaled distances over the bank. A sparse region of
the bank (e.g. a target domain with few clips) then no longer inflates the scores of its
normal rows. The exact version compares every query with every bank point (numpy matrix
products in batches; fine for per-section banks of thousands); ``rescale_candidates=N``
instead rescales only the N raw nearest neighbours from FAISS (approximate, for large banks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.detectors.base import Detector, warn
from hybrid_asd.detectors.registry import register
from hybrid_asd.utils import atomic_path

FAISS_MISSING = "faiss is not installed: pip install 'hybrid_asd[cpu]' (or [gpu] with CUDA); never both"
METRICS = ("cosine", "l2")
AGGREGATES = ("mean", "kth")
_EPS = 1e-12
_PAIRWISE_ELEMENTS = 2**25


def import_faiss() -> Any:
    """Import faiss lazily (it is an optional extra) with an actionable message when missing."""
    try:
        import faiss  # lazy: faiss is an optional extra ([cpu] or [gpu]); a clear error names it
    except ImportError as exc:
        raise ImportError(FAISS_MISSING) from exc
    return faiss


def faiss_gpu_available() -> bool:
    """True when the installed faiss has GPU support and sees a CUDA device."""
    faiss = import_faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def torch_cuda_available() -> bool:
    """True when torch sees a CUDA device (the kNN's GPU search without faiss-gpu)."""
    import torch  # lazy: the registry (and config loading) must not load torch
    return torch.cuda.is_available()


class TorchFlatIndex:
    """Exact search on a torch device with a FAISS flat index's interface and conventions.

    ``search(Q, k)`` returns what ``IndexFlatIP`` (cosine: inner products, largest first) or ``IndexFlatL2``
    (squared L2 distances, smallest first) returns, and int64 bank ids. Written by hand because FAISS's own GPU
    build is often not installable: its PyPI wheels exist for CUDA 12 only, while torch brings its CUDA with it;
    an exact flat search is one matrix product and a top-k. The CPU index stays beside it (saving, reloading).
    """

    def __init__(self, cpu_index: Any, metric: str, device: str):
        import torch  # lazy: the registry (and config loading) must not load torch
        self.cpu_index = cpu_index
        self.metric = metric
        self.ntotal = int(cpu_index.ntotal)
        self.device = torch.device(device)
        self.bank = torch.from_numpy(cpu_index.reconstruct_n(0, self.ntotal)).to(self.device)
        self.bank_sq = (self.bank * self.bank).sum(dim=1) if metric == "l2" else None  # cosine needs no norms

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch  # lazy: the registry (and config loading) must not load torch
        q = torch.from_numpy(np.ascontiguousarray(Q, dtype=np.float32)).to(self.device)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 keeps 10 mantissa bits: not an exact search
        try:
            with torch.no_grad():
                products = q @ self.bank.T
                if self.metric == "cosine":
                    values, ids = products.topk(k, dim=1, largest=True, sorted=True)
                else:
                    squared = (q * q).sum(dim=1, keepdim=True) + self.bank_sq[None, :] - 2.0 * products
                    values, ids = squared.topk(k, dim=1, largest=False, sorted=True)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        return values.cpu().numpy(), ids.cpu().numpy().astype(np.int64)


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, _EPS)


@register
class KNNDetector(Detector):
    """k-NN distance (FAISS, exact) with optional density rescaling; see the module docstring.

    Parameters: ``k`` neighbours; ``metric`` "cosine" | "l2"; ``aggregate`` "mean" | "kth";
    ``density_rescaled`` and its ``density_k`` (neighbours defining a bank point's local scale,
    4 as in the paper's code) and ``rescale_candidates`` (None = exact); ``batch_size`` query
    rows per search call; ``use_gpu`` "auto" (FAISS GPU index when faiss-gpu and a CUDA device are
    present, else the CPU), true (the GPU: FAISS's GPU index, or without faiss-gpu an exact search
    in torch on the CUDA device, :class:`TorchFlatIndex`; an error without CUDA) or false.
    With fewer bank rows than ``k`` all of them are used, with a warning.
    A FAISS GPU index answers at most 2048 neighbours per query (``k``, ``rescale_candidates``).
    """

    name = "knn"

    def __init__(
        self,
        k: int = 1,
        metric: str = "cosine",
        aggregate: str = "mean",
        density_rescaled: bool = False,
        density_k: int = 4,
        rescale_candidates: int | None = None,
        batch_size: int = 4096,
        use_gpu: str | bool = "auto",
    ):
        self.k = k
        self.metric = metric
        self.aggregate = aggregate
        self.density_rescaled = density_rescaled
        self.density_k = density_k
        self.rescale_candidates = rescale_candidates
        self.batch_size = batch_size
        self.use_gpu = use_gpu

    # ---- parameters
    def _validate_params(self) -> None:
        for key in ("k", "density_k", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise self._bad_param(key, value, "an int >= 1")
        if self.metric not in METRICS:
            raise self._bad_param("metric", self.metric, f"one of {METRICS}")
        if self.aggregate not in AGGREGATES:
            raise self._bad_param("aggregate", self.aggregate, f"one of {AGGREGATES}")
        if not isinstance(self.density_rescaled, bool):
            raise self._bad_param("density_rescaled", self.density_rescaled, "true or false")
        rc = self.rescale_candidates
        if rc is not None and (not isinstance(rc, int) or rc < 1):
            raise self._bad_param("rescale_candidates", rc, "null or an int >= 1")
        if self.use_gpu not in ("auto", True, False):
            raise self._bad_param("use_gpu", self.use_gpu, "'auto', true or false")

    # ---- helpers
    def _prepare(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        return l2_normalise(X) if self.metric == "cosine" else X

    def _new_index(self, dim: int) -> Any:
        faiss = import_faiss()
        return faiss.IndexFlatIP(dim) if self.metric == "cosine" else faiss.IndexFlatL2(dim)

    def _place(self, cpu_index: Any) -> Any:
        """Move the index to the GPU when asked for (or 'auto' and faiss-gpu available)."""
        faiss = import_faiss()
        if self.use_gpu is False:
            return cpu_index
        if faiss_gpu_available():
            self._gpu_resources = faiss.StandardGpuResources()  # must outlive the index
            return faiss.index_cpu_to_gpu(self._gpu_resources, 0, cpu_index)
        if self.use_gpu is True:
            if not torch_cuda_available():
                raise ConfigError(f"{self._who()}: use_gpu=true but neither faiss nor torch sees a CUDA device")
            return TorchFlatIndex(cpu_index, self.metric, "cuda")
        return cpu_index

    def _to_distance(self, raw: np.ndarray) -> np.ndarray:
        """FAISS output -> distance (cosine: 1 - inner product; l2: sqrt of squared L2)."""
        raw = raw.astype(np.float64)
        if self.metric == "cosine":
            return np.clip(1.0 - raw, 0.0, 2.0)
        return np.sqrt(np.maximum(raw, 0.0))

    def _search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances (ascending) and bank indices of the k nearest bank rows, in query batches."""
        dists, ids = [], []
        for start in range(0, len(Q), self.batch_size):
            raw, idx = self.index_.search(Q[start : start + self.batch_size], k)
            dists.append(self._to_distance(raw))
            ids.append(idx)
        return np.concatenate(dists), np.concatenate(ids)

    def _pairwise(self, Q: np.ndarray, B: np.ndarray) -> np.ndarray:
        """All query-bank distances of one batch (same definitions as ``_to_distance``)."""
        Q64, B64 = Q.astype(np.float64), B.astype(np.float64)
        if self.metric == "cosine":
            return np.clip(1.0 - Q64 @ B64.T, 0.0, 2.0)
        sq = (Q64**2).sum(1)[:, None] + (B64**2).sum(1)[None, :] - 2.0 * Q64 @ B64.T
        return np.sqrt(np.maximum(sq, 0.0))

    def _aggregate(self, dists: np.ndarray) -> np.ndarray:
        """Rows of ascending distances -> one score per row."""
        return dists.mean(axis=1) if self.aggregate == "mean" else dists[:, -1]

    def _local_scale(self, bank: np.ndarray) -> np.ndarray:
        """Mean distance of each bank row to its ``density_k`` nearest other bank rows."""
        n = len(bank)
        if n == 1:
            warn(f"{self._who()}: density rescaling with a single bank row; its local scale is set to 1")
            return np.ones(1)
        k_ref = min(self.density_k, n - 1)
        if k_ref < self.density_k:
            warn(f"{self._who()}: density_k={self.density_k} but only {n} bank rows; using {k_ref}")
        dists, _ = self._search(bank, k_ref + 1)
        # Column 0 is the row itself (or an exact duplicate at distance 0, which is equivalent).
        return np.maximum(dists[:, 1:].mean(axis=1), _EPS)

    # ---- fit / score
    def _fit(self, X: np.ndarray, condition: np.ndarray | None) -> None:
        bank = self._prepare(X)
        if len(bank) < self.k:
            warn(f"{self._who()}: k={self.k} but only {len(bank)} bank rows; using all {len(bank)}")
        cpu_index = self._new_index(bank.shape[1])
        cpu_index.add(bank)
        self.index_ = self._place(cpu_index)
        self.n_bank_ = len(bank)
        self.k_ = min(self.k, len(bank))
        if self.density_rescaled:
            self.local_scale_ = self._local_scale(bank)
            self.bank_ = bank

    def _score(self, X: np.ndarray, condition: np.ndarray | None) -> np.ndarray:
        Q = self._prepare(X)
        if not self.density_rescaled:
            dists, _ = self._search(Q, self.k_)
            return self._aggregate(dists)
        candidates = self.rescale_candidates
        if candidates is not None and candidates < self.n_bank_:
            return self._rescaled_approximate(Q, max(candidates, self.k_))
        return self._rescaled_exact(Q)

    def _rescaled_exact(self, Q: np.ndarray) -> np.ndarray:
        out = []
        k = self.k_
        # Keep one batch's distance matrix (float64) near 256 MB whatever the bank size.
        rows = max(1, min(self.batch_size, _PAIRWISE_ELEMENTS // self.n_bank_))
        for start in range(0, len(Q), rows):
            rescaled = self._pairwise(Q[start : start + rows], self.bank_) / self.local_scale_
            smallest = np.partition(rescaled, k - 1, axis=1)[:, :k] if k < self.n_bank_ else rescaled
            out.append(self._aggregate(np.sort(smallest, axis=1)))
        return np.concatenate(out)

    def _rescaled_approximate(self, Q: np.ndarray, candidates: int) -> np.ndarray:
        dists, ids = self._search(Q, candidates)
        rescaled = np.sort(dists / self.local_scale_[ids], axis=1)[:, : self.k_]
        return self._aggregate(rescaled)

    # ---- persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"local_scale": self.local_scale_} if self.density_rescaled else {}
        return {"n_bank_": self.n_bank_, "k_": self.k_}, arrays

    def _set_state(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_bank_ = int(state["n_bank_"])
        self.k_ = int(state["k_"])
        if self.density_rescaled:
            self.local_scale_ = arrays["local_scale"]

    def _cpu_index(self) -> Any:
        faiss = import_faiss()
        if isinstance(self.index_, TorchFlatIndex):
            return self.index_.cpu_index
        if hasattr(faiss, "GpuIndex") and isinstance(self.index_, faiss.GpuIndex):
            return faiss.index_gpu_to_cpu(self.index_)
        return self.index_

    def _save_files(self, directory: Path) -> None:
        faiss = import_faiss()
        with atomic_path(directory / "index.faiss") as tmp:
            faiss.write_index(self._cpu_index(), str(tmp))

    def _load_files(self, directory: Path) -> None:
        faiss = import_faiss()
        path = directory / "index.faiss"
        if not path.is_file():
            raise DataError(f"{path}: FAISS index missing")
        cpu_index = faiss.read_index(str(path))
        if cpu_index.ntotal != self.n_bank_:
            raise DataError(f"{path}: index holds {cpu_index.ntotal} rows, params.json says {self.n_bank_}")
        if self.density_rescaled:
            self.bank_ = cpu_index.reconstruct_n(0, cpu_index.ntotal)
        self.index_ = self._place(cpu_index)
