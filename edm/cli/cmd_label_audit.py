"""``edm label-audit``: rank the labels most likely to be wrong; apply accepted fixes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edm.audit.report import MAX_PLOTS
from edm.cli.problems import echo_problems

_err = Console(stderr=True)


@click.command(
    epilog="""\b
Examples:
  edm label-audit --annotations annotations/ --store store.zarr --models models/heads
  edm label-audit --annotations annotations/ --models models/heads --top 50 --plot
  edm label-audit --annotations annotations/ --apply reports/audit.csv      # rows with accept=1
  edm label-audit --annotations annotations/ --models models/heads --accept-above 0.95 --promote
  edm data export annotations/ --format rekordbox --out fixed.xml          # back to Rekordbox
\b
Without --models only the cue heuristics run (no activations to check grids against).
The report is a CSV (ranked; fill in the 'accept' column) and a JSON file beside it.
\b
Exit codes: 0 done (findings are not errors), 1 some annotation files or tracks could not be
read or fixed, 2 usage error."""
)
@click.option(
    "--annotations",
    "ann_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Annotation folder (one YAML per track, from `edm data import`).",
)
@click.option(
    "--store",
    type=click.Path(exists=True, path_type=Path),
    help="Embedding store (`edm embed`), so tracks the models hold no predictions for are "
    "predicted now.",
)
@click.option(
    "--models",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="`edm fit-heads` output folder; its predictions for each track come from a model "
    "that never trained on that track (with --folds >= 2).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("reports/audit.csv"),
    show_default=True,
    help="Ranked CSV report; a .json with the same name is written beside it.",
)
@click.option("--top", type=click.IntRange(min=1), help="Keep only the N highest-scoring findings.")
@click.option("--plot", is_flag=True, help=f"A PNG per finding (top {MAX_PLOTS}) in <out>_plots/.")
@click.option(
    "--apply",
    "apply_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Apply the rows of this report whose 'accept' column is 1/yes/x (no audit runs).",
)
@click.option(
    "--accept-above",
    type=click.FloatRange(0, 1),
    help="Audit, then apply every finding scoring at least this.",
)
@click.option("--promote", is_flag=True,
              help="Mark fixed tracks as checked by a person (tier 1: trusted for testing).")
@click.option(
    "--fixed-out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write fixed annotations here instead of replacing them (old kept in .history/).",
)
@click.option("--no-cleanlab", is_flag=True,
              help="Skip the statistical check (cleanlab); grid and cue checks only.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and findings as JSON.")
def command(
    ann_dir: Path,
    store: Path | None,
    models: Path | None,
    out: Path,
    top: int | None,
    plot: bool,
    apply_csv: Path | None,
    accept_above: float | None,
    promote: bool,
    fixed_out: Path | None,
    no_cleanlab: bool,
    as_json: bool,
) -> None:
    """Rank the labels most likely to be wrong; apply fixes.

    \b
    Plain recipe (after `edm fit-heads --store store.zarr --annotations annotations/
    --out models/mine`):
      1. edm label-audit --annotations annotations/ --store store.zarr --models models/mine
      2. open reports/audit.csv (worst first), put 1 in the 'accept' column of each fix you
         agree with
      3. edm label-audit --annotations annotations/ --apply reports/audit.csv
    Time: seconds (500 five-minute tracks took 30 s on a busy 2-core machine); fitting the
    model before it is the slow part. Every fixed file's old version stays in
    annotations/.history/, so nothing you labelled is lost.

    \b
    What it checks, in plain words: beat grids that sit off the beats the model hears, or put
    the "1" on the wrong beat, or run at half or double tempo, or miss a tempo change; cues off
    the beat, off the bar or off the 8/16/32-bar phrase, past the end, or doubled; and, with
    the models' predictions on tracks they were not trained on, a statistical check
    (cleanlab) of section starts and downbeats. Accepted fixes become a new version of the
    annotation file.
    """
    from edm.audit.corrections import FixError, read_fixes_csv
    from edm.data.schema import load_annotations

    if apply_csv is not None and accept_above is not None:
        raise click.UsageError("use either --apply or --accept-above, not both")
    if apply_csv is not None:
        try:
            accepted = read_fixes_csv(apply_csv)
        except FixError as error:
            raise click.ClickException(str(error)) from error
        _apply(ann_dir, accepted, promote, fixed_out, as_json, {"apply": str(apply_csv)})
        return

    from edm.audit import report
    from edm.audit.run import audit_library, load_activations

    tracks, errors = load_annotations(ann_dir)
    problems = [str(e) for e in errors]
    if not tracks:
        echo_problems(problems)
        raise click.ClickException(f"{ann_dir}: no readable annotation files")
    try:
        activations, load_problems = load_activations(tracks, models, store)
    except (OSError, ValueError, KeyError) as error:
        raise click.ClickException(f"{models}: cannot load activations ({error})") from error
    problems += load_problems
    with Progress(
        TextColumn("auditing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task("audit", total=len(tracks))
        result = audit_library(
            tracks,
            activations,
            use_cleanlab=not no_cleanlab,
            top=top,
            progress=lambda: bar.advance(task),
        )
    summary = report.write_report(result, tracks, activations, out, plot=plot,
                                  extra={"annotations": str(ann_dir)})
    problems += result.problems
    summary["problems"] = problems
    if accept_above is not None:
        accepted = [f for f in result.findings if f.score >= accept_above]
        _apply(ann_dir, accepted, promote, fixed_out, as_json, summary, problems)
        return
    if as_json:
        click.echo(json.dumps(report.to_json(result.findings, summary), indent=2))
    else:
        _err.print(
            report.table(
                result.findings[: top or 30], title=f"Label audit: {len(result.findings)} findings"
            )
        )
        click.echo(
            f"{summary['findings']} findings in {summary['tracks']} of {result.tracks_audited} "
            f"tracks → {out} (+ .json)",
            err=True,
        )
        echo_problems(problems)
    if problems:
        raise SystemExit(1)


def _apply(
    ann_dir: Path,
    accepted: list,
    promote: bool,
    fixed_out: Path | None,
    as_json: bool,
    summary: dict[str, Any],
    problems: list[str] | None = None,
) -> None:
    from edm.audit.corrections import apply_to_directory

    done = apply_to_directory(ann_dir, accepted, promote=promote, out_dir=fixed_out)
    problems = [*(problems or []), *done.problems]
    summary = {
        **summary,
        "accepted": len(accepted),
        "fixes_applied": done.fixes_applied,
        "tracks_changed": len(done.tracks_changed),
        "written_to": str(fixed_out or ann_dir),
        "problems": problems,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"applied {done.fixes_applied} of {len(accepted)} accepted fixes to "
            f"{len(done.tracks_changed)} tracks in {fixed_out or ann_dir}",
            err=True,
        )
        echo_problems(problems)
    if problems:
        raise SystemExit(1)
