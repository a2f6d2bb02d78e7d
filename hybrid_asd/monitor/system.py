"""A trained system that scores new recordings: :func:`load_system` and :meth:`System.score`.

A system is one or more trained experiment folders (or an exported system folder, see
:mod:`hybrid_asd.monitor.export`) of one machine type, and an ensemble: the experiment's own
``ensemble`` section, or for several experiments a weights file from ``hybrid-asd fuse`` (default:
every score table, z-normalised, equal weights). Scoring runs the stages' own code on the new clips:

1. audio: ``load_audio`` with the experiment's ``data`` settings (or a waveform given in memory);
2. log-mel: ``FeatureCache.logmel_batch`` (the ``features`` stage's computation; nothing is cached);
3. extractor: :class:`~hybrid_asd.extractor.embed.Embedder` (the ``extract`` stage's code):
   embeddings and OE scores;
4. detectors: :func:`~hybrid_asd.detectors.stage.score_with_models` (the ``score`` stage's code) with
   the fitted models, loaded once. A test clip is scored against both domain models as the adaptation
   mode defines (``domain_min``: the minimum over the source and target models) whatever its domain;
   each member's record says which model gave the score;
5. fusion: each member z-normalised with statistics of its stored normal training scores
   (:func:`~hybrid_asd.ensemble.znorm.fit_znorm`, as the ``fuse`` stage) and fused by
   :func:`~hybrid_asd.ensemble.fusion.fuse`. ``rank_mean`` ranks a new clip among the rows the
   ``fuse`` stage ranked (the stored train and test rows of its section; a stored row of the same
   file is replaced, not doubled), one clip at a time, so a clip's score never depends on the clips
   scored with it;
6. decision: ``score > threshold`` with :func:`decision_thresholds`.

The domain (from the file name, the caller, or ``unknown``) only chooses the z-normalisation
statistics (``ensemble.per_domain``) and the threshold; for ``unknown`` both are the section's pooled
ones. Scores of the experiment's own test clips equal the ``score`` stage's and the fused ones the
``fuse`` stage's (tests/test_monitor.py), as long as the numeric libraries see batches of the same
shape (oneDNN and BLAS pick kernels by batch size; a batch of a few clips can differ in the last bits).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import yaml
from tqdm.auto import tqdm

from hybrid_asd.config import OE_SCORES, Config
from hybrid_asd.data.audio import audio_info, fit_length, load_audio, resample_signal
from hybrid_asd.data.channels import select_channels
from hybrid_asd.data.clips import Clip
from hybrid_asd.data.names import UNKNOWN_DOMAIN
from hybrid_asd.detectors.adapt import DomainAdaptiveDetector
from hybrid_asd.detectors.settings import DetectorEntry
from hybrid_asd.detectors.stage import Rows, feature_rows, load_group_model, score_with_models
from hybrid_asd.ensemble.fusion import fuse
from hybrid_asd.ensemble.settings import EnsembleSettings
from hybrid_asd.ensemble.members import discover_references, intersect_references
from hybrid_asd.ensemble.znorm import ZNorm, fit_znorm
from hybrid_asd.errors import ConfigError, DataError, HybridASDError, StageError
from hybrid_asd.evaluation.settings import EvaluationSettings
from hybrid_asd.evaluation.thresholds import section_thresholds
from hybrid_asd.experiment import Experiment
from hybrid_asd.extractor.embed import Embedder
from hybrid_asd.features.cache import FeatureCache
from hybrid_asd.monitor.inputs import (
    DEFAULT_BATCH, InputError, Item, absolute, check_domain, describe_file, describe_waveform, expand_paths, plan_windows,
    window_key,
)
from hybrid_asd.monitor.members import Candidate, member_name, rename_weights, resolve, unique_labels
from hybrid_asd.monitor.records import ClipScore, MemberScore, Scores
from hybrid_asd.scores import ScoreTable
from hybrid_asd.utils import resolve_device

log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # (machine, section, domain)
SYSTEM_FILE = "system.json"
SYSTEM_FORMAT = 1
STEPS = ("audio", "logmel", "extractor", "detectors", "fusion")


def decision_thresholds(fused: ScoreTable, quantile: float, reference: set[str] | None = None) -> dict[Key, float]:
    """The system's decision thresholds: the ones the ``score`` and ``fuse`` stages write their
    decision files with (``section_thresholds`` of the fused table's out-of-sample train rows,
    ``reference``, at ``evaluation.threshold_quantile``), plus per section one for an ``unknown``
    domain, fitted to the section's train rows of both domains pooled. The only place predict takes
    thresholds from."""
    thresholds = dict(section_thresholds(fused, quantile, reference=reference))
    pooled_clips = [replace(c, domain=UNKNOWN_DOMAIN) for c in fused.clips]
    pooled = section_thresholds(ScoreTable(fused.detector, pooled_clips, fused.scores), quantile, reference=reference)
    thresholds.update({key: value for key, value in pooled.items() if key[2] == UNKNOWN_DOMAIN})
    return thresholds


class Timer:
    """Seconds spent per scoring step (:data:`STEPS`), summed over calls (for the benchmark)."""

    def __init__(self) -> None:
        self.seconds = {step: 0.0 for step in STEPS}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - start


class InMemoryFeatures:
    """The ``get_many(paths)`` of a FeatureCache (or WaveformSource) over log-mels (or waveforms)
    already computed, for the Embedder."""

    def __init__(self, clips: Sequence[Clip], arrays: Sequence[np.ndarray]):
        self.by_path = {str(c.path): m for c, m in zip(clips, arrays)}

    def get_many(self, paths: Sequence[Any], progress: bool = False) -> list[np.ndarray]:
        return [self.by_path[str(p)] for p in paths]


# --- one experiment ---------------------------------------------------------------------------------
class Source:
    """One experiment of a system: config, front end, extractor and fitted detectors (loaded once)."""

    def __init__(self, label: str, exp: Experiment, config: Config, device: str):
        if not config.data.machine:
            raise StageError(f"{exp.config_path}: data.machine is not set")
        self.label, self.exp, self.config, self.device = label, exp, config, device
        self.table_ids: list[str] = []  # the score tables its members need (set by the System)
        self.front_end = FeatureCache(config.features, config.data)  # its log-mel code; nothing is stored
        self._embedder: Embedder | None = None
        self._models: dict[tuple[str, str], DomainAdaptiveDetector] = {}

    @property
    def entries(self) -> list[DetectorEntry]:
        return [e for e in self.config.detectors if e.id in self.table_ids]

    @property
    def needs_extractor(self) -> bool:
        return OE_SCORES in self.table_ids or any(e.input == "embedding" for e in self.entries)

    @property
    def extractor_reads_waveforms(self) -> bool:
        """``extractor.input: waveform`` (the multi-branch network): it gets crops of the waveform."""
        return self.config.extractor is not None and self.config.extractor.input == "waveform"

    def min_frames(self) -> tuple[int, str]:
        """Fewest log-mel frames a clip needs, and what needs them."""
        need, what = 1, "one frame"
        ext = self.config.extractor
        if self.needs_extractor and ext is not None and ext.input == "patches":
            need, what = self.config.features.patch_frames, "one patch"
        if any(e.input == "logmel_frames" for e in self.entries) and self.config.features.stack_frames > need:
            need, what = self.config.features.stack_frames, "one stack of frames"
        return need, what

    def embedder(self) -> Embedder:
        if self._embedder is None:
            extractor = self.config.extractor
            assert extractor is not None  # needs_extractor implies a config with an extractor
            checkpoint = self.exp.require(self.exp.extractor.checkpoint, "train")
            self._embedder = Embedder(checkpoint, self.device, extractor.extract_batch_size)
        return self._embedder

    def model(self, entry: DetectorEntry, group: str) -> DomainAdaptiveDetector:
        if (entry.id, group) not in self._models:
            self._models[(entry.id, group)] = load_group_model(self.exp, entry, group)
        return self._models[(entry.id, group)]

    def load(self, sections: Iterable[int]) -> None:
        """Load the extractor and every fitted model now (scoring would load them on first use)."""
        if self.needs_extractor:
            self.embedder()
        for entry in self.entries:
            groups = [f"section_{s:02d}" for s in sections] if entry.per_section else ["all"]
            for group in groups:
                self.model(entry, group)

    def raw_scores(self, clips: list[Clip], logmels: list[np.ndarray], waves: list[np.ndarray], timer: Timer
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{table id: (clip scores, domain model per clip)} of the members' tables; ``waves`` are the
        clips' waveforms as this source's ``data`` settings load them (what a waveform extractor reads)."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        embeddings = None
        if self.needs_extractor:
            inputs = InMemoryFeatures(clips, waves if self.extractor_reads_waveforms else logmels)
            with timer("extractor"):
                embeddings, oe = self.embedder()(clips, inputs, progress=False)
            if OE_SCORES in self.table_ids:
                out[OE_SCORES] = (oe, np.full(len(clips), "", dtype=object))
        with timer("detectors"):
            rows: dict[str, Rows] = {}
            for entry in self.entries:
                if entry.input not in rows:  # detectors sharing an input share its rows, as in the stages
                    rows[entry.input] = (Rows(embeddings, np.arange(len(clips))) if entry.input == "embedding"
                                         else feature_rows(entry.input, logmels, self.config.features.stack_frames))
                out[entry.id] = score_with_models(entry, clips, rows[entry.input],
                                                  lambda group, e=entry: self.model(e, group))
        return out


@dataclass
class Member:
    """A fused score table: its name in the system, where it comes from, its stored rows (train rows:
    out-of-fold normal scores; test rows) and its z-normalisation statistics (None: not normalised)."""

    name: str
    source: Source
    table_id: str
    reference: ScoreTable
    znorm: ZNorm | None
    held_out: set[str] | None = None  # train rows that are out-of-sample (ensemble.members.discover_references)

    def normalise(self, table: ScoreTable) -> ScoreTable:
        return table if self.znorm is None else self.znorm.apply(table)


# --- the system -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a logger's info lines (``fuse`` logs one per call; predict calls it per batch)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class System:
    """A loaded system; build it with :func:`load_system`. See the module docstring."""

    sources: list[Source]
    members: list[Member]
    ensemble: EnsembleSettings  # rule, normalise, per_domain, min_clips; weights keyed by member names
    thresholds: dict[Key, float]
    evaluation: EvaluationSettings
    origin: str = ""  # what it was loaded from, for messages
    timer: Timer = field(default_factory=Timer)

    def __post_init__(self) -> None:
        machines = {k[0] for k in self.thresholds}
        if len(machines) != 1:
            raise StageError(f"{self.origin}: a system scores one machine type; its thresholds cover {sorted(machines)}")
        for source in self.sources:
            source.table_ids = [m.table_id for m in self.members if m.source is source]
        self._normed_reference: dict[str, dict[tuple[str, int], ScoreTable]] | None = None

    # ---- construction
    @classmethod
    def from_experiments(cls, exp_dirs: Sequence[str | Path], *, weights: str | Path | None = None,
                         device: str | None = None) -> "System":
        exps = [Experiment(d) for d in exp_dirs]
        if not exps:
            raise StageError("no experiment folder given")
        for exp in exps:
            if not exp.root.is_dir():
                raise StageError(f"{exp.root}: no such experiment folder")
        configs = [exp.load_config() for exp in exps]
        machines = sorted({str(c.data.machine) for c in configs})
        if len(machines) != 1:
            raise StageError(f"the experiments are of different machine types ({', '.join(machines)}); "
                             "a system scores one")
        device = resolve_device(device or configs[0].device)
        labels = unique_labels([c.name for c in configs], [e.root.name for e in exps])
        sources = [Source(label, exp, config, device) for label, exp, config in zip(labels, exps, configs)]
        ensemble, chosen = choose_members(sources, weights)
        members = [reference_member(sources, candidate, name, ensemble) for candidate, name in chosen]
        evaluation = configs[0].evaluation
        if any(c.evaluation != evaluation for c in configs[1:]):
            log.warning("the experiments' evaluation sections differ; thresholds use %s's", labels[0])
        fused = reference_fusion(members, ensemble)
        # as the fuse stage: the fused train rows of clips held out for every member (#14)
        held_out = intersect_references({m.name: m.held_out for m in members if m.held_out is not None},
                                        [m.name for m in members])
        thresholds = decision_thresholds(fused, evaluation.threshold_quantile, held_out)
        return cls(sources, members, ensemble, thresholds, evaluation,
                   origin=", ".join(str(e.root) for e in exps))

    @classmethod
    def from_folder(cls, folder: str | Path, *, device: str | None = None) -> "System":
        """A system exported by :func:`hybrid_asd.monitor.export.export_system` (JSON, YAML, CSV, .npy,
        FAISS and ``weights_only`` torch files: nothing is unpickled)."""
        folder = Path(folder)
        spec = read_system_file(folder)
        try:
            sources: dict[str, Source] = {}
            for item in spec["experiments"]:
                exp = Experiment(folder / item["folder"])
                config = exp.load_config()
                sources[item["label"]] = Source(item["label"], exp, config, resolve_device(device or config.device))
            ensemble = EnsembleSettings.parse(spec["ensemble"], where="ensemble", source=str(folder / SYSTEM_FILE))
            members = []
            for item in spec["members"]:
                source = sources[item["experiment"]]
                table = ScoreTable.from_csv(source.exp.require(source.exp.score_table_path(item["table"]), "score"),
                                            item["name"])
                znorm = ZNorm.from_dict(spec["znorm"][item["name"]]) if item["name"] in spec["znorm"] else None
                members.append(Member(item["name"], source, item["table"], table, znorm))
            thresholds = {(t["machine"], int(t["section"]), t["domain"]): float(t["threshold"])
                          for t in spec["thresholds"]}
            evaluation = EvaluationSettings.parse(spec["evaluation"], where="evaluation")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, HybridASDError):
                raise
            raise DataError(f"{folder / SYSTEM_FILE}: malformed system file ({exc!r})") from None
        return cls(list(sources.values()), members, ensemble, thresholds, evaluation, origin=str(folder))

    # ---- facts
    @property
    def machine(self) -> str:
        return next(iter(self.thresholds))[0]

    @property
    def sections(self) -> list[int]:
        return sorted({k[1] for k in self.thresholds})

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    def weights(self) -> dict[str, Any] | None:
        return dict(self.ensemble.weights) or None

    def load(self) -> "System":
        """Load every extractor and fitted model now (else on first use); returns self."""
        for source in self.sources:
            source.load(self.sections)
        return self

    def reference_fused(self) -> ScoreTable:
        """The fused table of the stored rows (what the ``fuse`` stage wrote as fused.csv)."""
        return reference_fusion(self.members, self.ensemble)

    # ---- scoring
    def score(
        self,
        inputs: Any,
        *,
        section: int | None = None,
        domain: str | None = None,
        sample_rate: int | None = None,
        window: float | None = None,
        hop: float | None = None,
        errors: str = "raise",
        batch_size: int = DEFAULT_BATCH,
        progress: bool = False,
    ) -> Scores:
        """Score files, folders of WAVs or waveforms (1-D arrays at ``sample_rate``, default the
        system's); see :meth:`iter_scores`. ``errors="raise"`` stops at the first bad input with a
        :class:`~hybrid_asd.errors.DataError`; ``"skip"`` leaves it out and lists it in ``.errors``."""
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        problems: list[str] = []
        on_error = problems.append if errors == "skip" else None
        records = list(self.iter_scores(inputs, section=section, domain=domain, sample_rate=sample_rate,
                                         window=window, hop=hop, on_error=on_error, batch_size=batch_size,
                                         progress=progress))
        return Scores(records, problems)

    def iter_scores(
        self,
        inputs: Any,
        *,
        section: int | None = None,
        domain: str | None = None,
        sample_rate: int | None = None,
        window: float | None = None,
        hop: float | None = None,
        on_error: Callable[[str], None] | None = None,
        batch_size: int = DEFAULT_BATCH,
        progress: bool = False,
    ) -> Iterator[ClipScore]:
        """Records of ``inputs`` as they are scored, ``batch_size`` clips at a time. With ``window``
        (seconds; ``hop`` defaults to it) each file is scored window by window. A bad input goes to
        ``on_error`` (one line naming it) and is left out; without ``on_error`` it raises."""
        check_domain(domain)
        if window is None and hop is not None:
            raise DataError("--hop needs --window")
        items = list(self.plan(inputs, section=section, domain=domain, sample_rate=sample_rate,
                               window=window, hop=hop if hop is not None else window, on_error=on_error))
        with tqdm(total=len(items), desc="predict", unit="clip" if window is None else "window",
                  disable=not progress, dynamic_ncols=True) as bar:
            for start in range(0, len(items), max(1, batch_size)):
                chunk = items[start:start + batch_size]
                yield from self._score_items(chunk, on_error)
                bar.update(len(chunk))

    def plan(self, inputs: Any, *, section: int | None, domain: str | None, sample_rate: int | None,
             window: float | None, hop: float | None, on_error: Callable[[str], None] | None
             ) -> Iterator[Item]:
        """The items of ``inputs`` (files are checked: readable audio, a rate the system can take)."""
        if window is not None and (window <= 0 or hop is None or hop <= 0):
            raise DataError(f"--window and --hop must be > 0 seconds, got {window} and {hop}")
        for n, value in enumerate(as_input_list(inputs)):
            if isinstance(value, np.ndarray):
                key = f"<waveform {n}>"
                if window is not None:
                    raise DataError("windowed scoring takes files; cut waveforms into clips yourself")
                try:
                    clip = describe_waveform(key, self.machine, self.sections, section=section, domain=domain)
                except DataError as exc:
                    _report(on_error, exc)
                    continue
                yield Item(key, clip, wave=value, sample_rate=sample_rate)
                continue
            files, missing = expand_paths([value])
            for message in missing:
                _report(on_error, InputError(message))
            for path in files:
                try:
                    yield from self._file_items(path, section, domain, window, hop)
                except DataError as exc:
                    _report(on_error, exc)

    def _file_items(self, path: Path, section: int | None, domain: str | None, window: float | None,
                    hop: float | None) -> list[Item]:
        clip = describe_file(path, self.machine, self.sections, section=section, domain=domain)
        info = audio_info(path)  # DataError for a file that is not audio
        for source in self.sources:
            check_rate(str(path), info["sample_rate"], source.front_end)
        if window is None:
            return [Item(str(path), clip, path=path)]
        assert hop is not None
        items = []
        for start, end in plan_windows(str(path), info["duration"], window, hop):
            key = window_key(path, start, end)
            items.append(Item(key, replace(clip, path=Path(key)), path=path, start=start, end=end))
        return items

    def _score_items(self, items: list[Item], on_error: Callable[[str], None] | None) -> Iterator[ClipScore]:
        """Records of one batch of items (bad ones reported and left out)."""
        front_ends = {id(s.front_end): s.front_end for s in self.sources}
        waves: list[dict[int, np.ndarray]] = []
        alive: list[Item] = []
        recordings: dict[tuple[str, int], np.ndarray] = {}
        with self.timer("audio"):
            for item in items:
                try:
                    waves.append({k: item_waveform(item, fe, recordings) for k, fe in front_ends.items()})
                    alive.append(item)
                except DataError as exc:
                    _report(on_error, exc)
        if not alive:
            return
        with self.timer("logmel"):
            logmels = {k: fe.logmel_batch([w[k] for w in waves]) for k, fe in front_ends.items()}
        keep = []
        for i, item in enumerate(alive):
            try:
                for source in self.sources:
                    check_length(item, logmels[id(source.front_end)][i], source)
                keep.append(i)
            except DataError as exc:
                _report(on_error, exc)
        if not keep:
            return
        items = [alive[i] for i in keep]
        clips = [item.clip for item in items]
        raw: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for source in self.sources:
            mels = [logmels[id(source.front_end)][i] for i in keep]
            source_waves = [waves[i][id(source.front_end)] for i in keep]
            raw[id(source)] = source.raw_scores(clips, mels, source_waves, self.timer)
        with self.timer("fusion"):
            yield from self._records(items, clips, raw)

    def _records(self, items: list[Item], clips: list[Clip], raw: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]]
                 ) -> Iterator[ClipScore]:
        tables, normed, models = [], [], []
        for member in self.members:
            scores, winners = raw[id(member.source)][member.table_id]
            table = ScoreTable(member.name, clips, scores)
            table.check_finite(f"new clips scored by {member.name}")
            tables.append(table)
            normed.append(member.normalise(table))
            models.append(winners)
        fused = self._fuse_new(normed)
        for i, (item, clip) in enumerate(zip(items, clips)):
            threshold = self.thresholds[(clip.machine, clip.section, clip.domain)]
            members = {m.name: MemberScore(float(t.scores[i]), float(n.scores[i]), str(w[i]))
                       for m, t, n, w in zip(self.members, tables, normed, models)}
            yield ClipScore(
                path=str(item.path) if item.path is not None else item.key, machine=clip.machine,
                section=clip.section, domain=clip.domain, label=clip.label, score=float(fused[i]),
                threshold=float(threshold), decision=int(fused[i] > threshold), members=members,
                start=item.start, end=item.end,
            )

    def _fuse_new(self, normed: list[ScoreTable]) -> np.ndarray:
        """Fused scores of new rows (already normalised), in their order."""
        rule, weights = self.ensemble.rule, self.weights()
        with _quiet("hybrid_asd.ensemble.fusion"):
            if rule != "rank_mean":
                return fuse(normed, rule=rule, weights=weights, normalise="none").scores
            out = np.empty(len(normed[0]))
            for i, clip in enumerate(normed[0].clips):
                tables = []
                for member, table in zip(self.members, normed):
                    reference = self._reference_rows(member, clip)
                    tables.append(ScoreTable.concat([reference, ScoreTable(member.name, [clip], table.scores[i:i + 1])],
                                                    member.name))
                out[i] = fuse(tables, rule=rule, weights=weights, normalise="none").scores[-1]
            return out

    def _reference_rows(self, member: Member, clip: Clip) -> ScoreTable:
        """The member's normalised stored rows of the clip's section, without a row of the same file."""
        if self._normed_reference is None:
            self._normed_reference = {}
            for m in self.members:
                normed = m.normalise(m.reference)
                groups = {(c.machine, c.section) for c in normed.clips}
                self._normed_reference[m.name] = {g: normed.select(machine=g[0], section=g[1]) for g in groups}
        rows = self._normed_reference[member.name][(clip.machine, clip.section)]
        same = [i for i, c in enumerate(rows.clips) if str(c.path) == str(clip.path)]
        if not same:
            return rows
        keep = np.setdiff1d(np.arange(len(rows)), same)
        return ScoreTable(rows.detector, [rows.clips[i] for i in keep], rows.scores[keep])


# --- helpers ----------------------------------------------------------------------------------------
def _report(on_error: Callable[[str], None] | None, exc: DataError) -> None:
    if on_error is None:
        raise exc
    on_error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def as_input_list(inputs: Any) -> list[Any]:
    """One path or waveform, or a sequence of them, as a list."""
    if isinstance(inputs, (str, Path, np.ndarray)):
        return [inputs]
    try:
        values = list(inputs)
    except TypeError:
        raise DataError(f"cannot score {type(inputs).__name__}: give paths or waveforms (1-D arrays)") from None
    for value in values:
        if not isinstance(value, (str, Path, np.ndarray)):
            raise DataError(f"cannot score {type(value).__name__}: give paths or waveforms (1-D arrays)")
    return values


def check_rate(name: str, rate: int, front_end: FeatureCache) -> None:
    """A clip at ``rate`` Hz is resampled to the system's rate, unless resampling is off or the file
    lacks bands the model uses (a lower rate holds nothing above its Nyquist frequency)."""
    conf = front_end.audio_conf
    target = int(conf["sample_rate"])
    if rate == target:
        return
    if not conf["resample"]:
        raise InputError(f"{name}: sample rate {rate} Hz, but the system takes {target} Hz and resampling is off "
                         "(data.resample: false)")
    fmax = front_end.front_end_conf()["fmax"] or target / 2
    if rate / 2 < fmax:
        raise InputError(f"{name}: sample rate {rate} Hz cannot be resampled to the system's {target} Hz: it holds "
                         f"nothing above {rate / 2:g} Hz and the model uses bands up to {fmax:g} Hz")


def item_waveform(item: Item, front_end: FeatureCache, recordings: dict[tuple[str, int], np.ndarray]) -> np.ndarray:
    """The item's samples as the front end's ``data`` settings load a clip (windows: the slice of the
    whole recording, which is loaded once per batch)."""
    conf = front_end.audio_conf
    if item.wave is not None:
        return prepare_waveform(item.wave, item.sample_rate, front_end, item.key)
    assert item.path is not None
    if item.start is None:
        return load_audio(item.path, **conf)
    assert item.end is not None
    key = (str(item.path), id(front_end))
    if key not in recordings:
        for old in [k for k in recordings if k[0] != key[0]]:  # windows of a recording come together:
            del recordings[old]  # keep only the current recording in memory
        recordings[key] = load_audio(item.path, **{**conf, "duration": None})
    rate = int(conf["sample_rate"])
    start, length = int(round(item.start * rate)), int(round((item.end - item.start) * rate))
    return fit_length(recordings[key][..., start:start + length], length)


def prepare_waveform(wave: np.ndarray, rate: int | None, front_end: FeatureCache, name: str) -> np.ndarray:
    """A waveform given in memory, made what ``load_audio`` makes of a file: one channel, float32, the
    system's rate (resampled), padded or cropped to ``data.duration``, clipped to [-1, 1].
    Hand-written because ``load_audio`` reads files; it follows ``load_audio`` step by step."""
    conf = front_end.audio_conf
    x = np.asarray(wave)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{name}: waveform of dtype {x.dtype}; give float samples in [-1, 1]")
    if x.ndim == 2:  # (samples, channels), as soundfile reads; data.channel: index, mean or all
        try:
            x = select_channels(x.astype(np.float32, copy=False), conf["channel"], name)
        except DataError as exc:
            raise InputError(str(exc)) from None
    elif conf["channel"] == "all":
        x = x[None]  # a mono waveform: one plane, as load_audio gives a mono file
    if x.ndim not in (1, 2) or x.size == 0:
        raise InputError(f"{name}: a waveform must be a non-empty 1-D array (or samples x channels), got shape "
                         f"{np.shape(wave)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name}: waveform holds NaN or infinite samples")
    target = int(conf["sample_rate"])
    rate = target if rate is None else int(rate)
    check_rate(name, rate, front_end)
    if rate != target:
        x = resample_signal(x, rate, target)
    if conf["duration"] is not None:
        x = fit_length(x, int(round(conf["duration"] * target)))
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


def check_length(item: Item, logmel: np.ndarray, source: Source) -> None:
    need, what = source.min_frames()
    frames = int(logmel.shape[-1])
    if frames < need:
        hop, rate = source.config.features.hop_length, source.config.data.sample_rate
        raise InputError(f"{item.key}: {frames} log-mel frames ({frames * hop / rate:.2f} s), shorter than "
                         f"{what} of {need} frames (about {need * hop / rate:.2f} s)")


def choose_members(sources: list[Source], weights: str | Path | None) -> tuple[EnsembleSettings, list[tuple[Candidate, str]]]:
    """The ensemble settings and the fused members (candidate, member name) of a system: one
    experiment without a weights file fuses as its ``fuse`` stage does; otherwise the weights file's
    ensemble section (default: every score table, the ensemble defaults)."""
    qualified = len(sources) > 1
    candidates = [Candidate(s.label, table_id) for s in sources for table_id in s.exp.score_table_paths()]
    if not candidates:
        raise StageError(f"{', '.join(str(s.exp.root) for s in sources)}: no score tables; run the 'score' stage first")
    if weights is None and not qualified:
        ensemble = sources[0].config.ensemble
        where = f"{sources[0].exp.config_path}: ensemble"
    else:
        ensemble = read_ensemble_file(weights) if weights is not None else EnsembleSettings()
        where = f"{weights}: ensemble" if weights is not None else "ensemble"
    # Members as the fuse stage chooses them: ensemble.members, else every score table present.
    chosen = [resolve(m, candidates, f"{where}.members") for m in ensemble.members] if ensemble.members else candidates
    renamed = rename_weights(ensemble.weights, chosen, qualified, f"{where}.weights")
    names = [member_name(c, qualified) for c in chosen]
    ensemble = EnsembleSettings.parse({**ensemble.to_dict(), "members": names, "weights": renamed}, where="ensemble")
    return ensemble, list(zip(chosen, names))


def read_ensemble_file(path: str | Path) -> EnsembleSettings:
    """The ``ensemble`` section of a weights file (``hybrid-asd fuse`` writes one), validated."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"weights file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    section = data.get("ensemble", data) if isinstance(data, dict) else data
    return EnsembleSettings.parse(section, where="ensemble", source=str(path))


def reference_member(sources: list[Source], candidate: Candidate, name: str, ensemble: EnsembleSettings) -> Member:
    """A member with its stored score table and z-normalisation statistics, fitted as the ``fuse``
    stage fits them (``fit_znorm`` with the held-out validation clips of extractor-dependent tables as reference)."""
    source = next(s for s in sources if s.label == candidate.label)
    path = source.exp.require(source.exp.score_table_path(candidate.table_id), "score")
    table = ScoreTable.from_csv(path, name)
    znorm = None
    references = discover_references([path]).get(candidate.table_id)
    if ensemble.normalise == "znorm":
        znorm = fit_znorm(table, per_domain=ensemble.per_domain, min_clips=ensemble.min_clips, reference=references)
    return Member(name, source, candidate.table_id, table, znorm, references)


def reference_fusion(members: list[Member], ensemble: EnsembleSettings) -> ScoreTable:
    """The members' stored rows fused as the ``fuse`` stage fuses them."""
    with _quiet("hybrid_asd.ensemble.fusion"):
        return fuse([m.normalise(m.reference) for m in members], rule=ensemble.rule,
                    weights=dict(ensemble.weights) or None, normalise="none")


def read_system_file(folder: Path) -> dict[str, Any]:
    path = folder / SYSTEM_FILE
    if not path.is_file():
        raise StageError(f"{folder}: not a system folder (no {SYSTEM_FILE}; 'hybrid-asd export' writes one)")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != SYSTEM_FORMAT:
        raise DataError(f"{path}: system format {spec.get('format') if isinstance(spec, dict) else None!r}; "
                        f"this version reads format {SYSTEM_FORMAT}")
    return spec


def is_system_folder(path: str | Path) -> bool:
    return (Path(path) / SYSTEM_FILE).is_file()


def load_system(source: str | Path | Sequence[str | Path], *, weights: str | Path | None = None,
                device: str | None = None) -> System:
    """A trained system from experiment folder(s) or an exported system folder.

    ``source``: one experiment folder (fused with its own ``ensemble`` section), several experiment
    folders of one machine type (fused with ``weights``, a weights file of ``hybrid-asd fuse``, or
    equal weights), or a folder written by ``hybrid-asd export``. ``device``: where the extractor runs
    (default: the config's, ``auto``).
    """
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    if len(paths) == 1 and is_system_folder(paths[0]):
        if weights is not None:
            raise ConfigError(f"{paths[0]} is an exported system with its own fusion; it takes no weights file")
        return System.from_folder(paths[0], device=device)
    exported = [p for p in paths if is_system_folder(p)]
    if exported:
        raise ConfigError(f"{exported[0]} is an exported system; load it alone")
    return System.from_experiments([absolute(p) for p in paths], weights=weights, device=device)
