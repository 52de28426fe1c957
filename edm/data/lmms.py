"""LMMS projects (``.mmp`` XML, ``.mmpz`` compressed) as exact ground truth.

A project states its own beat grid and arrangement, so a render of it comes with truth no
annotator could match: every beat, downbeat and tempo change is exact (Tier 1), and section
boundaries follow from which tracks play where.

Project facts used
------------------
- Time is in ticks: 48 per quarter note (192 per 4/4 bar). ``head/@bpm`` counts quarter
  notes per minute whatever the metre; the metre is ``head/@timesig_numerator`` /
  ``@timesig_denominator`` (a beat is one 1/denominator note, ``192 / denominator`` ticks).
- Tempo automation: an automation pattern linked (``<object id=…>``) to the tempo model's id
  (``head/bpm/@id``) sets the tempo from its points on; ``prog="0"`` holds each value,
  other progressions ramp linearly to the next point (LMMS's cubic ramp is approximated
  as linear). After a pattern's last point the value holds.
- LMMS 1.3 renamed the clips (``midiclip``, ``sampleclip``, ``patternclip``,
  ``automationclip``, ``patterntrack``); both spellings are read.
- ``.mmpz`` is Qt's ``qCompress``: a 4-byte big-endian length, then a zlib stream.

Beat grid
---------
Beat ``k`` sits at tick ``k * ticks_per_beat``; its time integrates the tempo curve exactly
from tick 0 (time 0 of the render, a downbeat). Consecutive beats with the same period form
one :class:`~edm.data.schema.TempoSegment`, so a ramp becomes one short segment per beat
and the expanded grid still puts every beat on its exact time.

Section rule
------------
A *voice* is a song-editor instrument track, a sample track, or one instrument inside a
beat/bassline (B+B) track. A voice *sounds* in a bar when a clip of it overlaps the bar:

- instrument clips (``pattern``) sound from their first note's start to their last note's
  end (a clip without notes never sounds; step notes of length ≤ 0 count as one step);
- sample clips (``sampletco``) sound over their whole span when they have a ``src``;
- a B+B clip (``bbtco``) on B+B track *n* sounds every instrument of the B+B editor whose
  pattern in column *n* (the one at tick ``n * 192``) has notes, over the clip's span (the
  column loops for the clip's length). The B+B editor is shared: its instruments are saved
  once, inside the first B+B track. An instrument is one voice whichever column plays it;
- muted tracks, muted clips and muted inner B+B tracks never sound; when any song-editor
  track is solo, only solo tracks sound. Automation tracks never sound.

Each bar gets the set of voices sounding in it. Each voice's on/off sequence over bars is
smoothed first: gaps shorter than ``min_bars`` are filled (a voice that drops out for a bar
still plays the section) and then runs shorter than ``min_bars`` are dropped (a crash on a
downbeat, a one-bar fill or riser does not make a section). A boundary is a bar whose
smoothed set differs from the bar before; runs of bars shorter than ``min_bars`` are merged
into the run before them. Sections run between boundaries from 0 to the song's end (the end
of its last sounding clip, rounded up to a bar). ``min_bars`` is 4 by default (EDM phrases
are 4, 8 or 16 bars).

>>> project = read_lmms_text(
...     '<lmms-project><head bpm="120"/><song><trackcontainer>'
...     '<track type="0" name="lead"><pattern pos="0" len="768"><note pos="0" len="768"/>'
...     '</pattern></track></trackcontainer></song></lmms-project>', "demo.mmp")
>>> project.end_s, project.beats()[:3].tolist()
(8.0, [0.0, 0.5, 1.0])
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
import numpy as np
from defusedxml import DefusedXmlException

from edm.data.exact_grid import grid_from_beats
from edm.data.schema import (
    Metadata,
    Section,
    TempoSegment,
    Tier,
    TrackAnnotation,
    TrackIdentity,
)

LMMS_SUFFIXES = (".mmp", ".mmpz")
#: LMMS's resolution: ticks per whole note (a 4/4 bar).
TICKS_PER_WHOLE = 192
TICKS_PER_QUARTER = TICKS_PER_WHOLE // 4
#: Shortest run of bars a voice must play (or pause) to count, and the shortest section.
MIN_SECTION_BARS = 4
#: Track types in a project file.
_INSTRUMENT, _BB, _SAMPLE = "0", "1", "2"
#: Step patterns store notes with length <= 0; one 1/16 step is how long they count as sounding.
_STEP_TICKS = TICKS_PER_WHOLE // 16


#: Element names in LMMS 1.0-1.2 files and their LMMS 1.3 spellings.
_NOTE_CLIPS = ("pattern", "midiclip")
_SAMPLE_CLIPS = ("sampletco", "sampleclip")
_BB_CLIPS = ("bbtco", "patternclip")
_AUTOMATION_CLIPS = ("automationpattern", "automationclip")
_BB_EDITORS = ("bbtrack/trackcontainer", "patterntrack/trackcontainer")


def _all(element: Element, names: tuple[str, ...]) -> list[Element]:
    return [child for name in names for child in element.findall(name)]


def _bb_editor_of(track: Element) -> Element | None:
    return next((e for e in map(track.find, _BB_EDITORS) if e is not None), None)


class LmmsError(ValueError):
    """A project file that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class TempoPoint:
    """The tempo (quarter notes per minute) from ``tick`` on; ``ramp`` when it glides linearly
    to the next point."""

    tick: int
    bpm: float
    ramp: bool = False


@dataclass(frozen=True)
class LmmsProject:
    """What a project says about time and arrangement."""

    path: str
    tempo: tuple[TempoPoint, ...]
    beats_per_bar: int
    beat_unit: int
    end_tick: int
    bar_voices: tuple[frozenset[str], ...]
    title: str = ""
    artist: str = ""
    min_bars: int = MIN_SECTION_BARS
    notes: tuple[str, ...] = field(default_factory=tuple)
    creator_version: str = ""

    @property
    def ticks_per_beat(self) -> float:
        return TICKS_PER_WHOLE / self.beat_unit

    @property
    def ticks_per_bar(self) -> float:
        return self.ticks_per_beat * self.beats_per_bar

    @property
    def bars(self) -> int:
        return len(self.bar_voices)

    def tick_to_seconds(self, ticks: np.ndarray | float) -> np.ndarray:
        """Exact time of ticks under the tempo curve."""
        return _tick_to_seconds(self.tempo, np.asarray(ticks, float))

    @property
    def end_s(self) -> float:
        return float(self.tick_to_seconds(self.end_tick))

    def beats(self) -> np.ndarray:
        """Beat times (s) from 0 to the song's end."""
        count = int(np.ceil(self.end_tick / self.ticks_per_beat - 1e-9))
        return self.tick_to_seconds(np.arange(count) * self.ticks_per_beat)

    def boundary_bars(self) -> list[int]:
        """Bars where a section starts (0 excluded); see the section rule above."""
        return self._starts()[1:]

    def _starts(self) -> list[int]:
        return section_starts(smooth_voices(self.bar_voices, self.min_bars), self.min_bars)

    def grid(self) -> list[TempoSegment]:
        """Tempo segments whose expansion puts every beat on its exact time."""
        count = max(int(np.ceil(self.end_tick / self.ticks_per_beat - 1e-9)), 2)
        index = np.arange(count)
        times = self.tick_to_seconds(index * self.ticks_per_beat)
        return grid_from_beats(times, index % self.beats_per_bar + 1, self.beats_per_bar)

    def sections(self) -> list[Section]:
        starts = self._starts()
        edges = [*self.tick_to_seconds(np.array(starts) * self.ticks_per_bar), self.end_s]
        return [Section(start_s=round(float(a), 6), end_s=round(float(b), 6))
                for a, b in pairwise(edges) if b > a]

    def to_annotation(self, *, audio_path: str | None = None,
                      duration_s: float | None = None) -> TrackAnnotation:
        """A Tier-1 annotation: exact grid, arrangement sections, the project's tempo."""
        duration = round(duration_s if duration_s is not None else self.end_s, 6)
        sections = [s for s in self.sections() if s.start_s < duration]
        if sections and sections[-1].end_s != duration:
            last = sections[-1]
            sections[-1] = Section(start_s=last.start_s, end_s=max(duration, last.start_s + 1e-3))
        stem = Path(self.path).stem
        return TrackAnnotation(
            track=TrackIdentity(path=audio_path, duration_s=duration,
                                title=self.title or stem, artist=self.artist,
                                genre="electronic", source_id=stem),
            grid=self.grid(), sections=sections,
            bpm=round(self.tempo[0].bpm * self.beat_unit / 4, 6),
            metadata=Metadata(tier=Tier.VERIFIED, confidence=1.0, source="lmms-project",
                              provenance={"project": self.path,
                                          "sections": "arrangement (sounding tracks change)"}),
        )


# ---------------------------------------------------------------------------------------------
# Reading


def project_xml(data: bytes, source: str) -> bytes:
    """The XML of a project file's bytes: ``.mmpz`` are unpacked, ``.mmp`` pass through."""
    if data.lstrip()[:1] == b"<":
        return data
    if len(data) < 5:
        raise LmmsError(f"{source}: too short to be an LMMS project")
    (expected,) = struct.unpack(">I", data[:4])
    try:
        xml = zlib.decompress(data[4:])
    except zlib.error as error:
        raise LmmsError(f"{source}: not an LMMS project (neither XML nor qCompress: {error})"
                        ) from error
    if expected and len(xml) != expected:
        raise LmmsError(f"{source}: truncated .mmpz ({len(xml)} of {expected} bytes)")
    return xml


def read_lmms(path: str | Path, *, min_bars: int = MIN_SECTION_BARS) -> LmmsProject:
    """Read an ``.mmp`` or ``.mmpz`` file. Raises :class:`LmmsError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LmmsError(f"{path}: cannot read ({error.strerror})") from error
    return read_lmms_text(project_xml(data, str(path)), str(path), min_bars=min_bars)


def read_lmms_text(xml: str | bytes, source: str, *, min_bars: int = MIN_SECTION_BARS
                   ) -> LmmsProject:
    """Parse project XML (hardened parser: no entities, no DTD expansion)."""
    try:
        root = SafeET.fromstring(xml)
    except (SafeET.ParseError, DefusedXmlException) as error:
        raise LmmsError(f"{source}: not valid project XML ({error})") from error
    head = root.find("head")
    song = root.find("song")
    if head is None or song is None:
        raise LmmsError(f"{source}: no <head> or <song>; is it an LMMS project?")
    numerator = _int(_model_value(head, "timesig_numerator"), 4, source)
    denominator = _int(_model_value(head, "timesig_denominator"), 4, source)
    if not (1 <= numerator <= 16 and denominator in (1, 2, 4, 8, 16, 32)):
        raise LmmsError(f"{source}: unsupported time signature {numerator}/{denominator}")
    bpm_text = _model_value(head, "bpm")
    bpm = _float(bpm_text, 140.0, source)
    if not 10 <= bpm <= 999:
        raise LmmsError(f"{source}: tempo {bpm} BPM is out of range")
    tempo_id = _model_id(head, "bpm")
    points = _tempo_points(song, tempo_id, bpm, source)
    container = song.find("trackcontainer")
    tracks = [] if container is None else container.findall("track")
    spans, notes = _voice_spans(tracks)
    ticks_per_bar = TICKS_PER_WHOLE * numerator / denominator
    end_tick_raw = max((end for _, _, end in spans), default=0)
    if end_tick_raw <= 0:
        raise LmmsError(f"{source}: no clip sounds (empty or all muted)")
    n_bars = int(np.ceil(end_tick_raw / ticks_per_bar - 1e-9))
    return LmmsProject(
        path=source, tempo=points, beats_per_bar=numerator, beat_unit=denominator,
        end_tick=round(n_bars * ticks_per_bar),
        bar_voices=bar_voice_sets(spans, n_bars, ticks_per_bar), min_bars=min_bars,
        notes=tuple(notes), creator_version=root.get("creatorversion", ""),
        title=Path(source).stem.split("-", 1)[-1],
        artist=Path(source).stem.split("-", 1)[0] if "-" in Path(source).stem else "",
    )


def _model_value(head: Element, name: str) -> str | None:
    """A head model stored as an attribute or (when automated) as ``<name value=…/>``."""
    if name in head.attrib:
        return head.get(name)
    child = head.find(name)
    return None if child is None else child.get("value")


def _model_id(head: Element, name: str) -> str | None:
    child = head.find(name)
    return None if child is None else child.get("id")


def _float(text: str | None, default: float, source: str) -> float:
    if text is None:
        return default
    try:
        return float(text)
    except ValueError as error:
        raise LmmsError(f"{source}: {text!r} is not a number") from error


def _int(text: str | None, default: int, source: str) -> int:
    return round(_float(text, default, source))


def _tempo_points(song: Element, tempo_id: str | None, bpm: float, source: str
                  ) -> tuple[TempoPoint, ...]:
    points = [TempoPoint(0, bpm)]
    if tempo_id is None:
        return tuple(points)
    automated: list[TempoPoint] = []
    for pattern in (p for name in _AUTOMATION_CLIPS for p in song.iter(name)):
        if pattern.get("mute", "0") == "1":
            continue
        if not any(obj.get("id") == tempo_id for obj in pattern.iter("object")):
            continue
        start = _int(pattern.get("pos"), 0, source)
        ramp = pattern.get("prog", "0") != "0"
        for time in pattern.iter("time"):
            value = _float(time.get("value"), bpm, source)
            if not 10 <= value <= 999:
                raise LmmsError(f"{source}: automated tempo {value} BPM is out of range")
            automated.append(TempoPoint(start + _int(time.get("pos"), 0, source), value, ramp))
    automated.sort(key=lambda p: p.tick)
    by_tick = {p.tick: p for p in [*points, *automated]}  # a point at tick 0 replaces head/@bpm
    ordered = [by_tick[t] for t in sorted(by_tick)]
    # The last point holds: nothing to ramp towards.
    if ordered[-1].ramp:
        ordered[-1] = TempoPoint(ordered[-1].tick, ordered[-1].bpm)
    return tuple(ordered)


def _tick_to_seconds(points: tuple[TempoPoint, ...], ticks: np.ndarray) -> np.ndarray:
    """Integrate 60 / (bpm * 48) s per tick over a piecewise constant or linear tempo."""
    out = np.zeros_like(ticks, dtype=float)
    elapsed = 0.0
    for index, point in enumerate(points):
        nxt = points[index + 1] if index + 1 < len(points) else None
        stop = nxt.tick if nxt is not None else np.inf
        inside = (ticks >= point.tick) & (ticks < stop)
        out[inside] = elapsed + _seconds_in(point, nxt, ticks[inside] - point.tick)
        if nxt is not None:
            elapsed += float(_seconds_in(point, nxt, np.array([nxt.tick - point.tick]))[0])
    return out


def _seconds_in(point: TempoPoint, nxt: TempoPoint | None, rel: np.ndarray) -> np.ndarray:
    """Seconds from ``point`` to ``rel`` ticks after it."""
    per_quarter = 60.0 / TICKS_PER_QUARTER
    if nxt is None or not point.ramp or nxt.bpm == point.bpm:
        return rel * per_quarter / point.bpm
    slope = (nxt.bpm - point.bpm) / (nxt.tick - point.tick)
    # ∫ dt / (b0 + s t) = ln((b0 + s t) / b0) / s
    return per_quarter * np.log((point.bpm + slope * rel) / point.bpm) / slope


# ---------------------------------------------------------------------------------------------
# Arrangement


def _tick(element: Element, name: str) -> int:
    try:
        return int(float(element.get(name, "0")))
    except ValueError:
        return 0


def _muted(element: Element) -> bool:
    return element.get("muted", "0") == "1"


def _note_extent(pattern: Element) -> tuple[int, int] | None:
    """First note start and last note end (ticks, relative to the clip); None without notes."""
    starts, ends = [], []
    for note in pattern.iter("note"):
        pos, length = _tick(note, "pos"), _tick(note, "len")
        starts.append(pos)
        ends.append(pos + (length if length > 0 else _STEP_TICKS))
    if not starts:
        return None
    return min(starts), max(ends)


def _voice_spans(tracks: list[Element]) -> tuple[list[tuple[str, int, int]], list[str]]:
    """``(voice, start tick, end tick)`` for every sounding clip; see the section rule."""
    solo = any(t.get("solo", "0") == "1" for t in tracks)
    bb_editor = next((_bb_editor_of(t) for t in tracks
                      if t.get("type") == _BB and _bb_editor_of(t) is not None), None)
    spans: list[tuple[str, int, int]] = []
    notes: list[str] = []
    bb_index = -1
    for index, track in enumerate(tracks):
        kind = track.get("type")
        if kind == _BB:
            bb_index += 1
        if _muted(track) or (solo and track.get("solo", "0") != "1"):
            continue
        name = f"{index}:{track.get('name', '')}"
        if kind == _INSTRUMENT:
            for pattern in _all(track, _NOTE_CLIPS):
                extent = _note_extent(pattern)
                if _muted(pattern) or extent is None:
                    continue
                pos, length = _tick(pattern, "pos"), _tick(pattern, "len")
                start, end = pos + extent[0], pos + min(extent[1], max(length, extent[1]))
                spans.append((name, start, end))
        elif kind == _SAMPLE:
            for clip in _all(track, _SAMPLE_CLIPS):
                if _muted(clip) or not (clip.get("src") or clip.get("data")):
                    continue
                pos, length = _tick(clip, "pos"), _tick(clip, "len")
                if length > 0:
                    spans.append((name, pos, pos + length))
        elif kind == _BB:
            inner = _bb_column_voices(bb_editor, bb_index)
            if not inner:
                notes.append(f"B+B track {name} has no notes in its column {bb_index}")
            for clip in _all(track, _BB_CLIPS):
                pos, length = _tick(clip, "pos"), _tick(clip, "len")
                if _muted(clip) or length <= 0:
                    continue
                spans.extend((voice, pos, pos + length) for voice in inner)
    return spans, notes


def _bb_column_voices(editor: Element | None, column: int) -> list[str]:
    """B+B editor instruments that have notes in ``column``."""
    if editor is None:
        return []
    voices = []
    for inner_index, inner in enumerate(editor.findall("track")):
        if _muted(inner):
            continue
        patterns = _all(inner, _NOTE_CLIPS)
        # Column n is the pattern at pos n * 192 (LMMS 1.x), else the n-th pattern (0.x files).
        at_pos = [p for p in patterns if _tick(p, "pos") == column * TICKS_PER_WHOLE]
        chosen = at_pos or (patterns[column:column + 1] if len(patterns) > column else [])
        if any(not _muted(p) and _note_extent(p) is not None for p in chosen):
            voices.append(f"B+B/{inner_index}:{inner.get('name', '')}")
    return voices


def bar_voice_sets(spans: list[tuple[str, int, int]], n_bars: int, ticks_per_bar: float
                   ) -> tuple[frozenset[str], ...]:
    """The voices sounding in each bar (a span that overlaps a bar at all sounds in it).

    >>> [sorted(s) for s in bar_voice_sets([("a", 0, 192), ("b", 100, 400)], 3, 192)]
    [['a', 'b'], ['b'], ['b']]
    """
    bars: list[set[str]] = [set() for _ in range(n_bars)]
    for voice, start, end in spans:
        first = int(start // ticks_per_bar)
        last = int(np.ceil(end / ticks_per_bar - 1e-9))
        for bar in range(max(first, 0), min(last, n_bars)):
            bars[bar].add(voice)
    return tuple(frozenset(s) for s in bars)


def _runs(values: np.ndarray) -> list[tuple[int, int, bool]]:
    """``(start, stop, value)`` of each run of equal booleans."""
    edges = [0, *(np.flatnonzero(np.diff(values.astype(int))) + 1).tolist(), len(values)]
    return [(a, b, bool(values[a])) for a, b in pairwise(edges)]


def smooth_voices(bar_voices: tuple[frozenset[str], ...] | list[frozenset[str]],
                  min_bars: int = MIN_SECTION_BARS) -> tuple[frozenset[str], ...]:
    """Per voice: fill inner gaps shorter than ``min_bars``, then drop runs shorter than it.

    >>> bars = [frozenset("ac"), frozenset("a"), frozenset("ab"), *[frozenset("ab")] * 5]
    >>> [''.join(sorted(b)) for b in smooth_voices(bars, 2)]
    ['a', 'a', 'ab', 'ab', 'ab', 'ab', 'ab', 'ab']
    """
    voices = sorted(set().union(*bar_voices)) if bar_voices else []
    kept: list[set[str]] = [set() for _ in bar_voices]
    for voice in voices:
        active = np.array([voice in bar for bar in bar_voices])
        for start, stop, on in _runs(active):
            if not on and start > 0 and stop < len(active) and stop - start < min_bars:
                active[start:stop] = True
        for start, stop, on in _runs(active):
            if on and stop - start < min_bars:
                active[start:stop] = False
        for bar in np.flatnonzero(active):
            kept[bar].add(voice)
    return tuple(frozenset(s) for s in kept)


def section_starts(bar_voices: tuple[frozenset[str], ...] | list[frozenset[str]],
                   min_bars: int = MIN_SECTION_BARS) -> list[int]:
    """Bars where a section starts: the set of voices changes, runs < ``min_bars`` merged
    into the run before (a fill or a one-bar break is not a section). Always starts with 0.

    >>> a, b = frozenset("a"), frozenset("ab")
    >>> section_starts([a] * 8 + [b] * 8)
    [0, 8]
    >>> section_starts([a] * 7 + [b] + [a] * 8)   # a one-bar fill
    [0]
    """
    if not bar_voices:
        return [0]
    runs: list[list[int]] = []  # [start bar, length]
    for bar, voices in enumerate(bar_voices):
        if bar and voices == bar_voices[bar - 1]:
            runs[-1][1] += 1
        else:
            runs.append([bar, 1])
    kept: list[list] = []  # [start, length, voices]
    for start, length in runs:
        voices = bar_voices[start]
        if kept and (length < min_bars or voices == kept[-1][2]):
            kept[-1][1] += length
        else:
            kept.append([start, length, voices])
    return [start for start, _, _ in kept]
