"""The Zarr store: round trip, provenance, side-by-side backbones, completeness, mismatches."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edm.store import EmbeddingStore, StoreError
from edm.store.zarr_store import CHUNK_FRAMES

TRACK = {"source_path": "/music/a.mp3", "duration_s": 120.0, "sample_rate": 44100,
         "channels": 2, "file_size": 1234}


def backbone(key: str = "spectral", dim: int = 4, fps: float = 50.0) -> dict[str, object]:
    return {"name": key.split("-")[0], "key": key, "frames_per_second": fps, "dim": dim,
            "checkpoint": None if key == "spectral" else "m-a-p/MERT-v1-95M",
            "layers": None if key == "spectral" else [6], "sample_rate": 22050}


def features(frames: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((frames, dim)).astype(np.float32)


def test_round_trip_with_provenance_and_chunking(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "s.zarr", mode="a")
    data = features(6000, 4)
    rms = np.linspace(0, 1, 6000, dtype=np.float32)
    assert store.write("t1", TRACK, backbone(), data, {"rms": rms, "onset": rms[::-1]})
    reader = EmbeddingStore(tmp_path / "s.zarr")
    read = reader.embeddings("t1", "spectral")
    assert read.dtype == np.float32 and read.shape == (6000, 4)
    np.testing.assert_allclose(read, data, rtol=1e-3, atol=1e-3)  # stored as float16
    np.testing.assert_array_equal(reader.embeddings("t1", "spectral", frames=slice(10, 20)),
                                  read[10:20])
    np.testing.assert_array_equal(reader.descriptors("t1", "spectral")["onset"], rms[::-1])
    info = reader.backbone_info("t1", "spectral")
    assert (info.n_frames, info.dim, info.frames_per_second, info.dtype) == (
        6000, 4, 50.0, "float16")
    assert info.duration_s == 120.0 and info.edm_version and info.created_utc
    track = reader.track_info("t1")
    assert (track.source_path, track.duration_s, track.audio_hash, track.channels) == (
        "/music/a.mp3", 120.0, "t1", 2)
    meta = json.loads((tmp_path / "s.zarr/t1/spectral/embeddings/zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [CHUNK_FRAMES, 4]
    assert meta["data_type"] == "float16"
    assert any(codec["name"] == "zstd" for codec in meta["codecs"])


def test_backbones_side_by_side_and_find(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "s.zarr", mode="a")
    store.write("t1", TRACK, backbone(), features(100, 4), {"rms": np.zeros(100, np.float32)})
    mert = backbone("mert-MERT-v1-95M-l6", dim=8, fps=75.0)
    store.write("t1", TRACK, mert, features(150, 8), {"rms": np.zeros(150, np.float32)})
    store.write("t2", TRACK, mert, features(150, 8), {})
    assert not store.write("t2", TRACK, mert, features(150, 8), {})  # already there
    assert store.track_ids() == ["t1", "t2"]
    assert store.track_ids("spectral") == ["t1"]
    assert store.backbone_keys("t1") == ["mert-MERT-v1-95M-l6", "spectral"]
    assert store.all_backbone_keys() == {"mert-MERT-v1-95M-l6": 2, "spectral": 1}
    assert store.backbone_info("t1", "mert-MERT-v1-95M-l6").layers == [6]
    assert store.find("t2") == "t2" and store.find("t9") is None
    audio = tmp_path / "x.wav"
    audio.write_bytes(b"RIFF")
    assert store.find(audio) is None
    summary = store.summary()
    assert summary["tracks"] == 2 and summary["backbones"]["mert-MERT-v1-95M-l6"]["tracks"] == 2


def test_incomplete_entries_are_invisible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EmbeddingStore(tmp_path / "s.zarr", mode="a")
    store.write("t1", TRACK, backbone(), features(100, 4), {})
    # A writer that dies after the arrays but before `complete`: nothing becomes visible.
    original = store._publish

    def crash(*args: object) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_publish", crash)
    with pytest.raises(OSError, match="No space"):
        store.write("t2", TRACK, backbone(), features(100, 4), {})
    monkeypatch.setattr(store, "_publish", original)
    assert store.track_ids() == ["t1"] and store.temp_entries() == []
    # An entry renamed into place without its `complete` flag is not listed either.
    shutil.copytree(tmp_path / "s.zarr/t1", tmp_path / "s.zarr/t3")
    meta_path = tmp_path / "s.zarr/t3/spectral/zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["complete"]
    meta_path.write_text(json.dumps(meta))
    assert store.track_ids() == ["t1"]
    with pytest.raises(StoreError, match="track t3 is not in the store"):
        store.embeddings("t3", "spectral")
    # A stale temp folder from another host is swept after STALE_TEMP_S only.
    stale = tmp_path / "s.zarr/.tmp-otherhost-123-t9-abcd"
    stale.mkdir()
    assert store.sweep_temp() == [] and store.temp_entries() == [stale]
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.sweep_temp() == [stale]


def test_readers_name_mismatches(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "s.zarr", mode="a")
    store.write("t1", TRACK, backbone(), features(100, 4), {"rms": np.zeros(100, np.float32)})
    with pytest.raises(StoreError, match=r"t1 has no 'mert' embeddings \(it has: spectral\)"):
        store.embeddings("t1", "mert")
    with pytest.raises(StoreError, match=r"at 50\.0 fps, expected 75"):
        store.check("t1", "spectral", frames_per_second=75.0)
    with pytest.raises(StoreError, match="has dim 4, expected 768"):
        store.check("t1", "spectral", dim=768)
    meta_path = tmp_path / "s.zarr/t1/spectral/zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["dim"] = 5
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"t1 'spectral': embeddings are float16\(100, 4\), "
                                         r"attributes say float16\(100, 5\)"):
        store.embeddings("t1", "spectral")
    meta["attributes"]["key"] = "other"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="says its key is 'other'"):
        store.backbone_info("t1", "spectral")


def test_bad_writes_and_bad_stores(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "s.zarr", mode="a")
    with pytest.raises(StoreError, match="does not match dim 4"):
        store.write("t1", TRACK, backbone(), features(10, 3), {})
    with pytest.raises(StoreError, match="descriptor 'rms' has 9 frames, embeddings 10"):
        store.write("t1", TRACK, backbone(), features(10, 4), {"rms": np.zeros(9)})
    bad = features(10, 4)
    bad[3, 1] = np.nan
    with pytest.raises(StoreError, match="NaN"):
        store.write("t1", TRACK, backbone(), bad, {})
    with pytest.raises(StoreError, match="invalid track id"):
        store.write("../x", TRACK, backbone(), features(10, 4), {})
    with pytest.raises(StoreError, match="read-only"):
        EmbeddingStore(tmp_path / "s.zarr").write("t1", TRACK, backbone(), features(10, 4), {})
    with pytest.raises(StoreError, match=r"no zarr\.json"):
        EmbeddingStore(tmp_path / "missing.zarr")
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="not an edm embedding store"):
        EmbeddingStore(tmp_path / "other.zarr")
