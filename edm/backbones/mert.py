"""The ``mert`` backbone: MERT (or any HuBERT-shaped model) through ``transformers``.

MERT-v1 checkpoints are HuBERT-shaped, so they load as :class:`transformers.HubertModel`
without ``trust_remote_code`` (their hub config asks for remote code only to register the
``mert_model`` name). Loading reports missing weights: a checkpoint that does not fit
``HubertModel`` (e.g. one with MERT's CQT branch) is an error, never a silently random layer.
Weights are CC BY-NC 4.0 and are not shipped with edm; pass a hub id (downloaded into the
Hugging Face cache) or a local directory holding ``config.json``, the weights and
``preprocessor_config.json``.

Timing: the conv front end has stride ``prod(conv_stride)`` (320 samples at 24 kHz = 75 fps)
and a receptive field of 400 samples. The audio is padded by half the receptive field, so frame
``i`` is centred on ``i / fps`` like every edm backbone, and a track of ``n`` samples gives
``1 + n // 320`` frames.

Long tracks run as windows of ``window_s`` seconds that overlap by ``context_s`` on each
side; each window contributes only its centre, so every kept frame saw at least
``context_s`` of audio on both sides (except at the track's ends). Windows are batched.

Layers: ``hidden_states[0]`` is the conv feature projection, ``1..L`` the transformer layers.
Several layers are averaged. ``project_dim`` applies a fixed random orthogonal projection
(seeded, recorded in the key and config) to shrink the store.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edm.backbones.base import BackboneDefaults

DEFAULT_MODEL = "m-a-p/MERT-v1-95M"
PROJECTION_SEED = 0


class BackboneError(ValueError):
    """A backbone that cannot be built (weights missing, offline, bad options)."""


def parse_layers(text: str | Sequence[int] | None) -> list[int] | None:
    """``"6"`` → [6]; ``"4,6"`` → [4, 6]; ``"4-6"`` → [4, 5, 6]; None/"" → None (default).

    >>> parse_layers("4-6,9")
    [4, 5, 6, 9]
    """
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        return [int(layer) for layer in text]
    layers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-", 1))
            layers.extend(range(lo, hi + 1))
        elif part:
            layers.append(int(part))
    return layers


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; checks an explicit ``cuda``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BackboneError("device 'cuda' requested but torch sees no GPU; use --device cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise BackboneError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def _offline_hint(model: str) -> str:
    return (f"cannot load model {model!r}: not a local directory and not downloadable here "
            f"(offline?). On a connected machine run `huggingface-cli download {model} "
            f"--local-dir DIR` (or copy a saved model folder), then pass --model DIR")


class MertBackbone(BackboneDefaults):
    """HuBERT-shaped encoder → chosen hidden layer(s) → optional projection, frame-aligned."""

    name = "mert"

    def __init__(self, model: str | Path = DEFAULT_MODEL, *,
                 layers: str | Sequence[int] | None = None, device: str = "auto",
                 project_dim: int | None = None, window_s: float = 30.0, context_s: float = 2.5,
                 batch_size: int | None = None, batch_tracks: int | None = None) -> None:
        import torch
        from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

        self.model_id = str(model)
        source = Path(self.model_id).expanduser()
        local = source.is_dir()
        location = str(source) if local else self.model_id
        if not local and (source.is_absolute() or self.model_id.startswith((".", "~"))):
            raise BackboneError(f"model directory {self.model_id} does not exist")
        def load(cache_only: bool) -> tuple[Any, Any, dict[str, Any], Any]:
            config = HubertConfig.from_pretrained(location, local_files_only=cache_only)
            network, loading = HubertModel.from_pretrained(
                location, config=config, local_files_only=cache_only, output_loading_info=True)
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(
                location, local_files_only=cache_only)
            return config, network, loading, extractor

        try:
            config, network, loading, extractor = load(cache_only=True)
        except OSError as error:
            if local:
                raise BackboneError(f"{source}: not a saved HuBERT/MERT model ({error})") from error
            try:  # not in the Hugging Face cache yet: download it
                config, network, loading, extractor = load(cache_only=False)
            except OSError as download_error:
                raise BackboneError(_offline_hint(self.model_id)) from download_error
        if loading.get("missing_keys"):
            missing = sorted(loading["missing_keys"])
            raise BackboneError(f"{self.model_id}: weights do not fit HubertModel; missing "
                                f"{len(missing)} tensors such as {missing[0]!r}")
        if getattr(config, "feature_extractor_cqt", False):
            raise BackboneError(f"{self.model_id}: uses MERT's CQT branch, which HubertModel "
                                "lacks; choose a checkpoint without it")

        self.device = resolve_device(device)
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.network = network.to(self.device, dtype=self.dtype).eval()
        self.sample_rate = int(extractor.sampling_rate)
        self.normalize = bool(getattr(extractor, "do_normalize", True))
        self.hop = int(np.prod(config.conv_stride))
        receptive = 1
        for kernel, stride_before in zip(config.conv_kernel,
                                         np.cumprod([1, *config.conv_stride[:-1]]), strict=True):
            receptive += (kernel - 1) * int(stride_before)
        self.receptive_field = receptive
        self.frames_per_second = self.sample_rate / self.hop
        n_layers = int(config.num_hidden_layers)
        self.layers = parse_layers(layers) or [n_layers // 2]
        bad = [layer for layer in self.layers if not 0 <= layer <= n_layers]
        if bad:
            raise BackboneError(f"{self.model_id}: layers {bad} out of range 0..{n_layers}")
        self.hidden_size = int(config.hidden_size)
        self.project_dim = project_dim
        self.projection: np.ndarray | None = None
        if project_dim is not None:
            if not 0 < project_dim < self.hidden_size:
                raise BackboneError(f"project_dim must be in 1..{self.hidden_size - 1}, "
                                    f"got {project_dim}")
            self.projection = random_projection(self.hidden_size, project_dim)
        self.window_frames = max(1, round(window_s * self.frames_per_second))
        self.context_frames = max(0, round(context_s * self.frames_per_second))
        self.window_s, self.context_s = window_s, context_s
        self.batch_size = batch_size or (16 if self.device.startswith("cuda") else 2)
        #: Tracks the embed job hands to :meth:`embed_many` at once (only a GPU gains).
        self.batch_tracks = batch_tracks or (4 if self.device.startswith("cuda") else 1)
        self.commit = getattr(config, "_commit_hash", None)

    @property
    def key(self) -> str:
        base = Path(self.model_id.rstrip("/")).name or "model"
        layers = "_".join(str(layer) for layer in self.layers)
        suffix = "avg" if len(self.layers) > 1 else ""
        projection = f"-p{self.project_dim}" if self.project_dim else ""
        return f"mert-{base}-l{layers}{suffix}{projection}"

    @property
    def dim(self) -> int:
        return self.project_dim or self.hidden_size

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name, "key": self.key, "checkpoint": self.model_id,
            "commit": self.commit, "layers": list(self.layers),
            "layer_reduction": "mean" if len(self.layers) > 1 else "single",
            "projection": ({"dim": self.project_dim, "kind": "random-orthogonal",
                            "seed": PROJECTION_SEED} if self.project_dim else None),
            "sample_rate": self.sample_rate, "frames_per_second": self.frames_per_second,
            "dim": self.dim, "hidden_size": self.hidden_size, "window_s": self.window_s,
            "context_s": self.context_s, "compute_dtype": str(self.dtype).replace("torch.", ""),
        }

    def _windows(self, n_frames: int) -> list[tuple[int, int, int]]:
        """(window start frame, core start frame, core end frame) covering ``n_frames``."""
        span = self.window_frames + 2 * self.context_frames
        if n_frames <= span:
            return [(0, 0, n_frames)]
        windows = []
        for core in range(0, n_frames, self.window_frames):
            start = min(max(core - self.context_frames, 0), n_frames - span)
            windows.append((start, core, min(core + self.window_frames, n_frames)))
        return windows

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """``(1 + len(audio) // hop, dim)`` float32 for mono float32 audio at ``sample_rate``."""
        return self.embed_many([audio])[0]

    def embed_many(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`embed` for several tracks, their windows pooled into shared batches (a GPU
        gets full batches even from short tracks). Results equal one-by-one embedding."""
        half = self.receptive_field // 2
        padded: list[np.ndarray] = []
        outs: list[np.ndarray] = []
        windows: list[tuple[int, int, int, int, int]] = []  # span, track, start, core lo, hi
        for index, audio in enumerate(audios):
            audio = np.asarray(audio, dtype=np.float32)
            n_frames = 1 + len(audio) // self.hop
            length = (n_frames - 1) * self.hop + self.receptive_field
            track = np.zeros(length, dtype=np.float32)
            track[half:half + len(audio)] = audio[:length - half]
            padded.append(track)
            outs.append(np.empty((n_frames, self.dim), dtype=np.float32))
            span = min(n_frames, self.window_frames + 2 * self.context_frames)
            windows.extend((span, index, *window) for window in self._windows(n_frames))
        windows.sort(key=lambda window: window[0])  # a batch needs one length: group by span
        for span, group in itertools.groupby(windows, key=lambda window: window[0]):
            same_span = list(group)
            samples = (span - 1) * self.hop + self.receptive_field
            for first in range(0, len(same_span), self.batch_size):
                batch = same_span[first:first + self.batch_size]
                features = self._forward(np.stack([
                    padded[index][start * self.hop:start * self.hop + samples]
                    for _, index, start, _, _ in batch]))
                if features.shape[1] != span:
                    raise BackboneError(f"{self.model_id}: {samples} samples gave "
                                        f"{features.shape[1]} frames, expected {span}")
                for row, (_, index, start, core_lo, core_hi) in enumerate(batch):
                    block = features[row, core_lo - start:core_hi - start]
                    outs[index][core_lo:core_hi] = (block if self.projection is None
                                                    else block @ self.projection)
        return outs

    def _forward(self, inputs: np.ndarray) -> np.ndarray:
        """Chosen hidden layers (averaged) for a batch of equal-length windows."""
        import torch

        if self.normalize:  # what Wav2Vec2FeatureExtractor does, per window
            inputs = (inputs - inputs.mean(axis=1, keepdims=True)) / np.sqrt(
                inputs.var(axis=1, keepdims=True) + 1e-7)
        with torch.inference_mode():
            tensor = torch.from_numpy(inputs).to(self.device, dtype=self.dtype)
            hidden = self.network(tensor, output_hidden_states=True).hidden_states
            chosen = torch.stack([hidden[layer] for layer in self.layers]).float().mean(0)
        return chosen.cpu().numpy()


def options_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor options that rebuild the backbone whose :meth:`MertBackbone.config` this is
    (what the store keeps beside its embeddings): checkpoint, layers, projection and windows.
    The device is left to the machine that rebuilds it.

    >>> options_from_config({"checkpoint": "m/MERT", "layers": [4, 6], "window_s": 30.0,
    ...                      "projection": {"dim": 128}})
    {'model': 'm/MERT', 'layers': [4, 6], 'window_s': 30.0, 'project_dim': 128}
    """
    options: dict[str, Any] = {"model": config["checkpoint"], "layers": list(config["layers"])}
    for name in ("window_s", "context_s"):
        if config.get(name) is not None:
            options[name] = float(config[name])
    projection = config.get("projection")
    if projection:
        options["project_dim"] = int(projection["dim"])
    return options


def random_projection(in_dim: int, out_dim: int, seed: int = PROJECTION_SEED) -> np.ndarray:
    """A fixed ``(in_dim, out_dim)`` matrix with orthonormal columns scaled to keep norms.

    >>> m = random_projection(8, 3)
    >>> np.allclose(m.T @ m, np.eye(3) * 8 / 3, atol=1e-5)
    True
    """
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((in_dim, out_dim)))
    q *= np.sign(np.diag(r))  # unique, sign-fixed basis
    return (q * math.sqrt(in_dim / out_dim)).astype(np.float32)


def tiny_test_model(folder: str | os.PathLike[str], *, hidden_size: int = 32, layers: int = 2,
                    sample_rate: int = 24000, seed: int = 0) -> Path:
    """Save a small randomly initialised HuBERT with MERT's front end (stride 320) to
    ``folder``, with a feature-extractor config: a stand-in for MERT in tests and benchmarks.
    ``hidden_size=768, layers=12`` gives the real MERT-v1-95M geometry."""
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    wide = hidden_size >= 256
    config = HubertConfig(
        hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=12 if wide else 2,
        intermediate_size=4 * hidden_size,
        conv_dim=(512,) * 7 if wide else (16,) * 7,
        num_conv_pos_embeddings=128 if wide else 16,
        num_conv_pos_embedding_groups=16 if wide else 2,
    )
    HubertModel(config).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sample_rate, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return Path(folder)
