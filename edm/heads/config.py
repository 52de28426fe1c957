"""What shapes one fit of the heads: :class:`TrainConfig`, without importing torch (so the
CLI can show its defaults and :mod:`edm.heads.train` stays the only torch module)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Share of the hardest frames co-teaching leaves out when no forget rate is given.
CO_TEACHING_FORGET_RATE = 0.2


@dataclass
class TrainConfig:
    """Everything that shapes one fit; stored in ``config.json`` next to the weights."""

    #: 16, not 20: same held-out accuracy (synth heads bench decoded 0.999/0.999/0.869 vs
    #: 0.991/0.992/0.867; real DJ-case fit 0.81/0.66/0.47/0.70 vs 0.81/0.66/0.47/0.71) for a
    #: fifth less training (issue 18, benchmarks/RESULTS.md).
    epochs: int = 16
    batch_size: int = 8
    crop_s: float = 60.0
    learning_rate: float = 1e-2
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
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    #: ``FinetuneSpec.to_dict()`` to train MERT's top layers with the heads; {} = heads only.
    finetune: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})
