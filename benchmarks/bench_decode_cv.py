"""Decoding on real tracks no net has seen, without touching bench_real's held-out side.

``bench_real.py``'s held-out tracks give the final figure; a decoder setting chosen on them
makes that figure optimistic. The shipped model's own training tracks are no substitute: its
heads have learnt them, so their activations are sharper than on any new track (the beat head
fires on every beat, the boundary head on every section start) and a decoder tuned there
trusts the heads too much. This benchmark makes a development set that behaves like new music:

1. bench_real's *training* side is cut into ``--folds`` folds by artist/project;
2. for each fold and training seed (``--seed``, default the shipped model's two),
   ``build_default_model.build`` fits a net with the shipped recipe (synth + real + augmented
   copies) on everything but that fold;
3. each fold's nets analyse the first ``--excerpt-s`` seconds of the fold's tracks (as
   bench_real scores its held-out tracks); their activations are cached and averaged, as
   analysis averages the shipped model's nets;
4. ``edm.decode`` as it is on the path decodes every cached track, scored with
   ``edm.evaluate`` (mir_eval), beside the shipped model's activations of the same excerpts
   (which it was trained on: the optimistic figure this benchmark replaces).

Decoder changes can then be chosen here and checked once on bench_real's held-out side.
``--new-library`` also measures the DJ case where the library is new to the model
(:func:`new_library_case`); bench_real's own DJ case fits the shipped model on tracks it was
trained on. A fold
net takes ~2.5 minutes on 2 cores; nets are kept in ``WORK/<recipe>/seedS-foldK``, so later runs
only decode.

Usage::

    python benchmarks/bench_decode_cv.py /work/realdata --work /work/realdata/cv
    python benchmarks/bench_decode_cv.py /work/realdata --work /work/realdata/cv --json
    python benchmarks/bench_decode_cv.py /work/realdata --work /work/realdata/cv --new-library
    python benchmarks/bench_decode_cv.py /work/realdata --work /work/realdata/cv --peers
    python benchmarks/bench_decode_cv.py /work/realdata --work /work/realdata/cv --new-library-dev
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real import corpus_parser, excerpt, load_corpus, split_by_group
from build_default_model import TRAIN_SEEDS

from edm.data.schema import TrackAnnotation
from edm.evaluate import Events, evaluate_events, mean_scores
from edm.heads.activations import Activations

SHOWN = ("beat_f", "beat_anti_phase", "downbeat_f", "tempo_acc1", "tempo_acc2", "boundary_f_0.5s",
         "boundary_f_3s")


@dataclass(frozen=True)
class CachedTrack:
    """One development track: its truth (excerpt) and what a model's heads gave on it."""

    id: str
    truth: TrackAnnotation
    activations: Activations
    descriptors: dict[str, np.ndarray]
    duration_s: float


def folds_by_group(items: list[tuple[dict, TrackAnnotation]], folds: int) -> list[set[str]]:
    """Artist/project groups dealt into ``folds`` folds, largest groups first, each to the fold
    with the fewest tracks so far (ties: the lower index): sizes within one group of each other.

    >>> items = [({"group": g}, None) for g in "aabbbcd"]
    >>> [sorted(fold) for fold in folds_by_group(items, 2)]
    [['b', 'd'], ['a', 'c']]
    """
    sizes: dict[str, int] = {}
    for item, _ in items:
        sizes[item["group"]] = sizes.get(item["group"], 0) + 1
    out: list[set[str]] = [set() for _ in range(folds)]
    counts = [0] * folds
    for group in sorted(sizes, key=lambda g: (-sizes[g], g)):
        k = counts.index(min(counts))
        out[k].add(group)
        counts[k] += sizes[group]
    return out


def _save(path: Path, acts: Activations, descriptors: dict[str, np.ndarray],
          duration_s: float) -> None:
    arrays = {"beat": acts.beat, "downbeat": acts.downbeat, "boundary": acts.boundary,
              "fps": np.float64(acts.frames_per_second), "duration_s": np.float64(duration_s),
              **{f"d_{k}": v for k, v in descriptors.items()}}
    if acts.section is not None:
        arrays["section"] = acts.section
        arrays["section_labels"] = np.asarray(acts.section_labels or [], dtype=str)
    part = path.with_suffix(".part.npz")
    np.savez(part, **arrays)
    part.replace(path)  # a run stopped half-way leaves no half-written cache entry


def _load(path: Path) -> tuple[Activations, dict[str, np.ndarray], float]:
    with np.load(path, allow_pickle=False) as data:
        section = data.get("section")
        acts = Activations(beat=data["beat"], downbeat=data["downbeat"],
                           boundary=data["boundary"], frames_per_second=float(data["fps"]),
                           section=section,
                           section_labels=tuple(str(s) for s in data["section_labels"])
                           if section is not None else ())
        descriptors = {k[2:]: data[k] for k in data.files if k.startswith("d_")}
        return acts, descriptors, float(data["duration_s"])


def cached_tracks(model_dir: Path | None, pairs: list[tuple[dict, TrackAnnotation]],
                  cache: Path) -> list[CachedTrack]:
    """Each track's activations by the model in ``model_dir`` (None: the shipped one), from
    ``cache`` or computed once."""
    from edm.analyze import load_model
    from edm.analyze.pipeline import activations, embed, model_fingerprint
    from edm.backbones import descriptors, frames, spectral
    from edm.heads.artifacts import DEFAULT_MODEL_DIR

    cache.mkdir(parents=True, exist_ok=True)
    # Keyed by the model's weights, the code that makes embeddings and descriptors (the
    # spectral backbone also holds the bands' mel triangles) and the excerpt's audio: a
    # rebuilt model, new features or another --excerpt-s never read entries of the old.
    weights = model_fingerprint(model_dir or DEFAULT_MODEL_DIR).split(":")[1]
    code = hashlib.sha256(b"".join(Path(module.__file__).read_bytes()
                                   for module in (descriptors, frames, spectral))).hexdigest()[:6]
    version = f"{weights}.d{code}"
    model = None
    out = []
    for item, truth in pairs:
        target = cache / f"{item['id']}.{version}.{truth.track.content_hash[:12]}.npz"
        if not target.is_file():
            model = model or load_model(model_dir)
            embedded = embed(truth.track.path, model)
            acts = activations(embedded, model)
            _save(target, acts, embedded.descriptors, embedded.duration_s)
        acts, descriptors, duration_s = _load(target)
        out.append(CachedTrack(item["id"], truth, acts, descriptors, duration_s))
    return out


def averaged(runs: list[list[CachedTrack]]) -> list[CachedTrack]:
    """The tracks with each head's activations averaged over ``runs`` (one list per net, same
    tracks in the same order): what analysis does with a model of several nets."""

    def mean(tracks: tuple[CachedTrack, ...], name: str) -> np.ndarray | None:
        values = [getattr(t.activations, name) for t in tracks]
        return None if values[0] is None else np.mean(values, axis=0)

    out = []
    for tracks in zip(*runs, strict=True):
        first = tracks[0]
        acts = Activations(beat=mean(tracks, "beat"), downbeat=mean(tracks, "downbeat"),
                           boundary=mean(tracks, "boundary"),
                           frames_per_second=first.activations.frames_per_second,
                           section=mean(tracks, "section"),
                           section_labels=first.activations.section_labels)
        out.append(CachedTrack(first.id, first.truth, acts, first.descriptors, first.duration_s))
    return out


def decoded_events(track: CachedTrack) -> Events:
    """What ``edm analyze`` reports for the track, decoded from its cached activations (with
    the onset fallback where the beat head is silent, as analysis decodes)."""
    from edm.analyze.pipeline import decode, onset_fallback

    acts = onset_fallback(track.activations, track.descriptors) or track.activations
    grid, sections = decode(acts, descriptors=track.descriptors, duration_s=track.duration_s)
    return Events(beats=grid.beats, downbeats=grid.downbeats, bpm=grid.bpm,
                  boundaries=np.array([s.start_s for s in sections[1:]], float))


def score(tracks: list[CachedTrack]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Mean and per-track scores of the decoder on the path."""
    per_track = [evaluate_events(t.truth, decoded_events(t)) for t in tracks]
    return mean_scores(per_track), per_track


@dataclass(frozen=True)
class Recipe:
    """How the fold models are built (``build_default_model``'s options; its defaults are the
    shipped model's recipe, with one seed)."""

    augment: int = 1
    epochs: int = 30
    tracks: int = 24
    varieties: tuple[str, ...] = ("classic",)
    #: TemporalHeads options over the defaults.
    model: tuple[tuple[str, Any], ...] = ()
    #: TrainConfig fields over the defaults (values as JSON text).
    train: tuple[tuple[str, str], ...] = ()
    #: Varispeed copies of the real tracks at fast tempi (``--fast-copies``).
    fast: bool = False
    #: The split's training-only groups in every fold's training (``--extra-real``).
    extra: bool = False

    @property
    def name(self) -> str:
        return (f"a{self.augment}-e{self.epochs}-t{self.tracks}-" + "-".join(self.varieties)
                + "".join(f"-{key}{value}" for key, value in self.model)
                + "".join(f"-{key}{''.join(c for c in value if c.isalnum() or c == '.')}"
                          for key, value in self.train)
                + ("-fast" if self.fast else "") + ("-extra" if self.extra else ""))


def development_set(corpus: Path, work: Path, *, folds: int, seeds: tuple[int, ...],
                    excerpt_s: float,
                    data: Path, recipe: Recipe = Recipe()
                    ) -> tuple[list[CachedTrack], list[CachedTrack]]:
    """Out-of-fold tracks (each analysed by the fold model that never saw its artist) and the
    same excerpts analysed by the shipped model, in the same order."""
    from build_default_model import build

    train, _test = split_by_group(load_corpus(corpus))
    excerpts = [(item, excerpt(truth, item["id"], work / "excerpts", excerpt_s))
                for item, truth in train]
    runs: list[list[CachedTrack]] = []
    for seed in seeds:
        run: list[CachedTrack] = []
        for k, groups in enumerate(folds_by_group(train, folds)):
            model_dir = work / recipe.name / f"seed{seed}-fold{k}"
            if not (model_dir / "config.json").is_file():
                print(f"seed {seed}, fold {k}: fitting without {sorted(groups)}",
                      file=sys.stderr)
                build(data, model_dir, tracks=recipe.tracks, minutes=2.0, epochs=recipe.epochs,
                      seeds=(seed,), model=dict(recipe.model),
                      train={key: json.loads(value) for key, value in recipe.train},
                      real=corpus,
                      augment_copies=recipe.augment, varieties=recipe.varieties,
                      exclude_groups=frozenset(groups), fast_copies=recipe.fast,
                      extra_real=recipe.extra)
            held = [pair for pair in excerpts if pair[0]["group"] in groups]
            run += cached_tracks(model_dir, held, model_dir / "activations")
        runs.append(run)
    oof = averaged(runs)
    order = {track.id: i for i, track in enumerate(oof)}
    shipped = cached_tracks(None, sorted(excerpts, key=lambda p: order[p[0]["id"]]),
                            work / "cache" / "shipped")
    return oof, shipped


def _scores(model_dir: Path, truths: list[TrackAnnotation], audio: list[Path]
            ) -> list[dict[str, float]]:
    """Every metric of ``edm analyze`` with the model in ``model_dir``, track by track."""
    from bench_peers import edm_events

    events = edm_events(model_dir)
    return [evaluate_events(truth, events(path)) for truth, path in zip(truths, audio, strict=True)]


def new_library_case(corpus: Path, work: Path, *, folds: int, seed: int, recipe: Recipe,
                     excerpt_s: float) -> dict[str, dict[str, float]]:
    """The DJ case with a library the model has not heard: each fold's net (training seed
    ``seed``, from :func:`development_set`) plays the shipped model, and the fold's own 9-10
    tracks are the DJ's library (bench_real's DJ case: a Rekordbox XML with the true grid and
    memory cues on 60 % of the boundaries, fitted from that net). Base and fitted nets are
    scored on bench_real's held-out excerpts, which neither has heard."""
    from bench_real import fit_dj_model, shipped_model_groups

    items = load_corpus(corpus)
    train, test = split_by_group(items)
    test = [(item, truth) for item, truth in test if item["group"] not in shipped_model_groups()]
    truths = [excerpt(truth, item["id"], work / "held-out-excerpts", excerpt_s)
              for item, truth in test]
    audio = [Path(truth.track.path) for truth in truths]
    rows = {}
    for k, groups in enumerate(folds_by_group(train, folds)):
        base = work / recipe.name / f"seed{seed}-fold{k}"
        library = [pair for pair in train if pair[0]["group"] in groups]
        fitted = fit_dj_model(library, audio, work / f"new-library-fold{k}", None, 0,
                              init=str(base))
        for name, model_dir in ((f"held-out tracks: fold {k} net", base),
                                (f"held-out tracks: fold {k} net fitted on its {len(library)} "
                                 "tracks", fitted)):
            rows[name] = mean_scores(_scores(model_dir, truths, audio))
    return rows


def new_library_dev_case(corpus: Path, work: Path, *, folds: int, seed: int, recipe: Recipe,
                         excerpt_s: float, epochs: int | None = None
                         ) -> dict[str, dict[str, float]]:
    """The DJ case inside the development set, so fitting recipes can be chosen without
    bench_real's held-out tracks: fold k's net (training seed ``seed``) plays the shipped
    model; fold k's artists are dealt into two halves, the net is fitted on one half's
    full tracks (bench_real's DJ library: true grid, cues on 60 % of the boundaries; ``epochs``
    as ``edm fit-heads``) and base and fitted nets are scored on the other half's excerpts,
    which neither has heard; then the halves swap. Every development track is scored once."""
    from bench_real import fit_dj_model

    train, _test = split_by_group(load_corpus(corpus))
    scored: dict[str, list[dict[str, float]]] = {"fold net": [], "fold net fitted on half": []}
    for k, groups in enumerate(folds_by_group(train, folds)):
        fold = [pair for pair in train if pair[0]["group"] in groups]
        base = work / recipe.name / f"seed{seed}-fold{k}"
        for h, half in enumerate(folds_by_group(fold, 2)):
            library = [pair for pair in fold if pair[0]["group"] in half]
            truths = [excerpt(truth, item["id"], work / "excerpts", excerpt_s)
                      for item, truth in fold if item["group"] not in half]
            audio = [Path(truth.track.path) for truth in truths]
            # Fitted on every run, as new_library_case does: a net kept from an earlier run
            # would not follow a change to the fitting code.
            folder = work / f"new-library-dev-{recipe.name}-e{epochs}" / f"fold{k}-half{h}"
            folder.mkdir(parents=True, exist_ok=True)
            fitted = fit_dj_model(library, audio, folder, epochs, 0, init=str(base))
            for name, model_dir in (("fold net", base), ("fold net fitted on half", fitted)):
                scored[name] += _scores(model_dir, truths, audio)
    return {f"other half of each fold ({len(rows)} tracks): {name}": mean_scores(rows)
            for name, rows in scored.items()}


def _cell(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else "–"


def peer_rows(tracks: list[CachedTrack], cache: Path) -> dict[str, dict[str, float]]:
    """madmom (its joint RNN + DBN, events cached by audio content) and a boundary every 8 bars
    on the true grid, on the same excerpts: the peer and the trivial baseline beside the
    development figures."""
    from bench_peers import run_method
    from bench_real import every_8_bars, madmom_joint_events

    audio = [Path(t.truth.track.path) for t in tracks]
    madmom = run_method("madmom", madmom_joint_events, audio, cache)
    return {
        "madmom RNN+DBN": mean_scores([evaluate_events(t.truth, events)
                                       for t, (events, _) in zip(tracks, madmom, strict=True)]),
        "every 8 bars (true grid)": mean_scores([evaluate_events(t.truth, every_8_bars(t.truth))
                                                 for t in tracks]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = corpus_parser(__doc__, "Scratch folder: fold models, excerpts, activation cache.")
    parser.add_argument("--data", type=Path, default=Path("/tmp/edm-default-model"),
                        help="build_default_model's data folder (synth libraries, stores).")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, nargs="+", default=list(TRAIN_SEEDS),
                        help="training seeds of the fold nets (averaged; default: the shipped "
                             "model's)")
    parser.add_argument("--excerpt-s", type=float, default=120.0)
    parser.add_argument("--augment", type=int, default=Recipe.augment,
                        help="fold models: augmented copies of each real track")
    parser.add_argument("--epochs", type=int, default=Recipe.epochs)
    parser.add_argument("--tracks", type=int, default=Recipe.tracks,
                        help="fold models: synth tracks per variety")
    parser.add_argument("--variety", nargs="+", default=list(Recipe.varieties),
                        choices=("classic", "broad"))
    parser.add_argument("--model", type=json.loads, default={}, metavar="JSON",
                        help='fold models: TemporalHeads options, e.g. {"fine_layers": 7}')
    parser.add_argument("--train", type=json.loads, default={}, metavar="JSON",
                        help='fold models: TrainConfig fields, e.g. {"crop_s": 90}')
    parser.add_argument("--fast-copies", action="store_true",
                        help="fold models: also build_default_model's varispeed copies of the "
                             "real tracks at fast tempi")
    parser.add_argument("--extra-real", action="store_true",
                        help="fold models: also the split's train_only groups (never scored)")
    parser.add_argument("--new-library", action="store_true",
                        help="also the DJ case with a library new to the model: each fold net "
                             "(first --seed) fitted on its fold's tracks, base and fitted scored "
                             "on bench_real's held-out tracks")
    parser.add_argument("--new-library-dev", action="store_true",
                        help="also the DJ case inside the development set: each fold net (first "
                             "--seed) fitted on half its fold's artists, base and fitted scored "
                             "on the other half (no held-out track involved)")
    parser.add_argument("--dj-epochs", type=int, default=None,
                        help="--new-library-dev: fit epochs (default: edm fit-heads')")
    parser.add_argument("--peers", action="store_true",
                        help="also madmom and a boundary every 8 bars on the same tracks "
                             "(madmom: ~20 s a track the first time, cached after)")
    parser.add_argument("--per-track", action="store_true", help="also print every track")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time.time()
    recipe = Recipe(args.augment, args.epochs, args.tracks, tuple(args.variety),
                    tuple(sorted(args.model.items())),
                    tuple(sorted((k, json.dumps(v)) for k, v in args.train.items())),
                    args.fast_copies, args.extra_real)
    oof, shipped = development_set(args.corpus, args.work, folds=args.folds,
                                   seeds=tuple(args.seed), excerpt_s=args.excerpt_s,
                                   data=args.data, recipe=recipe)
    rows = {}
    per_track = {}
    for name, tracks in (("out-of-fold (fold models)", oof),
                         ("shipped model (trained on these)", shipped)):
        rows[name], per_track[name] = score(tracks)
    if args.peers:
        rows.update(peer_rows(oof, args.work / "cache"))
    library_rows = (new_library_case(args.corpus, args.work, folds=args.folds,
                                     seed=args.seed[0], recipe=recipe,
                                     excerpt_s=args.excerpt_s) if args.new_library else {})
    if args.new_library_dev:
        library_rows.update(new_library_dev_case(
            args.corpus, args.work, folds=args.folds, seed=args.seed[0], recipe=recipe,
            excerpt_s=args.excerpt_s, epochs=args.dj_epochs))
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    summary = {"tracks": len(oof), "folds": args.folds,
               "minutes": round(sum(t.duration_s for t in oof) / 60, 1),
               "rows": {k: {m: round(v, 4) for m, v in r.items() if np.isfinite(v)}
                        for k, r in rows.items()},
               "new_library": {k: {m: round(v, 4) for m, v in r.items() if np.isfinite(v)}
                               for k, r in library_rows.items()},
               "per_track": {t.id: {m: round(s[m], 3) for m in SHOWN}
                             for t, s in zip(oof, per_track[next(iter(rows))], strict=True)},
               "wall_s": round(time.time() - started, 1), "uptime": load}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("| activations | " + " | ".join(SHOWN) + " |\n|---|" + "---|" * len(SHOWN))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(_cell(scores.get(m, np.nan)) for m in SHOWN) + " |")
    if library_rows:
        print("\n| DJ case: base and fitted nets | " + " | ".join(SHOWN) + " |\n|---|"
              + "---|" * len(SHOWN))
        for name, scores in library_rows.items():
            print(f"| {name} | " + " | ".join(_cell(scores.get(m, np.nan)) for m in SHOWN) + " |")
    if args.per_track:
        for track_id, scores in summary["per_track"].items():
            print(f"{track_id[:44]:44s} " + " ".join(f"{scores[m]:.2f}" for m in SHOWN))
    print(f"\n{len(oof)} training-side tracks ({summary['minutes']} min), {args.folds} folds by "
          f"artist/project; {summary['wall_s']} s; {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
