"""Atomic writes, seeding and device choice."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from hybrid_asd.errors import ConfigError
from hybrid_asd.utils import atomic_path, atomic_write_text, resolve_device, seed_everything, thread_limit


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind


def test_atomic_write_uses_the_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_seed_everything_repeats_numpy_and_torch():
    seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))
    rng = seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert isinstance(rng, np.random.Generator)


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_temporary_files_of_killed_runs_are_removed_on_the_next_run(tmp_path):
    import os
    import subprocess
    import sys

    from hybrid_asd.utils import atomic_path, remove_stale_temp_files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "sub").mkdir()
    leftover = tmp_path / "sub" / f".scores.csv.{dead_pid}.ab12cd.tmp"
    leftover.write_text("half written")
    live = tmp_path / f".scores.csv.{os.getppid()}.ef34gh.tmp"  # a live process's file is kept
    live.write_text("being written")
    with atomic_path(tmp_path / "x.csv") as tmp:
        assert f".{os.getpid()}." in tmp.name  # the writer's pid is in the name
        assert remove_stale_temp_files(tmp_path) == 1  # our own file in progress is kept too
        assert tmp.exists()
    assert not leftover.exists() and live.exists()


def test_logs_keep_other_libraries_quiet_and_print_plain_numbers(capsys):
    import logging

    import numpy as np

    from hybrid_asd.utils import setup_logging

    setup_logging("INFO")
    try:
        logging.getLogger("faiss.loader").info("Could not load library with AVX512 support due to: ModuleNotFoundError")
        logging.getLogger("hybrid_asd.ensemble.tune").info("tuned %s: %s", "fan", {"knn": np.float64(0.1), "oe": np.float32(0.5)})
        logging.getLogger("faiss.loader").warning("a real problem")
    finally:
        setup_logging("INFO")  # as any main() call in the suite leaves it
    err = capsys.readouterr().err
    assert "AVX512" not in err and "a real problem" in err
    assert "{'knn': 0.1, 'oe': 0.5}" in err and "np.float" not in err


def test_plain_numbers_leave_named_tuples_and_odd_arguments_alone():
    from collections import namedtuple

    import numpy as np

    from hybrid_asd.utils import PlainNumbers, plain

    Edge = namedtuple("Edge", "pc stack")
    edge = Edge(38, ("x",))
    assert plain([edge, np.int64(3)]) == [edge, 3] and plain(edge) is edge
    record = logging_record("%s %s", (edge, np.float64(0.25)))
    assert PlainNumbers().filter(record) and record.getMessage() == "Edge(pc=38, stack=('x',)) 0.25"


def logging_record(msg, args):
    import logging

    return logging.LogRecord("x", logging.INFO, __file__, 1, msg, args, None)


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_limit_limits_every_loaded_runtime_and_restores_them(threads):
    """torch and every BLAS/OpenMP runtime threadpoolctl finds run at most ``threads`` threads inside
    the block (the demo's workers use 1, a grid cell its CPUs) and get their counts back after."""
    import scipy.linalg  # noqa: F401 - the runtimes thread_limit loads, so that before and after compare
    import sklearn.mixture  # noqa: F401
    from threadpoolctl import threadpool_info

    torch.set_num_threads(4)
    before = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
    with thread_limit(threads):
        assert torch.get_num_threads() == threads
        inside = threadpool_info()
        assert inside and all(lib["num_threads"] <= threads for lib in inside)
    assert torch.get_num_threads() == 4
    after = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
    assert before and {path: after[path] for path in before} == before
