"""Named, documented checkpoints (the ``checkpoints/`` folder of the project).

A published checkpoint is a folder::

    checkpoints/<name>/
        checkpoint.pt          the extractor weights {"model", "config", "meta"} (loads with weights_only=True);
                               its validation clips are data-root-relative paths
        config.yaml            the experiment's full resolved config, data.root left empty (give --data-root)
        meta.json              versions, data fingerprint, seed, classes and sections (from the checkpoint)
        results.csv            the official result table of the experiment's fused scores at publication
        reference_scores.csv   the checkpoint's OE scores and embedding norms of fixed real clips
        publication.json       how it was made (data, command, versions): what the card is written from
        MODEL_CARD.md          use, data, numbers, reproduction

``publish`` writes it from a trained experiment folder, ``refresh`` rewrites the files of an already
published folder in the current format (relative paths, card, reference scores) without retraining,
and ``load_published`` returns the model. The reference scores are what a test reproduces: numbers of
the checkpoint itself on clips that never change (tests/test_checkpoints.py), unlike the results
table, whose numbers also depend on the data generator and on every later stage's code.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from hybrid_asd.config import Config, dump_config, read_yaml_mapping
from hybrid_asd.data.clips import clip_relpath
from hybrid_asd.data.manifest import scan
from hybrid_asd.ensemble.fusion import FUSED_NAME
from hybrid_asd.errors import StageError
from hybrid_asd.experiment import Experiment
from hybrid_asd.extractor.checkpoint import load_checkpoint, read_checkpoint
from hybrid_asd.extractor.embed import extract
from hybrid_asd.features.cache import FeatureCache
from hybrid_asd.utils import atomic_path, atomic_torch_save, atomic_write_json, atomic_write_text, package_versions

log = logging.getLogger(__name__)

DEFAULT_DEST = Path("checkpoints")
REFERENCE_FILE = "reference_scores.csv"
PUBLICATION_FILE = "publication.json"
REFERENCE_COLUMNS = ("clip", "oe_score", "embedding_0", "embedding_1", "embedding_2", "embedding_3")
N_REFERENCE_DIMS = 4  # leading embedding components recorded per clip


def publish(exp_dir: str | Path, name: str, dest: str | Path = DEFAULT_DEST, command: str = "",
            overwrite: bool = False, reference_clips: str | Path | None = None) -> Path:
    """Copy a trained experiment's extractor into ``dest/name`` with a model card.

    ``reference_clips``: a data root of real clips (e.g. the project's ``../shared/data/dcase2023t2-samples/
    dev_data/raw``); the checkpoint's OE scores of those of its sections are written to
    ``reference_scores.csv`` and the card, for a test to reproduce."""
    exp = Experiment(exp_dir)
    config = exp.load_config()
    source = exp.require(exp.extractor.checkpoint, "train")
    load_checkpoint(source, "cpu")  # validates the file before anything is copied
    out = Path(dest) / name
    if out.exists() and not overwrite:
        raise StageError(f"{out} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "checkpoint.pt") as tmp:
        shutil.copyfile(source, tmp)
    atomic_write_text(out / "config.yaml", dump_config(config))
    result = exp.result_path(FUSED_NAME)
    if result.is_file():
        with atomic_path(out / "results.csv") as tmp:
            shutil.copyfile(result, tmp)
    publication = {"command": command, "experiment": exp.root.name, "data": data_origin(config),
                   "versions": {k: str(v) for k, v in package_versions().items()}}
    atomic_write_json(out / PUBLICATION_FILE, publication)
    refresh(out, reference_clips=reference_clips)
    log.info("published %s -> %s", exp.root, out)
    return out


def data_origin(config: Config) -> dict[str, Any]:
    """What the training data was: the synthetic generator's preset, seed and version when the data
    root holds its record (``synthetic.json``), else the data root's folder name."""
    root = config.data.root
    record = Path(root) / "synthetic.json" if root is not None else None
    if record is not None and record.is_file():
        meta = json.loads(record.read_text())
        return {"synthetic": {"preset": meta.get("preset"), "seed": meta.get("seed"), "version": meta.get("version"),
                              "machines": meta.get("settings", {}).get("machines")}}
    return {"root_name": Path(root).name if root is not None else None}


def refresh(folder: str | Path, *, reference_clips: str | Path | None = None,
            publication: dict[str, Any] | None = None) -> Path:
    """Rewrite a published folder in the current format: validation clips as data-root-relative paths
    in ``checkpoint.pt``, ``data.root`` empty in ``config.yaml``, ``meta.json``, the reference scores
    (``reference_clips`` given) and ``MODEL_CARD.md``. ``publication`` replaces ``publication.json``
    (how the checkpoint was made), for folders published before it existed."""
    folder = Path(folder)
    ckpt_path = folder / "checkpoint.pt"
    ckpt = read_checkpoint(ckpt_path)
    meta = ckpt["meta"]
    relative = [clip_relpath(p) for p in meta.get("val_paths") or []]
    if relative != list(meta.get("val_paths") or []):
        meta["val_paths"] = relative
        atomic_torch_save(ckpt_path, ckpt)  # the same dict, only meta["val_paths"] rewritten
    raw = read_yaml_mapping(folder / "config.yaml")
    raw.setdefault("data", {})["root"] = None  # the training machine's folder means nothing elsewhere
    config = Config.parse(raw, source=str(folder / "config.yaml"))
    atomic_write_text(folder / "config.yaml", dump_config(config))
    public_meta = {k: v for k, v in meta.items() if k != "val_paths"}
    atomic_write_text(folder / "meta.json", json.dumps(public_meta, indent=2, sort_keys=True) + "\n")
    if publication is not None:
        atomic_write_json(folder / PUBLICATION_FILE, publication)
    pub_path = folder / PUBLICATION_FILE
    publication = json.loads(pub_path.read_text()) if pub_path.is_file() else {}
    if reference_clips is not None:
        write_reference_scores(folder, Path(reference_clips), config)
        publication["reference_root"] = str(reference_clips)
        atomic_write_json(pub_path, publication)
    atomic_write_text(folder / "MODEL_CARD.md", model_card(folder.name, config, public_meta, folder, publication))
    return folder


def reference_clip_list(root: Path, meta: dict[str, Any]) -> list[Any]:
    """The clips under ``root`` of the checkpoint's machine types and sections (sorted)."""
    machines = sorted({s.split("/")[0] for s in meta["sections"]})
    present = [m for m in machines if (root / m).is_dir()]
    if not present:
        return []
    clips = scan(root, machines=present).clips
    return sorted((c for c in clips if f"{c.machine}/{c.section_name}" in meta["sections"]),
                  key=lambda c: clip_relpath(c.path))


def reference_scores(folder: Path, root: Path, config: Config) -> list[tuple[str, float, list[float]]]:
    """``(clip, OE score, leading embedding components)`` of the reference clips under ``root``, computed now."""
    meta = read_checkpoint(folder / "checkpoint.pt")["meta"]
    clips = reference_clip_list(root, meta)
    if not clips:
        return []
    emb, oe = extract(folder / "checkpoint.pt", clips, FeatureCache(config.features, config.data), device="cpu",
                      progress=False)
    return [(clip_relpath(c.path), float(s), [float(v) for v in e[:N_REFERENCE_DIMS]]) for c, s, e in zip(clips, oe, emb)]


def write_reference_scores(folder: Path, root: Path, config: Config) -> None:
    rows = reference_scores(folder, root, config)
    if not rows:
        raise StageError(f"{root}: no clips of the checkpoint's sections to compute reference scores on")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REFERENCE_COLUMNS)
    writer.writerows([clip, repr(score), *map(repr, dims)] for clip, score, dims in rows)
    atomic_write_text(folder / REFERENCE_FILE, buf.getvalue())


def read_reference_scores(folder: str | Path) -> list[tuple[str, float, list[float]]]:
    path = Path(folder) / REFERENCE_FILE
    with open(path, newline="") as fh:
        return [(r["clip"], float(r["oe_score"]), [float(r[f"embedding_{i}"]) for i in range(N_REFERENCE_DIMS)])
                for r in csv.DictReader(fh)]


# --- the card -------------------------------------------------------------------------------------
def model_card(name: str, config: Config, meta: dict[str, Any], folder: Path, publication: dict[str, Any]) -> str:
    ext, features = config.extractor, config.features
    if ext is None:  # pragma: no cover - publish requires a checkpoint, which requires an extractor
        raise StageError(f"{folder}: the config has no extractor to publish")
    machine = config.data.machine or "<machine>"
    lines = [
        f"# {name}", "",
        f"Feature extractor of the approach `{config.name}` ({config.description}).", "",
        "## Use", "",
        f"Score your own `{machine}` clips (a data root laid out as `<root>/{machine}/{{train,source_test,"
        "target_test}/`, DCASE names) with this extractor and the approach's detectors, without training it:", "",
        "```bash",
        f"hybrid-asd prepare --exp exp/{name} --config checkpoints/{name}/config.yaml --data-root <root>",
        f"mkdir -p exp/{name}/extractor && cp checkpoints/{name}/checkpoint.pt exp/{name}/extractor/",
        f"hybrid-asd run --exp exp/{name} --stage extract    # extract, fit, score, fuse, evaluate",
        f"hybrid-asd report exp/{name}",
        "```", "",
        f"The sections must be the checkpoint's ({', '.join(meta.get('sections', []))}): an unknown section is "
        "refused by name. In Python: `hybrid_asd.checkpoints.load_published(\"checkpoints/" + name + "\")` returns "
        "`(model, checkpoint)`; `hybrid_asd.extractor.embed.extract(path, clips, FeatureCache(...))` gives "
        "embeddings and OE scores.", "",
        "## Model",
        f"- backbone `{ext.backbone.name}` {ext.backbone.conf or ''}, head `{ext.head.name}` "
        f"{ext.head.conf or ''}, embedding {ext.embedding_dim}-d, labels `{ext.labels}`",
        f"- input: log-mel {features.n_mels} bands (n_fft {features.n_fft}, hop "
        f"{features.hop_length}), {ext.input} of {features.patch_frames} frames",
        f"- trained {ext.epochs} epochs, {ext.optimizer.name} lr {ext.optimizer.lr}, "
        f"batch {ext.batch_size}, seed {meta.get('seed')}", "",
        "## Data",
        f"- machine type `{config.data.machine}`, sections {', '.join(meta.get('sections', []))}",
        f"- classes: {', '.join(meta.get('classes', []))}",
        f"- training data fingerprint `{meta.get('data_fingerprint')}` (hash of the training clips' data-root-relative "
        "paths)",
        f"- {data_description(publication.get('data') or {})}", "",
    ]
    lines += numbers_section(folder, publication)
    lines += reproduce_section(name, config, publication)
    lines += ["## Versions", "", "```", json.dumps(meta.get("versions", {}), indent=2), "```", ""]
    return "\n".join(lines)


def data_description(data: dict[str, Any]) -> str:
    synthetic = data.get("synthetic")
    if synthetic:
        return (f"synthetic data: `hybrid-asd synth` preset `{synthetic.get('preset')}`, seed {synthetic.get('seed')}, "
                f"generator version {synthetic.get('version')}")
    return f"data root `{data.get('root_name') or 'unknown'}`"


def numbers_section(folder: Path, publication: dict[str, Any]) -> list[str]:
    lines = ["## Numbers", ""]
    ref = folder / REFERENCE_FILE
    if ref.is_file():
        lines += [f"Reference numbers of this checkpoint on real clips of its sections (`{publication.get('reference_root')}`"
                  "), `reference_scores.csv`: the OE score and the first embedding components; "
                  "tests/test_checkpoints.py recomputes them:", "",
                  "| clip | OE score | embedding[:4] |", "|---|---|---|"]
        lines += [f"| `{clip}` | {score:.6f} | {', '.join(f'{v:.4f}' for v in dims)} |"
                  for clip, score, dims in read_reference_scores(folder)]
        lines.append("")
    result = folder / "results.csv"
    if result.is_file():
        versions = publication.get("versions", {})
        lines += [f"Official result table of the experiment's fused scores at publication (`results.csv`, DCASE 2021 "
                  f"protocol, hybrid_asd {versions.get('hybrid_asd', '?')}). It also depends on the data generator's "
                  "version and on the detector and ensemble code, so a rerun with later code may differ:", "",
                  "```", result.read_text().strip(), "```", ""]
    else:
        lines += ["The experiment was not evaluated at publication.", ""]
    return lines


def reproduce_section(name: str, config: Config, publication: dict[str, Any]) -> list[str]:
    machine = config.data.machine or "<machine>"
    synthetic = (publication.get("data") or {}).get("synthetic")
    lines = ["## Reproduce", "", "```bash"]
    if synthetic:
        lines.append(f"hybrid-asd synth --preset {synthetic.get('preset')} --seed {synthetic.get('seed')} --out data/synth"
                     f"    # generator version {synthetic.get('version')} (hybrid_asd.data.synthetic.SYNTH_VERSION)")
        root = "data/synth"
    else:
        root = "<the training data root>"
    lines += [f"hybrid-asd run --exp exp/{config.name}/{machine}/seed{config.seed} --config checkpoints/{name}/config.yaml "
              f"--data-root {root}",
              f"hybrid-asd publish --exp exp/{config.name}/{machine}/seed{config.seed} --name {name} --overwrite "
              "--reference-clips ../shared/data/dcase2023t2-samples/dev_data/raw",
              "```", ""]
    if publication.get("command"):
        lines += [f"Originally made with: `{publication['command']}`.", ""]
    return lines


def load_published(path: str | Path, device: str = "cpu"):
    """``(model, checkpoint dict)`` of a published checkpoint folder (or its checkpoint.pt)."""
    path = Path(path)
    return load_checkpoint(path / "checkpoint.pt" if path.is_dir() else path, device)
