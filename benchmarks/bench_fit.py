"""fit-heads speed benchmark (issue 18): ``edm fit-heads`` as a user runs it, timed end to end.

Cases (each a fresh ``edm fit-heads`` process, so process start and imports count):

- ``24x2``: 24 synth tracks x 2 min, default ``--folds 5`` (goal <= 60 s on 2 idle cores);
- ``24x2-busy``: the same with one other busy process on the machine (a bounded busy loop this
  script starts and stops itself; goal <= 120 s);
- ``100x3-one``: 100 tracks x 3 min, one model (``--folds 0``; goal <= 60 s);
- ``100x3-one-busy``: the same beside one busy process (data-parallel ranks wait for each
  other every step; no goal of its own, the 2x of the 24-track case is the yardstick);
- ``100x3``: 100 tracks x 3 min, ``--folds 5`` (goal <= 300 s);
- ``500x5``: 500 tracks x 5 min, ``--folds 5`` (goal <= 30 min; building the library took
  50 minutes on 2 cores, partly beside other work, once).

Each row gives wall and CPU seconds (user + system of the fit and its workers), the load
average before and after, and the stage times fit-heads reports. CPU seconds are what to
compare on a shared machine; wall seconds are the goal on a quiet one.

    python benchmarks/bench_fit.py --data /work/bench-data            # builds libraries once
    python benchmarks/bench_fit.py --data DIR --cases 24x2,24x2-busy
    python benchmarks/bench_fit.py --data DIR --pythonpath OLD_CHECKOUT   # time another version
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: case → (library folder, tracks, minutes, synth seed, fit-heads arguments, goal seconds, busy)
CASES: dict[str, tuple[str, int, float, int, list[str], float, bool]] = {
    "24x2": ("lib24", 24, 2.0, 1, ["--folds", "5"], 60.0, False),
    "24x2-busy": ("lib24", 24, 2.0, 1, ["--folds", "5"], 120.0, True),
    "100x3-one": ("train100", 100, 3.0, 1, ["--folds", "0"], 60.0, False),
    "100x3-one-busy": ("train100", 100, 3.0, 1, ["--folds", "0"], 120.0, True),
    "100x3": ("train100", 100, 3.0, 1, ["--folds", "5"], 300.0, False),
    "500x5": ("train500", 500, 5.0, 1, ["--folds", "5"], 1800.0, False),
}
BUSY_LOOP = "import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"


def edm(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    command = [sys.executable, "-c", "from edm.cli import main; main()", *args]
    # From the root folder: `python -c` puts the working directory first on sys.path, which
    # would shadow --pythonpath with a checkout there.
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd="/")
    if check and done.returncode not in (0, 1):
        raise SystemExit(f"edm {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def library(data: Path, name: str, tracks: int, minutes: float, seed: int) -> tuple[Path, Path]:
    """(store, rekordbox.xml) of one synth library, built on first use."""
    folder, store = data / name, data / f"{name}.zarr"
    if not (folder / "rekordbox.xml").exists():
        edm(
            "synth",
            str(folder),
            "--tracks",
            str(tracks),
            "--seed",
            str(seed),
            "--minutes",
            str(minutes),
            "--format",  # lossless; 500 x 5 min take 20 GB as flac, ~25 GB as wav
            "flac",
            "--workers",
            str(os.cpu_count() or 1),
        )
    if not store.exists():
        edm("embed", str(folder / "audio"), "--store", str(store), "--json")
    return store, folder / "rekordbox.xml"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_case(name: str, data: Path, env: dict[str, str], extra: list[str]) -> dict:
    folder, tracks, minutes, seed, args, goal, busy = CASES[name]
    store, xml = library(data, folder, tracks, minutes, seed)
    neighbour = None
    if busy:  # one single-threaded busy process, bounded in time even if this script dies
        neighbour = subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(limit=3600)])
        time.sleep(2.0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out:
        cpu, started = children_cpu(), time.perf_counter()
        report = edm(
            "fit-heads",
            "--store",
            str(store),
            "--annotations",
            str(xml),
            "--out",
            str(Path(out) / "m"),
            *args,
            *extra,
            "--json",
            env=env,
        )
        wall, cpu = time.perf_counter() - started, children_cpu() - cpu
    if neighbour is not None:
        neighbour.kill()
        neighbour.wait()
    metrics = json.loads(report)
    return {
        "case": name,
        "wall_s": wall,
        "cpu_s": cpu,
        "goal_s": goal,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "seconds": metrics.get("seconds", {}),
        "oof": metrics.get("oof_vs_labels", {}),
        "fits": metrics.get("fits", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Libraries and stores live here.")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--pythonpath", default=None, help="Time the edm found here instead.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    parser.add_argument("extra", nargs="*", help="More fit-heads arguments (after --).")
    args = parser.parse_args()
    args.data = args.data.resolve()
    args.data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{os.cpu_count()} CPUs; uptime: {uptime}")
    print(
        f"{'case':10s} {'wall s':>7s} {'CPU s':>7s} {'goal':>5s} {'met':>4s} {'load':>9s} "
        f"{'train s':>7s} {'energy s':>8s} {'read s':>6s}  OOF beat F / bnd F@3s"
    )
    rows = []
    for name in args.cases.split(","):
        row = run_case(name, args.data, env, args.extra)
        rows.append(row)
        seconds = row["seconds"]
        train = seconds.get("fits_s", seconds.get("kfold_s", 0.0) + seconds.get("final_s", 0.0))
        oof = row["oof"]
        print(
            f"{name:10s} {row['wall_s']:7.1f} {row['cpu_s']:7.1f} {row['goal_s']:5.0f} "
            f"{'yes' if row['wall_s'] <= row['goal_s'] else 'no':>4s} "
            f"{row['load_before']:4.1f}-{row['load_after']:<4.1f} {train:7.1f} "
            f"{seconds.get('energy_s', 0.0):8.1f} {seconds.get('store_read_s', 0.0):6.1f}  "
            + (f"{oof['beat_f']:.3f} / {oof['boundary_f_3s']:.3f}" if oof else "—"),
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
