"""Backbones: frame alignment, feature behaviour on known signals, MERT loading and windowing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edm.backbones import Backbone, compute_descriptors, frame_count, get_backbone
from edm.backbones.spectral import FEATURE_NAMES, SpectralBackbone

SR = 22050


def column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def kicks(times_s: list[float], seconds: float, sample_rate: int = SR) -> np.ndarray:
    """Decaying 60 Hz thumps with a click at each time, over faint noise."""
    rng = np.random.default_rng(0)
    audio = 0.001 * rng.standard_normal(int(seconds * sample_rate)).astype(np.float32)
    length = int(0.15 * sample_rate)
    t = np.arange(length) / sample_rate
    thump = (np.sin(2 * np.pi * 60 * t) * np.exp(-t * 30)).astype(np.float32)
    for time_s in times_s:
        start = int(time_s * sample_rate)
        audio[start:start + length] += 0.8 * thump[: len(audio) - start]
    return audio


def test_spectral_frames_are_centred_on_i_over_fps() -> None:
    backbone = SpectralBackbone()
    assert isinstance(backbone, Backbone)
    beat_times = [0.5 + 0.5 * k for k in range(8)]  # 120 BPM
    features = backbone.embed(kicks(beat_times, 5.0))
    assert features.shape == (frame_count(5 * SR, 441), 144) == (251, 144)
    flux = features[:, column("flux_0")]  # lowest mel group: the kick
    peaks = np.flatnonzero((flux > 0.5 * flux.max()) & (flux >= np.roll(flux, 1))
                           & (flux >= np.roll(flux, -1)))
    # Each onset shows up within one frame (20 ms) of the true time.
    assert len(peaks) == len(beat_times)
    assert np.max(np.abs(peaks / backbone.frames_per_second - beat_times)) <= 0.02 + 1e-9


def test_spectral_levels_and_novelty_mark_a_drop() -> None:
    backbone = SpectralBackbone()
    rng = np.random.default_rng(3)
    hats = (0.05 * rng.standard_normal(SR * 16)).astype(np.float32)
    hats = np.convolve(hats, [1, -1], mode="same").astype(np.float32)  # high-passed: no bass
    t = np.arange(SR * 16) / SR
    bass = (0.5 * np.sin(2 * np.pi * 55 * t) * (t >= 8)).astype(np.float32)  # drop at 8 s
    features = backbone.embed(hats + bass)
    before, after = slice(100, 350), slice(450, 750)
    bass_db = features[:, column("bass_db")] * 80
    assert bass_db[after].mean() - bass_db[before].mean() > 30
    novelty = features[:, column("novelty_4s")]
    assert abs(int(np.argmax(novelty)) - 400) <= 5  # 8 s × 50 fps


def test_spectral_handles_tiny_and_silent_input() -> None:
    backbone = SpectralBackbone()
    assert backbone.embed(np.zeros(0, np.float32)).shape == (1, 144)
    silent = backbone.embed(np.zeros(SR, np.float32))
    assert np.all(np.isfinite(silent))
    assert np.allclose(silent[:, column("rms_db")], -100 / 80, atol=1e-3)


def test_descriptors_align_with_embeddings_for_each_rate() -> None:
    audio = kicks([1.0, 2.0], 3.0, 24000)
    descriptors = compute_descriptors(audio, 24000, 75.0)
    assert {len(values) for values in descriptors.values()} == {frame_count(len(audio), 320)}
    onset = descriptors["onset"]
    # The kick at 1 s (frame 75); flux rises as the attack enters the 43 ms window, so it
    # may lead by up to half a window (1.6 frames).
    assert -2 <= int(np.argmax(onset[:120])) - 75 <= 1
    bass = descriptors["bass"]
    assert bass[80] > 10 * descriptors["high"][80]  # the thump is bass
    with pytest.raises(ValueError, match="not a whole hop"):
        compute_descriptors(audio, 22050, 60.0)


def test_get_backbone_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        get_backbone("wavenet")
    with pytest.raises(ValueError, match="takes no options"):
        get_backbone("spectral", layers=[3])


# -- MERT ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edm.backbones.mert import tiny_test_model

    return tiny_test_model(tmp_path_factory.mktemp("models") / "MERT-tiny")


def test_mert_loads_from_local_dir_like_a_hub_id(tiny_mert: Path) -> None:
    backbone = get_backbone("mert", model=str(tiny_mert), layers="1-2", device="cpu",
                            window_s=2.0, context_s=0.5)
    assert isinstance(backbone, Backbone)
    assert (backbone.sample_rate, backbone.frames_per_second, backbone.dim) == (24000, 75.0, 32)
    assert backbone.key == "mert-MERT-tiny-l1_2avg"
    config = backbone.config()
    assert config["layers"] == [1, 2] and config["checkpoint"] == str(tiny_mert)
    audio = (0.1 * np.random.default_rng(0).standard_normal(24000 * 7)).astype(np.float32)
    features = backbone.embed(audio)
    assert features.shape == (1 + len(audio) // 320, 32) and features.dtype == np.float32
    assert np.all(np.isfinite(features))


def test_mert_windows_batch_and_layers(tiny_mert: Path) -> None:
    from edm.backbones.mert import MertBackbone

    audio = (0.1 * np.random.default_rng(1).standard_normal(24000 * 5)).astype(np.float32)
    one = MertBackbone(tiny_mert, layers=[2], window_s=1.0, context_s=0.5, batch_size=1)
    many = MertBackbone(tiny_mert, layers=[2], window_s=1.0, context_s=0.5, batch_size=4)
    np.testing.assert_allclose(one.embed(audio), many.embed(audio), atol=1e-4)
    windows = one._windows(frame_count(len(audio), 320))
    assert len(windows) == 6  # 376 frames in 75-frame cores
    cores = np.concatenate([np.arange(lo, hi) for _, lo, hi in windows])
    np.testing.assert_array_equal(cores, np.arange(376))  # every frame exactly once
    first_layer = MertBackbone(tiny_mert, layers=[0], window_s=1.0, context_s=0.5)
    assert not np.allclose(first_layer.embed(audio), one.embed(audio))
    projected = MertBackbone(tiny_mert, layers=[2], project_dim=8, window_s=1.0, context_s=0.5)
    assert projected.dim == 8 and projected.key.endswith("-l2-p8")
    reduced = projected.embed(audio)
    np.testing.assert_allclose(reduced, one.embed(audio) @ projected.projection, atol=1e-3)


def test_mert_errors_say_what_to_do(tiny_mert: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from edm.backbones.mert import BackboneError, MertBackbone

    # As on a machine without network, minus the connection time-outs.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneError, match=r"--local-dir DIR.*--model DIR"):
        MertBackbone("m-a-p/MERT-v1-95M")
    with pytest.raises(BackboneError, match="does not exist"):
        MertBackbone(str(tmp_path / "nowhere"))
    with pytest.raises(BackboneError, match="not a saved HuBERT/MERT model"):
        MertBackbone(tmp_path)
    with pytest.raises(BackboneError, match=r"layers \[9\] out of range 0\.\.2"):
        MertBackbone(tiny_mert, layers="9")
    with pytest.raises(BackboneError, match="no GPU"):
        MertBackbone(tiny_mert, device="cuda")


def test_band_descriptors_are_finite_at_a_16_khz_rate() -> None:
    """A 16-kHz backbone (8 kHz Nyquist) gets the same band edges: the bands above 8 kHz are
    zeros, never NaN, and the rest still add up to the frame's power."""
    from edm.backbones import BAND_NAMES

    audio = np.random.default_rng(3).normal(0.0, 0.1, 16000 * 2).astype(np.float32)
    descriptors = compute_descriptors(audio, 16000, 50.0)
    bands = np.stack([descriptors[name] for name in BAND_NAMES], axis=1)
    assert np.isfinite(bands).all()
    assert np.all(bands[:, -2:] == 0.0) and np.all(bands[20:-20, :-3] > 0.0)
    np.testing.assert_allclose(np.sqrt((bands[20:-20] ** 2).sum(axis=1)),
                               descriptors["rms"][20:-20], rtol=0.05)


def test_spectral_shares_its_stft_with_the_descriptors() -> None:
    backbone = SpectralBackbone()
    audio = kicks([0.3, 0.8, 1.3], 2.0)
    features, descriptors = backbone.embed_with_descriptors(audio)
    np.testing.assert_array_equal(features, backbone.embed(audio))
    expected = compute_descriptors(audio, SR, 50.0)
    assert set(descriptors) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(descriptors[name], values, rtol=1e-6)


def test_mert_hub_style_config_loads_without_remote_code_and_misfits_fail(
    tiny_mert: Path, tmp_path: Path
) -> None:
    """MERT-v1's hub config names model_type 'mert_model' and remote code; HubertModel loads
    it as is. Weights that do not cover the model are an error, not random layers."""
    import json
    import shutil

    from edm.backbones.mert import BackboneError, MertBackbone

    hub_like = Path(shutil.copytree(tiny_mert, tmp_path / "MERT-v1-95M"))
    config = json.loads((hub_like / "config.json").read_text())
    config.update({"model_type": "mert_model", "architectures": ["MERTModel"],
                   "auto_map": {"AutoModel": "modeling_MERT.MERTModel"},
                   "feature_extractor_cqt": False, "deepnorm": False, "attention_relax": -1.0})
    (hub_like / "config.json").write_text(json.dumps(config))
    backbone = MertBackbone(hub_like, layers="2")
    assert backbone.key == "mert-MERT-v1-95M-l2"  # same key as the hub id m-a-p/MERT-v1-95M
    reference = MertBackbone(tiny_mert, layers="2")
    audio = (0.1 * np.random.default_rng(2).standard_normal(24000 * 2)).astype(np.float32)
    np.testing.assert_array_equal(backbone.embed(audio), reference.embed(audio))

    config["num_hidden_layers"] = 3  # a layer the saved weights do not have
    (hub_like / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackboneError, match="weights do not fit HubertModel; missing"):
        MertBackbone(hub_like)
    config.update({"num_hidden_layers": 2, "feature_extractor_cqt": True})
    (hub_like / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackboneError, match="CQT branch"):
        MertBackbone(hub_like)


def test_mert_batches_windows_across_tracks(tiny_mert: Path) -> None:
    from edm.backbones.mert import MertBackbone

    backbone = MertBackbone(tiny_mert, layers=[1], window_s=1.0, context_s=0.25, batch_size=3)
    rng = np.random.default_rng(4)
    # Two long tracks share 1.5 s windows; the short one is one window of its own length.
    audios = [(0.1 * rng.standard_normal(int(24000 * seconds))).astype(np.float32)
              for seconds in (3.3, 0.8, 2.1)]
    together = backbone.embed_many(audios)
    for audio, features in zip(audios, together, strict=True):
        np.testing.assert_allclose(features, backbone.embed(audio), atol=1e-4)
        assert features.shape == (1 + len(audio) // 320, 32)


@pytest.mark.parametrize("threads", [1, 2])
def test_features_are_bit_identical_whatever_the_blas_thread_count(threads: int) -> None:
    # A Ray worker runs with one BLAS thread, the main process with all cores: the same audio
    # must give the same stored bytes either way (a mel product split over two threads used to
    # round differently, one float16 ulp in the store).
    from threadpoolctl import threadpool_limits

    audio = (0.1 * np.random.default_rng(0).standard_normal(22050 * 6)).astype(np.float32)
    backbone = SpectralBackbone()
    with threadpool_limits(limits=1):
        reference, reference_descriptors = backbone.embed_with_descriptors(audio)
        alone = compute_descriptors(audio, 22050, 50.0)
    with threadpool_limits(limits=threads):
        embeddings, descriptors = backbone.embed_with_descriptors(audio)
        again = compute_descriptors(audio, 22050, 50.0)
    np.testing.assert_array_equal(embeddings, reference)
    for name, values in reference_descriptors.items():
        np.testing.assert_array_equal(descriptors[name], values)
        np.testing.assert_array_equal(again[name], alone[name])
