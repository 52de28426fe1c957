"""Activations simulated from known labels: what a perfect model would output.

Tests and the benchmark's model-free mode use them to check the audit against planted errors
without training heads; the peaks are Gaussian, as a trained head's are.
"""

from __future__ import annotations

import numpy as np

from edm.data.label_errors import PLANTED
from edm.data.schema import Cue, Section, TempoSegment, TrackAnnotation, TrackIdentity
from edm.heads.activations import Activations


def bumps(
    times: np.ndarray, n_frames: int, fps: float, height: float | np.ndarray, width_s: float
) -> np.ndarray:
    """Gaussian bumps of ``height`` (one value, or one per time) at ``times``: a model's peaky
    output. Each bump is drawn over ±5 widths only, so long tracks stay cheap."""
    frame_times = np.arange(n_frames) / fps
    heights = np.broadcast_to(np.asarray(height, dtype=float), np.shape(times))
    out = np.zeros(n_frames)
    for t, h in zip(times, heights, strict=True):
        lo = int(max(0, (t - 5 * width_s) * fps))
        hi = int(min(n_frames, (t + 5 * width_s) * fps + 2))
        bump = h * np.exp(-0.5 * ((frame_times[lo:hi] - t) / width_s) ** 2)
        out[lo:hi] = np.maximum(out[lo:hi], bump)
    return out


def activations_for(
    truth: TrackAnnotation,
    *,
    fps: float = 50.0,
    noise: float = 0.03,
    jitter_s: float = 0.0,
    spurious_per_minute: float = 0.0,
    seed: int = 0,
) -> Activations:
    """Beat/downbeat/boundary activations peaking at the truth's beats, downbeats and section
    starts (its cues when it has no sections).

    ``jitter_s`` moves each peak by a normal draw of that spread, peaks vary in height, and
    ``spurious_per_minute`` adds false boundary peaks of moderate height: a model, not an oracle.
    """
    rng = np.random.default_rng(seed)
    n = int(truth.end_s * fps)

    def peaks(times: np.ndarray, height: float, width_s: float) -> np.ndarray:
        moved = times + rng.normal(0.0, jitter_s, len(times)) if jitter_s else times
        heights = height * (rng.uniform(0.7, 1.0, len(times)) if jitter_s else np.ones(len(times)))
        return bumps(moved, n, fps, heights, width_s)

    beat = peaks(truth.beats(), 0.8, 0.02)
    downbeat = peaks(truth.downbeats(), 0.7, 0.02)
    starts = [s.start_s for s in truth.sections] or [c.start_s for c in truth.cues]
    boundary = peaks(np.array(starts), 0.8, 0.1)
    n_false = rng.poisson(spurious_per_minute * truth.end_s / 60.0)
    if n_false:
        false_times = rng.uniform(0, truth.end_s, n_false)
        boundary = np.maximum(boundary, bumps(false_times, n, fps, 0.4, 0.1))

    def noisy(a: np.ndarray) -> np.ndarray:
        return np.clip(a + noise * rng.random(n), 0, 1)

    return Activations(noisy(beat), noisy(downbeat), noisy(boundary), frames_per_second=fps)


def truth_track(
    track_id: str = "t1",
    *,
    bpm: float = 126.0,
    start_s: float = 0.37,
    duration_s: float = 180.0,
    grid: list[TempoSegment] | None = None,
    phrase_bars: int = 16,
) -> TrackAnnotation:
    """A 4/4 track with a cue (and section) every ``phrase_bars`` bars from the first downbeat."""
    grid = grid or [TempoSegment(start_s=start_s, bpm=bpm)]
    probe = TrackAnnotation(
        track=TrackIdentity(content_hash=track_id, duration_s=duration_s), grid=grid
    )
    downbeats = probe.downbeats()
    starts = [float(t) for t in downbeats[::phrase_bars]]
    cues = [Cue(start_s=round(t, 6)) for t in starts]
    ends = [*starts[1:], duration_s]
    sections = [
        Section(start_s=round(a, 6), end_s=round(b, 6)) for a, b in zip(starts, ends, strict=True)
    ]
    return probe.model_copy(
        update={
            "cues": cues,
            "sections": sections,
            "track": probe.track.model_copy(update={"path": f"{track_id}.wav"}),
        }
    )


#: Error kinds :func:`plant` can inject: every planted kind (:mod:`edm.data.label_errors`)
#: but an ignored tempo change, which needs a grid with a tempo change to ignore.
PLANTABLE_KINDS = tuple(kind for kind in PLANTED if kind != "tempo_change_ignored")


def plant(
    truth: TrackAnnotation, kind: str, rng: np.random.Generator
) -> tuple[TrackAnnotation, float]:
    """``truth`` with one planted error of ``kind`` (the synth's kind names) and its time."""
    from edm.audit.corrections import rotate_downbeat, scale_tempo, shift_grid

    grid, cues = list(truth.grid), list(truth.cues)
    period = grid[0].beat_period_s
    time_s = 0.0
    if kind == "grid_phase":
        grid = shift_grid(grid, float(rng.choice([-1, 1]) * rng.uniform(0.03, 0.06)))
    elif kind == "downbeat_shift":
        grid = rotate_downbeat(grid, int(rng.integers(1, 4)))
    elif kind == "tempo_octave":
        grid = scale_tempo(grid, float(rng.choice([0.5, 2.0])))
    elif kind == "tempo_change_ignored":
        time_s = grid[1].start_s
        grid = grid[:1]
    else:
        index = int(rng.integers(1, len(cues)))
        time_s = cues[index].start_s
        step = {
            "cue_moved_beat": period,
            "cue_moved_bar": 4 * period,
            "cue_off_grid": float(rng.uniform(0.05, 0.2)),
        }.get(kind)
        if step is not None:
            moved = cues[index].start_s + float(rng.choice([-1, 1])) * step
            cues[index] = cues[index].model_copy(update={"start_s": moved})
            time_s = moved
        elif kind == "cue_missing":
            del cues[index]
        elif kind == "cue_extra":
            time_s = (
                float(truth.downbeats()[int(rng.integers(3, len(truth.downbeats()) - 1))])
                + 2 * period
            )
            cues.append(Cue(start_s=round(time_s, 6)))
        else:
            raise ValueError(f"cannot plant {kind!r}")
    return truth.model_copy(update={"grid": grid, "cues": cues}), time_s
