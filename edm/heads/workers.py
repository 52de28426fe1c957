"""Fits side by side in worker processes, one torch thread each (``edm fit-heads --workers``).

Why processes, and one thread each: the heads are small convolutions over long sequences, so
torch's intra-op threads (OpenMP) meet at a barrier after every operation. On a machine where
another process holds a core, every operation then waits for the thread that is not running,
and waiting threads spin: one busy neighbour made a 2-thread fit 4.5x slower (issue 18).
k-fold models are independent, so they train in separate single-threaded processes that never
wait on each other; a busy neighbour costs its share of the CPU and no more.

Embeddings reach the workers through one memory-mapped float32 file (the page cache holds one
copy for every worker); annotations travel pickled (they are small). Workers send a report per
epoch through a queue and the parent calls that job's progress callback, so progress reads
the same as in one process. Trained nets come back as their constructor config and numpy
weights, rebuilt in the parent.

This module imports neither torch nor the training code at import time: a worker sets its
thread count before torch starts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queue_module
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edm.heads.activations import Activations
    from edm.heads.train import EpochReport, FitResult, TrackData, TrainConfig

#: Environment of a worker process: one OpenMP/MKL thread, and threads that sleep instead of
#: spinning when they wait (read by libgomp when torch is imported).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


@dataclass
class FitJob:
    """One model to train: tracks by id, and the held-out tracks to predict afterwards."""

    name: str  # "fold 1/5", "final": also the progress stage
    train: list[str]
    config: TrainConfig
    validation: list[str] = field(default_factory=list)
    predict: list[str] = field(default_factory=list)
    #: (rank, world, rendezvous file): one process of a data-parallel fit (``train.Shard``);
    #: the ``world`` jobs of one fit must run at the same time, in separate workers.
    shard: tuple[int, int, str] | None = None


@dataclass
class JobResult:
    """A trained job: the fit, its predictions for ``FitJob.predict``, and what it cost."""

    fit: FitResult
    predictions: dict[str, Activations]
    wall_s: float
    cpu_s: float
    predict_s: float


def usable_cpus() -> int:
    """CPUs this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(n_jobs: int) -> int:
    """One worker per usable CPU, never more than there are jobs."""
    return max(1, min(n_jobs, usable_cpus()))


def _run(
    job: FitJob,
    tracks: Mapping[str, TrackData],
    progress: Callable[[EpochReport], None] | None,
) -> JobResult:
    from edm.heads.train import Shard, fit_model

    started, cpu = time.perf_counter(), time.process_time()
    with _process_group(job.shard):
        fit = fit_model(
            [tracks[t] for t in job.train],
            job.config,
            validation=[tracks[t] for t in job.validation],
            progress=progress,
            shard=Shard(*job.shard[:2]) if job.shard else None,
        )
    predicted = time.perf_counter()
    predictions = {t: fit.predict(tracks[t].embeddings) for t in job.predict}
    ended = time.perf_counter()
    return JobResult(
        fit, predictions, ended - started, time.process_time() - cpu, ended - predicted
    )


@contextlib.contextmanager
def _process_group(shard: tuple[int, int, str] | None) -> Iterator[None]:
    """Join the data-parallel group of ``shard`` (gloo, file rendezvous) for the block."""
    if shard is None:
        yield
        return
    import torch.distributed as dist

    rank, world, rendezvous = shard
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Worker side

_WORKER: dict[str, Any] = {}


def _init_worker(embeddings_path: str, records: list[tuple], reports: Any) -> None:
    for name, value in WORKER_ENV.items():
        os.environ[name] = value
    import torch

    from edm.heads.train import TrackData

    torch.set_num_threads(1)
    matrix = np.load(embeddings_path, mmap_mode="r")
    _WORKER["tracks"] = {
        track_id: TrackData(
            track_id=track_id,
            embeddings=matrix[offset : offset + n_frames],
            frames_per_second=fps,
            annotation=annotation,
        )
        for track_id, offset, n_frames, fps, annotation in records
    }
    _WORKER["reports"] = reports


def _portable(fit: FitResult) -> FitResult:
    """The fit with its nets as (config, numpy weights): plain data for the trip back."""
    from dataclasses import replace

    nets = [
        (net.config(), {k: v.detach().numpy() for k, v in net.state_dict().items()})
        for net in fit.nets
    ]
    return replace(fit, nets=nets)  # type: ignore[arg-type]


def _rebuilt(fit: FitResult) -> FitResult:
    from dataclasses import replace

    import torch

    from edm.heads.model import TemporalHeads

    nets = []
    for config, weights in fit.nets:  # type: ignore[misc]
        net = TemporalHeads.from_config(config)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        nets.append(net.eval())
    return replace(fit, nets=nets)


def _run_in_worker(index: int, job: FitJob) -> JobResult:
    reports = _WORKER["reports"]
    result = _run(job, _WORKER["tracks"], lambda report: reports.put((index, report)))
    result.fit = _portable(result.fit)
    return result


# ---------------------------------------------------------------------------------------------
# Parent side


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _write_embeddings(tracks: Sequence[TrackData], folder: Path) -> tuple[str, list[tuple]]:
    dims = {t.embeddings.shape[1] for t in tracks}
    if len(dims) != 1:
        raise ValueError(f"tracks have different embedding sizes {sorted(dims)}; use one backbone")
    path = folder / "embeddings.npy"
    matrix = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(sum(t.n_frames for t in tracks), dims.pop())
    )
    records, offset = [], 0
    for track in tracks:
        matrix[offset : offset + track.n_frames] = track.embeddings
        records.append(
            (track.track_id, offset, track.n_frames, track.frames_per_second, track.annotation)
        )
        offset += track.n_frames
    matrix.flush()
    del matrix
    return str(path), records


def run_fit_jobs(
    tracks: Sequence[TrackData],
    jobs: Sequence[FitJob],
    *,
    workers: int | None = None,
    progress_for: Callable[[str], Callable[[EpochReport], None] | None] | None = None,
) -> list[JobResult]:
    """Train every job; results in job order.

    ``workers`` None = :func:`default_workers`; 1 (or a single job) trains in this process
    with its torch threads as they are. ``progress_for(job.name)`` is called once per job, in
    job order, before training starts, and may return that job's epoch callback.
    """
    callbacks = [progress_for(job.name) if progress_for else None for job in jobs]
    workers = default_workers(len(jobs)) if workers is None else max(1, min(workers, len(jobs)))
    needed = {t for job in jobs for t in (*job.train, *job.validation, *job.predict)}
    by_id = {t.track_id: t for t in tracks if t.track_id in needed}
    shards = sum(1 for job in jobs if job.shard)
    if shards and workers < shards:
        raise ValueError(f"{shards} data-parallel jobs need as many workers, not {workers}")
    if workers == 1 or any(job.config.finetune for job in jobs):
        return [_run(job, by_id, callback) for job, callback in zip(jobs, callbacks, strict=True)]
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()

    def deliver() -> None:
        while True:
            try:
                index, report = reports.get_nowait()
            except queue_module.Empty:
                return
            if callbacks[index] is not None:
                callbacks[index](report)

    # Longest first: the final model (all tracks) should not start last.
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].train))
    with tempfile.TemporaryDirectory(prefix="edm-fit-") as folder:
        path, records = _write_embeddings(list(by_id.values()), Path(folder))
        try:
            with ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(path, records, reports),
            ) as pool:
                with _environment(WORKER_ENV):  # workers start on submit and inherit it
                    futures = {pool.submit(_run_in_worker, i, jobs[i]): i for i in order}
                pending = set(futures)
                while pending:
                    _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    deliver()
                    for future in futures:
                        if future.done() and future.exception() is not None:
                            for other in pending:
                                other.cancel()
                            raise future.exception()  # type: ignore[misc]
                results: dict[int, JobResult] = {i: f.result() for f, i in futures.items()}
        except BrokenProcessPool as error:
            raise RuntimeError(
                "a training worker process died (out of memory?); retry with --workers 1"
            ) from error
        deliver()
    for result in results.values():
        result.fit = _rebuilt(result.fit)
    return [results[i] for i in range(len(jobs))]
