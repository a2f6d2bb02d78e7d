"""`download --year 2025|2026` against a fake Zenodo on 127.0.0.1: the official records and archive names
(nttcslab/dcase2023_task2_baseline_ae datasets/download_path_2025.yaml, download_path_2026.yaml),
md5 checks, the layout the recipes read, and what the unpacked data looks like to the manifest."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from hybrid_asd.cli import main
from hybrid_asd.data import download as dl
from hybrid_asd.data import download_http
from hybrid_asd.data.download_catalogue import DATASETS, YEARS
from hybrid_asd.data.inventory import inventory
from hybrid_asd.data.manifest import scan
from hybrid_asd.errors import DataError
from test_download import FakeZenodo, make_zip, md5

pytestmark = pytest.mark.timeout(60)

DEV25, ADD25, EVAL25 = 15097779, 15392814, 15519362
DEV26, ADD26 = 19336329, 20151556


def wav_bytes(channels: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal((1600, channels))).astype(np.float32), 16000, format="WAV",
             subtype="PCM_16")
    return buf.getvalue()


def members() -> dict[int, dict[str, dict[str, bytes]]]:
    """Zip members with the official folder layout (one top folder per machine type)."""
    n26 = "car_A2_spd_28V_mic_1_noise_1"
    return {
        DEV26: {
            "dev_ToyCar_r2.zip": {
                f"ToyCar/train/section_00_source_train_normal_0000_{n26}.wav": wav_bytes(2, 1),
                f"ToyCar/test/section_00_target_test_anomaly_0000_{n26}.wav": wav_bytes(2, 2),
                "ToyCar/attributes_00.csv": b"file_name,d1p,d1v\n",
            },
            "dev_valveEmu.zip": {
                "valveEmu/train/section_00_source_train_normal_0000_pat_01_noise_2.wav": wav_bytes(2, 3),
                "valveEmu/test/section_00_source_test_normal_0000_pat_01_noise_2.wav": wav_bytes(2, 4),
            },
        },
        ADD26: {
            "eval_data_Sander_train.zip": {
                "Sander/train/section_00_source_train_normal_0000_noise_1.wav": wav_bytes(2, 5),
            },
        },
        DEV25: {
            "dev_bearing.zip": {
                "bearing/train/section_00_source_train_normal_0000_noAttribute.wav": wav_bytes(1, 6),
                "bearing/test/section_00_source_test_normal_0000_noAttribute.wav": wav_bytes(1, 7),
            },
        },
        ADD25: {
            "eval_data_AutoTrash_train.zip": {
                "AutoTrash/train/section_00_source_train_normal_0000_id_B2_spd_1_mic_2.wav": wav_bytes(1, 8),
                "AutoTrash/supplemental/section_00_machine_0001_.wav": wav_bytes(1, 9),
            },
        },
        EVAL25: {
            "eval_data_AutoTrash_test.zip": {"AutoTrash/test/section_00_0000.wav": wav_bytes(1, 10)},
        },
    }


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch):
    monkeypatch.setattr(download_http, "RETRY_BACKOFF_S", 0.0)


@pytest.fixture
def zenodo():
    fake = FakeZenodo()
    fake.members = members()
    fake.files = {rid: {name: make_zip(m) for name, m in archives.items()} for rid, archives in fake.members.items()}
    fake.extra = {}
    with fake:
        yield fake


def test_catalogue_has_the_official_records_and_names():
    d25, d26 = DATASETS["dcase2025"], DATASETS["dcase2026"]
    assert YEARS[2025] == "dcase2025" and YEARS[2026] == "dcase2026"
    assert [(r.part, r.record_id) for r in d25.records] == [("dev", DEV25), ("additional", ADD25), ("eval", EVAL25)]
    assert [(r.part, r.record_id) for r in d26.records] == [("dev", DEV26), ("additional", ADD26)]
    assert [a.name for a in d26.record("dev").archives] == [
        "dev_ToyCar_r2.zip", "dev_ToyCarEmu.zip", "dev_bearingEmu.zip", "dev_fan.zip", "dev_gearboxEmu.zip",
        "dev_sliderEmu.zip", "dev_valveEmu.zip"]
    assert [a.machine for a in d26.record("additional").archives] == [
        "ToyDrone", "ToothBrush", "SewingMachine", "BlowerDustCollector", "Sander"]
    assert [a.name for a in d25.record("additional").archives][:2] == [
        "eval_data_ToyRCCar_train.zip", "eval_data_ToyPet_train.zip"]
    assert len(d25.record("eval").archives) == 8 and d25.record("dev").archives[0].name == "dev_bearing.zip"
    # the official lists carry no checksums: every md5 comes from the Zenodo record at run time
    assert all(a.md5 is None for spec in (d25, d26) for r in spec.records for a in r.archives)


def test_year_2026_downloads_checks_md5_and_unpacks_two_channel_clips(tmp_path, zenodo):
    argv = ["download", "--year", "2026", "--dest", str(tmp_path), "--base-url", zenodo.base_url,
            "--machines", "ToyCar", "valveEmu", "Sander", "--no-progress"]
    assert main(argv) == 0
    root = tmp_path / "dcase2026"
    for rid, archives in zenodo.members.items():
        if rid not in (DEV26, ADD26):
            continue
        target = "dev_data" if rid == DEV26 else "eval_data"
        for archive, files in archives.items():
            assert md5((root / "archives" / archive).read_bytes()) == md5(zenodo.files[rid][archive])
            for member, data in files.items():
                assert (root / target / member).read_bytes() == data
    requested = zenodo.paths()
    assert any(p.endswith("/files/dev_ToyCar_r2.zip?download=1") for p in requested)
    assert not any("dev_ToyCar.zip" in p for p in requested)  # the replaced archive is never asked for
    manifest = scan(root / "dev_data")
    assert manifest.problems == [] and manifest.machines() == ["ToyCar", "valveEmu"]
    items = {i.machine: i for i in inventory(manifest.clips)}
    assert items["ToyCar"].channels == {2: 2} and items["ToyCar"].attributes["noise"] == ["1"]
    # a second run asks for nothing
    zenodo.clear()
    assert main(argv) == 0 and zenodo.paths() == []


def test_year_2025_every_part_with_supplemental_folder(tmp_path, zenodo):
    paths = dl.download(tmp_path, dataset="dcase2025", machines=["bearing", "AutoTrash"],
                        base_url=zenodo.base_url, progress=False, timeout=5)
    root = tmp_path / "dcase2025"
    assert paths == [root / "dev_data" / "bearing", root / "eval_data" / "AutoTrash", root / "eval_data" / "AutoTrash"]
    assert sorted(p.name for p in (root / "eval_data" / "AutoTrash").iterdir()) == ["supplemental", "test", "train"]
    manifest = scan(root / "eval_data")
    assert manifest.problems == []
    assert [(c.split, c.kind) for c in manifest.clips if c.split == "supplemental"] == [("supplemental", "machine")]
    assert [c.domain for c in manifest.select(split="test")] == ["unknown"]  # evaluation names hide the domain


def test_checksum_mismatch_names_the_archive(tmp_path, zenodo):
    zenodo.corrupt["dev_valveEmu.zip"] = b"PK" + b"\0" * 200
    with pytest.raises(DataError, match=r"dev_valveEmu\.zip.*" + md5(zenodo.files[DEV26]["dev_valveEmu.zip"])):
        dl.download(tmp_path, dataset="dcase2026", parts=["dev"], machines=["valveEmu"], base_url=zenodo.base_url,
                    progress=False, timeout=5, retries=1)
    assert not (tmp_path / "dcase2026" / "dev_data" / "valveEmu").exists()


def test_year_and_dataset_are_exclusive_and_years_are_listed(capsys):
    with pytest.raises(SystemExit) as err:
        main(["download", "--year", "2026", "--dataset", "dcase2021", "--dest", "x"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        main(["download", "--year", "2024", "--dest", "x"])
    assert "invalid choice: 2024" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["download", "--help"])
    out = capsys.readouterr().out
    assert "dcase2026: parts dev, additional; machine types ToyCar, ToyCarEmu, bearingEmu" in out
    assert "SewingMachine" in out and "dcase2025: parts dev, additional, eval" in out
