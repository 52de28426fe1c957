"""``edm analyze``: beat grid, sections and energy for tracks, folders or a Rekordbox XML."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edm.analyze.writers import FORMATS

_err = Console(stderr=True)


def _collect(inputs: tuple[Path, ...], audio_root: Path | None):
    """(path, base annotation or None) pairs, the XML they came from, and input problems."""
    from edm.audio import AUDIO_EXTENSIONS
    from edm.data.rekordbox import RekordboxError, read_rekordbox_xml

    pairs: list = []
    problems: list[str] = []
    xml_base: Path | None = None
    plain: list[Path] = []
    for item in inputs:
        if item.suffix.lower() == ".xml" and item.is_file():
            try:
                library = read_rekordbox_xml(item, audio_root=audio_root, hash_audio=False)
            except RekordboxError as error:
                problems.append(str(error))
                continue
            problems.extend(library.problems)
            xml_base = xml_base or item
            for track in library.tracks:
                if track.track.path:
                    pairs.append((Path(track.track.path), track))
                else:
                    problems.append(f"{item}: track {track.track_id} has no Location")
        else:
            plain.append(item)
    for item in plain:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file()
                           and p.suffix.lower() in AUDIO_EXTENSIONS
                           and not any(part.startswith(".") for part in p.relative_to(item).parts))
            if not found:
                problems.append(f"{item}: no audio files in this folder")
            pairs.extend((file, None) for file in found)
        else:
            # A file that is not there or not audio fails in analyze() with its own message.
            pairs.append((item, None))
    return pairs, xml_base, problems


@click.command(epilog="""\b
Examples:
  edm analyze track.mp3                        # table on the terminal, JSON in edm-analysis/
  edm analyze ~/Music/promos --plot            # a folder, with a PNG per track
  edm analyze rekordbox.xml --format rekordbox --out analysed.xml
  edm analyze track.flac --models models/mine --format jams --out jams/
  edm analyze track.mp3 --json                 # results as JSON on stdout
\b
Rekordbox output adds a named memory cue on the downbeat at every section start to the XML's
tracks, merged with your own cues (kept unless --replace-cues); your beat grid is kept unless
--replace-grid, and tracks where edm's tempo disagrees with it are listed. Every other attribute
and your playlists are left exactly as written. Import the file in Rekordbox (Preferences > View >
rekordbox xml) or check it with `edm data import`.
Exit codes: 0 every input analysed, 1 some inputs failed (each named on stderr), 2 usage.""")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--models", "model_dir", type=click.Path(path_type=Path),
              help="Heads folder from `edm fit-heads` (default: the model shipped with edm).")
@click.option("--store", "store_path", type=click.Path(exists=True, path_type=Path),
              help="Embedding store to read tracks from when already embedded.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              default="json", show_default=True, help="Output format.")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="Output folder (json, jams) or file (rekordbox, csv). "
                   "Default: edm-analysis/, edm-analysis.xml or edm-cues.csv.")
@click.option("--plot", is_flag=True, help="Also write a PNG per track next to the output.")
@click.option("--replace-cues", is_flag=True,
              help="Rekordbox output: drop the tracks' existing cues instead of keeping them.")
@click.option("--replace-grid", is_flag=True,
              help="Rekordbox output: write edm's beat grid over the DJ's (kept by default).")
@click.option("--audio-root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Where a Rekordbox XML's audio lives on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print the analyses as JSON on stdout.")
def command(inputs: tuple[Path, ...], model_dir: Path | None, store_path: Path | None, fmt: str,
            out_path: Path | None, plot: bool, replace_cues: bool, replace_grid: bool,
            audio_root: Path | None, as_json: bool) -> None:
    """Beat grid, phrase-aligned sections and energy for tracks, folders or a Rekordbox XML."""
    from edm.analyze import AnalysisWriter, AnalyzeError, analyze_many, load_model

    try:
        model = load_model(model_dir)
        model.backbone()  # built once, checked against the heads' key before any track
    except AnalyzeError as error:
        raise click.ClickException(str(error)) from error
    store = None
    if store_path is not None:
        from edm.store import EmbeddingStore

        store = EmbeddingStore(store_path)
    pairs, xml_base, problems = _collect(inputs, audio_root)
    writer = AnalysisWriter(fmt, out_path, plot=plot, replace_cues=replace_cues,
                            replace_grid=replace_grid, base=xml_base)
    progress = Progress(TextColumn("analyzing"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}"), console=_err,
                        disable=as_json or len(pairs) < 2, transient=True)
    with progress:
        task = progress.add_task("", total=len(pairs))
        for outcome in analyze_many(pairs, model, store=store):
            progress.update(task, advance=1, description=Path(outcome.path).name)
            if outcome.error is not None:
                problems.append(outcome.error)
                continue
            writer.add(outcome.analysis)
    writer.finish()
    analyses, out = writer.analyses, writer.out
    rekordbox = writer.rekordbox

    if as_json:
        click.echo(json.dumps({"model": model.name, "out": str(out),
                               "analyses": [a.to_dict() for a in analyses],
                               "rekordbox": rekordbox.to_dict() if rekordbox else None,
                               "problems": problems}, indent=2, ensure_ascii=False))
    else:
        table = Table(title=f"edm analyze — model: {model.name}")
        for column in ("track", "BPM", "sections", "first drop", "time"):
            table.add_column(column, justify="left" if column == "track" else "right")
        for a in analyses:
            drop = next((s.start_s for s in a.sections if s.label == "drop"), None)
            tempo = " → ".join(f"{s.bpm:g}" for s in a.grid.segments[:3])
            table.add_row(Path(a.path).name, tempo, str(len(a.sections)),
                          "—" if drop is None else f"{int(drop // 60)}:{drop % 60:04.1f}",
                          f"{a.elapsed_s:.2f} s")
        if analyses:
            Console().print(table)
            click.echo(f"wrote {fmt} → {out}" + (f" (PNGs in {writer.plot_dir})" if plot else ""),
                       err=True)
        if rekordbox is not None:
            for line in rekordbox.grid_disagreements + rekordbox.notes:
                click.echo(line, err=True)
            click.echo(rekordbox.summary(), err=True)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        click.echo(f"{len(problems)} input(s) failed, {len(analyses)} analysed", err=True)
        raise SystemExit(1)
