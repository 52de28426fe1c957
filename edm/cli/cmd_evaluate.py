"""``edm evaluate``: score prediction folders against ground truth and compare them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from edm.text import plural

_LABELS = {
    "beat_f": "beat F",
    "beat_cmlt": "beat CMLt",
    "beat_amlt": "beat AMLt",
    "beat_anti_phase": "share in anti-phase (lower is better)",
    "downbeat_f": "downbeat F",
    "tempo_acc1": "tempo Acc1",
    "tempo_acc2": "tempo Acc2",
    "boundary_f_0.5s": "boundary F @0.5 s",
    "boundary_f_3s": "boundary F @3 s",
    "boundary_f_1beat": "boundary F @1 beat",
    "energy_spearman": "energy Spearman ρ",
}


def _fmt(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"


@click.command(epilog="""\b
Examples:
  edm evaluate --truth synth/truth --pred predictions/
  edm evaluate --truth synth/truth --pred default/ --pred fitted/ --json
  edm evaluate --truth held_out/truth --pred predictions/ --metrics reports/evaluation.json
  edm evaluate --truth truth/ --pred predictions/ --rekordbox usb-annotations/
\b
Predictions are matched to truth by file stem: truth/NAME.jams ↔ pred/NAME.json (edm analyze
--format json), NAME.jams or NAME.yaml.
Exit codes: 0 every truth file had a readable prediction, 1 some were missing or unreadable,
2 usage error.""")
@click.option("--truth", "truth_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of ground-truth .jams files (edm synth writes truth/).")
@click.option("--pred", "pred_dirs", required=True, multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of predictions; repeat to compare several.")
@click.option("--rekordbox", "library_dir",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Annotations imported from a USB export or master.db: Rekordbox's own grid "
                   "and phrase sections, scored beside the predictions.")
@click.option("--json", "as_json", is_flag=True, help="Print scores (per track too) as JSON.")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write mean scores per prediction folder as flat JSON "
                   "(for `dvc metrics show`).")
def command(
    truth_dir: Path, pred_dirs: tuple[Path, ...], library_dir: Path | None, as_json: bool,
    metrics_path: Path | None,
) -> None:
    """Score predictions against ground truth with mir_eval (beats, downbeats, tempo,
    boundaries, energy)."""
    from edm.evaluate import METRICS, EvaluateError, evaluate_folder, evaluate_library

    try:
        reports = [evaluate_folder(truth_dir, pred) for pred in pred_dirs]
        if library_dir is not None:
            reports.append(evaluate_library(truth_dir, library_dir))
    except EvaluateError as error:
        raise click.ClickException(str(error)) from error
    failed = any(r.problems or r.missing for r in reports)
    if metrics_path is not None:
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        means = {r.name: r.to_dict()["mean"] for r in reports}
        metrics_path.write_text(json.dumps(means, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps({"truth": str(truth_dir), "reports": [r.to_dict() for r in reports]},
                              indent=2))
    else:
        table = Table(title=f"Mean scores vs {truth_dir}")
        table.add_column("metric")
        for report in reports:
            table.add_column(f"{report.name}\n({plural(len(report.per_track), 'track')})",
                             justify="right")
        means = [r.mean for r in reports]
        for name in METRICS:
            table.add_row(_LABELS[name], *(_fmt(m[name]) for m in means))
        Console().print(table)
        for report in reports:
            for line in report.problems:
                click.echo(line, err=True)
            if report.missing:
                click.echo(f"{report.name}: no prediction for {len(report.missing)} truth "
                           f"file(s), e.g. {report.missing[0]}", err=True)
    if failed:
        raise SystemExit(1)
