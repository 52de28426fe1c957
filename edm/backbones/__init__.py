"""Backbones turn mono audio into frame embeddings; the store keeps what they write.

Every backbone follows :class:`Backbone`: a ``name`` (``"spectral"``, ``"mert"``), a ``key``
that names its output in the store (it changes whenever the output would, e.g.
``"mert-MERT-v1-95M-l6"``), the ``sample_rate`` it wants, ``frames_per_second`` (frame ``i``
is centred on ``i / fps``), ``dim``, ``config()`` for provenance (and
:func:`options_from_config` to rebuild it from that), ``embed(audio)``, and what the embed job
schedules by: ``embed_many``, ``embed_with_descriptors``, ``batch_tracks`` and
``runs_in_workers`` (:class:`BackboneDefaults` gives the usual ones).

- ``spectral`` (:mod:`edm.backbones.spectral`): numpy/scipy features, no weights, 50 fps.
- ``mert`` (:mod:`edm.backbones.mert`): MERT through ``transformers.HubertModel``, 75 fps;
  ``transformers`` is imported only when one is built.

>>> get_backbone("spectral").key
'spectral'
>>> get_backbone("wavenet")
Traceback (most recent call last):
...
ValueError: unknown backbone 'wavenet'; choose one of: spectral, mert
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edm.backbones.base import Backbone, BackboneDefaults
from edm.backbones.descriptors import (
    BAND_NAMES,
    DESCRIPTOR_NAMES,
    SUMMARY_NAMES,
    compute_descriptors,
)
from edm.backbones.frames import frame_count, hop_length

BACKBONE_NAMES: tuple[str, ...] = ("spectral", "mert")

__all__ = [
    "BACKBONE_NAMES",
    "BAND_NAMES",
    "DESCRIPTOR_NAMES",
    "SUMMARY_NAMES",
    "Backbone",
    "BackboneDefaults",
    "compute_descriptors",
    "frame_count",
    "get_backbone",
    "hop_length",
    "options_from_config",
]


def options_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Options for :func:`get_backbone` that rebuild the backbone whose ``config()`` this is
    (the store keeps it with every track's embeddings; heads save it with the model).

    >>> options_from_config(get_backbone("spectral").config())
    {}
    """
    name = config.get("name")
    if name == "spectral":
        return {}
    if name == "mert":
        from edm.backbones.mert import options_from_config as mert_options

        return mert_options(config)
    raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONE_NAMES)}")


def get_backbone(name: str, **options: Any) -> Backbone:
    """Build a backbone by name; ``options`` go to its constructor (e.g. ``model=``,
    ``layers=``, ``device=`` for ``mert``)."""
    if name == "spectral":
        from edm.backbones.spectral import SpectralBackbone

        if options:
            raise ValueError(f"the spectral backbone takes no options, got {sorted(options)}")
        return SpectralBackbone()
    if name == "mert":
        from edm.backbones.mert import MertBackbone

        return MertBackbone(**options)
    raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONE_NAMES)}")
