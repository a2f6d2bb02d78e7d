"""hybrid_asd.data.download against a fake Zenodo on 127.0.0.1 (no other address is contacted)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import random
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from hybrid_asd.data import download as dl
from hybrid_asd.data import download_http
from hybrid_asd.data.ground_truth import read_ground_truth_dir
from hybrid_asd.errors import ConfigError, DataError

pytestmark = pytest.mark.timeout(30)

MACHINES = ("fan", "gearbox", "pump", "slider", "ToyCar", "ToyTrain", "valve")
DEV, ADD, EVAL, GT = 4562016, 4660992, 4884786, 5257674
GT_ARCHIVE = "ground_truth_data.zip"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def fake_members() -> dict[int, dict[str, dict[str, bytes]]]:
    """record -> archive -> member -> bytes, with the official archives' folder layout."""
    rng = random.Random(0)

    def wav(tag: str) -> bytes:  # unique, incompressible, big enough to cut in half
        return tag.encode() + rng.randbytes(16384)

    out: dict[int, dict[str, dict[str, bytes]]] = {DEV: {}, ADD: {}, EVAL: {}, GT: {}}
    gt: dict[str, bytes] = {}
    for m in MACHINES:
        out[DEV][f"dev_data_{m}.zip"] = {
            f"{m}/train/section_00_source_train_normal_0000_a_1.wav": wav(m + "dev-train"),
            f"{m}/source_test/section_00_source_test_anomaly_0000.wav": wav(m + "dev-src"),
            f"{m}/target_test/section_00_target_test_normal_0000.wav": wav(m + "dev-tgt"),
        }
        out[ADD][f"eval_data_{m}_train.zip"] = {
            f"{m}/train/section_03_source_train_normal_0000_a_1.wav": wav(m + "add-train"),
        }
        out[EVAL][f"eval_data_{m}_test.zip"] = {
            f"{m}/source_test/section_03_source_test_0000.wav": wav(m + "eval-src"),
            f"{m}/target_test/section_03_target_test_0000.wav": wav(m + "eval-tgt"),
        }
        for domain in ("source", "target"):
            gt[f"ground_truth_data/ground_truth_{m}_section_03_{domain}_test.csv"] = (
                f"section_03_{domain}_test_0000.wav,1\n".encode())
    out[GT][GT_ARCHIVE] = gt
    return out


class FakeZenodo:
    """Serves ``<prefix>/api/records/<id>`` and ``<prefix>/records/<id>/files/<name>`` with Range support."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.members = fake_members()
        self.files = {rid: {name: make_zip(m) for name, m in archives.items()}
                      for rid, archives in self.members.items()}
        self.extra = {GT: {"README.md": b"not an archive\n"}}
        self.corrupt: dict[str, bytes] = {}  # name -> bytes served instead of the listed ones
        self.drop: dict[str, int] = {}  # name -> how many more responses to cut after half the body
        self.log: list[tuple[str, str | None]] = []  # (path, Range header)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"

    def record_json(self, rid: int) -> dict:
        files = {**self.files.get(rid, {}), **self.extra.get(rid, {})}
        return {"id": rid, "files": [
            {"key": name, "size": len(data), "checksum": f"md5:{md5(data)}",
             "links": {"self": f"{self.base_url}/api/records/{rid}/files/{name}/content"}}
            for name, data in files.items()]}

    def paths(self) -> list[str]:
        with self.lock:
            return [p for p, _ in self.log]

    def clear(self) -> None:
        with self.lock:
            self.log.clear()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                with fake.lock:
                    fake.log.append((self.path, self.headers.get("Range")))
                path = urlsplit(self.path).path
                if not path.startswith(fake.prefix + "/"):
                    return self.send_error(404)
                path = path[len(fake.prefix):]
                if m := re.fullmatch(r"/api/records/(\d+)", path):
                    if int(m[1]) not in fake.files:
                        return self.send_error(404)
                    body = json.dumps(fake.record_json(int(m[1]))).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.wfile.write(body)
                if m := re.fullmatch(r"/records/(\d+)/files/([^/]+)", path):
                    return self._file(int(m[1]), unquote(m[2]))
                return self.send_error(404)

            def _file(self, rid: int, name: str):
                files = fake.files.get(rid, {})
                if name not in files:
                    return self.send_error(404)
                body = fake.corrupt.get(name, files[name])
                start = 0
                if rng := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                    start = int(rng[1])
                    if start >= len(body):
                        return self.send_error(416)
                piece = body[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(piece)))
                self.end_headers()
                with fake.lock:
                    cut = fake.drop.get(name, 0) > 0
                    if cut:
                        fake.drop[name] -= 1
                if cut:  # half the body, then hang up: the client sees a short read
                    self.wfile.write(piece[: len(piece) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self.wfile.write(piece)

        return Handler

    def __enter__(self) -> "FakeZenodo":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _fast_retries_and_unknown_md5(monkeypatch):
    """No retry waits; and the 2021 spec without table checksums, so the fake record's md5s apply."""
    monkeypatch.setattr(download_http, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(download_http, "CHUNK_SIZE", 4096)  # the fake archives are ~50 KB: keep what arrived
    spec = dl.DATASETS["dcase2021"]
    stripped = dataclasses.replace(spec, records=tuple(
        dataclasses.replace(r, archives=tuple(dataclasses.replace(a, md5=None) for a in r.archives))
        for r in spec.records))
    monkeypatch.setitem(dl.DATASETS, "dcase2021", stripped)


@pytest.fixture
def zenodo():
    with FakeZenodo() as fake:
        yield fake


def run(dest: Path, fake: FakeZenodo, **kwargs) -> list[Path]:
    kwargs.setdefault("progress", False)
    kwargs.setdefault("timeout", 5)
    return dl.download(dest, base_url=fake.base_url, **kwargs)


# --- tests -------------------------------------------------------------------------------------------
def test_download_unpacks_official_layout_with_verified_checksums(tmp_path, zenodo):
    paths = run(tmp_path, zenodo)
    root = tmp_path / "dcase2021"
    assert len(paths) == 3 * len(MACHINES) + 1
    assert set(paths) == ({root / "dev_data" / m for m in MACHINES} | {root / "eval_data" / m for m in MACHINES}
                          | {root / "ground_truth"})
    # every member of every archive landed byte-exactly where the recipes look for it
    for target, rid in (("dev_data", DEV), ("eval_data", ADD), ("eval_data", EVAL)):
        for archive in zenodo.members[rid].values():
            for member, data in archive.items():
                assert (root / target / member).read_bytes() == data
    for m in MACHINES:
        assert sorted(p.name for p in (root / "eval_data" / m).iterdir()) == ["source_test", "target_test", "train"]
        assert sorted(p.name for p in (root / "dev_data" / m).iterdir()) == ["source_test", "target_test", "train"]
    # ground truth: flattened CSVs, readable by the project's reader
    truth = read_ground_truth_dir(root / "ground_truth")
    assert len(truth) == 2 * len(MACHINES)
    assert truth[("fan", 3, "source")] == {"section_03_source_test_0000.wav": 1}
    # kept archives match the md5 the record lists; the README was never requested
    for rid, files in zenodo.files.items():
        for name, data in files.items():
            assert md5((root / "archives" / name).read_bytes()) == md5(data)
    assert not any("README" in p for p in zenodo.paths())
    assert not list((root / "archives").glob("*.part"))


def test_second_call_downloads_and_unpacks_nothing(tmp_path, zenodo):
    first = run(tmp_path, zenodo)
    assert len(zenodo.paths()) > 0
    zenodo.clear()
    marker_times = {p: p.stat().st_mtime_ns for p in (tmp_path / "dcase2021" / "archives").glob("*.unpacked.json")}
    wav = tmp_path / "dcase2021" / "dev_data" / "fan" / "train" / "section_00_source_train_normal_0000_a_1.wav"
    wav_time = wav.stat().st_mtime_ns
    second = run(tmp_path, zenodo)
    assert second == first
    assert zenodo.paths() == []  # not even the record listings
    assert {p: p.stat().st_mtime_ns for p in marker_times} == marker_times
    assert wav.stat().st_mtime_ns == wav_time


def test_complete_archive_without_marker_is_not_downloaded_again(tmp_path, zenodo):
    run(tmp_path, zenodo, parts=["dev"], machines=["fan"])
    marker = tmp_path / "dcase2021" / "archives" / ("dev_data_fan.zip" + dl.MARKER_SUFFIX)
    marker.unlink()  # e.g. a crash after the download, before unpacking finished
    zenodo.clear()
    run(tmp_path, zenodo, parts=["dev"], machines=["fan"])
    assert not any("/files/" in p for p in zenodo.paths())  # checksum matched: no download
    assert marker.is_file()


def test_keep_archives_false_deletes_zips_and_markers_still_skip(tmp_path, zenodo):
    run(tmp_path, zenodo, parts=["dev"], machines=["valve"], keep_archives=False)
    archives = tmp_path / "dcase2021" / "archives"
    assert not (archives / "dev_data_valve.zip").exists()
    assert (tmp_path / "dcase2021" / "dev_data" / "valve" / "train").is_dir()
    zenodo.clear()
    run(tmp_path, zenodo, parts=["dev"], machines=["valve"], keep_archives=False)
    assert zenodo.paths() == []


def test_corrupt_archive_raises_naming_file_and_hashes(tmp_path, zenodo):
    good = zenodo.files[DEV]["dev_data_fan.zip"]
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    zenodo.corrupt["dev_data_fan.zip"] = bytes(bad)
    with pytest.raises(DataError) as err:
        run(tmp_path, zenodo, parts=["dev"], machines=["fan"], retries=1)
    msg = str(err.value)
    assert "dev_data_fan.zip" in msg and md5(good) in msg and md5(bytes(bad)) in msg
    archives = tmp_path / "dcase2021" / "archives"
    assert not (archives / "dev_data_fan.zip").exists()
    assert not list(archives.glob("dev_data_fan.zip*"))  # no part file, no marker
    assert not list(archives.glob("tmp*"))  # pooch's temporary file is gone too
    assert not (tmp_path / "dcase2021" / "dev_data" / "fan").exists()
    assert sum("/files/dev_data_fan.zip" in p for p in zenodo.paths()) == 2  # first try + 1 retry
    # once the server is fixed, the next run succeeds
    del zenodo.corrupt["dev_data_fan.zip"]
    run(tmp_path, zenodo, parts=["dev"], machines=["fan"])
    assert md5((archives / "dev_data_fan.zip").read_bytes()) == md5(good)


def test_dropped_connection_resumes_with_range_request(tmp_path, zenodo):
    name = "eval_data_gearbox_test.zip"
    zenodo.drop[name] = 1
    run(tmp_path, zenodo, parts=["eval"], machines=["gearbox"])
    data = zenodo.files[EVAL][name]
    gets = [(p, r) for p, r in zenodo.log if f"/files/{name}" in p]
    assert len(gets) == 2
    assert gets[0][1] is None
    start = int(re.fullmatch(r"bytes=(\d+)-", gets[1][1])[1])
    assert 0 < start < len(data)  # the second request asked only for the missing bytes
    path = tmp_path / "dcase2021" / "archives" / name
    assert md5(path.read_bytes()) == md5(data)
    assert (tmp_path / "dcase2021" / "eval_data" / "gearbox" / "source_test"
            / "section_03_source_test_0000.wav").is_file()


def test_connection_dropping_every_time_raises_naming_url_and_keeps_part(tmp_path, zenodo):
    name = "dev_data_pump.zip"
    zenodo.drop[name] = 99
    with pytest.raises(DataError) as err:
        run(tmp_path, zenodo, parts=["dev"], machines=["pump"], retries=2)
    assert f"{zenodo.base_url}/records/{DEV}/files/{name}" in str(err.value)
    assert sum(f"/files/{name}" in p for p in zenodo.paths()) == 3  # first try + 2 retries
    archives = tmp_path / "dcase2021" / "archives"
    assert not (archives / name).exists()
    part = archives / (name + dl.PARTIAL_SUFFIX)
    assert 0 < part.stat().st_size < len(zenodo.files[DEV][name])
    # a later run resumes from the part file and completes
    zenodo.drop[name] = 0
    zenodo.clear()
    run(tmp_path, zenodo, parts=["dev"], machines=["pump"])
    ranges = [r for p, r in zenodo.log if f"/files/{name}" in p]
    assert len(ranges) == 1 and ranges[0] is not None and ranges[0].startswith("bytes=")
    assert md5((archives / name).read_bytes()) == md5(zenodo.files[DEV][name])


def test_machine_filter_downloads_only_those_archives(tmp_path, zenodo):
    paths = run(tmp_path, zenodo, parts=["dev", "additional", "eval"], machines=["fan", "toycar"])
    files = sorted(p.rsplit("/", 1)[1].split("?")[0] for p in zenodo.paths() if "/files/" in p)
    assert files == sorted(["dev_data_fan.zip", "dev_data_ToyCar.zip", "eval_data_fan_train.zip",
                            "eval_data_ToyCar_train.zip", "eval_data_fan_test.zip", "eval_data_ToyCar_test.zip"])
    assert sorted(p.name for p in (tmp_path / "dcase2021" / "dev_data").iterdir()) == ["ToyCar", "fan"]
    assert len(paths) == 6


def test_base_url_is_configurable(tmp_path):
    with FakeZenodo(prefix="/mirror/zenodo") as fake:
        run(tmp_path, fake, parts=["ground_truth"])
        assert fake.paths()[0] == f"/mirror/zenodo/api/records/{GT}"
        assert f"/mirror/zenodo/records/{GT}/files/{GT_ARCHIVE}?download=1" in fake.paths()
        assert len(list((tmp_path / "dcase2021" / "ground_truth").glob("*.csv"))) == 2 * len(MACHINES)
        # a base without that prefix reaches nothing: the error names the URL it tried
        with pytest.raises(DataError, match=re.escape(f"127.0.0.1:{fake.server.server_address[1]}/api/records/")):
            dl.download(tmp_path / "other", parts=["dev"], machines=["fan"], progress=False,
                        base_url=f"http://127.0.0.1:{fake.server.server_address[1]}", timeout=5)


def test_table_checksum_is_used_without_asking_the_record(tmp_path, zenodo, monkeypatch):
    spec = dl.DATASETS["dcase2021"]
    known = {name: md5(data) for name, data in zenodo.files[DEV].items()}
    dev = dataclasses.replace(spec.record("dev"), archives=tuple(
        dataclasses.replace(a, md5=known[a.name]) for a in spec.record("dev").archives))
    monkeypatch.setitem(dl.DATASETS, "dcase2021", dataclasses.replace(spec, records=(dev,)))
    run(tmp_path, zenodo, parts=["dev"], machines=["slider"])
    assert zenodo.paths() == [f"/records/{DEV}/files/dev_data_slider.zip?download=1"]


def test_file_missing_from_record_is_a_data_error(tmp_path, zenodo):
    del zenodo.files[ADD]["eval_data_valve_train.zip"]
    with pytest.raises(DataError, match="lists no file 'eval_data_valve_train.zip'"):
        run(tmp_path, zenodo, parts=["additional"], machines=["valve"])


def test_bad_arguments_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'dcase1999'"):
        dl.download(tmp_path, dataset="dcase1999")
    with pytest.raises(ConfigError, match="no part 'test'"):
        dl.download(tmp_path, parts=["dev", "test"])
    with pytest.raises(ConfigError, match="toaster"):
        dl.download(tmp_path, machines=["fan", "toaster"])
    with pytest.raises(ConfigError, match="no part 'ground_truth'"):
        dl.download(tmp_path, dataset="dcase2020", parts=["ground_truth"])
    assert not (tmp_path / "dcase2021").exists()


def test_unsafe_zip_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"../outside.wav": b"x"}))
    with pytest.raises(DataError, match="unsafe member path"):
        dl.unpack(archive, tmp_path / "out", machine="fan")
    assert not (tmp_path / "outside.wav").exists()


def test_member_destination_normalises_prefixes():
    arch = Path("a.zip")
    assert str(dl.member_destination("dev_data/fan/train/x.wav", "fan", False, arch)) == "fan/train/x.wav"
    assert str(dl.member_destination("train/x.wav", "fan", False, arch)) == "fan/train/x.wav"
    assert dl.member_destination("__MACOSX/fan/._x.wav", "fan", False, arch) is None
    assert str(dl.member_destination("gt/ground_truth_fan_section_03_source_test.csv", None, True, arch)) \
        == "ground_truth_fan_section_03_source_test.csv"
    assert dl.member_destination("gt/readme.txt", None, True, arch) is None


def test_parse_record_files_accepts_old_and_new_zenodo_shapes():
    old = {"files": [{"key": "a.zip", "checksum": "md5:" + "A" * 32}, {"key": "b.zip", "checksum": "sha256:00"}]}
    new = {"files": {"entries": {"a.zip": {"key": "a.zip", "checksum": "md5:" + "a" * 32}}}}
    assert dl.parse_record_files(old, "x") == {"a.zip": "a" * 32, "b.zip": None}
    assert dl.parse_record_files(new, "x") == {"a.zip": "a" * 32}
    with pytest.raises(DataError, match="no 'files' list"):
        dl.parse_record_files({"id": 1}, "http://x/api/records/1")


def test_import_opens_no_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access at import")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    importlib.reload(dl)


@pytest.mark.parametrize("dataset", sorted(dl.DATASETS))
def test_every_dataset_downloads_with_its_default_parts(dataset, tmp_path, capsys):
    """The default parts are the data set's own (only 2021 has a ground-truth record): every year gets as
    far as asking the server (here an address where nothing listens)."""
    from hybrid_asd.cli import main

    assert [r.part for r in dl._select_parts(dl.DATASETS[dataset], None)] == list(dl.DATASETS[dataset].parts)
    rc = main(["download", "--dest", str(tmp_path), "--dataset", dataset, "--base-url", "http://127.0.0.1:9",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "has no part" not in err and "127.0.0.1:9" in err


def test_download_help_lists_data_sets_parts_and_machine_types(capsys):
    from hybrid_asd.cli import main

    with pytest.raises(SystemExit):
        main(["download", "--help"])
    out = capsys.readouterr().out
    for name, spec in dl.DATASETS.items():
        line = next(line for line in out.splitlines() if line.startswith(f"{name}:"))
        assert all(part in line for part in spec.parts) and all(m in line for m in spec.machines)


def test_cached_listing_is_tied_to_its_base_url_and_dropped_after_a_checksum_mismatch(tmp_path, zenodo):
    run(tmp_path, zenodo, parts=["dev"], machines=["fan"])
    cache = tmp_path / "dcase2021" / "archives" / f"zenodo_record_{DEV}.json"
    assert json.loads(cache.read_text())["url"] == f"{zenodo.base_url}/api/records/{DEV}"
    with FakeZenodo(prefix="/mirror") as mirror:  # another address: its own listing is read
        run(tmp_path, mirror, parts=["dev"], machines=["slider"])
        assert f"/mirror/api/records/{DEV}" in mirror.paths()
    # a cached listing whose md5 no download matches is dropped, so the next run asks again
    saved = json.loads(cache.read_text())
    saved["files"]["dev_data_pump.zip"] = "0" * 32
    saved["url"] = f"{zenodo.base_url}/api/records/{DEV}"
    cache.write_text(json.dumps(saved))
    with pytest.raises(DataError, match="cached file list was removed"):
        run(tmp_path, zenodo, parts=["dev"], machines=["pump"], retries=0)
    assert not cache.exists()
    run(tmp_path, zenodo, parts=["dev"], machines=["pump"])
    assert (tmp_path / "dcase2021" / "dev_data" / "pump" / "train").is_dir()
