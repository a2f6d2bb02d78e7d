"""`hybrid-asd grid`: expansion and checks of a grid (no Ray), skipping of complete cells, the summary's
arithmetic against numpy, and grids on Ray: a local instance on tiny synthetic data end to end, a cell
that fails, a worker killed in the middle of a cell, and a two-node cluster on loopback (slow)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hybrid_asd.cli import main
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.experiment import Experiment, GridFiles
from hybrid_asd.grid import runner
from hybrid_asd.grid.cell import cell_device
from hybrid_asd.grid.spec import Cell, expand, load_grid, plan
from hybrid_asd.grid.summary import format_stat, machine_stats, mean_std, read_results
from hybrid_asd.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
RECIPE_GRID = ROOT / "recipes" / "dcase2021" / "grid.yaml"

# Approach configs that need no extractor training: a cell takes about a second once torch is loaded.
MAHA = """name: maha
extractor: null
detectors:
  - {name: mahalanobis, input: logmel_stats, adaptation: {mode: pooled}}
ensemble: {members: [mahalanobis]}
"""
KNN = """name: knn
extractor: null
detectors:
  - {name: knn, input: logmel_stats, conf: {k: 1}, adaptation: {mode: domain_min}}
ensemble: {members: [knn]}
"""
# A cell with a few seconds of training (the window in which the fault-tolerance test kills it);
# deterministic on the CPU, so two approaches with this config give the same scores.
AE = """name: ae
extractor: null
detectors:
  - {name: ae, input: logmel_frames, per_section: false, cross_fit_splits: 0, adaptation: {mode: pooled},
     conf: {epochs: 15, batch_size: 256}}
ensemble: {members: [ae]}
"""


def write_configs(folder: Path, **texts: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(text)
        paths.append(str(folder / f"{name}.yaml"))
    return paths


def fake_root(folder: Path, machines=("fan", "valve")) -> Path:
    """A data root with (unreadable) machine folders: enough for planning, which reads no audio."""
    for machine in machines:
        (folder / machine / "train").mkdir(parents=True, exist_ok=True)
    return folder


def cell_dirs(exp_root: Path) -> list[Path]:
    return sorted(p for p in exp_root.glob("*/*/seed*") if p.is_dir())


# --- expansion and checks (no Ray) -------------------------------------------------------------------
def test_expand_gives_every_cell_seed_by_seed_with_its_config(tmp_path):
    configs = write_configs(tmp_path / "conf", maha=MAHA, knn=KNN)
    for seed in (0, 1, 2):
        fake_root(tmp_path / f"data{seed}")
    spec = load_grid(None, {"configs": configs, "machines": ["fan", "valve"], "seeds": [0, 1, 2],
                            "data_root": str(tmp_path / "data{seed}"), "exp_root": str(tmp_path / "exp"),
                            "set": ["evaluation.max_fpr=0.2", "knn:detectors.0.conf.k=3"]})
    cells = expand(spec)
    assert len(cells) == 12
    assert cells[:4] == [Cell(0, "maha", "fan"), Cell(0, "maha", "valve"), Cell(0, "knn", "fan"),
                         Cell(0, "knn", "valve")]
    assert [c.seed for c in cells] == [0] * 4 + [1] * 4 + [2] * 4
    planned = plan(spec)
    assert [p.cell for p in planned] == cells and not any(p.complete for p in planned)
    p = planned[-1]  # knn / valve / seed 2
    assert p.experiment.root == tmp_path / "exp" / "knn" / "valve" / "seed2"
    assert p.config.seed == 2 and p.config.data.machine == "valve"
    assert Path(p.config.data.root) == (tmp_path / "data2").resolve()
    assert p.config.evaluation.max_fpr == 0.2 and p.config.detectors[0].conf["k"] == 3
    assert planned[0].config.evaluation.max_fpr == 0.2  # the shared override reaches every approach
    assert not cell_dirs(tmp_path / "exp")  # planning writes nothing


def test_grid_file_with_flags_replacing_keys(tmp_path):
    write_configs(tmp_path / "grid", maha=MAHA)
    fake_root(tmp_path / "data")
    grid = tmp_path / "grid" / "g.yaml"
    grid.write_text(f"configs: [{{config: maha.yaml, set: [evaluation.max_fpr=0.2]}}, demo_hybrid]\n"
                    f"machines: [fan]\nseeds: [0, 1]\ndata_root: {tmp_path / 'data'}\n"
                    f"exp_root: {tmp_path / 'exp'}\ncpus_per_cell: 2\n")
    spec = load_grid(grid, {"seeds": [4], "machines": None, "cpus_per_cell": None, "gpus_per_cell": 0.5})
    assert spec.seeds == [4] and spec.machines == ["fan"] and spec.cpus_per_cell == 2 and spec.gpus_per_cell == 0.5
    assert spec.configs[0].config == str(tmp_path / "grid" / "maha.yaml")  # relative to the grid file
    planned = plan(spec)
    assert [p.cell.approach for p in planned] == ["maha", "demo_hybrid"]
    assert planned[0].config.evaluation.max_fpr == 0.2 and planned[1].config.evaluation.max_fpr == 0.1


def test_recipe_grid_has_the_top5_families_and_both_baselines_on_every_machine_type(tmp_path):
    machines = ["fan", "gearbox", "pump", "slider", "valve", "ToyCar", "ToyTrain"]
    spec = load_grid(RECIPE_GRID, {"data_root": str(fake_root(tmp_path / "dev_data", machines)),
                                   "exp_root": str(tmp_path / "exp")})
    planned = plan(spec)  # every config resolves and validates, every fusion member exists
    approaches = list(dict.fromkeys(p.cell.approach for p in planned))
    assert approaches == ["baseline_ae", "baseline_mobilenetv2", "lopez2021_parallel", "morita2021_serial",
                          "wilkinghoff2021_serial", "kuroyanagi2021_parallel", "sakamoto2021_parallel"]
    assert spec.machines == machines and len(planned) == 7 * 7 * len(spec.seeds)
    assert [f.name for f in spec.fusions] == ["all_approaches", "top5"]


BAD_GRIDS = {  # flags replaced or added -> a part of the one error line
    "unknown config": ({"--configs": ["no_such_config"]}, "unknown config 'no_such_config'"),
    "missing data root": ({"--data-root": ["/nonexistent/data"]}, "data root not found: /nonexistent/data"),
    "unknown machine type": ({"--machines": ["fan", "pump"]}, "machine type 'pump' not found"),
    "unknown --set key": ({"--set": ["detectors.0.conf.kk=3"]}, "kk"),
    "bad --set value": ({"--set": ["evaluation.max_fpr=abc"]}, "evaluation.max_fpr"),
    "--set of no approach": ({"--set": ["other:seed=1"]}, "'other' is no approach of this grid"),
    "bad fusion member": ({"--fuse-members": ["maha", "knn/oe"]}, "'knn' has no score table 'oe'"),
    "bad cell resources": ({"--cpus-per-cell": ["0"]}, "cpus-per-cell"),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_bad_grids_fail_with_one_line_before_any_cell_runs(case, tmp_path, monkeypatch, capsys):
    def no_ray():
        raise AssertionError("Ray was started for a bad grid")

    monkeypatch.setattr(runner, "import_ray", no_ray)
    flags = {"--configs": write_configs(tmp_path / "conf", maha=MAHA, knn=KNN), "--machines": ["fan"],
             "--data-root": [str(fake_root(tmp_path / "data"))], "--exp-root": [str(tmp_path / "exp")]}
    changes, expected = BAD_GRIDS[case]
    flags.update(changes)
    args = ["grid", "--no-progress"] + [a for flag, values in flags.items() for a in (flag, *values)]
    assert main(args) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "ERROR" in errors[0] and expected in errors[0], errors
    assert not cell_dirs(tmp_path / "exp")


def test_grid_file_errors_name_the_key_or_the_folder(tmp_path):
    grid = tmp_path / "g.yaml"
    grid.write_text("configs: [demo_hybrid]\nmachines: [fan]\ndata_root: data\ncpus_per_cel: 2\n")
    with pytest.raises(ConfigError, match="cpus_per_cel"):
        load_grid(grid)
    with pytest.raises(ConfigError, match="no_such.yaml"):
        load_grid(tmp_path / "no_such.yaml")
    (tmp_path / "d" / "fan").mkdir(parents=True)
    with pytest.raises(DataError, match="fan is empty"):
        plan(load_grid(None, {"configs": ["demo_hybrid"], "machines": ["fan"], "data_root": str(tmp_path / "d")}))


def test_complete_cells_are_planned_as_complete_and_a_changed_config_needs_overwrite(tmp_path):
    configs = write_configs(tmp_path / "conf", maha=MAHA, knn=KNN)
    flags = {"configs": configs, "machines": ["fan"], "seeds": [0, 1], "data_root": str(fake_root(tmp_path / "d")),
             "exp_root": str(tmp_path / "exp")}
    first = plan(load_grid(None, flags))[0]
    first.experiment.init(first.config)
    for stage in STAGES:  # as a finished cell leaves its folder
        first.experiment.mark_done(stage.name, first.config)
    again = plan(load_grid(None, flags))
    assert [p.complete for p in again] == [True, False, False, False]
    changed = {**flags, "set": ["maha:detectors.0.adaptation.mode=mean_shift"]}
    with pytest.raises(ConfigError, match="already holds a different config .*--overwrite"):
        plan(load_grid(None, changed))
    assert [p.complete for p in plan(load_grid(None, {**changed, "overwrite": True}))] == [False] * 4


def test_cells_without_gpus_run_on_the_cpu(tmp_path):
    configs = write_configs(tmp_path / "conf", maha=MAHA)
    spec = load_grid(None, {"configs": configs, "machines": ["fan"], "data_root": str(fake_root(tmp_path / "d"))})
    config = plan(spec)[0].config
    assert config.device == "auto"
    assert cell_device(config, gpus=0) == "cpu"
    assert cell_device(config, gpus=1) == "auto"
    assert cell_device(config.model_copy(update={"device": "cuda:1"}), gpus=0) == "cuda:1"


def test_a_cell_limits_torch_and_the_blas_already_loaded_to_its_cpus(tmp_path, monkeypatch):
    """A Ray worker runs many cells and has loaded BLAS/OpenMP runtimes before: the cell limits them all
    to its CPUs (not only torch), and restores them for the next cell."""
    import scipy.linalg  # noqa: F401 - a BLAS runtime loaded before the cell, as in a reused worker
    import torch
    from threadpoolctl import threadpool_info

    from hybrid_asd.errors import HybridASDError
    from hybrid_asd.grid import cell as cell_module

    configs = write_configs(tmp_path / "conf", maha=MAHA)
    spec = load_grid(None, {"configs": configs, "machines": ["fan"], "data_root": str(fake_root(tmp_path / "d")),
                            "exp_root": str(tmp_path / "exp")})
    p = plan(spec)[0]
    job = cell_module.CellJob(p.cell, str(tmp_path / "exp"), p.config.to_dict(), False, 1.0, "run0")
    seen = {}

    def stages(exp, config, **kwargs):
        seen["torch"] = torch.get_num_threads()
        seen["blas"] = [lib["num_threads"] for lib in threadpool_info()]
        raise HybridASDError("stop here")

    monkeypatch.setattr(cell_module, "run_all_stages", stages)
    torch.set_num_threads(2)
    row = cell_module.run_cell(job)
    assert row["status"] == "failed" and "stop here" in row["error"]
    assert seen["torch"] == 1 and seen["blas"] and max(seen["blas"]) == 1
    assert torch.get_num_threads() == 2


# --- summary arithmetic ---------------------------------------------------------------------------------
def test_mean_std_over_seeds_is_numpys_with_ddof_1():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.4, 0.9, size=5)
    mean, std, n = mean_std(list(values))
    assert n == 5 and mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert mean_std([0.7, math.nan, None]) == (0.7, pytest.approx(math.nan, nan_ok=True), 1)
    assert mean_std([])[2] == 0
    assert format_stat((0.61234, 0.01, 3), 3) == "0.6123 ± 0.0100"
    assert format_stat((0.61234, math.nan, 1), 3) == "0.6123 (n=1)"
    assert format_stat((math.nan, math.nan, 0), 3) == "-"


def test_machine_stats_against_numpy_failed_cells_left_out():
    rng = np.random.default_rng(1)
    metrics = ("official_score", "source_auc", "source_pauc", "target_auc", "target_pauc")
    rows = []
    for approach in ("a", "b"):
        for machine in ("fan", "valve"):
            for seed in (0, 1, 2):
                failed = (approach, machine, seed) == ("b", "valve", 1)
                row = {"approach": approach, "machine": machine, "seed": seed,
                       "status": "failed" if failed else "done"}
                row.update({m: math.nan if failed else float(rng.uniform(0.4, 0.9)) for m in metrics})
                rows.append(row)
    stats = machine_stats(rows)
    assert set(stats) == {("a", "fan"), ("a", "valve"), ("b", "fan"), ("b", "valve")}
    for (approach, machine), by_metric in stats.items():
        group = [r for r in rows if r["approach"] == approach and r["machine"] == machine and r["status"] == "done"]
        for m in metrics:
            values = np.array([r[m] for r in group])
            mean, std, n = by_metric[m]
            assert n == len(group) == (2 if (approach, machine) == ("b", "valve") else 3)
            assert mean == pytest.approx(values.mean(), abs=1e-12)
            assert std == pytest.approx(values.std(ddof=1), abs=1e-12)


# --- Ray -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_env():
    """The environment every Ray process of these tests gets: no token auth on the local clusters, no
    usage reports, and this checkout first on the workers' import path."""
    pytest.importorskip("ray", reason="hybrid_asd[grid] (Ray) is not installed")
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def local_ray(ray_env):
    """One local Ray instance (2 CPUs) for the tests of this module: the grid reuses a connection it finds."""
    import ray

    ray.init(num_cpus=2, object_store_memory=runner.LOCAL_OBJECT_STORE_BYTES, include_dashboard=False,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_roots(tmp_path_factory) -> Path:
    """Tiny synthetic data (fan, valve; shorter clips and fewer of them than the preset), one data set
    per seed: data root ``<base>/seed{seed}``."""
    from hybrid_asd.data.synthetic import generate

    base = tmp_path_factory.mktemp("grid_data")
    for seed in (0, 1):
        generate(base / f"seed{seed}", preset="tiny", seed=seed, progress=False, duration=1.5, n_source_train=8)
    return base


def grid_args(configs, tiny_roots, exp_root, *extra) -> list[str]:
    return ["grid", "--configs", *configs, "--machines", "fan", "valve", "--seeds", "0", "1",
            "--data-root", str(tiny_roots / "seed{seed}"), "--exp-root", str(exp_root), "--no-progress", *extra]


def evaluate_fused(exps, config):
    from hybrid_asd.evaluation.metrics import evaluate_scores
    from hybrid_asd.scores import ScoreTable

    table = ScoreTable.concat([ScoreTable.from_csv(e.fusion.fused, "fused") for e in exps], "fused")
    return evaluate_scores(table, protocol=config.evaluation.protocol, max_fpr=config.evaluation.max_fpr)


def test_local_ray_grid_end_to_end_then_a_rerun_does_no_work(local_ray, tiny_roots, tmp_path, capsys, monkeypatch):
    configs = write_configs(tmp_path / "conf", maha=MAHA, knn=KNN)
    exp_root = tmp_path / "exp"
    assert main(grid_args(configs, tiny_roots, exp_root)) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 8 and lines[-1].startswith("[8/8] done ") and lines[-1].endswith(
        "done 8, running 0, failed 0, left 0")
    assert "grid finished" in out and "8 of 8 cells done, 0 failed" in out

    files = GridFiles.of_exp_root(exp_root)
    rows = read_results(files.results)
    assert len(rows) == 8 and all(r["status"] == "done" for r in rows)
    spec = load_grid(files.spec)
    planned = {p.cell: p for p in plan(spec)}
    for row in rows:  # each row is the official evaluation of its cell's system output
        p = planned[Cell(row["seed"], row["approach"], row["machine"])]
        res = evaluate_fused([p.experiment], p.config)
        assert row["official_score"] == pytest.approx(res.official_score, abs=1e-12)
        assert row["target_pauc"] == pytest.approx(res.by_domain()["target"]["pauc"], abs=1e-12)
        assert row["device"] == "cpu" and row["attempts"] == "1" and float(row["wall_s"]) > 0
        assert "1 thread(s)" in Path(row["log"]).read_text()  # the cell's threads = its CPUs (1)

    summary = json.loads(files.summary_json.read_text())
    for entry in summary["by_machine"]:  # mean ± std over seeds, against numpy on results.csv
        values = np.array([r["official_score"] for r in rows
                           if (r["approach"], r["machine"]) == (entry["approach"], entry["machine"])])
        assert entry["official_score"]["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert entry["official_score"]["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
    for approach in ("maha", "knn"):  # all machine types evaluated together, per seed
        per_seed = [evaluate_fused([planned[Cell(s, approach, m)].experiment for m in ("fan", "valve")],
                                   planned[Cell(s, approach, "fan")].config).official_score for s in (0, 1)]
        entry = next(e for e in summary["by_table"] if (e["approach"], e["table"]) == (approach, "fused"))
        assert entry["official_score"]["mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert entry["official_score"]["std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)
        assert entry["official_score"]["std"] > 0  # two data sets: the seeds differ
    fusion = summary["fusions"]["approaches"]
    assert [r["seed"] for r in fusion] == [0, 1] and all(set(r["weights"]) == {"maha", "knn"} for r in fusion)
    assert all((files.fusion_dir("approaches", s) / "tuning.txt").is_file() for s in (0, 1))
    text = files.summary.read_text()
    assert "| maha | fan |" in text and "±" in text and "## Cross-approach fusion `approaches`" in text

    assert main(["report", str(files.folder)]) == 0
    assert files.figure.is_file() and files.figure.read_bytes()[:4] == b"\x89PNG"

    # Re-running the finished grid: no Ray, no stage, the same results.
    def no_ray():
        raise AssertionError("a finished grid started Ray")

    monkeypatch.setattr(runner, "import_ray", no_ray)
    markers = {p: p.stat().st_mtime_ns for p in exp_root.glob("*/*/seed*/.done/*")}
    before = files.results.read_text()
    started = time.perf_counter()
    assert main(grid_args(configs, tiny_roots, exp_root)) == 0
    assert time.perf_counter() - started < 30
    assert "8 complete, 0 to run" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in markers} == markers
    assert files.results.read_text() == before


def test_a_failing_cell_is_reported_with_its_log_and_the_others_go_on(local_ray, tiny_roots, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "valve").mkdir(parents=True)
    (data / "fan").symlink_to(tiny_roots / "seed0" / "fan")
    for part in ("train", "source_test", "target_test"):
        (data / "valve" / part).symlink_to(tiny_roots / "seed0" / "valve" / part)
    broken = data / "valve_broken"
    broken.mkdir()
    for part in ("train", "source_test", "target_test"):  # a copy of valve with one unreadable clip
        (broken / part).mkdir()
        for wav in (tiny_roots / "seed0" / "valve" / part).iterdir():
            (broken / part / wav.name).symlink_to(wav)
    first = sorted((broken / "train").iterdir())[0]
    first.unlink()
    first.write_bytes(b"not a wav file")
    configs = write_configs(tmp_path / "conf", maha=MAHA)
    exp_root = tmp_path / "exp"
    status = main(["grid", "--configs", *configs, "--machines", "fan", "valve_broken", "--data-root", str(data),
                   "--exp-root", str(exp_root), "--no-progress", "--max-retries", "2"])
    assert status == 1  # a cell failed
    out = capsys.readouterr().out
    log = exp_root / "maha" / "valve_broken" / "seed0" / "logs" / "grid.log"
    failed = [line for line in out.splitlines() if "FAILED  maha/valve_broken/seed0" in line]
    assert len(failed) == 1 and "not a readable audio file" in failed[0] and f"(log: {log})" in failed[0]
    assert "not a readable audio file" in log.read_text()
    rows = {r["machine"]: r for r in read_results(GridFiles.of_exp_root(exp_root).results)}
    assert rows["fan"]["status"] == "done" and rows["valve_broken"]["status"] == "failed"
    assert rows["valve_broken"]["attempts"] == "1"  # an input error is not retried
    assert "## Failed cells" in GridFiles.of_exp_root(exp_root).summary.read_text()


def test_a_worker_killed_in_the_middle_of_a_cell_is_retried(local_ray, tiny_roots, tmp_path, monkeypatch):
    """ae_a and ae_b are the same deterministic config; ae_a's worker is killed while it trains; the
    cell is retried and ends with the same scores as ae_b. A second run does no work."""
    configs = write_configs(tmp_path / "conf", ae_a=AE, ae_b=AE)
    exp_root = tmp_path / "exp"
    spec = load_grid(None, {"configs": configs, "machines": ["fan"], "seeds": [0],
                            "data_root": str(tiny_roots / "seed0"), "exp_root": str(exp_root), "max_retries": 1})
    victim = Experiment.for_run(exp_root, "ae_a", "fan", 0)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=runner.run_grid(spec, echo=lambda _: None,
                                                                                   progress=False)))
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        record = runner.read_record(victim)
        log = victim.log_path("grid")
        if record and record.get("status") == "running" and log.is_file() and "=== stage fit" in log.read_text():
            os.kill(record["pid"], signal.SIGKILL)
            killed = record
        time.sleep(0.02)
    thread.join(timeout=180)
    assert killed is not None, "the cell was never seen running its fit stage"
    result = outcome["result"]
    assert not result.failed and result.ran == 2
    rows = {r["approach"]: r for r in result.rows}
    assert rows["ae_a"]["attempts"] == 2 and rows["ae_b"]["attempts"] == 1
    assert runner.read_record(victim)["pid"] != killed["pid"]
    assert rows["ae_a"]["official_score"] == rows["ae_b"]["official_score"]
    other = Experiment.for_run(exp_root, "ae_b", "fan", 0)
    assert victim.fusion.fused.read_text().replace("ae_a", "") == other.fusion.fused.read_text().replace("ae_b", "")

    monkeypatch.setattr(runner, "import_ray", lambda: pytest.fail("a finished grid started Ray"))
    again = runner.run_grid(spec, echo=lambda _: None, progress=False)
    assert again.ran == 0 and again.skipped == 2
    assert [r["official_score"] for r in again.rows] == [r["official_score"] for r in result.rows]


# --- a two-node Ray cluster on this machine ------------------------------------------------------------
def start_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start --block ...`` in its own process group; returns once the node is up."""
    ray_cli = Path(sys.executable).with_name("ray")
    fh = open(log, "w")
    proc = subprocess.Popen([str(ray_cli), "start", "--block", "--node-ip-address", "127.0.0.1", "--num-gpus", "0",
                             *args], stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_node(proc)
            raise RuntimeError(f"ray start failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def stop_node(proc: subprocess.Popen) -> None:
    """SIGTERM to ``ray start`` (it drains the node and stops its raylet, workers and, on the head,
    the GCS), then SIGKILL to whatever of its process group is left."""
    proc.terminate()
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_node_cluster_on_loopback_runs_cells_on_both_nodes(ray_env, tiny_roots, tmp_path, capsys):
    import ray

    if ray.is_initialized():  # the module's local instance (when the fast tests ran first): the grid must join the cluster
        ray.shutdown()
    env = {**os.environ, **ray_env}
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    head = start_node(["--head", "--port", str(port), "--num-cpus", "1", "--include-dashboard", "false",
                       "--temp-dir", str(temp)], tmp_path / "head.log", env)
    worker = None
    try:
        worker = start_node(["--address", f"127.0.0.1:{port}", "--num-cpus", "1"], tmp_path / "worker.log", env)
        configs = write_configs(tmp_path / "conf", maha=MAHA, knn=KNN)
        exp_root = tmp_path / "exp"
        assert main(grid_args(configs, tiny_roots, exp_root, "--address", f"127.0.0.1:{port}")) == 0
        rows = read_results(GridFiles.of_exp_root(exp_root).results)
        assert len(rows) == 8 and all(r["status"] == "done" for r in rows)
        assert len({r["node"] for r in rows}) == 2  # cells landed on both nodes
        assert not ray.is_initialized()  # the grid disconnected from the cluster it joined
    finally:
        if worker is not None:
            stop_node(worker)
        stop_node(head)
