"""Write an audit: ranked CSV (with an empty ``accept`` column to fill in), JSON, a terminal
table, and one small picture per finding (activations and labels around the suspect time)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edm.audit.findings import Finding
from edm.data.schema import TempoSegment, TrackAnnotation, beat_grid
from edm.heads.activations import Activations

if TYPE_CHECKING:
    from edm.audit.run import AuditResult

#: Pictures are for a person reading the top of the list; more would only fill the disk.
MAX_PLOTS = 100

COLUMNS = [
    "rank",
    "accept",
    "id",
    "track_id",
    "track",
    "time_s",
    "kind",
    "score",
    "source",
    "fix",
    "detail",
]


def rows(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Report rows in rank order; ``accept`` is left empty for a person to fill in."""
    return [{"rank": rank, "accept": "", **f.to_row()} for rank, f in enumerate(findings, start=1)]


def write_csv(findings: Sequence[Finding], path: str | Path) -> Path:
    """The ranked report as CSV; edit ``accept`` (1 = apply) and pass it to ``--apply``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows(findings))
    return path


def to_json(findings: Sequence[Finding], summary: dict[str, Any]) -> dict[str, Any]:
    """Findings (with ``fix`` as an object, not a string) and a summary."""
    items = []
    for row in rows(findings):
        items.append({**row, "fix": json.loads(row["fix"])})
    return {"summary": summary, "findings": items}


def write_json(findings: Sequence[Finding], summary: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(findings, summary), indent=2) + "\n", encoding="utf-8")
    return path


def summarize(findings: Sequence[Finding]) -> dict[str, Any]:
    """Counts per kind and source, and how many tracks are involved."""
    by_kind: dict[str, int] = {}
    by_source: dict[str, int] = {}
    for f in findings:
        by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
        by_source[f.source] = by_source.get(f.source, 0) + 1
    return {
        "findings": len(findings),
        "tracks": len({f.track_id for f in findings}),
        "by_kind": dict(sorted(by_kind.items())),
        "by_source": dict(sorted(by_source.items())),
    }


def table(findings: Sequence[Finding], title: str = "Label audit") -> Any:
    """A rich table of the findings (rank, score, kind, track, time, fix)."""
    from rich.table import Table

    out = Table(title=title)
    for name, justify in (
        ("#", "right"),
        ("score", "right"),
        ("kind", "left"),
        ("track", "left"),
        ("time s", "right"),
        ("fix", "left"),
        ("why", "left"),
    ):
        out.add_column(name, justify=justify, overflow="fold")
    for rank, f in enumerate(findings, start=1):
        fix = ", ".join(f"{k}={v}" for k, v in f.fix.items())
        out.add_row(
            str(rank),
            f"{f.score:.2f}",
            f.kind,
            Path(f.track or f.track_id).name[:40],
            f"{f.time_s:.2f}",
            fix,
            f.detail[:60],
        )
    return out


def plot_finding(
    finding: Finding,
    track: TrackAnnotation,
    act: Activations | None,
    grid: list[TempoSegment] | None,
    path: str | Path,
    *,
    window_s: float = 8.0,
) -> Path:
    """A small PNG around the suspect time: activations, labelled beats/downbeats/cues, and
    where the fix would put them (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = track.end_s or (act.n_frames / act.frames_per_second if act else window_s)
    centre = finding.time_s if finding.time_s > 0 else min(end / 2, 30.0)
    lo, hi = max(0.0, centre - window_s / 2), min(end, centre + window_s / 2)
    fig, ax = plt.subplots(figsize=(6, 2.2), dpi=100)
    if act is not None:
        times = act.times()
        keep = (times >= lo) & (times <= hi)
        ax.plot(times[keep], act.beat[keep], lw=0.8, label="beat")
        ax.plot(times[keep], act.downbeat[keep], lw=0.8, label="downbeat")
        ax.plot(times[keep], act.boundary[keep], lw=1.2, label="boundary")
    if track.grid:
        beats, numbers = beat_grid(track.grid, end)
        inside = (beats >= lo) & (beats <= hi)
        ax.vlines(beats[inside & (numbers != 1)], 0, 0.3, colors="grey", lw=0.6)
        ax.vlines(beats[inside & (numbers == 1)], 0, 0.5, colors="black", lw=1.0)
    if grid and grid != track.grid:
        beats, numbers = beat_grid(grid, end)
        inside = (beats >= lo) & (beats <= hi) & (numbers == 1)
        ax.vlines(beats[inside], 0.5, 1.0, colors="green", lw=1.0, linestyles="dashed")
    cues = np.array([c.start_s for c in track.cues])
    cues = cues[(cues >= lo) & (cues <= hi)]
    ax.vlines(cues, 0, 1.05, colors="red", lw=1.6, label="cue")
    target = finding.fix.get("move_to_s", finding.fix.get("add_cue_s"))
    if target is not None:
        ax.axvline(float(target), color="red", ls="--", lw=1.2)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("time (s)")
    ax.set_title(
        f"{finding.kind} {finding.score:.2f} — {Path(finding.track or finding.track_id).name[:40]}",
        fontsize=8,
    )
    ax.legend(fontsize=6, loc="upper right", ncols=4)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    result: AuditResult, tracks: Sequence[TrackAnnotation],
    activations: dict[str, Activations], out: str | Path, *, plot: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write an audit's ranked CSV at ``out``, its JSON beside it (``.json``) and, with
    ``plot``, a PNG for each of the top :data:`MAX_PLOTS` findings in ``<out>_plots/``.

    Returns the summary the JSON holds: counts, latency, paths, problems, and ``extra``.
    """
    out = Path(out)
    summary: dict[str, Any] = {
        **(extra or {}),
        "tracks": result.tracks_audited,
        "tracks_with_activations": result.tracks_with_activations,
        "model_latency_s": round(result.latency_s, 4),
        **summarize(result.findings),
        "csv": str(out),
        "json": str(out.with_suffix(".json")),
        "problems": list(result.problems),
    }
    if plot:
        summary["plots"] = str(out.parent / f"{out.stem}_plots")
    write_csv(result.findings, out)
    write_json(result.findings, summary, out.with_suffix(".json"))
    if plot:
        by_id = {t.track_id: t for t in tracks}
        for rank, finding in enumerate(result.findings[:MAX_PLOTS], start=1):
            plot_finding(finding, by_id[finding.track_id], activations.get(finding.track_id),
                         result.grids.get(finding.track_id),
                         Path(summary["plots"]) / f"{rank:03d}-{finding.kind}-"
                                                  f"{finding.finding_id}.png")
    return summary
