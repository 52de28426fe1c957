"""Heads benchmark: fit on a synthetic library's noisy labels, score held-out tracks vs truth.

Rows (each one fit of one model, scored on the held-out library against its exact truth):
clean labels (the train library's truth) · noisy labels (its Rekordbox XML, ``default`` noise) ·
noisy + co-teaching · noisy without augmentation · half the tracks unlabeled without / with
pseudo-labels · leave-one-genre-out (train without a genre, test on that genre only).
Then the energy head (MAE vs truth on the held-out sections) and timings: one fit, store
read, and optionally k-fold (``--kfold K``).

Boundaries are decoded by plain peak picking (edm.heads.metrics), not by edm.decode.

    python benchmarks/bench_heads.py --train synth-train --test synth-test --store store.zarr
    python benchmarks/bench_heads.py ... --make 100 20   # build the libraries and store first
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edm.data.jams_io import load_truth
from edm.data.rekordbox import read_rekordbox_xml
from edm.data.schema import Metadata, Tier, TrackAnnotation
from edm.heads.energy import ENERGY_TARGETS, energy_targets
from edm.heads.fit import fit_energy, load_tracks, score_tracks
from edm.heads.train import TrackData, TrainConfig, fit_kfold, fit_model
from edm.store import EmbeddingStore

COLUMNS = ("beat_f", "downbeat_f", "boundary_f_0.5s", "boundary_f_3s")
#: The same scores after edm.decode (grid with tempo prior; phrase-aligned sections).
DECODED = ("dec_beat_f", "dec_downbeat_f", "dec_boundary_f_0.5s", "dec_boundary_f_3s")


def decoded_scores(activations, truth: TrackAnnotation) -> dict[str, float]:
    """Scores of edm.decode's grid and sections: what the heads give a real decoder."""
    from edm.decode import DecodeError, decode_beats, decode_sections
    from edm.evaluate import beat_f_measure, boundary_hit_rate
    from edm.heads.targets import boundary_times

    duration_s = truth.track.duration_s or activations.n_frames / activations.frames_per_second
    try:
        grid = decode_beats(activations)
        sections = decode_sections(activations, grid, duration_s=duration_s)
    except DecodeError:
        return dict.fromkeys(DECODED, 0.0)
    starts = np.array([s.start_s for s in sections])
    reference = boundary_times(truth)
    return {
        "dec_beat_f": beat_f_measure(truth.beats(), grid.beats),
        "dec_downbeat_f": beat_f_measure(truth.downbeats(), grid.downbeats),
        "dec_boundary_f_0.5s": boundary_hit_rate(reference, starts, duration_s, window_s=0.5),
        "dec_boundary_f_3s": boundary_hit_rate(reference, starts, duration_s, window_s=3.0),
    }


def make(out: Path, tracks: int, seed: int, store: Path) -> None:
    from edm.store.embed import embed_library
    from edm.synth import make_library

    if not (out / "rekordbox.xml").exists():
        make_library(out, tracks=tracks, seed=seed, minutes=3.0, noise="default")
    embed_library([out / "audio"], store, "spectral", workers=0)


def truth_of(library: Path) -> dict[str, TrackAnnotation]:
    truths = [load_truth(p) for p in sorted(glob.glob(str(library / "truth" / "*.jams")))]
    return {t.track_id: t for t in truths}


def with_labels(tracks: list[TrackData], labels: dict[str, TrackAnnotation]) -> list[TrackData]:
    return [replace(t, annotation=labels[t.track_id]) for t in tracks if t.track_id in labels]


def unlabel(tracks: list[TrackData], share: float, seed: int) -> list[TrackData]:
    """Mark ``share`` of the tracks Tier 3 (labels gone), as an unlabeled library part."""
    chosen = set(np.random.default_rng(seed).permutation(len(tracks))[: int(share * len(tracks))])
    out = []
    for index, track in enumerate(tracks):
        if index in chosen and track.annotation is not None:
            bare = track.annotation.model_copy(
                update={"grid": [], "cues": [], "metadata": Metadata(tier=Tier.UNLABELED)}
            )
            track = replace(track, annotation=bare)
        out.append(track)
    return out


def run_row(name, train, test, truth, config, rows, timings=None):
    started = time.perf_counter()
    fit = fit_model(train, config)
    seconds = time.perf_counter() - started
    predicted = {t.track_id: fit.predict(t.embeddings) for t in test}
    scores = score_tracks(predicted, truth)
    decoded = [decoded_scores(a, truth[track_id]) for track_id, a in predicted.items()]
    scores.update({k: float(np.mean([d[k] for d in decoded])) for k in DECODED})
    n_labelled = sum(t.labelled for t in train)
    rows.append((name, n_labelled, len(train), len(test), scores, seconds))
    print(
        f"{name:42s} "
        + " ".join(f"{scores.get(c, float('nan')):.3f}" for c in (*COLUMNS, *DECODED))
        + f"  {seconds:6.1f}s",
        flush=True,
    )
    if timings is not None:
        timings[name] = seconds
    return fit


def energy_mae(train: list[TrackData], test: list[TrackData], truth) -> dict[str, float]:
    fit = fit_energy(train, folds=0)
    if fit.head is None:
        return {}
    errors: dict[str, list[float]] = {name: [] for name in ENERGY_TARGETS}
    for track in test:
        sections, targets = energy_targets(truth[track.track_id])
        if not sections:
            continue
        predicted = fit.head.predict_sections(
            track.embeddings, track.descriptors, sections, track.frames_per_second
        )
        for column, name in enumerate(ENERGY_TARGETS):
            for row, energy in enumerate(predicted):
                value = getattr(energy, name)
                if value is not None and np.isfinite(targets[row, column]):
                    errors[name].append(abs(value - targets[row, column]))
    return {name: float(np.mean(v)) for name, v in errors.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--make", type=int, nargs=2, metavar=("TRAIN", "TEST"))
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                        help="Default: TrainConfig's (16, at least 60 batches).")
    parser.add_argument("--crop", type=float, default=60.0)
    parser.add_argument(
        "--limit", type=int, default=None, help="Use at most this many train tracks."
    )
    parser.add_argument("--kfold", type=int, default=0)
    parser.add_argument("--rows", default="clean,noisy,coteach,noaug,pseudo,logo")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="Training seed (crops, noise, init).")
    parser.add_argument("--model", type=json.loads, default={}, metavar="JSON",
                        help='TemporalHeads options, e.g. \'{"fine_layers": 4}\'.')
    parser.add_argument("--init", default="", metavar="DIR",
                        help="Start every fit from this heads folder's nets (e.g. "
                             "edm/default_model); default: random initial weights.")
    parser.add_argument("--lr", type=float, default=None,
                        help="Peak learning rate (default: TrainConfig's, by --init).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.make:
        make(args.train, args.make[0], 1, args.store)
        make(args.test, args.make[1], 2, args.store)

    store = EmbeddingStore(args.store)
    noisy = read_rekordbox_xml(args.train / "rekordbox.xml").tracks
    train_truth = truth_of(args.train)
    test_truth = truth_of(args.test)
    loaded = load_tracks(store, noisy, "spectral")
    train = loaded.tracks[: args.limit] if args.limit else loaded.tracks
    test = load_tracks(store, list(test_truth.values()), "spectral").tracks
    print(
        f"train {len(train)} tracks (store read {loaded.read_seconds:.1f}s, "
        f"{len(loaded.problems)} unmatched), test {len(test)} tracks; "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    config = TrainConfig(epochs=args.epochs, crop_s=args.crop, seed=args.seed, model=args.model,
                         init=args.init, learning_rate=args.lr)
    rows: list = []
    timings: dict[str, float] = {"store_read_s": loaded.read_seconds}
    print(f"{'row':42s} beatF dbF   bF.5  bF3  | decoded: beatF dbF bF.5 bF3   fit time")
    wanted = set(args.rows.split(","))
    if "clean" in wanted:
        run_row(
            "clean labels (truth)", with_labels(train, train_truth), test, test_truth, config, rows
        )
    if "noisy" in wanted:
        run_row("noisy labels (default noise)", train, test, test_truth, config, rows, timings)
    if "coteach" in wanted:
        run_row(
            "noisy + co-teaching (forget 0.2)",
            train,
            test,
            test_truth,
            replace(config, co_teaching=True, forget_rate=0.2),
            rows,
        )
    if "smallloss" in wanted:
        run_row(
            "noisy + small-loss 0.2 + smoothing 0.1",
            train,
            test,
            test_truth,
            replace(config, forget_rate=0.2, label_smoothing=0.1),
            rows,
        )
    if "noaug" in wanted:
        run_row(
            "noisy, augmentation off", train, test, test_truth, replace(config, augment=False), rows
        )
    if "pseudo" in wanted:
        half = unlabel(train, 0.5, seed=0)
        run_row("50% unlabeled, pseudo-label off", half, test, test_truth, config, rows)
        run_row(
            "50% unlabeled, pseudo-label on",
            half,
            test,
            test_truth,
            replace(config, pseudo_label=True),
            rows,
        )
    if "logo" in wanted:
        genres = sorted({t.track.genre for t in test_truth.values()})
        genre = genres[0]
        held = [t for t in test if test_truth[t.track_id].track.genre == genre]
        others = [t for t in train if train_truth[t.track_id].track.genre != genre]
        run_row(
            f"leave-one-genre-out ({genre}: {len(held)} test)",
            others,
            held,
            test_truth,
            config,
            rows,
        )
    print("\nenergy MAE on held-out truth sections:")
    for name, labels in (
        ("noisy labels (descriptor targets)", None),
        ("truth energies", train_truth),
    ):
        tracks = train if labels is None else with_labels(train, labels)
        mae = energy_mae(tracks, test, test_truth)
        print(f"  {name:36s} " + " ".join(f"{k} {v:.3f}" for k, v in mae.items()))
    if args.kfold:
        started = time.perf_counter()
        result = fit_kfold(train, config, args.kfold)
        timings[f"kfold_{args.kfold}_s"] = time.perf_counter() - started
        oof = score_tracks(result.oof, train_truth)
        print(f"{args.kfold}-fold OOF vs truth: " + " ".join(f"{c} {oof[c]:.3f}" for c in COLUMNS))
    print(
        "timings (s):",
        {k: round(v, 1) for k, v in timings.items()},
        f"load {os.getloadavg()[0]:.1f}",
    )


if __name__ == "__main__":
    main()
