"""``edm synth``: write a synthetic DJ library with exact truth and known label errors."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edm.text import plural

_err = Console(stderr=True)


def _genre_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    from edm.synth.arrangement import ALL_GENRES

    if not value:
        return None
    genres = [g.strip() for g in value.split(",") if g.strip()]
    unknown = [g for g in genres if g not in ALL_GENRES]
    if unknown:
        raise click.BadParameter(f"unknown genre(s) {', '.join(unknown)}; "
                                 f"choose from {', '.join(ALL_GENRES)}")
    return genres


@click.command(epilog="""\b
Examples:
  edm synth out/ --tracks 20 --seed 1
  edm synth out/ --tracks 6 --seed 7 --minutes 1 --genres house,techno --noise heavy
  edm synth out/ --tracks 100 --seed 0 --format mp3 --workers 2 --json
  edm synth one/ --tracks 1 --seed 3 --genres trance --noise none   # a listening check
  edm synth broad/ --tracks 40 --seed 5 --variety broad   # breakbeats, half-time, 4-36 bars
\b
Writes OUT/audio/, OUT/truth/*.jams, OUT/rekordbox.xml and OUT/injected_errors.csv.
Exit codes: 0 all tracks written, 1 some tracks failed (listed on stderr), 2 usage error.""")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--tracks", type=click.IntRange(min=1), default=10, show_default=True,
              help="Number of tracks.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Library seed; the same seed writes the same library.")
@click.option("--minutes", type=click.FloatRange(min=0.1, max=15), default=3.0,
              show_default=True, help="Approximate length of each track (whole phrases).")
@click.option("--genres", callback=_genre_list,
              help="Comma-separated genres, cycled over the tracks (default: all): house, "
                   "techno, trance, drum_and_bass, dubstep, garage.")
@click.option("--noise", type=click.Choice(["none", "light", "default", "heavy"]),
              default="default", show_default=True,
              help="Rate of DJ label errors in rekordbox.xml; none gives exact labels.")
@click.option("--format", "audio_format", type=click.Choice(["wav", "flac", "mp3"]),
              default="wav", show_default=True, help="Audio format (mp3 via LAME).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes rendering in parallel (the output does not depend on it).")
@click.option("--variety", type=click.Choice(["classic", "broad"]), default="classic",
              show_default=True,
              help="broad: also breakbeats, half-time, swung and kick-less grooves, trap, "
                   "sections of 4-36 bars, tonal intros, varied mastering.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def command(out_dir: Path, tracks: int, seed: int, minutes: float, genres: list[str] | None,
            noise: str, audio_format: str, workers: int, variety: str, as_json: bool) -> None:
    """Make EDM tracks with exact ground truth and DJ-style label noise.

    Each track is a rendered EDM arrangement (intro, build-up, drop, breakdown, outro) in
    one of six genres; its truth (beats, downbeats, tempo segments, sections, energy) is
    exact. rekordbox.xml shows the same library as a DJ's export would, with the label errors
    of --noise applied and listed in injected_errors.csv.
    """
    from edm.synth.library import SynthError, make_library

    progress = Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}"),
                        console=_err, disable=as_json, transient=True)
    with progress:
        task = progress.add_task("", total=tracks)
        try:
            summary = make_library(
                out_dir, tracks=tracks, seed=seed, minutes=minutes, genres=genres, noise=noise,
                audio_format=audio_format, workers=workers, variety=variety,
                progress=lambda name: progress.update(task, advance=1, description=name),
            )
        except (SynthError, OSError) as error:
            raise click.ClickException(str(error)) from error
    for line in summary.failed:
        click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        errors = sum(summary.errors_by_kind.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary.errors_by_kind.items()))
        click.echo(f"{plural(len(summary.tracks), 'track')} "
                   f"({summary.audio_seconds / 60:.1f} min of audio) in {out_dir}; "
                   f"{plural(errors, 'injected error')}" + (f": {kinds}" if kinds else ""))
        click.echo(f"  genres: {', '.join(f'{k} {v}' for k, v in summary.genres.items())}")
        click.echo(f"  next: edm data import {out_dir / 'rekordbox.xml'} --out annotations/")
    if summary.failed:
        raise SystemExit(1)
