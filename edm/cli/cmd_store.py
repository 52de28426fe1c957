"""``edm store``: inspect an embedding store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edm.text import plural


@click.group(epilog="""\b
Examples:
  edm store info store.zarr
  edm store info store.zarr --json""")
def command() -> None:
    """Inspect an embedding store."""


@command.command("info", epilog="""\b
Examples:
  edm store info store.zarr
  edm store info store.zarr --tracks --json
\b
Exit codes: 0 printed, 1 not an edm store.""")
@click.argument("store_path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tracks", "list_tracks", is_flag=True, help="Also list every track.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def info(store_path: Path, list_tracks: bool, as_json: bool) -> None:
    """Tracks, backbones (fps, dim, layers, checkpoint) and sizes in a store."""
    from edm.store import EmbeddingStore, StoreError

    try:
        store = EmbeddingStore(store_path)
        summary = store.summary()
        if list_tracks:
            tracks = []
            for track_id in store.track_ids():
                track = store.track_info(track_id)
                tracks.append({"track_id": track_id, "source_path": track.source_path,
                               "duration_s": round(track.duration_s, 3),
                               "backbones": store.backbone_keys(track_id)})
            summary["track_list"] = tracks
    except StoreError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    minutes = summary["total_duration_s"] / 60
    console.print(f"[bold]{summary['path']}[/]: {plural(summary['tracks'], 'track')}, "
                  f"{minutes:.1f} min of audio, {summary['bytes'] / 1e6:.1f} MB")
    table = Table()
    # Keys and checkpoints are what people copy into other commands: wrap, never truncate.
    table.add_column("backbone", overflow="fold")
    for name in ("tracks", "fps", "dim", "layers"):
        table.add_column(name, justify="right" if name != "layers" else "left")
    table.add_column("checkpoint", overflow="fold")
    table.add_column("MB", justify="right")
    table.add_column("MB/min", justify="right")
    for key, entry in summary["backbones"].items():
        table.add_row(key, str(entry["tracks"]), f"{entry['frames_per_second']:g}",
                      str(entry["dim"]), str(entry["layers"] or "-"),
                      str(entry["checkpoint"] or "-"), f"{entry['bytes'] / 1e6:.1f}",
                      f"{entry['mb_per_track_minute']:.3f}")
    console.print(table)
    if summary["temp_entries"]:
        console.print(f"{summary['temp_entries']} unfinished entries (being written, or left by "
                      "a killed run; swept by the next edm embed after an hour)")
    if list_tracks:
        for track in summary["track_list"]:
            console.print(f"{track['track_id']}  {track['duration_s']:8.1f} s  "
                          f"{','.join(track['backbones'])}  {track['source_path']}")
