"""What shapes one fit of the heads: :class:`TrainConfig`, without importing torch (so the
CLI can show its defaults and :mod:`edm.heads.train` stays the only torch module)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Share of the hardest frames co-teaching leaves out when no forget rate is given.
CO_TEACHING_FORGET_RATE = 0.2
#: Default epochs: 16, not 20, gives the same held-out accuracy on 100 tracks (synth heads
#: bench decoded 0.999/0.999/0.869 vs 0.991/0.992/0.867; real DJ-case fit on 29 tracks
#: 0.81/0.66/0.47/0.70 vs 0.81/0.66/0.47/0.71) for a fifth less training (issue 18)...
AUTO_EPOCHS = 16
#: ...but a small library has few batches per epoch (3 at 24 tracks), and 16 epochs of them
#: cost its out-of-fold beat F 0.04 (0.749 -> 0.710): default fits run at least this many.
MIN_AUTO_STEPS = 60
#: A fit that starts from a trained model (``init``) runs this many epochs at this peak
#: learning rate: on the real DJ case (29 renders) 4 epochs at 3e-3 beat 16 epochs from random
#: weights everywhere but boundary F@3 s, and held the synthetic figures (issue 18).
WARM_EPOCHS = 4
WARM_LEARNING_RATE = 3e-3
#: Peak learning rate of a fit from random weights.
LEARNING_RATE = 1e-2


@dataclass
class TrainConfig:
    """Everything that shapes one fit; stored in ``config.json`` next to the weights."""

    #: None = :data:`AUTO_EPOCHS`, or more on a small library (:meth:`epochs_for`); a number
    #: is used as given.
    epochs: int | None = None
    batch_size: int = 8
    crop_s: float = 60.0
    #: Peak (one-cycle) learning rate; None = :data:`LEARNING_RATE`, or
    #: :data:`WARM_LEARNING_RATE` when the fit starts from a trained model.
    learning_rate: float | None = None
    weight_decay: float = 1e-2
    beat_tolerance_s: float = 0.03
    boundary_tolerance_s: float = 0.25
    unlabeled_weight: float = 0.1
    task_weights: dict[str, float] = field(
        default_factory=lambda: {"beat": 1.0, "downbeat": 1.0, "boundary": 1.0, "section": 0.3}
    )
    label_smoothing: float = 0.0
    forget_rate: float = 0.0
    co_teaching: bool = False
    warmup_epochs: int = 5
    augment: bool = True
    stretch: float = 0.04
    noise_std: float = 0.05
    pseudo_label: bool = False
    pseudo_threshold: float = 0.5
    pseudo_negative: float = 0.1
    pseudo_weight: float = 0.5
    patience: int = 8
    #: Tier 1 tracks validate the fit (best epoch, early stop) when Tier 2 labels train it;
    #: False trains on them too (the default model's build, whose Tier 2 tracks are a
    #: teacher's labels beside Tier 1 truth).
    tier1_validation: bool = True
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    #: ``FinetuneSpec.to_dict()`` to train MERT's top layers with the heads; {} = heads only.
    finetune: dict[str, Any] = field(default_factory=dict)
    #: A heads folder whose nets start this fit (transfer learning, e.g. from edm's shipped
    #: model); "" = random initial weights. See ``edm.heads.fit.resolve_init``.
    init: str = ""

    def epochs_for(self, n_examples: int) -> int:
        """Epochs of a fit on ``n_examples`` tracks: :attr:`epochs` when set; else
        :data:`WARM_EPOCHS` from a trained model (:attr:`init`), or from random weights
        :data:`AUTO_EPOCHS`, more when that would be fewer than :data:`MIN_AUTO_STEPS` batches.

        >>> auto, fixed, warm = TrainConfig(), TrainConfig(epochs=5), TrainConfig(init="m/")
        >>> auto.epochs_for(24), auto.epochs_for(100), fixed.epochs_for(24), warm.epochs_for(24)
        (20, 16, 5, 4)
        """
        if self.epochs is not None:
            return self.epochs
        if self.init:
            return WARM_EPOCHS
        steps_per_epoch = max(1, math.ceil(n_examples / self.batch_size))
        return max(AUTO_EPOCHS, math.ceil(MIN_AUTO_STEPS / steps_per_epoch))

    @property
    def peak_learning_rate(self) -> float:
        """:attr:`learning_rate`, or its default for a fit from random or trained weights."""
        if self.learning_rate is not None:
            return self.learning_rate
        return WARM_LEARNING_RATE if self.init else LEARNING_RATE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})
