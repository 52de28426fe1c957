"""``edm demo``: the whole loop on a small synthetic library, ending with a short report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

_METRICS = {
    "beat_f": "beat F",
    "downbeat_f": "downbeat F",
    "tempo_acc1": "tempo acc",
    "boundary_f_0.5s": "boundary F@0.5s",
    "boundary_f_3s": "boundary F@3s",
    "energy_spearman": "energy ρ",
}


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{float(value):.3f}"


@click.command(
    epilog="""\b
Examples:
  edm demo                      # standard size, a few minutes, in ./edm-demo
  edm demo --fast               # under a minute (CI's smoke test)
  edm demo ~/edm-demo --tracks 24 --json
\b
Exit codes: 0 done, 1 a step failed."""
)
@click.argument("workspace", default="edm-demo", type=click.Path(file_okay=False, path_type=Path))
@click.option("--tracks", type=int, default=None, help="Training tracks to synthesise.")
@click.option("--fast", is_flag=True, help="A tiny library and short training: under a minute.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(workspace: Path, tracks: int | None, fast: bool, as_json: bool) -> None:
    """Run synth → import → embed → fit-heads → label-audit → analyze → evaluate.

    Everything is written under WORKSPACE (default ./edm-demo); nothing is downloaded.
    """
    from rich.console import Console

    from edm.demo import DemoConfig, run_demo

    try:
        config = DemoConfig.sized(fast=fast, tracks=tracks)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--tracks") from error
    console = Console(stderr=True)
    with console.status("starting") as status:
        report = run_demo(workspace, config,
                          on_step=lambda name: status.update(f"[bold]{name}[/] …"))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    _print_report(report)


def _print_report(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from edm.demo import DemoConfig

    console = Console()
    steps = Table(title=f"edm demo in {report.workspace}")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    steps.add_column("what happened")
    for step in report.steps:
        steps.add_row(step.name, f"{step.seconds:.1f}", step.summary)
    console.print(steps)

    scores = Table(title="held-out tracks against their exact truth")
    scores.add_column("model")
    for label in _METRICS.values():
        scores.add_column(label, justify="right")
    for model, means in report.evaluation.items():
        scores.add_row(model, *(_fmt(means.get(key)) for key in _METRICS))
    console.print(scores)

    audit = report.audit
    console.print(
        f"label audit: {audit.get('findings', 0)} findings for {audit.get('injected', 0)} "
        f"planted errors; precision@20 {_fmt(audit.get('P@20'))}, "
        f"grid precision@20 {_fmt(audit.get('grid P@20'))}, "
        f"cue precision@20 {_fmt(audit.get('cue P@20'))}"
    )
    console.print(f"plot: {report.plot}\nRekordbox XML: {report.rekordbox_xml}")
    if report.config.tracks < DemoConfig.tracks:
        console.print("(a library this small makes the fitted model a smoke test; run without "
                      "--fast or --tracks to see what fitting on your labels buys)")
    console.print(f"full report: {Path(report.workspace) / 'reports' / 'demo.json'}")
    for line in report.problems:
        console.print(f"[yellow]{line}[/]")
