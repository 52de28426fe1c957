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

Times are seconds; Rekordbox stores them with millisecond precision, so the writer rounds
``TEMPO Inizio`` and cue times to 3 decimals and a round trip is exact to the millisecond.

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
import xml.etree.ElementTree as ET
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
import defusedxml.ElementTree as SafeET
import defusedxml.sax as defused_sax
from pydantic import ValidationError

from edm.data.schema import Cue, TempoSegment, Tier, TrackAnnotation

SOURCE = "rekordbox-xml"
_FILE_URL_PREFIXES = ("file://localhost/", "file:///")
_DRIVE = re.compile(r"^[A-Za-z]:")
_ENERGY = re.compile(r"\benergy\s*[:=]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_LOOP_TYPE = "4"
#: Characters Rekordbox leaves unescaped in Location URLs (it escapes spaces and non-ASCII).
_URL_SAFE = "/:,()!'&+=@$;~[]*"
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
    >>> path_to_location("/Users/dj/Music/A & B #1.mp3")
    'file://localhost/Users/dj/Music/A%20&%20B%20%231.mp3'
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
    except ET.ParseError as error:
        raise RekordboxError(f"{path}: malformed XML ({error})") from error
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
        provenance = {"xml": str(self.path), "rekordbox_version": self.version}
        if track_id:
            provenance["track_id"] = track_id
        if path is None:
            self.report(raw, f"Location {location[:80]!r} is not a local file URL")
            if location:
                provenance["location"] = location
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
    track = annotation.track
    attrs = {"TrackID": track_id, "Name": track.title,
             "Artist": track.artist, "Genre": track.genre}
    if track.path:
        attrs["Kind"] = _KIND_BY_EXTENSION.get(Path(track.path).suffix.lower(), "")
    # Whole seconds, rounded down like Rekordbox: no grid beats past the audio on re-import.
    attrs["TotalTime"] = str(max(1, math.floor(track.duration_s))) if track.duration_s else "0"
    attrs["AverageBpm"] = _fmt(annotation.bpm, 2) if annotation.bpm else (
        _fmt(annotation.grid[0].bpm, 2) if annotation.grid else "0.00"
    )
    attrs["Tonality"] = annotation.key or ""
    attrs["Comments"] = (
        f"Energy {annotation.energy_rating:g}" if annotation.energy_rating is not None else ""
    )
    attrs["Location"] = path_to_location(track.path) if track.path else ""
    return attrs


def _fill_track(element: ET.Element, annotation: TrackAnnotation, replace_cues: bool) -> None:
    for child in list(element):
        if child.tag == "TEMPO" or (replace_cues and child.tag == "POSITION_MARK"):
            element.remove(child)
    existing = {
        (child.get("Start"), child.get("Num")) for child in element.iter("POSITION_MARK")
    }
    for segment in annotation.grid:
        ET.SubElement(element, "TEMPO", _tempo_attrs(segment))
    for cue in annotation.cues:
        attrs = _cue_attrs(cue)
        if (attrs["Start"], attrs["Num"]) not in existing:
            ET.SubElement(element, "POSITION_MARK", attrs)


def _same_track(element: ET.Element, annotation: TrackAnnotation) -> bool:
    if annotation.track.path:
        try:
            decoded = location_to_path(element.get("Location", ""))
        except UnicodeDecodeError:
            decoded = None
        if decoded is not None and Path(decoded) == Path(annotation.track.path):
            return True
    return False


def write_rekordbox_xml(
    annotations: list[TrackAnnotation],
    path: str | Path,
    *,
    replace_cues: bool = True,
    base: str | Path | None = None,
) -> Path:
    """Write annotations as a Rekordbox XML that Rekordbox imports (grid and cues).

    Each annotation becomes a ``TRACK`` with its grid as ``TEMPO`` entries and its cues as
    ``POSITION_MARK`` elements; ``Location`` is the file URL of ``track.path``. A playlist
    "edm" listing the tracks is added so they are easy to find in Rekordbox's XML view.

    With ``base`` (an existing export), that file is updated instead: a track whose
    ``Location`` matches ``track.path`` gets its TEMPO entries replaced, and its POSITION_MARKs
    replaced (``replace_cues=True``) or kept with the new cues added; other annotations are
    appended and the rest of the file is kept. The file is written atomically.

    Times are written with Rekordbox's millisecond precision and ``TotalTime`` in whole
    seconds (rounded down); a relative ``track.path`` is made absolute against the current
    folder, since a file URL has to be absolute.
    """
    path = Path(path)
    if base is not None:
        root = _load_tree(Path(base))
        collection = root.find("COLLECTION")
        assert collection is not None  # _load_tree checked it
    else:
        root = ET.Element("DJ_PLAYLISTS", Version="1.0.0")
        from edm import __version__

        ET.SubElement(root, "PRODUCT", Name="edm", Version=__version__, Company="edm")
        collection = ET.SubElement(root, "COLLECTION")
    existing = list(collection.iter("TRACK"))
    used_ids = {element.get("TrackID", "") for element in existing}
    next_id = max((int(i) for i in used_ids if i.isdigit()), default=0) + 1
    written_ids: list[str] = []
    for annotation in annotations:
        match = next((e for e in existing if _same_track(e, annotation)), None)
        if match is not None:
            _fill_track(match, annotation, replace_cues)
            written_ids.append(match.get("TrackID", ""))
            continue
        track_id = annotation.track.source_id or ""
        if not track_id.isdigit() or track_id in used_ids:
            track_id = str(next_id)
        next_id = max(next_id, int(track_id)) + 1
        used_ids.add(track_id)
        element = ET.SubElement(collection, "TRACK", _track_attrs(annotation, track_id))
        _fill_track(element, annotation, replace_cues=True)
        written_ids.append(track_id)
    collection.set("Entries", str(len(collection.findall("TRACK"))))
    _add_playlist(root, written_ids)
    ET.indent(root, space="  ")
    # Rekordbox's own header, double-quoted (ElementTree would write single quotes).
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
    _atomic_write(path, text.encode("utf-8") + b"\n")
    return path


def _add_playlist(root: ET.Element, track_ids: list[str]) -> None:
    playlists = root.find("PLAYLISTS")
    if playlists is None:
        playlists = ET.SubElement(root, "PLAYLISTS")
    top = playlists.find("NODE")
    if top is None:
        top = ET.SubElement(playlists, "NODE", Type="0", Name="ROOT", Count="0")
    for old in [n for n in top.findall("NODE") if n.get("Name") == "edm"]:
        top.remove(old)
    node = ET.SubElement(
        top, "NODE", Name="edm", Type="1", KeyType="0", Entries=str(len(track_ids))
    )
    for track_id in track_ids:
        ET.SubElement(node, "TRACK", Key=track_id)
    top.set("Count", str(len(top.findall("NODE"))))


def _load_tree(path: Path) -> ET.Element:
    with _xml_errors(path):
        root = SafeET.parse(str(path)).getroot()
    if root.tag != "DJ_PLAYLISTS" or root.find("COLLECTION") is None:
        raise RekordboxError(f"{path}: not a Rekordbox XML export (no DJ_PLAYLISTS/COLLECTION)")
    return root


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
