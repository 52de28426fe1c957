"""Heads: targets, tolerant loss, TCN, training (k-fold, co-teaching, pseudo-labels), energy,
artifacts and the CLI, on toy embeddings with exact truth (tests/heads_toy.py)."""

from __future__ import annotations

import json
from dataclasses import replace as replace_config

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edm.data.schema import Cue, Metadata, TempoSegment, Tier, TrackAnnotation, TrackIdentity
from edm.heads.artifacts import ArtifactError, Heads, load_heads, load_oof
from edm.heads.energy import EnergyHead, energy_targets, section_features
from edm.heads.fit import fit_energy, fit_heads, load_tracks, score_tracks
from edm.heads.loss import ShiftTolerantBCELoss, small_loss_mask, weighted_mean
from edm.heads.model import TemporalHeads
from edm.heads.targets import SECTION_LABELS, make_targets
from edm.heads.train import (
    TrainConfig,
    _crop,
    _example,
    fit_kfold,
    fit_model,
    predict_probabilities,
    pseudo_targets,
    split_validation,
)
from tests.heads_toy import DIM, FPS, toy_set, toy_track

torch.set_num_threads(1)  # the box is shared: one thread is faster than two fighting others

FAST = {"channels": 16, "coarse_layers": 6}


@pytest.fixture(scope="module")
def trained():
    """One model trained on 16 toy tracks, scored on 4 held-out ones (about 20 s)."""
    train, _ = toy_set(range(16))
    test, truth = toy_set(range(100, 104))
    config = TrainConfig(epochs=30, batch_size=4, crop_s=20.0, model=FAST)
    fit = fit_model(train, config)
    return fit, train, test, truth


# --- targets ---------------------------------------------------------------------------------


def _annotation(tier: Tier, cues: list[float], names: list[str] | None = None) -> TrackAnnotation:
    names = names or [""] * len(cues)
    return TrackAnnotation(
        track=TrackIdentity(duration_s=20.0),
        grid=[TempoSegment(start_s=0.5, bpm=120.0, beat_in_bar=2)],
        cues=[Cue(start_s=t, name=n) for t, n in zip(cues, names, strict=True)],
        metadata=Metadata(tier=tier),
    )


def test_targets_grid_and_positive_unlabeled_cues():
    fps = 50.0
    t = make_targets(_annotation(Tier.DJ_SOFTWARE, [4.0, 12.0]), 1000, fps, unlabeled_weight=0.2)
    assert np.flatnonzero(t.beat)[:3].tolist() == [0, 25, 50]  # grid extends back to 0 s
    assert np.flatnonzero(t.downbeat)[:2].tolist() == [0, 100]  # 0.5 s is beat 2 → bar at 0 s
    assert np.flatnonzero(t.boundary).tolist() == [200, 600]
    # A frame with no cue on a Tier 2 track is only weakly negative; on Tier 1 fully negative.
    assert t.boundary_weight[200] == 1.0 and t.boundary_weight[400] == pytest.approx(0.2)
    verified = make_targets(_annotation(Tier.VERIFIED, [4.0]), 1000, fps)
    assert verified.boundary_weight.min() == 1.0
    unlabeled = make_targets(_annotation(Tier.UNLABELED, [4.0]), 1000, fps)
    assert unlabeled.beat_weight.max() == 0 and unlabeled.boundary_weight.max() == 0


def test_targets_follow_the_frame_rate_and_cue_names():
    annotation = _annotation(Tier.DJ_SOFTWARE, [4.0, 12.0], ["Break", "DROP 2"])
    t75 = make_targets(annotation, 1500, 75.0)
    assert np.flatnonzero(t75.boundary).tolist() == [300, 900]
    assert t75.section[299] == -1
    assert SECTION_LABELS[t75.section[300]] == "breakdown"
    assert SECTION_LABELS[t75.section[1499]] == "drop"


def test_time_stretched_crop_keeps_events_one_frame_wide():
    track, _ = toy_track(3, duration_s=30.0)
    example = _example(track, TrainConfig())
    crop = _crop(example, 500, np.random.default_rng(0), stretch=0.05)
    assert len(crop.embeddings) == len(crop.targets.beat) <= 500
    beats = np.flatnonzero(crop.targets.beat)
    assert np.diff(beats).min() > 15  # ~23 frames apart at 125 bpm, stretched by ≤ 5 %


# --- loss ------------------------------------------------------------------------------------


def test_tolerant_loss_forgives_small_shifts_only():
    loss = ShiftTolerantBCELoss(tolerance_frames=2, pos_weight=5.0)
    target = torch.zeros(1, 60)
    target[0, 30] = 1.0
    weight = torch.ones_like(target)

    def cost(fire_at: int) -> float:
        logits = torch.full((1, 60), -8.0)
        logits[0, fire_at] = 8.0
        return float(weighted_mean(*loss(logits, target, weight)))

    assert cost(30) < 0.01 and cost(32) < 0.01  # exact and 2 frames late: both hits
    assert cost(40) > 1.0  # 10 frames late: a miss and a false alarm
    _, weights = loss(torch.zeros(1, 60), target, weight)
    # Neighbours of the positive (within 2 tolerances) are neither positives nor negatives.
    assert weights[0, 26:30].sum() == 0 and weights[0, 31:35].sum() == 0
    assert weights[0, 30] == 5.0 and weights[0, 25] == 1.0


def test_small_loss_mask_drops_the_hardest():
    values = torch.tensor([0.1, 0.2, 9.0, 0.3, 0.0])
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    assert small_loss_mask(values, weights, 0.25).tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]


# --- model -----------------------------------------------------------------------------------


def test_receptive_field_reaches_phrase_scale():
    net = TemporalHeads(input_dim=8, frames_per_second=50.0)
    assert net.receptive_field_s() > 60.0  # boundaries need tens of seconds of context
    assert TemporalHeads(input_dim=8, frames_per_second=75.0).pool == 6


def test_model_gives_same_numbers_on_a_crop_as_on_the_track():
    torch.manual_seed(0)
    net = TemporalHeads(
        input_dim=4, frames_per_second=50.0, channels=8, fine_layers=3, coarse_layers=3
    ).eval()
    x = torch.randn(1, 4, 2000)
    whole = net(x)["boundary"][0]
    crop = net(x[..., 400:1600])["boundary"][0]  # starts on a multiple of the pool factor
    margin = 200  # more than the receptive field's half-width
    assert torch.allclose(whole[400 + margin : 1600 - margin], crop[margin:-margin], atol=1e-5)


# --- training --------------------------------------------------------------------------------


def test_trained_heads_find_beats_downbeats_and_boundaries(trained):
    fit, _, test, truth = trained
    scores = score_tracks({t.track_id: fit.predict(t.embeddings) for t in test}, truth)
    assert scores["beat_f"] >= 0.9
    assert scores["downbeat_f"] >= 0.6  # calling every beat a downbeat scores 0.4
    assert scores["boundary_f_3s"] >= 0.7
    assert scores["boundary_f_0.5s"] >= 0.6
    # The same bounds fail for an untrained net: they measure learning, not the toy data.
    untrained = TemporalHeads(DIM, FPS, **FAST)
    untrained.set_input_stats(
        *[torch.from_numpy(v) for v in (test[0].embeddings.mean(0), test[0].embeddings.std(0))]
    )
    baseline = score_tracks(
        {t.track_id: predict_probabilities([untrained], t.embeddings, FPS) for t in test}, truth
    )

    assert baseline["beat_f"] < 0.5 and baseline["downbeat_f"] < 0.5


def test_a_fit_started_from_a_trained_model_keeps_what_it_learned(trained, tmp_path):
    fit, train, test, truth = trained
    Heads(fit.nets, backbone_key="toy", frames_per_second=FPS,
          section_labels=fit.section_labels).save(tmp_path / "m")
    # One epoch on four tracks at a tiny learning rate: only the starting weights can score.
    config = TrainConfig(epochs=1, batch_size=4, crop_s=20.0, model=FAST, learning_rate=1e-6)
    warm = fit_model(train[:4], replace_config(config, init=str(tmp_path / "m")))
    cold = fit_model(train[:4], config)

    def scores(result):
        return score_tracks({t.track_id: result.predict(t.embeddings) for t in test}, truth)

    assert scores(warm)["beat_f"] >= 0.9 and scores(warm)["boundary_f_3s"] >= 0.7
    assert scores(cold)["beat_f"] < 0.5
    # Input statistics come with the weights they were trained with.
    np.testing.assert_array_equal(warm.nets[0].input_mean, fit.nets[0].input_mean)


def test_warm_start_keeps_the_outputs_both_nets_have_and_refuses_another_net(trained, tmp_path):
    from edm.heads.train import warm_start

    fit, *_ = trained
    Heads(fit.nets, backbone_key="toy", frames_per_second=FPS,
          section_labels=fit.section_labels).save(tmp_path / "m")
    source = fit.nets[0].out.weight.detach()
    assert source.shape[0] == 3 + len(SECTION_LABELS)
    without_sections = TemporalHeads(DIM, FPS, **FAST)
    warm_start(without_sections, str(tmp_path / "m"), 0)
    torch.testing.assert_close(without_sections.out.weight.detach(), source[:3])
    wider = TemporalHeads(DIM, FPS, channels=24, coarse_layers=6)
    with pytest.raises(ValueError, match=r"m: its nets cannot start this fit \(channels 16"):
        warm_start(wider, str(tmp_path / "m"), 0)
    with pytest.raises(ValueError, match="fine-tunes MERT layers"):  # not a TemporalHeads
        warm_start(torch.nn.Linear(DIM, 3), str(tmp_path / "m"), 0)


def test_init_default_starts_from_the_shipped_model_only_on_its_backbone(tmp_path):
    from edm.heads.artifacts import DEFAULT_MODEL_DIR
    from edm.heads.fit import FitError, resolve_init

    spectral = {"name": "spectral", "dim": 144, "frames_per_second": 50.0, "config": {}}
    toy = {"name": "toy", "dim": DIM, "frames_per_second": FPS, "config": {}}
    assert resolve_init("default", spectral, TrainConfig())[0] == str(DEFAULT_MODEL_DIR)
    folder, why = resolve_init("default", toy, TrainConfig())
    assert folder == "" and "name 'spectral' vs the store's 'toy'" in why
    assert resolve_init("default", spectral, TrainConfig(model={"channels": 8}))[0] == ""
    assert resolve_init("none", spectral, TrainConfig())[0] == ""
    with pytest.raises(FitError, match=r"default_model: cannot start this fit \(dim 144"):
        resolve_init(DEFAULT_MODEL_DIR, {**spectral, "dim": 768}, TrainConfig())
    with pytest.raises(FitError, match=r"no config\.json"):
        resolve_init(tmp_path, spectral, TrainConfig())


def test_kfold_predicts_every_track_from_a_model_that_never_saw_it():
    tracks, _ = toy_set(range(6), duration_s=20.0)
    config = TrainConfig(epochs=2, batch_size=4, crop_s=10.0, model=FAST)
    result = fit_kfold(tracks, config, folds=3)
    assert set(result.oof) == {t.track_id for t in tracks}
    assert sorted(result.fold_of.values()) == [0, 0, 1, 1, 2, 2]
    for track in tracks:
        assert result.oof[track.track_id].n_frames == track.n_frames
        # The OOF numbers are those of the model whose fold held the track out.
        fold_model = result.fits[result.fold_of[track.track_id]]
        np.testing.assert_array_equal(
            fold_model.predict(track.embeddings).beat, result.oof[track.track_id].beat
        )


def test_co_teaching_trains_two_nets_through_a_noisy_grid():
    clean, _ = toy_set(range(10), duration_s=30.0)
    noisy, _ = toy_set(range(10, 14), duration_s=30.0, phase_error_s=0.2)  # 4 tracks off-grid
    test, truth = toy_set(range(200, 202), duration_s=30.0)
    config = TrainConfig(
        epochs=25,
        batch_size=4,
        crop_s=20.0,
        co_teaching=True,
        forget_rate=0.2,
        warmup_epochs=3,
        model=FAST,
    )
    fit = fit_model([*clean, *noisy], config)
    assert len(fit.nets) == 2
    scores = score_tracks({t.track_id: fit.predict(t.embeddings) for t in test}, truth)
    assert scores["beat_f"] >= 0.6  # an untrained net scores about 0.4


def test_pseudo_targets_keep_only_confident_frames(trained):
    fit, _, test, _ = trained
    config = TrainConfig(pseudo_threshold=0.5, pseudo_negative=0.1, pseudo_weight=0.5)
    activations = fit.predict(test[0].embeddings)
    targets = pseudo_targets(activations, config)
    beats = np.flatnonzero(targets.beat)
    assert len(beats) > 10 and np.all(activations.beat[beats] >= 0.5)
    unsure = (activations.beat > 0.1) & (targets.beat == 0)
    assert targets.beat_weight[unsure].max() == 0  # uncertain frames are left out
    assert targets.beat_weight.max() == 0.5


# --- energy ----------------------------------------------------------------------------------


def test_energy_head_beats_the_mean_out_of_sample():
    tracks, truth = toy_set(range(30), duration_s=30.0)
    # Train on the truth energies of 24 tracks; score sections of 6 others.
    labelled = [t for t in tracks]
    for track in labelled:
        track.annotation = truth[track.track_id]
    fit = fit_energy(labelled[:24], folds=3)
    assert fit.head is not None and "overall" in fit.head.targets_
    errors, baseline = [], []
    mean_overall = np.mean([s.energy.overall for t in labelled[:24] for s in t.annotation.sections])
    for track in labelled[24:]:
        sections, targets = energy_targets(track.annotation)
        predicted = fit.head.predict_sections(track.embeddings, track.descriptors, sections, FPS)
        errors += [abs(p.overall - y) for p, y in zip(predicted, targets[:, 0], strict=True)]
        baseline += [abs(mean_overall - y) for y in targets[:, 0]]
    assert np.mean(errors) < 0.5 * np.mean(baseline)
    assert fit.oof_mae["overall"] < 0.1


def test_unrated_sections_train_on_the_energy_that_analysis_reports():
    """Where nobody rated a track, the head's targets are the descriptor energy decoding
    reports (one definition), on the fixed dB scale: the same track 20 dB quieter gets targets
    exactly 20/60 lower, so loudness stays comparable across tracks."""
    from dataclasses import replace

    from edm.data.schema import Section
    from edm.decode import section_energy
    from edm.heads.fit import energy_rows

    (track,), truth = toy_set([3], duration_s=30.0)
    unrated = [Section(start_s=s.start_s, end_s=s.end_s) for s in truth[track.track_id].sections]
    track.annotation = track.annotation.model_copy(update={"sections": unrated})
    _, targets = energy_rows(track)
    decoded = section_energy(track.descriptors, FPS, [(s.start_s, s.end_s) for s in unrated],
                             np.zeros(0))
    bands = ["overall", "bass", "mid", "high"]
    measured = np.array([[getattr(e, band) for band in bands] for e in decoded])
    np.testing.assert_allclose(targets[:, :4], measured, atol=1e-4)
    assert np.isnan(targets[:, 4]).all()  # nobody rated it
    levels = [s.energy.overall for s in truth[track.track_id].sections]  # the toy's rms
    # Within a frame at each edge of the toy's sections.
    np.testing.assert_allclose(targets[:, 0], 1 + 20 * np.log10(levels) / 60, atol=1e-3)
    quiet = replace(track, descriptors={k: 0.1 * v for k, v in track.descriptors.items()})
    np.testing.assert_allclose(targets[:, :4] - energy_rows(quiet)[1][:, :4], 20 / 60, atol=1e-4)


def test_section_features_are_relative_to_the_loudest_section():
    embeddings = np.zeros((500, 2), np.float32)
    rms = np.concatenate([np.full(250, 0.2), np.full(250, 0.4)]).astype(np.float32)
    features, names = section_features(embeddings, {"rms": rms}, [(0, 5), (5, 10)], 50.0)
    column = names.index("rms_relative")
    assert features[:, column].tolist() == pytest.approx([0.5, 1.0])


def test_section_features_ignore_band_descriptors():
    """A store entry written before the band descriptors and one written after give the
    energy head the same features, so one head serves both."""
    embeddings = np.zeros((500, 2), np.float32)
    rms = np.concatenate([np.full(250, 0.2), np.full(250, 0.4)]).astype(np.float32)
    bands = {f"band_{i:02d}": np.full(500, 0.01 * (i + 1), np.float32) for i in range(32)}
    old = section_features(embeddings, {"rms": rms}, [(0, 5), (5, 10)], 50.0)
    new = section_features(embeddings, {"rms": rms, **bands}, [(0, 5), (5, 10)], 50.0)
    assert new[1] == old[1] and not any(name.startswith("band_") for name in new[1])
    np.testing.assert_array_equal(new[0], old[0])


# --- artifacts and CLI -----------------------------------------------------------------------


def test_saved_heads_load_back_and_predict_identical_numbers(trained, tmp_path):
    fit, _train, test, truth = trained
    energy = EnergyHead(n_estimators=20)
    rows = [
        section_features(t.embeddings, t.descriptors, truth[t.track_id].sections, FPS)[0]
        for t in test
    ]
    targets = np.concatenate([energy_targets(truth[t.track_id])[1] for t in test])
    energy.fit(np.concatenate(rows), targets)
    heads = Heads(
        fit.nets,
        backbone_key="toy",
        frames_per_second=FPS,
        section_labels=fit.section_labels,
        energy=energy,
    )
    oof = {t.track_id: fit.predict(t.embeddings) for t in test[:2]}
    heads.save(tmp_path / "m", metrics={"beat_f": 1.0}, oof=oof)
    loaded = load_heads(tmp_path / "m")
    before = heads.predict(test[0].embeddings, FPS)
    after = loaded.predict(test[0].embeddings, FPS)
    for task in ("beat", "downbeat", "boundary"):
        # Saved from torch, loaded back as numpy (edm.heads.inference): equal to float32 rounding.
        np.testing.assert_allclose(getattr(before, task), getattr(after, task), atol=1e-5)
    assert after.section_labels == before.section_labels
    sections = truth[test[0].track_id].sections
    assert heads.predict_energy(
        test[0].embeddings, test[0].descriptors, sections, FPS
    ) == loaded.predict_energy(test[0].embeddings, test[0].descriptors, sections, FPS)
    back = load_oof(tmp_path / "m")
    assert set(back) == set(oof)
    np.testing.assert_array_equal(back[test[0].track_id].boundary, oof[test[0].track_id].boundary)
    assert back[test[0].track_id].frames_per_second == FPS
    with pytest.raises(ValueError, match="fps"):
        loaded.predict(test[0].embeddings, 75.0)


def test_load_heads_names_the_folder_when_broken(tmp_path):
    with pytest.raises(ArtifactError, match=r"no config\.json"):
        load_heads(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"config\.json"):
        load_heads(tmp_path)


def _toy_store(path, tracks):
    from edm.store import EmbeddingStore

    store = EmbeddingStore(path, mode="a")
    config = {"name": "toy", "key": "toy", "frames_per_second": FPS, "dim": DIM}
    for track in tracks:
        store.write(
            track.track_id,
            {"source_path": f"{track.track_id}.wav", "duration_s": 20.0},
            config,
            track.embeddings,
            track.descriptors,
        )
    return EmbeddingStore(path, mode="r")


def test_fit_heads_cli_writes_a_folder_the_audit_can_read(tmp_path):
    from edm.cli import main
    from edm.data.schema import save_annotation

    tracks, _ = toy_set(range(6), duration_s=20.0)
    _toy_store(tmp_path / "store.zarr", tracks)
    (tmp_path / "ann").mkdir()
    for track in tracks:
        save_annotation(track.annotation, tmp_path / "ann" / f"{track.track_id}.yaml")
    stray = tracks[0].annotation.model_copy(update={"track": TrackIdentity(content_hash="absent")})
    save_annotation(stray, tmp_path / "ann" / "stray.yaml")
    result = CliRunner().invoke(
        main,
        [
            "fit-heads",
            "--store",
            str(tmp_path / "store.zarr"),
            "--annotations",
            str(tmp_path / "ann"),
            "--out",
            str(tmp_path / "m"),
            "--folds",
            "2",
            "--epochs",
            "2",
            "--crop",
            "10",
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output  # fitted, but one annotation had no embeddings
    report = json.loads(result.stdout)
    assert report["n_labelled"] == 6 and "beat_f" in report["oof_vs_labels"]
    assert any("absent" in line for line in report["problems"])
    assert len(load_oof(tmp_path / "m")) == 6
    assert load_heads(tmp_path / "m").backbone_key == "toy"


def test_load_tracks_matches_by_content_hash(tmp_path):
    tracks, _ = toy_set(range(2), duration_s=40.0)
    store = _toy_store(tmp_path / "s.zarr", tracks)
    loaded = load_tracks(store, [t.annotation for t in tracks], include_unlabeled=False)
    assert [t.track_id for t in loaded.tracks] == [t.track_id for t in tracks]
    np.testing.assert_allclose(loaded.tracks[0].embeddings, tracks[0].embeddings, atol=2e-2)
    report = fit_heads(
        loaded.tracks, TrainConfig(epochs=1, crop_s=10.0, model=FAST), backbone_key="toy", folds=0
    )
    assert report.heads.energy is not None  # descriptor-derived energy targets


def test_one_model_fit_skips_out_of_fold_energy_but_keeps_the_head(tmp_path):
    tracks, _ = toy_set(range(4), duration_s=40.0)
    config = TrainConfig(epochs=1, crop_s=10.0, model=FAST)
    one = fit_heads(tracks, config, backbone_key="toy", folds=0)
    assert one.heads.energy is not None and one.metrics["energy_mae_oof"] == {}
    checked = fit_heads(tracks, config, backbone_key="toy", folds=2, workers=1)
    assert set(checked.metrics["energy_mae_oof"]) >= {"overall", "bass"}


def test_tier1_labels_beside_unlabeled_tracks_all_train():
    # All labelled tracks Tier 1 plus Tier 3 audio: holding the Tier 1 tracks out for validation
    # would leave the teacher nothing to train on.
    tracks, _ = toy_set(range(4), duration_s=20.0)
    for track in tracks[:2]:
        track.annotation = track.annotation.model_copy(
            update={"metadata": Metadata(tier=Tier.VERIFIED)})
    for track in tracks[2:]:
        track.annotation = track.annotation.model_copy(
            update={"grid": [], "cues": [], "metadata": Metadata(tier=Tier.UNLABELED)})
    assert split_validation(tracks) == (tracks, [])
    # With Tier 2 labels beside them, the Tier 1 tracks validate.
    tracks[1].annotation = tracks[1].annotation.model_copy(
        update={"metadata": Metadata(tier=Tier.DJ_SOFTWARE)})
    assert split_validation(tracks) == ([tracks[1], *tracks[2:]], [tracks[0]])
    assert split_validation(tracks, TrainConfig(tier1_validation=False)) == (tracks, [])


def test_pseudo_label_student_trains_on_unlabeled_tracks():
    from edm.heads.train import fit_pseudo_label

    tracks, _ = toy_set(range(6), duration_s=20.0)
    for track in tracks[4:]:
        track.annotation = track.annotation.model_copy(
            update={"grid": [], "cues": [], "metadata": Metadata(tier=Tier.UNLABELED)}
        )
    assert [t.labelled for t in tracks] == [True] * 4 + [False] * 2
    config = TrainConfig(epochs=2, batch_size=4, crop_s=10.0, pseudo_label=True, model=FAST)
    student = fit_pseudo_label(tracks, config)
    teacher = fit_model(tracks[:4], replace_config(config, pseudo_label=False))
    # The student saw 6 tracks per epoch (two batches), the teacher 4 (one batch).
    assert len(student.losses) == len(teacher.losses) == 2
    assert not np.array_equal(
        student.predict(tracks[0].embeddings).beat, teacher.predict(tracks[0].embeddings).beat
    )
