"""Resumable, checksummed HTTP downloads and Zenodo record listings.

``requests`` and ``pooch`` are imported inside the functions that use them: importing this
module (or the CLI) opens no connection and loads no network library.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tqdm.auto import tqdm

from hybrid_asd.data.download_catalogue import record_api_url
from hybrid_asd.errors import DataError
from hybrid_asd.utils import atomic_write_json

if TYPE_CHECKING:  # annotations only; requests itself is imported when a download runs
    import requests

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".part"
CHUNK_SIZE = 1 << 18  # bytes per read; a dropped connection loses at most the chunk in flight
RETRY_BACKOFF_S = 1.0  # wait before retry k is k * RETRY_BACKOFF_S seconds (tests set 0)
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")


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
        import requests  # lazy: importing this module loads no network library

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
        import requests  # lazy: importing this module loads no network library

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


class ChecksumMismatch(DataError):
    """A download whose md5 never matched the expected one."""


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
    import pooch  # lazy: importing this module loads no network library

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
    raise ChecksumMismatch(
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


def get_json(session: "requests.Session", url: str, *, retries: int, timeout: float) -> Any:
    import requests  # lazy: importing this module loads no network library

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


class RecordListings:
    """Each record's file list, fetched at most once and cached on disk.

    Published Zenodo versions cannot change their files, so a cached listing stays valid and a
    repeated run needs no request at all, as long as it came from the same address: a listing
    cached from another ``base_url`` (a mirror) is asked for again. :meth:`forget` drops a listing
    whose checksum a download did not match.
    """

    def __init__(self, cache_dir: Path, fetch: Callable[[str], Any], base_url: str) -> None:
        self.cache_dir = cache_dir
        self.fetch = fetch
        self.base_url = base_url
        self._memory: dict[int, dict[str, str | None]] = {}

    def __call__(self, record_id: int) -> dict[str, str | None]:
        if record_id in self._memory:
            return self._memory[record_id]
        cache = self.cache_path(record_id)
        url = record_api_url(self.base_url, record_id)
        files: dict[str, str | None] | None = None
        if cache.is_file():
            try:
                saved = json.loads(cache.read_text(encoding="utf-8"))
                if saved.get("url") == url:
                    files = saved["files"]
                else:
                    log.info("%s was read from %s; asking %s", cache, saved.get("url"), url)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                log.warning("%s: unreadable; asking Zenodo again", cache)
        if files is None:
            files = parse_record_files(self.fetch(url), url)
            atomic_write_json(cache, {"record": record_id, "url": url, "files": files})
        self._memory[record_id] = files
        return files

    def cache_path(self, record_id: int) -> Path:
        return self.cache_dir / f"zenodo_record_{record_id}.json"

    def forget(self, record_id: int) -> None:
        """Drop a record's listing (memory and disk), so that it is fetched again."""
        self._memory.pop(record_id, None)
        self.cache_path(record_id).unlink(missing_ok=True)


