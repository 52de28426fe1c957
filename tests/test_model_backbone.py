"""Heads remember the backbone settings of the store they were fitted on, and ``edm analyze``
rebuilds exactly that backbone (a tiny random HuBERT with MERT's front end stands in for MERT).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

#: Not the tiny model's defaults (middle layer, no projection): analysis must not guess them.
LAYER, PROJECT_DIM = 2, 8
KEY = f"mert-MERT-tiny-l{LAYER}-p{PROJECT_DIM}"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edm.audio import content_hash, write_audio
    from edm.backbones.mert import tiny_test_model
    from edm.data.schema import save_annotation
    from edm.heads.fit import fit_from_store
    from edm.heads.train import TrainConfig
    from edm.store.embed import embed_library
    from edm.synth import synthesize_track

    root = tmp_path_factory.mktemp("model-backbone")
    checkpoint = tiny_test_model(root / "MERT-tiny", layers=2)
    (root / "audio").mkdir()
    (root / "ann").mkdir()
    for seed in (1, 2):
        track = synthesize_track(seed, minutes=0.2)
        wav = write_audio(root / "audio" / f"t{seed}.wav", track.audio, track.sample_rate)
        identity = track.truth.track.model_copy(update={"content_hash": content_hash(wav)})
        save_annotation(track.truth.model_copy(update={"track": identity}),
                        root / "ann" / f"t{seed}.yaml")
    options = {"model": str(checkpoint), "layers": [LAYER], "project_dim": PROJECT_DIM,
               "device": "cpu"}
    summary = embed_library([root / "audio"], root / "store.zarr", "mert",
                            backbone_options=options, workers=0)
    assert len(summary.embedded) == 2 and summary.backbone_key == KEY
    fit_from_store(root / "store.zarr", root / "ann", root / "heads",
                   TrainConfig(epochs=1, crop_s=8.0, seed=0), folds=0)
    return {"root": root, "heads": root / "heads", "store": root / "store.zarr",
            "audio": root / "audio" / "t1.wav"}


def test_analysis_rebuilds_the_stored_backbone(fitted) -> None:
    from edm.analyze import embed, load_model
    from edm.store import EmbeddingStore

    saved = json.loads((fitted["heads"] / "config.json").read_text())["backbone"]
    assert saved["key"] == KEY and saved["name"] == "mert"
    model = load_model(fitted["heads"])
    backbone = model.backbone()
    assert backbone.key == KEY and backbone.layers == [LAYER] and backbone.dim == PROJECT_DIM
    store = EmbeddingStore(fitted["store"])
    track_id = store.find(fitted["audio"])
    fresh = embed(fitted["audio"], model)  # computed now, not read from the store
    assert not fresh.from_store
    # The same features as at training time (the store keeps float16).
    np.testing.assert_allclose(fresh.embeddings, store.embeddings(track_id, KEY), atol=0.05)


def test_a_key_mismatch_is_refused_in_one_line(fitted, tmp_path: Path) -> None:
    from edm.cli import main

    folder = tmp_path / "edited"
    folder.mkdir()
    for file in fitted["heads"].iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["backbone"]["options"]["layers"] = [1]  # no longer what made the embeddings
    (folder / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["analyze", str(fitted["audio"]), "--models", str(folder),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if KEY in line]
    assert len(lines) == 1, result.output
    assert str(folder) in lines[0] and "mert-MERT-tiny-l1-p8" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
