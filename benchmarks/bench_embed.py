"""Embed benchmarks: spectral speed end to end, store size per configuration, read speed,
MERT-95M-geometry throughput.

    python benchmarks/bench_embed.py                 # everything (a few minutes on 2 cores)
    python benchmarks/bench_embed.py --skip-mert     # spectral and store only

MERT figures use random weights in the real MERT-v1-95M geometry (HuBERT, 12 layers x 768,
conv front end at 75 fps): speed and size depend on the geometry, not on trained weights
(except compressibility, which random features may understate or overstate).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edm.audio import content_hash, load_audio, write_audio
from edm.backbones import compute_descriptors, get_backbone
from edm.store import EmbeddingStore
from edm.store.embed import embed_library
from edm.store.zarr_store import _folder_bytes

SR = 44100


def music_like(seconds: float, seed: int) -> np.ndarray:
    """Stereo kick + bass + hats + chord pad at 128 BPM: decodes and compresses like music."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n, dtype=np.float64) / SR
    beat = 60 / 128
    phase = (t % beat) / beat
    kick = np.sin(2 * np.pi * 50 * t) * np.exp(-phase * 12)
    bass = 0.3 * np.sign(np.sin(2 * np.pi * 55 * t)) * ((t // (beat * 16)) % 2)
    hats = 0.05 * rng.standard_normal(n) * np.exp(-((t + beat / 2) % beat) / beat * 30)
    pad = 0.1 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    mono = (0.5 * kick + bass + hats + pad) / 2
    return np.stack([mono, np.roll(mono, 7)], axis=1).astype(np.float32)


def timed(label: str, results: list[tuple[str, str]], fn, *args, **kwargs):
    """Run fn, recording wall time and this process's CPU time (the CPU figure is what an
    idle core would take, when other jobs share the machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn(*args, **kwargs)
    results.append((label, f"{time.perf_counter() - start:.3f} s wall, "
                           f"{time.process_time() - cpu:.3f} s CPU"))
    return value


def bench_spectral(folder: Path, minutes: float, tracks: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    path = write_audio(folder / "long.mp3", music_like(minutes * 60, 0), SR, bitrate_kbps=320)
    backbone = get_backbone("spectral")
    start, cpu = time.perf_counter(), time.process_time()
    track_id = timed("hash", rows, content_hash, path)
    audio = timed("decode mp3 → mono 22.05 kHz", rows, load_audio, path, backbone.sample_rate)
    features, descriptors = timed("spectral features + descriptors (one STFT)", rows,
                                  backbone.embed_with_descriptors, audio)
    store = EmbeddingStore(folder / "one.zarr", mode="a")
    timed("store write (fp16, zstd)", rows, store.write, track_id,
          {"source_path": str(path), "duration_s": minutes * 60, "sample_rate": SR},
          backbone.config(), features, descriptors)
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    rows.append((f"total, one {minutes:g}-min mp3, one process", f"{total:.3f} s wall "
                 f"({minutes * 60 / total:.0f}x real time), {total_cpu:.3f} s CPU "
                 f"({minutes * 60 / total_cpu:.0f}x real time per core)"))

    library = folder / "library"
    for index in range(tracks):
        write_audio(library / f"t{index}.mp3", music_like(minutes * 60, index + 1), SR,
                    bitrate_kbps=320)
    summary = embed_library([library], folder / "many.zarr", "spectral", workers=2)
    assert summary.exit_code == 0, summary.failed
    rows.append((f"embed job, {tracks} x {minutes:g}-min mp3, 2 workers",
                 f"{summary.seconds:.2f} s wall ({summary.seconds / tracks:.2f} s/track, "
                 f"{summary.audio_seconds / summary.seconds:.0f}x real time)"))
    return rows


def bench_store_sizes(folder: Path, minutes: float,
                      mert_model: Path | None) -> list[tuple[str, str]]:
    """MB per track-minute for each configuration (real spectral features; MERT geometry)."""
    rows: list[tuple[str, str]] = []
    audio_path = write_audio(folder / "size.flac", music_like(minutes * 60, 7), SR)
    store_path = folder / "sizes.zarr"
    spectral = get_backbone("spectral")
    audio = load_audio(audio_path, spectral.sample_rate)
    store = EmbeddingStore(store_path, mode="a")
    track = {"source_path": str(audio_path), "duration_s": minutes * 60, "sample_rate": SR}
    store.write("t", track, spectral.config(), spectral.embed(audio),
                compute_descriptors(audio, spectral.sample_rate, spectral.frames_per_second))
    configs = []
    if mert_model is not None:
        from edm.backbones.mert import MertBackbone

        audio24 = load_audio(audio_path, 24000)
        for layers, project in (([6], None), ([4, 5, 6, 7, 8], None), ([6], 128)):
            mert = MertBackbone(mert_model, layers=layers, project_dim=project, device="cpu",
                                batch_size=2)
            configs.append(mert.key)
            store.write("t", track, mert.config(), mert.embed(audio24),
                        compute_descriptors(audio24, 24000, 75.0))
    for key in ["spectral", *configs]:
        info = store.backbone_info("t", key)
        size = _folder_bytes(store_path / "t" / key) / 1e6
        rows.append((f"store size {key} ({info.dim} dims, {info.frames_per_second:g} fps)",
                     f"{size / minutes:.2f} MB/track-min; 500 x 5-min tracks = "
                     f"{size / minutes * 2500 / 1000:.1f} GB"))
    rows.extend(bench_read(store_path, ["spectral", *configs]))
    return rows


def bench_read(store_path: Path, keys: list[str], repeats: int = 20) -> list[tuple[str, str]]:
    rows = []
    store = EmbeddingStore(store_path)
    for key in keys:
        start = time.perf_counter()
        frames = 0
        for _ in range(repeats):
            frames += len(store.embeddings("t", key))
            store.descriptors("t", key)
        elapsed = (time.perf_counter() - start) / repeats
        info = store.backbone_info("t", key)
        rows.append((f"read {key} (embeddings + descriptors)",
                     f"{elapsed * 1000:.1f} ms/track, "
                     f"{info.duration_s / 60 / elapsed:.0f} track-min/s"))
    return rows


def bench_mert(folder: Path, seconds: float) -> tuple[list[tuple[str, str]], Path]:
    import torch

    from edm.backbones.mert import MertBackbone, tiny_test_model

    rows: list[tuple[str, str]] = []
    model = tiny_test_model(folder / "MERT-95M-geometry", hidden_size=768, layers=12)
    mert = MertBackbone(model, layers=[6], device="cpu", batch_size=2)
    audio = load_audio(write_audio(folder / "mert.flac", music_like(seconds, 3), SR), 24000)
    mert.embed(audio[: 24000 * 5])  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    features = mert.embed(audio)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    rows.append((f"MERT-95M geometry on CPU ({torch.get_num_threads()} threads), {seconds:g} s "
                 f"audio, 30 s windows", f"{elapsed:.2f} s wall ({seconds / elapsed:.2f}x real "
                 f"time), {used:.1f} CPU s over all threads, {features.shape}"))
    return rows, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--mert-seconds", type=float, default=60.0)
    parser.add_argument("--skip-mert", action="store_true")
    parser.add_argument("--skip-sizes", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        rows = bench_spectral(folder, args.minutes, args.tracks)
        mert_model = None
        if not args.skip_mert:
            mert_rows, mert_model = bench_mert(folder, args.mert_seconds)
            rows += mert_rows
        if not args.skip_sizes:
            rows += bench_store_sizes(folder, args.mert_seconds / 60 if mert_model
                                      else args.minutes, mert_model)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    width = max(len(label) for label, _ in rows)
    print(f"{'measure':<{width}}  value")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
