"""The energy head: gradient boosting on per-section pooled embeddings and descriptors.

Features of a section (:func:`section_features`): the mean and standard deviation of the
embeddings over the section; the mean of each audio descriptor, both raw and relative to the
track's loudest section (how a section stands within its track, which human ratings follow);
the section's position in the track and its length.

Targets (:func:`energy_targets`): ``overall``, ``bass``, ``mid``, ``high`` in [0, 1] and
``rating`` (1–10) wherever an annotation's sections carry them. A track without any energy
labels contributes descriptor-derived targets instead (:func:`descriptor_targets`: each
band's RMS level on the fixed scale of :func:`edm.data.schema.energy_from_db`, −60 dB re full
scale → 0, 0 dB → 1), which is what "energy" means when nobody rated it.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 3)); y = 0.5 + 0.4 * np.tanh(X[:, :1])
>>> head = EnergyHead(n_estimators=200).fit(X, y, target_names=["overall"])
>>> head.targets_
('overall',)
>>> bool(np.abs(head.predict(X)["overall"] - y[:, 0]).mean() < 0.05)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edm.backbones.descriptors import SUMMARY_NAMES
from edm.data.schema import EnergyData, Section, TrackAnnotation, energy_from_db, level_db
from edm.heads.activations import span

#: What the head predicts, and the range each prediction is clipped to.
ENERGY_TARGETS: dict[str, tuple[float, float]] = {
    "overall": (0.0, 1.0),
    "bass": (0.0, 1.0),
    "mid": (0.0, 1.0),
    "high": (0.0, 1.0),
    "rating": (0.0, 10.0),
}
#: Descriptors whose section means are also given relative to the track's loudest section.
_LEVEL_DESCRIPTORS = ("rms", "bass", "mid", "high")
#: Energy bands measured from the descriptors (energy field → descriptor): :func:`section_levels`.
LEVEL_BANDS: dict[str, str] = {"overall": "rms", "bass": "bass", "mid": "mid", "high": "high"}
#: A target needs this many labelled sections before a model is fitted for it.
MIN_ROWS = 8


class EnergyError(ValueError):
    """Energy features or targets that do not fit together."""


def _spans(sections: Sequence[Section | tuple[float, float]]) -> list[tuple[float, float]]:
    return [
        (s.start_s, s.end_s) if isinstance(s, Section) else (float(s[0]), float(s[1]))
        for s in sections
    ]


def section_features(
    embeddings: np.ndarray,
    descriptors: Mapping[str, np.ndarray] | None,
    sections: Sequence[Section | tuple[float, float]],
    frames_per_second: float,
) -> tuple[np.ndarray, list[str]]:
    """``(n_sections, n_features)`` float32 features and their names, for one track's sections.

    All sections of a track must be passed together: relative levels are computed across them.
    """
    spans = _spans(sections)
    if not spans:
        raise EnergyError("no sections given")
    n_frames, dim = embeddings.shape
    duration_s = n_frames / frames_per_second
    names = [f"emb_mean_{i}" for i in range(dim)] + [f"emb_std_{i}" for i in range(dim)]
    # The summary descriptors only: band levels would multiply the features (and a store
    # written before they existed has none, so features would differ between tracks).
    descriptor_names = sorted(set(descriptors or ()) & set(SUMMARY_NAMES))
    names += [f"{name}_mean" for name in descriptor_names]
    relative = [name for name in _LEVEL_DESCRIPTORS if name in descriptor_names]
    names += [f"{name}_relative" for name in relative]
    names += ["start_relative", "length_s"]
    rows = []
    means: dict[str, list[float]] = {name: [] for name in descriptor_names}
    for start_s, end_s in spans:
        frames = span(start_s, end_s, frames_per_second, n_frames)
        piece = embeddings[frames]
        row = [*piece.mean(axis=0), *piece.std(axis=0)]
        for name in descriptor_names:
            means[name].append(float(np.mean(descriptors[name][frames])))  # type: ignore[index]
        rows.append(row)
    features = np.asarray(rows, dtype=np.float64)
    extra = [np.asarray(means[name]) for name in descriptor_names]
    extra += [np.asarray(means[name]) / max(max(means[name]), 1e-9) for name in relative]
    extra += [
        np.asarray([start / duration_s for start, _ in spans]),
        np.asarray([end - start for start, end in spans]),
    ]
    features = np.column_stack([features, *extra]) if extra else features
    return features.astype(np.float32), names


def energy_targets(annotation: TrackAnnotation) -> tuple[list[Section], np.ndarray]:
    """Sections with energy labels and their ``(n, len(ENERGY_TARGETS))`` targets (NaN = none)."""
    sections = [s for s in annotation.sections if s.energy is not None]
    targets = np.full((len(sections), len(ENERGY_TARGETS)), np.nan)
    for row, section in enumerate(sections):
        for column, name in enumerate(ENERGY_TARGETS):
            value = getattr(section.energy, name)
            if value is not None:
                targets[row, column] = value
    return sections, targets


def section_rms(
    values: np.ndarray, sections: Sequence[Section | tuple[float, float]],
    frames_per_second: float,
) -> np.ndarray:
    """RMS of a per-frame descriptor over each section's frames (:func:`span`)."""
    values = np.asarray(values, dtype=float)
    return np.asarray([
        np.sqrt(np.mean(np.square(values[span(start_s, end_s, frames_per_second, len(values))])))
        for start_s, end_s in _spans(sections)
    ])


def section_db(
    descriptors: Mapping[str, np.ndarray],
    sections: Sequence[Section | tuple[float, float]],
    frames_per_second: float,
) -> dict[str, np.ndarray]:
    """RMS level of each section in dB re full scale, per band of :data:`LEVEL_BANDS`
    (:func:`section_rms` of the band's descriptor, :func:`edm.data.schema.level_db`)."""
    return {
        name: np.asarray(level_db(section_rms(descriptors[source], sections, frames_per_second)))
        for name, source in LEVEL_BANDS.items()
        if source in descriptors and len(descriptors[source])
    }


def section_levels(
    descriptors: Mapping[str, np.ndarray],
    sections: Sequence[Section | tuple[float, float]],
    frames_per_second: float,
) -> dict[str, np.ndarray]:
    """Energy of each section per band, on a fixed scale that means the same in every track.

    The one definition of descriptor energy: :data:`LEVEL_BANDS` ``overall``/``bass``/
    ``mid``/``high`` are the section's RMS level of the ``rms``/``bass``/``mid``/``high``
    descriptor (:func:`section_db`) through :func:`edm.data.schema.energy_from_db` (−60 dB re
    full scale → 0, 0 dB → 1). Nothing is rescaled per track: a quiet master's loudest section
    stays below a loud master's. Decoding reports it (:mod:`edm.decode.energy`) and the energy
    head learns it where nobody rated a track.

    >>> rms = np.array([0.01, 0.01, 0.1, 0.1])  # -40 dB, then -20 dB
    >>> section_levels({"rms": rms}, [(0, 2), (2, 4)], 1.0)["overall"].round(3).tolist()
    [0.333, 0.667]
    """
    return {name: np.asarray(energy_from_db(db))
            for name, db in section_db(descriptors, sections, frames_per_second).items()}


def descriptor_targets(
    descriptors: Mapping[str, np.ndarray],
    sections: Sequence[Section | tuple[float, float]],
    frames_per_second: float,
) -> np.ndarray:
    """:func:`section_levels` of each section as targets.

    Columns follow :data:`ENERGY_TARGETS`; ``rating`` is NaN (nobody rated it).
    """
    levels = section_levels(descriptors, sections, frames_per_second)
    targets = np.full((len(_spans(sections)), len(ENERGY_TARGETS)), np.nan)
    for column, name in enumerate(ENERGY_TARGETS):
        if name in levels:
            targets[:, column] = levels[name]
    return targets


class EnergyHead:
    """One XGBoost regressor per energy target, fitted on the rows where that target is known.

    Parameters
    ----------
    n_estimators : int, default=100
    max_depth : int, default=4
    learning_rate : float, default=0.1
    seed : int, default=0

    Attributes
    ----------
    models_ : dict[str, xgboost.XGBRegressor]
    targets_ : tuple[str, ...]
        Targets that had at least :data:`MIN_ROWS` labelled rows.
    feature_names_ : list[str]
    train_mae_ : dict[str, float]
    """

    def __init__(
        self,
        n_estimators: int = 100,
        *,
        max_depth: int = 4,
        learning_rate: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }

    def _regressor(self) -> Any:
        from xgboost import XGBRegressor

        return XGBRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=0.8,
            colsample_bytree=0.3,
            random_state=self.seed,
            n_jobs=1,
        )

    def fit(
        self,
        features: np.ndarray,
        targets: np.ndarray,
        *,
        target_names: Sequence[str] = tuple(ENERGY_TARGETS),
        feature_names: Sequence[str] | None = None,
    ) -> EnergyHead:
        """Fit on ``(rows, features)`` and ``(rows, len(target_names))`` targets (NaN = unknown)."""
        features = np.asarray(features, dtype=np.float32)
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim == 1:
            targets = targets[:, None]
        if features.ndim != 2 or len(features) != len(targets):
            raise EnergyError(
                f"features {features.shape} and targets {targets.shape} need the same rows"
            )
        if targets.shape[1] != len(target_names):
            raise EnergyError(f"{targets.shape[1]} target columns for names {list(target_names)}")
        unknown = [name for name in target_names if name not in ENERGY_TARGETS]
        if unknown:
            raise EnergyError(f"unknown energy targets {unknown}; allowed: {list(ENERGY_TARGETS)}")
        self.feature_names_ = list(feature_names or [f"f{i}" for i in range(features.shape[1])])
        self.models_: dict[str, Any] = {}
        self.train_mae_: dict[str, float] = {}
        for column, name in enumerate(target_names):
            known = np.isfinite(targets[:, column])
            if known.sum() < MIN_ROWS:
                continue
            model = self._regressor()
            model.fit(features[known], targets[known, column])
            self.models_[name] = model
            predicted = model.predict(features[known])
            self.train_mae_[name] = float(np.mean(np.abs(predicted - targets[known, column])))
        self.targets_ = tuple(self.models_)
        return self

    def predict(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Target name → ``(rows,)`` predictions, clipped to the target's range."""
        if not hasattr(self, "models_"):
            raise EnergyError("EnergyHead is not fitted yet; call fit() first")
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names_):
            raise EnergyError(
                f"expected (rows, {len(self.feature_names_)}) features, got {features.shape}"
            )
        return {
            name: np.clip(model.predict(features), *ENERGY_TARGETS[name]).astype(np.float32)
            for name, model in self.models_.items()
        }

    def predict_sections(
        self,
        embeddings: np.ndarray,
        descriptors: Mapping[str, np.ndarray] | None,
        sections: Sequence[Section | tuple[float, float]],
        frames_per_second: float,
    ) -> list[EnergyData]:
        """One :class:`EnergyData` per section of one track."""
        features, _ = section_features(embeddings, descriptors, sections, frames_per_second)
        predicted = self.predict(features)
        return [
            EnergyData(**{name: float(values[row]) for name, values in predicted.items()})
            for row in range(len(features))
        ]

    def save(self, folder: str | Path) -> dict[str, Any]:
        """Write one ``energy_<target>.ubj`` per target; return the config to store in JSON."""
        folder = Path(folder)
        files = {}
        for name, model in self.models_.items():
            filename = f"energy_{name}.ubj"
            model.save_model(folder / filename)
            files[name] = filename
        return {
            "params": self.get_params(),
            "files": files,
            "feature_names": self.feature_names_,
            "train_mae": self.train_mae_,
        }

    @classmethod
    def load(cls, folder: str | Path, config: Mapping[str, Any]) -> EnergyHead:
        """Rebuild from :meth:`save`'s config and the UBJ files beside it."""
        head = cls(**config["params"])
        head.feature_names_ = list(config["feature_names"])
        head.train_mae_ = dict(config.get("train_mae", {}))
        head.models_ = {}
        for name, filename in config["files"].items():
            model = head._regressor()
            model.load_model(Path(folder) / filename)
            head.models_[name] = model
        head.targets_ = tuple(head.models_)
        return head
