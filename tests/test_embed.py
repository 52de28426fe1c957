"""The embed job: bad files in a batch, resume after a kill, inputs, MERT, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edm.audio import content_hash, write_audio
from edm.cli import main
from edm.store import EmbeddingStore
from edm.store.embed import TrackResult, embed_library

SR = 44100


def make_track(seed: int, seconds: float = 10.0) -> np.ndarray:
    """Kick on every beat at 120-135 BPM plus noise hats: enough to tell tracks apart."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    audio = 0.02 * rng.standard_normal(n)
    period = int(SR * 60 / rng.uniform(120, 135))
    t = np.arange(int(0.12 * SR)) / SR
    kick = 0.7 * np.sin(2 * np.pi * 55 * t) * np.exp(-t * 25)
    for start in range(int(rng.integers(0, period)), n - len(t), period):
        audio[start:start + len(t)] += kick
    return np.stack([audio, audio], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("library")
    good = [write_audio(folder / name, make_track(seed), SR)
            for seed, name in enumerate(["a.wav", "b.flac", "sub/c.mp3"])]
    (folder / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("not audio at all\n" * 20)
    write_audio(folder / "short.wav", make_track(9, seconds=1.0), SR)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff")  # not audio by extension: ignored
    return folder, good


def test_bad_files_are_reported_and_good_ones_embedded(
    library: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    folder, good = library
    store_path = tmp_path / "store.zarr"
    summary = embed_library([folder], store_path, "spectral", workers=2)
    reasons = {Path(result.path).name: result.reason for result in summary.failed}
    assert set(reasons) == {"corrupt.flac", "empty.wav", "notes.mp3", "short.wav"}
    assert "empty file" in reasons["empty.wav"]
    assert "too short (1.0 s < 8 s)" in reasons["short.wav"]
    assert all(str(folder) in reason and "\n" not in reason for reason in reasons.values())
    assert len(summary.embedded) == 3 and summary.exit_code == 1

    store = EmbeddingStore(store_path)
    assert store.track_ids() == sorted(content_hash(path) for path in good)
    track_id = content_hash(good[1])
    info = store.backbone_info(track_id, "spectral")
    assert (info.frames_per_second, info.dim, info.n_frames) == (50.0, 144, 1 + 10 * 22050 // 441)
    assert store.track_info(track_id).source_path == str(good[1].resolve())
    assert store.track_info(track_id).duration_s == pytest.approx(10.0)
    descriptors = store.descriptors(track_id, "spectral")
    assert set(descriptors) >= {"rms", "bass", "mid", "high", "onset", "centroid_hz"}
    assert descriptors["bass"].mean() > descriptors["high"].mean()  # kicks are bass

    again = embed_library([folder], store_path, "spectral", workers=0)
    assert (len(again.embedded), len(again.present), len(again.failed)) == (0, 3, 4)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from edm.store import zarr_store
    from edm.store.embed import embed_library
    publish = zarr_store.EmbeddingStore._publish
    calls = []
    def publish_then_die(self, temp, track_id, key):
        calls.append(track_id)
        if len(calls) == 3:  # the third entry is complete on disk but not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
        return publish(self, temp, track_id, key)
    zarr_store.EmbeddingStore._publish = publish_then_die
    embed_library(sys.argv[1:-1], sys.argv[-1], "spectral", workers=0)
""")


def test_killed_job_resumes_to_the_same_store(tmp_path: Path) -> None:
    files = [write_audio(tmp_path / "music" / f"t{seed}.wav", make_track(seed, 9.0), SR)
             for seed in range(5)]
    reference = tmp_path / "reference.zarr"
    assert embed_library(files, reference, workers=0).exit_code == 0

    resumed = tmp_path / "resumed.zarr"
    killed = subprocess.run([sys.executable, "-c", KILLER, *map(str, files), str(resumed)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    store = EmbeddingStore(resumed)
    assert len(store.track_ids()) == 2 and len(store.temp_entries()) == 1

    summary = embed_library(files, resumed, workers=0)
    assert (len(summary.present), len(summary.embedded)) == (2, 3)
    assert store.temp_entries() == []  # the dead writer's leftovers were swept
    expected = EmbeddingStore(reference)
    assert store.track_ids() == expected.track_ids()
    for track_id in expected.track_ids():
        np.testing.assert_array_equal(store.embeddings(track_id, "spectral"),
                                      expected.embeddings(track_id, "spectral"))
        for name, values in expected.descriptors(track_id, "spectral").items():
            np.testing.assert_array_equal(store.descriptors(track_id, "spectral")[name], values)


def test_ctrl_c_stops_cleanly_and_reports_interrupted(tmp_path: Path) -> None:
    files = [write_audio(tmp_path / f"t{seed}.wav", make_track(seed, 9.0), SR)
             for seed in range(3)]

    def interrupt_after_first(result: TrackResult, done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    summary = embed_library(files, tmp_path / "s.zarr", workers=0,
                            progress=interrupt_after_first)
    assert summary.interrupted and summary.exit_code == 130
    store = EmbeddingStore(tmp_path / "s.zarr")
    assert len(store.track_ids()) == 1 and store.temp_entries() == []


def test_annotation_folder_and_rekordbox_xml_select_the_labelled_tracks(
    library: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    from edm.data.rekordbox import write_rekordbox_xml
    from edm.data.schema import TempoSegment, TrackAnnotation, TrackIdentity, save_annotation

    _, good = library
    labelled = [TrackAnnotation(track=TrackIdentity(path=str(path), title=path.stem),
                                grid=[TempoSegment(start_s=0.1, bpm=128.0)]) for path in good[:2]]
    annotations = tmp_path / "annotations"
    for annotation in labelled:
        save_annotation(annotation, annotations / f"{annotation.track.title}.yaml")
    xml = write_rekordbox_xml(labelled, tmp_path / "rekordbox.xml").path
    expected = sorted(content_hash(path) for path in good[:2])
    for source in (annotations, xml):
        store_path = tmp_path / f"{source.name}.zarr"
        summary = embed_library([source], store_path, workers=0)
        assert summary.exit_code == 0 and len(summary.embedded) == 2
        assert EmbeddingStore(store_path).track_ids() == expected


def test_mert_and_spectral_side_by_side(library: tuple[Path, list[Path]], tmp_path: Path) -> None:
    from edm.backbones.mert import tiny_test_model

    _, good = library
    model = tiny_test_model(tmp_path / "MERT-tiny", layers=2)
    store_path = tmp_path / "store.zarr"
    assert embed_library(good[:2], store_path, workers=0).exit_code == 0
    summary = embed_library(good[:2], store_path, "mert", workers=1, backbone_options={
        "model": str(model), "layers": [1], "device": "cpu", "window_s": 3.0, "context_s": 1.0,
        "batch_tracks": 2})  # both tracks' windows share model batches
    assert summary.exit_code == 0 and len(summary.embedded) == 2
    store = EmbeddingStore(store_path)
    track_id = content_hash(good[0])
    assert store.backbone_keys(track_id) == ["mert-MERT-tiny-l1", "spectral"]
    info = store.backbone_info(track_id, "mert-MERT-tiny-l1")
    assert (info.frames_per_second, info.dim, info.layers) == (75.0, 32, [1])
    assert info.n_frames == 1 + 10 * 24000 // 320
    assert info.checkpoint == str(model)
    assert len(store.descriptors(track_id, "mert-MERT-tiny-l1")["rms"]) == info.n_frames
    assert store.embeddings(track_id, "mert-MERT-tiny-l1").shape == (info.n_frames, 32)
    from edm.audio import load_audio
    from edm.backbones.mert import MertBackbone

    alone = MertBackbone(model, layers=[1], window_s=3.0, context_s=1.0).embed(
        load_audio(good[0], 24000))
    np.testing.assert_allclose(store.embeddings(track_id, "mert-MERT-tiny-l1"), alone,
                               atol=2e-3 * np.abs(alone).max())  # float16 storage


def test_cli_embed_json_exit_code_and_store_info(
    library: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    folder, _ = library
    store_path = tmp_path / "cli.zarr"
    runner = CliRunner()
    result = runner.invoke(main, ["embed", str(folder), "--store", str(store_path),
                                  "--workers", "0", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["embedded"], report["failed"]) == (3, 4)
    assert {Path(item["path"]).name for item in report["failures"]} == {
        "corrupt.flac", "empty.wav", "notes.mp3", "short.wav"}

    result = runner.invoke(main, ["store", "info", str(store_path), "--json", "--tracks"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["tracks"] == 3 and info["backbones"]["spectral"]["dim"] == 144
    assert info["total_duration_s"] == pytest.approx(30.0)
    assert len(info["track_list"]) == 3

    result = runner.invoke(main, ["store", "info", str(store_path)])
    assert result.exit_code == 0 and "spectral" in result.output

    result = runner.invoke(main, ["embed", str(folder), "--store", str(store_path),
                                  "--layers", "6"])
    assert result.exit_code == 2 and "only apply to --backbone mert" in result.output
    not_a_store = tmp_path / "plain"
    not_a_store.mkdir()
    result = runner.invoke(main, ["store", "info", str(not_a_store)])
    assert result.exit_code == 1 and "not an embedding store" in result.output


def test_missing_inputs_are_failures_not_crashes(tmp_path: Path) -> None:
    summary = embed_library([tmp_path / "nowhere.mp3", tmp_path / "nothing"], tmp_path / "s.zarr",
                            workers=0)
    assert len(summary.failed) == 2 and summary.exit_code == 1
    assert os.path.isdir(tmp_path / "s.zarr")
