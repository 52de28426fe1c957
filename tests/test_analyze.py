"""``edm analyze`` end to end with the shipped default model, on short synth tracks."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edm.analyze import AnalyzeError, analyze, analyze_many, load_model
from edm.analyze.writers import write_rekordbox
from edm.audio import write_audio
from edm.cli import main
from edm.data.rekordbox import read_rekordbox_xml, write_rekordbox_xml
from edm.data.schema import Cue
from edm.evaluate import evaluate_track
from edm.heads.activations import Activations
from edm.synth import synthesize_track

SR = 44100


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two 1-minute synth tracks (different genres/tempi) with their truth."""
    folder = tmp_path_factory.mktemp("audio")
    out = {}
    for seed, genre in ((11, "house"), (12, "techno")):
        track = synthesize_track(seed, genre=genre, minutes=1.0, tempo_change=False)
        path = write_audio(folder / f"{genre}.wav", track.audio, SR)
        out[genre] = (path, track.truth)
    return out


def test_default_model_finds_grid_and_sections(model, tracks) -> None:
    for path, truth in tracks.values():
        analysis = analyze(path, model)
        scores = evaluate_track(truth, analysis.to_annotation())
        assert analysis.bpm == pytest.approx(truth.grid[0].bpm, rel=0.01), path
        assert scores["beat_f"] > 0.9, (path, scores)
        assert scores["boundary_f_3s"] > 0.5, (path, scores)
        assert analysis.sections[0].start_s == 0.0
        assert analysis.sections[-1].end_s == pytest.approx(analysis.duration_s)
        assert analysis.model.startswith("default")


def _bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bad = {}
    bad["not_audio"] = folder / "notes.mp3"
    bad["not_audio"].write_text("this is not an mp3")
    bad["silence"] = write_audio(folder / "silence.wav", np.zeros((SR * 20, 2), np.float32), SR)
    clip = synthesize_track(3, genre="house", minutes=0.3).audio[: SR * 5]
    bad["short"] = write_audio(folder / "short.wav", clip, SR)
    bad["corrupt"] = folder / "corrupt.flac"
    bad["corrupt"].write_bytes(b"fLaC" + bytes(range(256)) * 8)
    return bad


def test_bad_inputs_fail_one_by_one_and_the_rest_is_analysed(tmp_path: Path, tracks) -> None:
    folder = tmp_path / "mixed"
    _bad_inputs(folder)
    good_path, _ = tracks["house"]
    track = synthesize_track(11, genre="house", minutes=1.0, tempo_change=False)
    # 48 kHz mono and 8-bit PCM are unusual but valid: they must be analysed.
    mono = track.audio.mean(axis=1)
    import soxr

    write_audio(folder / "mono48k.wav", soxr.resample(mono, SR, 48000)[:, None], 48000)
    with wave.open(str(folder / "eight_bit.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(1)
        handle.setframerate(SR)
        handle.writeframes(((mono * 0.9 + 1) * 127.5).astype(np.uint8).tobytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["analyze", str(folder), "--out", str(out), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    analysed = {Path(a["path"]).name for a in data["analyses"]}
    assert analysed == {"mono48k.wav", "eight_bit.wav"}
    for analysis in data["analyses"]:
        assert analysis["bpm"] == pytest.approx(track.truth.grid[0].bpm, rel=0.01)
    problems = "\n".join(data["problems"])
    for name in ("notes.mp3", "silence.wav", "short.wav", "corrupt.flac"):
        assert name in problems
    assert "silent" in problems and "too short" in problems
    assert sorted(p.name for p in out.iterdir()) == ["eight_bit.json", "mono48k.json"]
    assert good_path.exists()


def test_a_batch_decodes_ahead_and_gives_each_track_its_own_analysis(
    tmp_path: Path, model, tracks
) -> None:
    # analyze_many decodes the next file while one is analysed: each analysis must still be
    # its own file's, in input order, with a failing file in between.
    house, techno = tracks["house"][0], tracks["techno"][0]
    missing = tmp_path / "gone.wav"
    outcomes = list(analyze_many([(house, None), (missing, None), (techno, None)], model))
    assert [o.path for o in outcomes] == [str(house), str(missing), str(techno)]
    assert outcomes[1].analysis is None and "no such file" in outcomes[1].error
    for outcome, path in ((outcomes[0], house), (outcomes[2], techno)):
        alone = analyze(path, model)
        assert outcome.analysis.content_hash == alone.content_hash
        np.testing.assert_array_equal(outcome.analysis.grid.beats, alone.grid.beats)
        assert outcome.analysis.sections == alone.sections
    assert outcomes[0].analysis.bpm != outcomes[2].analysis.bpm


def test_missing_model_folder_is_a_clear_error(tmp_path: Path, tracks) -> None:
    path, _ = tracks["house"]
    result = CliRunner().invoke(main, ["analyze", str(path), "--models", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "model folder not found" in result.output
    with pytest.raises(AnalyzeError, match="no such file"):
        analyze(tmp_path / "missing.wav", load_model())


def test_rekordbox_round_trip_keeps_user_cues(tmp_path: Path, model, tracks) -> None:
    path, truth = tracks["techno"]
    user_cue = Cue(start_s=12.345, kind="hot", slot=2, name="my vocal")
    user = truth.model_copy(update={"cues": [user_cue], "grid": truth.grid[:1]})
    source = write_rekordbox_xml([user.model_copy(update={
        "track": user.track.model_copy(update={"path": str(path)})})], tmp_path / "lib.xml").path
    out = tmp_path / "analysed.xml"
    result = CliRunner().invoke(main, ["analyze", str(source), "--format", "rekordbox",
                                       "--out", str(out), "--plot"])
    assert result.exit_code == 0, result.output
    back = read_rekordbox_xml(out, hash_audio=False).tracks
    assert len(back) == 1
    names = [c.name for c in back[0].cues]
    assert names.count("my vocal") == 1  # the user's hot cue survives, once
    memory = [c for c in back[0].cues if c.kind == "memory"]
    # Section cues sit on downbeats of the grid written (the DJ's, kept).
    assert len(memory) >= 3 and back[0].grid == user.grid
    assert all(np.min(np.abs(back[0].downbeats() - c.start_s)) < 1e-3 for c in memory)
    assert back[0].grid[0].bpm == pytest.approx(truth.grid[0].bpm, rel=0.01)
    png = tmp_path / "techno.png"
    assert png.is_file() and png.stat().st_size > 20_000

    analysis = analyze(path, model)
    replaced = write_rekordbox([analysis], tmp_path / "replaced.xml", replace_cues=True,
                               base=source).path
    back = read_rekordbox_xml(replaced, hash_audio=False).tracks[0]
    assert "my vocal" not in [c.name for c in back.cues]


def test_json_and_jams_outputs_evaluate_as_predictions(tmp_path: Path, tracks) -> None:
    from edm.data.jams_io import save_jams

    path, truth = tracks["house"]
    truth_dir = tmp_path / "truth"
    save_jams(truth, truth_dir / "house.jams")
    for fmt in ("json", "jams"):
        out = tmp_path / fmt
        result = CliRunner().invoke(main, ["analyze", str(path), "--format", fmt,
                                           "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "default" in result.output  # the model is named with the result
        scored = CliRunner().invoke(main, ["evaluate", "--truth", str(truth_dir), "--pred",
                                           str(out), "--json"])
        assert scored.exit_code == 0, scored.output
        mean = json.loads(scored.stdout)["reports"][0]["mean"]
        assert mean["beat_f"] > 0.9


def test_store_embeddings_are_used_and_match_on_the_fly(tmp_path: Path, model, tracks) -> None:
    from edm.analyze import embed
    from edm.store import EmbeddingStore
    from edm.store.embed import embed_library

    path, _ = tracks["house"]
    embed_library([str(path)], tmp_path / "store.zarr", "spectral")
    store = EmbeddingStore(tmp_path / "store.zarr")
    stored = embed(path, model, store=store)
    fresh = embed(path, model)
    assert stored.from_store and not fresh.from_store
    assert stored.embeddings.shape == fresh.embeddings.shape
    # float16 storage: same features to ~1e-2 relative.
    np.testing.assert_allclose(stored.embeddings, fresh.embeddings, rtol=2e-2, atol=2e-2)
    assert analyze(path, model, store=store).bpm == pytest.approx(analyze(path, model).bpm,
                                                                   abs=0.01)


def test_store_entry_without_band_descriptors_gets_them_from_the_audio(
    tmp_path: Path, model, tracks
) -> None:
    """A store written before the band descriptors: analysis recomputes them from the audio
    (the stored embeddings kept), so its sections are a current store's."""
    from edm.analyze import embed
    from edm.backbones.descriptors import BAND_NAMES, SUMMARY_NAMES
    from edm.store import EmbeddingStore
    from edm.store.embed import embed_library

    path, _ = tracks["house"]
    embed_library([str(path)], tmp_path / "new.zarr", "spectral")
    new = EmbeddingStore(tmp_path / "new.zarr")
    (track_id,) = new.track_ids()
    (key,) = new.backbone_keys(track_id)
    current = new.descriptors(track_id, key)
    old = EmbeddingStore(tmp_path / "old.zarr", mode="a")
    old.write(track_id, {"duration_s": new.track_info(track_id).duration_s},
              new.backbone_info(track_id, key).config, new.embeddings(track_id, key),
              {name: current[name] for name in SUMMARY_NAMES})
    assert set(old.descriptors(track_id, key)) == set(SUMMARY_NAMES)
    embedded = embed(path, model, store=old)
    assert embedded.from_store
    for name in BAND_NAMES:
        np.testing.assert_allclose(embedded.descriptors[name], current[name], rtol=1e-5,
                                   atol=1e-7)
    from_old = analyze(path, model, store=old)
    assert len(from_old.boundaries) >= 2
    assert from_old.boundaries == analyze(path, model, store=new).boundaries


def test_onset_fallback_only_when_the_beat_head_is_silent() -> None:
    """Real music unlike the training data can leave the beat head silent: onsets take over."""
    from edm.analyze import onset_fallback
    from edm.decode import decode_beats

    fps, n = 50.0, 50 * 60
    beats = np.arange(0.3, 60, 60 / 128)
    onset = np.zeros(n)
    onset[np.round(beats * fps).astype(int)] = 1.0
    silent = Activations(np.full(n, 0.01), np.zeros(n), np.zeros(n), fps)
    rescued = onset_fallback(silent, {"onset": onset})
    assert rescued is not None
    assert decode_beats(rescued).bpm == pytest.approx(128.0, abs=0.05)
    confident = Activations(onset * 0.9, np.zeros(n), np.zeros(n), fps)
    assert onset_fallback(confident, {"onset": onset}) is None


def test_csv_lists_one_named_cue_per_section(tmp_path: Path, tracks) -> None:
    import csv

    path, _ = tracks["house"]
    out = tmp_path / "cues.csv"
    result = CliRunner().invoke(main, ["analyze", str(path), "--format", "csv", "--out", str(out),
                                       "--json"])
    assert result.exit_code == 0, result.output
    sections = json.loads(result.stdout)["analyses"][0]["annotation"]["sections"]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(sections) >= 2
    assert [float(r["start_s"]) for r in rows] == pytest.approx([s["start_s"] for s in sections],
                                                               abs=1e-3)
    # Section cues sit on downbeats: beat 1 of the grid, within a millisecond.
    assert all(r["beat_in_bar"] == "1" and abs(float(r["grid_offset_ms"])) < 1.0
               for r in rows[1:])


def test_a_fitted_energy_head_gives_the_section_energy(tmp_path: Path, tracks) -> None:
    """Heads with an energy head: `edm analyze` reports the head's energy, not the descriptors'.

    The head is fitted to a target no descriptor gives (overall = the section's position in
    the track), so only the head's numbers can show up in the output.
    """
    from edm.analyze import embed
    from edm.heads.artifacts import load_heads
    from edm.heads.energy import EnergyHead, section_features

    model = load_model()
    rows, targets, names = [], [], None
    for path, _ in tracks.values():
        embedded = embed(path, model)
        spans = [(s, s + 5.0) for s in np.arange(0.0, embedded.duration_s - 5.0, 5.0)]
        features, names = section_features(embedded.embeddings, embedded.descriptors, spans,
                                           embedded.frames_per_second)
        rows.append(features)
        targets.append([[s / embedded.duration_s] for s, _ in spans])
    head = EnergyHead(n_estimators=200).fit(np.concatenate(rows), np.concatenate(targets),
                                            target_names=["overall"], feature_names=names)
    heads = load_heads(model.path)
    heads.energy = head
    folder = heads.save(tmp_path / "with-energy")

    path, _ = tracks["techno"]
    result = CliRunner().invoke(main, ["analyze", str(path), "--models", str(folder), "--json",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    analysis = json.loads(result.stdout)["analyses"][0]
    assert analysis["energy_source"] == "energy head"
    sections = analysis["annotation"]["sections"]
    embedded = embed(path, model)
    expected = head.predict_sections(embedded.embeddings, embedded.descriptors,
                                     [(s["start_s"], s["end_s"]) for s in sections],
                                     embedded.frames_per_second)
    overall = [s["energy"]["overall"] for s in sections]
    assert overall == pytest.approx([e.overall for e in expected], abs=1e-3)
    assert overall[0] < 0.25 < 0.5 < overall[-1]  # position in the track, not loudness
    # What the head does not predict still comes from the descriptors.
    assert all(s["energy"]["bass"] is not None and s["energy"]["density"] is not None
               for s in sections)

    fallback = analyze(path, model)
    assert fallback.extra["energy_source"] == "descriptors"
    assert all(s.energy.overall == pytest.approx(1 + s.energy.level_db / 60, abs=1e-3)
               for s in fallback.sections)


def test_energy_is_the_section_level_in_db_and_compares_across_tracks(
        model, tracks, tmp_path: Path) -> None:
    """Measured energy is absolute (-60 dB -> 0, 0 dB -> 1), not rescaled per track: the
    level is the section's RMS in dB re full scale, and the same track written 20 dB quieter
    scores 20/60 lower in every section, its loudest section included."""
    from edm.analyze import embed
    from edm.audio import load_audio
    from edm.decode import section_energy

    path, _ = tracks["house"]
    loud = analyze(path, model)
    rate = model.backbone().sample_rate  # the mono mix the descriptors see (risers lose > 11 kHz)
    mono = load_audio(path, rate)
    for section in loud.sections:
        chunk = mono[int(section.start_s * rate): int(section.end_s * rate)]
        assert section.energy.level_db == pytest.approx(
            20 * np.log10(np.sqrt(np.mean(np.square(chunk)))), abs=0.2)
    quiet_path = write_audio(tmp_path / "quiet.wav",
                             0.1 * synthesize_track(11, genre="house", minutes=1.0,
                                                    tempo_change=False).audio, SR)
    # Same sections and beats for both (the heads may decode a quieter copy a little apart).
    bounds = [(s.start_s, s.end_s) for s in loud.sections]
    beats = loud.to_annotation().beats()
    quiet = [section_energy(embedded.descriptors, embedded.frames_per_second, bounds, beats)
             for embedded in (embed(path, model), embed(quiet_path, model))]
    assert [e.overall for e in quiet[0]] == pytest.approx(
        [s.energy.overall for s in loud.sections], abs=1e-4)
    for a, b in zip(*quiet, strict=True):
        assert a.level_db - b.level_db == pytest.approx(20.0, abs=0.1)
        assert a.overall - b.overall == pytest.approx(1 / 3, abs=2e-3)
        assert a.tension == pytest.approx(b.tension, abs=0.01)  # a rise in dB: level-free
    assert max(e.overall for e in quiet[1]) < max(
        e.overall for e in quiet[0]) - 0.3
