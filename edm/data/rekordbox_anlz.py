"""Rekordbox's analysis files (``ANLZ0000.DAT`` / ``.EXT``) as edm labels, read with pyrekordbox.

What is taken from them
-----------------------
- ``PQTZ`` (beat grid): every beat's time, number in the bar and tempo. It becomes a grid of
  :class:`~edm.data.schema.TempoSegment`; a new segment starts wherever a beat is more than
  :data:`BEAT_TOLERANCE_S` from where the running segment puts it, so the grid of a
  live-played track (Rekordbox 6's dynamic beat grid: a tempo per beat) survives beat by beat.
- ``PCO2`` (EXT) or, when that has none, ``PCOB`` (DAT) (cues): memory cues, hot cues
  (slot = hot cue − 1), loops, with the comment as name and the hot cue's RGB colour (a
  memory cue's colour is an index into a palette no format notes give: left unset).
- ``PSSI`` (EXT, "phrase analysis", Rekordbox 6/7): the phrases, which become
  :class:`~edm.data.schema.Section` objects from one phrase's first beat to the next's (the
  last one to ``end_beat``). Rekordbox's phrase kinds depend on the track's *mood*; the table
  below is from pyrekordbox's format notes (after Deep Symmetry's analysis). The kind is mapped
  onto edm's vocabulary (:data:`edm.heads.targets.SECTION_LABELS`) where it has an EDM meaning;
  the original label (e.g. "Up 2", "Verse 3") is always kept.

==== ============ ============ =============== ==========================
kind low          mid          high            edm label
==== ============ ============ =============== ==========================
1    Intro        Intro        Intro 1/2       intro
2    Verse 1      Verse 1      Up 1/2/3        — (high: buildup)
3    Verse 1      Verse 2      Down            — (high: breakdown)
4    Verse 1      Verse 3
5    Verse 2      Verse 4      Chorus 1/2      — (high: drop)
6    Verse 2      Verse 5      Outro 1/2       — (high: outro)
7    Verse 2      Verse 6
8    Bridge       Bridge                       breakdown
9    Chorus       Chorus                       drop
10   Outro        Outro                        outro
==== ============ ============ =============== ==========================

"High" is the mood Rekordbox gives club tracks, and its Up / Down / Chorus are build-up,
breakdown and drop; a verse has no EDM counterpart and stays unlabelled (``None``).

pyrekordbox undoes the XOR mask Rekordbox 6 puts on exported ``PSSI`` tags.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edm.data.schema import Cue, Section, TempoSegment

#: A beat further than this from the running tempo segment starts a new segment.
BEAT_TOLERANCE_S = 0.002

MOODS = {1: "high", 2: "mid", 3: "low"}
_LOW_MID = {1: "Intro", 8: "Bridge", 9: "Chorus", 10: "Outro"}
_LOW_VERSES = {2: "Verse 1", 3: "Verse 1", 4: "Verse 1", 5: "Verse 2", 6: "Verse 2",
               7: "Verse 2"}
_MID_VERSES = {k: f"Verse {k - 1}" for k in range(2, 8)}
_EDM_LABEL = {
    "high": {"Intro": "intro", "Up": "buildup", "Down": "breakdown", "Chorus": "drop",
             "Outro": "outro"},
    "mid": {"Intro": "intro", "Bridge": "breakdown", "Chorus": "drop", "Outro": "outro"},
    "low": {"Intro": "intro", "Bridge": "breakdown", "Chorus": "drop", "Outro": "outro"},
}


class AnlzError(ValueError):
    """An analysis file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Phrase:
    """One ``PSSI`` entry: where it starts (1-based beat) and what Rekordbox calls it."""

    beat: int
    kind: int
    label: str  # Rekordbox's label, e.g. "Up 2" or "Verse 3"
    section_label: str | None  # edm's vocabulary, or None


@dataclass
class AnlzAnalysis:
    """What one track's DAT (and EXT, when present) hold for edm."""

    path: Path
    beat_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    beat_numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    beat_bpms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cues: list[Cue] = field(default_factory=list)
    cue_tag: str = ""
    phrases: list[Phrase] = field(default_factory=list)
    mood: str | None = None
    end_beat: int | None = None

    def grid(self) -> list[TempoSegment]:
        return grid_from_beats(self.beat_times, self.beat_numbers, self.beat_bpms)

    def sections(self, duration_s: float | None = None) -> list[Section]:
        """The phrases as sections (see the module docstring); [] without phrases or beats."""
        times = self.beat_times
        if not self.phrases or not len(times):
            return []

        def time_of(beat: int) -> float | None:
            if 1 <= beat <= len(times):
                return float(times[beat - 1])
            return None

        ends = [p.beat for p in self.phrases[1:]] + [self.end_beat or len(times) + 1]
        sections = []
        for phrase, end_beat in zip(self.phrases, ends, strict=True):
            start = time_of(phrase.beat)
            end = time_of(end_beat)
            if end is None:  # past the last beat: the track's end, or one beat on
                end = duration_s if duration_s else float(times[-1]) + float(
                    np.median(np.diff(times))) if len(times) > 1 else None
            if start is None or end is None or end <= start:
                continue
            sections.append(Section(start_s=round(start, 3), end_s=round(end, 3),
                                    label=phrase.section_label))
        return sections


def phrase_label(mood: str, kind: int, k1: int = 0, k2: int = 0, k3: int = 0) -> str:
    """Rekordbox's label of a phrase kind in a mood.

    >>> [phrase_label("high", 2, k2=0, k3=1), phrase_label("mid", 4), phrase_label("low", 9)]
    ['Up 2', 'Verse 3', 'Chorus']
    """
    if mood == "high":
        if kind == 1:
            return "Intro 1" if k1 == 1 else "Intro 2"
        if kind == 2:
            return {(0, 0): "Up 1", (0, 1): "Up 2", (1, 0): "Up 3"}.get((k2, k3), "Up")
        if kind == 3:
            return "Down"
        if kind == 5:
            return "Chorus 2" if k1 == 1 else "Chorus 1"
        if kind == 6:
            return "Outro 1" if k1 == 1 else "Outro 2"
    else:
        verses = _MID_VERSES if mood == "mid" else _LOW_VERSES
        if kind in _LOW_MID:
            return _LOW_MID[kind]
        if kind in verses:
            return verses[kind]
    return f"kind {kind}"


def section_label(mood: str, label: str) -> str | None:
    """edm's label for a Rekordbox phrase label ("Up 2" → "buildup"), or None."""
    return _EDM_LABEL.get(mood, {}).get(label.split(" ")[0])


def grid_from_beats(
    times: np.ndarray, numbers: np.ndarray, bpms: np.ndarray,
    tolerance_s: float = BEAT_TOLERANCE_S,
) -> list[TempoSegment]:
    """Tempo segments that put a beat within ``tolerance_s`` of every given beat.

    >>> times = np.array([0.5, 1.0, 1.5, 2.0, 2.4, 2.8, 3.2])
    >>> [(s.start_s, s.bpm, s.beat_in_bar) for s in grid_from_beats(
    ...     times, np.array([1, 2, 3, 4, 1, 2, 3]), np.array([120] * 4 + [150] * 3))]
    [(0.5, 120.0, 1), (2.4, 150.0, 1)]
    """
    segments: list[TempoSegment] = []
    start = 0
    n = len(times)
    while start < n:
        bpm = float(bpms[start]) if bpms[start] > 0 else (
            60.0 / float(times[start + 1] - times[start]) if start + 1 < n else 120.0)
        period = 60.0 / bpm
        stop = start + 1
        while stop < n and abs(times[start] + (stop - start) * period - times[stop]) <= (
                tolerance_s):
            stop += 1
        if stop == start + 1 and start + 1 < n:
            # The tempo field does not fit the next beat: use the interval itself.
            bpm = 60.0 / float(times[start + 1] - times[start])
            period = 60.0 / bpm
            while stop < n and abs(times[start] + (stop - start) * period - times[stop]) <= (
                    tolerance_s):
                stop += 1
        per_bar = 4
        beat = int(numbers[start]) if 1 <= int(numbers[start]) <= per_bar else 1
        segments.append(TempoSegment(start_s=round(float(times[start]), 3),
                                     bpm=round(bpm, 3), beats_per_bar=per_bar, beat_in_bar=beat))
        start = stop
    return segments


def _quiet_pyrekordbox() -> None:
    """Keep pyrekordbox's warnings off the terminal (e.g. "OS linux not supported", logged by
    its config module while it is imported; importing it resets its own logger's level)."""
    logging.getLogger("pyrekordbox.config").setLevel(logging.ERROR)
    import pyrekordbox  # noqa: F401  (sets up its logger)

    logging.getLogger("pyrekordbox").setLevel(logging.ERROR)


def _cues(anlz: object, tag: str) -> list[Cue]:
    cues: list[Cue] = []
    for item in anlz.getall_tags(tag):  # type: ignore[attr-defined]
        for entry in item.content.entries:
            start = entry.time / 1000.0
            end = None
            # PCOB's type is a construct enum ("single"/"loop"), PCO2's a plain number.
            loop_type = int(getattr(entry.type, "intvalue", entry.type))
            if loop_type == 2 and entry.loop_time not in (-1, 0xFFFFFFFF):
                end = entry.loop_time / 1000.0 if entry.loop_time > entry.time else None
            hot = int(entry.hot_cue)
            color = None
            name = ""
            if tag == "PCO2":
                name = str(entry.comment or "")
                if hot and entry.color_code:
                    red, green, blue = entry.color_red, entry.color_green, entry.color_blue
                    color = f"#{red:02X}{green:02X}{blue:02X}"
            cues.append(Cue(start_s=start, end_s=end, kind="hot" if hot else "memory",
                            slot=hot - 1 if hot else None, name=name, color=color))
    return cues


def read_anlz(dat_path: str | Path) -> AnlzAnalysis:
    """Beat grid, cues and phrases of one track from its DAT file and the EXT beside it.

    Raises :class:`AnlzError` naming the file when the DAT cannot be parsed; a missing or
    broken EXT only means no phrases (and DAT cues).
    """
    _quiet_pyrekordbox()
    from pyrekordbox import AnlzFile

    dat_path = Path(dat_path)
    result = AnlzAnalysis(path=dat_path)
    try:
        dat = AnlzFile.parse_file(dat_path)
    except Exception as error:  # construct raises many kinds; all mean "not readable"
        raise AnlzError(f"{dat_path}: not a readable Rekordbox analysis file "
                        f"({type(error).__name__}: {str(error)[:80]})") from error
    if "PQTZ" in dat.tag_types:
        numbers, bpms, times = dat.get("beat_grid")
        result.beat_times = np.asarray(times, dtype=float)
        result.beat_numbers = np.asarray(numbers, dtype=int)
        result.beat_bpms = np.asarray(bpms, dtype=float)
    ext = None
    ext_path = dat_path.with_suffix(".EXT")
    if ext_path.is_file():
        try:
            ext = AnlzFile.parse_file(ext_path)
        except Exception:  # an unreadable EXT costs its phrases, not the track
            ext = None
    has_extended = ext is not None and "PCO2" in ext.tag_types
    extended = _cues(ext, "PCO2") if has_extended else []
    standard = _cues(dat, "PCOB") if "PCOB" in dat.tag_types else []
    if extended or (has_extended and not standard):
        result.cues, result.cue_tag = extended, "PCO2"
    elif "PCOB" in dat.tag_types:  # no extended list, or an empty one: the DAT's own
        result.cues, result.cue_tag = standard, "PCOB"
    if ext is not None and "PSSI" in ext.tag_types:
        content = ext.get_tag("PSSI").content
        mood = MOODS.get(int(content.mood))
        if mood is not None:
            result.mood, result.end_beat = mood, int(content.end_beat)
            for entry in content.entries:
                label = phrase_label(mood, int(entry.kind), entry.k1, entry.k2, entry.k3)
                result.phrases.append(Phrase(beat=int(entry.beat), kind=int(entry.kind),
                                             label=label,
                                             section_label=section_label(mood, label)))
    return result
