"""Losses for the heads: a shift-tolerant BCE for events, and small-loss selection for noise.

Shift tolerance
---------------
A beat annotated at frame ``p`` and predicted at ``p + 1`` is a hit for every metric edm reports
(mir_eval's beat F uses ±70 ms, boundary hit rate ±0.5 s / ±3 s), so the loss must not punish it.
Tolerance is given in seconds, per task, and converted once with the store's frame rate:
``tolerance_frames = round(tolerance_s * frames_per_second)``.

:class:`ShiftTolerantBCELoss` then

1. max-pools the predicted logits over ``±tolerance_frames`` (max of logits = logit of the
   max probability), so a positive is satisfied if the net fires anywhere near it;
2. scores positives with that pooled prediction;
3. scores as negatives only frames farther than ``2 * tolerance_frames`` from every positive.
   A frame closer than that has a pooled window that overlaps the positive's window: calling it
   a negative would punish exactly the firing that satisfies the positive, so it gets no
   gradient at all (neither positive nor negative).

Class weighting: events are rare (a beat every ~25 frames at 50 fps, a boundary every ~1500),
so positives are weighted by ``pos_weight`` (see :func:`balanced_pos_weight`).

Small-loss selection
--------------------
Wrong labels are the ones a network finds hard to fit early in training. :func:`small_loss_mask`
keeps the ``1 - forget_rate`` fraction of weighted elements with the smallest loss; small-loss
reweighting trains on that mask, co-teaching trains each of two networks on the mask chosen
by the other (Han et al., 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tolerance_frames(tolerance_s: float, frames_per_second: float) -> int:
    """Seconds → whole frames, the one place the conversion happens.

    >>> tolerance_frames(0.03, 50.0), tolerance_frames(0.25, 50.0), tolerance_frames(0.25, 75.0)
    (2, 12, 19)
    """
    return round(tolerance_s * frames_per_second)


def _max_pool(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over ``±radius`` frames along the last axis of a ``(batch, frames)`` tensor."""
    if radius <= 0:
        return x
    return F.max_pool1d(x.unsqueeze(1), 2 * radius + 1, stride=1, padding=radius).squeeze(1)


class ShiftTolerantBCELoss(nn.Module):
    """Binary cross-entropy that forgives predictions within ``±tolerance_frames`` of a label.

    Parameters
    ----------
    tolerance_frames : int
        Radius of the tolerance window in frames (from :func:`tolerance_frames`).
    pos_weight : float, default=1.0
        Weight of positive frames relative to negatives.
    label_smoothing : float, default=0.0
        Targets become ``y * (1 - e) + e / 2``: a wrong label cannot drive logits to infinity.

    ``forward`` returns per-frame losses and per-frame weights (0 where a frame is ignored), so
    callers can select small-loss frames before reducing with :func:`weighted_mean`.

    >>> loss = ShiftTolerantBCELoss(tolerance_frames=1)
    >>> target = torch.tensor([[0., 0., 0., 0., 1., 0., 0., 0., 0., 0.]])
    >>> early = torch.full((1, 10), -6.0); early[0, 3] = 6.0  # fires one frame early
    >>> values, weights = loss(early, target, torch.ones_like(target))
    >>> round(weighted_mean(values, weights).item(), 3)
    0.002
    >>> weights[0].tolist()  # frames 2-6 are within 2 tolerances of the positive: ignored
    [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    """

    def __init__(
        self, tolerance_frames: int, pos_weight: float = 1.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        if tolerance_frames < 0:
            raise ValueError(f"tolerance_frames must be >= 0, got {tolerance_frames}")
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
        self.tolerance_frames = tolerance_frames
        self.pos_weight = pos_weight
        self.label_smoothing = label_smoothing

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, frames)`` logits, 0/1 targets, frame weights → (losses, weights)."""
        pooled = _max_pool(logits, self.tolerance_frames)
        positive = target > 0.5
        near_positive = _max_pool(target, 2 * self.tolerance_frames) > 0.5
        counted = positive | ~near_positive
        smoothed = target * (1.0 - self.label_smoothing) + self.label_smoothing / 2.0
        values = F.binary_cross_entropy_with_logits(pooled, smoothed, reduction="none")
        class_weight = torch.where(positive, self.pos_weight, 1.0)
        return values, weight * counted * class_weight


def section_loss(
    logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame cross-entropy of ``(batch, frames, classes)`` logits; class -1 is ignored."""
    values = F.cross_entropy(
        logits.transpose(1, 2),
        target.clamp(min=0),
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return values, (target >= 0).to(values.dtype)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean; 0 (with a gradient path) when every weight is 0."""
    total = weights.sum()
    if total <= 0:
        return (values * 0.0).sum()
    return (values * weights).sum() / total


def small_loss_mask(
    values: torch.Tensor, weights: torch.Tensor, forget_rate: float
) -> torch.Tensor:
    """1 for the ``1 - forget_rate`` fraction of counted elements with the smallest loss.

    Elements with weight 0 stay 0. Selection is computed without gradients.

    >>> values = torch.tensor([0.1, 5.0, 0.2, 0.3])
    >>> small_loss_mask(values, torch.ones(4), 0.25).tolist()
    [1.0, 0.0, 1.0, 1.0]
    """
    counted = weights > 0
    if forget_rate <= 0 or not bool(counted.any()):
        return counted.to(values.dtype)
    with torch.no_grad():
        kept = values[counted].detach()
        n_keep = max(1, round(kept.numel() * (1.0 - forget_rate)))
        threshold = torch.kthvalue(kept.flatten(), n_keep).values
        return (counted & (values.detach() <= threshold)).to(values.dtype)


def balanced_pos_weight(
    n_positive: float, n_negative: float, *, power: float = 0.5, maximum: float = 50.0
) -> float:
    """Positive-class weight ``(n_negative / n_positive) ** power``, clipped to [1, maximum].

    ``power=1`` balances the classes fully; 0.5 (the default) is milder, which keeps peaks
    sharp enough for peak picking while still pulling rare events up.

    >>> balanced_pos_weight(10, 1000), balanced_pos_weight(0, 1000)
    (10.0, 1.0)
    """
    if n_positive <= 0:
        return 1.0
    return float(min(max((n_negative / n_positive) ** power, 1.0), maximum))
