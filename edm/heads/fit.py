"""One call from a store and annotations to fitted heads: what ``edm fit-heads`` runs.

- :func:`load_labels` reads annotations (a folder of YAML/JAMS files, or a Rekordbox XML);
- :func:`load_tracks` matches them to store tracks (by ``track.content_hash``, else
  ``store.find(track.path)``) and reads embeddings and descriptors, timing the reads;
- :func:`fit_energy` fits the XGBoost energy head and scores it out-of-fold by track;
- :func:`fit_heads` runs k-fold (out-of-fold activations for the audit), the final model on
  every track, the energy head, and collects the metrics written to ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edm.data.schema import Section, TrackAnnotation, annotation_to_dict
from edm.evaluate import mean_scores
from edm.heads.activations import Activations
from edm.heads.artifacts import DEFAULT_MODEL_DIR, ArtifactError, Heads, read_config
from edm.heads.energy import (
    ENERGY_TARGETS,
    EnergyHead,
    descriptor_targets,
    energy_targets,
    section_features,
)
from edm.heads.metrics import score_track
from edm.heads.train import (
    FitResult,
    ProgressFn,
    TrackData,
    TrainConfig,
    fit_data_parallel,
    fit_kfold,
    fit_model,
    split_validation,
    trains_data_parallel,
)
from edm.heads.workers import usable_cpus


class FitError(ValueError):
    """Inputs that cannot be fitted (no store, no matching tracks …); names the file."""


def load_labels(source: str | Path) -> tuple[list[TrackAnnotation], list[str]]:
    """Annotations from a folder (``*.yaml`` edm annotations, ``*.jams`` truth) or a Rekordbox
    XML file. Returns (annotations, one-line problems naming each bad file)."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".xml":
        from edm.data.rekordbox import read_rekordbox_xml

        library = read_rekordbox_xml(path)
        return list(library.tracks), list(library.problems)
    if not path.is_dir():
        raise FitError(f"{path}: annotations must be a folder or a Rekordbox .xml file")
    from edm.data.schema import load_annotations

    annotations, errors = load_annotations(path)
    problems = [str(error) for error in errors]
    jams_files = sorted(path.glob("*.jams"))
    if jams_files:
        from edm.data.jams_io import load_truth

        for jams_path in jams_files:
            try:
                annotations.append(load_truth(jams_path))
            except (ValueError, OSError) as error:
                problems.append(f"{jams_path}: {error}")
    return annotations, problems


def annotation_set_hash(annotations: Sequence[TrackAnnotation]) -> str:
    """Hash of the annotations' content (order-independent): provenance of a fit."""
    digests = sorted(
        hashlib.sha256(json.dumps(annotation_to_dict(a), sort_keys=True).encode()).hexdigest()
        for a in annotations
    )
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:16]


@dataclass
class LoadedTracks:
    tracks: list[TrackData]
    problems: list[str]
    read_seconds: float
    backbone_info: dict[str, Any] = field(default_factory=dict)


def load_tracks(
    store: Any,
    annotations: Sequence[TrackAnnotation],
    backbone_key: str | None = None,
    *,
    include_unlabeled: bool = False,
) -> LoadedTracks:
    """Match annotations to store tracks and read their embeddings and descriptors.

    ``store`` is an :class:`edm.store.EmbeddingStore`. ``backbone_key`` None picks the store's
    only (or most common) backbone. Annotations without a store track are reported, not fatal.
    ``include_unlabeled`` adds store tracks without annotations as unlabeled (Tier 3) tracks.
    """
    if backbone_key is None:
        keys = store.all_backbone_keys()
        if not keys:
            raise FitError(f"{store.path}: the store holds no complete tracks")
        backbone_key = max(keys, key=keys.get)
    problems: list[str] = []
    matched: dict[str, TrackAnnotation] = {}
    for annotation in annotations:
        track_id = None
        if annotation.track.content_hash and store.has(annotation.track.content_hash, backbone_key):
            track_id = annotation.track.content_hash
        elif annotation.track.path:
            try:
                track_id = store.find(annotation.track.path)
            except (OSError, ValueError):
                track_id = None
        name = annotation.track.path or annotation.track_id
        if track_id is None or not store.has(track_id, backbone_key):
            problems.append(f"{store.path}: no {backbone_key!r} embeddings for track {name}")
            continue
        matched[track_id] = annotation
    ids = list(matched)
    if include_unlabeled:
        ids += [t for t in store.track_ids(backbone_key) if t not in matched]
    started = time.perf_counter()
    tracks: list[TrackData] = []
    info: dict[str, Any] = {}
    for track_id in ids:
        backbone = store.backbone_info(track_id, backbone_key)
        info = {
            "key": backbone_key,
            "name": backbone.name,
            "frames_per_second": backbone.frames_per_second,
            "dim": backbone.dim,
            "config": backbone.config,
        }
        try:
            descriptors = store.descriptors(track_id, backbone_key)
        except (KeyError, ValueError):
            descriptors = None
        tracks.append(
            TrackData(
                track_id=track_id,
                embeddings=store.embeddings(track_id, backbone_key),
                frames_per_second=backbone.frames_per_second,
                annotation=matched.get(track_id),
                descriptors=descriptors,
            )
        )
    return LoadedTracks(tracks, problems, time.perf_counter() - started, info)


# ---------------------------------------------------------------------------------------------
# Energy


def _cue_sections(annotation: TrackAnnotation, duration_s: float) -> list[Section]:
    """Sections implied by cues (start of track, every cue, end of track)."""
    starts = sorted({0.0, *(c.start_s for c in annotation.cues if c.start_s < duration_s - 1.0)})
    ends = [*starts[1:], duration_s]
    return [Section(start_s=s, end_s=e) for s, e in zip(starts, ends, strict=True) if e - s >= 1.0]


def energy_rows(track: TrackData) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, targets) of one track's sections; None when the track gives none.

    Sections with energy labels give labelled rows; otherwise sections (annotated, or between
    cues) get descriptor-derived targets.
    """
    annotation = track.annotation
    if annotation is None:
        return None
    sections, targets = energy_targets(annotation)
    duration_s = track.n_frames / track.frames_per_second
    if not sections:
        if track.descriptors is None:
            return None
        sections = list(annotation.sections) or _cue_sections(annotation, duration_s)
        if not sections:
            return None
        targets = descriptor_targets(track.descriptors, sections, track.frames_per_second)
    features, _ = section_features(
        track.embeddings, track.descriptors, sections, track.frames_per_second
    )
    return features, targets


@dataclass
class EnergyFit:
    head: EnergyHead | None
    oof_mae: dict[str, float]
    n_sections: int


def data_parallel_world(config: TrainConfig, workers: int | None) -> int:
    """Processes of a one-model fit: one per CPU (or ``workers``), at most one per example of
    a batch; 1 = train in this process (pseudo-labels and fine-tuning always do)."""
    if not trains_data_parallel(config):
        return 1
    return max(1, min(usable_cpus() if workers is None else workers, config.batch_size))


def fit_energy(tracks: Sequence[TrackData], *, folds: int = 3, seed: int = 0) -> EnergyFit:
    """Fit the energy head on every track's sections; MAE out-of-fold (grouped by track)."""
    rows = [(i, r) for i, t in enumerate(tracks) if (r := energy_rows(t)) is not None]
    if not rows:
        return EnergyFit(None, {}, 0)
    names = section_features(
        tracks[rows[0][0]].embeddings,
        tracks[rows[0][0]].descriptors,
        [(0.0, 1.0)],
        tracks[rows[0][0]].frames_per_second,
    )[1]
    features = np.concatenate([r[0] for _, r in rows])
    targets = np.concatenate([r[1] for _, r in rows])
    groups = np.concatenate([np.full(len(r[0]), i) for i, r in rows])
    oof = np.full_like(targets, np.nan)
    unique_groups = np.unique(groups)
    if folds >= 2 and len(unique_groups) >= folds:
        fold_of = dict(
            zip(
                unique_groups,
                np.random.default_rng(seed).permutation(len(unique_groups)) % folds,
                strict=True,
            )
        )
        row_fold = np.array([fold_of[g] for g in groups])
        for fold in range(folds):
            test = row_fold == fold
            head = EnergyHead(seed=seed).fit(features[~test], targets[~test], feature_names=names)
            for name, values in head.predict(features[test]).items():
                oof[test, list(ENERGY_TARGETS).index(name)] = values
    mae = {}
    for column, name in enumerate(ENERGY_TARGETS):
        known = np.isfinite(oof[:, column]) & np.isfinite(targets[:, column])
        if known.any():
            mae[name] = float(np.mean(np.abs(oof[known, column] - targets[known, column])))
    head = EnergyHead(seed=seed).fit(features, targets, feature_names=names)
    return EnergyFit(head if head.targets_ else None, mae, len(features))


# ---------------------------------------------------------------------------------------------
# The whole fit


@dataclass
class FitReport:
    heads: Heads
    oof: dict[str, Activations]
    metrics: dict[str, Any]


def score_tracks(
    activations: Mapping[str, Activations], truth: Mapping[str, TrackAnnotation]
) -> dict[str, float]:
    """Mean beat/downbeat/boundary scores over tracks that have both activations and truth."""
    per_track = [score_track(truth[t], a) for t, a in activations.items() if t in truth]
    scores = mean_scores(per_track)
    scores["n_tracks"] = float(len(per_track))
    return scores


def fit_heads(
    tracks: Sequence[TrackData],
    config: TrainConfig,
    *,
    backbone_key: str,
    backbone_name: str | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    folds: int = 5,
    fit_final: bool = True,
    provenance: Mapping[str, Any] | None = None,
    progress_for: Callable[[str], ProgressFn | None] | None = None,
    workers: int | None = None,
) -> FitReport:
    """k-fold out-of-fold activations (``folds`` >= 2), the final model, the energy head.

    The k-fold models and the final one train side by side in ``workers`` processes (None:
    one per CPU; see :mod:`edm.heads.workers`); a one-model fit (``folds`` < 2) is split over
    that many processes instead (data-parallel, :class:`edm.heads.train.Shard`; 1 = this
    process, with its torch threads). ``progress_for(stage)`` ("fold 1/5" …,
    "final") may return an epoch progress callback. Metrics: out-of-fold scores against the
    training labels themselves (noisy labels score lower than the model deserves; use held-out
    truth for accuracy), energy MAE out-of-fold (3-fold; none when ``folds`` < 2), per-fit
    epochs and losses, timings.
    """
    labelled = [t for t in tracks if t.labelled]
    if not labelled:
        raise FitError("no labelled tracks matched the store; nothing to train on")
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {
        "n_tracks": len(tracks),
        "n_labelled": len(labelled),
        "folds": folds,
    }
    oof: dict[str, Activations] = {}
    labels = {t.track_id: t.annotation for t in labelled if t.annotation is not None}
    train, validation = split_validation(tracks, config)  # of the final model
    # The energy head (XGBoost, one thread, GIL released) fits while the nets train. Its
    # 3-fold MAE is out-of-fold work too: a one-model fit (folds < 2) skips it, three quarters
    # of the head's cost (16.7 -> 4.0 s CPU on 100 tracks).
    energy_pool = ThreadPoolExecutor(1, thread_name_prefix="edm-energy")
    energy_folds = 3 if folds >= 2 else 0
    energy_job = energy_pool.submit(
        _timed, fit_energy, tracks, folds=energy_folds, seed=config.seed
    )
    started = time.perf_counter()
    if folds >= 2:
        result = fit_kfold(
            tracks, config, folds, final=fit_final, workers=workers, progress_for=progress_for
        )
        oof = result.oof
        metrics["oof_vs_labels"] = score_tracks(oof, labels)
        final = result.final
        fits = dict(zip(result.seconds, [*result.fits, *([final] if final else [])], strict=True))
        metrics["fits"] = _fit_summaries(fits, result.seconds)
    else:
        progress = progress_for("final") if progress_for else None
        world = data_parallel_world(config, workers)
        if world > 1:
            final, used = fit_data_parallel(
                train, config, world, validation=validation, progress=progress
            )
        else:
            cpu = time.process_time()
            final = fit_model(train, config, validation=validation, progress=progress)
            used = {
                "wall_s": time.perf_counter() - started,
                "cpu_s": time.process_time() - cpu,
                **final.seconds,
            }
        metrics["data_parallel"] = world
        metrics["fits"] = _fit_summaries({"final": final}, {"final": used})
    timings["fits_s"] = time.perf_counter() - started
    if final is not None:
        nets, section_labels = final.nets, final.section_labels
        metrics["final_best_epoch"] = final.best_epoch
        if validation:
            metrics["validation_tier1"] = score_tracks(
                {t.track_id: final.predict(t.embeddings) for t in validation}, labels
            )
    else:
        nets = [net for fit in result.fits for net in fit.nets]
        section_labels = result.fits[0].section_labels
    energy, timings["energy_s"] = energy_job.result()
    energy_pool.shutdown()
    metrics["energy_mae_oof"] = energy.oof_mae
    metrics["energy_sections"] = energy.n_sections
    metrics["seconds"] = timings
    heads = Heads(
        nets,
        backbone_key=backbone_key,
        backbone_name=backbone_name,
        backbone_options=backbone_options,
        frames_per_second=labelled[0].frames_per_second,
        section_labels=section_labels,
        energy=energy.head,
        train_config=config.to_dict(),
        provenance=dict(provenance or {}),
    )
    return FitReport(heads=heads, oof=oof, metrics=metrics)


def _timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    return function(*args, **kwargs), time.perf_counter() - started


def _fit_summaries(
    fits: Mapping[str, FitResult], seconds: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, Any]]:
    """Per fit: epochs run, best epoch (1-based), last training loss, best validation loss
    (None without validation tracks) and its seconds."""
    return {
        name: {
            "epochs": len(fit.losses),
            "best_epoch": fit.best_epoch + 1,
            "loss": fit.losses[-1],
            "validation_loss": min(fit.validation_losses) if fit.validation_losses else None,
            **{key: round(value, 3) for key, value in seconds.get(name, {}).items()},
        }
        for name, fit in fits.items()
    }


def _backbone_options(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """Options that rebuild the store's backbone; None when no track was read or the backbone
    is not one edm builds (the heads still fit; `edm analyze` then names the problem)."""
    from edm.backbones import options_from_config

    if not info:
        return None
    try:
        return options_from_config({"name": info["name"], **info.get("config", {})})
    except (KeyError, ValueError):
        return None


def resolve_init(
    init: str | Path | None, info: Mapping[str, Any], config: TrainConfig
) -> tuple[str, str]:
    """The heads folder a fit starts from, and a line saying why: ``("", reason)`` for random
    initial weights.

    ``init`` "default" starts from edm's shipped model when it was trained on the same
    backbone (name, options, dimension, frame rate) with the same net, else from random
    weights; None or "none" always from random weights; a folder must fit, or
    :class:`FitError` names it.
    """
    if init is None or str(init) == "none":
        return "", "random initial weights (--init none)"
    folder = DEFAULT_MODEL_DIR if str(init) == "default" else Path(init)
    try:
        model_backbone = read_config(folder)["backbone"]
    except (ArtifactError, KeyError) as error:
        raise FitError(f"--init {init}: {error}") from error
    mine = {
        "name": info.get("name"),
        "options": _backbone_options(info) or {},
        "dim": info.get("dim"),
        "frames_per_second": info.get("frames_per_second"),
    }
    differ = [
        f"{key} {model_backbone.get(key)!r} vs the store's {value!r}"
        for key, value in mine.items()
        if model_backbone.get(key, {} if key == "options" else None) != value
    ]
    if config.model or config.finetune:
        differ.append("this fit changes the net (--model / --finetune-top)")
    if not differ:
        return str(folder), f"started from {folder}"
    if str(init) == "default":
        return "", f"random initial weights (the default model does not fit: {differ[0]})"
    raise FitError(f"{folder}: cannot start this fit ({'; '.join(differ)}); use --init none")


@dataclass
class StoreFit:
    """What :func:`fit_from_store` wrote: the report, where, and one-line problems."""

    report: FitReport
    out_dir: Path
    problems: list[str]

    @property
    def oof(self) -> dict[str, Activations]:
        return self.report.oof


def fit_from_store(
    store_path: str | Path,
    annotations_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    backbone_key: str | None = None,
    folds: int = 5,
    include_unlabeled: bool = False,
    finetune_top: int | None = None,
    finetune_learning_rate: float = 1e-4,
    init: str | Path | None = "default",
    progress_for: Callable[[str], ProgressFn | None] | None = None,
    workers: int | None = None,
) -> StoreFit:
    """Read labels and embeddings, fit every head, write ``out_dir``: all of ``edm fit-heads``.

    Annotations that match no store track are returned as ``problems``, not raised.
    ``finetune_top`` N trains MERT's top N layers with the heads (the store key must hold
    layer L - N; see :mod:`edm.heads.finetune`). ``init``: where the nets start
    (:func:`resolve_init`; "default" = edm's shipped model when it fits the store).
    """
    from edm.heads.finetune import FinetuneError, finetune_spec
    from edm.store import EmbeddingStore

    config = config or TrainConfig()
    annotations, problems = load_labels(annotations_path)
    store = EmbeddingStore(store_path, mode="r")
    loaded = load_tracks(store, annotations, backbone_key, include_unlabeled=include_unlabeled)
    problems += loaded.problems
    key = loaded.backbone_info.get("key", backbone_key or "")
    # `edm analyze` rebuilds the backbone that made the store's embeddings from these.
    backbone_options = _backbone_options(loaded.backbone_info)
    if finetune_top is not None and loaded.tracks:
        try:
            spec = finetune_spec(store, loaded.tracks[0].track_id, key, finetune_top)
        except FinetuneError as error:
            raise FitError(str(error)) from error
        spec = replace(spec, learning_rate=finetune_learning_rate)
        config = replace(config, finetune=spec.to_dict())
    folder, init_note = resolve_init(init, loaded.backbone_info, config)
    config = replace(config, init=folder)
    provenance = {
        "init": init_note,
        "store": str(store_path),
        "backbone_key": key,
        "annotations": str(annotations_path),
        "annotation_set_hash": annotation_set_hash(annotations),
        "n_annotations": len(annotations),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    report = fit_heads(
        loaded.tracks,
        config,
        backbone_key=key,
        backbone_name=loaded.backbone_info.get("name"),
        backbone_options=backbone_options,
        folds=folds,
        provenance=provenance,
        progress_for=progress_for,
        workers=workers,
    )
    report.metrics["seconds"]["store_read_s"] = loaded.read_seconds
    report.metrics["init"] = init_note
    report.metrics["problems"] = problems
    report.heads.save(out_dir, metrics=report.metrics, oof=report.oof or None)
    return StoreFit(report=report, out_dir=Path(out_dir), problems=problems)
