"""Rekordbox XML (File → Export Collection in xml format) to annotations and back.

Conventions
-----------
How a Rekordbox ``TRACK`` maps onto :class:`~edm.data.schema.TrackAnnotation`:

=====================================  ===================================================
Rekordbox                              edm
=====================================  ===================================================
``TrackID``                            ``track.source_id`` (and ``provenance["track_id"]``)
``Name`` / ``Artist`` / ``Genre``      ``track.title`` / ``track.artist`` / ``track.genre``
``Location`` (file URL)                ``track.path`` (decoded; see :func:`location_to_path`)
``TotalTime`` (whole seconds)          ``track.duration_s`` (``0`` → ``None``, reported)
``AverageBpm`` / ``Tonality``          ``bpm`` (``0`` → ``None``) / ``key``
``Comments`` containing "Energy N"     ``energy_rating``
``TEMPO Inizio Bpm Metro Battito``     one :class:`TempoSegment` (start_s, bpm,
                                       beats_per_bar = numerator of Metro, beat_in_bar)
``POSITION_MARK Num=-1``               memory :class:`Cue`; ``Num`` 0–7 → hot cue, slot
``POSITION_MARK Type=4 End=…``         loop (``end_s``); ``Name``; ``Red/Green/Blue`` →
                                       ``color`` ``'#RRGGBB'``
=====================================  ===================================================

``Location`` is also kept as written in ``provenance["location"]``: Rekordbox matches tracks
on re-import by that exact string (its escaping varies between versions), and streaming tracks
(``file://localhost/soundcloud:tracks:…``) have no path at all.

Times are seconds; Rekordbox stores them with millisecond precision, so the writer rounds
``TEMPO Inizio`` and cue times to 3 decimals and a round trip is exact to the millisecond.

Writing back (:func:`write_rekordbox_xml` for ``edm data export``, :func:`write_back_xml` for
``edm analyze --format rekordbox``) copies the library's own XML and splices in only what edm
changes; see the "Writing" section below for the rules.

Robustness: the file is parsed with :mod:`defusedxml` (entity declarations and external
references are refused, which stops billion-laughs and XXE attacks). Problems inside one track
(a cue at a negative time, a TEMPO entry that repeats or goes backwards, ``TotalTime="0"``) are
repaired or the bad element is skipped, and a one-line message naming file and track is added
to :attr:`RekordboxLibrary.problems`; the track is still imported. Only a file that cannot be
read as a Rekordbox export raises :class:`RekordboxError`.

Why not ``pyrekordbox`` (its ``rbxml`` module, read for this): it parses with the standard
library's ``xml.etree.cElementTree`` (no refusal of entity declarations) and builds the whole
tree; its ``decode_path`` strips ``file://localhost/`` *after* unquoting and ``normpath``s the
rest, so a macOS path loses its leading ``/`` and ``file:///`` URLs are not handled; its
``PositionMark`` knows no ``Red/Green/Blue`` attributes; and a malformed element raises instead
of being reported. What edm needs from it is a few attribute conversions, done here.
"""

from __future__ import annotations

import gc
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote
from xml.sax import SAXParseException
from xml.sax.handler import ContentHandler

import defusedxml
import defusedxml.sax as defused_sax
import numpy as np
from pydantic import ValidationError

from edm.data.schema import Cue, TempoSegment, Tier, TrackAnnotation, beat_times, downbeat_times

SOURCE = "rekordbox-xml"
_FILE_URL_PREFIXES = ("file://localhost/", "file:///")
_DRIVE = re.compile(r"^[A-Za-z]:")
_ENERGY = re.compile(r"\benergy\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_LOOP_TYPE = "4"
#: Characters Rekordbox leaves unescaped in Location URLs, as its exports show (it escapes
#: spaces, ``'``, ``&``, ``[``, ``]``, ``<`` and non-ASCII; ``_.-~`` and letters are never
#: escaped).
_URL_SAFE = "/:,()!+=@$;#?*"
_KIND_BY_EXTENSION = {
    ".mp3": "MP3 File", ".wav": "WAV File", ".aif": "AIFF File", ".aiff": "AIFF File",
    ".flac": "FLAC File", ".m4a": "M4A File", ".mp4": "M4A File", ".ogg": "OGG File",
}


class RekordboxError(ValueError):
    """A file that cannot be read as a Rekordbox export; the message names the file."""


@dataclass
class RekordboxLibrary:
    """What :func:`read_rekordbox_xml` found.

    ``problems`` holds one line per problem (naming file and track); the tracks they concern
    were still imported unless the line says "skipped".
    """

    tracks: list[TrackAnnotation]
    problems: list[str] = field(default_factory=list)
    path: Path | None = None
    product_version: str = ""
    entries_declared: int | None = None
    tracks_in_file: int = 0
    audio_found: int = 0
    skipped: int = 0


# ---------------------------------------------------------------------------------------------
# Locations


def location_to_path(location: str) -> str | None:
    """Decode a Rekordbox ``Location`` into a local path; ``None`` when it is not a local file.

    >>> location_to_path("file://localhost/C:/Music/Demo%20Track%201.mp3")
    'C:/Music/Demo Track 1.mp3'
    >>> location_to_path("file://localhost/Volumes/USB/Caf%C3%A9%20(Mix).mp3")
    '/Volumes/USB/Café (Mix).mp3'
    >>> location_to_path("file://localhost/soundcloud:tracks:1149223021") is None
    True
    """
    for prefix in _FILE_URL_PREFIXES:
        if location.startswith(prefix):
            rest = location[len(prefix) :]
            break
    else:
        return None
    # Not urllib.parse.urlparse: Rekordbox leaves '#' and '?' raw in names, which it would
    # take for a fragment or query.
    path = unquote(rest, encoding="utf-8", errors="strict")
    first = path.split("/", 1)[0]
    if _DRIVE.match(path) and len(first) == 2:
        return path  # Windows drive letter: 'C:/...'
    if ":" in first or not path:
        return None  # streaming services: 'soundcloud:tracks:…', 'tidal:tracks:…'
    return "/" + path


def path_to_location(path: str | Path) -> str:
    """Encode a local path as the ``file://localhost/`` URL Rekordbox writes.

    >>> path_to_location("C:\\\\Music\\\\Café.mp3")
    'file://localhost/C:/Music/Caf%C3%A9.mp3'
    >>> path_to_location("/Users/dj/Music/A & B's #1 [VIP].mp3")
    'file://localhost/Users/dj/Music/A%20%26%20B%27s%20#1%20%5BVIP%5D.mp3'
    """
    text = str(path).replace("\\", "/")
    if not _DRIVE.match(text):
        text = Path(text).expanduser().absolute().as_posix()
    return "file://localhost/" + quote(text.lstrip("/"), safe=_URL_SAFE, encoding="utf-8")


def _common_parent(paths: Iterable[str]) -> PurePosixPath | None:
    parts_list = [PurePosixPath(p).parent.parts for p in paths]
    if not parts_list:
        return None
    # Compare whole components: commonprefix on tuples of parts does exactly that.
    common = os.path.commonprefix(parts_list)  # noqa: RUF071
    return PurePosixPath(*common) if common else None


def remap_path(original: str, audio_root: Path, library_root: PurePosixPath | None) -> Path:
    """Map a path from another machine onto ``audio_root``.

    The longest tail of ``original`` that exists under ``audio_root`` wins
    (``/Users/dj/Music/House/a.mp3`` → ``audio_root/House/a.mp3`` when that exists); when no
    tail exists, the path relative to ``library_root`` (the common folder of all tracks) is used.
    """
    parts = PurePosixPath(original).parts
    parts = parts[1:] if parts and (parts[0] == "/" or _DRIVE.match(parts[0])) else parts
    for start in range(len(parts)):
        candidate = audio_root.joinpath(*parts[start:])
        if candidate.exists():
            return candidate
    if library_root is not None:
        try:
            return audio_root / PurePosixPath(original).relative_to(library_root)
        except ValueError:
            pass
    return audio_root / parts[-1]


def _hash_file(path: Path) -> str:
    # Imported here: edm.audio pulls in the audio decoders, which reading XML never needs.
    from edm.audio import content_hash

    return content_hash(path)


# ---------------------------------------------------------------------------------------------
# Reading


@contextmanager
def _xml_errors(path: Path) -> Iterator[None]:
    """Turn parser errors into one-line :class:`RekordboxError` messages naming the file."""
    try:
        yield
    except defusedxml.EntitiesForbidden as error:
        raise RekordboxError(
            f"{path}: refused an entity declaration ({error.name!r}); entity expansion and "
            "external entities are not allowed (billion-laughs / XXE protection)"
        ) from error
    except (defusedxml.ExternalReferenceForbidden, defusedxml.DTDForbidden) as error:
        raise RekordboxError(
            f"{path}: refused an external reference ({getattr(error, 'sysid', None)!r}); "
            "external DTDs and entities are never loaded (XXE protection)"
        ) from error
    except SAXParseException as error:
        raise RekordboxError(
            f"{path}: malformed XML ({error.getMessage()}: line {error.getLineNumber()}, "
            f"column {error.getColumnNumber()})"
        ) from error
    except OSError as error:
        raise RekordboxError(f"{path}: cannot read ({error.strerror or error})") from error


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a collection is parsed.

    A 10,000-track import allocates a few million small objects that all stay alive, so every
    collection pass finds nothing to free; the passes cost a third of the import's CPU time.
    Nothing here builds reference cycles, so pausing frees no less memory.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _RawTrack:
    """One COLLECTION/TRACK as the parser saw it: attributes of it and of its children."""

    attrs: dict[str, str]
    tempos: list[dict[str, str]] = field(default_factory=list)
    marks: list[dict[str, str]] = field(default_factory=list)


class _ExportHandler(ContentHandler):
    """SAX handler for a Rekordbox export.

    SAX rather than ElementTree: defusedxml's ElementTree parser is a pure-Python subclass,
    twice as slow on a 10,000-track file, and a tree of the whole collection is not needed.
    """

    def __init__(self, path: Path, on_track: Callable[[_RawTrack], None]) -> None:
        super().__init__()
        self.path = path
        self.on_track = on_track
        self.stack: list[str] = []
        self.version = ""
        self.entries: int | None = None
        self.seen_collection = False
        self.track: _RawTrack | None = None
        self.node_names: list[str] = []
        self.playlist_keys: list[str] | None = None
        #: (playlist path without ROOT, KeyType, keys)
        self.playlists: list[tuple[str, str, list[str]]] = []

    def startElement(self, name: str, attrs: Any) -> None:
        parent = self.stack[-1] if self.stack else ""
        if not self.stack and name != "DJ_PLAYLISTS":
            raise RekordboxError(
                f"{self.path}: not a Rekordbox XML export (root element <{name}>, "
                "expected <DJ_PLAYLISTS>)"
            )
        self.stack.append(name)
        if self.track is not None and parent == "TRACK":
            if name == "TEMPO":
                self.track.tempos.append(dict(attrs.items()))
            elif name == "POSITION_MARK":
                self.track.marks.append(dict(attrs.items()))
        elif name == "TRACK" and parent == "COLLECTION":
            self.track = _RawTrack(dict(attrs.items()))
        elif name == "TRACK" and parent == "NODE" and self.playlist_keys is not None:
            self.playlist_keys.append(attrs.get("Key", ""))
        elif name == "NODE":
            self.node_names.append(attrs.get("Name", ""))
            if attrs.get("Type") == "1":
                self.playlist_keys = []
                self.playlists.append(
                    ("/".join(self.node_names[1:]), attrs.get("KeyType", "0"), self.playlist_keys)
                )
        elif name == "PRODUCT" and parent == "DJ_PLAYLISTS":
            self.version = attrs.get("Version", "")
        elif name == "COLLECTION" and parent == "DJ_PLAYLISTS":
            self.seen_collection = True
            entries = attrs.get("Entries", "")
            self.entries = int(entries) if entries.isdigit() else None

    def endElement(self, name: str) -> None:
        self.stack.pop()
        if name == "TRACK" and self.track is not None and self.stack[-1] == "COLLECTION":
            self.on_track(self.track)
            self.track = None
        elif name == "NODE":
            self.node_names.pop()
            self.playlist_keys = None


def _float(attrs: dict[str, str], name: str) -> float | None:
    value = attrs.get(name)
    if not value or value.isspace():
        return None
    number = float(value)
    if number - number != 0:  # inf or nan; cheaper than math.isfinite on 200k attributes
        raise ValueError(f"{name}={value!r} is not a finite number")
    return number


@lru_cache(maxsize=64)
def _beats_per_bar(metro: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", metro)
    if not match:
        raise ValueError(f"Metro={metro!r} is not like '4/4'")
    per_bar = int(match.group(1))
    if not 1 <= per_bar <= 16:
        raise ValueError(f"Metro={metro!r} has {per_bar} beats per bar")
    return per_bar


class _TrackReader:
    """Turns one raw ``TRACK`` into an annotation, collecting problems.

    Builds plain dicts and validates the whole track in one pydantic call (fast); only when
    that fails are grid entries and cues validated one by one, so one bad cue costs that cue.
    """

    def __init__(self, path: Path, tier: Tier, problems: list[str]) -> None:
        self.path = path
        self.xml = str(path.absolute())
        self.tier = tier
        self.version = ""
        self.problems = problems

    def report(self, raw: _RawTrack, message: str) -> None:
        attrs = raw.attrs
        label = " - ".join(p for p in (attrs.get("Artist", ""), attrs.get("Name", "")) if p)
        self.problems.append(
            f"{self.path}: track {attrs.get('TrackID', '?')} ({label or 'untitled'}): {message}"
        )

    def grid(self, raw: _RawTrack) -> list[dict[str, Any]]:
        entries: list[tuple[int, dict[str, Any]]] = []
        for index, attrs in enumerate(raw.tempos):
            repairs: list[str] = []
            try:
                entries.append((index, self._segment(attrs, repairs)))
            except ValueError as error:
                self.report(raw, f"TEMPO entry {index + 1} skipped ({error})")
            for repair in repairs:
                self.report(raw, f"TEMPO entry {index + 1}: {repair}")
        if not entries:
            self.report(raw, "no TEMPO entries: imported without a beat grid")
            return []
        ordered = sorted(entries, key=lambda item: item[1]["start_s"])
        if [i for i, _ in ordered] != [i for i, _ in entries]:
            self.report(raw, "TEMPO entries out of order: sorted by Inizio")
        grid: list[dict[str, Any]] = []
        for _, segment in ordered:
            if grid and segment["start_s"] <= grid[-1]["start_s"]:
                self.report(
                    raw, f"duplicate TEMPO entry at Inizio={segment['start_s']}: kept the first"
                )
                continue
            grid.append(segment)
        return grid

    @staticmethod
    def _segment(attrs: dict[str, str], repairs: list[str]) -> dict[str, Any]:
        start = _float(attrs, "Inizio")
        bpm = _float(attrs, "Bpm")
        if start is None or bpm is None:
            raise ValueError("needs Inizio and Bpm")
        if bpm <= 0:
            raise ValueError(f"Bpm={bpm} is not positive")
        per_bar = _beats_per_bar(attrs.get("Metro", "4/4"))
        beat = int(attrs.get("Battito", "1") or 1)
        if not 1 <= beat <= per_bar:
            # Seen in a real export (Battito="0"): its memory cues sit on bar lines only if
            # the anchor is a downbeat, so clamp rather than wrap.
            repairs.append(f"Battito={beat} outside 1..{per_bar}: read as 1")
            beat = 1
        if start < 0:
            # A grid anchored before the audio starts: move the anchor forward by whole beats.
            period = 60.0 / bpm
            steps = math.ceil(-start / period - 1e-9)
            repairs.append(f"Inizio={start} is negative: anchor moved forward {steps} beat(s)")
            start = round(start + steps * period, 6)
            beat = (beat - 1 + steps) % per_bar + 1
        return {"start_s": start, "bpm": bpm, "beats_per_bar": per_bar, "beat_in_bar": beat}

    def cues(self, raw: _RawTrack, duration: float | None) -> list[dict[str, Any]]:
        cues: list[dict[str, Any]] = []
        for index, attrs in enumerate(raw.marks):
            try:
                cues.append(self._cue(attrs))
            except ValueError as error:
                self.report(raw, f"POSITION_MARK {index + 1} skipped ({error})")
        if duration is not None:
            late = sum(1 for cue in cues if cue["start_s"] > duration + 1.0)
            if late:
                self.report(raw, f"{late} cue(s) after the track's end ({duration:.0f} s)")
        return cues

    @staticmethod
    def _cue(attrs: dict[str, str]) -> dict[str, Any]:
        start = _float(attrs, "Start")
        if start is None:
            raise ValueError("no Start")
        if start < 0:
            raise ValueError(f"Start={start} is negative")
        num = int(attrs.get("Num", "-1") or -1)
        end = _float(attrs, "End") if attrs.get("Type") == _LOOP_TYPE else None
        if end is not None and end <= start:
            end = None  # A zero-length loop is a cue in Rekordbox too.
        color = None
        if "Red" in attrs and "Green" in attrs and "Blue" in attrs:
            rgb = (int(attrs["Red"]), int(attrs["Green"]), int(attrs["Blue"]))
            if not all(0 <= v <= 255 for v in rgb):
                raise ValueError(f"colour {rgb} outside 0..255")
            color = "#{:02X}{:02X}{:02X}".format(*rgb)
        return {
            "start_s": start, "end_s": end, "kind": "memory" if num < 0 else "hot",
            "slot": None if num < 0 else num, "name": attrs.get("Name", ""), "color": color,
        }

    def annotation(self, raw: _RawTrack) -> tuple[TrackAnnotation, str | None]:
        attrs = raw.attrs
        track_id = attrs.get("TrackID", "")
        duration = _float(attrs, "TotalTime")
        if duration is None or duration <= 0:
            self.report(raw, f"TotalTime={attrs.get('TotalTime')!r}: duration unknown")
            duration = None
        bpm = _float(attrs, "AverageBpm")
        location = attrs.get("Location", "")
        try:
            path = location_to_path(location)
        except UnicodeDecodeError:
            path = None
        provenance = {"xml": self.xml, "rekordbox_version": self.version}
        if track_id:
            provenance["track_id"] = track_id
        if location:
            # Kept as written: Rekordbox matches tracks on re-import by this exact string.
            provenance["location"] = location
        if path is None:
            self.report(raw, f"Location {location[:80]!r} is not a local file URL")
        rating = None
        match = _ENERGY.search(attrs.get("Comments", ""))
        if match and float(match.group(1)) <= 10:
            rating = float(match.group(1))
        data = {
            "track": {
                "path": path, "duration_s": duration, "title": attrs.get("Name", ""),
                "artist": attrs.get("Artist", ""), "genre": attrs.get("Genre", ""),
                "source_id": track_id or None,
            },
            "grid": self.grid(raw),
            "cues": self.cues(raw, duration),
            "key": attrs.get("Tonality") or None,
            "bpm": bpm if bpm and bpm > 0 else None,
            "energy_rating": rating,
            "metadata": {
                "tier": self.tier, "confidence": 1.0 if self.tier == Tier.VERIFIED else 0.5,
                "source": SOURCE, "provenance": provenance,
            },
        }
        try:
            return TrackAnnotation.model_validate(data), path
        except ValidationError:
            pass
        # Slow path: find the elements the schema rejects, drop them, and try again.
        for key, model, label in (("grid", TempoSegment, "TEMPO entry"),
                                  ("cues", Cue, "POSITION_MARK")):
            kept = []
            for item in data[key]:
                try:
                    model.model_validate(item)
                except ValidationError as error:
                    self.report(raw, f"{label} at {item['start_s']} s skipped ({_short(error)})")
                else:
                    kept.append(item)
            data[key] = kept
        return TrackAnnotation.model_validate(data), path


def _short(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(error)


def _playlist_keys(
    nodes: list[tuple[str, str, list[str]]], playlist: str, path: Path
) -> tuple[set[str], str]:
    """Track keys of the playlist named ``playlist`` (a name or a 'Folder/Name' path)."""
    matches = [
        (key_type, keys)
        for full_name, key_type, keys in nodes
        if full_name == playlist or full_name.rsplit("/", 1)[-1] == playlist
    ]
    if not matches:
        names = sorted({full for full, _, _ in nodes})
        listed = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise RekordboxError(
            f"{path}: no playlist named {playlist!r} (playlists: {listed or 'none'})"
        )
    key_types = {key_type for key_type, _ in matches}
    keys = {key for _, found in matches for key in found}
    return keys, "location" if key_types == {"1"} else "track_id"


def read_rekordbox_xml(
    path: str | Path,
    *,
    audio_root: str | Path | None = None,
    playlist: str | None = None,
    tier: int | Tier = Tier.DJ_SOFTWARE,
    hash_audio: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> RekordboxLibrary:
    """Read a Rekordbox XML export into annotations.

    Parameters
    ----------
    path : the ``rekordbox.xml`` file.
    audio_root : folder the library was copied to on this machine; each track's path is
        remapped onto it (see :func:`remap_path`).
    playlist : import only this playlist (its name, or 'Folder/Name' when names repeat).
    tier : trust tier stamped on every annotation (default 2, DJ software labels).
    hash_audio : fill ``track.content_hash`` for tracks whose audio file exists.
    progress : called as ``progress(done, total)`` while audio files are located and hashed
        (the slow part on a real library: it reads every audio file once).

    Raises :class:`RekordboxError` for a file that is not readable, not well-formed, uses
    entity declarations, or is not a Rekordbox export. Everything else is reported in
    ``problems`` and the other tracks are imported.
    """
    path = Path(path)
    tier = Tier(tier)
    library = RekordboxLibrary(tracks=[], path=path)
    reader = _TrackReader(path, tier, library.problems)
    raw: list[tuple[TrackAnnotation, str | None, str]] = []

    def on_track(track: _RawTrack) -> None:
        library.tracks_in_file += 1
        reader.version = handler.version
        try:
            annotation, original = reader.annotation(track)
        except (ValueError, ValidationError) as error:
            library.skipped += 1
            reader.report(track, f"skipped ({_short(error)})")
        else:
            raw.append((annotation, original, track.attrs.get("Location", "")))

    handler = _ExportHandler(path, on_track)
    with _xml_errors(path), path.open("rb") as stream, paused_gc():
        defused_sax.parse(stream, handler, forbid_dtd=False, forbid_entities=True,
                          forbid_external=True)
    library.product_version = handler.version
    library.entries_declared = handler.entries
    if not handler.seen_collection:
        raise RekordboxError(f"{path}: Rekordbox XML without a <COLLECTION> element")
    if (
        library.entries_declared is not None
        and library.entries_declared != library.tracks_in_file
    ):
        library.problems.append(
            f"{path}: COLLECTION Entries={library.entries_declared} but the file has "
            f"{library.tracks_in_file} TRACK elements; imported all of them"
        )
    if playlist is not None:
        keys, key_kind = _playlist_keys(handler.playlists, playlist, path)
        raw = [
            item for item in raw
            if (item[2] if key_kind == "location" else item[0].track.source_id) in keys
        ]
    library.tracks = _locate_audio(raw, audio_root, hash_audio, library, progress)
    return library


def _locate_audio(
    raw: list[tuple[TrackAnnotation, str | None, str]],
    audio_root: str | Path | None,
    hash_audio: bool,
    library: RekordboxLibrary,
    progress: Callable[[int, int], None] | None,
) -> list[TrackAnnotation]:
    root = Path(audio_root).expanduser() if audio_root is not None else None
    library_root = _common_parent(p for _, p, _ in raw if p) if root is not None else None
    tracks: list[TrackAnnotation] = []
    for done, (annotation, original, _) in enumerate(raw, start=1):
        if progress is not None:
            progress(done, len(raw))
        if original is None:
            tracks.append(annotation)
            continue
        local = str(remap_path(original, root, library_root)) if root is not None else original
        updates: dict[str, Any] = {}
        if local != original:
            updates["path"] = local
            provenance = {**annotation.metadata.provenance, "original_path": original}
            metadata = annotation.metadata.model_copy(update={"provenance": provenance})
            annotation = annotation.model_copy(update={"metadata": metadata})
        # os.path rather than pathlib: this runs once per track of a 10,000-track library.
        if os.path.isfile(local):
            library.audio_found += 1
            if hash_audio:
                try:
                    updates["content_hash"] = _hash_file(Path(local))
                except ValueError as error:  # edm.audio.AudioError: unreadable file
                    library.problems.append(
                        f"{library.path}: track {annotation.track.source_id}: {error}"
                    )
        if not updates:
            tracks.append(annotation)
            continue
        track = annotation.track.model_copy(update=updates)
        tracks.append(annotation.model_copy(update={"track": track}))
    return tracks


# ---------------------------------------------------------------------------------------------
# Writing
#
# A DJ's library is written back by splicing bytes, never by re-serialising a parsed tree:
# every TRACK edm does not edit, every attribute edm does not own, the playlists and the file's
# own formatting (line breaks inside tags, CRLF, entity spelling) pass through byte for byte.
# edm owns a TRACK's TEMPO list, its POSITION_MARKs and, when it writes the grid or key,
# AverageBpm and Tonality; each is rewritten only when the annotation differs from what
# the import read from it.

#: Cues closer than this are one cue when edm's cues are merged into the DJ's.
MERGE_TOLERANCE_S = 0.010
#: edm's tempo differs from the DJ's grid by more than this fraction: listed in the summary.
TEMPO_DISAGREEMENT = 0.01
#: Same tempo, but edm's beats sit further than this from the DJ's (s): listed too.
PHASE_DISAGREEMENT_S = 0.05

_START_TAG = re.compile(
    rb"<[^\s/>]+(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*/?>"
)
_END_TAG = re.compile(rb"</[^>]*>")


@dataclass
class RekordboxWrite:
    """What a write did: counts, and one line per track whose grid edm kept but doubts."""

    path: Path
    base: Path | None = None
    updated: int = 0
    added: int = 0
    unchanged: int = 0
    cues_added: int = 0
    cues_merged: int = 0
    grids_replaced: int = 0
    grid_disagreements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal."""
        line = (f"{self.path}: {self.updated} track(s) updated, {self.added} added, "
                f"{self.unchanged} unchanged")
        if self.base is not None:
            line += f" (from {self.base}; everything else as written)"
        if self.cues_added or self.cues_merged:
            line += (f"; {self.cues_added} cue(s) added, {self.cues_merged} merged into "
                     "existing ones")
        if self.grid_disagreements:
            line += f"; {len(self.grid_disagreements)} grid(s) edm disagrees with, kept"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.path), "base": str(self.base) if self.base else None,
            "updated": self.updated, "added": self.added, "unchanged": self.unchanged,
            "cues_added": self.cues_added, "cues_merged": self.cues_merged,
            "grids_replaced": self.grids_replaced,
            "grid_disagreements": self.grid_disagreements, "notes": self.notes,
        }


# ---- pure helpers --------------------------------------------------------------------------


def merge_cues(
    existing: Iterable[Cue], new: Iterable[Cue], tolerance_s: float = MERGE_TOLERANCE_S
) -> tuple[list[Cue], int]:
    """The cues of ``new`` that add something to ``existing``, and how many were merged.

    A new cue within ``tolerance_s`` of a cue already there, or a hot cue for a slot already
    taken, is the same cue: the one there wins (the DJ's, or the first of ``new``).

    >>> dj = [Cue(start_s=10.0, kind="hot", slot=0, name="Drop")]
    >>> added, merged = merge_cues(dj, [Cue(start_s=10.004), Cue(start_s=40.0, kind="hot",
    ...                                  slot=0), Cue(start_s=70.0)])
    >>> [c.start_s for c in added], merged
    ([70.0], 2)
    """
    taken = list(existing)
    new = list(new)
    added: list[Cue] = []
    for cue in new:
        same = any(abs(c.start_s - cue.start_s) <= tolerance_s + 1e-9 for c in taken) or (
            cue.kind == "hot" and any(c.kind == "hot" and c.slot == cue.slot for c in taken)
        )
        if not same:
            added.append(cue)
            taken.append(cue)
    return added, len(new) - len(added)


def snap_to_downbeats(cues: Iterable[Cue], grid: list[TempoSegment], end_s: float) -> list[Cue]:
    """Move each cue (and a loop's end with it) onto the nearest downbeat of ``grid``.

    >>> grid = [TempoSegment(start_s=0.608, bpm=129.0)]
    >>> [c.start_s for c in snap_to_downbeats([Cue(start_s=0.0), Cue(start_s=8.0)], grid, 60)]
    [0.608, 8.05]
    """
    downbeats = downbeat_times(grid, end_s) if grid else np.zeros(0)
    snapped = []
    for cue in cues:
        if not len(downbeats):
            snapped.append(cue)
            continue
        target = round(float(downbeats[np.argmin(np.abs(downbeats - cue.start_s))]), 3)
        shift = target - cue.start_s
        end = None if cue.end_s is None else round(cue.end_s + shift, 3)
        snapped.append(cue.model_copy(update={"start_s": target, "end_s": end}))
    return snapped


def grid_disagreement(
    dj: list[TempoSegment], edm: list[TempoSegment], end_s: float
) -> str | None:
    """Why edm's grid and the DJ's disagree, or None when they agree.

    Tempo is compared by the median beat period (so a re-anchored grid is still one tempo);
    at the same tempo, edm's beats further than :data:`PHASE_DISAGREEMENT_S` from the DJ's
    nearest beat (median) disagree on phase.
    """
    dj_beats, edm_beats = beat_times(dj, end_s), beat_times(edm, end_s)
    if len(dj_beats) < 2 or len(edm_beats) < 2:
        return None
    dj_bpm = 60.0 / float(np.median(np.diff(dj_beats)))
    edm_bpm = 60.0 / float(np.median(np.diff(edm_beats)))
    if abs(edm_bpm / dj_bpm - 1.0) > TEMPO_DISAGREEMENT:
        return f"DJ grid {dj_bpm:.2f} BPM, edm {edm_bpm:.2f} BPM"
    index = np.clip(np.searchsorted(dj_beats, edm_beats), 1, len(dj_beats) - 1)
    distance = np.minimum(np.abs(edm_beats - dj_beats[index - 1]),
                          np.abs(edm_beats - dj_beats[index]))
    offset = float(np.median(distance))
    if offset > PHASE_DISAGREEMENT_S:
        return f"same tempo ({dj_bpm:.2f} BPM) but edm's beats sit {offset * 1000:.0f} ms off"
    return None


# ---- text of new elements ------------------------------------------------------------------


def _fmt(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def _bpm_text(bpm: float) -> str:
    # Rekordbox writes two decimals; keep more only when they carry information.
    text = f"{bpm:.2f}"
    return text if float(text) == bpm else repr(round(bpm, 6))


def _tempo_attrs(segment: TempoSegment) -> dict[str, str]:
    return {
        "Inizio": _fmt(segment.start_s, 3), "Bpm": _bpm_text(segment.bpm),
        "Metro": f"{segment.beats_per_bar}/4", "Battito": str(segment.beat_in_bar),
    }


def _cue_attrs(cue: Cue) -> dict[str, str]:
    attrs = {
        "Name": cue.name, "Type": _LOOP_TYPE if cue.end_s is not None else "0",
        "Start": _fmt(cue.start_s, 3),
    }
    if cue.end_s is not None:
        attrs["End"] = _fmt(cue.end_s, 3)
    attrs["Num"] = str(cue.slot if cue.kind == "hot" and cue.slot is not None else -1)
    if cue.color is not None:
        attrs.update(
            Red=str(int(cue.color[1:3], 16)), Green=str(int(cue.color[3:5], 16)),
            Blue=str(int(cue.color[5:7], 16)),
        )
    return attrs


def _track_attrs(annotation: TrackAnnotation, track_id: str) -> dict[str, str]:
    """Attributes of a TRACK edm adds; only what the annotation knows (nothing blanked)."""
    track = annotation.track
    attrs = {"TrackID": track_id, "Name": track.title}
    if track.artist:
        attrs["Artist"] = track.artist
    if track.genre:
        attrs["Genre"] = track.genre
    if track.path:
        attrs["Kind"] = _KIND_BY_EXTENSION.get(Path(track.path).suffix.lower(), "")
    # Whole seconds, rounded down like Rekordbox: no grid beats past the audio on re-import.
    attrs["TotalTime"] = str(max(1, math.floor(track.duration_s))) if track.duration_s else "0"
    attrs["AverageBpm"] = _fmt(annotation.bpm, 2) if annotation.bpm else (
        _fmt(annotation.grid[0].bpm, 2) if annotation.grid else "0.00"
    )
    if annotation.key:
        attrs["Tonality"] = annotation.key
    if annotation.energy_rating is not None:
        attrs["Comments"] = f"Energy {annotation.energy_rating:g}"
    attrs["Location"] = _location_of(annotation)
    return attrs


def _location_of(annotation: TrackAnnotation) -> str:
    """The Location the import read (kept as written), else the path encoded like Rekordbox."""
    original = annotation.metadata.provenance.get("location")
    if original:
        return original
    return path_to_location(annotation.track.path) if annotation.track.path else ""


def _escape(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;")
            .replace("\t", "&#9;"))


def _element(tag: str, attrs: dict[str, str], close: bool = True) -> str:
    body = " ".join(f'{name}="{_escape(value)}"' for name, value in attrs.items())
    return f"<{tag} {body}{'/' if close else ''}>"


# ---- locating a base file's elements -------------------------------------------------------


@dataclass
class _Span:
    start: int
    tag_end: int
    end: int = -1


@dataclass
class _Located:
    """A base export's bytes and where its TRACKs (and their children) are."""

    data: bytes
    tracks: list[tuple[_RawTrack, _Span, list[_Span], list[_Span]]]
    collection: _Span
    #: Start of ``</COLLECTION>`` (or of the self-closing COLLECTION tag's ``/>``).
    collection_close: int
    newline: str


class _LocatingHandler(_ExportHandler):
    """The import's SAX handler, also noting byte offsets of TRACK, TEMPO and POSITION_MARK."""

    def __init__(self, path: Path, data: bytes) -> None:
        super().__init__(path, self._done)
        self.data = data
        self.position: Callable[[], int] = lambda: 0
        self.spans: list[_Span | None] = []
        self.current: tuple[_Span, list[_Span], list[_Span]] | None = None
        self.found: list[tuple[_RawTrack, _Span, list[_Span], list[_Span]]] = []
        self.collection: _Span | None = None
        self.collection_close = -1

    def _span(self, at: int) -> _Span:
        match = _START_TAG.match(self.data, at)
        if match is None:  # pragma: no cover - expat accepted the tag, so it matches
            raise RekordboxError(f"{self.path}: cannot locate the tag at byte {at}")
        return _Span(at, match.end())

    def startElement(self, name: str, attrs: Any) -> None:
        parent = self.stack[-1] if self.stack else ""
        in_track = self.track is not None and parent == "TRACK"
        super().startElement(name, attrs)
        span = None  # only the elements a write may touch are located (playlists are not)
        if name == "TRACK" and parent == "COLLECTION":
            span = self._span(self.position())
            self.current = (span, [], [])
        elif in_track and self.current is not None and name in ("TEMPO", "POSITION_MARK"):
            span = self._span(self.position())
            self.current[1 if name == "TEMPO" else 2].append(span)
        elif name == "COLLECTION" and parent == "DJ_PLAYLISTS":
            span = self.collection = self._span(self.position())
        self.spans.append(span)

    def endElement(self, name: str) -> None:
        span = self.spans.pop()
        if span is not None:
            at = self.position()
            if self.data[span.tag_end - 2 : span.tag_end] == b"/>":
                span.end = span.tag_end
                close_at = span.tag_end - 2
            else:
                match = _END_TAG.match(self.data, at)
                span.end = match.end() if match else at
                close_at = at
            if span is self.collection:
                self.collection_close = close_at
        super().endElement(name)

    def _done(self, track: _RawTrack) -> None:
        assert self.current is not None
        self.found.append((track, *self.current))
        self.current = None


def _locate(path: Path) -> _Located:
    from defusedxml.expatreader import DefusedExpatParser

    with _xml_errors(path):
        data = path.read_bytes()
        declared = re.match(rb"(?:\xef\xbb\xbf)?<\?xml[^>]*encoding=[\"']([^\"']+)", data)
        if declared and declared.group(1).decode("ascii", "replace").lower().replace(
                "-", "") != "utf8":
            raise RekordboxError(
                f"{path}: encoded as {declared.group(1).decode('ascii', 'replace')}; edm "
                "updates UTF-8 exports (what Rekordbox writes) only")
        handler = _LocatingHandler(path, data)
        parser = DefusedExpatParser(forbid_dtd=False, forbid_entities=True,
                                    forbid_external=True)
        parser.setContentHandler(handler)
        # The expat parser exists once parsing starts; its CurrentByteIndex is where the
        # event's markup begins in the file.
        handler.position = lambda: parser._parser.CurrentByteIndex  # type: ignore[attr-defined]
        from io import BytesIO

        parser.parse(BytesIO(data))
    if handler.collection is None:
        raise RekordboxError(f"{path}: Rekordbox XML without a <COLLECTION> element")
    return _Located(data, handler.found, handler.collection, handler.collection_close,
                    "\r\n" if b"\r\n" in data[:4096] else "\n")


# ---- planning one TRACK's edits ------------------------------------------------------------


@dataclass
class _TrackEdit:
    """What changes in one base TRACK; everything else stays as written."""

    attrs: dict[str, str] = field(default_factory=dict)
    grid: list[TempoSegment] | None = None  # None: TEMPO elements kept as written
    drop_marks: set[int] = field(default_factory=set)  # indexes into the TRACK's marks
    new_cues: list[Cue] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.attrs or self.grid is not None or self.drop_marks or self.new_cues)


def _read_marks(raw: _RawTrack) -> list[Cue | None]:
    """Each POSITION_MARK as the import reads it; None for one the import skips."""
    return [_read_mark(attrs) for attrs in raw.marks]


def _read_mark(attrs: dict[str, str]) -> Cue | None:
    try:
        return Cue.model_validate(_TrackReader._cue(attrs))
    except (ValueError, ValidationError):
        return None


def _sync_edit(raw: _RawTrack, reader: _TrackReader, wanted: TrackAnnotation) -> _TrackEdit:
    """Edits that make a base TRACK say what ``wanted`` says (``edm data export``).

    Compared as the plain values the import builds (no validation: most tracks are
    unchanged); only where they differ is the slower, exact reading consulted.
    """
    edit = _TrackEdit()
    attrs = raw.attrs
    try:
        same_grid = [s.model_dump() for s in wanted.grid] == reader.grid(raw)
    except ValueError:
        same_grid = False
    if not same_grid and wanted.grid != reader.annotation(raw)[0].grid:
        edit.grid = list(wanted.grid)
    bpm = _float(attrs, "AverageBpm") if attrs.get("AverageBpm") else None
    if wanted.bpm is not None and wanted.bpm != bpm:
        edit.attrs["AverageBpm"] = _fmt(wanted.bpm, 2)
    if wanted.key is not None and wanted.key != (attrs.get("Tonality") or None):
        edit.attrs["Tonality"] = wanted.key
    remaining = [c.model_dump() for c in wanted.cues]
    for index, mark in enumerate(raw.marks):
        try:
            plain = _TrackReader._cue(mark)
        except ValueError:
            continue  # not something edm read, so not something edm may remove
        if plain in remaining:
            remaining.remove(plain)
        elif _read_mark(mark) is not None:
            edit.drop_marks.add(index)
    edit.new_cues = [Cue.model_validate(c) for c in remaining]
    return edit


def _write_back_edit(
    raw: _RawTrack | None, dj: TrackAnnotation | None, ours: TrackAnnotation, *,
    replace_grid: bool, replace_cues: bool, report: RekordboxWrite, label: str,
) -> tuple[_TrackEdit, list[TempoSegment]]:
    """Edits that add edm's analysis to a DJ's TRACK (``edm analyze --format rekordbox``).

    The DJ's grid stays unless ``replace_grid`` (or there is none); edm's cues are snapped to
    the downbeats of the grid that is written and merged into the DJ's (``replace_cues``
    removes the DJ's first). Returns the edit and the grid the TRACK ends up with.
    """
    edit = _TrackEdit()
    end_s = ours.track.duration_s or (dj.track.duration_s if dj else None) or 3600.0
    dj_grid = dj.grid if dj is not None else []
    if dj_grid and ours.grid:
        doubt = grid_disagreement(dj_grid, ours.grid, end_s)
        if doubt is not None and not replace_grid:
            report.grid_disagreements.append(f"{label}: {doubt}; kept the DJ's grid "
                                             "(--replace-grid writes edm's)")
    grid = dj_grid
    if ours.grid and (replace_grid or not dj_grid) and ours.grid != dj_grid:
        edit.grid = grid = list(ours.grid)
        edit.attrs["AverageBpm"] = _fmt(ours.bpm or ours.grid[0].bpm, 2)
        report.grids_replaced += 1
    existing: list[Cue] = []
    if raw is not None:
        for index, cue in enumerate(_read_marks(raw)):
            if replace_cues:
                edit.drop_marks.add(index)
            elif cue is not None:
                existing.append(cue)
    snapped = snap_to_downbeats(ours.cues, grid, end_s)
    edit.new_cues, merged = merge_cues(existing, snapped)
    report.cues_added += len(edit.new_cues)
    report.cues_merged += merged
    return edit, grid


# ---- splicing ------------------------------------------------------------------------------


def _set_attrs(tag: str, attrs: dict[str, str]) -> str:
    for name, value in attrs.items():
        pattern = re.compile(rf"(\s{re.escape(name)}\s*=\s*)(\"[^\"]*\"|'[^']*')")
        quoted = f'"{_escape(value)}"'
        if pattern.search(tag):
            tag = pattern.sub(lambda m, q=quoted: m.group(1) + q, tag, count=1)
        else:
            closing = "/>" if tag.endswith("/>") else ">"
            tag = tag[: -len(closing)].rstrip() + f" {name}={quoted}" + closing
    return tag


def _line_indent(data: bytes, at: int) -> str:
    line_start = data.rfind(b"\n", 0, at) + 1
    prefix = data[line_start:at]
    return prefix.decode("utf-8") if not prefix.strip() else ""


def _rewrite_track(
    located: _Located, span: _Span, tempos: list[_Span], marks: list[_Span], edit: _TrackEdit
) -> bytes:
    """The TRACK's new bytes: its start tag with edm's attributes set, removed children cut
    out with the line they sat on, new TEMPO where the old ones were, new cues at the end."""
    data, nl = located.data, located.newline
    tag = _set_attrs(data[span.start : span.tag_end].decode("utf-8"), edit.attrs)
    indent = _line_indent(data, span.start)
    children = tempos + marks
    child_indent = _line_indent(data, children[0].start) if children else indent + "  "
    cut = [s for s in tempos if edit.grid is not None]
    cut += [s for i, s in enumerate(marks) if i in edit.drop_marks]
    new_tempos = [_element("TEMPO", _tempo_attrs(s)) for s in edit.grid or []]
    new_marks = [_element("POSITION_MARK", _cue_attrs(c)) for c in edit.new_cues]
    self_closing = span.end == span.tag_end
    if self_closing:
        if not new_tempos and not new_marks:
            return tag.encode("utf-8")
        tag = tag[:-2].rstrip() + ">"
        body, close = "", f"{nl}{indent}</TRACK>"
    else:
        body = data[span.tag_end : span.end].decode("utf-8")
        close_at = body.rfind("</")
        body, close = body[:close_at], body[close_at:]
    # Cut from the back so earlier offsets stay valid; a cut takes its line's indentation.
    insert_tempo_at: int | None = None
    for child in sorted(cut, key=lambda s: s.start, reverse=True):
        start, stop = child.start - span.tag_end, child.end - span.tag_end
        while start > 0 and body[start - 1] in " \t\r\n":
            start -= 1
        body = body[:start] + body[stop:]
        if child in tempos:
            insert_tempo_at = start
    if new_tempos:
        if insert_tempo_at is None:
            insert_tempo_at = 0
        text = "".join(f"{nl}{child_indent}{t}" for t in new_tempos)
        body = body[:insert_tempo_at] + text + body[insert_tempo_at:]
    trailing = len(body) - len(body.rstrip(" \t\r\n"))
    head, tail = body[: len(body) - trailing], body[len(body) - trailing :]
    if new_marks:
        head += "".join(f"{nl}{child_indent}{m}" for m in new_marks)
    if not tail and not self_closing and (new_marks or new_tempos):
        tail = f"{nl}{indent}"
    return (tag + head + tail + close).encode("utf-8")


def _new_track(annotation: TrackAnnotation, track_id: str, indent: str, nl: str,
               cues: list[Cue] | None = None) -> str:
    children = [_element("TEMPO", _tempo_attrs(s)) for s in annotation.grid]
    children += [_element("POSITION_MARK", _cue_attrs(c))
                 for c in (annotation.cues if cues is None else cues)]
    attrs = _track_attrs(annotation, track_id)
    if not children:
        return indent + _element("TRACK", attrs)
    inner = "".join(f"{nl}{indent}  {child}" for child in children)
    return f"{indent}{_element('TRACK', attrs, close=False)}{inner}{nl}{indent}</TRACK>"


# ---- matching annotations to base TRACKs ---------------------------------------------------


class _Index:
    """Base TRACKs by Location string, decoded path and TrackID."""

    def __init__(self, located: _Located) -> None:
        self.by_location: dict[str, int] = {}
        self.by_path: dict[str, int] = {}
        self.by_id: dict[str, int] = {}
        for index, (raw, *_rest) in enumerate(located.tracks):
            location = raw.attrs.get("Location", "")
            self.by_location.setdefault(location, index)
            try:
                decoded = location_to_path(location)
            except UnicodeDecodeError:
                decoded = None
            if decoded is not None:
                self.by_path.setdefault(decoded, index)
            self.by_id.setdefault(raw.attrs.get("TrackID", ""), index)

    def find(self, annotation: TrackAnnotation, *, by_track_id: bool) -> int | None:
        """The base TRACK of ``annotation``: by TrackID first when ``by_track_id`` (it was
        read from this base), then by the Location the import read, then by path."""
        provenance = annotation.metadata.provenance
        keys = [(provenance.get("location"), self.by_location),
                (provenance.get("original_path"), self.by_path),
                (annotation.track.path, self.by_path)]
        if by_track_id:
            keys.insert(0, (annotation.track.source_id, self.by_id))
        for key, table in keys:
            if key and key in table:
                return table[key]
        return None


def _label(raw: _RawTrack) -> str:
    attrs = raw.attrs
    name = " - ".join(p for p in (attrs.get("Artist", ""), attrs.get("Name", "")) if p)
    return f"track {attrs.get('TrackID', '?')} ({name or 'untitled'})"


# ---- the two writers -----------------------------------------------------------------------


def write_rekordbox_xml(
    annotations: Iterable[TrackAnnotation],
    path: str | Path,
    *,
    base: str | Path | None = None,
) -> RekordboxWrite:
    """Write annotations as a Rekordbox XML (``edm data export --format rekordbox``).

    Each annotation is the whole truth about its track's grid, cues, BPM and key. With
    ``base`` (the library's own export, usually the file they were imported from) that file
    is copied and only what differs is edited: a TRACK whose grid, cues, AverageBpm or
    Tonality the annotation changed gets those rewritten (cues it still has keep their
    original elements); every other attribute, TRACK, the TEMPO lists as written and the
    playlists stay byte-identical. Annotations not in ``base`` are appended (matched by the
    Location the import read, then by path, then by TrackID when they were imported from
    ``base``).

    Without ``base`` a new file is written: the tracks, and a playlist "edm" listing them.
    A grid the import normalised (entries at one Inizio) is then written as the annotation
    holds it: the same beats, one TEMPO entry per start.
    """
    path = Path(path)
    annotations = list(annotations)
    if base is None:
        return _write_new(annotations, path, snap=False)
    base = Path(base)
    same_file = {str(base), str(base.absolute()), str(base.resolve())}
    report = RekordboxWrite(path=path, base=base)
    located, edits, new = _edit_base(
        annotations, base,
        by_track_id=lambda a: a.metadata.provenance.get("xml") in same_file,
        edit=lambda raw, reader, annotation: _sync_edit(raw, reader, annotation),
    )
    return _splice(located, edits, new, report)


def _edit_base(
    annotations: list[TrackAnnotation],
    base: Path,
    *,
    by_track_id: Callable[[TrackAnnotation], bool],
    edit: Callable[[_RawTrack, _TrackReader, TrackAnnotation], _TrackEdit],
) -> tuple[_Located, dict[int, _TrackEdit], list[TrackAnnotation]]:
    """Both writers' walk over ``base``: each annotation found among its TRACKs (by TrackID
    where ``by_track_id`` says so) gets ``edit``; the rest are returned as new tracks."""
    located = _locate(base)
    index = _Index(located)
    reader = _TrackReader(base, Tier.DJ_SOFTWARE, [])
    edits: dict[int, _TrackEdit] = {}
    new: list[TrackAnnotation] = []
    for annotation in annotations:
        found = index.find(annotation, by_track_id=by_track_id(annotation))
        if found is None:
            new.append(annotation)
            continue
        edits[found] = edit(located.tracks[found][0], reader, annotation)
    return located, edits, new


def write_back_xml(
    annotations: Iterable[TrackAnnotation],
    path: str | Path,
    *,
    base: str | Path | None = None,
    replace_grid: bool = False,
    replace_cues: bool = False,
) -> RekordboxWrite:
    """Add edm's analyses to a DJ's library (``edm analyze --format rekordbox``).

    Each annotation holds edm's grid and edm's new cues (one per section); its
    ``track.source_id`` is the TrackID in ``base`` (the XML the tracks were read from). Per
    TRACK of ``base``: the DJ's grid is kept unless ``replace_grid`` (tracks where edm's
    tempo or phase disagrees are listed in :attr:`RekordboxWrite.grid_disagreements`);
    edm's cues are moved onto downbeats of the grid that is written and merged with the
    DJ's (same time ± :data:`MERGE_TOLERANCE_S` or same hot-cue slot: the DJ's stays);
    ``replace_cues`` removes the DJ's cues first. The Location, every other attribute and
    the playlists are left as written. Without ``base`` a new file is written.
    """
    path = Path(path)
    annotations = list(annotations)
    if base is None:
        return _write_new(annotations, path, snap=True)
    base = Path(base)
    report = RekordboxWrite(path=path, base=base)

    def edit(raw: _RawTrack, reader: _TrackReader, annotation: TrackAnnotation) -> _TrackEdit:
        dj, _ = reader.annotation(raw)
        track_edit, _ = _write_back_edit(
            raw, dj, annotation, replace_grid=replace_grid, replace_cues=replace_cues,
            report=report, label=f"{base}: {_label(raw)}",
        )
        return track_edit

    located, edits, new = _edit_base(annotations, base, by_track_id=lambda _: True, edit=edit)
    new = [_with_cues(a, snap_to_downbeats(a.cues, a.grid, a.track.duration_s or 3600.0))
           for a in new]
    return _splice(located, edits, new, report)


def _with_cues(annotation: TrackAnnotation, cues: list[Cue]) -> TrackAnnotation:
    deduplicated, _ = merge_cues([], cues)
    return annotation.model_copy(update={"cues": deduplicated})


def _splice(
    located: _Located, edits: dict[int, _TrackEdit], new: list[TrackAnnotation],
    report: RekordboxWrite,
) -> RekordboxWrite:
    data, nl = located.data, located.newline
    pieces: list[tuple[int, int, bytes]] = []
    for found, edit in sorted(edits.items()):
        _, span, tempos, marks = located.tracks[found]
        if not edit:
            report.unchanged += 1
            continue
        report.updated += 1
        pieces.append((span.start, span.end, _rewrite_track(located, span, tempos, marks, edit)))
    report.unchanged += len(located.tracks) - len(edits)
    if new:
        ids = {raw.attrs.get("TrackID", "") for raw, *_ in located.tracks}
        track_indent = (_line_indent(data, located.tracks[0][1].start) if located.tracks
                        else _line_indent(data, located.collection.start) + "  ")
        texts = []
        for annotation, track_id in zip(new, _new_ids(new, ids), strict=True):
            texts.append(_new_track(annotation, track_id, track_indent, nl))
        report.added = len(texts)
        collection_tag = data[located.collection.start : located.collection.tag_end]
        tag = _set_attrs(collection_tag.decode("utf-8"),
                         {"Entries": str(len(located.tracks) + len(texts))})
        close_indent = _line_indent(data, located.collection_close)
        block = "".join(f"{nl}{text}" for text in texts) + nl + close_indent
        if collection_tag.endswith(b"/>"):
            tag = tag[:-2].rstrip() + ">"
            pieces.append((located.collection.start, located.collection.tag_end,
                           (tag + block + "</COLLECTION>").encode("utf-8")))
        else:
            pieces.append((located.collection.start, located.collection.tag_end,
                           tag.encode("utf-8")))
            # Before the whitespace that precedes </COLLECTION>, keeping that line as it is.
            at = located.collection_close - len(close_indent.encode("utf-8"))
            if data[at - 1 : at] == b"\n":
                at -= 2 if data[at - 2 : at] == b"\r\n" else 1
            block = "".join(f"{nl}{text}" for text in texts)
            pieces.append((at, at, block.encode("utf-8")))
        report.notes.append(
            f"{len(texts)} track(s) not in {report.base} were added to its collection; "
            "playlists were left as they are"
        )
    out = bytearray()
    cursor = 0
    for start, stop, replacement in sorted(pieces, key=lambda p: (p[0], p[1])):
        out += data[cursor:start] + replacement
        cursor = stop
    out += data[cursor:]
    _atomic_write(report.path, bytes(out))
    return report


def _new_ids(annotations: list[TrackAnnotation], used: set[str]) -> Iterator[str]:
    """A TrackID per new track: its own when it is a free number, else the next free one."""
    used = set(used)
    next_id = max((int(i) for i in used if i.isdigit()), default=0) + 1
    for annotation in annotations:
        track_id = annotation.track.source_id or ""
        if not track_id.isdigit() or track_id in used:
            track_id = str(next_id)
        next_id = max(next_id, int(track_id)) + 1
        used.add(track_id)
        yield track_id


def _write_new(annotations: list[TrackAnnotation], path: Path, *, snap: bool) -> RekordboxWrite:
    from edm import __version__

    nl = "\n"
    ids = list(_new_ids(annotations, set()))
    tracks = []
    for annotation, track_id in zip(annotations, ids, strict=True):
        cues = None
        if snap:
            end_s = annotation.track.duration_s or 3600.0
            cues, _ = merge_cues([], snap_to_downbeats(annotation.cues, annotation.grid, end_s))
        tracks.append(_new_track(annotation, track_id, "    ", nl, cues))
    playlist = "".join(f'{nl}        <TRACK Key="{track_id}"/>' for track_id in ids)
    text = (
        f'<?xml version="1.0" encoding="UTF-8"?>{nl}<DJ_PLAYLISTS Version="1.0.0">{nl}'
        f'  <PRODUCT Name="edm" Version="{__version__}" Company="edm"/>{nl}'
        f'  <COLLECTION Entries="{len(tracks)}">'
        + "".join(f"{nl}{t}" for t in tracks)
        + f"{nl}  </COLLECTION>{nl}  <PLAYLISTS>{nl}"
        f'    <NODE Type="0" Name="ROOT" Count="1">{nl}'
        f'      <NODE Name="edm" Type="1" KeyType="0" Entries="{len(ids)}">'
        f"{playlist}{nl}      </NODE>{nl}    </NODE>{nl}  </PLAYLISTS>{nl}</DJ_PLAYLISTS>{nl}"
    )
    _atomic_write(path, text.encode("utf-8"))
    return RekordboxWrite(path=path, added=len(tracks))


def default_base(annotations: Iterable[TrackAnnotation]) -> Path | None:
    """The Rekordbox XML the annotations were imported from, when it is one file that exists.

    Raises :class:`RekordboxError` when they came from several XML files that exist (the
    caller must choose one).
    """
    found = {a.metadata.provenance.get("xml") for a in annotations} - {None, ""}
    existing = sorted(p for p in found if p is not None and Path(p).is_file())
    if len(existing) > 1:
        raise RekordboxError(
            f"the annotations come from {len(existing)} Rekordbox XML files "
            f"({', '.join(existing[:3])}…); choose the library to update with --base"
        )
    return Path(existing[0]) if existing else None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
