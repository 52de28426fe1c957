"""Build the default model shipped in ``edm/default_model/`` from ``edm synth`` data only.

Re-runnable by anyone: every input is generated here (procedural synth tracks with exact,
tier-1 ground truth; no downloads, nothing that cannot be shipped), the backbone is the
weight-free ``spectral`` one, and the seeds are fixed. Steps:

1. ``make_library(DATA/train, tracks=N, seed=SEED)`` — audio + JAMS truth (no label noise).
2. ``embed_library`` into ``DATA/store.zarr`` with the spectral backbone.
3. ``fit_heads`` on the truth (no k-fold: the default model needs no out-of-fold activations).
4. Save to ``edm/default_model/`` (``config.json`` + ``heads.safetensors``; the XGBoost
   energy head only with ``--keep-energy``; without it analysis measures energy from the
   descriptors);
   ``metrics.json`` records the fit, and ``provenance`` says how it was made.

Usage::

    python benchmarks/build_default_model.py                      # ~ a few minutes on 2 cores
    python benchmarks/build_default_model.py --tracks 40 --epochs 60 --out /tmp/model
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "edm" / "default_model"
#: Seeds of the synth training split. The peers benchmark holds out seed 2026.
TRAIN_SEED = 1


def build(data: Path, out: Path, *, tracks: int, minutes: float, epochs: int, seed: int,
          channels: int | None, keep_energy: bool = False) -> dict:
    from edm.audio import content_hash
    from edm.data.jams_io import load_truth
    from edm.heads.fit import fit_heads, load_tracks
    from edm.heads.train import TrainConfig
    from edm.store import EmbeddingStore
    from edm.store.embed import embed_library
    from edm.synth import make_library

    started = time.perf_counter()
    # One folder per (seed, size): a rerun with other settings never reuses a smaller library.
    library = data / f"train-seed{seed}-{tracks}x{minutes:g}min"
    if not (library / "truth").is_dir():
        make_library(library, tracks=tracks, seed=seed, minutes=minutes, noise="none")
    audio = sorted((library / "audio").glob("*.wav"))[:tracks]
    store_path = data / f"store-seed{seed}-{tracks}x{minutes:g}min.zarr"
    embed_library([str(p) for p in audio], store_path, "spectral")
    annotations = []
    for path in audio:
        truth = load_truth(library / "truth" / f"{path.stem}.jams")
        identity = truth.track.model_copy(update={"content_hash": content_hash(path),
                                                  "path": str(path)})
        annotations.append(truth.model_copy(update={"track": identity}))
    loaded = load_tracks(EmbeddingStore(store_path), annotations, "spectral")
    if loaded.problems:
        print("\n".join(loaded.problems), file=sys.stderr)
    model_options = {"channels": channels} if channels else {}
    config = TrainConfig(epochs=epochs, seed=seed, model=model_options)
    report = fit_heads(
        loaded.tracks, config, backbone_key="spectral", backbone_name="spectral", folds=0,
        provenance={"built_by": "benchmarks/build_default_model.py",
                    "data": f"edm synth: {len(loaded.tracks)} tracks x {minutes:g} min, "
                            f"seed {seed}, noise none (tier-1 truth)", "epochs": str(epochs)},
    )
    if out.exists():
        shutil.rmtree(out)
    heads = report.heads
    if not keep_energy:
        # Without an energy head edm analyze measures section energy from the descriptors
        # (the definition the head is trained on); the head would add 1 MB and half a second
        # of xgboost import to every run.
        heads.energy = None
    heads.save(out, metrics=report.metrics)
    size = sum(f.stat().st_size for f in out.iterdir())
    return {"out": str(out), "tracks": len(loaded.tracks), "bytes": size,
            "seconds": round(time.perf_counter() - started, 1), "metrics": report.metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/edm-default-model"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--channels", type=int, default=None, help="TCN width (default: heads')")
    parser.add_argument("--keep-energy", action="store_true",
                        help="also ship the XGBoost energy head (edm analyze then predicts "
                             "section energy with it)")
    args = parser.parse_args()
    summary = build(args.data, args.out, tracks=args.tracks, minutes=args.minutes,
                    epochs=args.epochs, seed=args.seed, channels=args.channels,
                    keep_energy=args.keep_energy)
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
