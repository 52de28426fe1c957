"""``edm fit-heads --finetune-top N``: MERT's top layers trained with the heads on a store of
layer L-N hidden states (a tiny random HuBERT with MERT's front end stands in for MERT)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edm.heads.artifacts import load_heads

DEPTH = 2  # layers of the tiny model
KEY = "mert-MERT-tiny-l1"  # layer L-1: what --finetune-top 1 needs


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edm.audio import content_hash, write_audio
    from edm.backbones.mert import tiny_test_model
    from edm.data.schema import save_annotation
    from edm.store.embed import embed_library
    from edm.synth import synthesize_track

    root = tmp_path_factory.mktemp("finetune")
    model = tiny_test_model(root / "MERT-tiny", layers=DEPTH)
    (root / "audio").mkdir()
    (root / "ann").mkdir()
    for seed in (1, 2, 3):
        track = synthesize_track(seed, minutes=0.2)
        wav = root / "audio" / f"t{seed}.wav"
        write_audio(wav, track.audio, track.sample_rate)
        identity = track.truth.track.model_copy(update={"content_hash": content_hash(wav)})
        save_annotation(
            track.truth.model_copy(update={"track": identity}), root / "ann" / f"t{seed}.yaml"
        )
    store = root / "store.zarr"
    for backbone, options in (
        ("mert", {"model": str(model), "layers": "1", "device": "cpu"}),
        ("spectral", {}),
    ):
        summary = embed_library(
            [root / "audio"], store, backbone, backbone_options=options, workers=0
        )
        assert len(summary.embedded) == 3, summary.results
    return {"root": root, "model": model, "store": store, "ann": root / "ann"}


def _fit(library: dict[str, Path], out: Path, *extra: str) -> tuple[int, str]:
    from edm.cli import main

    args = [
        "fit-heads",
        "--store",
        str(library["store"]),
        "--annotations",
        str(library["ann"]),
        "--out",
        str(out),
        "--folds",
        "0",
        "--epochs",
        "2",
        "--crop",
        "8",
        "--json",
        *extra,
    ]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_top_layer_on_stored_layer_reproduces_the_last_layer(library):
    """The fine-tuning start point is MERT itself: layer 2 = top layer applied to stored layer 1,
    also when attention runs in windows shorter than the track."""
    from edm.audio import load_audio
    from edm.backbones.mert import MertBackbone
    from edm.heads.finetune import finetuned_net
    from edm.heads.model import TemporalHeads
    from edm.store import EmbeddingStore

    store = EmbeddingStore(library["store"], mode="r")
    track_id = store.track_ids(KEY)[0]
    stored = store.embeddings(track_id, KEY)
    spec = {
        "checkpoint": str(library["model"]),
        "top": 1,
        "layer": 1,
        "depth": DEPTH,
        "window_s": 30.0,
        "learning_rate": 1e-4,
    }
    net = finetuned_net(spec, TemporalHeads(32, 75.0))
    source = store.track_info(track_id).source_path
    last = MertBackbone(library["model"], layers=[2], device="cpu").embed(load_audio(source, 24000))
    # The store keeps float16: compare at its precision.
    np.testing.assert_allclose(net.features(stored), last, atol=0.05)
    assert np.abs(net.features(stored) - last).mean() < 5e-3
    windowed = finetuned_net({**spec, "window_s": 2.0}, TemporalHeads(32, 75.0))
    whole_first_window = net.features(stored[:150])
    out = windowed.features(stored)
    assert out.shape == stored.shape
    np.testing.assert_allclose(out[:150], whole_first_window, atol=1e-5)


def test_finetune_top_trains_the_layer_and_the_folder_predicts_the_same(library, tmp_path):
    from transformers import HubertModel

    from edm.analyze import embed, load_model
    from edm.heads.fit import fit_from_store
    from edm.heads.train import TrainConfig
    from edm.store import EmbeddingStore

    config = TrainConfig(epochs=2, crop_s=8.0, seed=0)
    fitted = fit_from_store(
        library["store"],
        library["ann"],
        tmp_path / "m",
        config,
        backbone_key=KEY,
        folds=0,
        finetune_top=1,
        finetune_learning_rate=1e-3,
    )
    assert not fitted.problems
    original = HubertModel.from_pretrained(library["model"]).encoder.layers[1].state_dict()
    tuned = fitted.report.heads.nets[0].top.layers[0].state_dict()
    changed = [name for name in original if not torch.equal(original[name], tuned[name])]
    assert len(changed) == len(original)  # every tensor of the top layer moved
    moved = (tuned["attention.q_proj.weight"] - original["attention.q_proj.weight"]).abs().max()
    assert 0 < float(moved) < 0.1  # the small fine-tuning rate kept it near the checkpoint

    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model"]["finetune"]["checkpoint"] == str(library["model"])
    assert saved["model"]["finetune"]["top"] == 1 and saved["model"]["finetune"]["layer"] == 1
    assert saved["backbone"]["options"]["model"] == str(library["model"])
    assert saved["backbone"]["options"]["layers"] == [1]  # the stored layer, below the tuned one

    store = EmbeddingStore(library["store"], mode="r")
    track_id = store.track_ids(KEY)[0]
    stored = store.embeddings(track_id, KEY)
    loaded = load_heads(tmp_path / "m")
    before, after = fitted.report.heads.predict(stored, 75.0), loaded.predict(stored, 75.0)
    for task in ("beat", "downbeat", "boundary"):
        np.testing.assert_array_equal(getattr(before, task), getattr(after, task))
    # `edm analyze` rebuilds the backbone from the folder: same key, the stored layer again.
    model = load_model(tmp_path / "m")
    embedded = embed(store.track_info(track_id).source_path, model)
    assert model.backbone().key == KEY
    np.testing.assert_allclose(embedded.embeddings, stored, atol=0.05)


def test_cli_finetune_writes_a_folder_and_refuses_what_it_cannot_tune(library, tmp_path):
    code, output = _fit(library, tmp_path / "ok", "--backbone", KEY, "--finetune-top", "1")
    assert code == 0, output
    assert json.loads(output)["n_labelled"] == 3
    assert load_heads(tmp_path / "ok").nets[0].spec["top"] == 1

    code, output = _fit(library, tmp_path / "a", "--backbone", "spectral", "--finetune-top", "1")
    assert code == 1 and "'spectral'; --finetune-top needs a MERT store key" in output
    code, output = _fit(library, tmp_path / "b", "--backbone", KEY, "--finetune-top", "3")
    assert code == 1 and "--finetune-top 3" in output and "has 2 layers" in output
    code, output = _fit(library, tmp_path / "c", "--backbone", KEY, "--finetune-top", "2")
    assert code == 1 and "stores layer 1; --finetune-top 2 needs layer 0" in output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
