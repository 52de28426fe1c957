"""A synthetic DJ library on disk: :func:`make_library`.

Layout of ``OUT``::

    audio/<name>.<wav|flac|mp3>   the tracks, 44.1 kHz stereo
    truth/<name>.jams             exact truth (edm.data.jams_io.annotation_to_jams)
    rekordbox.xml                 the library as Rekordbox exports it, with DJ label errors
    injected_errors.csv           every error injected: track, content_hash, kind, time_s,
                                  true_value, noisy_value (see edm.synth.noise)
    synth.json                    the parameters the library was made with

Everything depends only on ``seed`` (each track draws its own seed from ``(seed, index)``), so
the same call writes the same library whatever the number of workers. Names look like
``synth-<seed>-<index>-<genre>``.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edm import __version__
from edm.audio import AudioError, content_hash, write_audio
from edm.data.jams_io import save_jams
from edm.data.rekordbox import write_rekordbox_xml
from edm.data.schema import TrackAnnotation, TrackIdentity
from edm.synth.arrangement import ALL_GENRES, GENRES, VARIETIES
from edm.synth.noise import NOISE_LEVELS, InjectedError, dj_labels
from edm.synth.track import synthesize_track

AUDIO_FORMATS = ("wav", "flac", "mp3")
CSV_COLUMNS = ("track", "content_hash", "kind", "time_s", "true_value", "noisy_value")


class SynthError(ValueError):
    """Bad parameters for a synthetic library (the message says which and why)."""


@dataclass(frozen=True)
class TrackResult:
    """What one worker made: the file, the truth, the noisy labels and their errors."""

    name: str
    audio_path: str
    content_hash: str
    truth: TrackAnnotation
    noisy: TrackAnnotation
    errors: tuple[InjectedError, ...]


@dataclass
class LibrarySummary:
    """Result of :func:`make_library`; ``failed`` holds one-line messages, one per bad track."""

    out_dir: str
    tracks: list[str] = field(default_factory=list)
    genres: dict[str, int] = field(default_factory=dict)
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    audio_seconds: float = 0.0
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def track_seed(seed: int, index: int) -> int:
    """The seed of track ``index`` of a library made with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _genre_for(index: int, genres: Sequence[str]) -> str:
    # Cycling (not drawing) guarantees every requested genre appears in small libraries.
    return genres[index % len(genres)]


def _make_one(out_dir: str, index: int, seed: int, genre: str, minutes: float, noise: str,
              audio_format: str, variety: str = "classic") -> TrackResult:
    own_seed = track_seed(seed, index)
    name = f"synth-{seed}-{index:03d}-{genre}"
    track = synthesize_track(own_seed, genre=genre, minutes=minutes,
                             title=f"Synth {seed}-{index:03d}", variety=variety)
    audio_path = Path(out_dir) / "audio" / f"{name}.{audio_format}"
    write_audio(audio_path, track.audio, track.sample_rate)
    digest = content_hash(audio_path)
    identity: TrackIdentity = track.truth.track.model_copy(
        update={"path": str(audio_path.resolve()), "content_hash": digest,
                "source_id": str(index + 1)}
    )
    truth = track.truth.model_copy(update={"track": identity})
    save_jams(truth, Path(out_dir) / "truth" / f"{name}.jams")
    noise_rng = np.random.default_rng(np.random.SeedSequence([own_seed, 0xD1]))
    noisy, errors = dj_labels(truth, noise, noise_rng)
    return TrackResult(name, audio_path.name, digest, truth, noisy, tuple(errors))


def _format(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}" if abs(value) >= 1000 else f"{value:.6f}"


def write_errors_csv(path: Path, results: Sequence[TrackResult]) -> Path:
    """``injected_errors.csv``: one row per injected error, sorted by track then time."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for result in results:
            for error in result.errors:
                writer.writerow([result.audio_path, result.content_hash, error.kind,
                                 _format(error.time_s), _format(error.true_value),
                                 _format(error.noisy_value)])
    return path


def make_library(
    out_dir: str | Path,
    *,
    tracks: int,
    seed: int,
    minutes: float = 3.0,
    genres: Sequence[str] | None = None,
    noise: str = "default",
    audio_format: str = "wav",
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    variety: str = "classic",
) -> LibrarySummary:
    """Write a synthetic library to ``out_dir`` (layout in the module docstring).

    ``variety`` ``"broad"`` draws from more of real music (:mod:`edm.synth.arrangement`).
    ``genres`` (default: all of :data:`~edm.synth.arrangement.GENRES`, with ``"broad"`` also
    :data:`~edm.synth.arrangement.BROAD_GENRES`) are cycled over the
    tracks. ``progress`` is called with each finished track's name. A track that fails is
    reported in ``summary.failed`` and left out of the XML; the others are still written.

    >>> import tempfile
    >>> summary = make_library(tempfile.mkdtemp(), tracks=1, seed=0, minutes=0.2, noise="none")
    >>> len(summary.tracks), summary.errors_by_kind
    (1, {})
    """
    if variety not in VARIETIES:
        raise SynthError(f"unknown variety {variety!r}; choose from {', '.join(VARIETIES)}")
    genres = list(genres) if genres else list(GENRES if variety == "classic" else ALL_GENRES)
    unknown = [g for g in genres if g not in ALL_GENRES]
    if unknown:
        raise SynthError(f"unknown genre(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(ALL_GENRES)}")
    if noise not in NOISE_LEVELS:
        raise SynthError(f"unknown noise level {noise!r}; choose from {', '.join(NOISE_LEVELS)}")
    if audio_format not in AUDIO_FORMATS:
        raise SynthError(f"unknown format {audio_format!r}; choose from {', '.join(AUDIO_FORMATS)}")
    if tracks < 1 or minutes <= 0:
        raise SynthError(f"need tracks >= 1 and minutes > 0 (got {tracks}, {minutes})")

    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    summary = LibrarySummary(out_dir=str(out))
    jobs = [(str(out), i, seed, _genre_for(i, genres), minutes, noise, audio_format, variety)
            for i in range(tracks)]
    results: list[TrackResult] = []

    def collect(job: tuple, outcome: TrackResult | Exception) -> None:
        name = f"synth-{seed}-{job[1]:03d}-{job[3]}"
        if isinstance(outcome, Exception):
            summary.failed.append(f"{out / 'audio' / name}: {outcome}")
        else:
            results.append(outcome)
        if progress is not None:
            progress(name)

    if workers <= 1:
        for job in jobs:
            try:
                collect(job, _make_one(*job))
            except (AudioError, OSError, ValueError) as error:
                collect(job, error)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, os.cpu_count() or 1)) as pool:
            futures = [pool.submit(_make_one, *job) for job in jobs]
            for job, future in zip(jobs, futures, strict=True):
                try:
                    collect(job, future.result())
                except (AudioError, OSError, ValueError) as error:
                    collect(job, error)

    results.sort(key=lambda result: result.name)
    if results:
        write_rekordbox_xml([result.noisy for result in results], out / "rekordbox.xml")
    write_errors_csv(out / "injected_errors.csv", results)
    summary.tracks = [result.audio_path for result in results]
    summary.genres = dict(Counter(result.truth.track.genre for result in results))
    summary.errors_by_kind = dict(Counter(e.kind for r in results for e in r.errors))
    summary.audio_seconds = round(sum(r.truth.track.duration_s or 0.0 for r in results), 3)
    params = {"seed": seed, "tracks": tracks, "minutes": minutes, "genres": genres,
              "variety": variety, "noise": noise, "format": audio_format,
              "edm_version": __version__}
    (out / "synth.json").write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
    return summary
