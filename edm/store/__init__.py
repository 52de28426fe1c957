"""The Zarr embedding store and the job that fills it.

- :mod:`edm.store.zarr_store`: :class:`EmbeddingStore` (layout, atomic writes, read API).
- :mod:`edm.store.embed`: :func:`embed_library`, the parallel, resumable embed job.
- :mod:`edm.store.ray_runner`: the same job fanned out over a Ray cluster.
"""

from edm.store.zarr_store import BackboneInfo, EmbeddingStore, StoreError, TrackInfo

__all__ = ["BackboneInfo", "EmbeddingStore", "StoreError", "TrackInfo"]
