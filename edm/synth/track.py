"""One synthetic track with its exact ground truth: :func:`synthesize_track`.

The truth is read off the same :class:`~edm.synth.arrangement.Arrangement` the audio was
rendered from: the grid is the arrangement's tempo segments, sections are its phrase plan
(start on a downbeat, end where the next starts; the last ends with the audio), and energy is
measured from the rendered mix (:mod:`edm.synth.energy`). The truth is a tier-1 annotation with
a named memory cue at every section start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edm import __version__
from edm.data.schema import Cue, Metadata, Section, Tier, TrackAnnotation, TrackIdentity
from edm.synth.arrangement import BEATS_PER_BAR, CUE_NAMES, Arrangement, plan_arrangement
from edm.synth.energy import section_energy
from edm.synth.instruments import SAMPLE_RATE, draw_timbre
from edm.synth.render import render
from edm.synth.score import DRUM_LAYERS, Part, write_score

_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@dataclass(frozen=True)
class SynthTrack:
    """A rendered track: ``audio`` is ``(n, 2)`` float32 at ``sample_rate``; ``truth`` is exact."""

    audio: np.ndarray
    truth: TrackAnnotation
    arrangement: Arrangement
    sample_rate: int = SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


def _hits_per_beat(arrangement: Arrangement, parts: dict[str, Part]) -> list[float]:
    drum_beats = np.concatenate(
        [np.asarray(parts[name].beats) for name in DRUM_LAYERS if name in parts] or [np.zeros(0)]
    )
    return [
        float(np.count_nonzero(
            (drum_beats >= s.start_bar * BEATS_PER_BAR) & (drum_beats < s.end_bar * BEATS_PER_BAR)
        ) / (s.n_bars * BEATS_PER_BAR))
        for s in arrangement.sections
    ]


def synthesize_track(
    seed: int,
    *,
    genre: str | None = None,
    minutes: float = 3.0,
    tempo_change: bool | None = None,
    off_phrase: bool | None = None,
    title: str | None = None,
    variety: str = "classic",
) -> SynthTrack:
    """Render one EDM track and its exact truth, deterministically for ``seed``.

    ``genre`` is one of :data:`edm.synth.arrangement.GENRES` (random if None); ``minutes`` is
    approximate, since tracks are whole phrases. ``tempo_change``/``off_phrase`` force or forbid
    a tempo change and a non-phrase-aligned section (None: drawn at random). ``variety``
    ``"broad"`` draws more genres, phrase lengths, half-time sections, tonal layers and
    mastering styles (:mod:`edm.synth.arrangement`); ``"classic"`` is the original generator.

    >>> track = synthesize_track(3, genre="techno", minutes=0.3)
    >>> track.audio.shape[1], track.truth.metadata.tier.name, track.truth.sections[0].label
    (2, 'VERIFIED', 'intro')
    """
    arrangement = plan_arrangement(seed, genre=genre, minutes=minutes,
                                   tempo_change=tempo_change, off_phrase=off_phrase,
                                   variety=variety)
    rng = np.random.default_rng(arrangement.timbre_seed)
    timbre = draw_timbre(rng, wobble=arrangement.genre.bass_style == "wobble")
    parts = write_score(arrangement, rng)
    rendered = render(arrangement, parts, timbre, rng)
    duration_s = len(rendered.audio) / SAMPLE_RATE

    starts = [arrangement.bar_to_seconds(s.start_bar) for s in arrangement.sections]
    ends = [*starts[1:], duration_s]
    energies = section_energy(rendered.audio, SAMPLE_RATE, list(zip(starts, ends, strict=True)),
                              _hits_per_beat(arrangement, parts))
    sections = [
        Section(start_s=start, end_s=end, label=plan.label, energy=energy)
        for plan, start, end, energy in zip(arrangement.sections, starts, ends, energies,
                                            strict=True)
    ]
    cues = [Cue(start_s=start, kind="memory", name=CUE_NAMES[plan.label])
            for plan, start in zip(arrangement.sections, starts, strict=True)]
    style = arrangement.genre.name
    truth = TrackAnnotation(
        track=TrackIdentity(
            duration_s=duration_s,
            title=title or f"Synth {seed} ({style})",
            artist="edm synth",
            genre=style,
        ),
        grid=arrangement.grid(),
        cues=cues,
        sections=sections,
        key=_NOTE_NAMES[arrangement.key_root % 12] + "m",
        bpm=arrangement.tempo_changes[0][1],
        metadata=Metadata(
            tier=Tier.VERIFIED,
            confidence=1.0,
            source="edm-synth",
            provenance={"seed": str(seed), "generator": f"edm.synth {__version__}",
                        "minutes": str(minutes)},
        ),
    )
    return SynthTrack(audio=rendered.audio, truth=truth, arrangement=arrangement)
