"""Build the default model shipped in ``edm/default_model/`` from synth and real music.

Re-runnable by anyone: the synth tracks are generated here (procedural, exact tier-1 truth),
the real tracks come from the corpus ``benchmarks/realdata/build_corpus.py`` builds on disk
(LMMS projects rendered by LMMS, truth read from the projects; nothing downloaded here), the
backbone is the weight-free ``spectral`` one, and the seeds are fixed. Steps:

1. ``make_library(DATA/train, tracks=N, seed=SEED)`` — audio + JAMS truth (no label noise).
2. With ``--real CORPUS``: the corpus's *training* side, split by artist/project exactly as
   ``benchmarks/bench_real.py`` splits it (same function, fraction and seed), so no held-out
   track or artist is trained on; ``--augment K`` adds K copies of each real training track
   through :func:`edm.synth.augment.augment` (EQ tilt, compression, MP3, noise, gain,
   pitch/tempo shifts; truth moved with the tempo).
3. ``embed_library`` into ``DATA/store.zarr`` with the spectral backbone.
4. ``fit_heads`` on the truth (no k-fold: the default model needs no out-of-fold activations),
   once per seed of ``--seed`` (default 1 3; each seed its own synth library and training, the
   real tracks and their augmented copies shared); the nets are saved as one model and analysis
   averages their probabilities. With ``--unlabeled DIR`` (teacher-student): the shipped model
   analyses every audio file under DIR first, and each track whose grid it is sure of (grid
   confidence >= :data:`TEACHER_MIN_CONFIDENCE`) trains the students too, its decoded grid and
   sections as Tier 2 labels.
5. Save to ``edm/default_model/`` (``config.json`` + ``heads.safetensors``; the XGBoost
   energy head only with ``--keep-energy``; without it analysis measures energy from the
   descriptors);
   ``metrics.json`` records the fit, ``provenance`` says how it was made and
   ``training_data.json`` lists every training track (source, id, content hash).

Usage::

    python benchmarks/build_default_model.py                      # synth only, a few minutes
    python benchmarks/build_default_model.py --real /work/realdata --augment 1 --out /tmp/m
    python benchmarks/build_default_model.py --real /work/realdata --augment 1 \
        --variety classic broad --out /tmp/m2        # 24 classic + 24 broad synth tracks
    python benchmarks/build_default_model.py --real /work/realdata --augment 1 \
        --unlabeled /work/unlabeled/audio --out /tmp/m3   # + teacher-student on real audio
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from edm.data.schema import TrackAnnotation
    from edm.heads.fit import FitReport
    from edm.synth.augment import Augmented

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "edm" / "default_model"
#: One net per seed (synth tracks and training), averaged: two seeds of the same recipe differ
#: by up to 0.07 in held-out real beat/tempo scores, their average is steadier and better
#: (RESULTS.md). The peers benchmark holds out synth seed 2026, the heads benchmark seed 2.
TRAIN_SEEDS = (1, 3)
#: Teacher-student: an unlabeled track trains the students only when the teacher's beat head
#: fires this strongly on its own decoded grid (``BeatGrid.confidence``, 0-1).
TEACHER_MIN_CONFIDENCE = 0.5
#: ``--fast-copies``: real tracks at these tempi get a varispeed copy at a tempo drawn from
#: FAST_TARGET_BPM, so the beat head hears real grooves (off-beat hats and basses) at drum &
#: bass and hardcore tempi, where its eighth-note peaks put fast tracks in anti-phase.
FAST_SOURCE_BPM = (110.0, 145.0)
FAST_TARGET_BPM = (165.0, 190.0)


def real_training_tracks(corpus: Path, data: Path, augment_copies: int, seed: int,
                         exclude_groups: frozenset[str] = frozenset(), fast_copies: bool = False,
                         extra: bool = False) -> tuple[list, list[dict]]:
    """The corpus's training side (bench_real's split, less ``exclude_groups``) plus augmented
    copies: annotations pointing at audio on disk, and one record per track for
    ``training_data.json``. ``fast_copies``: also a varispeed copy of each track in
    :data:`FAST_SOURCE_BPM`, played at a tempo drawn from :data:`FAST_TARGET_BPM`. ``extra``:
    the split's ``train_only`` groups too (:func:`bench_real.training_only`)."""
    import numpy as np

    from edm.audio import content_hash, load_audio
    from edm.synth.augment import augment, varispeed

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_real import load_corpus, split_by_group, training_only

    items = load_corpus(corpus)
    train, _test = split_by_group(items)
    train += training_only(items) if extra else []
    train = [(item, truth) for item, truth in train if item["group"] not in exclude_groups]
    annotations, records = [], []
    folder = data / "augmented"
    folder.mkdir(parents=True, exist_ok=True)
    for item, truth in train:
        path = Path(truth.track.path)
        digest = content_hash(path)
        annotations.append(truth.model_copy(update={"track": truth.track.model_copy(
            update={"content_hash": digest})}))
        records.append({"source": "real", "id": item["id"], "group": item["group"],
                        "repo": item.get("repo"), "commit": item.get("commit"),
                        "content_hash": digest})
        for copy in range(augment_copies):
            # The seed is in the cache name: another seed draws other augmentations.
            rng = np.random.default_rng([seed, copy, int(digest[:8], 16)])
            moved, scale = _derived_copy(
                truth, folder / f"{item['id']}.seed{seed}.aug{copy}.flac",
                lambda path=path, rng=rng: augment(load_audio(path, 44100), 44100, rng))
            annotations.append(moved)
            records.append({"source": "real (augmented)", "id": f"{item['id']}.aug{copy}",
                            "group": item["group"], "content_hash": moved.track.content_hash,
                            "time_scale": round(scale, 5)})
        if fast_copies and FAST_SOURCE_BPM[0] <= truth.grid[0].bpm <= FAST_SOURCE_BPM[1]:
            rng = np.random.default_rng([seed, int(digest[:8], 16)])
            factor = float(rng.uniform(*FAST_TARGET_BPM)) / truth.grid[0].bpm
            moved, _ = _derived_copy(
                truth, folder / f"{item['id']}.seed{seed}.fast.flac",
                lambda path=path, factor=factor: varispeed(load_audio(path, 44100)[:, None],
                                                     44100, factor))
            annotations.append(moved)
            records.append({"source": "real (fast copy)", "id": f"{item['id']}.fast",
                            "group": item["group"], "content_hash": moved.track.content_hash,
                            "bpm": round(moved.grid[0].bpm, 3)})
    return annotations, records


def _derived_copy(truth: TrackAnnotation, target: Path, make: Callable[[], Augmented]
                  ) -> tuple[TrackAnnotation, float]:
    """A transformed copy of a real track, made once (``make``) and cached at ``target`` with
    its time scale beside it (``.scale``, written last: a copy without it is made again), and
    its truth moved to the copy's times; ``(annotation, time scale)``."""
    from edm.audio import content_hash, write_audio
    from edm.synth.augment import scale_annotation

    scale_file = target.with_suffix(".scale")
    if not scale_file.is_file():
        result = make()
        write_audio(target, result.audio, 44100)
        scale_file.write_text(repr(result.time_scale))
    scale = float(scale_file.read_text())
    moved = scale_annotation(truth, scale)
    return moved.model_copy(update={"track": moved.track.model_copy(
        update={"path": str(target), "content_hash": content_hash(target)})}), scale


def teacher_labels(folder: Path) -> tuple[list, list[dict]]:
    """The shipped model's analysis of the audio under ``folder`` as Tier 2 annotations, for
    the tracks whose grid it is sure of; one record per track kept."""
    from edm.analyze import analyze_many, load_model
    from edm.data.schema import Metadata, Tier
    from edm.inputs import find_inputs

    paths = [path for path, _ in find_inputs([folder]).tracks]
    annotations, records = [], []
    for outcome in analyze_many(((path, None) for path in paths), load_model()):
        analysis = outcome.analysis
        if analysis is None or not analysis.grid.confidence >= TEACHER_MIN_CONFIDENCE:
            continue
        labels = analysis.to_annotation()
        # The decoder's sections cover the track: every boundary frame is labelled.
        annotations.append(labels.model_copy(update={"cues": [], "metadata": Metadata(
            tier=Tier.DJ_SOFTWARE, source="teacher",
            provenance={"sections_complete": "true", "model": analysis.model})}))
        records.append({"source": "real (teacher-labelled)",
                        "id": str(Path(outcome.path).relative_to(folder)),
                        "content_hash": analysis.content_hash,
                        "grid_confidence": round(analysis.grid.confidence, 3)})
    return annotations, records


def fit_member(data: Path, *, tracks: int, minutes: float, epochs: int, seed: int,
               augment_seed: int, model: dict, train: dict, real: Path | None,
               augment_copies: int, varieties: tuple[str, ...],
               teacher: tuple[list, list[dict]] = ([], []),
               exclude_groups: frozenset[str] = frozenset(), fast_copies: bool = False,
               extra_real: bool = False) -> tuple[FitReport, list[dict]]:
    """One net of the default model: the synth libraries of ``seed`` + the real training side
    (augmented with ``augment_seed``) + the ``teacher``'s labels (annotations, records),
    embedded and fitted with training seed ``seed``."""
    from edm.audio import content_hash
    from edm.data.jams_io import load_truth
    from edm.heads.fit import fit_heads, load_tracks
    from edm.heads.train import TrainConfig
    from edm.store import EmbeddingStore
    from edm.store.embed import embed_library
    from edm.synth import make_library

    annotations, records = [], []
    for variety in varieties:
        # One folder per (seed, size, variety): a rerun with other settings never reuses a
        # smaller library.
        suffix = "" if variety == "classic" else f"-{variety}"
        library = data / f"train-seed{seed}-{tracks}x{minutes:g}min{suffix}"
        if not (library / "truth").is_dir():
            made = make_library(library, tracks=tracks, seed=seed, minutes=minutes, noise="none",
                                variety=variety)
            if made.failed:
                shutil.rmtree(library)  # a rerun must not train on a library with holes
                raise SystemExit("synth tracks failed:\n" + "\n".join(made.failed))
        for path in sorted((library / "audio").glob("*.wav"))[:tracks]:
            truth = load_truth(library / "truth" / f"{path.stem}.jams")
            identity = truth.track.model_copy(update={"content_hash": content_hash(path),
                                                      "path": str(path)})
            annotations.append(truth.model_copy(update={"track": identity}))
            records.append({"source": "synth", "variety": variety, "seed": seed,
                            "id": path.stem, "content_hash": identity.content_hash})
    store_path = data / f"store-seed{seed}-{tracks}x{minutes:g}min-{'-'.join(varieties)}.zarr"
    if real is not None:
        real_annotations, real_records = real_training_tracks(real, data, augment_copies,
                                                              augment_seed, exclude_groups,
                                                              fast_copies, extra_real)
        annotations += real_annotations
        records += real_records
    annotations += teacher[0]
    records += teacher[1]
    embed_library([a.track.path for a in annotations], store_path, "spectral")
    loaded = load_tracks(EmbeddingStore(store_path), annotations, "spectral")
    if loaded.problems:
        print("\n".join(loaded.problems), file=sys.stderr)
    # Teacher labels are Tier 2: without this the Tier 1 truth would only validate them.
    config = TrainConfig(**{"epochs": epochs, "seed": seed, "tier1_validation": not teacher[0],
                            **train})
    config.model.update(model)
    # workers=1: one process, as the shipped nets were trained (a data-parallel fit draws other
    # noise and dropout, so it would not rebuild them byte for byte).
    report = fit_heads(loaded.tracks, config, backbone_key="spectral",
                       backbone_name="spectral", folds=0, workers=1)
    return report, records


def build(data: Path, out: Path, *, tracks: int, minutes: float, epochs: int,
          seeds: tuple[int, ...], model: dict | None = None, train: dict | None = None,
          keep_energy: bool = False,
          real: Path | None = None, augment_copies: int = 0,
          varieties: tuple[str, ...] = ("classic",), unlabeled: Path | None = None,
          exclude_groups: frozenset[str] = frozenset(), fast_copies: bool = False,
          extra_real: bool = False) -> dict:
    """Fit one net per seed (:func:`fit_member`) and save them as one model: analysis averages
    their probabilities. The real tracks and their augmented copies are the same data for every
    net (augmented with the first seed); each seed draws its own synth tracks and training.
    ``model`` / ``train``: TemporalHeads options / TrainConfig fields over the defaults;
    ``exclude_groups``: artists/projects of the real training side left out (the folds of
    ``bench_decode_cv.py``, whose decoding is scored on tracks no net has seen);
    ``extra_real``: also the split's training-only groups."""
    started = time.perf_counter()
    teacher = teacher_labels(unlabeled) if unlabeled else ([], [])
    members = [fit_member(data, tracks=tracks, minutes=minutes, epochs=epochs, seed=seed,
                          augment_seed=seeds[0], model=model or {}, train=train or {},
                          real=real,
                          augment_copies=augment_copies, varieties=varieties,
                          teacher=teacher, exclude_groups=exclude_groups,
                          fast_copies=fast_copies, extra_real=extra_real)
               for seed in seeds]
    heads = members[0][0].heads
    heads.nets = [net for report, _ in members for net in report.heads.nets]
    records = list({r["content_hash"]: r for _, rs in members for r in rs}.values())
    heads.provenance = {"built_by": "benchmarks/build_default_model.py",
                        "data": _describe(records, minutes, seeds, real, varieties),
                        "epochs": str(epochs), "seeds": ", ".join(map(str, seeds)),
                        "tracks": "training_data.json"}
    metrics = {f"seed {seed}": report.metrics for seed, (report, _) in zip(seeds, members,
                                                                           strict=True)}
    if out.exists():
        shutil.rmtree(out)
    if not keep_energy:
        # Without an energy head edm analyze measures section energy from the descriptors
        # (the definition the head is trained on); the head would add 1 MB and half a second
        # of xgboost import to every run.
        heads.energy = None
    heads.save(out, metrics=metrics)
    (out / "training_data.json").write_text(json.dumps(
        {"split": "benchmarks/realdata/split.json: training side only"
                  + (" and train_only groups" if extra_real else "")
                  + (f", less {', '.join(sorted(exclude_groups))}" if exclude_groups else ""),
         "tracks": records}, indent=1))
    size = sum(f.stat().st_size for f in out.iterdir())
    return {"out": str(out), "tracks": len(records), "bytes": size,
            "seconds": round(time.perf_counter() - started, 1), "metrics": metrics}


def _describe(records: list[dict], minutes: float, seeds: tuple[int, ...], real: Path | None,
              varieties: tuple[str, ...]) -> str:
    counts = {source: sum(1 for r in records if r["source"] == source)
              for source in ("synth", "real", "real (augmented)", "real (fast copy)",
                             "real (teacher-labelled)")}
    text = (f"edm synth: {counts['synth']} tracks x {minutes:g} min, seeds "
            f"{', '.join(map(str, seeds))}, variety "
            f"{' + '.join(varieties)}, noise none (tier-1 truth)")
    if real is not None:
        text += (f"; real: {counts['real']} LMMS renders (bench_real training split, "
                 f"{len({r['group'] for r in records if r['source'] == 'real'})} artists/"
                 f"projects) + {counts['real (augmented)']} augmented copies")
        if counts["real (fast copy)"]:
            text += (f" + {counts['real (fast copy)']} varispeed copies at "
                     f"{FAST_TARGET_BPM[0]:g}-{FAST_TARGET_BPM[1]:g} BPM")
    if counts["real (teacher-labelled)"]:
        text += (f"; teacher-student: {counts['real (teacher-labelled)']} unlabeled real tracks "
                 "labelled by the shipped model's analysis (grid confidence >= "
                 f"{TEACHER_MIN_CONFIDENCE})")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/edm-default-model"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, nargs="+", default=list(TRAIN_SEEDS),
                        help="one net per seed, averaged at analysis")
    parser.add_argument("--variety", choices=("classic", "broad"), nargs="+",
                        default=["classic"],
                        help="edm synth varieties: --tracks synthetic tracks of each")
    parser.add_argument("--model", type=json.loads, default={}, metavar="JSON",
                        help='TemporalHeads options over the defaults, e.g. {"fine_layers": 7}')
    parser.add_argument("--train", type=json.loads, default={}, metavar="JSON",
                        help='TrainConfig fields over the defaults, e.g. {"crop_s": 90}')
    parser.add_argument("--real", type=Path, default=None,
                        help="real corpus folder (manifest.json + annotations/): train on its "
                             "bench_real training split too")
    parser.add_argument("--augment", type=int, default=0,
                        help="augmented copies of each real training track")
    parser.add_argument("--fast-copies", action="store_true",
                        help="also a varispeed copy of each real training track at "
                             f"{FAST_SOURCE_BPM[0]:g}-{FAST_SOURCE_BPM[1]:g} BPM, played at "
                             f"{FAST_TARGET_BPM[0]:g}-{FAST_TARGET_BPM[1]:g} BPM")
    parser.add_argument("--extra-real", action="store_true",
                        help="also the real groups split.json lists under train_only (never "
                             "held out, never scored)")
    parser.add_argument("--unlabeled", type=Path, default=None, metavar="DIR",
                        help="audio without labels: the shipped model's sure analyses of it "
                             "train the new nets too (teacher-student)")
    parser.add_argument("--keep-energy", action="store_true",
                        help="also ship the XGBoost energy head (edm analyze then predicts "
                             "section energy with it)")
    args = parser.parse_args()
    # As edm fit-heads does: spinning OpenMP threads cost 4x on a shared machine (issue 18).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    summary = build(args.data, args.out, tracks=args.tracks, minutes=args.minutes,
                    epochs=args.epochs, seeds=tuple(args.seed), model=args.model, train=args.train,
                    keep_energy=args.keep_energy, real=args.real, augment_copies=args.augment,
                    varieties=tuple(args.variety), unlabeled=args.unlabeled,
                    fast_copies=args.fast_copies, extra_real=args.extra_real)
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
