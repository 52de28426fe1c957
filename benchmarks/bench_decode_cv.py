"""Decoding on real tracks no net has seen, without touching bench_real's held-out side.

``bench_real.py``'s held-out tracks give the final figure; a decoder setting chosen on them
makes that figure optimistic. The shipped model's own training tracks are no substitute: its
heads have learnt them, so their activations are sharper than on any new track (the beat head
fires on every beat, the boundary head on every section start) and a decoder tuned there
trusts the heads too much. This benchmark makes a development set that behaves like new music:

1. bench_real's *training* side is cut into ``--folds`` folds by artist/project;
2. for each fold, ``build_default_model.build`` fits a model with the shipped recipe (synth +
   real + augmented copies; one seed, ``--seed``) on everything but that fold;
3. each fold's model analyses the first ``--excerpt-s`` seconds of the fold's tracks (as
   bench_real scores its held-out tracks); activations and descriptors are cached;
4. ``edm.decode`` as it is on the path decodes every cached track, scored with
   ``edm.evaluate`` (mir_eval), beside the shipped model's activations of the same excerpts
   (which it was trained on: the optimistic figure this benchmark replaces).

Decoder changes can then be chosen here and checked once on bench_real's held-out side. The
fold models take ~3 minutes each on 2 cores and are kept in ``WORK/fold-K``; later runs only
decode.

Usage::

    python benchmarks/bench_decode_cv.py /work/realdata --work /work/realdata/cv
    python benchmarks/bench_decode_cv.py /work/realdata --work /work/realdata/cv --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real import excerpt, load_corpus, split_by_group

from edm.data.schema import TrackAnnotation
from edm.evaluate import Events, evaluate_events, mean_scores
from edm.heads.activations import Activations

SHOWN = ("beat_f", "downbeat_f", "tempo_acc1", "tempo_acc2", "boundary_f_0.5s", "boundary_f_3s")


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
    ``cache`` or computed once (with the onset fallback, as ``edm.analyze.analyze`` decodes)."""
    from edm.analyze import load_model
    from edm.analyze.pipeline import activations, embed, onset_fallback

    cache.mkdir(parents=True, exist_ok=True)
    model = None
    out = []
    for item, truth in pairs:
        target = cache / f"{item['id']}.npz"
        if not target.is_file():
            model = model or load_model(model_dir)
            embedded = embed(truth.track.path, model)
            acts = activations(embedded, model)
            acts = onset_fallback(acts, embedded.descriptors) or acts
            _save(target, acts, embedded.descriptors, embedded.duration_s)
        acts, descriptors, duration_s = _load(target)
        out.append(CachedTrack(item["id"], truth, acts, descriptors, duration_s))
    return out


def decoded_events(track: CachedTrack) -> Events:
    """What ``edm analyze`` reports for the track, decoded from its cached activations."""
    from edm.analyze.pipeline import decode

    grid, sections = decode(track.activations, descriptors=track.descriptors,
                            duration_s=track.duration_s)
    return Events(beats=grid.beats, downbeats=grid.downbeats, bpm=grid.bpm,
                  boundaries=np.array([s.start_s for s in sections[1:]], float))


def score(tracks: list[CachedTrack]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Mean and per-track scores of the decoder on the path."""
    per_track = [evaluate_events(t.truth, decoded_events(t)) for t in tracks]
    return mean_scores(per_track), per_track


def development_set(corpus: Path, work: Path, *, folds: int, seed: int, excerpt_s: float,
                    data: Path) -> tuple[list[CachedTrack], list[CachedTrack]]:
    """Out-of-fold tracks (each analysed by the fold model that never saw its artist) and the
    same excerpts analysed by the shipped model, in the same order."""
    from build_default_model import build

    train, _test = split_by_group(load_corpus(corpus), 0.5, 0)  # the shipped model's split
    excerpts = [(item, excerpt(truth, item["id"], work / "excerpts", excerpt_s))
                for item, truth in train]
    oof: list[CachedTrack] = []
    for k, groups in enumerate(folds_by_group(train, folds)):
        model_dir = work / f"fold-{k}"
        if not (model_dir / "config.json").is_file():
            print(f"fold {k}: fitting without {sorted(groups)}", file=sys.stderr)
            build(data, model_dir, tracks=24, minutes=2.0, epochs=30, seeds=(seed,),
                  channels=None, real=corpus, augment_copies=1, exclude_groups=frozenset(groups))
        held = [pair for pair in excerpts if pair[0]["group"] in groups]
        oof += cached_tracks(model_dir, held, work / "cache" / f"fold-{k}")
    order = {track.id: i for i, track in enumerate(oof)}
    shipped = cached_tracks(None, sorted(excerpts, key=lambda p: order[p[0]["id"]]),
                            work / "cache" / "shipped")
    return oof, shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("Usage::")[1])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--work", type=Path, required=True,
                        help="Scratch folder: fold models, excerpts, activation cache.")
    parser.add_argument("--data", type=Path, default=Path("/tmp/edm-default-model"),
                        help="build_default_model's data folder (synth libraries, stores).")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1, help="training seed of the fold models")
    parser.add_argument("--excerpt-s", type=float, default=120.0)
    parser.add_argument("--per-track", action="store_true", help="also print every track")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time.time()
    oof, shipped = development_set(args.corpus, args.work, folds=args.folds, seed=args.seed,
                                   excerpt_s=args.excerpt_s, data=args.data)
    rows = {}
    per_track = {}
    for name, tracks in (("out-of-fold (fold models)", oof),
                         ("shipped model (trained on these)", shipped)):
        rows[name], per_track[name] = score(tracks)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    summary = {"tracks": len(oof), "folds": args.folds,
               "minutes": round(sum(t.duration_s for t in oof) / 60, 1),
               "rows": {k: {m: round(v, 4) for m, v in r.items() if np.isfinite(v)}
                        for k, r in rows.items()},
               "per_track": {t.id: {m: round(s[m], 3) for m in SHOWN}
                             for t, s in zip(oof, per_track[next(iter(rows))], strict=True)},
               "wall_s": round(time.time() - started, 1), "uptime": load}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("| activations | " + " | ".join(SHOWN) + " |\n|---|" + "---|" * len(SHOWN))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(f"{scores[m]:.3f}" for m in SHOWN) + " |")
    if args.per_track:
        for track_id, scores in summary["per_track"].items():
            print(f"{track_id[:44]:44s} " + " ".join(f"{scores[m]:.2f}" for m in SHOWN))
    print(f"\n{len(oof)} training-side tracks ({summary['minutes']} min), {args.folds} folds by "
          f"artist/project; {summary['wall_s']} s; {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
