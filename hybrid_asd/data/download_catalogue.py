"""What the DCASE Task 2 data sets are on Zenodo: records, archives, checksums and addresses.

Plain data and address helpers: nothing here touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence
from urllib.parse import quote

from hybrid_asd.errors import ConfigError

DEFAULT_BASE_URL = "https://zenodo.org"
ALL_PARTS = ("dev", "additional", "eval", "ground_truth")  # every part any data set has
DEFAULT_PARTS = ALL_PARTS  # kept for old imports; download() defaults to the data set's own parts


@dataclass(frozen=True)
class Archive:
    """One file of a Zenodo record. ``machine`` None: not tied to one machine type (ground truth)."""

    name: str
    machine: str | None = None
    md5: str | None = None  # None: read from the record's JSON at run time


@dataclass(frozen=True)
class Record:
    """One Zenodo record and where its archives are unpacked (``target`` under ``<dest>/<dataset>/``).

    An empty ``archives`` means: every .zip/.csv file the record lists, read at run time.
    ``flatten_csv``: keep only the CSV files of the archives, without their folders (ground truth).
    """

    part: str
    record_id: int
    target: str
    title: str
    archives: tuple[Archive, ...] = ()
    flatten_csv: bool = False


@dataclass(frozen=True)
class Dataset:
    name: str
    records: tuple[Record, ...]

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(r.part for r in self.records)

    @property
    def machines(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for record in self.records:
            for archive in record.archives:
                if archive.machine is not None:
                    seen.setdefault(archive.machine, None)
        return tuple(seen)

    def record(self, part: str) -> Record:
        for record in self.records:
            if record.part == part:
                return record
        raise ConfigError(f"dataset {self.name!r} has no part {part!r}; parts: {', '.join(self.parts)}")


def _per_machine(pattern: str, machines: Sequence[str], md5: dict[str, str] | None = None) -> tuple[Archive, ...]:
    md5 = md5 or {}
    return tuple(Archive(pattern.format(m=m), m, md5.get(m)) for m in machines)


_M2020 = ("ToyCar", "ToyConveyor", "fan", "pump", "slider", "valve")
_M2021 = ("fan", "gearbox", "pump", "slider", "ToyCar", "ToyTrain", "valve")
_M2022 = ("bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve")
_M2023_EVAL = ("bandsaw", "grinder", "shaker", "ToyDrone", "ToyNscale", "ToyTank", "Vacuum")
# DCASE 2025 and 2026: machine types, records and archive names of the official baseline's
# datasets/download_path_2025.yaml and download_path_2026.yaml (nttcslab/dcase2023_task2_baseline_ae).
_M2025_EVAL = ("ToyRCCar", "ToyPet", "HomeCamera", "AutoTrash", "Polisher", "ScrewFeeder", "BandSealer",
               "CoffeeGrinder")
_M2026 = ("ToyCar", "ToyCarEmu", "bearingEmu", "fan", "gearboxEmu", "sliderEmu", "valveEmu")
_M2026_EVAL = ("ToyDrone", "ToothBrush", "SewingMachine", "BlowerDustCollector", "Sander")
# 2026: dev_ToyCar.zip was replaced by dev_ToyCar_r2.zip (baseline v5.0.1, 2026-04-09)
_DEV2026_NAMES = {"ToyCar": "dev_ToyCar_r2.zip"}

# DCASE 2020 md5 values as listed by the soundata loader ``dcase2020task2`` (taken from Zenodo).
# DCASE 2021-2023, 2025 and 2026 md5 values were not found in any public source we could read (the
# official lists give addresses only): None means "take the checksum from the Zenodo record's JSON
# at run time" (docs/download.md).
DATASETS: dict[str, Dataset] = {
    "dcase2021": Dataset(
        "dcase2021",
        (
            Record("dev", 4562016, "dev_data", "DCASE 2021 Task 2 development dataset",
                   _per_machine("dev_data_{m}.zip", _M2021)),
            Record("additional", 4660992, "eval_data", "DCASE 2021 Task 2 additional training dataset",
                   _per_machine("eval_data_{m}_train.zip", _M2021)),
            Record("eval", 4884786, "eval_data", "DCASE 2021 Task 2 evaluation dataset",
                   _per_machine("eval_data_{m}_test.zip", _M2021)),
            # File name(s) not published anywhere we could read: listed from the record at run time.
            Record("ground_truth", 5257674, "ground_truth", "DCASE 2021 Task 2 evaluation ground truth",
                   (), flatten_csv=True),
        ),
    ),
    "dcase2020": Dataset(
        "dcase2020",
        (
            Record("dev", 3678171, "dev_data", "DCASE 2020 Task 2 development dataset",
                   _per_machine("dev_data_{m}.zip", _M2020, {
                       "fan": "649bdfc06263ae7a838963f43b6641e6",
                       "pump": "90e7091ef722b7238a7f1009365779cd",
                       "slider": "da24a757719f0d94d5aa2d646bbfdc86",
                       "ToyCar": "4dec75ca8d9f666aa9e4c1894a740501",
                       "ToyConveyor": "03b6aa1bfd09a39d53af0ba39f71fa91",
                       "valve": "34d2672f55bb041589ef79c10dc89934",
                   })),
            Record("additional", 3727685, "eval_data", "DCASE 2020 Task 2 additional training dataset",
                   _per_machine("eval_data_train_{m}.zip", _M2020, {
                       "fan": "567798854130c8019df8b664c095ed1e",
                       "pump": "4e33ae9c0db5cc88437675f5e317caee",
                       "slider": "f84f186f4295fc23754abcdd1b0580a7",
                       "ToyCar": "a5d4ccd498af70b04dd74b644b820006",
                       "ToyConveyor": "0e808ac0b761e9fb13d5e0c65caff00d",
                       "valve": "057cdd560caffb8305449541afd28c6d",
                   })),
            Record("eval", 3841772, "eval_data", "DCASE 2020 Task 2 evaluation dataset",
                   _per_machine("eval_data_test_{m}.zip", _M2020, {
                       "fan": "1eb9356a768cadfd0f2e59a5c57e578b",
                       "pump": "23a8f8f924be218c69df67fe07360348",
                       "slider": "0193c769073840332ce3aad84b1ccaa2",
                       "ToyCar": "bea2bdd612f616be8f2b8eb087b32c7c",
                       "ToyConveyor": "ccfcc9847c7d3404d7ee9d6d9e0b2ba2",
                       "valve": "f69c551d2088691050d20cccca9d631c",
                   })),
        ),
    ),
    "dcase2022": Dataset(
        "dcase2022",
        (
            Record("dev", 6355122, "dev_data", "DCASE 2022 Task 2 development dataset",
                   _per_machine("dev_{m}.zip", _M2022)),
            Record("additional", 6462969, "eval_data", "DCASE 2022 Task 2 additional training dataset",
                   _per_machine("eval_data_{m}_train.zip", _M2022)),
            Record("eval", 6586456, "eval_data", "DCASE 2022 Task 2 evaluation dataset",
                   _per_machine("eval_data_{m}_test.zip", _M2022)),
        ),
    ),
    "dcase2023": Dataset(
        "dcase2023",
        (
            Record("dev", 7882613, "dev_data", "DCASE 2023 Task 2 development dataset",
                   _per_machine("dev_{m}.zip", _M2022)),
            Record("additional", 7830345, "eval_data", "DCASE 2023 Task 2 additional training dataset",
                   _per_machine("eval_data_{m}_train.zip", _M2023_EVAL)),
            Record("eval", 7860847, "eval_data", "DCASE 2023 Task 2 evaluation dataset",
                   _per_machine("eval_data_{m}_test.zip", _M2023_EVAL)),
        ),
    ),
    "dcase2025": Dataset(
        "dcase2025",
        (
            Record("dev", 15097779, "dev_data", "DCASE 2025 Task 2 development dataset",
                   _per_machine("dev_{m}.zip", _M2022)),
            Record("additional", 15392814, "eval_data", "DCASE 2025 Task 2 additional training dataset",
                   _per_machine("eval_data_{m}_train.zip", _M2025_EVAL)),
            Record("eval", 15519362, "eval_data", "DCASE 2025 Task 2 evaluation dataset",
                   _per_machine("eval_data_{m}_test.zip", _M2025_EVAL)),
        ),
    ),
    # No evaluation (test) part: the official list has none yet (its README keeps it commented out).
    "dcase2026": Dataset(
        "dcase2026",
        (
            Record("dev", 19336329, "dev_data", "DCASE 2026 Task 2 development dataset",
                   tuple(Archive(_DEV2026_NAMES.get(m, f"dev_{m}.zip"), m) for m in _M2026)),
            Record("additional", 20151556, "eval_data", "DCASE 2026 Task 2 additional training dataset",
                   _per_machine("eval_data_{m}_train.zip", _M2026_EVAL)),
        ),
    ),
}
YEARS = {int(name.removeprefix("dcase")): name for name in DATASETS}  # 2020 -> "dcase2020", ...


def get_dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def record_api_url(base_url: str, record_id: int) -> str:
    """Zenodo's JSON description of a record (lists files with ``"checksum": "md5:..."``)."""
    return f"{base_url.rstrip('/')}/api/records/{record_id}"


def file_url(base_url: str, record_id: int, name: str) -> str:
    return f"{base_url.rstrip('/')}/records/{record_id}/files/{quote(name)}?download=1"


def catalogue_help() -> str:
    """One line per data set: its parts and machine types (for ``hybrid-asd download --help``)."""
    lines = []
    for name in sorted(DATASETS):
        spec = DATASETS[name]
        lines.append(f"{name}: parts {', '.join(spec.parts)}; machine types {', '.join(spec.machines)}")
    return "\n".join(lines)
