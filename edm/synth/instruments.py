"""Synthesised instruments: one-shot drum samples and pitched notes, rendered once and reused.

Each track draws a :class:`Timbre` (pitch, decay, tone and filter settings) from its seed, so no
two tracks sound alike. Drums are pre-rendered one-shots; pitched notes are rendered once per
(pitch, length) and cached by :class:`NoteCache`, so a whole track costs only a few dozen
oscillator runs however many notes it plays. Filtering uses ``pedalboard`` (C++), the
oscillators and envelopes are plain numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pedalboard

SAMPLE_RATE = 44100


def midi_to_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


@dataclass(frozen=True)
class Timbre:
    """Random sound-design choices for one track."""

    kick_hz: float
    kick_sweep: float
    kick_decay_s: float
    kick_click: float
    snare_tone_hz: float
    snare_decay_s: float
    clap: bool
    hat_decay_s: float
    hat_cutoff_hz: float
    bass_wave: str  # "saw" or "square"
    bass_cutoff_hz: float
    bass_drive_db: float
    pad_detune: float
    pad_cutoff_hz: float
    lead_wave: str
    lead_cutoff_hz: float
    pluck_decay_s: float
    levels_db: dict[str, float]
    wobble_cycles: int = 0  # LFO cycles per bass note; 0 = no wobble


def draw_timbre(rng: np.random.Generator, *, wobble: bool = False) -> Timbre:
    """Random but musically plausible sound-design parameters (``wobble``: dubstep bass)."""
    levels = {
        "kick": 0.0,
        "backbeat": rng.uniform(-6, -2),
        "hats": rng.uniform(-16, -10),
        "open_hat": rng.uniform(-16, -11),
        "perc": rng.uniform(-18, -12),
        "sub": rng.uniform(-7, -3),
        "bass": rng.uniform(-11, -6),
        "chords": rng.uniform(-16, -11),
        "pad": rng.uniform(-18, -14),
        "lead": rng.uniform(-15, -10),
        "arp": rng.uniform(-17, -12),
        "riser": rng.uniform(-16, -11),
        "roll": rng.uniform(-10, -6),
        "fill": rng.uniform(-10, -6),
        "crash": rng.uniform(-16, -12),
    }
    return Timbre(
        kick_hz=rng.uniform(45, 60),
        kick_sweep=rng.uniform(3.0, 6.0),
        kick_decay_s=rng.uniform(0.18, 0.4),
        kick_click=rng.uniform(0.1, 0.4),
        snare_tone_hz=rng.uniform(160, 240),
        snare_decay_s=rng.uniform(0.1, 0.25),
        clap=bool(rng.random() < 0.5),
        hat_decay_s=rng.uniform(0.025, 0.06),
        hat_cutoff_hz=rng.uniform(6000, 9500),
        bass_wave=str(rng.choice(["saw", "square"])),
        bass_cutoff_hz=rng.uniform(300, 1200),
        bass_drive_db=rng.uniform(4, 14),
        pad_detune=rng.uniform(0.05, 0.2),
        pad_cutoff_hz=rng.uniform(1500, 4500),
        lead_wave=str(rng.choice(["saw", "square"])),
        lead_cutoff_hz=rng.uniform(2000, 6000),
        pluck_decay_s=rng.uniform(0.08, 0.25),
        levels_db=levels,
        wobble_cycles=int(rng.choice([1, 2, 3])) if wobble else 0,
    )


def _time(n: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sample_rate


def _filter(audio: np.ndarray, plugin: pedalboard.Plugin) -> np.ndarray:
    out = plugin(audio.astype(np.float32)[None, :], SAMPLE_RATE, reset=True)
    return out[0]


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal(n)


def _oscillator(wave: str, freq_hz: float | np.ndarray, n: int, phase: float = 0.0) -> np.ndarray:
    """Naive oscillators: aliasing is inaudible after the low-pass filters used here."""
    if np.ndim(freq_hz) == 0:
        cycles = phase + np.arange(n) * (float(freq_hz) / SAMPLE_RATE)
    else:
        cycles = phase + np.cumsum(freq_hz) / SAMPLE_RATE
    frac = cycles % 1.0
    if wave == "saw":
        return 2.0 * frac - 1.0
    if wave == "square":
        return np.where(frac < 0.5, 1.0, -1.0)
    if wave == "triangle":
        return 4.0 * np.abs(frac - 0.5) - 1.0
    return np.sin(2 * np.pi * cycles)


def _peak_normalise(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio)))
    return audio / peak if peak > 0 else audio


# ---------------------------------------------------------------------------------------------
# Drums: one-shots


def kick(timbre: Timbre, rng: np.random.Generator) -> np.ndarray:
    """A sine with a falling pitch, saturated, plus a short noise click for the attack."""
    n = int(0.5 * SAMPLE_RATE)
    t = _time(n)
    freq = timbre.kick_hz * (1 + timbre.kick_sweep * np.exp(-t / 0.03))
    body = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE) * np.exp(-t / timbre.kick_decay_s)
    click = _filter(_noise(rng, n), pedalboard.HighpassFilter(1500)) * np.exp(-t / 0.004)
    return _peak_normalise(np.tanh(1.5 * body) + timbre.kick_click * click)


def snare(timbre: Timbre, rng: np.random.Generator) -> np.ndarray:
    n = int(0.4 * SAMPLE_RATE)
    t = _time(n)
    if timbre.clap:
        # A clap is a few noise bursts a few ms apart, then a longer tail.
        env = np.zeros(n)
        for k, offset in enumerate((0.0, 0.011, 0.022)):
            start = int(offset * SAMPLE_RATE)
            env[start:] += np.exp(-(t[: n - start]) / 0.008) * (0.8 + 0.1 * k)
        env += 0.6 * np.exp(-t / timbre.snare_decay_s) * (t > 0.03)
        noise = _filter(_noise(rng, n), pedalboard.HighpassFilter(800)) * env
        return _peak_normalise(_filter(noise, pedalboard.LowpassFilter(7000)))
    tone = np.sin(2 * np.pi * timbre.snare_tone_hz * t) * np.exp(-t / 0.06)
    noise = _filter(_noise(rng, n), pedalboard.HighpassFilter(1200)) * np.exp(
        -t / timbre.snare_decay_s
    )
    return _peak_normalise(0.6 * tone + noise)


def hat(timbre: Timbre, rng: np.random.Generator, *, open_hat: bool = False) -> np.ndarray:
    decay = timbre.hat_decay_s * (5.0 if open_hat else 1.0)
    n = int(min(6 * decay, 0.5) * SAMPLE_RATE)
    noise = _filter(_noise(rng, n), pedalboard.HighpassFilter(timbre.hat_cutoff_hz))
    return _peak_normalise(noise * np.exp(-_time(n) / decay))


def perc(timbre: Timbre, rng: np.random.Generator) -> np.ndarray:
    """A short tuned percussion hit (rim/tom-like)."""
    n = int(0.15 * SAMPLE_RATE)
    t = _time(n)
    freq = rng.uniform(300, 900)
    tone = np.sin(2 * np.pi * freq * t * (1 + 0.3 * np.exp(-t / 0.01)))
    return _peak_normalise(tone * np.exp(-t / 0.03))


def crash(rng: np.random.Generator) -> np.ndarray:
    n = int(2.0 * SAMPLE_RATE)
    noise = _filter(_noise(rng, n), pedalboard.HighpassFilter(4000))
    return _peak_normalise(noise * np.exp(-_time(n) / 0.6))


def riser(rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """White noise swept upwards by a resonant filter, swelling to the end of a build."""
    n = int(duration_s * SAMPLE_RATE)
    noise = _noise(rng, n).astype(np.float32)
    progress = np.linspace(0.0, 1.0, n)
    swept = sweep(noise[None, :], lambda p: 300.0 * (40.0 ** p), mode="bandpass")[0]
    return _peak_normalise(swept * progress**2)


def sweep(
    audio: np.ndarray, cutoff_hz: Callable[[float], float], *, mode: str = "lowpass",
    block: int = 1024,
) -> np.ndarray:
    """A filter sweep: ``cutoff_hz(progress in [0, 1])`` per block of a (channels, n) array.

    pedalboard filters have static parameters, so the sweep processes blocks with
    ``reset=False`` (keeping the filter state) and moves the cutoff between blocks.
    """
    modes = {
        "lowpass": pedalboard.LadderFilter.Mode.LPF24,
        "highpass": pedalboard.LadderFilter.Mode.HPF24,
        "bandpass": pedalboard.LadderFilter.Mode.BPF12,
    }
    plugin = pedalboard.LadderFilter(mode=modes[mode], cutoff_hz=cutoff_hz(0.0), resonance=0.3)
    n = audio.shape[1]
    out = np.empty_like(audio, dtype=np.float32)
    for start in range(0, n, block):
        plugin.cutoff_hz = float(min(cutoff_hz(start / max(n - 1, 1)), 18000.0))
        out[:, start : start + block] = plugin.process(
            np.ascontiguousarray(audio[:, start : start + block], dtype=np.float32),
            SAMPLE_RATE, reset=start == 0,
        )
    return out


# ---------------------------------------------------------------------------------------------
# Pitched notes


class NoteCache:
    """Renders each (instrument, pitch(es), length) once; notes repeat all through a track."""

    def __init__(self, timbre: Timbre, rng: np.random.Generator) -> None:
        self.timbre = timbre
        self._phase_rng = rng
        self._cache: dict[tuple, np.ndarray] = {}

    def get(self, kind: str, pitches: tuple[int, ...], n: int) -> np.ndarray:
        key = (kind, pitches, n)
        if key not in self._cache:
            self._cache[key] = getattr(self, f"_{kind}")(pitches, n)
        return self._cache[key]

    def _envelope(self, n: int, attack_s: float, release_s: float) -> np.ndarray:
        t = _time(n)
        env = np.minimum(1.0, t / max(attack_s, 1e-4))
        tail = (n - 1 - np.arange(n)) / SAMPLE_RATE
        return env * np.minimum(1.0, tail / max(release_s, 1e-4))

    def _sub(self, pitches: tuple[int, ...], n: int) -> np.ndarray:
        tone = _oscillator("sine", midi_to_hz(pitches[0]), n)
        return tone * self._envelope(n, 0.005, 0.02)

    def _bass(self, pitches: tuple[int, ...], n: int) -> np.ndarray:
        freq = midi_to_hz(pitches[0] + 12)
        # Two slightly detuned oscillators: the slow beating of a "reese" bass.
        wave = _oscillator(self.timbre.bass_wave, freq, n)
        wave = wave + 0.7 * _oscillator(self.timbre.bass_wave, freq * 1.006, n, phase=0.3)
        t = _time(n)
        if self.timbre.wobble_cycles:
            # Dubstep wobble: a resonant low-pass swept by an LFO locked to the note length.
            cycles = self.timbre.wobble_cycles
            return sweep(wave[None, :].astype(np.float32),
                         lambda p: 150.0 * 25.0 ** (0.5 - 0.5 * np.cos(2 * np.pi * cycles * p)),
                         block=256)[0] * self._envelope(n, 0.003, 0.02)
        # A short filter "pluck": bright attack, darker body.
        bright = _filter(wave, pedalboard.LowpassFilter(self.timbre.bass_cutoff_hz * 2.5))
        dark = _filter(wave, pedalboard.LowpassFilter(self.timbre.bass_cutoff_hz))
        mix = np.exp(-t / 0.05)
        return (bright * mix + dark * (1 - mix)) * self._envelope(n, 0.003, 0.02)

    def _chord(self, pitches: tuple[int, ...], n: int) -> np.ndarray:
        """A stab: detuned saws, short decay."""
        voices = sum(
            _oscillator("saw", midi_to_hz(p) * (1 + d * self.timbre.pad_detune / 50), n,
                        phase=0.25 * i)
            for i, p in enumerate(pitches) for d in (-1.0, 1.0)
        )
        tone = _filter(np.asarray(voices), pedalboard.LowpassFilter(self.timbre.pad_cutoff_hz))
        decay = np.exp(-_time(n) / max(self.timbre.pluck_decay_s * 2, 0.05))
        return _peak_normalise(tone) * decay * self._envelope(n, 0.003, 0.03)

    def _pad(self, pitches: tuple[int, ...], n: int) -> np.ndarray:
        """A sustained supersaw pad with slow attack, darker than the stabs."""
        voices = sum(
            _oscillator("saw", midi_to_hz(p) * (1 + d * self.timbre.pad_detune / 25), n,
                        phase=0.13 * i + 0.3 * j)
            for i, p in enumerate(pitches) for j, d in enumerate((-1.0, 0.0, 1.0))
        )
        tone = _filter(np.asarray(voices), pedalboard.LowpassFilter(self.timbre.pad_cutoff_hz / 2))
        return _peak_normalise(tone) * self._envelope(n, 0.25, 0.3)

    def _lead(self, pitches: tuple[int, ...], n: int) -> np.ndarray:
        wave = _oscillator(self.timbre.lead_wave, midi_to_hz(pitches[0]), n)
        wave = wave + 0.5 * _oscillator(self.timbre.lead_wave, midi_to_hz(pitches[0]) * 1.005, n)
        tone = _filter(wave, pedalboard.LowpassFilter(self.timbre.lead_cutoff_hz))
        return _peak_normalise(tone) * self._envelope(n, 0.01, 0.05)

    def _arp(self, pitches: tuple[int, ...], n: int) -> np.ndarray:
        wave = _oscillator("triangle", midi_to_hz(pitches[0]), n)
        return wave * np.exp(-_time(n) / self.timbre.pluck_decay_s) * self._envelope(n, 0.002, 0.01)
