"""One call from an audio file to an :class:`~edm.analyze.result.Analysis`, in layers.

``embed`` → ``activations`` → ``decode`` → :func:`analyze`. Each layer is usable alone, so
tests and benchmarks can enter at any of them (e.g. decode activations synthesised from a
known grid, or run the heads on embeddings already in memory):

- :func:`embed`: audio file → :class:`Embedded` (frame embeddings + descriptors). Reads the
  embedding store when the track is already there (by content hash), else decodes the file
  and runs the backbone the heads were trained on: the same code ``edm embed`` runs, so
  training and inference features never drift apart.
- :func:`activations`: embeddings → per-frame probabilities (:class:`Activations`).
- :func:`decode`: activations + descriptors → beat grid and sections (:mod:`edm.decode`).
- :func:`section_energy`: each section's energy: the model's energy head where it has one,
  the descriptors (:func:`edm.decode.section_energy`) for what it does not predict.
- :func:`analyze`: all of the above for one path; :func:`analyze_many` for a batch, loading
  the model once and reporting bad files without stopping.

The model is a heads folder written by ``edm fit-heads``; without one, the small default
model shipped in ``edm/default_model/`` is used (see ``benchmarks/build_default_model.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edm.analyze.result import Analysis
from edm.data.schema import EnergyData, Section, TrackAnnotation
from edm.decode import (
    BeatGrid,
    DecodeError,
    decode_beats,
    decode_sections,
    merge_energy,
    section_confidence,
)
from edm.heads.activations import Activations
from edm.heads.artifacts import DEFAULT_MODEL_DIR


class AnalyzeError(ValueError):
    """A track or model that cannot be analysed; the message names the file and the problem."""


@dataclass(frozen=True)
class Model:
    """Trained heads plus what analysis needs to know about them.

    ``backbone_name`` and ``backbone_options`` are what ``edm fit-heads`` saved from the store
    (the settings that made the embeddings the heads were trained on); :meth:`backbone`
    rebuilds exactly that backbone.
    """

    heads: Any  # edm.heads.artifacts.Heads: .predict(embeddings, fps) -> Activations
    name: str
    backbone_key: str
    backbone_name: str | None
    backbone_options: dict[str, Any]
    path: Path
    #: ``sha256:`` + 12 hex digits of the heads' config and weights: which exact model ran.
    version: str = ""

    def backbone(self) -> Any:
        """The backbone the heads were trained on, built once per model.

        Raises :class:`AnalyzeError` naming the folder when it cannot be built or its key is
        not the one the heads were trained on (a store embedded with other settings).
        """
        if "_backbone" not in self.__dict__:  # a cache on a frozen dataclass
            self.__dict__["_backbone"] = self._build_backbone()
        return self.__dict__["_backbone"]

    def _build_backbone(self) -> Any:
        from edm.backbones import get_backbone

        if not self.backbone_name:
            raise AnalyzeError(f"{self.path}: the heads do not say which backbone made their "
                               f"embeddings ({self.backbone_key!r}); refit with `edm fit-heads`")
        try:
            backbone = get_backbone(self.backbone_name, **self.backbone_options)
        except (OSError, ValueError, TypeError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise AnalyzeError(f"{self.path}: cannot build backbone {self.backbone_key!r} "
                               f"({first})") from error
        if backbone.key != self.backbone_key:
            raise AnalyzeError(
                f"{self.path}: heads were trained on {self.backbone_key!r} embeddings, but their "
                f"backbone settings build {backbone.key!r}; refit with `edm fit-heads`")
        return backbone


def load_model(model_dir: str | Path | None = None) -> Model:
    """Load heads from ``model_dir`` (an ``edm fit-heads`` output) or the shipped default.

    Raises :class:`AnalyzeError` naming the folder when it is missing or not a heads folder.
    """
    path = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    if not path.is_dir():
        raise AnalyzeError(f"{path}: model folder not found (train one with `edm fit-heads`, "
                           "or leave out --models for the default model)")
    if not (path / "config.json").is_file():
        raise AnalyzeError(f"{path}: not a heads folder (no config.json)")
    from edm.heads.artifacts import load_heads

    try:
        heads = load_heads(path)
    except (OSError, ValueError, KeyError) as error:
        raise AnalyzeError(f"{path}: cannot load heads ({error})") from error
    key = str(heads.backbone_key)
    name = "default" if path.resolve() == DEFAULT_MODEL_DIR.resolve() else path.name
    return Model(heads=heads, name=f"{name} ({key})", backbone_key=key,
                 backbone_name=heads.backbone_name, backbone_options=dict(heads.backbone_options),
                 path=path, version=model_fingerprint(path))


def model_fingerprint(model_dir: Path) -> str:
    """``sha256:`` + 12 hex digits over a heads folder's config, weights and energy files
    (not its metrics or out-of-fold probabilities, which do not change what it predicts)."""
    import hashlib

    from edm.heads.artifacts import CONFIG_FILE, WEIGHTS_FILE

    digest = hashlib.sha256()
    for file in [model_dir / CONFIG_FILE, model_dir / WEIGHTS_FILE,
                 *sorted(model_dir.glob("energy_*.ubj"))]:
        if file.is_file():
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return f"sha256:{digest.hexdigest()[:12]}"


# ---------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class Embedded:
    """Frame embeddings and descriptors of one track, at ``frames_per_second``."""

    embeddings: np.ndarray
    descriptors: dict[str, np.ndarray]
    frames_per_second: float
    duration_s: float
    content_hash: str | None = None
    from_store: bool = False


def embed_audio(audio: np.ndarray, backbone: Any) -> Embedded:
    """Embeddings and descriptors of mono float32 audio at ``backbone.sample_rate``, computed
    as ``edm embed`` computes them (:meth:`~edm.backbones.Backbone.embed_with_descriptors`)."""
    fps = float(backbone.frames_per_second)
    embeddings, descriptors = backbone.embed_with_descriptors(audio)
    return Embedded(embeddings=embeddings, descriptors=descriptors, frames_per_second=fps,
                    duration_s=len(audio) / backbone.sample_rate)


def _checked_audio(path: Path, sample_rate: int) -> np.ndarray:
    """The decoded track (:func:`~edm.audio.load_audio`), checked long enough and not silent."""
    from edm.audio import AudioError, load_audio
    from edm.inputs import check_audio

    try:
        audio = load_audio(path, sample_rate)
        check_audio(audio, sample_rate, path)
    except AudioError as error:
        raise AnalyzeError(str(error)) from error
    return audio


def embed(path: str | Path, model: Model, *, store: Any = None, backbone: Any = None,
          audio: np.ndarray | None = None) -> Embedded:
    """Embeddings for ``path``: from ``store`` (an open EmbeddingStore) if it holds the track
    for the model's backbone, else computed now with ``backbone`` (built once per batch) from
    ``audio`` (the file decoded at the backbone's rate, checked) or the file decoded now."""
    from edm.audio import content_hash
    from edm.backbones.descriptors import DESCRIPTOR_NAMES, compute_descriptors

    path = Path(path)
    if not path.is_file():
        raise AnalyzeError(f"{path}: no such file")
    try:
        digest = content_hash(path)
    except OSError as error:
        raise AnalyzeError(f"{path}: cannot read ({error.strerror})") from error
    if store is not None and store.has(digest, model.backbone_key):
        info = store.backbone_info(digest, model.backbone_key)
        descriptors = store.descriptors(digest, model.backbone_key)
        if not set(DESCRIPTOR_NAMES) <= set(descriptors) and info.sample_rate:
            # An entry written before some descriptors existed (the band levels the boundary
            # evidence needs): they are recomputed from the audio, the stored embeddings kept,
            # so the analysis does not depend on when the store was written.
            audio = _checked_audio(path, int(info.sample_rate))
            descriptors = compute_descriptors(audio, int(info.sample_rate),
                                              float(info.frames_per_second))
        return Embedded(
            embeddings=store.embeddings(digest, model.backbone_key),
            descriptors=descriptors,
            frames_per_second=float(info.frames_per_second),
            duration_s=float(store.track_info(digest).duration_s),
            content_hash=digest, from_store=True,
        )
    backbone = backbone if backbone is not None else model.backbone()
    if audio is None:
        audio = _checked_audio(path, backbone.sample_rate)
    duration_s = len(audio) / backbone.sample_rate
    result = embed_audio(audio, backbone)
    return Embedded(embeddings=result.embeddings, descriptors=result.descriptors,
                    frames_per_second=result.frames_per_second, duration_s=duration_s,
                    content_hash=digest)


def activations(embedded: Embedded, model: Model) -> Activations:
    """Head probabilities per frame for one track's embeddings."""
    return model.heads.predict(embedded.embeddings, embedded.frames_per_second)


#: A beat head is "silent" on a track when it gives fewer confident peaks (>= 0.2) than this
#: share of the beats the slowest EDM tempo (70 BPM) would have.
_WEAK_BEAT_SHARE = 0.4


def onset_fallback(acts: Activations, descriptors: dict[str, np.ndarray]) -> Activations | None:
    """The activations with the beat channel replaced by the onset envelope when the beat
    head barely fires (music unlike its training data); None when the head is fine.

    The comb search in :mod:`edm.decode` then finds tempo and phase from the onsets, the way
    classic beat trackers do; downbeats and boundaries still come from the heads.
    """
    from edm.decode import EDM_MIN_BPM, find_peaks

    onset = descriptors.get("onset")
    duration_s = acts.n_frames / acts.frames_per_second
    confident = len(find_peaks(np.asarray(acts.beat, float), height=0.2))
    if onset is None or confident >= _WEAK_BEAT_SHARE * duration_s * EDM_MIN_BPM / 60.0:
        return None
    flux = np.maximum(np.asarray(onset, float) - np.median(onset), 0.0)
    flux = np.clip(flux / (np.percentile(flux, 99.5) + 1e-9), 0.0, 1.0)
    return Activations(beat=flux[: acts.n_frames].astype(np.float32), downbeat=acts.downbeat,
                       boundary=acts.boundary, frames_per_second=acts.frames_per_second,
                       section=acts.section, section_labels=acts.section_labels)


def decode(
    acts: Activations, *, descriptors: dict[str, np.ndarray] | None = None,
    duration_s: float | None = None,
) -> tuple[BeatGrid, list[Section]]:
    """Beat grid and sections (with energy when ``descriptors`` are given)."""
    grid = decode_beats(acts, descriptors=descriptors)
    sections = decode_sections(acts, grid, descriptors=descriptors, duration_s=duration_s)
    return grid, sections


def section_energy(
    embedded: Embedded, sections: list[Section], model: Model
) -> tuple[list[Section], str]:
    """Sections with the energy head's predictions over the descriptor energy, and where the
    energy came from (``"energy head"`` or ``"descriptors"``)."""
    energy_head = getattr(model.heads, "energy", None)
    if energy_head is None or not sections:
        return sections, "descriptors"
    predicted = model.heads.predict_energy(
        embedded.embeddings, embedded.descriptors, sections, embedded.frames_per_second)
    rounded = [EnergyData(**{k: round(v, 4) for k, v in p.model_dump(exclude_none=True).items()})
               for p in predicted]
    merged = merge_energy([s.energy for s in sections], rounded)
    return [s.model_copy(update={"energy": e}) for s, e in zip(sections, merged, strict=True)
            ], "energy head"


def analyze(
    path: str | Path, model: Model | None = None, *, store: Any = None, backbone: Any = None,
    base: TrackAnnotation | None = None, audio: np.ndarray | None = None,
) -> Analysis:
    """Analyse one audio file. Raises :class:`AnalyzeError` naming the file on bad input.

    ``audio``: the file already decoded at the backbone's rate and checked
    (:func:`analyze_many` decodes the next file while this one is analysed).
    """
    started = time.perf_counter()
    model = model if model is not None else load_model()
    embedded = embed(path, model, store=store, backbone=backbone, audio=audio)
    acts = activations(embedded, model)
    fallback = onset_fallback(acts, embedded.descriptors)
    if fallback is not None:
        acts = fallback
    try:
        grid, sections = decode(acts, descriptors=embedded.descriptors,
                                duration_s=embedded.duration_s)
    except DecodeError as error:
        raise AnalyzeError(f"{path}: {error}") from error
    confidences = section_confidence(acts, grid, sections, descriptors=embedded.descriptors)
    sections, energy_source = section_energy(embedded, sections, model)
    return Analysis(
        path=str(Path(path).resolve()), duration_s=round(embedded.duration_s, 4), grid=grid,
        sections=sections, model=model.name, backbone=model.backbone_key,
        content_hash=embedded.content_hash, elapsed_s=time.perf_counter() - started, base=base,
        extra={"envelope": envelope(embedded.descriptors, embedded.frames_per_second),
               "beat_source": "onsets (beat head silent)" if fallback is not None else "heads",
               "energy_source": energy_source},
        model_version=model.version, activations=acts, section_confidence=confidences,
    )


#: Rate of the band-energy envelope kept for plots: enough for a 6-minute overview.
ENVELOPE_FPS = 10.0


def envelope(descriptors: dict[str, np.ndarray], frames_per_second: float) -> dict[str, Any]:
    """Band energies pooled (RMS) to ``ENVELOPE_FPS`` for plotting, as plain lists."""
    step = max(1, round(frames_per_second / ENVELOPE_FPS))
    out: dict[str, Any] = {"frames_per_second": frames_per_second / step}
    for name in ("rms", "bass", "mid", "high"):
        values = descriptors.get(name)
        if values is None:
            continue
        n = len(values) // step * step
        pooled = np.sqrt(np.mean(np.square(values[:n].reshape(-1, step)), axis=1))
        out[name] = pooled.astype(np.float32)
    return out


@dataclass(frozen=True)
class Outcome:
    """One input of a batch: its analysis, or the one-line reason it failed."""

    path: str
    analysis: Analysis | None = None
    error: str | None = None


def analyze_many(
    inputs: Iterable[tuple[str | Path, TrackAnnotation | None]], model: Model, *,
    store: Any = None, on_done: Callable[[Outcome], None] | None = None,
) -> Iterator[Outcome]:
    """Analyse ``(path, base annotation or None)`` pairs with one model and one backbone.

    A file that fails yields an :class:`Outcome` with ``error`` set; the batch goes on.
    Without a store, the next file decodes in a background thread while this one is analysed:
    decoding (libsndfile, soxr) runs in C without the GIL, so on two cores it costs a batch
    next to nothing; memory holds at most two decoded tracks.
    """
    backbone = model.backbone()
    pairs = list(inputs)
    with ThreadPoolExecutor(max_workers=1) as decoder:

        def decoding(index: int) -> Future[np.ndarray] | None:
            if store is not None or index >= len(pairs) or not Path(pairs[index][0]).is_file():
                return None  # the store may hold it; a missing file fails in analyze
            return decoder.submit(_checked_audio, Path(pairs[index][0]), backbone.sample_rate)

        upcoming = decoding(0)
        for index, (path, base) in enumerate(pairs):
            current, upcoming = upcoming, decoding(index + 1)
            try:
                audio = current.result() if current is not None else None
                outcome = Outcome(str(path), analysis=analyze(path, model, store=store,
                                                               backbone=backbone, base=base,
                                                               audio=audio))
            except AnalyzeError as error:
                outcome = Outcome(str(path), error=str(error).splitlines()[0])
            if on_done is not None:
                on_done(outcome)
            yield outcome
