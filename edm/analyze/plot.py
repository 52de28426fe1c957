"""A picture of an analysis that a DJ can read at a glance (PNG, matplotlib's Agg backend).

Top lane: the track's band energies as a mirrored waveform (bass below the line, mids and
highs above), so drops and breakdowns show their shape. Behind it, sections filled with a
colour for their energy (dark blue quiet → red loud), named at the top. Bar lines every bar,
stronger every 8 bars (phrases), and a ruler in minutes:seconds. Bottom lane: the section
energy as a step curve with the BPM and the model in the title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edm.analyze.result import CUE_COLORS, Analysis
from edm.text import plural


def _mmss(seconds: float, _pos: object = None) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def plot_analysis(analysis: Analysis, path: str | Path, *, width_in: float = 16.0) -> Path:
    """Write ``analysis`` as a PNG to ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = analysis.duration_s
    cmap = plt.get_cmap("turbo")
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(width_in, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]},
    )
    fig.patch.set_facecolor("#111318")
    for ax in (top, bottom):
        ax.set_facecolor("#111318")
        ax.tick_params(colors="#c8c8c8", labelsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)

    energies = [s.energy.overall if s.energy and s.energy.overall is not None else 0.5
                for s in analysis.sections]
    for section, energy in zip(analysis.sections, energies, strict=True):
        colour = cmap(0.15 + 0.8 * energy)
        top.axvspan(section.start_s, section.end_s, color=colour, alpha=0.35, lw=0)
        bottom.axvspan(section.start_s, section.end_s, color=colour, alpha=0.35, lw=0)
        label = section.label or ""
        marker = CUE_COLORS.get(label, "#00FF00")
        top.axvline(section.start_s, color=marker, lw=1.6, alpha=0.95)
        top.text(section.start_s + 0.004 * duration, 1.04, label.upper() or "•",
                 color=marker, fontsize=8, fontweight="bold", va="bottom",
                 transform=top.get_xaxis_transform(), clip_on=False)

    env = analysis.extra.get("envelope") or {}
    if "rms" in env:
        rate = float(env["frames_per_second"])
        t = np.arange(len(env["rms"])) / rate

        def lane(name: str) -> np.ndarray:
            # Each band on its own scale (99th percentile = 0.95), so a quiet band (highs)
            # still shows its shape next to a loud one (bass).
            values = np.asarray(env.get(name, np.zeros_like(t)), float)
            top = max(float(np.percentile(values, 99)), 1e-9)
            return 0.95 * np.clip(values / top, 0.0, 1.05)

        top.fill_between(t, 0, -lane("bass"), color="#3d7bff", lw=0, label="bass")
        top.fill_between(t, 0, lane("mid"), color="#ffb02e", lw=0, label="mid")
        top.fill_between(t, 0, 0.6 * lane("high"), color="#f4f4f4", lw=0, alpha=0.85,
                         label="high")
        top.legend(loc="lower right", fontsize=7, frameon=False, labelcolor="#c8c8c8", ncol=3)
    top.set_ylim(-1.05, 1.05)
    top.set_yticks([])

    downbeats = analysis.grid.downbeats
    for index, time_s in enumerate(downbeats):
        phrase = index % 8 == 0
        top.axvline(time_s, color="#ffffff", lw=0.6 if phrase else 0.3,
                    alpha=0.45 if phrase else 0.12, zorder=0)

    starts = [s.start_s for s in analysis.sections] + [duration]
    bottom.step(starts, [*energies, energies[-1] if energies else 0.0], where="post",
                color="#ff5a36", lw=2)
    bottom.set_ylim(0, 1.1)
    bottom.set_ylabel("energy", color="#c8c8c8", fontsize=8)
    bottom.set_xlim(0, duration)
    bottom.xaxis.set_major_formatter(FuncFormatter(_mmss))
    bottom.xaxis.set_major_locator(MultipleLocator(30 if duration > 240 else 15))

    tempo = " → ".join(f"{seg.bpm:g}" for seg in analysis.grid.segments[:4])
    fig.suptitle(
        f"{Path(analysis.path).name}    {tempo} BPM    {plural(len(analysis.sections), 'section')}"
        "    "
        f"model: {analysis.model}",
        color="#f0f0f0", fontsize=11, x=0.01, ha="left",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110, facecolor=fig.get_facecolor())
    plt.close(fig)
    return path
