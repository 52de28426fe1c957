"""The embedding store: one Zarr v3 group per track, one subgroup per backbone.

Layout (a directory on a local or shared filesystem)::

    store.zarr/
      zarr.json                      root attrs: format, format_version, edm_version
      <track_id>/                    track attrs: source_path, duration_s, sample_rate, …
        <backbone_key>/              backbone attrs: name, key, checkpoint, layers, fps, dim,
                                     dtype, n_frames, edm_version, config, complete=True
          embeddings                 float16 (frames, dim), chunked along time, zstd
          descriptors                float32 (frames, len(names)), attrs: names

``track_id`` is :func:`edm.audio.content_hash` of the audio file, so renaming or moving a file
never re-embeds it. Several backbones live side by side under one track.

Completeness: a backbone entry is written under a hidden temporary name at the store root
(``.tmp-…``), fully, with ``complete=True`` as its last attribute write, and then renamed into
place (a single atomic ``rename``). A reader therefore sees a whole entry or none; a killed
writer leaves only a hidden temp folder that readers skip and the next writer sweeps.

Readers check what they read against the attributes (key, frame count, dim, dtype) and raise
:class:`StoreError` naming the track and the mismatch.

Examples
--------
>>> import tempfile, numpy as np
>>> folder = tempfile.mkdtemp()
>>> store = EmbeddingStore(f"{folder}/store.zarr", mode="a")
>>> store.write(
...     "abc123", {"source_path": "a.wav", "duration_s": 1.0, "sample_rate": 44100},
...     {"name": "toy", "key": "toy", "frames_per_second": 50.0, "dim": 2},
...     np.ones((51, 2), np.float32), {"rms": np.zeros(51, np.float32)})
True
>>> store.track_ids(), store.backbone_keys("abc123")
(['abc123'], ['toy'])
>>> store.embeddings("abc123", "toy").shape, store.backbone_info("abc123", "toy").dim
((51, 2), 2)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edm import __version__

STORE_FORMAT = "edm-embeddings"
STORE_FORMAT_VERSION = 1
EMBEDDING_DTYPE = "float16"
#: Frames per chunk along time: about 80 s at 50 fps, 55 s at 75 fps; whole tracks read in a
#: handful of chunks, and heads reading windows touch little more than they need.
CHUNK_FRAMES = 4096
_TEMP_PREFIX = ".tmp-"
#: Temp folders older than this are leftovers of killed writers and may be swept.
STALE_TEMP_S = 3600.0
_HOST = socket.gethostname().replace("-", "_")


class StoreError(ValueError):
    """A store, track or backbone entry that is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class TrackInfo:
    """What the store knows about one audio file."""

    track_id: str
    source_path: str
    duration_s: float
    sample_rate: int
    channels: int | None = None
    audio_hash: str = ""
    file_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneInfo:
    """Provenance of one backbone's embeddings of one track."""

    name: str
    key: str
    frames_per_second: float
    dim: int
    n_frames: int
    checkpoint: str | None
    layers: list[int] | None
    dtype: str
    edm_version: str
    sample_rate: int | None
    created_utc: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.frames_per_second


def _codecs() -> list[Any]:
    from zarr.codecs import ZstdCodec

    # zstd level 3: smallest of blosc/lz4/zstd on fp16 features here, and 2x faster to write
    # than blosc-zstd with bitshuffle (benchmarks/bench_embed.py).
    return [ZstdCodec(level=3)]


def _json_safe(value: Any) -> Any:
    """Attributes must be JSON: numpy scalars and tuples become plain Python."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


class EmbeddingStore:
    """Read (``mode="r"``) or add to (``mode="a"``) an embedding store at ``path``."""

    def __init__(self, path: str | Path, mode: Literal["r", "a"] = "r") -> None:
        import zarr

        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        if mode == "r" and not (self.path / "zarr.json").is_file():
            raise StoreError(f"{self.path}: not an embedding store (no zarr.json)")
        if mode == "a" and not (self.path / "zarr.json").is_file():
            self.path.mkdir(parents=True, exist_ok=True)
            zarr.open_group(str(self.path), mode="a", zarr_format=3, attributes={
                "format": STORE_FORMAT, "format_version": STORE_FORMAT_VERSION,
                "edm_version": __version__,
            })
        root = zarr.open_group(str(self.path), mode="r", zarr_format=3)
        attrs = dict(root.attrs)
        if attrs.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.path}: a Zarr group but not an edm embedding store "
                             f"(format={attrs.get('format')!r})")
        if int(attrs.get("format_version", 0)) > STORE_FORMAT_VERSION:
            raise StoreError(f"{self.path}: store format {attrs['format_version']} is newer than "
                             f"this edm reads ({STORE_FORMAT_VERSION}); upgrade edm")

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.path)!r}, mode={self.mode!r})"

    # -- listing ------------------------------------------------------------------------------

    def _complete_keys(self, track_dir: Path) -> list[str]:
        import json

        keys = []
        try:
            entries = sorted(os.scandir(track_dir), key=lambda entry: entry.name)
        except FileNotFoundError:
            return []
        for entry in entries:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            try:
                meta = json.loads((Path(entry.path) / "zarr.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if meta.get("node_type") == "group" and meta.get("attributes", {}).get("complete"):
                keys.append(entry.name)
        return keys

    def track_ids(self, backbone_key: str | None = None) -> list[str]:
        """Sorted ids of tracks with at least one complete entry (or with ``backbone_key``)."""
        ids = []
        for entry in sorted(os.scandir(self.path), key=lambda entry: entry.name):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            keys = self._complete_keys(Path(entry.path))
            if keys and (backbone_key is None or backbone_key in keys):
                ids.append(entry.name)
        return ids

    def backbone_keys(self, track_id: str) -> list[str]:
        """Keys of the complete backbone entries of a track (empty if the track is absent)."""
        return self._complete_keys(self.path / track_id)

    def has(self, track_id: str, backbone_key: str) -> bool:
        """True when the track has a complete entry for ``backbone_key``."""
        return backbone_key in self.backbone_keys(track_id)

    def all_backbone_keys(self) -> dict[str, int]:
        """Backbone key → number of tracks holding it."""
        counts: dict[str, int] = {}
        for track_id in self.track_ids():
            for key in self.backbone_keys(track_id):
                counts[key] = counts.get(key, 0) + 1
        return counts

    def temp_entries(self) -> list[Path]:
        """Hidden temp folders: entries being written now, or leftovers of killed writers."""
        return sorted(p for p in self.path.glob(f"{_TEMP_PREFIX}*") if p.is_dir())

    # -- reading ------------------------------------------------------------------------------

    def _entry(self, track_id: str, backbone_key: str) -> Any:
        import zarr

        if not self.has(track_id, backbone_key):
            present = self.backbone_keys(track_id)
            if not present:
                raise StoreError(f"{self.path}: track {track_id} is not in the store")
            raise StoreError(f"{self.path}: track {track_id} has no {backbone_key!r} embeddings "
                             f"(it has: {', '.join(present)})")
        return zarr.open_group(str(self.path / track_id / backbone_key), mode="r", zarr_format=3)

    def track_info(self, track_id: str) -> TrackInfo:
        """Source path, duration and audio facts of a track."""
        import zarr

        if not self.backbone_keys(track_id):
            raise StoreError(f"{self.path}: track {track_id} is not in the store")
        attrs = dict(zarr.open_group(str(self.path / track_id), mode="r", zarr_format=3).attrs)
        known = {"source_path", "duration_s", "sample_rate", "channels", "audio_hash",
                 "file_size"}
        return TrackInfo(
            track_id=track_id,
            source_path=str(attrs.get("source_path", "")),
            duration_s=float(attrs.get("duration_s", 0.0)),
            sample_rate=int(attrs.get("sample_rate", 0)),
            channels=attrs.get("channels"),
            audio_hash=str(attrs.get("audio_hash", track_id)),
            file_size=attrs.get("file_size"),
            extra={k: v for k, v in attrs.items() if k not in known},
        )

    def backbone_info(self, track_id: str, backbone_key: str) -> BackboneInfo:
        """Provenance of one entry; raises :class:`StoreError` if absent or inconsistent."""
        attrs = dict(self._entry(track_id, backbone_key).attrs)
        if attrs.get("key") != backbone_key:
            raise StoreError(f"{self.path}: track {track_id}: entry {backbone_key!r} says its key "
                             f"is {attrs.get('key')!r}")
        return BackboneInfo(
            name=str(attrs["name"]), key=str(attrs["key"]),
            frames_per_second=float(attrs["frames_per_second"]), dim=int(attrs["dim"]),
            n_frames=int(attrs["n_frames"]), checkpoint=attrs.get("checkpoint"),
            layers=attrs.get("layers"), dtype=str(attrs.get("dtype", EMBEDDING_DTYPE)),
            edm_version=str(attrs.get("edm_version", "")), sample_rate=attrs.get("sample_rate"),
            created_utc=str(attrs.get("created_utc", "")), config=dict(attrs.get("config", {})),
        )

    def check(self, track_id: str, backbone_key: str, *, frames_per_second: float | None = None,
              dim: int | None = None) -> BackboneInfo:
        """The entry's info, after checking it matches what a consumer (e.g. trained heads)
        expects; a mismatch raises :class:`StoreError` naming both values."""
        info = self.backbone_info(track_id, backbone_key)
        if frames_per_second is not None and abs(info.frames_per_second - frames_per_second) > 1e-6:
            raise StoreError(f"{self.path}: track {track_id} {backbone_key!r} is at "
                             f"{info.frames_per_second} fps, expected {frames_per_second}")
        if dim is not None and info.dim != dim:
            raise StoreError(f"{self.path}: track {track_id} {backbone_key!r} has dim {info.dim}, "
                             f"expected {dim}")
        return info

    def embeddings(self, track_id: str, backbone_key: str, *,
                   frames: slice | None = None) -> np.ndarray:
        """``(frames, dim)`` float32 embeddings (optionally a slice of frames)."""
        group = self._entry(track_id, backbone_key)
        info = self.backbone_info(track_id, backbone_key)
        array = group["embeddings"]
        expected = (info.n_frames, info.dim)
        if tuple(array.shape) != expected or str(array.dtype) != info.dtype:
            raise StoreError(f"{self.path}: track {track_id} {backbone_key!r}: embeddings are "
                             f"{array.dtype}{tuple(array.shape)}, attributes say "
                             f"{info.dtype}{expected}")
        data = array[frames] if frames is not None else array[:]
        return np.asarray(data, dtype=np.float32)

    def descriptors(self, track_id: str, backbone_key: str) -> dict[str, np.ndarray]:
        """Descriptor name → ``(frames,)`` float32, aligned with :meth:`embeddings`."""
        group = self._entry(track_id, backbone_key)
        array = group["descriptors"]
        names = list(array.attrs.get("names", []))
        n_frames = int(group.attrs["n_frames"])
        if tuple(array.shape) != (n_frames, len(names)):
            raise StoreError(f"{self.path}: track {track_id} {backbone_key!r}: descriptors are "
                             f"{tuple(array.shape)}, expected ({n_frames}, {len(names)}) "
                             f"for names {names}")
        data = np.asarray(array[:], dtype=np.float32)
        return {name: data[:, column] for column, name in enumerate(names)}

    def find(self, path_or_hash: str | Path) -> str | None:
        """Track id for a content hash, or for an audio file (hashed), or None if absent."""
        candidate = str(path_or_hash)
        if not Path(candidate).exists() and candidate in self.track_ids():
            return candidate
        if Path(candidate).is_file():
            from edm.audio import content_hash

            track_id = content_hash(candidate)
            return track_id if self.backbone_keys(track_id) else None
        return None

    # -- writing ------------------------------------------------------------------------------

    def write(self, track_id: str, track_attrs: Mapping[str, Any],
              backbone_config: Mapping[str, Any], embeddings: np.ndarray,
              descriptors: Mapping[str, np.ndarray]) -> bool:
        """Add one backbone entry for a track, atomically; False if it was already complete.

        ``backbone_config`` needs ``name``, ``key``, ``frames_per_second`` and ``dim`` and may
        carry ``checkpoint``, ``layers``, ``sample_rate`` and any settings (kept as ``config``).
        """
        import zarr

        if self.mode != "a":
            raise StoreError(f"{self.path}: opened read-only; use mode='a' to write")
        if not track_id or track_id.startswith(".") or "/" in track_id:
            raise StoreError(f"{self.path}: invalid track id {track_id!r}")
        required = ("name", "key", "frames_per_second", "dim")
        missing = [k for k in required if k not in backbone_config]
        if missing:
            raise StoreError(f"{self.path}: track {track_id}: backbone config lacks {missing}")
        key = str(backbone_config["key"])
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != int(backbone_config["dim"]):
            raise StoreError(f"{self.path}: track {track_id} {key!r}: embeddings shape "
                             f"{embeddings.shape} does not match dim {backbone_config['dim']}")
        if not np.all(np.isfinite(embeddings)):
            raise StoreError(f"{self.path}: track {track_id} {key!r}: embeddings hold NaN/inf")
        n_frames = len(embeddings)
        for name, values in descriptors.items():
            if len(values) != n_frames:
                raise StoreError(f"{self.path}: track {track_id} {key!r}: descriptor {name!r} has "
                                 f"{len(values)} frames, embeddings {n_frames}")
        if self.has(track_id, key):
            return False

        # Host and pid in the name let the next run on this host sweep a killed writer's
        # leftovers at once; other hosts' temp folders wait for STALE_TEMP_S.
        temp = self.path / (f"{_TEMP_PREFIX}{_HOST}-{os.getpid()}-{track_id}-"
                            f"{uuid.uuid4().hex[:8]}")
        track_attrs = {"audio_hash": track_id, **_json_safe(dict(track_attrs))}
        try:
            track_group = zarr.open_group(str(temp), mode="w", zarr_format=3,
                                          attributes=track_attrs)
            entry = track_group.create_group(key)
            chunk = (min(CHUNK_FRAMES, max(n_frames, 1)), embeddings.shape[1])
            entry.create_array("embeddings", data=embeddings.astype(EMBEDDING_DTYPE), chunks=chunk,
                               compressors=_codecs(), dimension_names=("frame", "feature"))
            names = list(descriptors)
            table = (np.stack([np.asarray(descriptors[n], np.float32) for n in names], axis=1)
                     if names else np.zeros((n_frames, 0), np.float32))
            described = entry.create_array(
                "descriptors", data=table, chunks=(chunk[0], max(len(names), 1)),
                compressors=_codecs(), dimension_names=("frame", "descriptor"))
            described.attrs["names"] = names
            config = _json_safe(dict(backbone_config))
            attrs = {
                "name": config["name"], "key": key,
                "frames_per_second": float(config["frames_per_second"]),
                "dim": int(config["dim"]), "n_frames": n_frames,
                "checkpoint": config.get("checkpoint"), "layers": config.get("layers"),
                "sample_rate": config.get("sample_rate"), "dtype": EMBEDDING_DTYPE,
                "edm_version": __version__,
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "config": config,
            }
            entry.attrs.update(attrs)
            # Written last: an entry without it is never listed, even if renamed into place.
            entry.attrs["complete"] = True
            return self._publish(temp, track_id, key)
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _publish(self, temp: Path, track_id: str, key: str) -> bool:
        """Rename the finished temp entry into place; False if another writer got there first."""
        final_track = self.path / track_id
        try:
            # The whole track group, when the track is new: one rename makes it appear.
            os.rename(temp, final_track)
            return True
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        try:
            os.rename(temp / key, final_track / key)
            return True
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False  # a concurrent writer embedded the same file with the same key
            raise

    def sweep_temp(self, older_than_s: float = STALE_TEMP_S) -> list[Path]:
        """Delete temp folders left by killed writers: those of dead processes on this host,
        and any older than ``older_than_s`` (writers on other hosts)."""
        now = time.time()
        removed = []
        for temp in self.temp_entries():
            try:
                age = now - temp.stat().st_mtime
            except FileNotFoundError:
                continue
            if age >= older_than_s or _dead_local_writer(temp.name):
                shutil.rmtree(temp, ignore_errors=True)
                removed.append(temp)
        return removed

    def summary(self) -> dict[str, Any]:
        """Counts and sizes for ``edm store info``."""
        backbones: dict[str, dict[str, Any]] = {}
        total_duration = 0.0
        track_ids = self.track_ids()
        for track_id in track_ids:
            total_duration += self.track_info(track_id).duration_s
            for key in self.backbone_keys(track_id):
                info = self.backbone_info(track_id, key)
                entry = backbones.setdefault(key, {
                    "name": info.name, "checkpoint": info.checkpoint, "layers": info.layers,
                    "frames_per_second": info.frames_per_second, "dim": info.dim,
                    "dtype": info.dtype, "tracks": 0, "frames": 0, "bytes": 0,
                })
                entry["tracks"] += 1
                entry["frames"] += info.n_frames
                entry["bytes"] += _folder_bytes(self.path / track_id / key)
        for entry in backbones.values():
            minutes = entry["frames"] / entry["frames_per_second"] / 60.0
            per_minute = entry["bytes"] / 1e6 / minutes if minutes else 0.0
            entry["mb_per_track_minute"] = round(per_minute, 3)
        return {
            "path": str(self.path), "tracks": len(track_ids),
            "total_duration_s": round(total_duration, 3), "backbones": backbones,
            "temp_entries": len(self.temp_entries()), "bytes": _folder_bytes(self.path),
        }


def _dead_local_writer(temp_name: str) -> bool:
    """True when ``temp_name`` was made by a process of this host that no longer runs."""
    prefix = f"{_TEMP_PREFIX}{_HOST}-"
    if not temp_name.startswith(prefix):
        return False
    pid_text = temp_name[len(prefix):].split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    return False


def _folder_bytes(folder: Path) -> int:
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # a temp file renamed away while we walk
                total += os.path.getsize(os.path.join(directory, name))
    return total
