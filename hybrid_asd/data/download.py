"""Download the DCASE Task 2 data sets from Zenodo: resumable, checksummed, unpacked for the recipes.

``download(dest)`` fetches the DCASE 2021 Task 2 archives (development, additional training,
evaluation, evaluation ground truth) and unpacks them into::

    <dest>/dcase2021/dev_data/<machine>/{train,source_test,target_test}/
    <dest>/dcase2021/eval_data/<machine>/{train,source_test,target_test}/   (additional training + evaluation test)
    <dest>/dcase2021/ground_truth/ground_truth_<machine>_section_<nn>_<domain>_test.csv
    <dest>/dcase2021/archives/                                              (zips, *.part, markers, record lists)

Downloads go through pooch (checksum verification, atomic rename) with a small Range-capable
downloader (:class:`ResumableDownloader`) so that a dropped connection resumes instead of
starting again. Nothing touches the network at import; only :func:`download` does.
See docs/download.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence
from urllib.parse import quote

from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.utils import atomic_path, atomic_write_json

if TYPE_CHECKING:  # imported lazily at run time: no network library work at import
    import requests

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://zenodo.org"
DEFAULT_PARTS = ("dev", "additional", "eval", "ground_truth")
ARCHIVE_DIR = "archives"  # under <dest>/<dataset>/
MARKER_SUFFIX = ".unpacked.json"
PARTIAL_SUFFIX = ".part"
CHUNK_SIZE = 1 << 18  # bytes per read; a dropped connection loses at most the chunk in flight
RETRY_BACKOFF_S = 1.0  # wait before retry k is k * RETRY_BACKOFF_S seconds (tests set 0)
SPLIT_DIRS = frozenset({"train", "test", "source_test", "target_test", "supplemental"})
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")


# --- what there is to fetch ------------------------------------------------------------------------
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

# DCASE 2020 md5 values as listed by the soundata loader ``dcase2020task2`` (taken from Zenodo).
# DCASE 2021-2023 md5 values were not found in any public source we could read: None means
# "take the checksum from the Zenodo record's JSON at run time" (docs/download.md).
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
}


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


# --- resumable downloads -----------------------------------------------------------------------------
class _HTTPStatus(Exception):
    """A 4xx answer: retrying will not help."""


class ResumableDownloader:
    """A pooch downloader that resumes an interrupted download with an HTTP Range request.

    Hand-written because pooch cannot resume: its ``HTTPDownloader`` streams into a fresh
    temporary file on every attempt and deletes it on failure, so a connection dropped 900 MB
    into a 1 GB archive starts again from byte 0. This one keeps the bytes received so far in
    ``partial`` (kept across retries and across runs) and asks only for the rest; pooch still
    verifies the checksum and renames the file into place.

    A dropped connection or server error is retried up to ``retries`` times (resuming each
    time); after that, or at once on a 4xx answer, :class:`DataError` names the URL.
    """

    def __init__(
        self,
        partial: str | os.PathLike,
        *,
        retries: int = 3,
        timeout: float = 60.0,
        progress: bool = True,
        session: "requests.Session | None" = None,
    ) -> None:
        self.partial = Path(partial)
        self.retries = int(retries)
        self.timeout = timeout
        self.progress = progress
        self.session = session

    def __call__(self, url: str, output_file: Any, pooch: Any = None, check_only: bool = False) -> bool | None:
        import requests

        session = self.session or requests.Session()
        if check_only:
            response = session.head(url, timeout=self.timeout, allow_redirects=True)
            return response.status_code == 200
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        failures = 0
        while True:
            try:
                self._fetch_rest(session, url)
                break
            except _HTTPStatus as exc:
                raise DataError(f"download of {url} failed: {exc}") from None
            except requests.RequestException as exc:
                failures += 1
                have = self._have()
                if failures > self.retries:
                    raise DataError(
                        f"download of {url} failed after {self.retries} retries: {exc}; the {have} bytes "
                        f"received so far stay in {self.partial} and the next run resumes from there"
                    ) from exc
                log.warning("%s: %s; retry %d/%d from byte %d", url, exc, failures, self.retries, have)
                time.sleep(RETRY_BACKOFF_S * failures)
        self._deliver(output_file)
        return None

    def _have(self) -> int:
        return self.partial.stat().st_size if self.partial.exists() else 0

    def _fetch_rest(self, session: "requests.Session", url: str) -> None:
        """Append the missing bytes to ``partial``; raise on a short or failed transfer."""
        import requests

        offset = self._have()
        headers = {"Accept-Encoding": "identity"}  # byte offsets must refer to the file itself
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with session.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if offset and response.status_code == 416:
                return  # nothing left to send: the checksum decides whether the part file is right
            if 400 <= response.status_code < 500:
                raise _HTTPStatus(f"HTTP {response.status_code} {response.reason}")
            response.raise_for_status()  # 5xx: retried
            resumed = offset > 0 and response.status_code == 206 and _range_start(response) == offset
            if offset and not resumed:
                log.info("%s: server did not resume at byte %d; downloading from the start", url, offset)
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            received = 0
            with open(self.partial, "ab" if resumed else "wb") as fh, self._bar(total, offset) as bar:
                for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
                    fh.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if length is not None and received != int(length):
                raise requests.ConnectionError(f"connection closed after {received} of {length} bytes")

    def _bar(self, total: int | None, initial: int):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=self.partial.name[: -len(PARTIAL_SUFFIX)] or self.partial.name,
                    disable=not self.progress, leave=False)

    def _deliver(self, output_file: Any) -> None:
        if hasattr(output_file, "write"):
            with open(self.partial, "rb") as src:
                shutil.copyfileobj(src, output_file, CHUNK_SIZE)
            self.partial.unlink()
        else:
            os.replace(self.partial, output_file)


def _range_start(response: Any) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def fetch_verified(
    url: str,
    folder: Path,
    name: str,
    md5: str,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
    session: "requests.Session | None" = None,
) -> Path:
    """``folder/name`` with md5 ``md5``: kept if already there and right, else downloaded (resuming).

    A checksum mismatch deletes the download (pooch does) and fetches again, up to ``retries``
    times; then :class:`DataError` names the file, the expected and the actual md5.
    """
    import pooch

    actual = "unknown"
    for attempt in range(retries + 1):
        downloader = ResumableDownloader(folder / (name + PARTIAL_SUFFIX), retries=retries,
                                         timeout=timeout, progress=progress, session=session)
        try:
            return Path(pooch.retrieve(url, known_hash=f"md5:{md5}", fname=name, path=folder,
                                       downloader=downloader))
        except DataError:
            raise
        except ValueError as exc:  # pooch's checksum mismatch; it has already deleted the download
            match = re.search(r"but got ([0-9a-fA-F]+)", str(exc))
            actual = match.group(1) if match else "unknown"
            log.warning("%s: md5 %s, expected %s (download %d of %d)", name, actual, md5, attempt + 1, retries + 1)
    raise DataError(
        f"{folder / name}: md5 checksum mismatch after {retries + 1} download(s) from {url}: "
        f"expected {md5}, got {actual}; the bad download was deleted"
    )


# --- Zenodo record listings ------------------------------------------------------------------------------
def parse_record_files(payload: Any, source: str) -> dict[str, str | None]:
    """``{file name: md5 or None}`` from a Zenodo record's JSON (old and new API shapes)."""
    files = payload.get("files") if isinstance(payload, dict) else None
    if isinstance(files, dict):  # InvenioRDM shape: {"entries": [...] or {...}}
        files = files.get("entries", files)
    if isinstance(files, dict):
        files = list(files.values())
    if not isinstance(files, list):
        raise DataError(f"{source}: the record's JSON has no 'files' list")
    out: dict[str, str | None] = {}
    for entry in files:
        if not isinstance(entry, dict):
            continue
        name = entry.get("key") or entry.get("filename")
        checksum = str(entry.get("checksum") or "")
        algorithm, _, value = checksum.rpartition(":")
        md5 = value.lower() if algorithm.lower() in ("md5", "") and _MD5_RE.match(value) else None
        if name:
            out[str(name)] = md5
    return out


def _get_json(session: "requests.Session", url: str, *, retries: int, timeout: float) -> Any:
    import requests

    for attempt in range(retries + 1):
        try:
            response = session.get(url, timeout=timeout, headers={"Accept": "application/json"})
            if 400 <= response.status_code < 500:
                raise DataError(f"{url}: HTTP {response.status_code} {response.reason}")
            response.raise_for_status()
            return response.json()
        except requests.JSONDecodeError as exc:
            raise DataError(f"{url}: not JSON ({exc})") from exc
        except requests.RequestException as exc:
            if attempt == retries:
                raise DataError(f"{url}: failed after {retries} retries: {exc}") from exc
            log.warning("%s: %s; retry %d/%d", url, exc, attempt + 1, retries)
            time.sleep(RETRY_BACKOFF_S * (attempt + 1))
    raise AssertionError("unreachable")


class _RecordListings:
    """Each record's file list, fetched at most once and cached on disk.

    Published Zenodo versions cannot change their files, so the cached listing stays valid and
    a repeated run needs no request at all.
    """

    def __init__(self, cache_dir: Path, fetch: Callable[[str], Any], base_url: str) -> None:
        self.cache_dir = cache_dir
        self.fetch = fetch
        self.base_url = base_url
        self._memory: dict[int, dict[str, str | None]] = {}

    def __call__(self, record_id: int) -> dict[str, str | None]:
        if record_id in self._memory:
            return self._memory[record_id]
        cache = self.cache_dir / f"zenodo_record_{record_id}.json"
        files: dict[str, str | None] | None = None
        if cache.is_file():
            try:
                files = json.loads(cache.read_text(encoding="utf-8"))["files"]
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("%s: unreadable; asking Zenodo again", cache)
        if files is None:
            url = record_api_url(self.base_url, record_id)
            files = parse_record_files(self.fetch(url), url)
            atomic_write_json(cache, {"record": record_id, "url": url, "files": files})
        self._memory[record_id] = files
        return files


# --- unpacking -------------------------------------------------------------------------------------------
def member_destination(member: str, machine: str | None, flatten_csv: bool, archive: Path) -> PurePosixPath | None:
    """Where a zip member goes, relative to the record's target folder (None: skip it).

    Machine archives land in ``<machine>/<split>/...`` whatever folder prefix the zip uses.
    """
    path = PurePosixPath(member.replace("\\", "/"))
    parts = path.parts
    if path.is_absolute() or ".." in parts or not parts:
        raise DataError(f"{archive}: unsafe member path {member!r}")
    if parts[0] == "__MACOSX" or path.name.startswith("._") or path.name == ".DS_Store":
        return None
    if flatten_csv:
        return PurePosixPath(path.name) if path.suffix.lower() == ".csv" else None
    if machine is None:
        return path
    if machine in parts[:-1]:
        return PurePosixPath(*parts[parts.index(machine):])
    for i, part in enumerate(parts[:-1]):
        if part in SPLIT_DIRS:
            return PurePosixPath(machine, *parts[i:])
    return PurePosixPath(machine, *parts)


def unpack(archive: Path, target: Path, machine: str | None = None, flatten_csv: bool = False) -> int:
    """Unpack ``archive`` (a zip, or a lone CSV) into ``target``; return the number of files written.

    Hand-written over :class:`zipfile.ZipFile` because pooch's ``Unzip`` keeps the zip's own
    folders, and the recipes need ``<machine>/<split>/`` whatever prefix an archive uses. Each
    file is written atomically; a crash mid-way leaves no marker, so the next run unpacks again.
    """
    target.mkdir(parents=True, exist_ok=True)
    if archive.suffix.lower() == ".csv":
        shutil.copyfile(archive, target / archive.name)
        return 1
    written = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = member_destination(info.filename, machine, flatten_csv, archive)
                if rel is None:
                    continue
                dest = target.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, atomic_path(dest) as tmp, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK_SIZE)
                written += 1
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a valid zip archive ({exc})") from exc
    if written == 0:
        raise DataError(f"{archive}: no files to unpack")
    return written


def _marker_done(marker: Path, md5: str | None) -> bool:
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return md5 is None or info.get("md5") == md5


# --- the entry point -------------------------------------------------------------------------------------
def _select_parts(spec: Dataset, parts: Sequence[str] | str) -> list[Record]:
    names = [parts] if isinstance(parts, str) else list(parts)
    if not names:
        raise ConfigError(f"parts: choose at least one of {', '.join(spec.parts)}")
    return [spec.record(p) for p in dict.fromkeys(names)]


def _select_machines(spec: Dataset, machines: Sequence[str] | str | None) -> set[str] | None:
    if machines is None:
        return None
    names = [machines] if isinstance(machines, str) else list(machines)
    canonical = {m.lower(): m for m in spec.machines}
    unknown = [m for m in names if m.lower() not in canonical]
    if unknown:
        raise ConfigError(f"machines: unknown machine type(s) {unknown} for {spec.name}; "
                          f"known: {', '.join(spec.machines)}")
    return {canonical[m.lower()] for m in names}


def _archives_of(record: Record, listing: Callable[[int], dict[str, str | None]]) -> Iterator[Archive]:
    if record.archives:
        yield from record.archives
        return
    for name, md5 in listing(record.record_id).items():
        if name.lower().endswith((".zip", ".csv")):
            yield Archive(name, None, md5)
        else:
            log.info("record %d: skipping %s (not a .zip or .csv)", record.record_id, name)


def download(
    dest: str | os.PathLike,
    dataset: str = "dcase2021",
    parts: Sequence[str] = DEFAULT_PARTS,
    machines: Sequence[str] | None = None,
    base_url: str = DEFAULT_BASE_URL,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60,
    keep_archives: bool = True,
) -> list[Path]:
    """Download, verify and unpack a DCASE Task 2 data set from Zenodo.

    Args:
        dest: folder; everything goes under ``<dest>/<dataset>/`` (layout in docs/download.md).
        dataset: a key of :data:`DATASETS` (``dcase2021``, ``dcase2020``, ``dcase2022``, ``dcase2023``).
        parts: any of ``dev``, ``additional``, ``eval``, ``ground_truth`` that the data set has.
        machines: machine types to fetch (case-insensitive); None: all. Ground truth is one
            archive for all machine types and is fetched whatever this says.
        base_url: Zenodo (or a mirror with the same paths: ``/api/records/<id>``,
            ``/records/<id>/files/<name>``).
        progress: show a progress bar per download.
        retries: retries after a dropped connection (each resumes with a Range request) and
            downloads again after a checksum mismatch.
        timeout: seconds without data before a request counts as failed.
        keep_archives: keep the zips in ``<dest>/<dataset>/archives/`` after unpacking; with
            False they are deleted and the unpack marker alone says the archive is done.

    Returns:
        One path per archive, in order: the folder its contents went to
        (``.../dev_data/fan``, ``.../eval_data/fan``, ``.../ground_truth``).

    Raises:
        ConfigError: unknown dataset, part or machine type.
        DataError: a download failed after the retries (names the URL), a checksum mismatch
            (names the file, expected and actual md5), a record without the expected file,
            or a broken archive.
    """
    import requests

    spec = get_dataset(dataset)
    records = _select_parts(spec, parts)
    wanted = _select_machines(spec, machines)
    root = Path(dest) / spec.name
    archive_dir = root / ARCHIVE_DIR
    archive_dir.mkdir(parents=True, exist_ok=True)
    results: list[Path] = []
    with requests.Session() as session:
        listing = _RecordListings(
            archive_dir, lambda url: _get_json(session, url, retries=retries, timeout=timeout), base_url)
        for record in records:
            target = root / record.target
            for archive in _archives_of(record, listing):
                if wanted is not None and archive.machine is not None and archive.machine not in wanted:
                    continue
                results.append(_fetch_and_unpack(
                    record, archive, target, archive_dir, listing, session, base_url=base_url,
                    retries=retries, timeout=timeout, progress=progress, keep_archives=keep_archives))
    return results


def _fetch_and_unpack(
    record: Record,
    archive: Archive,
    target: Path,
    archive_dir: Path,
    listing: Callable[[int], dict[str, str | None]],
    session: "requests.Session",
    *,
    base_url: str,
    retries: int,
    timeout: float,
    progress: bool,
    keep_archives: bool,
) -> Path:
    out_dir = target if archive.machine is None else target / archive.machine
    marker = archive_dir / (archive.name + MARKER_SUFFIX)
    if _marker_done(marker, archive.md5):
        log.info("%s: already unpacked into %s", archive.name, out_dir)
        return out_dir
    url = file_url(base_url, record.record_id, archive.name)
    md5 = archive.md5
    if md5 is None:
        files = listing(record.record_id)
        if archive.name not in files:
            raise DataError(f"{record_api_url(base_url, record.record_id)}: Zenodo record {record.record_id} "
                            f"lists no file {archive.name!r} (it has: {', '.join(sorted(files)) or 'none'})")
        md5 = files[archive.name]
        if md5 is None:
            raise DataError(f"{url}: the Zenodo record gives no md5 checksum for {archive.name}; cannot verify it")
    path = fetch_verified(url, archive_dir, archive.name, md5, retries=retries, timeout=timeout,
                          progress=progress, session=session)
    count = unpack(path, target, archive.machine, record.flatten_csv)
    atomic_write_json(marker, {"archive": archive.name, "md5": md5, "record": record.record_id,
                               "url": url, "target": str(target), "files": count})
    log.info("%s: md5 verified, %d file(s) unpacked into %s", archive.name, count, out_dir)
    if not keep_archives:
        path.unlink()
    return out_dir
