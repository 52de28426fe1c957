"""The temporal CNN: dilated 1-D convolutions over a track's embedding sequence.

Two branches share one input projection:

- the **fine** branch runs at the store's frame rate with dilations ``1 … 2**(fine_layers-1)``;
  it sees a few seconds, enough for beat phase and the bar (downbeats);
- the **coarse** branch average-pools the fine features to about ``coarse_rate_hz`` frames per
  second and stacks dilations ``1 … 2**(coarse_layers-1)``: with the defaults it sees about
  80 s, as a boundary needs (a drop is recognised by what came before it). Pooling keeps the
  cost of that receptive field small: the coarse branch has ``fps / coarse_rate_hz`` times
  fewer frames.

The coarse features are upsampled back and concatenated with the fine ones; a 1×1 convolution
per task gives beat, downbeat and boundary logits (and section-function logits when the model
has ``n_sections > 0``). Every layer is a convolution with zero padding, so the net runs on a
crop or a whole track alike, and nothing normalises over time (a crop and the whole track give
the same numbers away from the edges).

>>> net = TemporalHeads(input_dim=8, frames_per_second=50.0, channels=8)
>>> out = net(torch.zeros(2, 8, 300))
>>> out["beat"].shape, out["boundary"].shape, out.get("section") is None
(torch.Size([2, 300]), torch.Size([2, 300]), True)
>>> round(net.receptive_field_s(), 1)
84.3
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edm.heads.activations import EVENT_TASKS


class _Dropout(nn.Module):
    """``nn.Dropout`` with a cheaper mask on CPU: 15 random bits per element, cut from int64
    words, instead of torch's float Bernoulli draw, which made dropout a tenth of a CPU fit
    (issue 18). Keeps each element with probability ``1 - p`` (``p`` rounded to 1/32768) and
    scales kept ones by ``1 / (1 - p)``; identity in eval mode; plain dropout on other devices.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        threshold = round(self.p * 32768)
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_()
        bits = words.view(torch.int16)[: x.numel()].view(x.shape) & 0x7FFF
        keep = (bits >= threshold).to(x.dtype)
        return x * keep.mul_(32768 / (32768 - threshold))


class _DilatedBlock(nn.Module):
    """Residual block: dilated conv (kernel 3) → GELU → dropout → 1×1 conv, added to the input."""

    def __init__(self, channels: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.dropout = _Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.dropout(F.gelu(self.conv(x))))


def _stack(channels: int, layers: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(*(_DilatedBlock(channels, 2**i, dropout) for i in range(layers)))


class TemporalHeads(nn.Module):
    """Multi-task dilated TCN: ``(batch, input_dim, frames)`` → dict of ``(batch, frames)`` logits.

    Parameters
    ----------
    input_dim : int
        Embedding dimension of the backbone.
    frames_per_second : float
        The store's frame rate; sets the coarse branch's pooling factor.
    channels : int, default=32
    fine_layers : int, default=6
        Dilations up to ``2**(fine_layers-1)`` at full rate (6 → ±2.5 s at 50 fps).
    coarse_layers : int, default=9
        Dilations up to ``2**(coarse_layers-1)`` at ``coarse_rate_hz`` (9 → ±41 s at 12.5 Hz).
    coarse_rate_hz : float, default=12.5
    n_sections : int, default=0
        Number of section-function classes; 0 = no section head.
    dropout : float, default=0.1
    input_dropout : float, default=0.1
        Dropout on whole embedding channels (feature dropout).
    """

    def __init__(
        self,
        input_dim: int,
        frames_per_second: float,
        *,
        channels: int = 32,
        fine_layers: int = 6,
        coarse_layers: int = 9,
        coarse_rate_hz: float = 12.5,
        n_sections: int = 0,
        dropout: float = 0.1,
        input_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.frames_per_second = float(frames_per_second)
        self.channels = channels
        self.fine_layers = fine_layers
        self.coarse_layers = coarse_layers
        self.coarse_rate_hz = coarse_rate_hz
        self.n_sections = n_sections
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.pool = max(1, round(frames_per_second / coarse_rate_hz))
        # Standardisation of the embeddings, fitted on the training set (see set_input_stats).
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_std", torch.ones(input_dim))
        self.stem = nn.Sequential(
            OrderedDict(
                drop=nn.Dropout1d(input_dropout),
                proj=nn.Conv1d(input_dim, channels, 1),
                act=nn.GELU(),
            )
        )
        self.fine = _stack(channels, fine_layers, dropout)
        self.coarse = _stack(channels, coarse_layers, dropout)
        self.fuse = nn.Sequential(
            OrderedDict(
                conv=nn.Conv1d(2 * channels, channels, 3, padding=1),
                act=nn.GELU(),
            )
        )
        n_out = 3 + n_sections
        self.out = nn.Conv1d(channels, n_out, 1)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the net (see :meth:`from_config`)."""
        return {
            name: getattr(self, name)
            for name in inspect.signature(type(self).__init__).parameters
            if name != "self"
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TemporalHeads:
        """Rebuild from :meth:`config`; keys the constructor does not know are ignored."""
        known = inspect.signature(cls.__init__).parameters
        return cls(**{key: value for key, value in config.items() if key in known})

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.input_mean.copy_(mean)
        self.input_std.copy_(torch.clamp(std, min=1e-4))

    def receptive_field_s(self) -> float:
        """Total context (both sides) of a boundary logit, in seconds."""
        coarse_frames = 2 * (2**self.coarse_layers - 1) * self.pool
        fine_frames = 2 * (2**self.fine_layers - 1)
        return (coarse_frames + fine_frames + 1) / self.frames_per_second

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: ``(batch, input_dim, frames)`` raw embeddings."""
        n_frames = x.shape[-1]
        x = (x - self.input_mean[:, None]) / self.input_std[:, None]
        fine = self.fine(self.stem(x))
        if self.pool > 1:
            coarse = F.avg_pool1d(fine, self.pool, stride=self.pool, ceil_mode=True)
        else:
            coarse = fine
        coarse = self.coarse(coarse)
        coarse = F.interpolate(coarse, scale_factor=float(self.pool), mode="linear")[..., :n_frames]
        if coarse.shape[-1] < n_frames:
            coarse = F.pad(coarse, (0, n_frames - coarse.shape[-1]), mode="replicate")
        logits = self.out(self.fuse(torch.cat([fine, coarse], dim=1)))
        result = {task: logits[:, i] for i, task in enumerate(EVENT_TASKS)}
        if self.n_sections:
            result["section"] = logits[:, 3:].transpose(1, 2)  # (batch, frames, classes)
        return result
