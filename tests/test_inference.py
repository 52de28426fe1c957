"""The numpy forward pass (edm.heads.inference) against the torch TemporalHeads it replaces."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from edm.analyze import DEFAULT_MODEL_DIR
from edm.heads.artifacts import ArtifactError, Heads, load_heads
from edm.heads.inference import NumpyHeads, predict_numpy
from edm.heads.model import TemporalHeads
from edm.heads.train import predict_probabilities

TASKS = ("beat", "downbeat", "boundary", "section")


def _torch_net(n_sections: int, seed: int) -> TemporalHeads:
    torch.manual_seed(seed)
    net = TemporalHeads(12, 50.0, channels=8, fine_layers=3, coarse_layers=4, n_sections=n_sections)
    net.set_input_stats(torch.randn(12), torch.rand(12) + 0.5)
    return net.eval()


def _as_numpy(net: TemporalHeads) -> NumpyHeads:
    return NumpyHeads(net.config(), {k: v.numpy() for k, v in net.state_dict().items()})


def _max_difference(a, b) -> float:
    return max(float(np.abs(getattr(a, t) - getattr(b, t)).max()) for t in TASKS)


@pytest.mark.parametrize("n_frames", [1, 3, 7, 8, 1001])
def test_random_net_matches_torch_on_lengths_the_pool_does_not_divide(n_frames):
    nets = [_torch_net(4, seed) for seed in (0, 1)]  # two nets: averaged like co-teaching
    assert nets[0].pool == 4
    embeddings = np.random.default_rng(n_frames).normal(2.0, 3.0, (n_frames, 12))
    labels = ("a", "b", "c", "d")
    reference = predict_probabilities(nets, embeddings.astype(np.float32), 50.0, labels)
    ours = predict_numpy([_as_numpy(net) for net in nets], embeddings, 50.0, labels)
    assert ours.section.shape == (n_frames, 4) and ours.section_labels == labels
    assert _max_difference(reference, ours) < 1e-4
    with torch.no_grad():
        logits = nets[0](torch.from_numpy(embeddings.T.astype(np.float32))[None])
    mine = _as_numpy(nets[0]).forward(embeddings.T.astype(np.float32))
    np.testing.assert_allclose(mine["boundary"], logits["boundary"][0].numpy(), atol=1e-4)
    np.testing.assert_allclose(mine["section"], logits["section"][0].numpy(), atol=1e-4)


def test_default_model_predicts_like_torch():
    heads = load_heads(DEFAULT_MODEL_DIR)
    assert all(isinstance(net, NumpyHeads) for net in heads.nets)
    from safetensors.torch import load_file

    weights = load_file(str(DEFAULT_MODEL_DIR / "heads.safetensors"))
    nets = []
    for index, numpy_net in enumerate(heads.nets):  # one net per training seed, averaged
        net = TemporalHeads.from_config(numpy_net.config())
        prefix = f"net{index}."
        net.load_state_dict({k.removeprefix(prefix): v for k, v in weights.items()
                             if k.startswith(prefix)})
        nets.append(net.eval())
    torch_heads = Heads(
        nets,
        backbone_key=heads.backbone_key,
        frames_per_second=50.0,
        section_labels=heads.section_labels,
    )
    embeddings = np.random.default_rng(5).normal(0.0, 1.0, (3001, heads.input_dim))
    embeddings = (embeddings * 0.5 + 0.2).astype(np.float32)
    ours = heads.predict(embeddings, 50.0)
    reference = torch_heads.predict(embeddings, 50.0)
    assert _max_difference(reference, ours) < 1e-4
    assert ours.section_labels == ("intro", "buildup", "drop", "breakdown", "outro")


def test_heads_saved_from_numpy_load_back_identical(tmp_path):
    net = _as_numpy(_torch_net(0, 3))
    heads = Heads([net], backbone_key="toy", frames_per_second=50.0)
    heads.save(tmp_path / "m")
    loaded = load_heads(tmp_path / "m")
    embeddings = np.random.default_rng(0).normal(size=(99, 12)).astype(np.float32)
    np.testing.assert_array_equal(
        heads.predict(embeddings, 50.0).boundary, loaded.predict(embeddings, 50.0).boundary
    )
    assert loaded.predict(embeddings, 50.0).section is None


def test_weights_that_do_not_fit_the_config_name_the_file(tmp_path):
    from safetensors.numpy import load_file, save_file

    Heads([_as_numpy(_torch_net(0, 3))], backbone_key="toy", frames_per_second=50.0).save(
        tmp_path / "m"
    )
    path = tmp_path / "m" / "heads.safetensors"
    weights = load_file(str(path))
    weights["net0.out.weight"] = weights["net0.out.weight"][:2]
    save_file(weights, str(path))
    with pytest.raises(ArtifactError, match=r"heads\.safetensors.*out\.weight"):
        load_heads(tmp_path / "m")


def test_analyze_model_loads_and_predicts_without_torch():
    code = (
        "import sys, numpy as np\n"
        "from edm.analyze import load_model\n"
        "heads = load_model().heads\n"
        "a = heads.predict(np.zeros((500, heads.input_dim), np.float32), 50.0)\n"
        "assert a.beat.shape == (500,), a.beat.shape\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
