"""Rhythm-game charts as hand-timed beat grids: osu! ``.osu``, StepMania/Etterna ``.sm`` /
``.ssc`` and Quaver ``.qua``.

Chart makers time their grid against the released audio by ear and by waveform, tempo
changes included, because players feel a 10 ms error; that makes a chart a Tier-1 beat
annotation of its song. Charts do not mark sections; osu!'s *kiai* spans (the chorus/drop
highlight) become memory cues named ``kiai`` / ``kiai end``, weak section marks only.

Timing conventions
------------------
- **osu!** ``[TimingPoints]``: ``time(ms),beatLength(ms),meter,…,uninherited,effects``.
  Uninherited ("red") points set the tempo and restart the bar (their time is a downbeat);
  inherited ones (negative beatLength) only change scroll speed. Effects bit 0 is kiai.
  Files before format v5 are played 24 ms later than written (osu!'s
  ``EARLY_VERSION_TIMING_OFFSET``); the reader adds it. ``AudioLeadIn`` is silence the game
  plays before the audio and does not move the grid.
- **StepMania / Etterna** (``.sm``, ``.ssc``): beat 0 is at ``-#OFFSET`` seconds; ``#BPMS``
  ``beat=bpm`` pairs; ``#STOPS`` (``#FREEZES``) ``beat=seconds`` pause after that beat,
  ``#DELAYS`` (``.ssc``) before it. Measures are 4 beats unless ``#TIMESIGNATURES``
  (``beat=num=den``) says otherwise. ``#WARPS`` are refused (the grid skips time).
  Charts from the ITG community are often synced 9 ms late ("ITG offset"); pass
  ``offset_s=-0.009`` to undo that.
- **Quaver** (``.qua``, YAML): ``TimingPoints`` of ``StartTime`` (ms), ``Bpm`` and
  ``Signature`` (beats per bar, or ``Quadruple``/``Triple``); each point restarts the bar.

All readers take ``offset_s``, added to every time, for a decoder's or chart family's
systematic lag (measure it against madmom; see ``benchmarks/bench_real.py``).

>>> chart = read_chart_text(
...     "[General]\\nAudioFilename: song.mp3\\n[TimingPoints]\\n500,500,4,2,0,100,1,0\\n",
...     "song.osu")
>>> chart.beats(3.0).tolist()
[0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from edm.data.exact_grid import grid_from_beats
from edm.data.schema import (
    Cue,
    Metadata,
    TempoSegment,
    Tier,
    TrackAnnotation,
    TrackIdentity,
)

CHART_SUFFIXES = (".osu", ".sm", ".ssc", ".qua")
#: osu! plays files older than format v5 this much later than written (ms).
OSU_EARLY_VERSION_OFFSET_MS = 24.0
#: Seconds after the last timing event counted when neither audio length nor notes say more.
_TAIL_S = 1.0


class ChartError(ValueError):
    """A chart that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class TimingPoint:
    """A tempo from ``time_s`` on; ``resets_bar``: that time is a downbeat (osu!, Quaver)."""

    time_s: float
    bpm: float
    beats_per_bar: int = 4
    resets_bar: bool = True


@dataclass(frozen=True)
class Chart:
    """A chart's grid as exact beat times (with bar numbers) and its metadata."""

    path: str
    format: str
    beat_times: np.ndarray
    beat_numbers: np.ndarray
    beats_per_bar: np.ndarray
    audio: str | None = None
    title: str = ""
    artist: str = ""
    kiai: tuple[tuple[float, float], ...] = ()
    last_event_s: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def _until(self, end_s: float) -> np.ndarray:
        return (self.beat_times >= 0) & (self.beat_times < end_s)

    def beats(self, end_s: float) -> np.ndarray:
        return self.beat_times[self._until(end_s)]

    def downbeats(self, end_s: float) -> np.ndarray:
        keep = self._until(end_s) & (self.beat_numbers == 1)
        return self.beat_times[keep]

    def grid(self, end_s: float) -> list[TempoSegment]:
        keep = self._until(end_s + 60.0)  # one beat past the end keeps the last period
        return grid_from_beats(self.beat_times[keep], self.beat_numbers[keep],
                               self.beats_per_bar[keep])

    def audio_path(self) -> Path | None:
        return None if not self.audio else Path(self.path).parent / self.audio

    def to_annotation(self, *, duration_s: float | None = None,
                      audio_path: str | None = None) -> TrackAnnotation:
        """A Tier-1 beat annotation; kiai spans as memory cues, no sections."""
        duration = duration_s if duration_s is not None else self.last_event_s + _TAIL_S
        cues = []
        for start, end in self.kiai:
            if 0 <= start < duration:
                cues.append(Cue(start_s=round(start, 6), name="kiai"))
            if 0 <= end < duration:
                cues.append(Cue(start_s=round(end, 6), name="kiai end"))
        grid = self.grid(duration)
        lengths = np.diff([s.start_s for s in grid] + [duration])
        main = grid[int(np.argmax(lengths))].bpm
        return TrackAnnotation(
            track=TrackIdentity(path=audio_path, duration_s=round(duration, 6),
                                title=self.title or Path(self.path).stem, artist=self.artist,
                                source_id=Path(self.path).name),
            grid=grid, cues=cues, bpm=round(main, 6),
            metadata=Metadata(tier=Tier.VERIFIED, confidence=0.9, source=f"chart-{self.format}",
                              provenance={"chart": self.path,
                                          "sections": "none (kiai cues are weak marks)"}),
        )


# ---------------------------------------------------------------------------------------------
# Beats from timing points


def beats_from_points(points: list[TimingPoint], end_s: float) -> tuple[np.ndarray, ...]:
    """Beat times, bar numbers and metre from bar-restarting timing points (osu!, Quaver).

    Each point's beats run until the next point; the first point's grid also runs back to
    0 s. Returns ``(times, numbers, beats_per_bar)``.
    """
    times, numbers, metres = [], [], []
    for index, point in enumerate(points):
        period = 60.0 / point.bpm
        stop = points[index + 1].time_s if index + 1 < len(points) else end_s
        first = -int(np.floor(point.time_s / period + 1e-9)) if index == 0 else 0
        # A beat within 1 ms of the next point belongs to that point.
        count = max(int(np.ceil((stop - point.time_s - 1e-3) / period)), 0)
        k = np.arange(first, count)
        times.append(point.time_s + k * period)
        numbers.append(k % point.beats_per_bar + 1)
        metres.append(np.full(len(k), point.beats_per_bar))
    return (np.concatenate(times), np.concatenate(numbers).astype(int),
            np.concatenate(metres).astype(int))


# ---------------------------------------------------------------------------------------------
# osu!


def _osu_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = "_version"
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        match = re.fullmatch(r"\[(\w+)\]", line)
        if match:
            current = match.group(1)
            sections.setdefault(current, [])
        else:
            sections.setdefault(current, []).append(line)
    return sections


def _key_values(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def read_osu(text: str, source: str, *, offset_s: float = 0.0) -> Chart:
    sections = _osu_sections(text)
    header = " ".join(sections.get("_version", []))
    version_match = re.search(r"osu file format v(\d+)", header)
    version = int(version_match.group(1)) if version_match else 14
    shift = offset_s + (OSU_EARLY_VERSION_OFFSET_MS / 1000 if version < 5 else 0.0)
    general = _key_values(sections.get("General", []))
    meta = _key_values(sections.get("Metadata", []))
    red: list[TimingPoint] = []
    kiai_changes: list[tuple[float, bool]] = []
    for number, line in enumerate(sections.get("TimingPoints", []), 1):
        fields = [f.strip() for f in line.split(",")]
        try:
            time_s = float(fields[0]) / 1000 + shift
            beat_length = float(fields[1])
            meter = int(fields[2]) if len(fields) > 2 and fields[2] else 4
            uninherited = fields[6] == "1" if len(fields) > 6 else beat_length > 0
            effects = int(fields[7]) if len(fields) > 7 else 0
        except (ValueError, IndexError) as error:
            raise ChartError(f"{source}: timing point {number} {line!r} is malformed") from error
        kiai_changes.append((time_s, bool(effects & 1)))
        if uninherited:
            if not beat_length > 0 or not 1 <= meter <= 16:
                raise ChartError(f"{source}: timing point {number} has beat length "
                                 f"{beat_length} ms and meter {meter}")
            red.append(TimingPoint(time_s, 60000.0 / beat_length, meter))
    if not red:
        raise ChartError(f"{source}: no uninherited timing point (no tempo)")
    red = _last_per_time(red)
    last_object = 0.0
    for line in sections.get("HitObjects", []):
        fields = line.split(",")
        try:
            end = float(fields[2])
            if len(fields) > 5 and int(fields[3]) & 8:  # a spinner ends at field 5
                end = float(fields[5])
            last_object = max(last_object, end / 1000 + shift)
        except (ValueError, IndexError):
            continue
    last = max(last_object, red[-1].time_s)
    return _chart_from_points(
        red, source, "osu", last, audio=general.get("AudioFilename"),
        title=meta.get("TitleUnicode") or meta.get("Title", ""),
        artist=meta.get("ArtistUnicode") or meta.get("Artist", ""),
        kiai=_kiai_spans(kiai_changes, last),
    )


def _last_per_time(points: list[TimingPoint]) -> list[TimingPoint]:
    """Sorted by time; where two points share a time, the later line wins (as in osu!)."""
    by_time: dict[float, TimingPoint] = {}
    for point in points:
        by_time[round(point.time_s, 6)] = point
    return [by_time[t] for t in sorted(by_time)]


def _kiai_spans(changes: list[tuple[float, bool]], end_s: float) -> tuple[tuple[float, float], ...]:
    spans, start = [], None
    for time_s, on in sorted(changes, key=lambda c: c[0]):
        if on and start is None:
            start = time_s
        elif not on and start is not None:
            if time_s > start:
                spans.append((start, time_s))
            start = None
    if start is not None and end_s > start:
        spans.append((start, end_s))
    return tuple(spans)


def _chart_from_points(points: list[TimingPoint], source: str, fmt: str, last_event_s: float,
                       **meta) -> Chart:
    end = last_event_s + 600.0  # generous; callers cut at the audio's end
    times, numbers, metres = beats_from_points(points, end)
    return Chart(path=source, format=fmt, beat_times=times, beat_numbers=numbers,
                 beats_per_bar=metres, last_event_s=last_event_s, **meta)


# ---------------------------------------------------------------------------------------------
# Quaver


def read_qua(text: str, source: str, *, offset_s: float = 0.0) -> Chart:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ChartError(f"{source}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ChartError(f"{source}: not a Quaver map (no mapping at the top)")
    points = []
    for number, raw in enumerate(data.get("TimingPoints") or [], 1):
        if not isinstance(raw, dict):
            continue
        try:
            bpm = float(raw["Bpm"])
            time_s = float(raw.get("StartTime", 0.0)) / 1000 + offset_s
        except (KeyError, TypeError, ValueError) as error:
            raise ChartError(f"{source}: timing point {number} has no usable Bpm/StartTime"
                             ) from error
        signature = raw.get("Signature", 4)
        metre = {"Quadruple": 4, "Triple": 3}.get(signature, signature)
        if not isinstance(metre, int) or not 1 <= metre <= 16 or not 0 < bpm <= 1000:
            raise ChartError(f"{source}: timing point {number}: bpm {bpm}, signature {signature}")
        points.append(TimingPoint(time_s, bpm, metre))
    if not points:
        raise ChartError(f"{source}: no TimingPoints")
    points = _last_per_time(points)
    last_object = 0.0
    for hit in data.get("HitObjects") or []:
        if isinstance(hit, dict):
            end = hit.get("EndTime") or hit.get("StartTime") or 0
            last_object = max(last_object, float(end) / 1000 + offset_s)
    return _chart_from_points(
        points, source, "quaver", max(last_object, points[-1].time_s),
        audio=data.get("AudioFile"), title=str(data.get("Title") or ""),
        artist=str(data.get("Artist") or ""),
    )


# ---------------------------------------------------------------------------------------------
# StepMania / Etterna


def _sm_tags(text: str) -> dict[str, str]:
    """Song-level ``#TAG:value;`` pairs (the first of each; per-chart timing is ignored)."""
    text = re.sub(r"//[^\n]*", "", text)
    tags: dict[str, str] = {}
    for match in re.finditer(r"#([A-Za-z0-9]+)\s*:([^;]*);", text):
        tags.setdefault(match.group(1).upper(), match.group(2).strip())
    return tags


def _pairs(value: str, source: str, tag: str, width: int = 2) -> list[list[float]]:
    out = []
    for item in value.replace("\n", "").split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split("=")
        try:
            out.append([float(p) for p in parts[:width]])
        except ValueError as error:
            raise ChartError(f"{source}: #{tag} entry {item!r} is not beat=value") from error
        if len(out[-1]) < width:
            raise ChartError(f"{source}: #{tag} entry {item!r} is not beat=value")
    return out


def read_sm(text: str, source: str, *, offset_s: float = 0.0) -> Chart:
    tags = _sm_tags(text)
    if "BPMS" not in tags:
        raise ChartError(f"{source}: no #BPMS")
    try:
        chart_offset = float(tags.get("OFFSET", "0") or 0)
    except ValueError as error:
        raise ChartError(f"{source}: #OFFSET {tags['OFFSET']!r} is not a number") from error
    bpms = sorted(_pairs(tags["BPMS"], source, "BPMS"))
    if not bpms or bpms[0][0] > 0 or any(b <= 0 for _, b in bpms):
        raise ChartError(f"{source}: #BPMS must start at beat 0 with positive tempos")
    stops = _pairs(tags.get("STOPS") or tags.get("FREEZES") or "", source, "STOPS")
    delays = _pairs(tags.get("DELAYS", ""), source, "DELAYS")
    if any(v > 0 for _, v in _pairs(tags.get("WARPS", ""), source, "WARPS")):
        raise ChartError(f"{source}: #WARPS are not supported (the grid skips time)")
    if any(b < 0 for b, _ in bpms) or any(s < 0 for _, s in stops):
        raise ChartError(f"{source}: negative beats or stops are not supported")
    signatures = sorted(_pairs(tags.get("TIMESIGNATURES", ""), source, "TIMESIGNATURES", 3))
    notes_beats = _sm_last_note_beat(text)
    last_beat = max(notes_beats, bpms[-1][0], *(b for b, _ in stops), 0.0)
    n_beats = int(np.ceil(last_beat)) + 1200  # generous; callers cut at the audio's end
    beats = np.arange(n_beats, dtype=float)
    times = _sm_beat_times(beats, bpms, stops, delays) - chart_offset + offset_s
    numbers, metres = _sm_bars(n_beats, signatures)
    last_event = float(_sm_beat_times(np.array([last_beat]), bpms, stops, delays)[0]
                       - chart_offset + offset_s)
    audio = tags.get("MUSIC") or None
    return Chart(path=source, format=Path(source).suffix.lstrip("."), beat_times=times,
                 beat_numbers=numbers, beats_per_bar=metres, audio=audio,
                 title=tags.get("TITLE", ""), artist=tags.get("ARTIST", ""),
                 last_event_s=last_event)


def _sm_beat_times(beats: np.ndarray, bpms: list[list[float]], stops: list[list[float]],
                   delays: list[list[float]]) -> np.ndarray:
    """Seconds from beat 0: tempo integral, plus stops at earlier beats and delays at
    earlier-or-equal beats."""
    starts = np.array([b for b, _ in bpms])
    tempos = np.array([t for _, t in bpms])
    seg_seconds = np.diff(starts) * 60.0 / tempos[:-1]
    elapsed = np.concatenate([[0.0], np.cumsum(seg_seconds)])
    index = np.searchsorted(starts, beats, side="right") - 1
    times = elapsed[index] + (beats - starts[index]) * 60.0 / tempos[index]
    for beat, seconds in stops:
        times = times + np.where(beats > beat + 1e-6, seconds, 0.0)
    for beat, seconds in delays:
        times = times + np.where(beats >= beat - 1e-6, seconds, 0.0)
    return times


def _sm_bars(n_beats: int, signatures: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Bar numbers (1 = downbeat) and metre per integer beat; a signature restarts the bar."""
    changes = dict([(0, 4)] + [(round(b), int(n)) for b, n, _ in signatures if n >= 1])
    starts = sorted(changes)
    numbers = np.zeros(n_beats, dtype=int)
    metres = np.zeros(n_beats, dtype=int)
    for start, stop in zip(starts, [*starts[1:], n_beats], strict=True):
        numbers[start:stop] = np.arange(stop - start) % changes[start] + 1
        metres[start:stop] = changes[start]
    return numbers, metres


def _sm_last_note_beat(text: str) -> float:
    """Beat of the last measure that has a note in any chart (4 beats per measure)."""
    last = 0.0
    for block in re.finditer(r"#NOTES2?\s*:([^;]*);", text):
        measures = block.group(1).split(":")[-1].split(",")
        for index, measure in enumerate(measures):
            if re.search(r"[1-9A-Za-z]", re.sub(r"//[^\n]*", "", measure)):
                last = max(last, 4.0 * (index + 1))
    return last


# ---------------------------------------------------------------------------------------------
# Entry points

_READERS = {".osu": read_osu, ".sm": read_sm, ".ssc": read_sm, ".qua": read_qua}


def read_chart_text(text: str, source: str, *, offset_s: float = 0.0) -> Chart:
    """Parse chart text; the format follows ``source``'s suffix."""
    reader = _READERS.get(Path(source).suffix.lower())
    if reader is None:
        raise ChartError(f"{source}: not a chart (expected one of {', '.join(CHART_SUFFIXES)})")
    return reader(text, source, offset_s=offset_s)


def read_chart(path: str | Path, *, offset_s: float = 0.0) -> Chart:
    """Read a chart file. Raises :class:`ChartError` naming the file and the problem."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as error:
        raise ChartError(f"{path}: cannot read ({error.strerror})") from error
    return read_chart_text(text, str(path), offset_s=offset_s)
