"""Download the DCASE Task 2 data sets from Zenodo: resumable, checksummed, unpacked for the recipes.

``download(dest)`` fetches the DCASE 2021 Task 2 archives (development, additional training,
evaluation, evaluation ground truth) and unpacks them into::

    <dest>/dcase2021/dev_data/<machine>/{train,source_test,target_test}/
    <dest>/dcase2021/eval_data/<machine>/{train,source_test,target_test}/   (additional training + evaluation test)
    <dest>/dcase2021/ground_truth/ground_truth_<machine>_section_<nn>_<domain>_test.csv
    <dest>/dcase2021/archives/                                              (zips, *.part, markers, record lists)

Downloads go through pooch (checksum verification, atomic rename) with a small Range-capable
downloader (:class:`~hybrid_asd.data.download_http.ResumableDownloader`) so that a dropped
connection resumes instead of starting again. Nothing touches the network at import; only
:func:`download` does. See docs/download.md.

This module is the entry point; the catalogue of records is :mod:`~hybrid_asd.data.download_catalogue`,
HTTP and record listings :mod:`~hybrid_asd.data.download_http`, unpacking
:mod:`~hybrid_asd.data.download_unpack`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from hybrid_asd.data.download_catalogue import (
    DATASETS, DEFAULT_BASE_URL, DEFAULT_PARTS, Archive, Dataset, Record, file_url, get_dataset, record_api_url,
)
from hybrid_asd.data.download_http import (
    PARTIAL_SUFFIX, ChecksumMismatch, RecordListings, ResumableDownloader, fetch_verified, get_json,
    parse_record_files,
)
from hybrid_asd.data.download_unpack import MARKER_SUFFIX, marker_done, member_destination, unpack
from hybrid_asd.errors import ConfigError, DataError
from hybrid_asd.utils import atomic_write_json

if TYPE_CHECKING:  # annotations only; requests itself is imported when a download runs
    import requests

log = logging.getLogger(__name__)

ARCHIVE_DIR = "archives"  # under <dest>/<dataset>/


def _select_parts(spec: Dataset, parts: Sequence[str] | str | None) -> list[Record]:
    if parts is None:
        return list(spec.records)
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
    parts: Sequence[str] | None = None,
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
        dataset: a key of :data:`DATASETS` (``dcase2020`` ... ``dcase2023``, ``dcase2025``, ``dcase2026``).
        parts: any of ``dev``, ``additional``, ``eval``, ``ground_truth`` that the data set has;
            None: every part it has (the ground truth is published for 2021 only).
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
    import requests  # lazy: importing this module loads no network library

    spec = get_dataset(dataset)
    records = _select_parts(spec, spec.parts if parts is None else parts)
    wanted = _select_machines(spec, machines)
    root = Path(dest) / spec.name
    archive_dir = root / ARCHIVE_DIR
    archive_dir.mkdir(parents=True, exist_ok=True)
    results: list[Path] = []
    with requests.Session() as session:
        listing = RecordListings(
            archive_dir, lambda url: get_json(session, url, retries=retries, timeout=timeout), base_url)
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
    listing: RecordListings,
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
    if marker_done(marker, archive.md5):
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
    try:
        path = fetch_verified(url, archive_dir, archive.name, md5, retries=retries, timeout=timeout,
                              progress=progress, session=session)
    except ChecksumMismatch as exc:
        if archive.md5 is None:  # the checksum came from a (cached) listing: ask the record again next time
            listing.forget(record.record_id)
            raise DataError(f"{exc}; the record's cached file list was removed, so the next run reads the "
                            "checksum from the record again") from None
        raise
    count = unpack(path, target, archive.machine, record.flatten_csv)
    atomic_write_json(marker, {"archive": archive.name, "md5": md5, "record": record.record_id,
                               "url": url, "target": str(target), "files": count})
    log.info("%s: md5 verified, %d file(s) unpacked into %s", archive.name, count, out_dir)
    if not keep_archives:
        path.unlink()
    return out_dir


__all__ = [
    "ARCHIVE_DIR", "DATASETS", "DEFAULT_BASE_URL", "DEFAULT_PARTS", "MARKER_SUFFIX", "PARTIAL_SUFFIX", "Archive",
    "Dataset", "Record", "ResumableDownloader", "download", "fetch_verified", "file_url", "get_dataset",
    "member_destination", "parse_record_files", "record_api_url", "unpack",
]
