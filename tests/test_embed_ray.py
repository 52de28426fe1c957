"""The embed job on a local Ray instance: same results and guarantees as the local job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edm.audio import content_hash, write_audio
from edm.store import EmbeddingStore
from edm.store.embed import embed_library

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def test_ray_job_matches_local_job_and_resumes(local_ray: None, tmp_path: Path) -> None:
    from edm.store.ray_runner import embed_library_ray

    rng = np.random.default_rng(0)
    good = [write_audio(tmp_path / "music" / f"t{i}.flac",
                        (0.1 * rng.standard_normal((44100 * 9, 2))).astype(np.float32), 44100)
            for i in range(3)]
    (tmp_path / "music" / "broken.mp3").write_text("no audio here")
    store_path = tmp_path / "ray.zarr"
    summary = embed_library_ray([tmp_path / "music"], store_path, "spectral")
    assert (len(summary.embedded), len(summary.failed)) == (3, 1)
    assert "broken.mp3" in summary.failed[0].reason and summary.exit_code == 1
    again = embed_library_ray([tmp_path / "music"], store_path, "spectral")
    assert (len(again.embedded), len(again.present)) == (0, 3)

    local = tmp_path / "local.zarr"
    embed_library([tmp_path / "music"], local, workers=0)
    remote_store, local_store = EmbeddingStore(store_path), EmbeddingStore(local)
    assert remote_store.track_ids() == local_store.track_ids() == sorted(map(content_hash, good))
    for track_id in local_store.track_ids():
        np.testing.assert_array_equal(remote_store.embeddings(track_id, "spectral"),
                                      local_store.embeddings(track_id, "spectral"))


def test_cli_ray_flag(local_ray: None, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from edm.cli import main

    music = tmp_path / "music"
    write_audio(music / "a.wav", (0.1 * np.random.default_rng(5).standard_normal((44100 * 9, 2)))
                .astype(np.float32), 44100)
    (music / "empty.flac").write_bytes(b"")
    # The test's Ray session is already up, so the address is not dialled.
    result = CliRunner().invoke(main, ["embed", str(music), "--store", str(tmp_path / "s.zarr"),
                                       "--ray", "auto", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["embedded"], report["failed"]) == (1, 1)
    assert "empty file" in report["failures"][0]["reason"]
