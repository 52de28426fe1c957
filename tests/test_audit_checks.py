"""Audit checks against activations simulated from a known grid, with planted errors."""

from __future__ import annotations

import numpy as np
import pytest

from edm.audit.corrections import rotate_downbeat, scale_tempo, shift_grid
from edm.audit.cue_checks import check_cues
from edm.audit.findings import Finding, rank_findings
from edm.audit.grid_checks import check_grid, delay, estimate_latency
from edm.audit.run import audit_library
from edm.audit.simulate import PLANTABLE_KINDS, activations_for, plant, truth_track
from edm.data.schema import Cue, TempoSegment


@pytest.fixture(scope="module")
def truth():
    return truth_track("t1", bpm=126.0, start_s=0.37, duration_s=120.0)


@pytest.fixture(scope="module")
def act(truth):
    return activations_for(truth)


def _kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


def test_correct_grid_has_no_findings(truth, act):
    assert check_grid(truth, act).findings == []
    assert check_cues(truth, truth.grid, act) == []


@pytest.mark.parametrize("shift_s", [0.035, -0.025, 0.06])
def test_phase_offset_is_measured_to_a_few_ms(truth, act, shift_s):
    noisy = truth.model_copy(update={"grid": shift_grid(truth.grid, shift_s)})
    result = check_grid(noisy, act)
    assert _kinds(result.findings) == ["grid_phase"]
    finding = result.findings[0]
    assert finding.fix["shift_s"] == pytest.approx(-shift_s, abs=0.003)
    assert finding.score > 0.75
    assert result.corrected_grid[0].start_s == pytest.approx(truth.grid[0].start_s, abs=0.003)


def test_phase_under_tolerance_is_not_reported(truth, act):
    noisy = truth.model_copy(update={"grid": shift_grid(truth.grid, 0.012)})
    assert check_grid(noisy, act).findings == []


@pytest.mark.parametrize("beat_shift", [1, 2, 3])
def test_downbeat_on_wrong_beat(truth, act, beat_shift):
    noisy = truth.model_copy(update={"grid": rotate_downbeat(truth.grid, beat_shift)})
    result = check_grid(noisy, act)
    assert _kinds(result.findings) == ["downbeat_shift"]
    assert result.findings[0].score > 0.9
    assert result.corrected_grid[0].beat_in_bar == truth.grid[0].beat_in_bar


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_half_and_double_tempo(truth, act, factor):
    noisy = truth.model_copy(update={"grid": scale_tempo(truth.grid, factor)})
    result = check_grid(noisy, act)
    assert result.findings[0].kind == "tempo_octave"
    assert result.findings[0].fix["new_bpm"] == pytest.approx(126.0)
    # After the octave fix the grid lands on the true beats and downbeats.
    fixed = noisy.model_copy(update={"grid": result.corrected_grid})
    np.testing.assert_allclose(fixed.downbeats()[:20], truth.downbeats()[:20], atol=0.003)


@pytest.mark.parametrize("new_bpm", [124.0, 128.5, 140.0])
def test_ignored_tempo_change(new_bpm):
    change_s = 0.2 + 64 * 60 / 126
    grid = [TempoSegment(start_s=0.2, bpm=126.0), TempoSegment(start_s=change_s, bpm=new_bpm)]
    truth = truth_track("tc", grid=grid, duration_s=120.0)
    act = activations_for(truth)
    assert check_grid(truth, act).findings == []
    noisy = truth.model_copy(update={"grid": grid[:1]})
    result = check_grid(noisy, act)
    assert _kinds(result.findings) == ["tempo_change_ignored"]
    fix = result.findings[0].fix
    assert fix["split_at_s"] == pytest.approx(change_s, abs=0.01)
    assert fix["new_bpm"] == pytest.approx(new_bpm, abs=0.05)


def test_model_latency_is_estimated_and_ignored(truth):
    late = delay(activations_for(truth), -0.03)  # the model fires 30 ms late
    tracks = [
        truth.model_copy(update={"track": truth.track.model_copy(update={"content_hash": f"c{i}"})})
        for i in range(10)
    ]
    assert estimate_latency(tracks, {t.track_id: late for t in tracks}) == pytest.approx(
        0.03, abs=0.003
    )
    assert estimate_latency(tracks[:3], {t.track_id: late for t in tracks}) == 0.0
    assert check_grid(truth, late, latency_s=0.03).findings == []
    assert _kinds(check_grid(truth, late).findings) == ["grid_phase"]


def test_cue_heuristics_without_a_model(truth):
    period = truth.grid[0].beat_period_s
    downbeats = truth.downbeats()
    cues = [
        Cue(start_s=round(downbeats[16], 6)),  # fine: phrase start
        Cue(start_s=round(downbeats[32] + 0.08, 6)),  # off the beat
        Cue(start_s=round(downbeats[48] + period, 6)),  # on beat 2
        Cue(start_s=round(downbeats[49], 6)),  # a bar after the phrase start
        Cue(start_s=round(downbeats[49] + 0.2, 6)),  # within a beat of the previous one
        Cue(start_s=130.0),  # past the end
    ]
    findings = check_cues(truth.model_copy(update={"cues": cues}))
    found = {round(f.time_s, 3): (f.kind, f.fix) for f in findings}
    assert len(findings) == 5
    assert found[round(downbeats[32] + 0.08, 3)] == (
        "cue_off_grid",
        {"move_to_s": round(downbeats[32], 4)},
    )
    assert found[round(downbeats[48] + period, 3)] == (
        "cue_moved_beat",
        {"move_to_s": round(downbeats[48], 4)},
    )
    assert found[round(downbeats[49], 3)] == (
        "cue_moved_bar",
        {"move_to_s": round(downbeats[48], 4)},
    )
    assert found[round(downbeats[49] + 0.2, 3)][0] == "cue_duplicate"
    assert found[130.0] == ("cue_past_end", {"delete": True})


def test_memory_and_hot_cue_on_the_same_beat_are_not_duplicates(truth):
    t = round(truth.downbeats()[16], 6)
    cues = [Cue(start_s=t), Cue(start_s=t, kind="hot", slot=0)]
    assert check_cues(truth.model_copy(update={"cues": cues})) == []


def test_boundary_activation_chooses_where_a_moved_cue_belongs(truth, act):
    downbeats = truth.downbeats()
    moved = round(downbeats[16] + 2 * truth.grid[0].beat_period_s, 6)  # beat 3 of bar 17
    cues = [c for c in truth.cues if abs(c.start_s - downbeats[16]) > 1] + [Cue(start_s=moved)]
    findings = check_cues(truth.model_copy(update={"cues": cues}), truth.grid, act)
    assert _kinds(findings) == ["cue_moved_beat"]
    # Two beats either way are equally near; the boundary activation says which.
    assert findings[0].fix["move_to_s"] == pytest.approx(downbeats[16], abs=1e-3)


def test_library_audit_ranks_planted_errors_first():
    kinds = PLANTABLE_KINDS
    rng = np.random.default_rng(3)
    tracks, acts, planted = [], {}, {}
    for i in range(24):
        grid = [
            TempoSegment(start_s=float(rng.uniform(0.05, 0.5)), bpm=float(rng.uniform(120, 130)))
        ]
        truth = truth_track(f"t{i:02d}", grid=grid, duration_s=100.0, phrase_bars=8)
        acts[truth.track_id] = activations_for(truth, seed=i)
        if i < len(kinds):
            truth, _ = plant(truth, kinds[i], rng)
            planted[truth.track_id] = kinds[i]
        tracks.append(truth)
    result = audit_library(tracks, acts)
    top = result.findings[: len(planted)]
    assert {f.track_id for f in top} == set(planted)
    assert sum(planted[f.track_id] == f.kind for f in top) >= len(planted) - 1
    assert all(f.score < 0.5 for f in result.findings[len(planted) :])


def test_merge_combines_sources_as_noisy_or():
    a = Finding("t", 0.0, "downbeat_shift", 0.5, {"beat_shift": 1}, source="grid")
    b = Finding("t", 0.0, "downbeat_shift", 0.8, {"beat_shift": 1}, source="cleanlab")
    c = Finding("u", 3.0, "cue_extra", 0.9, {"delete": True}, source="cleanlab")
    ranked = rank_findings([a, b, c])
    assert [f.track_id for f in ranked] == ["t", "u"]
    assert ranked[0].score == pytest.approx(0.9)
    assert ranked[0].source == "cleanlab+grid"
    with pytest.raises(ValueError, match="unknown finding kind"):
        Finding("t", 0.0, "typo", 0.5)
