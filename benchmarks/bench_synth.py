"""Render speed of ``edm synth``: seconds of CPU per 3-minute track, per genre.

The issue's target is a 3-minute track in under 4 s on one core. CPU time (``process_time``,
all threads of this process) is the figure that does not depend on what else runs on the box;
wall time is printed beside it. Pin to one core for the one-core figure:

    taskset -c 0 python benchmarks/bench_synth.py --minutes 3 --repeats 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edm.synth import GENRES, synthesize_track


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=1, help="Tracks per genre.")
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    synthesize_track(0, genre="house", minutes=0.1)  # warm imports and caches
    print("| genre | audio (s) | CPU (s) | wall (s) | CPU s per 3 min of audio |")
    print("|---|---|---|---|---|")
    per_3min = []
    for genre in GENRES:
        for repeat in range(args.repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            track = synthesize_track(args.seed + repeat, genre=genre, minutes=args.minutes)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            scaled = cpu * 180.0 / track.duration_s
            per_3min.append(scaled)
            print(f"| {genre} | {track.duration_s:.1f} | {cpu:.2f} | {wall:.2f} | {scaled:.2f} |",
                  flush=True)
    print(f"| **mean** | | | | **{np.mean(per_3min):.2f}** (max {np.max(per_3min):.2f}) |")


if __name__ == "__main__":
    main()
