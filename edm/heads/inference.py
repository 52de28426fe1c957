"""Torch-free forward pass of a plain :class:`~edm.heads.model.TemporalHeads` net, in numpy.

``edm analyze`` only needs inference, and ``import torch`` alone costs about 1.7 s, more than
half of the issue-7 budget of 3 s for a whole track. This module reads the same
``heads.safetensors`` weights with ``safetensors.numpy`` and computes the same numbers as
``TemporalHeads.forward`` (to float32 rounding; the tests check 1e-4 on the probabilities).
Fine-tuned nets (MERT top layers) are not covered: they keep the torch path.

>>> config = {"input_dim": 4, "frames_per_second": 50.0, "channels": 4, "n_sections": 2}
>>> net = NumpyHeads.random(config, np.random.default_rng(0))
>>> net.forward(np.zeros((4, 10), np.float32))["beat"].shape
(10,)
>>> net.forward(np.zeros((4, 10), np.float32))["section"].shape
(10, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from edm.heads.activations import EVENT_TASKS, Activations, average_probabilities

_SQRT_HALF = np.float32(np.sqrt(0.5))

#: erf(x) = x · P(x²) / Q(x²) on [-4, 4], coefficients lowest power first: a (6, 5) rational
#: least-squares fit to float64 erf (Q has no root for x² >= 0); |error| < 5e-7 in float32,
#: the size of float32 rounding. Beyond ±4, float32 erf is ±1.
_ERF_P = tuple(np.float32(c) for c in (
    1.128379168, 0.1851476698, 0.05397913248, 0.003803909772, 0.0003651257269, 4.302083637e-06,
    -1.12264408e-08))
_ERF_Q = tuple(np.float32(c) for c in (
    1.0, 0.4974162273, 0.1136428755, 0.01532077762, 0.00127870548, 5.947193492e-05))
#: Elements per block: the temporaries of one block stay in cache.
_ERF_BLOCK = 32768


def _erf_float32(x: np.ndarray) -> np.ndarray:
    """float32 erf, ~4x faster than ``scipy.special.erf`` (which computes in float64): the GELUs
    were three quarters of the heads' run time on a 6-minute track.

    >>> from scipy.special import erf
    >>> grid = np.linspace(-6, 6, 1201, dtype=np.float32)
    >>> bool(np.abs(_erf_float32(grid) - erf(grid.astype(np.float64))).max() < 1e-6)
    True
    """
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, len(flat), _ERF_BLOCK):
        block = np.clip(flat[start : start + _ERF_BLOCK], -4.0, 4.0)
        square = block * block
        numerator = np.full_like(block, _ERF_P[-1])
        for c in _ERF_P[-2::-1]:
            numerator *= square
            numerator += c
        denominator = np.full_like(block, _ERF_Q[-1])
        for c in _ERF_Q[-2::-1]:
            denominator *= square
            denominator += c
        numerator *= block
        np.divide(numerator, denominator, out=out[start : start + _ERF_BLOCK])
    return out.reshape(np.shape(x))


def _gelu(x: np.ndarray) -> np.ndarray:
    # Exact (erf) GELU, torch's default (approximate="none").
    return (x * (0.5 * (1.0 + _erf_float32(x * _SQRT_HALF)))).astype(np.float32, copy=False)


def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, dilation: int = 1) -> np.ndarray:
    """Conv1d of ``x`` ``(in, frames)``, zero padding ``dilation * (k // 2)`` (same length)."""
    kernel = weight.shape[-1]
    if kernel == 1:
        return weight[:, :, 0] @ x + bias[:, None]
    pad = dilation * (kernel // 2)
    padded = np.pad(x, ((0, 0), (pad, pad)))
    n_frames = x.shape[1]
    out = bias[:, None] + weight[:, :, 0] @ padded[:, :n_frames]
    for k in range(1, kernel):
        start = k * dilation
        out += weight[:, :, k] @ padded[:, start : start + n_frames]
    return out


def _avg_pool_ceil(x: np.ndarray, pool: int) -> np.ndarray:
    """``F.avg_pool1d(x, pool, stride=pool, ceil_mode=True)``: the last, partial window is
    averaged over the frames it has (no padding, so torch divides by those only)."""
    n_frames = x.shape[1]
    n_out = -(-n_frames // pool)
    padded = np.pad(x, ((0, 0), (0, n_out * pool - n_frames)))
    sums = padded.reshape(x.shape[0], n_out, pool).sum(axis=2)
    counts = np.full(n_out, pool, dtype=np.float32)
    counts[-1] = n_frames - (n_out - 1) * pool
    return (sums / counts).astype(np.float32)


def _upsample_linear(x: np.ndarray, scale: int, n_frames: int) -> np.ndarray:
    """``F.interpolate(x, scale_factor=scale, mode="linear")`` (align_corners=False, the given
    scale used for the source coordinates), cropped or edge-padded to ``n_frames``."""
    length = x.shape[1]
    n_out = length * scale
    source = (np.arange(n_out, dtype=np.float32) + 0.5) / np.float32(scale) - 0.5
    source = np.maximum(source, 0.0)
    left = np.minimum(np.floor(source).astype(np.int64), length - 1)
    right = np.minimum(left + 1, length - 1)
    weight = (source - left).astype(np.float32)
    out = x[:, left] * (1.0 - weight) + x[:, right] * weight
    out = out[:, :n_frames]
    if out.shape[1] < n_frames:
        out = np.concatenate([out, np.repeat(out[:, -1:], n_frames - out.shape[1], axis=1)], 1)
    return out


def weight_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """``state_dict`` name → shape of a TemporalHeads built from ``config`` (its ``config()``)."""
    dim, channels = int(config["input_dim"]), int(config.get("channels", 32))
    n_out = 3 + int(config.get("n_sections", 0))
    shapes: dict[str, tuple[int, ...]] = {"input_mean": (dim,), "input_std": (dim,)}
    shapes |= {"stem.proj.weight": (channels, dim, 1), "stem.proj.bias": (channels,)}
    for stack in ("fine", "coarse"):
        for i in range(int(config.get(f"{stack}_layers", 6 if stack == "fine" else 9))):
            shapes[f"{stack}.{i}.conv.weight"] = (channels, channels, 3)
            shapes[f"{stack}.{i}.conv.bias"] = (channels,)
            shapes[f"{stack}.{i}.mix.weight"] = (channels, channels, 1)
            shapes[f"{stack}.{i}.mix.bias"] = (channels,)
    shapes |= {"fuse.conv.weight": (channels, 2 * channels, 3), "fuse.conv.bias": (channels,)}
    return shapes | {"out.weight": (n_out, channels, 1), "out.bias": (n_out,)}


class NumpyHeads:
    """One plain TemporalHeads net: its ``config()``, its ``state_dict`` as float32 arrays, and
    its forward pass. Raises ValueError when the weights do not fit the config."""

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> None:
        self._config = dict(config)
        self.input_dim = int(config["input_dim"])
        self.frames_per_second = float(config["frames_per_second"])
        self.fine_layers = int(config.get("fine_layers", 6))
        self.coarse_layers = int(config.get("coarse_layers", 9))
        self.n_sections = int(config.get("n_sections", 0))
        self.pool = max(
            1, round(self.frames_per_second / float(config.get("coarse_rate_hz", 12.5)))
        )
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        shapes = weight_shapes(config)
        if set(shapes) != set(self.weights):
            odd = sorted(set(shapes) ^ set(self.weights))
            raise ValueError(f"missing or unexpected weights: {', '.join(odd[:4])}")
        wrong = [k for k, shape in shapes.items() if self.weights[k].shape != shape]
        if wrong:
            raise ValueError(
                f"{wrong[0]} has shape {self.weights[wrong[0]].shape}, the config needs "
                f"{shapes[wrong[0]]}"
            )

    def config(self) -> dict[str, Any]:
        """The TemporalHeads constructor arguments these weights came with."""
        return dict(self._config)

    @classmethod
    def random(cls, config: Mapping[str, Any], rng: np.random.Generator) -> NumpyHeads:
        """Random weights for ``config`` (doctests, shape checks)."""
        weights = {
            k: rng.normal(0, 0.3, s).astype(np.float32) for k, s in weight_shapes(config).items()
        }
        weights["input_std"] = np.abs(weights["input_std"]) + 0.5
        return cls(config, weights)

    def _stack(self, x: np.ndarray, name: str, layers: int) -> np.ndarray:
        w = self.weights
        for i in range(layers):
            p = f"{name}.{i}."
            h = _gelu(_conv(x, w[p + "conv.weight"], w[p + "conv.bias"], dilation=2**i))
            x = x + _conv(h, w[p + "mix.weight"], w[p + "mix.bias"])
        return x

    def forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``x``: ``(input_dim, frames)`` raw embeddings → logits, ``(frames,)`` per event task
        and ``(frames, classes)`` for sections."""
        w = self.weights
        n_frames = x.shape[1]
        x = (x - w["input_mean"][:, None]) / w["input_std"][:, None]
        fine = self._stack(
            _gelu(_conv(x, w["stem.proj.weight"], w["stem.proj.bias"])), "fine", self.fine_layers
        )
        coarse = _avg_pool_ceil(fine, self.pool) if self.pool > 1 else fine
        coarse = self._stack(coarse, "coarse", self.coarse_layers)
        if self.pool > 1:
            coarse = _upsample_linear(coarse, self.pool, n_frames)
        fused = _gelu(
            _conv(np.concatenate([fine, coarse]), w["fuse.conv.weight"], w["fuse.conv.bias"])
        )
        logits = _conv(fused, w["out.weight"], w["out.bias"])
        result = {task: logits[i] for i, task in enumerate(EVENT_TASKS)}
        if self.n_sections:
            result["section"] = logits[3:].T
        return result


def predict_numpy(
    nets: Sequence[NumpyHeads],
    embeddings: np.ndarray,
    frames_per_second: float,
    section_labels: tuple[str, ...] = (),
) -> Activations:
    """Numpy twin of :func:`edm.heads.train.predict_probabilities`: whole track, sigmoid
    (softmax for sections), averaged over nets."""
    x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32).T)
    per_net = []
    for net in nets:
        outputs = net.forward(x)
        probabilities = {task: expit(outputs[task]) for task in EVENT_TASKS}
        if "section" in outputs:
            probabilities["section"] = softmax(outputs["section"], axis=-1)
        per_net.append(probabilities)
    return average_probabilities(per_net, frames_per_second, section_labels)
