"""``edm data``: import a Rekordbox XML, inspect, validate and export annotations."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from edm.cli.problems import echo_problems
from edm.data.schema import (
    AnnotationError,
    Tier,
    TrackAnnotation,
)
from edm.text import plural

_err = Console(stderr=True)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Progress]:
    progress = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_err, disable=not enabled, transient=True,
    )
    with progress:
        yield progress


def _reporter(
    progress: Progress, task: TaskID, show: bool
) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` callback for library functions; None when nobody watches."""
    if not show:
        return None
    return lambda done, total: progress.update(task, completed=done, total=total)


@click.group(epilog="""\b
Examples:
  edm data import rekordbox.xml --out annotations/
  edm data stats annotations/
  edm data validate annotations/ --json
  edm data export annotations/ --format jams --out jams/""")
def command() -> None:
    """Import, inspect, validate and export annotations (Rekordbox XML)."""


@command.command("import", epilog="""\b
Examples:
  edm data import rekordbox.xml --out annotations/
  edm data import rekordbox.xml --out annotations/ --playlist "Peak Time" --tier 1
  edm data import rekordbox.xml --out annotations/ --audio-root /mnt/music
  edm data import /Volumes/USB/PIONEER --out annotations/       # a USB export (+ phrases)
  edm data import --rekordbox-db --out annotations/             # Rekordbox 6/7 master.db
  edm data import song.osu --out annotations/     # also .sm .ssc .qua charts, .mmp(z)
\b
A USB export and master.db add Rekordbox's phrase analysis (labelled sections) to the grid
and cues. A track already in the folder from another source (the XML) is merged into one
file, without duplicate cues.
Exit codes: 0 imported (repairs are listed on stderr), 1 the file could not be read or
some tracks were skipped.""")
@click.argument("xml", metavar="SOURCE", required=False,
                type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the annotation files (one YAML per track).")
@click.option("--rekordbox-db", is_flag=False, flag_value="", default=None, metavar="[PATH]",
              help="Read Rekordbox 6/7's master.db (default: this computer's Rekordbox "
                   "library) instead of SOURCE.")
@click.option("--db-key", help="The master.db key, when the one pyrekordbox knows fails.")
@click.option("--tier", type=click.IntRange(1, 3), default=2, show_default=True,
              help="Trust tier: 1 verified, 2 DJ software labels, 3 unlabeled.")
@click.option("--playlist", help="XML: import only this playlist (name, or 'Folder/Name').")
@click.option("--audio-root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="XML: where the library's audio lives on this machine (paths are remapped).")
@click.option("--overwrite", is_flag=True,
              help="Replace annotations that were edited since import (version > 1 or "
                   "another source); by default they are kept.")
@click.option("--no-hash", is_flag=True, help="Do not read audio files to fill content hashes.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def import_command(
    xml: Path | None, out_dir: Path, rekordbox_db: str | None, db_key: str | None, tier: int,
    playlist: str | None, audio_root: Path | None, overwrite: bool, no_hash: bool,
    as_json: bool,
) -> None:
    """A Rekordbox library to one annotation file per track.

    SOURCE is a Rekordbox XML export (every TRACK: grid from TEMPO, cues from POSITION_MARK,
    key, BPM, duration; read with a hardened XML parser) or a USB export (export.pdb and the
    ANLZ analysis files: every beat, cues, phrases). Problems in single tracks are repaired or
    skipped and listed.
    """
    from edm.cli.truth_import import TRUTH_SUFFIXES, import_truth_file

    if xml is not None and xml.suffix.lower() in TRUTH_SUFFIXES:  # chart / LMMS: Tier-1 grid
        return import_truth_file(xml, out_dir, as_json=as_json)
    from edm.data.rekordbox import RekordboxError, paused_gc
    from edm.data.rekordbox_library import read_any_library, save_annotations

    show = not as_json and sys.stderr.isatty()
    with _progress("locating audio", show) as progress:
        task = progress.add_task("locate", total=None)
        try:
            library = read_any_library(
                xml, rekordbox_db=rekordbox_db, db_key=db_key, audio_root=audio_root,
                playlist=playlist, tier=Tier(tier), hash_audio=not no_hash,
                progress=_reporter(progress, task, show),
            )
        except RekordboxError as error:
            raise click.ClickException(str(error)) from error

    with _progress("writing annotations", show) as progress, paused_gc():
        task = progress.add_task("write", total=len(library.tracks))
        saved = save_annotations(library.tracks, out_dir, overwrite=overwrite,
                                 progress=_reporter(progress, task, show))

    source = library.path or xml
    summary = {
        "xml": str(source), "out": str(out_dir), "rekordbox_version": library.product_version,
        "tracks_in_file": library.tracks_in_file, "imported": len(library.tracks),
        "skipped": library.skipped, "written": saved.written, "merged": saved.merged,
        "kept_edited": saved.kept_edited, "audio_found": library.audio_found,
        "with_phrases": sum(1 for a in library.tracks if a.sections),
        "problems": library.problems,
    }
    if as_json:
        _echo_json(summary)
    else:
        echo_problems(library.problems)
        click.echo(
            f"{source}: {len(library.tracks)} of {library.tracks_in_file} tracks imported, "
            f"{saved.written} written to {out_dir} ({saved.merged} merged with another "
            f"source), {len(saved.kept_edited)} edited kept, {summary['with_phrases']} with "
            f"phrases, {library.audio_found} with audio here, {len(library.problems)} problem(s)"
        )
    if library.skipped:
        sys.exit(1)


def _load(ann_dir: Path, as_json: bool) -> Any:
    from edm.data.checks import load_folder

    show = not as_json and sys.stderr.isatty()
    with _progress("reading annotations", show) as progress:
        task = progress.add_task("read", total=None)
        try:
            folder = load_folder(
                ann_dir,
                progress=_reporter(progress, task, show),
            )
        except AnnotationError as error:
            raise click.ClickException(str(error)) from error
    if not folder.annotations and not folder.errors:
        raise click.ClickException(
            f"no annotation files in {ann_dir} (*.yaml, as `edm data import` writes them)")
    return folder


@command.command("stats", epilog="""\b
Examples:
  edm data stats annotations/
  edm data stats annotations/ --json | jq .cues""")
@click.argument("ann_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats_command(ann_dir: Path, as_json: bool) -> None:
    """Summarise annotations: tiers, sources, cues, BPM, keys.

    Counts tracks by tier and source, cues per track (memory, hot, loops, named), BPM and key
    distributions, and tracks whose audio is not on this machine.
    """
    from edm.data.checks import folder_stats

    stats = folder_stats(_load(ann_dir, as_json))
    if as_json:
        _echo_json(stats)
        return
    click.echo(f"{ann_dir}: {plural(stats['tracks'], 'track')}")  # never wrapped to the table
    table = Table(show_header=False)
    table.add_column("what")
    table.add_column("value")
    cues = stats["cues"]
    rows = [
        ("unreadable files", stats["unreadable_files"]),
        ("by tier", _pairs(stats["by_tier"])),
        ("by source", _pairs(stats["by_source"])),
        ("cues", f"{cues['total']} ({cues['memory']} memory, {cues['hot']} hot, "
                 f"{cues['loops']} loops, {cues['named']} named)"),
        ("cues per track", f"mean {cues['per_track_mean']}; "
                           + _pairs(cues["per_track_histogram"])),
        ("tracks without cues", cues["tracks_without_cues"]),
        ("with beat grid", stats["grid"]["tracks_with_grid"]),
        ("with tempo change", stats["grid"]["tracks_with_tempo_change"]),
        ("BPM", _pairs(stats["bpm_histogram"])),
        ("keys", _pairs(dict(list(stats["keys"].items())[:12]))),
        ("audio missing", stats["missing_audio"]),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {value}" for key, value in mapping.items()) or "-"


@command.command("validate", epilog="""\b
Examples:
  edm data validate annotations/
  edm data validate annotations/ --errors-only      # hide the missing-audio warnings
  edm data validate annotations/ --strict --json
\b
The summary (files, errors and warnings by check) comes first, then every error, then the
warnings.
Exit codes: 0 no errors (warnings allowed unless --strict), 1 errors found or no annotation
files in the folder.""")
@click.argument("ann_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--grid-tolerance-ms", type=click.FloatRange(min=0), default=30.0,
              show_default=True, help="A cue further than this from the nearest beat is off grid.")
@click.option("--strict", is_flag=True, help="Count warnings (missing audio, no grid) as errors.")
@click.option("--errors-only", is_flag=True,
              help="List only the errors (the summary still counts the warnings).")
@click.option("--json", "as_json", is_flag=True, help="Print findings as JSON.")
def validate_command(ann_dir: Path, grid_tolerance_ms: float, strict: bool, errors_only: bool,
                     as_json: bool) -> None:
    """Check annotations and list every problem.

    Errors: schema errors (file and field), cues off the beat grid, cues past the end,
    duplicate tracks (same content hash or path). Warnings: missing audio, cues without a grid.
    """
    from edm.data.checks import findings_json, validate_folder

    folder = _load(ann_dir, as_json)
    findings = validate_folder(folder, grid_tolerance_s=grid_tolerance_ms / 1000)
    errors = [f for f in findings if f.severity == "error" or strict]
    warnings = [f for f in findings if not (f.severity == "error" or strict)]
    files = len(folder.annotations) + len(folder.errors)
    if as_json:
        _echo_json({
            "files": files, "errors": len(errors), "warnings": len(warnings),
            "findings": findings_json(errors if errors_only else findings),
        })
    else:
        click.echo(f"{ann_dir}: {plural(files, 'file')}, {plural(len(errors), 'error')}, "
                   f"{plural(len(warnings), 'warning')}"
                   + (" (not listed: --errors-only)" if errors_only and warnings else ""))
        for name, group in (("errors", errors), ("warnings", warnings)):
            if group:
                click.echo(f"  {name}: " + _pairs(dict(Counter(f.check for f in group)
                                                        .most_common())))
        for finding in errors + ([] if errors_only else warnings):
            click.echo(f"{finding.severity}: {finding.check}: {finding.line()}")
    if errors:
        sys.exit(1)


@command.command("export", epilog="""\b
Examples:
  edm data export annotations/ --format jams --out jams/
  edm data export annotations/ --format rekordbox --out edm.xml
  edm data export annotations/ --format rekordbox --base rekordbox.xml --out fixed.xml
  edm data export annotations/ --format csv --out cues.csv
\b
Rekordbox: the library the annotations were imported from (or --base) is copied and only
what the annotations changed is rewritten (grid, cues, BPM, key); every other attribute,
track and playlist stays exactly as written.""")
@click.argument("ann_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jams", "rekordbox", "csv"]), required=True,
              help="jams: one .jams per track in the --out folder; rekordbox: one XML file; "
                   "csv: one row per cue.")
@click.option("--out", "out_arg", required=True, type=click.Path(path_type=str),
              help="Output folder (jams; or one.jams for one track) or file (rekordbox, csv; "
                   "or a folder/ for the default name in it).")
@click.option("--base", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Rekordbox: the library XML to update (default: the one the annotations "
                   "were imported from, when it is still there).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def export_command(ann_dir: Path, fmt: str, out_arg: str, base: Path | None,
                   as_json: bool) -> None:
    """Write annotations as JAMS, Rekordbox XML or cue CSV.

    Files that fail to load are listed and skipped; the exit code is then 1. --out is
    followed as given, or refused with the reason before anything is written (as in
    `edm analyze`: a name ending in / is a folder).
    """
    from edm.analyze.writers import OutputError, resolve_out

    folder = _load(ann_dir, as_json)
    try:
        out, out_is_folder = resolve_out(fmt, out_arg, n_tracks=len(folder.annotations))
    except OutputError as error:
        raise click.UsageError(str(error)) from error
    annotations: list[TrackAnnotation] = [a for _, a in folder.annotations]
    problems = [str(error) for error in folder.errors]
    extra: dict[str, Any] = {}
    if fmt == "jams":
        from edm.data.jams_io import save_jams

        for file, annotation in folder.annotations:
            save_jams(annotation, out / (file.stem + ".jams") if out_is_folder else out)
        written = len(annotations)
    elif fmt == "rekordbox":
        from edm.data.rekordbox import RekordboxError, default_base, write_rekordbox_xml

        try:
            report = write_rekordbox_xml(annotations, out,
                                         base=base or default_base(annotations))
        except RekordboxError as error:
            raise click.ClickException(str(error)) from error
        written = len(annotations)
        if report.base is None and annotations:
            report.notes.append(
                "no original library XML found: a new file with the annotations' tracks; "
                "attributes edm does not keep (Comments, Album, Rating …) and playlists are "
                "only carried over with --base"
            )
        extra = {"rekordbox": report.to_dict()}
    else:
        from edm.data.csv_io import write_cue_csv

        written = write_cue_csv(annotations, out)
    if as_json:
        _echo_json({"format": fmt, "out": str(out), "tracks": len(annotations),
                    "rows" if fmt == "csv" else "written": written, "failed": problems,
                    **extra})
    else:
        echo_problems(problems)
        unit = "cue row" if fmt == "csv" else "track"
        if "rekordbox" in extra:
            for line in report.notes:
                click.echo(line, err=True)
            click.echo(report.summary())
        else:
            click.echo(f"{plural(written, unit)} written to {out} "
                       f"({plural(len(problems), 'file')} failed)")
    if folder.errors:
        sys.exit(1)
