"""``edm synth --variety broad``: more of what real arrangements do; classic stays as it was."""

from __future__ import annotations

import dataclasses

import numpy as np

from edm.synth.arrangement import BROAD_GENRES, GENRES, MASTERING, plan_arrangement
from edm.synth.score import write_score


def test_classic_is_the_default_and_never_draws_broad_material() -> None:
    for seed in range(20):
        plan = plan_arrangement(seed, minutes=4.0)
        assert plan == plan_arrangement(seed, minutes=4.0, variety="classic")
        assert plan.genre.name in GENRES and plan.mastering == "club"
        assert not any(s.halftime for s in plan.sections)
        assert all(s.n_bars in (2, 4, 6, 8, 10, 14, 16, 18, 30, 32, 34) for s in plan.sections)


def test_broad_draws_genres_phrase_lengths_halftime_and_mastering() -> None:
    plans = [plan_arrangement(seed, minutes=4.0, variety="broad") for seed in range(40)]
    genres = {p.genre.name for p in plans}
    lengths = {s.n_bars for p in plans for s in p.sections}
    assert genres & set(BROAD_GENRES) and genres & set(GENRES)
    assert {6, 12, 20, 24, 36} <= lengths and min(lengths) >= 4 and max(lengths) <= 36
    assert 5 <= sum(any(s.halftime for s in p.sections) for p in plans) <= 35
    assert {p.mastering for p in plans} == set(MASTERING)
    for plan in plans:  # sections still tile the track, each starting on a downbeat
        starts = [s.start_bar for s in plan.sections]
        assert starts == [0, *[s.end_bar for s in plan.sections[:-1]]]


def test_halftime_sections_and_kickless_grooves_are_in_the_score() -> None:
    plan = plan_arrangement(2, genre="house", minutes=3.0, variety="broad")
    drop = next(i for i, s in enumerate(plan.sections) if s.label == "drop")
    sections = list(plan.sections)
    sections[drop] = dataclasses.replace(sections[drop], halftime=True)
    plan = dataclasses.replace(plan, sections=tuple(sections))
    parts = write_score(plan, np.random.default_rng(0))
    first, last = sections[drop].start_bar * 4, sections[drop].end_bar * 4
    kicks = np.asarray(parts["kick"].beats)
    inside = kicks[(kicks >= first) & (kicks < last)]
    assert len(inside) and np.all(np.mod(inside, 4) == 0)  # kick on the bar's first beat
    if "backbeat" in parts:
        snares = np.asarray(parts["backbeat"].beats)
        snares = snares[(snares >= first) & (snares < last)]
        assert np.all(np.mod(snares, 4) == 2)
    kickless = plan_arrangement(4, genre="kickless", minutes=2.0, variety="broad")
    score = write_score(kickless, np.random.default_rng(0))
    # No groove kick: at most the one final hit that ends every track.
    assert "kick" not in score or len(score["kick"].beats) <= 1
    assert len(score["hats"].beats) > 0


def test_sidechain_before_a_late_first_kick_is_unity_not_nan() -> None:
    # A kick-less intro of 90 s put exp(90 s / 0.1 s) = inf into the pump and inf * 0 = NaN
    # into every sample before the first kick.
    from edm.synth.render import SAMPLE_RATE, _sidechain

    kicks = np.array([90 * SAMPLE_RATE, 90 * SAMPLE_RATE + SAMPLE_RATE // 2])
    gain = _sidechain(91 * SAMPLE_RATE, kicks, depth=0.6, release_s=0.1)
    assert np.isfinite(gain).all()
    assert np.all(gain[: 90 * SAMPLE_RATE] == 1.0)
    assert gain[90 * SAMPLE_RATE + SAMPLE_RATE // 100] < 0.5  # ducked 10 ms after the kick
