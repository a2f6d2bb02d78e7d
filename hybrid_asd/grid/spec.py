"""What a grid is: approach configs x machine types x seeds, where the data and experiments live, the
resources of one cell, and the cross-approach fusions of its summary.

A grid comes from a YAML file (``recipes/dcase2021/grid.yaml``), from ``hybrid-asd grid`` flags, or
both (a flag replaces the file's key). It is validated once, like an approach config: unknown keys,
types and ranges (:class:`GridSpec`, one-line :class:`~hybrid_asd.errors.ConfigError` naming the key),
then config names, override targets and machine types against the data (:func:`plan`), before any
cell starts.

Keys (YAML, with the flag that sets each):

======================  ====================  =================================================
``configs``             ``--configs``         approach configs: built-in names (``demo_hybrid``) or
                                              YAML paths; an entry may be ``{config: X, set: [..]}``
``machines``            ``--machines``        machine types (folders of every data root)
``seeds``               ``--seeds``           seeds (default ``[0]``)
``data_root``           ``--data-root``       data root; ``{seed}`` is replaced by the cell's seed
``exp_root``            ``--exp-root``        experiments (``<exp_root>/<approach>/<machine>/seed<k>``)
                                              and the grid's own ``<exp_root>/grid/``
``ground_truth``        ``--ground-truth``    folder of ground_truth_*.csv (``data.ground_truth``)
``address``             ``--address``         Ray cluster: ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``;
                                              absent: a local Ray instance on this machine
``local_cpus``          ``--local-cpus``      CPUs of that local instance (default: all cores)
``cpus_per_cell``       ``--cpus-per-cell``   Ray CPUs of one cell (also its torch/OpenMP threads)
``gpus_per_cell``       ``--gpus-per-cell``   Ray GPUs of one cell
``max_retries``         ``--max-retries``     retries of a failing cell before it is reported
``set``                 ``--set``             overrides of every config; ``CONFIG:key=value`` of one
``overwrite``           ``--overwrite``       replace a different saved config in a cell's folder
``fusions``             ``--fuse-members``    cross-approach fusions per seed (see :class:`FusionSpec`)
======================  ====================  =================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import Field, field_validator

from hybrid_asd.config import Config, read_yaml_mapping
from hybrid_asd.ensemble.fusion import FUSED_NAME, RULES
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.experiment import Experiment, GridFiles, first_difference
from hybrid_asd.pipeline import make_config
from hybrid_asd.stages import STAGES
from hybrid_asd.settings import Bool, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Section

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the built-in approach configs
SEED_PLACEHOLDER = "{seed}"
NAME = re.compile(r"[A-Za-z0-9_.-]+")
DEFAULT_FUSION = "approaches"  # the default fusion: every approach's system output


class ConfigEntry(Section):
    """One approach: a config (built-in name or YAML path) and overrides of it alone."""

    config: str
    set: list[str] = Field(default_factory=list)


class FusionSpec(Section):
    """A cross-approach fusion, computed per seed over every machine type of the grid.

    ``members``: ``APPROACH`` (that approach's system output, its ``fused`` table) or
    ``APPROACH/TABLE`` (one score table of it: ``oe``, a detector id, ``fused``). Default: every
    approach's system output. ``tune``: search the weights (``fuse --tune``, with the
    leave-one-section-out estimate); else fuse with equal weights by ``rule``."""

    name: str = DEFAULT_FUSION
    members: list[str] | None = None
    rule: str = "weighted_sum"
    tune: Bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.fullmatch(name):
            raise ValueError("must be letters, digits, '_', '.' or '-'")
        return name

    @field_validator("rule")
    @classmethod
    def _rule(cls, rule: str) -> str:
        if rule not in RULES.names():
            raise ValueError(f"unknown fusion rule; known: {', '.join(RULES.names())}")
        return rule


class GridSpec(Section):
    """A grid as given (see the module docstring for the keys)."""

    configs: list[ConfigEntry] = Field(min_length=1)
    machines: list[str] = Field(min_length=1)
    seeds: list[NonNegativeInt] = Field(default_factory=lambda: [0], min_length=1)
    data_root: str
    exp_root: str = "exp"
    ground_truth: str | None = None
    address: str | None = None
    local_cpus: PositiveInt | None = None
    cpus_per_cell: PositiveFloat = 1.0
    gpus_per_cell: NonNegativeFloat = 0.0
    max_retries: NonNegativeInt = 2
    set: list[str] = Field(default_factory=list)
    overwrite: Bool = False
    fusions: list[FusionSpec] | None = None

    @field_validator("configs", mode="before")
    @classmethod
    def _config_shorthand(cls, entries: Any) -> Any:
        if isinstance(entries, list):
            return [{"config": e} if isinstance(e, str) else e for e in entries]
        return entries

    @field_validator("machines", mode="before")
    @classmethod
    def _machine_strings(cls, machines: Any) -> Any:
        if isinstance(machines, list):
            return [str(m) for m in machines]  # YAML reads a bare machine name like 'on' as a boolean
        return machines

    @property
    def files(self) -> GridFiles:
        return GridFiles.of_exp_root(self.exp_root)


# --- loading --------------------------------------------------------------------------------------
def load_grid(path: str | Path | None = None, flags: Mapping[str, Any] | None = None) -> GridSpec:
    """The grid of a YAML file with the given flags (keys of :class:`GridSpec`, None = not given)
    replacing its keys. Relative config paths in the file are tried against the file's folder too."""
    tree: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    tree.update(given)
    if path is not None and isinstance(tree.get("configs"), list) and "configs" not in given:
        tree["configs"] = [_relative_to(entry, Path(path).parent) for entry in tree["configs"]]

    def source(key: str) -> str:
        if key.split(".")[0] in given:
            return "--" + key.split(".")[0].replace("_", "-")
        return str(path) if path is not None else "grid"

    return GridSpec.parse(tree, source=source)


def _relative_to(entry: Any, folder: Path) -> Any:
    """A config entry of a grid file, its path made relative to the file's folder when it names a file there."""
    name = entry.get("config") if isinstance(entry, dict) else entry
    if isinstance(name, str) and not Path(name).is_absolute() and not Path(name).is_file() \
            and (folder / name).is_file():
        resolved = str(folder / name)
        return {**entry, "config": resolved} if isinstance(entry, dict) else resolved
    return entry


def resolve_config_path(name: str) -> Path:
    """A config by path, or by built-in name (``demo_hybrid`` or ``demo_hybrid.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    builtin = CONFIG_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if "/" not in name and builtin.is_file():
        return builtin
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"unknown config {name!r}: no such file and no built-in config of that name; built-in: {known}")


# --- cells ----------------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Cell:
    """One staged run of the grid."""

    seed: int
    approach: str
    machine: str

    @property
    def key(self) -> str:
        return f"{self.approach}/{self.machine}/seed{self.seed}"

    def experiment(self, exp_root: str | Path) -> Experiment:
        return Experiment.for_run(exp_root, self.approach, self.machine, self.seed)


@dataclass(frozen=True)
class Approach:
    name: str  # the config file's stem: the experiment folder name, as the recipes use
    path: Path
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class PlannedCell:
    """A cell with its resolved config and whether its stages are all complete already."""

    cell: Cell
    experiment: Experiment
    config: Config
    complete: bool


def approaches(spec: GridSpec) -> list[Approach]:
    """The grid's approaches, with their own overrides (``--set`` for all, ``NAME:key=value`` for one)."""
    entries = [(resolve_config_path(e.config), e) for e in spec.configs]
    names = [path.stem for path, _ in entries]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ConfigError(f"configs: approach(es) {', '.join(dups)} given twice (the folder name is the file's stem)")
    shared, targeted = split_overrides(spec.set, names)
    return [Approach(name, path, tuple(shared + targeted.get(name, []) + list(entry.set)))
            for name, (path, entry) in zip(names, entries)]


def split_overrides(overrides: Sequence[str], names: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``key=value`` (every config) and ``NAME:key=value`` (config NAME only)."""
    shared: list[str] = []
    targeted: dict[str, list[str]] = {}
    for text in overrides:
        key = text.split("=", 1)[0]
        if ":" not in key:
            shared.append(text)
            continue
        name, rest = text.split(":", 1)
        if name not in names:
            raise ConfigError(f"--set {text!r}: {name!r} is no approach of this grid; approaches: {', '.join(names)}")
        targeted.setdefault(name, []).append(rest)
    return shared, targeted


def data_root(spec: GridSpec, seed: int) -> Path:
    """The data root of one seed (``{seed}`` in ``data_root`` replaced)."""
    return Path(spec.data_root.replace(SEED_PLACEHOLDER, str(seed)))


def check_data(spec: GridSpec) -> None:
    """Every seed's data root exists and holds every machine type of the grid."""
    for seed in spec.seeds:
        root = data_root(spec, seed)
        if not root.is_dir():
            raise DataError(f"data root not found: {root}" + (f" (seed {seed})" if SEED_PLACEHOLDER in spec.data_root
                                                              else ""))
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        for machine in spec.machines:
            if machine not in found:
                raise ConfigError(f"machine type {machine!r} not found in data root {root}; "
                                  f"found: {', '.join(found) or 'nothing'}")
            if not any((root / machine).iterdir()):
                raise DataError(f"machine type {machine!r}: {root / machine} is empty")
    if spec.ground_truth is not None and not Path(spec.ground_truth).is_dir():
        raise DataError(f"ground truth folder not found: {spec.ground_truth}")


def expand(spec: GridSpec, names: Sequence[str] | None = None) -> list[Cell]:
    """Every (seed, approach, machine) cell, seed by seed (a seed's cells finish together, so its
    cross-approach fusion is ready early)."""
    names = list(names) if names is not None else [a.name for a in approaches(spec)]
    return [Cell(seed, name, machine) for seed in spec.seeds for name in names for machine in spec.machines]


def cell_config(spec: GridSpec, approach: Approach, cell: Cell) -> Config:
    overrides = list(approach.overrides)
    if spec.ground_truth is not None:
        overrides.append(f"data.ground_truth={Path(spec.ground_truth).resolve()}")
    return make_config(approach.path, overrides, data_root=data_root(spec, cell.seed), machine=cell.machine,
                       seed=cell.seed)


def plan(spec: GridSpec) -> list[PlannedCell]:
    """Check the grid against the configs and the data, and resolve every cell.

    Raises a one-line error for an unknown config, a bad override, a missing data root or
    machine type, a bad fusion member, or (without ``overwrite``) a cell folder holding a
    different config."""
    found = approaches(spec)
    check_data(spec)
    by_name = {a.name: a for a in found}
    planned = []
    for cell in expand(spec, list(by_name)):
        try:
            config = cell_config(spec, by_name[cell.approach], cell)
        except ConfigError as exc:  # name the approach: an override may be valid for one config and not another
            raise ConfigError(f"{cell.approach} ({by_name[cell.approach].path}): {exc}") from None
        exp = cell.experiment(Path(spec.exp_root).resolve())  # absolute: results.csv and the workers name it so
        if not spec.overwrite:
            check_saved_config(exp, config)
        planned.append(PlannedCell(cell, exp, config, cell_complete(exp, config)))
    configs = {p.cell.approach: p.config for p in planned}
    for fusion in fusions(spec, list(by_name)):
        check_members(fusion, configs)
    return planned


def check_saved_config(exp: Experiment, config: Config) -> None:
    """A cell folder may hold this config or none; anything else needs ``overwrite``."""
    if exp.config_path.is_file():
        old = exp.load_config().to_dict()
        if old != config.to_dict():
            raise ConfigError(f"{exp.root} already holds a different config (first difference at "
                              f"{first_difference(old, config.to_dict())!r}); pass --overwrite to rerun it with "
                              "this one, or use another --exp-root")


def cell_complete(exp: Experiment, config: Config) -> bool:
    """Every stage of the table completed with this config (what ``run_stage`` would skip)."""
    return all(exp.stage_done(stage.name, config) for stage in STAGES)


# --- fusions --------------------------------------------------------------------------------------
def fusions(spec: GridSpec, names: Sequence[str]) -> list[FusionSpec]:
    """The grid's fusions: as given, or one tuned fusion of every approach's system output (with two
    or more approaches)."""
    if spec.fusions is not None:
        return list(spec.fusions)
    return [FusionSpec(members=list(names))] if len(names) > 1 else []


def member_parts(member: str) -> tuple[str, str]:
    """``APPROACH`` -> (APPROACH, fused); ``APPROACH/TABLE`` -> (APPROACH, TABLE)."""
    approach, _, table = member.partition("/")
    return approach, table or FUSED_NAME


def fusion_members(fusion: FusionSpec, names: Sequence[str]) -> list[tuple[str, str]]:
    return [member_parts(m) for m in (fusion.members or list(names))]


def check_members(fusion: FusionSpec, configs: Mapping[str, Config]) -> None:
    members = fusion_members(fusion, list(configs))
    for approach, table in members:
        if approach not in configs:
            raise ConfigError(f"fusions: {fusion.name}: member {approach!r} is no approach of this grid; "
                              f"approaches: {', '.join(configs)}")
        tables = configs[approach].score_tables + [FUSED_NAME]
        if table not in tables:
            raise ConfigError(f"fusions: {fusion.name}: {approach!r} has no score table {table!r}; "
                              f"its tables: {', '.join(tables)}")
    if len(set(members)) != len(members) or len(members) < 2:
        raise ConfigError(f"fusions: {fusion.name}: needs two or more different members, got "
                          f"{', '.join('/'.join(m) for m in members)}")


__all__ = [
    "Approach", "CONFIG_DIR", "Cell", "ConfigEntry", "FusionSpec", "GridSpec", "PlannedCell", "approaches",
    "cell_complete", "cell_config", "check_data", "data_root", "expand", "fusion_members", "fusions", "load_grid",
    "member_parts", "plan", "resolve_config_path", "split_overrides",
]
