"""The embed job on a Ray cluster: same per-track work, same store, same guarantees.

Ray (the optional extra ``edm[ray]``) schedules; edm adds no scheduler of its own. Each Ray
actor holds one backbone (a model stays loaded across tracks; with ``num_gpus`` it gets a GPU)
and runs :class:`edm.store.embed.TrackJob` on the paths it is handed: hash, skip if present,
decode, embed, atomic write. The store must be on storage every node mounts at the same path
(NFS, a parallel file system); audio paths must resolve on every node too.

Guarantees carry over because they live in the store, not in the scheduler: an entry appears
by one ``rename`` when complete; a killed actor leaves a hidden temp folder that readers skip;
re-running skips what is present. Two actors embedding the same file race harmlessly (the
second rename loses and reports ``present``).

On a real cluster::

    ray start --head                        # head node
    ray start --address HEAD:6379           # every other node
    edm embed /shared/music --store /shared/store.zarr --ray auto
    edm embed /shared/music --store /shared/store.zarr --ray auto \\
        --backbone mert --model /shared/MERT-v1-95M    # one actor per GPU, fp16
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edm.backbones import get_backbone
from edm.inputs import MIN_DURATION_S
from edm.store.embed import EmbedSummary, TrackJob, TrackResult, job_kwargs, run_embed_job
from edm.store.zarr_store import EmbeddingStore


class _Actor:
    """Holds one TrackJob (and its backbone) per Ray worker process."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.job = TrackJob(**kwargs)

    def run(self, path: str) -> dict[str, Any]:
        try:
            result = self.job.run(path)
        except Exception as error:  # batch boundary: report any surprise for this file, go on
            result = TrackResult(path, "failed",
                                 reason=f"{path}: unexpected {type(error).__name__}: {error}")
        return asdict(result)  # plain data across the wire


def embed_library_ray(
    inputs: Sequence[str | Path],
    store_path: str | Path,
    backbone: str = "spectral",
    *,
    address: str | None = None,
    backbone_options: dict[str, Any] | None = None,
    min_duration_s: float = MIN_DURATION_S,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    progress: bool = False,
) -> EmbedSummary:
    """Like :func:`edm.store.embed.embed_library`, with the tracks fanned out over Ray actors.

    ``address`` goes to ``ray.init`` (``"auto"``, ``"ray://head:10001"``; None joins the
    running session or starts a local one). ``actors`` defaults to one per GPU for ``mert``
    on a cluster with GPUs, else one per CPU.
    """
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as error:
        raise ImportError("--ray needs Ray: pip install 'edm[ray]'") from error

    options = dict(backbone_options or {})
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0.0))
    # The driver builds the backbone once on the CPU only to learn its key, rate and fps.
    probe = get_backbone(backbone, **({**options, "device": "cpu"} if backbone == "mert"
                                      else options))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if not probe.runs_in_workers and gpus >= 1 else 0.0
    if actors is None:
        actors = int(gpus) if gpus_per_actor else max(1, int(resources.get("CPU", 1)))

    def execute(store: EmbeddingStore, files: list[Path],
                record: Callable[[TrackResult], None]) -> None:
        kwargs = job_kwargs(store, probe, options, min_duration_s=min_duration_s,
                            build_backbone=True)
        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_actor)(_Actor)
        handles = [remote.remote(kwargs) for _ in range(max(1, min(actors, len(files) or 1)))]
        try:
            pool = ActorPool(handles)
            for outcome in pool.map_unordered(lambda actor, path: actor.run.remote(path),
                                              [str(path) for path in files]):
                record(TrackResult(**outcome))
        finally:
            for handle in handles:
                ray.kill(handle)

    return run_embed_job(inputs, store_path, probe.key, execute, progress=progress)
