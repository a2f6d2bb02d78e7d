"""Small shared helpers: atomic writes, seeding, device choice, logging."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import platform
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from hybrid_asd import __version__
from hybrid_asd.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    A crash or Ctrl-C mid-write leaves the previous file (or nothing) in place, never a
    half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's process id is part of the name, so a later run can tell a killed run's leftovers
    # from another live process's file (remove_stale_temp_files)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[^.]+\.tmp$")
OLD_TEMP_SECONDS = 3600  # a temporary file without a process id (older versions) counts as stale after this


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(folder: str | os.PathLike) -> int:
    """Remove the temporary files that killed runs left under ``folder`` (written by :func:`atomic_path`
    of a process that no longer runs); returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for tmp in folder.rglob(f".*{TEMP_SUFFIX}"):
        match = _TEMP_NAME.match(tmp.name)
        try:
            stale = (not _process_alive(int(match["pid"])) if match and int(match["pid"]) != os.getpid()
                     else match is None and now - tmp.stat().st_mtime > OLD_TEMP_SECONDS)
            if stale and tmp.is_file():
                tmp.unlink()
                removed += 1
        except OSError:  # vanished meanwhile, or not ours to remove
            continue
    if removed:
        log.info("removed %d temporary file(s) of interrupted runs under %s", removed, folder)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def load_npy(path: str | os.PathLike, remedy: str) -> np.ndarray:
    """``np.load`` of a file this package wrote (no pickles); a DataError naming the file and ``remedy``
    when it is truncated or not an ``.npy`` file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({' '.join(str(exc).split())[:160]}); {remedy}") from None


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch  # lazy: torch takes seconds to import; only torch callers save with it

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@contextlib.contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    """Run the block with at most ``threads`` threads in torch, FAISS and every OpenMP/BLAS runtime
    loaded (threadpoolctl), restoring the counts after. For work that shares the cores with other
    processes (the demo's parallel experiments, a grid's cells): one runtime left at all cores
    oversubscribes them. The libraries the stages use are imported first, so that their runtimes
    exist when the limits are set (a limit does not reach a runtime loaded later)."""
    import scipy.linalg  # noqa: F401 - loads scipy's BLAS before the limit is set
    import sklearn.mixture  # noqa: F401 - likewise scikit-learn's OpenMP runtime
    import torch  # lazy: seconds to import

    faiss = None
    with contextlib.suppress(ImportError):
        import faiss  # optional extra; its OpenMP runtime is limited too
    threads = max(1, int(threads))
    torch_threads = torch.get_num_threads()
    faiss_threads = faiss.omp_get_max_threads() if faiss is not None else None
    torch.set_num_threads(threads)
    if faiss is not None:
        faiss.omp_set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(torch_threads)
        if faiss is not None:
            faiss.omp_set_num_threads(faiss_threads)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch from one integer; return a NumPy Generator to pass on."""
    import torch  # lazy: torch takes seconds to import; only commands that compute seed

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(device: str | None = "auto") -> str:
    """'auto' -> 'cuda' when available, else 'cpu'. An explicit 'cuda' (or 'mps') that this machine
    lacks is a ConfigError."""
    import torch  # lazy: torch takes seconds to import, and light commands never resolve a device

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but MPS is not available; use --device cpu")
    return device


def env_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's variables, or None outside torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


def is_main_process() -> bool:
    """False in the processes of rank > 0 under torchrun, which must not write shared files."""
    world = env_world()
    return world is None or world[0] == 0


def plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays (also inside dicts, lists and tuples) as Python numbers and
    lists, so messages read ``0.1``, not ``np.float64(0.1)``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if type(value) is dict:  # exact types: a subclass (a named tuple, an ordered dict) is left as it is
        return {plain(k): plain(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(plain(v) for v in value)
    return value


class PlainNumbers(logging.Filter):
    """A handler filter that passes log arguments through :func:`plain`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.args, tuple):
                record.args = tuple(plain(a) for a in record.args)
            elif isinstance(record.args, dict):
                record.args = plain(record.args)
        except Exception:  # noqa: BLE001 - a log filter must never fail the call that logs
            pass
        return True


def setup_logging(level: str | int = "INFO", log_file: str | os.PathLike | None = None) -> None:
    """Configure logging once (called by the CLI only): this package's loggers at ``level``, every
    other library's (faiss's loader, matplotlib, urllib3, ...) at WARNING unless ``level`` is DEBUG,
    and NumPy numbers in messages printed as plain numbers."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.addFilter(PlainNumbers())
    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    logging.basicConfig(
        level=min(numeric, logging.WARNING) if numeric == logging.DEBUG else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("hybrid_asd").setLevel(numeric)
    logging.getLogger("py.warnings").setLevel(numeric)  # library warnings (warnings.warn) go to the same log
    logging.captureWarnings(True)


def package_versions() -> dict[str, str]:
    """Versions of the libraries that determine results, for checkpoint metadata."""
    out = {"hybrid_asd": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "timm", "sklearn", "faiss", "zuko"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional or broken module: just omit it
            pass
    return out
