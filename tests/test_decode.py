"""Decoding: activations synthesised from known grids and boundaries must decode back to them."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest

from edm.data.schema import TempoSegment, beat_grid
from edm.decode import DecodeError, decode_beats, decode_boundaries, decode_sections
from edm.heads.activations import Activations

FPS = 50.0


def bumps(times: np.ndarray, n: int, width_frames: float = 1.2) -> np.ndarray:
    """Gaussian peaks (height 1) at ``times``: what a trained head outputs around events."""
    out = np.zeros(n)
    idx = np.round(np.asarray(times) * FPS).astype(int)
    for k in range(-8, 9):
        j = np.clip(idx + k, 0, n - 1)
        out[j] = np.maximum(out[j], np.exp(-0.5 * (k / width_frames) ** 2))
    return out


def activations_for(
    grid: list[TempoSegment], duration_s: float, *, seed: int = 0, noise: float = 0.15,
    boundaries: np.ndarray | None = None,
) -> tuple[Activations, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(duration_s * FPS)
    beats, numbers = beat_grid(grid, duration_s)
    downbeats = beats[numbers == 1]
    boundary = rng.uniform(0, 0.2, n)
    if boundaries is not None:
        boundary = np.maximum(boundary, 0.8 * bumps(boundaries, n, width_frames=3))
    act = Activations(
        beat=0.8 * bumps(beats, n) + rng.uniform(0, noise, n),
        downbeat=0.8 * bumps(downbeats, n) + rng.uniform(0, noise, n),
        boundary=boundary,
        frames_per_second=FPS,
    )
    return act, beats, downbeats


@pytest.mark.parametrize(
    ("bpm", "start_s", "beat_in_bar"),
    [(128.0, 0.31, 3), (174.0, 0.1, 1), (72.0, 0.12, 2), (140.0, 1.7, 4), (100.0, 0.0, 1)],
)
def test_steady_grid_decodes_exactly(bpm: float, start_s: float, beat_in_bar: int) -> None:
    grid = [TempoSegment(start_s=start_s, bpm=bpm, beat_in_bar=beat_in_bar)]
    act, beats, downbeats = activations_for(grid, 150.0)
    decoded = decode_beats(act)
    assert decoded.bpm == pytest.approx(bpm, abs=0.02)
    assert len(decoded.segments) == 1
    assert mir_eval.beat.f_measure(beats, decoded.beats) == pytest.approx(1.0)
    assert mir_eval.beat.f_measure(downbeats, decoded.downbeats) == pytest.approx(1.0)
    # Sub-frame accuracy from the least-squares fit: well under one 20 ms frame.
    common = min(len(beats), len(decoded.beats))
    assert np.abs(decoded.beats[:common] - beats[:common]).max() < 0.01


def test_tempo_change_found_at_the_right_beat() -> None:
    grid = [TempoSegment(start_s=0.2, bpm=124.0), TempoSegment(start_s=93.2, bpm=130.0)]
    act, beats, downbeats = activations_for(grid, 220.0, seed=3)
    decoded = decode_beats(act)
    assert [round(s.bpm, 1) for s in decoded.segments] == [124.0, 130.0]
    assert decoded.segments[1].start_s == pytest.approx(93.2, abs=0.02)
    assert decoded.bpm == pytest.approx(130.0, abs=0.01)  # the longer segment
    assert mir_eval.beat.f_measure(beats, decoded.beats) > 0.99
    assert mir_eval.beat.f_measure(downbeats, decoded.downbeats) > 0.99


def test_downbeats_fix_the_tempo_octave() -> None:
    """A beat head that fires on every other beat (half tempo) is corrected by the bars."""
    grid = [TempoSegment(start_s=0.4, bpm=128.0)]
    act, beats, _downbeats = activations_for(grid, 120.0, seed=5)
    n = act.n_frames
    half = Activations(
        beat=0.8 * bumps(beats[::2], n) + 0.05, downbeat=act.downbeat, boundary=act.boundary,
        frames_per_second=FPS,
    )
    # Without downbeat evidence 64 BPM is outside the EDM prior, so the prior alone says 128;
    # at 75 BPM the prior is flat, so only the downbeats (one every 2 grid beats) can say 150.
    assert decode_beats(half).bpm == pytest.approx(128.0, abs=0.05)
    grid75 = [TempoSegment(start_s=0.4, bpm=150.0)]
    act75, beats75, _ = activations_for(grid75, 120.0, seed=6)
    half75 = Activations(
        beat=0.8 * bumps(beats75[::2], act75.n_frames) + 0.05, downbeat=act75.downbeat,
        boundary=act75.boundary, frames_per_second=FPS,
    )
    assert decode_beats(half75).bpm == pytest.approx(150.0, abs=0.05)


def test_silence_and_short_clips_raise() -> None:
    n = int(30 * FPS)
    silent = Activations(np.zeros(n), np.zeros(n), np.zeros(n), FPS)
    with pytest.raises(DecodeError, match="no beats"):
        decode_beats(silent)
    short = Activations(np.zeros(100), np.zeros(100), np.zeros(100), FPS)
    with pytest.raises(DecodeError, match="too short"):
        decode_beats(short)


def test_boundaries_land_on_phrase_downbeats() -> None:
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    duration = 240.0
    _, _, downbeats = activations_for(grid, duration)
    truth = downbeats[[16, 32, 48, 64, 96]]
    # Boundary peaks 120 ms late (a head's typical smear) still snap to the downbeat.
    act, _, _ = activations_for(grid, duration, boundaries=truth + 0.12)
    decoded = decode_beats(act)
    found = decode_boundaries(act, decoded)
    np.testing.assert_allclose(found, truth, atol=0.01)


def test_phrase_prior_picks_the_phrase_downbeat_over_a_neighbour() -> None:
    """Evidence split between bars 15 and 16 after a boundary goes to bar 16 (a phrase)."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    act, _, downbeats = activations_for(grid, 120.0, boundaries=None)
    n = act.n_frames
    boundary = np.maximum(act.boundary, 0.7 * bumps(downbeats[[15, 16]], n, width_frames=2))
    boundary = np.maximum(boundary, 0.9 * bumps(downbeats[[32]], n, width_frames=2))
    act = Activations(act.beat, act.downbeat, boundary, FPS)
    found = decode_boundaries(act, decode_beats(act))
    np.testing.assert_allclose(found, downbeats[[16, 32]], atol=0.01)


def test_a_one_bar_fill_before_the_phrase_line_moves_the_boundary_onto_the_line() -> None:
    """A fill in bar 15 fires the head a bar before the section at bar 16 does. The boundary
    goes to bar 16, the 4-bar line, when bar 16 holds at least half the evidence; with a weak
    change after it, a boundary off the line stays where its evidence is."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    act, _, downbeats = activations_for(grid, 120.0, boundaries=None)
    n = act.n_frames

    def decoded_with(after_fill: float) -> np.ndarray:
        boundary = np.maximum(act.boundary, 0.9 * bumps(downbeats[[15, 32]], n, width_frames=2))
        boundary = np.maximum(boundary, after_fill * bumps(downbeats[[16]], n, width_frames=2))
        fill = Activations(act.beat, act.downbeat, boundary, FPS)
        return decode_boundaries(fill, decode_beats(fill))

    np.testing.assert_allclose(decoded_with(0.6), downbeats[[16, 32]], atol=0.01)
    np.testing.assert_allclose(decoded_with(0.3), downbeats[[15, 32]], atol=0.01)


def test_sections_carry_energy_labels_and_cover_the_track() -> None:
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    duration = 120.0
    _, _, downbeats = activations_for(grid, duration)
    truth = downbeats[[8, 24, 40]]
    act, beats, _ = activations_for(grid, duration, boundaries=truth)
    n = act.n_frames
    t = np.arange(n) / FPS
    labels = ("intro", "drop")
    in_drop = (t >= truth[1]) & (t < truth[2])
    section = np.stack([np.where(in_drop, 0.2, 0.8), np.where(in_drop, 0.8, 0.2)], axis=1)
    act = Activations(act.beat, act.downbeat, act.boundary, FPS, section, labels)
    # The drop is twice as loud; a riser (rising rms) fills the section before it; two
    # onsets per beat in the drop, one elsewhere.
    rms = np.where(in_drop, 1.0, 0.5)
    riser = (t >= truth[0]) & (t < truth[1])
    rms = np.where(riser, 0.2 + 0.3 * (t - truth[0]) / (truth[1] - truth[0]), rms)
    onset_times = np.concatenate([beats, beats[(beats >= truth[1]) & (beats < truth[2])] + 0.2])
    descriptors = {
        "rms": rms, "bass": rms, "mid": rms, "high": np.full(n, 0.3),
        "onset": bumps(onset_times, n), "centroid_hz": np.where(in_drop, 3000.0, 1500.0),
    }
    sections = decode_sections(act, decode_beats(act), descriptors=descriptors, duration_s=duration)
    assert [s.label for s in sections] == ["intro", "intro", "drop", "intro"]
    assert sections[0].start_s == 0.0 and sections[-1].end_s == duration
    drop, riser_section = sections[2].energy, sections[1].energy
    # Fixed scale, linear in dB (-60 dB -> 0, 0 dB -> 1): rms 1.0 is 0 dB, rms 0.5 is -6 dB.
    assert drop.overall == pytest.approx(1.0) and drop.level_db == pytest.approx(0.0, abs=0.01)
    assert sections[3].energy.level_db == pytest.approx(-6.02, abs=0.01)
    assert sections[3].energy.overall == pytest.approx(1 - 6.02 / 60, abs=1e-3)
    assert sections[3].energy.high == pytest.approx(1 + 20 * np.log10(0.3) / 60, abs=1e-3)
    assert drop.density == pytest.approx(2.0, abs=0.05)
    assert sections[3].energy.density == pytest.approx(1.0, abs=0.05)
    assert drop.brightness == pytest.approx(3000.0, abs=20)
    # The riser climbs from -14 dB to -6 dB: 8 dB, so overall rises by about 8/60 across it.
    assert riser_section.tension == pytest.approx(0.129, abs=0.005)
    assert drop.tension == pytest.approx(0.0, abs=0.01)


# ---------------------------------------------------------------------------------------------
# Real arrangements: kick/snare accents, arrangement changes, unsure heads (issue 15)


def drum_descriptors(hits: np.ndarray, n: int, *, level: np.ndarray | None = None,
                     offbeat_hats: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Band descriptors of a drum part: each hit lifts bass and mid and decays in 100 ms;
    ``level`` scales everything per frame (an arrangement); hats lift the high band only."""
    t = np.arange(n) / FPS
    envelope = np.zeros(n)
    for hit in hits:
        after = t >= hit
        envelope[after] = np.maximum(envelope[after], np.exp(-(t[after] - hit) / 0.1))
    hats = np.zeros(n)
    for hat in offbeat_hats if offbeat_hats is not None else []:
        after = t >= hat
        hats[after] = np.maximum(hats[after], np.exp(-(t[after] - hat) / 0.05))
    scale = np.ones(n) if level is None else level
    bass, mid = scale * (0.02 + 0.3 * envelope), scale * (0.02 + 0.2 * envelope)
    high = scale * (0.01 + 0.1 * hats)
    return {"rms": bass + mid + high, "bass": bass, "mid": mid, "high": high,
            "onset": np.maximum(np.diff(envelope + hats, prepend=0.0), 0.0),
            "centroid_hz": 800.0 + 2000.0 * scale}


def test_accents_give_174_where_the_head_fires_every_other_beat() -> None:
    """A head firing every other beat of a 174 BPM track says 87, and the prior hardly
    separates 87 from 174; kicks and snares on every beat say 174."""
    grid = [TempoSegment(start_s=0.3, bpm=174.0)]
    act, beats, _ = activations_for(grid, 90.0, seed=7)
    n = act.n_frames
    half = Activations(0.8 * bumps(beats[::2], n) + 0.02, np.zeros(n), act.boundary, FPS)
    decoded = decode_beats(half, descriptors=drum_descriptors(beats, n))
    assert decoded.bpm == pytest.approx(174.0, abs=0.1)
    assert mir_eval.beat.f_measure(beats, decoded.beats) > 0.98


def test_kicks_win_the_phase_over_an_off_beat_head() -> None:
    """A head that fires on the off-beat hats (half a beat late) gets the grid on the kicks."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    act, beats, _ = activations_for(grid, 90.0, seed=8)
    n = act.n_frames
    offbeats = beats + 30.0 / 128.0
    fooled = Activations(0.8 * bumps(offbeats, n) + 0.02, np.zeros(n), act.boundary, FPS)
    without = decode_beats(fooled)
    assert mir_eval.beat.f_measure(beats, without.beats) < 0.1  # the head alone: off-beat
    decoded = decode_beats(fooled, descriptors=drum_descriptors(beats, n, offbeat_hats=offbeats))
    assert decoded.bpm == pytest.approx(128.0, abs=0.05)
    assert mir_eval.beat.f_measure(beats, decoded.beats) > 0.99


def test_the_downbeat_head_keeps_the_grid_on_the_beat_against_off_beat_accents() -> None:
    """Kicks and snares half a beat off (a render offset, a syncopated part) and a beat head
    that leans on the beat only a little: the downbeat head, firing on the downbeats, decides.
    Without it the accents move the grid onto the off-beat."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    act, beats, downbeats = activations_for(grid, 90.0, seed=9)
    n = act.n_frames
    offbeats = beats + 30.0 / 128.0
    leaning = 0.8 * bumps(beats, n) + 0.4 * bumps(offbeats, n) + 0.02
    off_accents = drum_descriptors(offbeats, n)
    unsure = Activations(leaning, np.zeros(n), act.boundary, FPS)
    assert mir_eval.beat.f_measure(beats, decode_beats(unsure, descriptors=off_accents).beats
                                   ) < 0.1
    heard = Activations(leaning, 0.8 * bumps(downbeats, n) + 0.02, act.boundary, FPS)
    decoded = decode_beats(heard, descriptors=off_accents)
    assert mir_eval.beat.f_measure(beats, decoded.beats) > 0.99
    assert mir_eval.beat.f_measure(downbeats, decoded.downbeats) > 0.99


def test_one_tempo_through_a_breakdown_is_one_segment() -> None:
    """30 s without drums in a constant-tempo track (head noise only) is not a tempo change."""
    grid = [TempoSegment(start_s=0.2, bpm=174.0)]
    act, beats, _ = activations_for(grid, 200.0, seed=9)
    n = act.n_frames
    t = np.arange(n) / FPS
    rng = np.random.default_rng(9)
    breakdown = (t > 80) & (t < 110)
    beat = np.where(breakdown, rng.uniform(0, 0.3, n), act.beat)
    kept = beats[(beats < 80) | (beats > 110)]
    decoded = decode_beats(Activations(beat, act.downbeat, act.boundary, FPS),
                           descriptors=drum_descriptors(kept, n))
    assert len(decoded.segments) == 1
    assert decoded.bpm == pytest.approx(174.0, abs=0.05)
    assert mir_eval.beat.f_measure(beats, decoded.beats) > 0.99


def test_confidence_says_when_the_head_is_unsure() -> None:
    """A silent head with kicks in the audio still gets the grid, and says it is unsure."""
    grid = [TempoSegment(start_s=0.4, bpm=124.0)]
    act, beats, _ = activations_for(grid, 90.0, seed=10)
    n = act.n_frames
    assert decode_beats(act).confidence > 0.7
    silent = Activations(np.full(n, 0.01), np.full(n, 0.01), act.boundary, FPS)
    decoded = decode_beats(silent, descriptors=drum_descriptors(beats, n))
    assert decoded.bpm == pytest.approx(124.0, abs=0.05)
    assert mir_eval.beat.f_measure(beats, decoded.beats) > 0.99
    assert decoded.confidence < 0.05 and decoded.downbeat_confidence < 0.05


def arrangement(downbeats: np.ndarray, change_bars: list[int], n: int) -> np.ndarray:
    """A level per frame that steps at each of ``change_bars`` (alternately up and down)."""
    t = np.arange(n) / FPS
    level = np.full(n, 0.5)
    for k, bar in enumerate(change_bars):
        level[t >= downbeats[bar]] = 0.5 if k % 2 else 1.0
    return level


def test_arrangement_changes_make_boundaries_and_bars_where_the_heads_are_silent() -> None:
    """Silent downbeat and boundary heads: the arrangement changes give the bar phase and
    the sections, at a 12-bar line and off the phrase grid too (the prior is not a filter)."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0, beat_in_bar=3)]
    duration = 150.0
    act, beats, downbeats = activations_for(grid, duration, seed=11)
    n = act.n_frames
    changes = [12, 28, 45, 60]
    descriptors = drum_descriptors(beats, n, level=arrangement(downbeats, changes, n))
    rng = np.random.default_rng(11)
    unsure = Activations(act.beat, rng.uniform(0, 0.1, n), rng.uniform(0, 0.1, n), FPS)
    decoded = decode_beats(unsure, descriptors=descriptors)
    assert mir_eval.beat.f_measure(downbeats, decoded.downbeats) > 0.99
    found = decode_boundaries(unsure, decoded, descriptors=descriptors)
    np.testing.assert_allclose(found, downbeats[changes], atol=0.02)
    assert len(decode_boundaries(unsure, decoded)) <= 1  # the head alone finds nothing


def test_an_instrument_entering_at_the_same_loudness_is_a_boundary_through_the_bands() -> None:
    """Steady drums and levels, a head at its noise floor: a lead that takes over from a pad at
    bar 16 and hands back at bar 40 (the loudness held) moves only the spectrum's shape. With
    the band descriptors both changes are boundaries; with the summary descriptors alone
    (a store written before the bands) the track is one section."""
    from edm.backbones import BAND_NAMES

    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    act, beats, downbeats = activations_for(grid, 120.0, seed=13)
    n = act.n_frames
    rng = np.random.default_rng(13)
    unsure = Activations(act.beat, act.downbeat, rng.uniform(0, 0.1, n), FPS)
    summary = drum_descriptors(beats, n)
    t = np.arange(n) / FPS
    lead = (t >= downbeats[16]) & (t < downbeats[40])
    bands = {name: np.full(n, 0.02) for name in BAND_NAMES}
    bands["band_06"] = np.where(lead, 0.02, 0.2)  # the pad, low mids
    bands["band_22"] = np.where(lead, 0.2, 0.02)  # the lead, upper mids
    decoded = decode_beats(unsure)
    found = decode_boundaries(unsure, decoded, descriptors={**summary, **bands})
    np.testing.assert_allclose(found, downbeats[[16, 40]], atol=0.02)
    assert len(decode_boundaries(unsure, decoded, descriptors=summary)) == 0


def test_unsure_section_head_gives_no_label_and_confidence_per_section() -> None:
    from edm.decode import section_confidence

    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    duration = 120.0
    _, _, downbeats = activations_for(grid, duration)
    truth = downbeats[[16, 32]]
    act, _, _ = activations_for(grid, duration, boundaries=truth)
    n = act.n_frames
    flat = np.full((n, 5), 0.2)
    labels = ("intro", "buildup", "drop", "breakdown", "outro")
    unsure = Activations(act.beat, act.downbeat, act.boundary, FPS, flat, labels)
    decoded = decode_beats(unsure)
    sections = decode_sections(unsure, decoded)
    assert [s.start_s for s in sections[1:]] == pytest.approx(list(truth), abs=0.01)
    assert [s.label for s in sections] == [None, None, None]
    confidence = section_confidence(unsure, decoded, sections)
    assert len(confidence) == 3
    assert confidence[0].boundary == 1.0
    assert all(c.boundary > 0.6 for c in confidence[1:])
    assert all(c.label == pytest.approx(0.2) for c in confidence)
    assert all(c.beats > 0.7 for c in confidence)


def test_four_and_twelve_bar_sections_survive_the_phrase_prior() -> None:
    """A 12-bar and a 4-bar section (16 -> 28 -> 32), heard in the arrangement and half-seen by
    the head (0.5), are kept: the phrase prior is a cost, not a filter."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    duration = 150.0
    act, beats, downbeats = activations_for(grid, duration, seed=3)
    n = act.n_frames
    changes = [16, 28, 32, 48, 64]
    descriptors = drum_descriptors(beats, n, level=arrangement(downbeats, changes, n))
    boundary = np.maximum(act.boundary, 0.5 * bumps(downbeats[changes], n, width_frames=3))
    half_seen = Activations(act.beat, act.downbeat, boundary, FPS)
    found = decode_boundaries(half_seen, decode_beats(half_seen), descriptors=descriptors)
    np.testing.assert_allclose(found, downbeats[changes], atol=0.02)


def test_a_steady_track_and_a_riser_make_no_boundaries() -> None:
    """The same drum part for 110 s (58 bars, under the 64-bar longest section) with the head
    at its noise floor: no boundary; a riser climbing 8 dB over 16 bars inside a section does
    not split it either."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    duration = 110.0
    act, beats, downbeats = activations_for(grid, duration, seed=5)
    n = act.n_frames
    steady = drum_descriptors(beats, n)
    decoded = decode_beats(act, descriptors=steady)
    assert len(decode_boundaries(act, decoded, descriptors=steady)) == 0
    t = np.arange(n) / FPS
    start, end = downbeats[24], downbeats[40]
    level = np.where(t >= end, 1.0, 0.4)
    level = np.where((t >= start) & (t < end), 0.4 + 0.6 * 10 ** (-8 / 20) * (t - start)
                     / (end - start), level)
    riser = drum_descriptors(beats, n, level=level)
    boundary = np.maximum(act.boundary, 0.8 * bumps([end], n, width_frames=3))
    heard = Activations(act.beat, act.downbeat, boundary, FPS)
    found = decode_boundaries(heard, decode_beats(heard), descriptors=riser)
    np.testing.assert_allclose(found, [end], atol=0.02)


def test_a_two_bar_pickup_before_the_arrangement_is_its_own_section() -> None:
    """The audio starts two bars before the arrangement's first bar (a pickup, a count-in):
    that short first section is kept, though inner sections stay at least four bars."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    duration = 100.0
    act, beats, downbeats = activations_for(grid, duration, seed=7)
    n = act.n_frames
    changes = [2, 18, 34]
    descriptors = drum_descriptors(beats, n, level=arrangement(downbeats, changes, n))
    boundary = np.maximum(act.boundary, 0.6 * bumps(downbeats[changes], n, width_frames=3))
    heard = Activations(act.beat, act.downbeat, boundary, FPS)
    decoded = decode_beats(heard, descriptors=descriptors)
    found = decode_boundaries(heard, decoded, descriptors=descriptors)
    np.testing.assert_allclose(found, downbeats[changes], atol=0.02)
    assert np.all(np.diff(found) >= 4 * 4 * decoded.beat_period_s - 0.02)


@pytest.mark.parametrize("distance", [1, 3, 12])
def test_find_peaks_matches_scipy(distance: int) -> None:
    """The one peak picker keeps the peaks scipy.signal.find_peaks keeps (noisy activations
    without plateaus, where their conventions agree), crowded and isolated peaks alike."""
    from scipy.signal import find_peaks as scipy_find_peaks

    from edm.decode.peaks import find_peaks

    rng = np.random.default_rng(distance)
    x = 0.8 * bumps(np.arange(0.25, 20.0, 0.43), 1000) + rng.uniform(0, 0.3, 1000)
    for height in (None, 0.5):
        expected, _ = scipy_find_peaks(x, height=height, distance=distance)
        found = find_peaks(x, height=height, distance=distance)
        assert len(found) > 40
        np.testing.assert_array_equal(found, expected)
