"""The :class:`Backbone` protocol: what the embed job and analysis use of a feature extractor,
and :class:`BackboneDefaults` for the parts most backbones share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backbone(Protocol):
    """What the embed job and analysis use of a feature extractor."""

    name: str
    sample_rate: int
    frames_per_second: float
    #: Tracks the embed job hands to :meth:`embed_many` at once (a GPU model gains from more).
    batch_tracks: int
    #: True for a cheap, stateless CPU backbone that each decoding worker process runs whole;
    #: False for a model that stays loaded in the main process while workers decode.
    runs_in_workers: bool

    @property
    def key(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def config(self) -> dict[str, Any]:
        """JSON-able provenance: name, key, checkpoint, layers, fps, dim, and settings."""
        ...

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """``(frames, dim)`` float32 for mono float32 audio at ``sample_rate``;
        ``frames == 1 + len(audio) // hop``."""
        ...

    def embed_many(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`embed` of several tracks (a model may batch them together)."""
        ...

    def embed_with_descriptors(
        self, audio: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:meth:`embed` and the audio descriptors at the same frames (a backbone may share
        its spectrogram between them)."""
        ...


class BackboneDefaults:
    """The parts of :class:`Backbone` most backbones share: one track at a time, descriptors
    computed beside the embeddings, run in the main process."""

    sample_rate: int
    frames_per_second: float
    batch_tracks: int = 1
    runs_in_workers: bool = False

    def embed(self, audio: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed_many(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.embed(audio) for audio in audios]

    def embed_with_descriptors(
        self, audio: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from edm.backbones.descriptors import compute_descriptors

        return self.embed(audio), compute_descriptors(audio, self.sample_rate,
                                                      self.frames_per_second)
