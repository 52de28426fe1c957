"""The score: every note and drum hit of a track, in beats, derived from its :class:`Arrangement`.

A :class:`Part` holds one layer's events as arrays (beat position, velocity, pitches, length in
beats). Timing is exact: no humanised drift, so the beats in the truth are where the hits are.
Fills and snare rolls sit at phrase ends and in build-ups, crashes on drop phrases, and some
tracks leave a beat or two of silence before each drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edm.synth.arrangement import BEATS_PER_BAR, Arrangement, SectionPlan

#: Natural minor scale, semitones above the tonic.
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)

#: Layers whose hits are drums (counted for section density).
DRUM_LAYERS = ("kick", "backbeat", "hats", "open_hat", "perc", "roll", "fill", "crash")


@dataclass
class Part:
    """Events of one layer; ``pitches`` holds a tuple of MIDI notes per event (empty for drums)."""

    name: str
    beats: list[float] = field(default_factory=list)
    velocity: list[float] = field(default_factory=list)
    pitches: list[tuple[int, ...]] = field(default_factory=list)
    length_beats: list[float] = field(default_factory=list)

    def add(self, beat: float, velocity: float = 1.0, pitches: tuple[int, ...] = (),
            length_beats: float = 0.0) -> None:
        self.beats.append(beat)
        self.velocity.append(velocity)
        self.pitches.append(pitches)
        self.length_beats.append(length_beats)

    def __len__(self) -> int:
        return len(self.beats)


def scale_note(root: int, degree: int) -> int:
    """MIDI note of a (possibly negative or > 6) scale degree of the minor scale on ``root``."""
    octave, step = divmod(degree, len(MINOR_SCALE))
    return root + 12 * octave + MINOR_SCALE[step]


def triad(root: int, degree: int) -> tuple[int, int, int]:
    return (scale_note(root, degree), scale_note(root, degree + 2), scale_note(root, degree + 4))


@dataclass(frozen=True)
class _Motifs:
    """Per-track rhythmic/melodic ideas, drawn once and repeated (as real tracks do)."""

    perc: tuple[float, ...]
    stabs: tuple[float, ...]
    lead: tuple[tuple[float, int, float], ...]  # (beat in 2 bars, degree offset, length)
    arp_step: float
    hat_accent: tuple[float, float, float, float]


def _draw_motifs(rng: np.random.Generator) -> _Motifs:
    sixteenths = np.arange(16) * 0.25
    perc = tuple(sorted(rng.choice(sixteenths[sixteenths % 1 != 0], 3, replace=False)))
    stabs = ((0.5, 1.5, 2.5, 3.5), (0.0, 0.75, 1.5, 2.5, 3.25), (0.0, 1.5, 3.0),
             (0.75, 1.75, 2.75, 3.75))[rng.integers(4)]
    lead = []
    beat = 0.0
    while beat < 8.0:
        length = float(rng.choice([0.5, 0.5, 1.0, 0.25, 1.5]))
        if rng.random() < 0.8:
            lead.append((beat, int(rng.integers(-2, 6)), min(length, 8.0 - beat)))
        beat += length
    # Hats: the off-beat 8th is the loudest, as in most four-to-the-floor records.
    accent = (rng.uniform(0.55, 0.75), rng.uniform(0.25, 0.4), 1.0, rng.uniform(0.25, 0.4))
    return _Motifs(perc, stabs, tuple(lead), float(rng.choice([0.25, 0.5])), accent)


def write_score(arrangement: Arrangement, rng: np.random.Generator) -> dict[str, Part]:
    """Every event of every layer, keyed by layer name."""
    motifs = _draw_motifs(rng)
    parts: dict[str, Part] = {}
    for section in arrangement.sections:
        for bar in range(section.start_bar, section.end_bar):
            _write_bar(arrangement, section, bar, motifs, parts, rng)
        _write_section_events(arrangement, section, parts)
    # The final hit: kick and crash on the downbeat after the last bar.
    end = float(arrangement.n_beats)
    _part(parts, "kick").add(end, 1.0)
    _part(parts, "crash").add(end, 0.8)
    if arrangement.drop_gap_beats:
        _cut_drop_gaps(arrangement, parts)
    return parts


def _cut_drop_gaps(arrangement: Arrangement, parts: dict[str, Part]) -> None:
    """Silence the last beat(s) before each drop, the break producers leave before the hit."""
    gaps = [(float(s.start_bar * BEATS_PER_BAR) - arrangement.drop_gap_beats,
             float(s.start_bar * BEATS_PER_BAR))
            for s in arrangement.sections if s.label == "drop"]
    for name, part in parts.items():
        if name == "riser":
            continue
        keep = [i for i, beat in enumerate(part.beats)
                if not any(start <= beat < end for start, end in gaps)]
        for attribute in ("beats", "velocity", "pitches", "length_beats"):
            values = getattr(part, attribute)
            setattr(part, attribute, [values[i] for i in keep])


def _part(parts: dict[str, Part], name: str) -> Part:
    if name not in parts:
        parts[name] = Part(name)
    return parts[name]


def _write_section_events(arrangement: Arrangement, section: SectionPlan,
                          parts: dict[str, Part]) -> None:
    first = float(section.start_bar * BEATS_PER_BAR)
    n_beats = section.n_bars * BEATS_PER_BAR
    if "riser" in section.layers:
        _part(parts, "riser").add(first, 1.0, (), float(n_beats))
    if "crash" in section.layers:
        # A crash on the drop, a softer one on each later 8-bar phrase of it.
        for bar in range(0, section.n_bars, 8):
            _part(parts, "crash").add(first + bar * BEATS_PER_BAR, 1.0 if bar == 0 else 0.6)
    if "roll" in section.layers:
        # A snare roll that speeds up over the build: quarters, 8ths, 16ths, then 32nds.
        roll = _part(parts, "roll")
        steps = (1.0, 0.5, 0.25, 0.125)
        quarter = n_beats / 4
        for index, step in enumerate(steps):
            start = first + index * quarter
            for k in range(round(quarter / step)):
                beat = start + k * step
                roll.add(beat, 0.35 + 0.65 * (beat - first) / n_beats)


def _write_bar(arrangement: Arrangement, section: SectionPlan, bar: int, motifs: _Motifs,
               parts: dict[str, Part], rng: np.random.Generator) -> None:
    genre = arrangement.genre
    layers = section.layers
    b0 = float(bar * BEATS_PER_BAR)
    in_section = bar - section.start_bar
    drumless = in_section < section.drumless_bars
    phrase_end = (in_section + 1) % 8 == 0 or bar == section.end_bar - 1
    degree = arrangement.chord_at_bar(bar)
    root = arrangement.key_root

    def swung(position: float) -> float:
        if genre.swing and (position * 4) % 2 == 1:
            return position + genre.swing * 0.25
        return position

    # Half time: the kick on the bar's first beat only, the snare on its third.
    kicks = (0.0,) if section.halftime else genre.kick
    backbeats = (2.0,) if section.halftime else genre.backbeat
    if "kick" in layers and not drumless:
        # DJ-friendly intros/outros sit a little under the drop's level.
        level = 1.0 if section.label == "drop" else 0.8
        for position in kicks:
            _part(parts, "kick").add(b0 + position, level)
    if "backbeat" in layers and not drumless:
        for position in backbeats:
            if not (phrase_end and "fill" in layers and position >= 3):
                _part(parts, "backbeat").add(b0 + position, 1.0)
    if "hats" in layers:
        for position in genre.hats:
            accent = motifs.hat_accent[round((position % 1) * 4) % 4]
            _part(parts, "hats").add(b0 + swung(position), accent * rng.uniform(0.9, 1.0))
    if "open_hat" in layers and not drumless:
        for position in genre.open_hat:
            _part(parts, "open_hat").add(b0 + position, 0.9)
    if "perc" in layers and not drumless:
        for position in motifs.perc:
            _part(parts, "perc").add(b0 + swung(position), rng.uniform(0.6, 1.0))
    if "fill" in layers and phrase_end and not drumless:
        for k in range(4):  # 16th snare fill over the last beat of the phrase
            _part(parts, "fill").add(b0 + 3.0 + 0.25 * k, 0.6 + 0.1 * k)

    bass_note = scale_note(root, degree)
    if "sub" in layers:
        _part(parts, "sub").add(b0, 1.0, (bass_note,), float(BEATS_PER_BAR))
    if "bass" in layers:
        # Intros and outros carry a thinner bass than drops (DJs mix them under another track).
        level = 1.0 if section.label == "drop" else 0.45
        _write_bass(_part(parts, "bass"), genre.bass_style, b0, bass_note, level)
    chord = tuple(n + 36 for n in triad(root, degree))
    if "chords" in layers:
        for position in motifs.stabs:
            _part(parts, "chords").add(b0 + position, 1.0, chord, 0.45)
    if "pad" in layers and (bar % arrangement.bars_per_chord == 0 or bar == section.start_bar):
        remaining = arrangement.bars_per_chord - bar % arrangement.bars_per_chord
        length = min(remaining, section.end_bar - bar) * BEATS_PER_BAR
        _part(parts, "pad").add(b0, 1.0, chord, float(length))
    if "lead" in layers:
        offset = 4.0 * (bar % 2)
        for beat, step, length in motifs.lead:
            if offset <= beat < offset + 4.0:
                note = scale_note(root + 48, degree + step)
                _part(parts, "lead").add(b0 + beat - offset, 0.9, (note,), length * 0.9)
    if "arp" in layers:
        steps = int(BEATS_PER_BAR / motifs.arp_step)
        for k in range(steps):
            note = chord[k % 3] + 12 * (1 + (k // 3) % 2)
            _part(parts, "arp").add(b0 + k * motifs.arp_step, 1.0 if k % 4 == 0 else 0.7,
                                    (note,), motifs.arp_step)


def _write_bass(part: Part, style: str, b0: float, note: int, level: float) -> None:
    if style == "offbeat":
        for beat in range(BEATS_PER_BAR):
            part.add(b0 + beat + 0.5, level, (note,), 0.4)
    elif style == "rolling":
        for beat in range(BEATS_PER_BAR):
            for sub in (0.25, 0.5, 0.75):
                part.add(b0 + beat + sub, level * (0.8 if sub != 0.5 else 1.0), (note,), 0.2)
    elif style == "wobble":  # one note per beat; the LFO inside it makes the wobble
        for beat in range(BEATS_PER_BAR):
            part.add(b0 + beat, level * (1.0 if beat % 2 == 0 else 0.8), (note,), 0.95)
    else:  # sustained notes, retriggered twice a bar
        part.add(b0, level, (note,), 1.9)
        part.add(b0 + 2.0, level * 0.9, (note,), 1.9)
