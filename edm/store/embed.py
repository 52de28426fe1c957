"""The embed job: decode a library, run a backbone once per track, fill the store.

Stages per track (:class:`TrackJob`): hash the file → skip it if the store already has this
backbone for that hash → decode (mono, the backbone's rate, encoder delay trimmed) → check the
length → descriptors → embeddings → one atomic store write. Worker processes run the decode
side in parallel; a cheap CPU backbone (``spectral``) runs entirely in the workers, a model
(``mert``) runs in the main process (on the GPU when there is one) while the workers decode the
next tracks.

Every write is atomic (see :mod:`edm.store.zarr_store`), so Ctrl-C or ``kill -9`` leaves a
readable store, and the next run embeds exactly the tracks that are missing. Bad files are
reported one line each and the rest of the batch goes on; :attr:`EmbedSummary.exit_code` is 1
if any failed.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edm.audio import AudioError, audio_info, content_hash, load_audio
from edm.backbones import Backbone, compute_descriptors, get_backbone
from edm.inputs import MIN_DURATION_S, check_audio, find_inputs
from edm.store.zarr_store import EmbeddingStore, StoreError

Status = Literal["embedded", "present", "failed"]


@dataclass(frozen=True)
class TrackResult:
    """Outcome for one input file."""

    path: str
    status: Status
    track_id: str | None = None
    reason: str = ""
    duration_s: float = 0.0


@dataclass
class EmbedSummary:
    """What a run did: counts, failures with reasons, and speed."""

    store: str
    backbone_key: str
    results: list[TrackResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def _with(self, status: Status) -> list[TrackResult]:
        return [result for result in self.results if result.status == status]

    @property
    def embedded(self) -> list[TrackResult]:
        return self._with("embedded")

    @property
    def present(self) -> list[TrackResult]:
        return self._with("present")

    @property
    def failed(self) -> list[TrackResult]:
        return self._with("failed")

    @property
    def audio_seconds(self) -> float:
        return sum(result.duration_s for result in self.embedded)

    @property
    def exit_code(self) -> int:
        """0 when every input is in the store, 1 if any failed, 130 when interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store, "backbone_key": self.backbone_key,
            "embedded": len(self.embedded), "present": len(self.present),
            "failed": len(self.failed), "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3), "audio_seconds": round(self.audio_seconds, 3),
            "realtime_factor": (round(self.audio_seconds / self.seconds, 1)
                                if self.seconds else None),
            "failures": [{"path": r.path, "reason": r.reason} for r in self.failed],
            "warnings": list(self.warnings),
            "results": [asdict(result) for result in self.results],
        }


# ---------------------------------------------------------------------------------------------
# One track


@dataclass(frozen=True)
class Decoded:
    """A track decoded and described, waiting for the backbone."""

    path: str
    track_id: str
    track_attrs: dict[str, Any]
    audio: np.ndarray
    descriptors: dict[str, np.ndarray] | None


class TrackJob:
    """The per-track work, shared by local worker processes and Ray actors.

    ``backbone`` is built here only when ``build_backbone`` is true (a backbone that runs in
    the workers, or a Ray actor's); otherwise ``prepare`` decodes and the caller's backbone
    finishes the track.
    """

    def __init__(self, store_path: str, backbone_name: str, backbone_options: dict[str, Any],
                 backbone_key: str, sample_rate: int, frames_per_second: float,
                 min_duration_s: float = MIN_DURATION_S, build_backbone: bool = False) -> None:
        self.store = EmbeddingStore(store_path, mode="a")
        self.backbone_key = backbone_key
        self.sample_rate = sample_rate
        self.frames_per_second = frames_per_second
        self.min_duration_s = min_duration_s
        self.backbone: Backbone | None = (
            get_backbone(backbone_name, **backbone_options) if build_backbone else None)

    def prepare(self, path: str, *, describe: bool = True) -> Decoded | TrackResult:
        """Hash, skip if present, decode and (unless ``describe`` is false) compute the
        descriptors; a TrackResult when there is no more to do."""
        try:
            track_id = content_hash(path)
            if self.store.has(track_id, self.backbone_key):
                return TrackResult(path, "present", track_id)
            info = audio_info(path)
            audio = load_audio(path, self.sample_rate)
            duration_s = check_audio(audio, self.sample_rate, path,
                                     min_duration_s=self.min_duration_s)
            descriptors = (compute_descriptors(audio, self.sample_rate, self.frames_per_second)
                           if describe else None)
        except (AudioError, StoreError) as error:
            return TrackResult(path, "failed", reason=str(error))
        attrs = {"source_path": str(path), "duration_s": duration_s,
                 "sample_rate": info.sample_rate, "channels": info.channels,
                 "codec": info.codec, "file_size": os.path.getsize(path)}
        return Decoded(path, track_id, attrs, audio, descriptors)

    def embed(self, decoded: Decoded,
              backbone: Backbone) -> tuple[np.ndarray, dict[str, np.ndarray]] | TrackResult:
        """Embeddings and descriptors of a decoded track (a failed result on bad output)."""
        try:
            if decoded.descriptors is None:
                return backbone.embed_with_descriptors(decoded.audio)
            return backbone.embed(decoded.audio), decoded.descriptors
        except ValueError as error:
            return TrackResult(decoded.path, "failed", decoded.track_id,
                               reason=f"{decoded.path}: {error}")

    def embed_batch(self, batch: list[Decoded], backbone: Backbone
                    ) -> list[tuple[np.ndarray, dict[str, np.ndarray]] | TrackResult]:
        """:meth:`embed` for several tracks through ``backbone.embed_many`` (a model's windows
        of several tracks share batches)."""
        if len(batch) == 1:
            return [self.embed(batch[0], backbone)]
        try:
            outputs = backbone.embed_many([decoded.audio for decoded in batch])
        except ValueError:
            return [self.embed(decoded, backbone) for decoded in batch]  # find the bad one
        staged: list[tuple[np.ndarray, dict[str, np.ndarray]] | TrackResult] = []
        for decoded, embeddings in zip(batch, outputs, strict=True):
            descriptors = decoded.descriptors
            if descriptors is None:
                descriptors = compute_descriptors(decoded.audio, self.sample_rate,
                                                  self.frames_per_second)
            staged.append((embeddings, descriptors))
        return staged

    def write(self, decoded: Decoded, config: dict[str, Any], embeddings: np.ndarray,
              descriptors: dict[str, np.ndarray]) -> TrackResult:
        """Store one embedded track atomically."""
        try:
            written = self.store.write(decoded.track_id, decoded.track_attrs, config,
                                       embeddings, descriptors)
        except StoreError as error:
            return TrackResult(decoded.path, "failed", decoded.track_id, reason=str(error))
        status: Status = "embedded" if written else "present"
        return TrackResult(decoded.path, status, decoded.track_id,
                           duration_s=decoded.track_attrs["duration_s"])

    def finish(self, decoded: Decoded, backbone: Backbone) -> TrackResult:
        """Embed and write one decoded track."""
        staged = self.embed(decoded, backbone)
        if isinstance(staged, TrackResult):
            return staged
        return self.write(decoded, backbone.config(), *staged)

    def run(self, path: str) -> TrackResult:
        """The whole track in this process (needs ``build_backbone=True``)."""
        assert self.backbone is not None, "TrackJob.run needs build_backbone=True"
        # The backbone computes the descriptors with the embeddings (embed_with_descriptors).
        prepared = self.prepare(path, describe=False)
        if isinstance(prepared, TrackResult):
            return prepared
        return self.finish(prepared, self.backbone)


# Worker-process state: one TrackJob per process, built by the pool initializer.
_WORKER_JOB: TrackJob | None = None


def _init_worker(kwargs: dict[str, Any]) -> None:
    global _WORKER_JOB
    # Two decoders per core already fill the machine; BLAS threads on top only contend.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER_JOB = TrackJob(**kwargs)


def _worker(path: str, full: bool) -> Decoded | TrackResult:
    assert _WORKER_JOB is not None
    try:
        return _WORKER_JOB.run(path) if full else _WORKER_JOB.prepare(path)
    except Exception as error:  # batch boundary: report any surprise for this file, go on
        return TrackResult(path, "failed", reason=f"{path}: unexpected {type(error).__name__}: "
                                                  f"{error}")


# ---------------------------------------------------------------------------------------------
# The job


ProgressCallback = Callable[[TrackResult, int, int], None]


def _progress_bar(total: int) -> tuple[Any, ProgressCallback]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("embedding"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]} tracks/s"),
                        TextColumn("[red]{task.fields[failed]} failed"),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=False)
    task = progress.add_task("embed", total=total, rate="-", failed=0)
    start = time.perf_counter()
    failed = 0

    def update(result: TrackResult, done: int, _total: int) -> None:
        nonlocal failed
        failed += result.status == "failed"
        rate = done / max(time.perf_counter() - start, 1e-9)
        progress.update(task, completed=done, rate=f"{rate:.2f}", failed=failed)

    return progress, update


def run_embed_job(
    inputs: Sequence[str | Path], store_path: str | Path, backbone_key: str,
    execute: Callable[[EmbeddingStore, list[Path], Callable[[TrackResult], None]], None], *,
    progress: bool | ProgressCallback = False,
) -> EmbedSummary:
    """The skeleton every embed runner shares: open the store (sweeping dead writers' temp
    entries), find the inputs (:func:`edm.inputs.find_inputs`), report unusable ones, let
    ``execute(store, files, record)`` embed the files, and sum up; Ctrl-C ends the run with a
    readable store and ``interrupted`` set.

    ``progress`` is True for a rich bar on stderr, or a callback ``(result, done, total)``.
    """
    started = time.perf_counter()
    store = EmbeddingStore(Path(store_path).resolve(), mode="a")
    store.sweep_temp()
    found = find_inputs(inputs)
    summary = EmbedSummary(str(store.path), backbone_key, warnings=found.warnings)
    total = len(found.tracks) + len(found.problems)
    bar, callback = (_progress_bar(total) if progress is True
                     else (None, progress if callable(progress) else None))

    def record(result: TrackResult) -> None:
        summary.results.append(result)
        if callback is not None:
            callback(result, len(summary.results), total)

    if bar is not None:
        bar.start()
    try:
        for problem in found.problems:
            record(TrackResult(problem.path, "failed", reason=problem.reason))
        execute(store, found.files, record)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if bar is not None:
            bar.stop()
        summary.seconds = time.perf_counter() - started
    return summary


def job_kwargs(store: EmbeddingStore, backbone: Backbone, options: dict[str, Any], *,
               min_duration_s: float, build_backbone: bool) -> dict[str, Any]:
    """:class:`TrackJob` arguments for ``backbone`` (built from ``options``) on ``store``."""
    return {
        "store_path": str(store.path), "backbone_name": backbone.name,
        "backbone_options": options, "backbone_key": backbone.key,
        "sample_rate": backbone.sample_rate, "frames_per_second": backbone.frames_per_second,
        "min_duration_s": min_duration_s, "build_backbone": build_backbone,
    }


def embed_library(
    inputs: Sequence[str | Path],
    store_path: str | Path,
    backbone: str | Backbone = "spectral",
    *,
    backbone_options: dict[str, Any] | None = None,
    workers: int | None = None,
    min_duration_s: float = MIN_DURATION_S,
    progress: bool | ProgressCallback = False,
) -> EmbedSummary:
    """Embed every track named by ``inputs`` into the store at ``store_path``.

    ``backbone`` is a name for :func:`edm.backbones.get_backbone` (with ``backbone_options``)
    or a built backbone. ``workers`` decoding processes (default: CPU count; 0 runs everything
    in this process); a backbone that ``runs_in_workers`` runs whole in them, a model stays in
    this process while they decode. ``progress`` is True for a rich bar on stderr, or a
    callback ``(result, done, total)``. Tracks already in the store are skipped (``present``).
    """
    options = dict(backbone_options or {})
    model = get_backbone(backbone, **options) if isinstance(backbone, str) else backbone

    def execute(store: EmbeddingStore, files: list[Path],
                record: Callable[[TrackResult], None]) -> None:
        in_workers = model.runs_in_workers
        kwargs = job_kwargs(store, model, options if in_workers else {},
                            min_duration_s=min_duration_s, build_backbone=in_workers)
        count = min((os.cpu_count() or 1) if workers is None else workers, len(files))
        if count <= 0:  # also for no files: no idle processes to start
            _run_inline(files, kwargs, model, record)
        else:
            _run_pool(files, kwargs, model, count, record)

    return run_embed_job(inputs, store_path, model.key, execute, progress=progress)


def _run_inline(files: list[Path], job_kwargs: dict[str, Any], model: Backbone,
                record: Callable[[TrackResult], None]) -> None:
    job = TrackJob(**{**job_kwargs, "build_backbone": False})
    for path in files:
        prepared = job.prepare(str(path), describe=False)  # the backbone describes it
        record(prepared if isinstance(prepared, TrackResult) else job.finish(prepared, model))


def _run_pool(files: list[Path], job_kwargs: dict[str, Any], model: Backbone, workers: int,
              record: Callable[[TrackResult], None]) -> None:
    in_workers = model.runs_in_workers
    # forkserver: workers must not inherit a parent that already holds torch/CUDA state.
    context = multiprocessing.get_context("forkserver")
    job = TrackJob(**{**job_kwargs, "build_backbone": False})
    # Bound the decoded tracks waiting for the model: memory stays a few tracks' audio.
    batch_tracks = max(1, int(model.batch_tracks))
    max_in_flight = 2 * max(workers, batch_tracks)
    pending = iter(files)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(job_kwargs,)) as pool:
        in_flight: set[Future[Decoded | TrackResult]] = set()
        # A model in this process hands each result to a writer thread (zstd runs outside the
        # GIL), so the GPU starts on the next track while the last one is compressed.
        writer = ThreadPoolExecutor(1)
        writes: set[Future[TrackResult]] = set()
        ready: list[Decoded] = []

        def collect(block: bool) -> None:
            nonlocal writes
            done, writes = wait(writes, timeout=None if block else 0,
                                return_when=FIRST_COMPLETED)
            for write in done:
                record(write.result())

        def embed_ready() -> None:
            for decoded, staged in zip(ready, job.embed_batch(ready, model), strict=True):
                if isinstance(staged, TrackResult):
                    record(staged)
                    continue
                while len(writes) >= 2 * batch_tracks:  # bound embedded tracks in memory
                    collect(block=True)
                writes.add(writer.submit(job.write, decoded, model.config(), *staged))
            ready.clear()
            collect(block=False)

        try:
            while True:
                while len(in_flight) < max_in_flight:
                    path = next(pending, None)
                    if path is None:
                        break
                    in_flight.add(pool.submit(_worker, str(path), in_workers))
                if not in_flight:
                    break
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    if isinstance(outcome, TrackResult):
                        record(outcome)
                    else:
                        ready.append(outcome)
                if len(ready) >= batch_tracks:
                    embed_ready()
            if ready:
                embed_ready()
            while writes:
                collect(block=True)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
        finally:
            writer.shutdown(wait=True)  # a started write finishes: its rename is atomic anyway
