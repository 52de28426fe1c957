"""Genres, tempi and the phrase plan of a synthetic track: *what* plays *when*, in bars.

An :class:`Arrangement` is the single source of truth for a synthetic track. The renderer turns
it into audio and :mod:`edm.synth.track` turns it into the ground-truth annotation, so the two
cannot disagree: every musical event is scheduled in beats and converted to seconds through
:meth:`Arrangement.beat_to_seconds`, which is the same piecewise-linear map that the truth's
:class:`~edm.data.schema.TempoSegment` grid describes.

Conventions
-----------
- Beat 0 is the first downbeat (``first_downbeat_s`` seconds into the audio); bars are 4 beats.
- Sections start on downbeats. Phrases are 8, 16 or 32 bars (4 in very short tracks); a few
  tracks get one section two bars longer or shorter, so later boundaries leave the phrase grid,
  as edits and vocal intros do in real tracks.
- A tempo change, when a track has one, happens on a section boundary (a DJ-friendly edit).

Variety
-------
``variety="classic"`` (the default) is the original generator: every seed gives the same
track as before, so the synthetic benchmarks stay comparable. ``variety="broad"`` draws from
more of what real arrangements do: the genres of :data:`BROAD_GENRES` too (breakbeats,
half-time drum & bass, swung house, kick-less progressive grooves, trap), sections of 4–36
bars (6, 12, 20, 24, 36 as well as 4/8/16/32), half-time sections, tonal layers (pads,
chords, leads) in intros and outros, and a mastering style per track (:data:`MASTERING`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edm.data.schema import TempoSegment

BEATS_PER_BAR = 4

#: Section labels, in the vocabulary of :class:`edm.data.schema.Section`.
LABELS = ("intro", "buildup", "drop", "breakdown", "outro")

#: How DJs name cues for each section function (Rekordbox cue names).
CUE_NAMES = {"intro": "Intro", "buildup": "Build", "drop": "Drop", "breakdown": "Break",
             "outro": "Outro"}

#: Every layer a section can switch on; see :data:`LAYERS_BY_LABEL`.
LAYERS = (
    "kick", "backbeat", "hats", "open_hat", "perc", "sub", "bass", "chords", "pad", "lead",
    "arp", "riser", "roll", "fill", "crash",
)


@dataclass(frozen=True)
class Genre:
    """Tempo range and rhythm of one genre. Beat positions are within a 4-beat bar."""

    name: str
    bpm_range: tuple[float, float]
    kick: tuple[float, ...]
    backbeat: tuple[float, ...]
    hats: tuple[float, ...]
    open_hat: tuple[float, ...]
    bass_style: str  # "offbeat", "rolling", "sustain", "wobble"
    swing: float = 0.0  # fraction of a 16th that off-16ths are delayed by (garage shuffle)


_EIGHTHS = tuple(i * 0.5 for i in range(8))
_SIXTEENTHS = tuple(i * 0.25 for i in range(16))

GENRES: dict[str, Genre] = {
    "house": Genre("house", (118, 128), (0, 1, 2, 3), (1, 3), _SIXTEENTHS, (0.5, 1.5, 2.5, 3.5),
                   "offbeat"),
    "techno": Genre("techno", (125, 140), (0, 1, 2, 3), (1, 3), _SIXTEENTHS, (0.5, 1.5, 2.5, 3.5),
                    "sustain"),
    "trance": Genre("trance", (136, 142), (0, 1, 2, 3), (1, 3), _EIGHTHS, (0.5, 1.5, 2.5, 3.5),
                    "rolling"),
    "drum_and_bass": Genre("drum_and_bass", (170, 176), (0, 2.5), (1, 3), _EIGHTHS,
                           (1.5, 3.5), "sustain"),
    "dubstep": Genre("dubstep", (140, 140), (0, 2.75), (2,), _EIGHTHS, (1.5, 3.5), "wobble"),
    "garage": Genre("garage", (130, 135), (0, 2.5), (1, 3), _SIXTEENTHS, (1.5, 3.5),
                    "sustain", swing=0.3),
}

#: Genres only ``variety="broad"`` draws (and any caller may name).
BROAD_GENRES: dict[str, Genre] = {
    "breakbeat": Genre("breakbeat", (124, 136), (0, 1.75, 2.5), (1, 3), _EIGHTHS, (3.5,),
                       "sustain", swing=0.15),
    "halftime": Genre("halftime", (164, 176), (0,), (2,), _EIGHTHS, (1.5, 3.5), "wobble"),
    "swing_house": Genre("swing_house", (118, 125), (0, 1, 2, 3), (1, 3), _SIXTEENTHS,
                         (0.5, 1.5, 2.5, 3.5), "offbeat", swing=0.5),
    "kickless": Genre("kickless", (118, 130), (), (1, 3), _SIXTEENTHS, (0.5, 1.5, 2.5, 3.5),
                      "rolling"),
    "trap": Genre("trap", (138, 150), (0, 2.75), (2,), _SIXTEENTHS, (), "sustain"),
}
ALL_GENRES: dict[str, Genre] = {**GENRES, **BROAD_GENRES}
VARIETIES = ("classic", "broad")
#: Mastering styles of ``variety="broad"`` (``edm.synth.render``): club (the classic chain),
#: loud (hard limiting), dynamic (light compression, quieter), dull and bright (EQ tilt).
MASTERING = ("club", "loud", "dynamic", "dull", "bright")
#: Section lengths ``variety="broad"`` may give an inner section instead of its phrase.
_BROAD_LENGTHS = (4, 6, 12, 20, 24, 36)

#: Which layers each section function uses before per-track variation removes a few.
#: Sub-bass only in drops; breakdowns have pads and no kick; builds have risers and rolls.
LAYERS_BY_LABEL: dict[str, frozenset[str]] = {
    "intro": frozenset({"kick", "hats", "perc", "bass", "arp", "fill"}),
    "buildup": frozenset({"hats", "backbeat", "chords", "arp", "riser", "roll"}),
    "drop": frozenset({"kick", "backbeat", "hats", "open_hat", "perc", "sub", "bass", "chords",
                       "lead", "fill", "crash"}),
    "breakdown": frozenset({"pad", "arp", "lead"}),
    "outro": frozenset({"kick", "hats", "perc", "backbeat", "bass", "fill"}),
}

#: Optional layers: each is dropped from a section with this probability, per track.
_OPTIONAL = {"perc": 0.4, "open_hat": 0.3, "lead": 0.3, "arp": 0.3, "fill": 0.2, "backbeat": 0.15}

#: (labels, relative lengths): the full form for long tracks, shorter ones for test clips.
_FORMS: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = (
    (("intro", "buildup", "drop", "breakdown", "buildup", "drop", "outro"), (2, 1, 2, 2, 1, 2, 2)),
    (("intro", "buildup", "drop", "breakdown", "outro"), (2, 1, 2, 2, 1)),
    (("intro", "buildup", "drop", "outro"), (1, 1, 1, 1)),
)

#: Minor-key progressions as scale degrees (0 = tonic), one chord per bar or two.
_PROGRESSIONS = ((0, 5, 2, 6), (0, 3, 5, 4), (5, 3, 0, 4), (0, 6, 5, 6), (0, 3, 0, 4))


@dataclass(frozen=True)
class SectionPlan:
    """One section: ``n_bars`` bars from ``start_bar``, with the layers that play in it."""

    label: str
    start_bar: int
    n_bars: int
    layers: frozenset[str]
    drumless_bars: int = 0  # leading bars without kick/backbeat (drum-less intros)
    halftime: bool = False  # drums at half time: kick on 1 only, snare on 3

    @property
    def end_bar(self) -> int:
        return self.start_bar + self.n_bars


@dataclass(frozen=True)
class Arrangement:
    """A complete plan of a track; see the module docstring for conventions."""

    genre: Genre
    sections: tuple[SectionPlan, ...]
    #: (start_bar, bpm) for each tempo segment; the first starts at bar 0.
    tempo_changes: tuple[tuple[int, float], ...]
    first_downbeat_s: float
    key_root: int  # MIDI note of the tonic in the bass octave
    progression: tuple[int, ...]
    bars_per_chord: int
    seed: int
    timbre_seed: int
    drop_gap_beats: float = 0.0  # silence before each drop (all but the riser stop)
    mastering: str = "club"  # one of MASTERING
    _segment_starts_s: tuple[float, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        starts = [self.first_downbeat_s]
        for (bar, bpm), (next_bar, _) in zip(
            self.tempo_changes, self.tempo_changes[1:], strict=False
        ):
            starts.append(starts[-1] + (next_bar - bar) * BEATS_PER_BAR * 60.0 / bpm)
        object.__setattr__(self, "_segment_starts_s", tuple(starts))

    @property
    def n_bars(self) -> int:
        return self.sections[-1].end_bar

    @property
    def n_beats(self) -> int:
        return self.n_bars * BEATS_PER_BAR

    def grid(self) -> list[TempoSegment]:
        """The exact beat grid, one segment per tempo, each starting on a downbeat."""
        return [
            TempoSegment(start_s=start, bpm=bpm, beats_per_bar=BEATS_PER_BAR, beat_in_bar=1)
            for start, (_, bpm) in zip(self._segment_starts_s, self.tempo_changes, strict=True)
        ]

    def beat_to_seconds(self, beats: np.ndarray | float) -> np.ndarray:
        """Seconds of (fractional) beat positions; beat 0 is the first downbeat."""
        beats = np.asarray(beats, dtype=np.float64)
        seg_beats = np.array([bar * BEATS_PER_BAR for bar, _ in self.tempo_changes], float)
        periods = np.array([60.0 / bpm for _, bpm in self.tempo_changes])
        index = np.clip(np.searchsorted(seg_beats, beats, side="right") - 1, 0, None)
        starts = np.asarray(self._segment_starts_s)
        return starts[index] + (beats - seg_beats[index]) * periods[index]

    def bar_to_seconds(self, bar: int) -> float:
        return float(self.beat_to_seconds(bar * BEATS_PER_BAR))

    def bpm_at_bar(self, bar: int) -> float:
        bpm = self.tempo_changes[0][1]
        for start_bar, segment_bpm in self.tempo_changes:
            if start_bar <= bar:
                bpm = segment_bpm
        return bpm

    def chord_at_bar(self, bar: int) -> int:
        """Scale degree of the chord playing in ``bar``."""
        return self.progression[(bar // self.bars_per_chord) % len(self.progression)]


def _phrase_length(target_bars: float, smallest: int) -> int:
    """The phrase length (4/8/16/32 bars, at least ``smallest``) nearest to a target."""
    choices = [n for n in (4, 8, 16, 32) if n >= smallest]
    return min(choices, key=lambda n: abs(np.log2(n) - np.log2(max(target_bars, 1.0))))


def _pick_bpm(rng: np.random.Generator, genre: Genre) -> float:
    low, high = genre.bpm_range
    bpm = rng.uniform(low, high)
    # Most releases sit on whole BPMs; some have a decimal (re-edits, old vinyl rips).
    return float(round(bpm)) if rng.random() < 0.75 else float(round(bpm, 1))


def plan_arrangement(
    seed: int,
    *,
    genre: str | None = None,
    minutes: float = 3.0,
    tempo_change: bool | None = None,
    off_phrase: bool | None = None,
    variety: str = "classic",
) -> Arrangement:
    """Plan a track: genre, tempo (segments), key, and the section/phrase layout.

    ``tempo_change`` and ``off_phrase`` force (True) or forbid (False) a tempo change and a
    non-phrase-aligned section; ``None`` draws them (about 15 % and 25 % of tracks).
    ``variety`` is ``"classic"`` or ``"broad"`` (module docstring).

    >>> plan = plan_arrangement(1, genre="house", minutes=3.0)
    >>> plan.sections[0].label, plan.sections[-1].label
    ('intro', 'outro')
    """
    if minutes <= 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    if genre is not None and genre not in ALL_GENRES:
        raise ValueError(f"unknown genre {genre!r}; choose from {', '.join(ALL_GENRES)}")
    if variety not in VARIETIES:
        raise ValueError(f"unknown variety {variety!r}; choose from {', '.join(VARIETIES)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EC7]))
    # Broad draws come from their own stream, so the classic stream (and track) is unchanged.
    broad = np.random.default_rng(np.random.SeedSequence([seed, 0xB20AD])) \
        if variety == "broad" else None
    pool = ALL_GENRES if broad is not None else GENRES
    style = ALL_GENRES[genre] if genre else pool[list(pool)[rng.integers(len(pool))]]
    bpm = _pick_bpm(rng, style)
    target_bars = minutes * bpm / BEATS_PER_BAR

    smallest = 8 if target_bars >= 64 else 4
    # The longest form whose sections all fit at the smallest phrase length.
    labels, weights = next(
        (form for form in _FORMS if target_bars >= smallest * len(form[0]) * 0.9), _FORMS[-1]
    )
    unit = target_bars / sum(weights)
    lengths = [_phrase_length(weight * unit, smallest) for weight in weights]
    # Nearest-phrase rounding drifts from the requested length: double or halve random
    # sections while that brings the total closer to the target.
    for _ in range(2 * len(lengths)):
        total = sum(lengths)
        grow = [i for i, n in enumerate(lengths) if n < 32 and total + n <= target_bars * 1.08]
        shrink = [i for i, n in enumerate(lengths)
                  if n > smallest and total - n / 2 >= target_bars * 0.92 and total > target_bars]
        if total < target_bars * 0.92 and grow:
            lengths[int(rng.choice(grow))] *= 2
        elif total > target_bars * 1.08 and shrink:
            lengths[int(rng.choice(shrink))] //= 2
        else:
            break

    if off_phrase is None:
        off_phrase = rng.random() < 0.25
    if off_phrase:
        # Two bars more or less on one inner section shifts every later boundary off-phrase.
        candidates = [i for i in range(1, len(lengths) - 1) if lengths[i] >= 8] or [0]
        which = int(rng.choice(candidates))
        lengths[which] += int(rng.choice([-2, 2])) if lengths[which] >= 8 else 2

    if broad is not None:
        for i in range(1, len(lengths) - 1):
            if broad.random() < 0.35:
                lengths[i] = int(broad.choice(_BROAD_LENGTHS))

    dropped = {name for name, p in _OPTIONAL.items() if rng.random() < p}
    drumless = rng.random() < 0.3
    sections: list[SectionPlan] = []
    bar = 0
    for label, n_bars in zip(labels, lengths, strict=True):
        layers = LAYERS_BY_LABEL[label] - dropped
        if label == "drop":
            layers = layers | {"kick", "sub"}  # a drop always has kick and sub
        if label == "breakdown":
            layers = layers | {"pad"}
        drumless_bars = 0
        if label == "intro" and drumless and n_bars >= 8:
            drumless_bars = n_bars // 2
        halftime = False
        if broad is not None:
            if label in ("intro", "outro") and broad.random() < 0.5:
                layers = layers | {str(broad.choice(["pad", "chords", "lead"]))}
            halftime = label in ("drop", "breakdown", "buildup") and broad.random() < 0.15
        sections.append(SectionPlan(label, bar, n_bars, frozenset(layers), drumless_bars,
                                    halftime))
        bar += n_bars

    changes: list[tuple[int, float]] = [(0, bpm)]
    if tempo_change is None:
        tempo_change = len(sections) >= 5 and rng.random() < 0.15
    if tempo_change:
        inner = [s for s in sections[2:] if s.label in ("breakdown", "buildup", "outro")]
        at = (inner or sections[1:])[0].start_bar
        low, high = style.bpm_range
        step = float(rng.uniform(2.0, 6.0)) * (1 if bpm < (low + high) / 2 else -1)
        if low == high:  # single-tempo genres still get the odd re-edit
            step = float(rng.choice([-4.0, 4.0]))
        changes.append((at, float(round(bpm + step, 1))))

    period = 60.0 / bpm
    return Arrangement(
        genre=style,
        sections=tuple(sections),
        tempo_changes=tuple(changes),
        first_downbeat_s=float(round(rng.uniform(0.0, 0.6) * period, 3)),  # Rekordbox: ms
        key_root=int(rng.integers(28, 40)),  # E1 .. D#2
        progression=_PROGRESSIONS[rng.integers(len(_PROGRESSIONS))],
        bars_per_chord=int(rng.choice([1, 2])),
        seed=seed,
        timbre_seed=int(rng.integers(2**31)),
        drop_gap_beats=float(rng.choice([0.0, 0.0, 1.0, 2.0])),
        mastering=str(broad.choice(MASTERING)) if broad is not None else "club",
    )
