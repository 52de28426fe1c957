"""Render a score to a stereo mix: place samples, mix stems, effects and mastering.

Stems (drums, bass, music, fx) each get one ``pedalboard`` chain; bass and music are ducked by
a sidechain envelope keyed from the kick (the "pumping" of EDM), build-ups get a filter sweep on
the music, and the master runs through a compressor and limiter. Placement is vectorised per
sample, and each distinct note is synthesised once (:class:`~edm.synth.instruments.NoteCache`),
which keeps a 3-minute track within a few seconds on one core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pedalboard

from edm.synth import instruments as inst
from edm.synth.arrangement import BEATS_PER_BAR, Arrangement
from edm.synth.score import Part

SAMPLE_RATE = inst.SAMPLE_RATE

#: Which stem each layer is mixed into, and its pan (-1 left … 1 right).
STEMS: dict[str, tuple[str, float]] = {
    "kick": ("drums", 0.0), "backbeat": ("drums", 0.0), "hats": ("drums", 0.25),
    "open_hat": ("drums", -0.2), "perc": ("drums", -0.35), "roll": ("drums", 0.1),
    "fill": ("drums", -0.1), "crash": ("drums", 0.3),
    "sub": ("bass", 0.0), "bass": ("bass", 0.0),
    "chords": ("music", 0.0), "pad": ("music", 0.0), "lead": ("music", 0.15),
    "arp": ("music", -0.3),
    "riser": ("fx", 0.0),
}

#: Note-based layers and the NoteCache instrument that plays them.
_PITCHED = {"sub": "sub", "bass": "bass", "chords": "chord", "pad": "pad", "lead": "lead",
            "arp": "arp"}


@dataclass(frozen=True)
class Rendered:
    """The final mix ``(n, 2)`` float32 and the pre-master stems ``(2, n)``."""

    audio: np.ndarray
    stems: dict[str, np.ndarray]
    sample_rate: int = SAMPLE_RATE


def _pan(pan: float) -> np.ndarray:
    angle = (pan + 1.0) * np.pi / 4.0
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32) * np.sqrt(2.0)


def _place(buffer: np.ndarray, sample: np.ndarray, start: int, gain: float) -> None:
    end = min(start + len(sample), len(buffer))
    if end > start >= 0:
        buffer[start:end] += gain * sample[: end - start]


def _drum_samples(timbre: inst.Timbre, rng: np.random.Generator) -> dict[str, np.ndarray]:
    snare = inst.snare(timbre, rng)
    return {
        "kick": inst.kick(timbre, rng),
        "backbeat": snare,
        "roll": snare,
        "fill": snare,
        "hats": inst.hat(timbre, rng),
        "open_hat": inst.hat(timbre, rng, open_hat=True),
        "perc": inst.perc(timbre, rng),
        "crash": inst.crash(rng),
    }


def _sidechain(n: int, kick_samples: np.ndarray, depth: float, release_s: float) -> np.ndarray:
    """Gain that dips by ``depth`` at each kick and recovers exponentially (the pump)."""
    hop = 32  # 0.7 ms steps: inaudible, and 30x cheaper than a per-sample envelope
    grid = np.arange(0, n + hop, hop)
    if len(kick_samples) == 0:
        return np.ones(n, dtype=np.float32)
    index = np.searchsorted(kick_samples, grid, side="right") - 1
    since = (grid - kick_samples[np.clip(index, 0, None)]) / SAMPLE_RATE
    # A 5 ms ramp down avoids clicks; before the first kick there is no ducking.
    attack = np.clip(since / 0.005, 0.0, 1.0)
    duck = depth * np.exp(-since / release_s) * np.where(index >= 0, 1.0, 0.0)
    gain = 1.0 - duck * np.where(since < 0.005, attack, 1.0)
    return np.repeat(gain.astype(np.float32), hop)[:n]


def render(arrangement: Arrangement, parts: dict[str, Part], timbre: inst.Timbre,
           rng: np.random.Generator) -> Rendered:
    """Mix every part of the score into a mastered stereo track."""
    beat_period_end = 60.0 / arrangement.bpm_at_bar(arrangement.n_bars - 1)
    end_s = float(arrangement.beat_to_seconds(arrangement.n_beats)) + 0.9 * beat_period_end
    n = int(np.ceil(end_s * SAMPLE_RATE))
    drums = _drum_samples(timbre, rng)
    notes = inst.NoteCache(timbre, rng)
    stems = {name: np.zeros((2, n), dtype=np.float32) for name in ("drums", "bass", "music", "fx")}

    scratch = np.zeros(n, dtype=np.float32)  # reused: fresh pages per layer cost more than math
    for name, part in parts.items():
        if not len(part):
            continue
        stem, pan = STEMS[name]
        beats = np.asarray(part.beats)
        starts = np.round(arrangement.beat_to_seconds(beats) * SAMPLE_RATE).astype(np.int64)
        gains = np.asarray(part.velocity) * 10 ** (timbre.levels_db[name] / 20.0)
        mono = scratch
        mono.fill(0.0)
        if name == "riser":
            for start, beat, length, gain in zip(starts, beats, part.length_beats, gains,
                                                 strict=True):
                stop = arrangement.beat_to_seconds(beat + length)
                sample = inst.riser(rng, float(stop) - start / SAMPLE_RATE)
                _place(mono, sample, int(start), float(gain))
        elif name in _PITCHED:
            ends = np.round(
                arrangement.beat_to_seconds(beats + np.asarray(part.length_beats)) * SAMPLE_RATE
            ).astype(np.int64)
            for start, end, pitches, gain in zip(starts, ends, part.pitches, gains, strict=True):
                sample = notes.get(_PITCHED[name], pitches, int(end - start))
                _place(mono, sample, int(start), float(gain))
        else:
            sample = drums[name]
            for start, gain in zip(starts, gains, strict=True):
                _place(mono, sample, int(start), float(gain))
        if name == "bass":
            mono = pedalboard.Pedalboard([
                pedalboard.Distortion(drive_db=timbre.bass_drive_db),
                pedalboard.LowpassFilter(cutoff_frequency_hz=timbre.bass_cutoff_hz * 3),
                pedalboard.Gain(gain_db=-timbre.bass_drive_db * 0.6),
            ])(mono[None, :], SAMPLE_RATE)[0]
        for channel, gain in enumerate(_pan(pan)):
            stems[stem][channel] += gain * mono

    kick_beats = np.asarray(parts["kick"].beats) if "kick" in parts else np.zeros(0)
    kick_samples = np.round(arrangement.beat_to_seconds(kick_beats) * SAMPLE_RATE).astype(np.int64)
    pump = _sidechain(n, kick_samples, depth=float(rng.uniform(0.5, 0.85)),
                      release_s=float(rng.uniform(0.18, 0.35)) * 60.0 / arrangement.bpm_at_bar(0))
    stems["bass"] *= pump
    stems["music"] *= pump
    _sweep_builds(arrangement, stems["music"])

    reverb = pedalboard.Reverb(room_size=float(rng.uniform(0.5, 0.85)), damping=0.5,
                               wet_level=1.0, dry_level=0.0, width=1.0)
    send = stems["music"] * float(rng.uniform(0.25, 0.45)) + stems["fx"] * 0.3
    stems["music"] += reverb(send, SAMPLE_RATE)
    return Rendered(audio=_master(sum(stems.values()), rng), stems=stems)


def _sweep_builds(arrangement: Arrangement, music: np.ndarray) -> None:
    """Open a low-pass filter across each build-up, as producers do before a drop."""
    for section in arrangement.sections:
        if section.label != "buildup":
            continue
        start = round(arrangement.bar_to_seconds(section.start_bar) * SAMPLE_RATE)
        end = round(arrangement.bar_to_seconds(section.end_bar) * SAMPLE_RATE)
        music[:, start:end] = inst.sweep(music[:, start:end], lambda p: 250.0 * 60.0**p)


def _master(mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Loudness and peak control: glue compressor, gain to a target loudness, limiter."""
    chain = pedalboard.Pedalboard([
        pedalboard.HighpassFilter(cutoff_frequency_hz=25.0),
        pedalboard.Compressor(threshold_db=-14.0, ratio=2.0, attack_ms=10.0, release_ms=120.0),
    ])
    mix = chain(mix, SAMPLE_RATE)
    # Loudness: a realistic range of club masters, about -11 to -7 dBFS RMS in the loud parts.
    frames = mix[:, : mix.shape[1] // 4096 * 4096].reshape(2, -1, 4096)
    loud_rms = float(np.sqrt(np.percentile(np.mean(frames**2, axis=(0, 2)), 90)) + 1e-9)
    target_db = float(rng.uniform(-11.0, -7.0))
    mix = mix * (10 ** (target_db / 20.0) / loud_rms)
    limited = pedalboard.Limiter(threshold_db=-1.0, release_ms=float(rng.uniform(50, 150)))(
        mix.astype(np.float32), SAMPLE_RATE
    )
    return np.clip(limited, -0.99, 0.99).T.astype(np.float32)


__all__ = ["BEATS_PER_BAR", "SAMPLE_RATE", "Rendered", "render"]
