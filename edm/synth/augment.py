"""Augmentation that matters for real audio: what mastering, streaming and DJ rips do to a track.

:func:`augment` draws one chain per call from ``rng`` and applies it to stereo (or mono)
float audio; :func:`scale_annotation` moves the truth with a tempo shift. The chain, each step
drawn on or off:

- **gain** ±6 dB; **EQ tilt**: a low shelf and a high shelf in opposite directions (±6 dB,
  a dull vinyl rip or a bright club master);
- **compression / limiting**: a compressor (2–6:1) and a brick-wall limiter (loudness-war
  masters flatten the kick transients a beat tracker relies on);
- **low-bitrate MP3 round trip** (64–128 kbit/s through ``lameenc``, decoded by libsndfile),
  with the encoder/decoder delay measured and removed, so the truth still lines up;
- **noise**: white noise 30–50 dB under the signal (hiss, a noisy recording chain);
- **pitch shift** ±1 semitone (a key-locked pitch fader) and **tempo shift** ±4 % (varispeed,
  a turntable's pitch fader; truth times scale by :attr:`Augmented.time_scale`).

>>> rng = np.random.default_rng(0)
>>> tone = np.sin(2 * np.pi * 220 * np.arange(44100) / 44100).astype(np.float32)
>>> out = augment(np.stack([tone, tone], axis=1), 44100, rng)
>>> out.audio.shape[1], out.audio.dtype.name, 0.95 <= out.time_scale <= 1.05
(2, 'float32', True)
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pedalboard

from edm.data.schema import TrackAnnotation

#: Probability that each step of the chain is applied.
STEP_PROBABILITY = {"gain": 0.8, "tilt": 0.6, "compress": 0.5, "mp3": 0.5, "noise": 0.4,
                    "pitch": 0.25, "tempo": 0.35}
#: MP3 bitrates of the round trip (kbit/s): streaming previews and old rips.
MP3_BITRATES = (64, 96, 112, 128)
#: Largest encoder + decoder delay searched for after the MP3 round trip (samples).
_MAX_CODEC_DELAY = 4096


@dataclass(frozen=True)
class Augmented:
    """Augmented audio (``(samples, channels)`` float32), how much later every event now
    happens (``time_scale``: new time = old time × scale) and the steps applied."""

    audio: np.ndarray
    time_scale: float = 1.0
    steps: tuple[str, ...] = field(default_factory=tuple)


def augment(audio: np.ndarray, sample_rate: int, rng: np.random.Generator, *,
            steps: tuple[str, ...] | None = None) -> Augmented:
    """One random real-world chain over ``audio``; ``steps`` forces which steps run."""
    x = np.asarray(audio, np.float32)
    mono = x.ndim == 1
    x = x[:, None] if mono else x
    chosen = steps if steps is not None else tuple(
        name for name, p in STEP_PROBABILITY.items() if rng.random() < p)
    planar = np.ascontiguousarray(x.T)  # pedalboard: (channels, samples)
    scale = 1.0
    if "tempo" in chosen:
        faster = varispeed(planar.T, sample_rate, float(rng.uniform(0.96, 1.04)))
        planar, scale = np.ascontiguousarray(faster.audio.T), faster.time_scale
    if "pitch" in chosen:
        shift = pedalboard.PitchShift(semitones=float(rng.uniform(-1.0, 1.0)))
        planar = shift(planar, sample_rate)
    chain: list[pedalboard.Plugin] = []
    if "tilt" in chosen:
        tilt = float(rng.uniform(-6.0, 6.0))
        chain += [pedalboard.LowShelfFilter(cutoff_frequency_hz=250.0, gain_db=tilt),
                  pedalboard.HighShelfFilter(cutoff_frequency_hz=3000.0, gain_db=-tilt)]
    if "compress" in chosen:
        chain += [pedalboard.Compressor(threshold_db=float(rng.uniform(-24.0, -10.0)),
                                        ratio=float(rng.uniform(2.0, 6.0)),
                                        attack_ms=float(rng.uniform(1.0, 20.0)),
                                        release_ms=float(rng.uniform(50.0, 250.0))),
                  pedalboard.Limiter(threshold_db=float(rng.uniform(-3.0, -0.3)))]
    if "gain" in chosen:
        chain.append(pedalboard.Gain(gain_db=float(rng.uniform(-6.0, 6.0))))
    if chain:
        planar = pedalboard.Pedalboard(chain)(planar, sample_rate)
    if "noise" in chosen:
        level = float(np.sqrt(np.mean(planar**2)) + 1e-9)
        snr_db = float(rng.uniform(30.0, 50.0))
        planar = planar + rng.normal(0.0, level * 10 ** (-snr_db / 20), planar.shape)
    out = np.clip(planar.T, -1.0, 1.0).astype(np.float32)
    if "mp3" in chosen:
        out = mp3_round_trip(out, sample_rate, int(rng.choice(MP3_BITRATES)))
    return Augmented(audio=out[:, 0] if mono else out, time_scale=scale, steps=chosen)


def varispeed(audio: np.ndarray, sample_rate: int, factor: float) -> Augmented:
    """``(samples, channels)`` audio played ``factor`` times faster, as a turntable's pitch
    fader does (the pitch moves with the tempo): resampling is exact in time, where a time
    stretcher drifts by parts in a thousand.

    >>> clicks = np.zeros((44100, 1), np.float32); clicks[::11025] = 1.0
    >>> fast = varispeed(clicks, 44100, 1.25)
    >>> len(fast.audio), round(fast.time_scale, 3)
    (35280, 0.8)
    """
    import soxr

    rate_in = round(sample_rate * factor)
    out = soxr.resample(np.asarray(audio, np.float32), rate_in, sample_rate)
    return Augmented(audio=np.ascontiguousarray(out, np.float32),
                     time_scale=sample_rate / rate_in, steps=("tempo",))


def mp3_round_trip(audio: np.ndarray, sample_rate: int, bitrate_kbps: int) -> np.ndarray:
    """``(samples, channels)`` audio through an MP3 encode and decode, realigned: ``lameenc``
    writes no LAME tag, so the decoder's output starts with the codec delay; it is found by
    cross-correlation and cut, and the length restored."""
    import lameenc
    import soundfile

    channels = audio.shape[1]
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate_kbps)
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_out_sample_rate(sample_rate)  # LAME would resample low bitrates otherwise
    encoder.set_channels(channels)
    encoder.set_quality(5)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    data = encoder.encode(pcm.tobytes()) + encoder.flush()
    decoded, rate = soundfile.read(io.BytesIO(bytes(data)), dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise ValueError(f"MP3 round trip came back at {rate} Hz, not {sample_rate} Hz")
    delay = codec_delay(audio[:, 0], decoded[:, 0])
    decoded = decoded[delay: delay + len(audio)]
    if len(decoded) < len(audio):
        decoded = np.pad(decoded, ((0, len(audio) - len(decoded)), (0, 0)))
    return np.ascontiguousarray(decoded[:, :channels], np.float32)


def codec_delay(reference: np.ndarray, delayed: np.ndarray) -> int:
    """Lag (samples, 0 … :data:`_MAX_CODEC_DELAY`) at which ``delayed`` best matches
    ``reference``, by cross-correlation over the loudest second of the reference."""
    window = min(len(reference), 44100)
    if window < 256 or len(delayed) < window:
        return 0
    hop = window // 2
    starts = range(0, max(1, len(reference) - window - _MAX_CODEC_DELAY), hop)
    start = max(starts, key=lambda s: float(np.sum(reference[s: s + window] ** 2)))
    ref = reference[start: start + window]
    seg = delayed[start: start + window + _MAX_CODEC_DELAY]
    if len(seg) < window + 1:
        return 0
    size = 1 << int(np.ceil(np.log2(len(seg) + window)))
    corr = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = min(_MAX_CODEC_DELAY, len(seg) - window) + 1
    return int(np.argmax(corr[:lags]))


def scale_annotation(annotation: TrackAnnotation, time_scale: float) -> TrackAnnotation:
    """The truth of a tempo-shifted copy: every time × ``time_scale``, every BPM ÷ it."""
    if time_scale == 1.0:
        return annotation

    def times(model, names: tuple[str, ...]):  # pydantic models: Section, Cue, …
        return model.model_copy(update={n: getattr(model, n) * time_scale for n in names
                                        if getattr(model, n, None) is not None})

    grid = [times(s, ("start_s",)).model_copy(update={"bpm": s.bpm / time_scale})
            for s in annotation.grid]
    track = annotation.track
    if track.duration_s is not None:
        track = times(track, ("duration_s",))
    return annotation.model_copy(update={
        "track": track, "grid": grid,
        "sections": [times(s, ("start_s", "end_s")) for s in annotation.sections],
        "cues": [times(c, ("start_s", "end_s")) for c in annotation.cues],
        "bpm": annotation.bpm / time_scale if annotation.bpm else annotation.bpm,
    })
