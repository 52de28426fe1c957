"""``edm analyze``: beat grid, sections and energy for tracks, folders or a Rekordbox XML."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edm.analyze.writers import FORMATS
from edm.cli.problems import echo_problems
from edm.text import plural

_err = Console(stderr=True)


def _missing_audio_hint(missing: int, audio_root: Path | None) -> str:
    tracks = ("1 of the XML's tracks is not at its" if missing == 1
              else f"{missing} of the XML's tracks are not at their")
    if audio_root is not None:
        return f"hint: {tracks} Location, nor under --audio-root {audio_root}"
    return (f"hint: {tracks} Location (a library from another machine?): point --audio-root "
            "at the folder that holds the music")


def _table_console() -> Console:
    """The terminal's width on a terminal; into a pipe or file, wide enough for whole names."""
    console = Console()
    return console if console.is_terminal else Console(width=1000)


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
and your playlists are left exactly as written (check it with `edm data import`).
\b
To load the XML in Rekordbox: Preferences > View > Layout: tick "rekordbox xml";
Preferences > Advanced > Database > rekordbox xml: choose the file. Then open the
"rekordbox xml" tree in the browser, right-click a track or playlist > "Import To Collection".
\b
--out is followed as given: a name ending in / (or an existing folder, or a name without an
extension) is a folder, result.json is one file (one track), cues.csv / library.xml a file;
anything else is refused before analysis, with the reason. JSON/JAMS files keep each track's
path relative to the folder the inputs share, so dir/a/loop.mp3 and dir/b/loop.mp3 give
a/loop.json and b/loop.json.
\b
JSON fields: path, duration_s, model, model_version, backbone, edm_version, bpm, grid (tempo
segments), beats, downbeats, boundaries (seconds), beat_/downbeat_/boundary_confidence (the
heads' probabilities, null when not given), sections (start_s, end_s, label, energy), cues,
annotation (what `edm evaluate` and `edm data` read).
Exit codes: 0 every input analysed (notes about the XML are not failures), 1 some inputs
failed (each named on stderr), 2 usage (e.g. an --out that cannot hold the output).""")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--models", "model_dir", type=click.Path(path_type=Path),
              help="Heads folder from `edm fit-heads` (default: the model shipped with edm).")
@click.option("--store", "store_path", type=click.Path(exists=True, path_type=Path),
              help="Embedding store to read tracks from when already embedded.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              default="json", show_default=True, help="Output format.")
@click.option("--out", "out_path", type=click.Path(path_type=str),
              help="Output folder (json, jams; or result.json for one track) or file "
                   "(rekordbox, csv; or a folder/ for the default name in it). "
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
            out_path: str | None, plot: bool, replace_cues: bool, replace_grid: bool,
            audio_root: Path | None, as_json: bool) -> None:
    """Beat grid, phrase-aligned sections and energy for tracks, folders or a Rekordbox XML."""
    from edm.analyze import AnalysisWriter, AnalyzeError, analyze_many, load_model
    from edm.analyze.writers import OutputError
    from edm.inputs import find_inputs

    try:
        model = load_model(model_dir)
        model.backbone()  # built once, checked against the heads' key before any track
    except AnalyzeError as error:
        raise click.ClickException(str(error)) from error
    store = None
    if store_path is not None:
        from edm.store import EmbeddingStore

        store = EmbeddingStore(store_path)
    found = find_inputs(inputs, audio_root=audio_root)
    pairs, xml_base, notes = found.tracks, found.xml, found.warnings
    problems = [problem.reason for problem in found.problems]
    n_inputs = len(pairs) + len(problems)
    try:
        writer = AnalysisWriter(fmt, out_path, inputs=[path for path, _ in pairs], plot=plot,
                                replace_cues=replace_cues, replace_grid=replace_grid,
                                base=xml_base)
    except OutputError as error:
        raise click.UsageError(str(error)) from error
    from_xml = {str(path) for path, base in pairs if base is not None}
    missing_from_xml = 0
    progress = Progress(TextColumn("analyzing"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}"), console=_err,
                        disable=as_json or len(pairs) < 2 or not _err.is_terminal,
                        transient=True)
    with progress:
        task = progress.add_task("", total=len(pairs))
        for outcome in analyze_many(pairs, model, store=store):
            progress.update(task, advance=1, description=Path(outcome.path).name)
            if outcome.error is not None:
                problems.append(outcome.error)
                missing_from_xml += (outcome.path in from_xml
                                     and not Path(outcome.path).is_file())
                continue
            writer.add(outcome.analysis)
    writer.finish()
    analyses, out = writer.analyses, writer.out
    rekordbox = writer.rekordbox

    if as_json:
        click.echo(json.dumps({"model": model.name, "out": str(out),
                               "analyses": [a.to_dict() for a in analyses],
                               "rekordbox": rekordbox.to_dict() if rekordbox else None,
                               "notes": notes, "problems": problems}, indent=2,
                              ensure_ascii=False))
    else:
        table = Table(title=f"edm analyze — model: {model.name}")
        table.add_column("track", overflow="fold")  # a long name wraps, never cut
        for column in ("BPM", "sections", "first drop", "time"):
            table.add_column(column, justify="right", no_wrap=True)
        for a in analyses:
            drop = next((s.start_s for s in a.sections if s.label == "drop"), None)
            tempo = " → ".join(f"{s.bpm:g}" for s in a.grid.segments[:3])
            table.add_row(Path(a.path).name, tempo, str(len(a.sections)),
                          "—" if drop is None else f"{int(drop // 60)}:{drop % 60:04.1f}",
                          f"{a.elapsed_s:.2f} s")
        if analyses:
            _table_console().print(table)
            click.echo(f"wrote {fmt} → {out}" + (f" (PNGs in {writer.plot_dir})" if plot else ""),
                       err=True)
        if rekordbox is not None:
            doubts = rekordbox.grid_disagreements
            echo_problems(doubts, what="more grids edm disagrees with")
            echo_problems(rekordbox.notes)
            click.echo(rekordbox.summary(), err=True)
    if not as_json:
        echo_problems(notes, prefix="note: ", what="more notes")
        echo_problems(problems, what="more failed")
    if problems:
        click.echo(f"{len(problems)} of {plural(n_inputs, 'input')} failed, "
                   f"{len(analyses)} analysed", err=True)
        if missing_from_xml:
            click.echo(_missing_audio_hint(missing_from_xml, audio_root), err=True)
        raise SystemExit(1)
