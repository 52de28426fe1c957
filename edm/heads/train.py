"""Training of the temporal heads on stored embeddings, robust to noisy DJ labels.

Layers, each usable alone:

- :func:`fit_temporal` trains one model (or a co-teaching pair) on a list of :class:`TrackData`;
- :func:`fit_kfold` splits tracks into folds *by track* and returns out-of-fold activations for
  every labelled track (what ``edm label-audit`` ranks labels with);
- :func:`fit_pseudo_label` wraps either: a teacher labels the Tier 3 (unlabeled) tracks where it
  is confident, and a student trains on labelled + pseudo-labelled tracks.

Noise handling (see :mod:`edm.heads.loss`): label smoothing, small-loss reweighting
(``forget_rate`` > 0: the hardest ``forget_rate`` of positive and of negative frames are left out
each batch, ramped up over ``warmup_epochs``), co-teaching (two nets; each trains on the frames
the *other* finds easy). Tier 1 tracks, when present, are held out to validate and early-stop.

Augmentation happens on embeddings, so it fits a store: a random crop per track and epoch,
time stretching by resampling frames (the grid stretches with it, like a small tempo change),
feature dropout (whole embedding channels) and a little Gaussian noise.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from edm.data.schema import Tier, TrackAnnotation
from edm.decode.peaks import pick_peaks
from edm.heads.activations import EVENT_TASKS, Activations, average_probabilities
from edm.heads.config import TrainConfig
from edm.heads.finetune import FinetunedHeads, finetuned_net
from edm.heads.loss import (
    ShiftTolerantBCELoss,
    balanced_pos_weight,
    section_loss,
    small_loss_mask,
    tolerance_frames,
    weighted_mean,
)
from edm.heads.metrics import PEAK_DEFAULTS
from edm.heads.model import TemporalHeads
from edm.heads.targets import SECTION_LABELS, HeadTargets, make_targets
from edm.heads.workers import FitJob, run_fit_jobs


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did: sent to the progress callback after every epoch."""

    epoch: int  # 1-based
    epochs: int  # planned; equals ``epoch`` on the last one when early stopping ends the fit
    loss: float
    validation_loss: float | None
    seconds: float  # wall time of this epoch, validation included


#: Called as ``progress(report)`` after every epoch.
ProgressFn = Callable[[EpochReport], None]


@dataclass
class TrackData:
    """One track as training sees it: stored embeddings plus its (possibly noisy) labels.

    ``annotation`` None (or Tier 3) marks an unlabeled track.
    """

    track_id: str
    embeddings: np.ndarray  # (frames, dim) float32
    frames_per_second: float
    annotation: TrackAnnotation | None = None
    descriptors: dict[str, np.ndarray] | None = None
    #: Training targets built from ``annotation``, per ``unlabeled_weight``: built once for
    #: every fit (k-fold trains each track four times out of five). ``replace`` drops it.
    _targets: dict[float, HeadTargets] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def n_frames(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def labelled(self) -> bool:
        return self.annotation is not None and self.annotation.metadata.tier != Tier.UNLABELED

    @property
    def genre(self) -> str:
        return self.annotation.track.genre if self.annotation is not None else ""


# ---------------------------------------------------------------------------------------------
# Batches


@dataclass
class _Example:
    embeddings: np.ndarray  # (frames, dim)
    targets: HeadTargets


def _example(track: TrackData, config: TrainConfig) -> _Example:
    assert track.annotation is not None
    targets = track._targets.get(config.unlabeled_weight)
    if targets is None:
        targets = make_targets(
            track.annotation,
            track.n_frames,
            track.frames_per_second,
            unlabeled_weight=config.unlabeled_weight,
        )
        track._targets[config.unlabeled_weight] = targets
    return _Example(np.asarray(track.embeddings, dtype=np.float32), targets)


_ARRAYS = (
    "beat",
    "beat_weight",
    "downbeat",
    "downbeat_weight",
    "boundary",
    "boundary_weight",
    "section",
)


def _crop(example: _Example, n_frames: int, rng: np.random.Generator, stretch: float) -> _Example:
    """A random crop of about ``n_frames`` output frames, optionally time-stretched."""
    factor = float(rng.uniform(1.0 - stretch, 1.0 + stretch)) if stretch > 0 else 1.0
    total = len(example.embeddings)
    source_len = min(total, math.ceil(n_frames * factor))
    start = int(rng.integers(0, total - source_len + 1))
    out_len = max(1, min(n_frames, round(source_len / factor)))
    targets = example.targets
    if factor == 1.0:
        piece = {name: getattr(targets, name)[start : start + out_len] for name in _ARRAYS}
        embeddings = example.embeddings[start : start + out_len]
    else:
        # Dense arrays: nearest source frame. Events: move each positive to its new frame, so
        # a stretched beat stays one frame wide.
        source = np.clip(np.round(np.arange(out_len) * factor).astype(int) + start, 0, total - 1)
        embeddings = example.embeddings[source]
        piece = {name: getattr(targets, name)[source] for name in _ARRAYS}
        for name in EVENT_TASKS:
            positives = np.flatnonzero(getattr(targets, name)[start : start + source_len])
            moved = np.round(positives / factor).astype(int)
            event = np.zeros(out_len, dtype=np.float32)
            event[moved[moved < out_len]] = 1.0
            piece[name] = event
    return _Example(
        np.ascontiguousarray(embeddings),
        HeadTargets(**piece, frames_per_second=targets.frames_per_second),
    )


def _collate(examples: Sequence[_Example]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pad to the longest example; padding has weight 0 and section class -1.

    ``x`` is built contiguous in the net's ``(batch, dim, frames)`` layout: noise drawn for a
    transposed view costs 5x more (torch's strided random fill), and so does every op after.
    """
    length = max(len(e.embeddings) for e in examples)
    dim = examples[0].embeddings.shape[1]
    x = np.zeros((len(examples), dim, length), dtype=np.float32)
    batch: dict[str, np.ndarray] = {
        name: np.zeros((len(examples), length), dtype=np.float32) for name in _ARRAYS
    }
    batch["section"] = np.full((len(examples), length), -1, dtype=np.int64)
    for row, example in enumerate(examples):
        n = len(example.embeddings)
        x[row, :, :n] = example.embeddings.T
        for name in _ARRAYS:
            batch[name][row, :n] = getattr(example.targets, name)
    tensors = {name: torch.from_numpy(values) for name, values in batch.items()}
    return torch.from_numpy(x), tensors


# ---------------------------------------------------------------------------------------------
# Losses per batch


class _Criterion:
    """Per-task shift-tolerant losses built for one frame rate and one training set."""

    def __init__(self, config: TrainConfig, frames_per_second: float, examples: Sequence[_Example]):
        tolerances = {
            "beat": config.beat_tolerance_s,
            "downbeat": config.beat_tolerance_s,
            "boundary": config.boundary_tolerance_s,
        }
        self.config = config
        self.losses: dict[str, ShiftTolerantBCELoss] = {}
        for task in EVENT_TASKS:
            positive = sum(float(getattr(e.targets, task).sum()) for e in examples)
            weight = sum(float(getattr(e.targets, f"{task}_weight").sum()) for e in examples)
            self.losses[task] = ShiftTolerantBCELoss(
                tolerance_frames(tolerances[task], frames_per_second),
                pos_weight=balanced_pos_weight(positive, weight - positive),
                label_smoothing=config.label_smoothing,
            )

    def elementwise(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """task → (losses, weights, positive mask)."""
        result = {}
        for task, loss in self.losses.items():
            values, weights = loss(outputs[task], batch[task], batch[f"{task}_weight"])
            result[task] = (values, weights, batch[task] > 0.5)
        if "section" in outputs:
            values, weights = section_loss(
                outputs["section"], batch["section"], self.config.label_smoothing
            )
            result["section"] = (values, weights, torch.zeros_like(weights, dtype=torch.bool))
        return result

    def total(
        self,
        parts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        masks: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        loss = torch.zeros(())
        for task, (values, weights, _) in parts.items():
            if masks is not None:
                weights = weights * masks[task]
            loss = loss + self.config.task_weights.get(task, 1.0) * weighted_mean(values, weights)
        return loss


def _select_small_loss(
    parts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], forget_rate: float
) -> dict[str, torch.Tensor]:
    """Small-loss masks per task, chosen separately among positives and among negatives.

    Positives always lose more than negatives early on; one threshold over both would drop
    positives only.
    """
    masks = {}
    for task, (values, weights, positive) in parts.items():
        pos = small_loss_mask(values, weights * positive, forget_rate)
        neg = small_loss_mask(values, weights * ~positive, forget_rate)
        masks[task] = pos + neg
    return masks


# ---------------------------------------------------------------------------------------------
# One fit


def _input_stats(
    examples: Sequence[_Example], net: torch.nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of what the heads see: the embeddings, or with fine-tuned top layers
    their output at the start of training."""
    features = getattr(net, "features", None)
    count, total, squares = 0, 0.0, 0.0
    for example in examples:  # one track at a time: no float64 copy of the whole set
        values = features(example.embeddings) if features else example.embeddings
        values = np.asarray(values, dtype=np.float64)
        count += len(values)
        total = total + values.sum(axis=0)
        squares = squares + np.square(values).sum(axis=0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def _frame_rate(tracks: Sequence[TrackData]) -> float:
    rates = {round(t.frames_per_second, 6) for t in tracks}
    if len(rates) != 1:
        raise ValueError(f"tracks have different frame rates {sorted(rates)}; use one backbone")
    return float(next(iter(rates)))


def _new_net(config: TrainConfig, dim: int, fps: float, n_sections: int) -> torch.nn.Module:
    options = dict(config.model)
    if not config.augment:
        options["input_dropout"] = 0.0
    heads = TemporalHeads(dim, fps, n_sections=n_sections, **options)
    return finetuned_net(config.finetune, heads) if config.finetune else heads


#: Constructor arguments a warm start must share with the net it starts from (dropout rates
#: and the section classes may differ).
_ARCHITECTURE = ("input_dim", "frames_per_second", "channels", "fine_layers", "coarse_layers",
                 "coarse_rate_hz")


def warm_start(net: torch.nn.Module, model_dir: str, index: int) -> None:
    """Copy net ``index`` (modulo their number) of the heads folder ``model_dir`` into
    ``net``, input statistics included. Section outputs the source lacks keep their random
    initial weights; ones ``net`` lacks are dropped. Raises ValueError naming the folder when
    the architectures differ."""
    from edm.heads.artifacts import load_net_states

    if not isinstance(net, TemporalHeads):
        raise ValueError(f"{model_dir}: a fit that fine-tunes MERT layers starts from MERT, "
                         "not from a heads folder")
    config, states = load_net_states(model_dir)
    source = config["model"]
    mine = net.config()
    differ = [f"{k} {source.get(k)} vs {mine[k]}" for k in _ARCHITECTURE
              if source.get(k) != mine[k]]
    if "finetune" in source or differ:
        raise ValueError(f"{model_dir}: its nets cannot start this fit "
                         f"({'; '.join(differ) or 'fine-tuned MERT layers'})")
    state = states[index % len(states)]
    target = net.state_dict()
    for name, value in target.items():
        weights = torch.from_numpy(np.asarray(state[name]))
        if name.startswith("out."):  # one row per output: beat, downbeat, boundary, sections
            rows = min(len(weights), len(value))
            value[:rows] = weights[:rows]
        else:
            value.copy_(weights)


def predict_probabilities(
    nets: Sequence[TemporalHeads],
    embeddings: np.ndarray,
    frames_per_second: float,
    section_labels: tuple[str, ...] = (),
) -> Activations:
    """Sigmoid (softmax for sections) probabilities of one whole track, averaged over nets."""
    x = torch.from_numpy(np.array(np.asarray(embeddings).T, dtype=np.float32, order="C"))[None]
    per_net = []
    with torch.no_grad():
        for net in nets:
            net.eval()
            outputs = net(x)
            probabilities = {
                task: torch.sigmoid(outputs[task][0]).numpy() for task in EVENT_TASKS
            }
            if "section" in outputs:
                probabilities["section"] = torch.softmax(outputs["section"][0], dim=-1).numpy()
            per_net.append(probabilities)
    return average_probabilities(per_net, frames_per_second, section_labels)


@dataclass
class FitResult:
    """Trained nets (one, or two with co-teaching) and the curve of training losses."""

    nets: list[TemporalHeads]
    frames_per_second: float
    section_labels: tuple[str, ...]
    losses: list[float]
    validation_losses: list[float]
    best_epoch: int
    #: Wall seconds of this fit: setup_s (targets, input statistics, nets), train_s
    #: (forward/backward), validation_s.
    seconds: dict[str, float] = field(default_factory=dict)

    def predict(self, embeddings: np.ndarray) -> Activations:
        return predict_probabilities(
            self.nets, embeddings, self.frames_per_second, self.section_labels
        )


@dataclass(frozen=True)
class Shard:
    """This process's part of a data-parallel fit: rank ``rank`` of ``world`` processes that
    draw the same batches (same seed), each trains on every ``world``-th example of a batch,
    and they average their gradients before each step (``torch.distributed``, gloo on CPU), so
    every process holds the same net. One thread each: two cores give ~2x where two threads of
    one process give 1.2-1.6x (issue 18).
    """

    rank: int
    world: int

    def split(self, examples: Sequence[_Example]) -> tuple[Sequence[_Example], float]:
        """This rank's examples of a batch and their share of it (a batch smaller than the
        world is trained whole by every rank, each counting for ``1 / world``)."""
        if len(examples) < self.world:
            return examples, 1.0 / self.world
        mine = examples[self.rank :: self.world]
        return mine, len(mine) / len(examples)

    def average(
        self, params: Sequence[torch.Tensor], loss: torch.Tensor, share: float
    ) -> torch.Tensor:
        """Replace each gradient by the share-weighted sum over ranks; returns the batch loss."""
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1)]) * share
        dist.all_reduce(flat)
        offset = 0
        for param, grad in zip(params, grads, strict=True):
            param.grad = flat[offset : offset + grad.numel()].view_as(grad).clone()
            offset += grad.numel()
        return flat[-1]


def _has_sections(examples: Sequence[_Example]) -> bool:
    return any(bool((e.targets.section >= 0).any()) for e in examples)


def fit_temporal(
    tracks: Sequence[TrackData],
    config: TrainConfig,
    *,
    validation: Sequence[TrackData] = (),
    extra: Sequence[_Example] = (),
    progress: ProgressFn | None = None,
    shard: Shard | None = None,
) -> FitResult:
    """Train one model (two with ``config.co_teaching``) on the labelled tracks given.

    ``validation`` tracks (Tier 1) are scored each epoch without small-loss selection and the
    best epoch's weights are kept; training stops after ``config.patience`` epochs without
    improvement. ``extra`` are ready-made examples (pseudo-labels) added to the training set.
    ``shard``: this process's part of a data-parallel fit (:class:`Shard`).
    """
    started = time.perf_counter()
    labelled = [t for t in tracks if t.labelled]
    if not labelled and not extra:
        raise ValueError("no labelled tracks to train on")
    fps = _frame_rate([*labelled, *validation] or [t for t in tracks])
    examples = [_example(t, config) for t in labelled] + list(extra)
    val_examples = [_example(t, config) for t in validation if t.labelled]
    sections = SECTION_LABELS if _has_sections(examples) else ()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    dim = examples[0].embeddings.shape[1]
    n_nets = 2 if config.co_teaching else 1
    nets = [_new_net(config, dim, fps, len(sections)) for _ in range(n_nets)]
    if shard is not None:
        # Same initial weights on every rank, then each its own noise and dropout draws.
        torch.manual_seed(config.seed + 7919 * (shard.rank + 1))
    mean, std = _input_stats(examples)
    for index, net in enumerate(nets):
        if config.init:  # its weights expect its own input statistics: they come with them
            warm_start(net, config.init, config.seed + index)
        else:
            net.set_input_stats(*(_input_stats(examples, net) if config.finetune else (mean, std)))
    criterion = _Criterion(config, fps, examples)
    groups = [
        net.parameter_groups(config.peak_learning_rate)
        if isinstance(net, FinetunedHeads)
        else [{"params": list(net.parameters()), "lr": config.peak_learning_rate}]
        for net in nets
    ]
    optimizers = [
        torch.optim.AdamW(group, lr=config.peak_learning_rate, weight_decay=config.weight_decay)
        for group in groups
    ]
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    epochs = config.epochs_for(len(examples))
    schedulers = [
        torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=[group["lr"] for group in opt.param_groups],
            total_steps=max(1, epochs * steps_per_epoch),
            pct_start=0.15,
        )
        for opt in optimizers
    ]
    crop_frames = max(1, round(config.crop_s * fps))
    stretch = config.stretch if config.augment else 0.0
    losses: list[float] = []
    val_losses: list[float] = []
    best: tuple[float, int, list[dict[str, torch.Tensor]]] | None = None
    seconds = {"setup_s": time.perf_counter() - started, "train_s": 0.0, "validation_s": 0.0}
    for epoch in range(epochs):
        epoch_started = time.perf_counter()
        forget = config.forget_rate * min(1.0, epoch / max(1, config.warmup_epochs))
        order = rng.permutation(len(examples))
        epoch_loss = 0.0
        for net in nets:
            net.train()
        for first in range(0, len(order), config.batch_size):
            chosen = [
                _crop(examples[i], crop_frames, rng, stretch)
                for i in order[first : first + config.batch_size]
            ]
            share = 1.0
            if shard is not None:  # every rank drew the same crops (same seed): keep its own
                chosen, share = shard.split(chosen)
            x, batch = _collate(chosen)
            if config.augment and config.noise_std > 0:
                x = x + config.noise_std * std[None, :, None] * torch.randn_like(x)
            parts = [criterion.elementwise(net(x), batch) for net in nets]
            if forget > 0:
                masks = [_select_small_loss(p, forget) for p in parts]
                # Co-teaching: each net learns from the frames its peer finds easy.
                chosen_masks = masks[::-1] if n_nets == 2 else masks
            else:
                chosen_masks = [None] * n_nets
            for opt, sched, part, mask in zip(
                optimizers, schedulers, parts, chosen_masks, strict=True
            ):
                loss = criterion.total(part, mask)
                opt.zero_grad()
                loss.backward()
                params = [p for group in opt.param_groups for p in group["params"]]
                if shard is not None:
                    loss = shard.average(params, loss, share)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                epoch_loss += float(loss.detach()) / n_nets
        losses.append(epoch_loss / steps_per_epoch)
        trained = time.perf_counter()
        seconds["train_s"] += trained - epoch_started
        stop = False
        if val_examples:
            val_loss = _evaluate_loss(nets, criterion, val_examples)
            val_losses.append(val_loss)
            if best is None or val_loss < best[0]:
                best = (val_loss, epoch, [copy.deepcopy(net.state_dict()) for net in nets])
            stop = epoch - best[1] >= config.patience
            seconds["validation_s"] += time.perf_counter() - trained
        if progress:
            progress(
                EpochReport(
                    epoch=epoch + 1,
                    epochs=epoch + 1 if stop else epochs,
                    loss=losses[-1],
                    validation_loss=val_losses[-1] if val_examples else None,
                    seconds=time.perf_counter() - epoch_started,
                )
            )
        if stop:
            break
    best_epoch = len(losses) - 1
    if best is not None:
        best_epoch = best[1]
        for net, state in zip(nets, best[2], strict=True):
            net.load_state_dict(state)
    for net in nets:
        net.eval()
    return FitResult(nets, fps, sections, losses, val_losses, best_epoch, seconds)


def _evaluate_loss(
    nets: Sequence[TemporalHeads], criterion: _Criterion, examples: Sequence[_Example]
) -> float:
    total = 0.0
    with torch.no_grad():
        for net in nets:
            net.eval()
            for example in examples:
                x, batch = _collate([example])
                total += float(criterion.total(criterion.elementwise(net(x), batch)))
    return total / (len(nets) * len(examples))


# ---------------------------------------------------------------------------------------------
# Pseudo-labels, k-fold


def pseudo_targets(activations: Activations, config: TrainConfig) -> HeadTargets:
    """Confident teacher outputs as targets: peaks above ``pseudo_threshold`` are positives,
    frames below ``pseudo_negative`` are negatives, everything in between is left out."""
    fps = activations.frames_per_second
    arrays: dict[str, np.ndarray] = {}
    for task in EVENT_TASKS:
        probabilities = getattr(activations, task)
        _, min_distance_s = PEAK_DEFAULTS[task]
        peaks = pick_peaks(probabilities, fps, height=config.pseudo_threshold,
                           min_distance_s=min_distance_s)
        event = np.zeros(activations.n_frames, dtype=np.float32)
        event[np.round(peaks.frames).astype(int)] = 1.0
        confident = (event > 0) | (probabilities < config.pseudo_negative)
        arrays[task] = event
        arrays[f"{task}_weight"] = confident.astype(np.float32) * config.pseudo_weight
    section = np.full(activations.n_frames, -1, dtype=np.int64)
    if activations.section is not None:
        sure = activations.section.max(axis=1) >= 0.8
        section[sure] = activations.section.argmax(axis=1)[sure]
    return HeadTargets(**arrays, section=section, frames_per_second=fps)


def fit_pseudo_label(
    tracks: Sequence[TrackData],
    config: TrainConfig,
    *,
    validation: Sequence[TrackData] = (),
    progress: ProgressFn | None = None,
) -> FitResult:
    """Teacher on labelled tracks → pseudo-labels for unlabeled ones → student on both.

    Without unlabeled tracks this is a plain :func:`fit_temporal`.
    """
    unlabeled = [t for t in tracks if not t.labelled]
    teacher = fit_temporal(tracks, config, validation=validation, progress=progress)
    if not unlabeled:
        return teacher
    extra = [
        _Example(
            np.asarray(t.embeddings, dtype=np.float32),
            pseudo_targets(teacher.predict(t.embeddings), config),
        )
        for t in unlabeled
    ]
    return fit_temporal(tracks, config, validation=validation, extra=extra, progress=progress)


def fit_model(
    tracks: Sequence[TrackData],
    config: TrainConfig,
    *,
    validation: Sequence[TrackData] = (),
    progress: ProgressFn | None = None,
    shard: Shard | None = None,
) -> FitResult:
    """One model as ``config`` asks: with pseudo-labelling if ``config.pseudo_label``;
    ``shard`` (plain fits only) makes it one process of a data-parallel fit."""
    if config.pseudo_label:
        if shard is not None:
            raise ValueError("pseudo-labelling fits do not run data-parallel")
        return fit_pseudo_label(tracks, config, validation=validation, progress=progress)
    return fit_temporal(tracks, config, validation=validation, progress=progress, shard=shard)


def split_validation(
    tracks: Sequence[TrackData], config: TrainConfig | None = None
) -> tuple[list[TrackData], list[TrackData]]:
    """(training tracks, Tier 1 validation tracks). When every labelled track is Tier 1, or
    ``config.tier1_validation`` is off, everything trains (Tier 3 tracks beside Tier 1 ones
    have no labels to train on by themselves)."""
    if config is not None and not config.tier1_validation:
        return list(tracks), []
    verified = [
        t
        for t in tracks
        if t.annotation is not None and t.annotation.metadata.tier == Tier.VERIFIED
    ]
    if not verified or len(verified) == sum(t.labelled for t in tracks):
        return list(tracks), []
    return [t for t in tracks if t not in verified], verified


def fold_assignment(track_ids: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    """Track id → fold number, balanced and reproducible.

    >>> sorted(fold_assignment(["a", "b", "c", "d", "e"], 2, 0).values())
    [0, 0, 0, 1, 1]
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if len(track_ids) < folds:
        raise ValueError(f"{len(track_ids)} labelled tracks cannot be split into {folds} folds")
    order = np.random.default_rng(seed).permutation(len(track_ids))
    return {track_ids[i]: rank % folds for rank, i in enumerate(order)}


@dataclass
class KFoldResult:
    """Out-of-fold activations of every labelled track, which fold held it out, the fold fits
    and (with ``final=True``) the model trained on every track."""

    oof: dict[str, Activations]
    fold_of: dict[str, int]
    fits: list[FitResult]
    final: FitResult | None = None
    #: Per job ("fold 1/5" …, "final"): wall_s, cpu_s (of the process that trained it),
    #: predict_s (out-of-fold prediction) and the fit's own stage times.
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)


def fit_kfold(
    tracks: Sequence[TrackData],
    config: TrainConfig,
    folds: int,
    *,
    final: bool = False,
    workers: int | None = None,
    progress_for: Callable[[str], ProgressFn | None] | None = None,
) -> KFoldResult:
    """Train ``folds`` models, each without one fold of labelled tracks, and predict that fold;
    with ``final`` also the model on every track (Tier 1 tracks validate it).

    The fits run side by side in ``workers`` processes (None: one per CPU; see
    :mod:`edm.heads.workers`). Unlabeled tracks join every fold's training set (they only
    matter with pseudo-labels). ``progress_for(stage)`` ("fold 1/5" …, "final") may return
    that fit's per-epoch progress callback.
    """
    labelled = [t for t in tracks if t.labelled]
    unlabeled = [t.track_id for t in tracks if not t.labelled]
    fold_of = fold_assignment([t.track_id for t in labelled], folds, config.seed)
    jobs = []
    for fold in range(folds):
        train, validation = split_validation(
            [t for t in labelled if fold_of[t.track_id] != fold], config
        )
        jobs.append(
            FitJob(
                name=f"fold {fold + 1}/{folds}",
                train=[t.track_id for t in train] + unlabeled,
                config=replace(config, seed=config.seed + fold),
                validation=[t.track_id for t in validation],
                predict=[t.track_id for t in labelled if fold_of[t.track_id] == fold],
            )
        )
    if final:
        train, validation = split_validation(tracks, config)
        jobs.append(
            FitJob(
                "final",
                [t.track_id for t in train],
                config,
                validation=[t.track_id for t in validation],
            )
        )
    results = run_fit_jobs(tracks, jobs, workers=workers, progress_for=progress_for)
    oof = {t: a for result in results[:folds] for t, a in result.predictions.items()}
    seconds = {
        job.name: {
            "wall_s": r.wall_s,
            "cpu_s": r.cpu_s,
            "predict_s": r.predict_s,
            **r.fit.seconds,
        }
        for job, r in zip(jobs, results, strict=True)
    }
    return KFoldResult(
        oof=oof,
        fold_of=fold_of,
        fits=[r.fit for r in results[:folds]],
        final=results[folds].fit if final else None,
        seconds=seconds,
    )


def trains_data_parallel(config: TrainConfig) -> bool:
    """Whether ``config``'s fit can be split over processes (:class:`Shard`): plain heads only;
    pseudo-labelling (teacher, then student) and MERT fine-tuning train in one process."""
    return not (config.pseudo_label or config.finetune)


def fit_data_parallel(
    tracks: Sequence[TrackData],
    config: TrainConfig,
    world: int,
    *,
    validation: Sequence[TrackData] = (),
    progress: ProgressFn | None = None,
) -> tuple[FitResult, dict[str, float]]:
    """One model trained by ``world`` single-threaded worker processes that split each batch
    (:class:`Shard`); returns the fit and its wall/CPU seconds (CPU summed over the
    processes). The numbers differ from :func:`fit_model`'s only by the random draws (noise and
    dropout per shard), not by the recipe.
    """
    if not trains_data_parallel(config):
        raise ValueError("data-parallel fits train plain heads (no pseudo-labels, no finetune)")
    with tempfile.TemporaryDirectory(prefix="edm-rendezvous-") as folder:
        rendezvous = str(Path(folder) / "group")
        jobs = [
            FitJob(
                "final" if rank == 0 else f"final, shard {rank + 1}/{world}",
                [t.track_id for t in tracks],
                config,
                validation=[t.track_id for t in validation],
                shard=(rank, world, rendezvous),
            )
            for rank in range(world)
        ]
        results = run_fit_jobs(
            [*tracks, *validation],
            jobs,
            workers=world,
            progress_for=lambda name: progress if name == "final" else None,
        )
    seconds = {
        "wall_s": results[0].wall_s,
        "cpu_s": sum(r.cpu_s for r in results),
        **results[0].fit.seconds,
    }
    return results[0].fit, seconds
