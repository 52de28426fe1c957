"""``edm data import CHART``: a rhythm-game chart or LMMS project to one Tier-1 annotation.

Called from ``edm data import`` when the file is a chart (``.osu``, ``.sm``, ``.ssc``,
``.qua``) or an LMMS project (``.mmp``, ``.mmpz``) instead of a Rekordbox XML.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edm.data.schema import annotation_filename, save_annotation
from edm.data.truth import TRUTH_SUFFIXES, TruthError, read_truth

__all__ = ["TRUTH_SUFFIXES", "import_truth_file"]


def import_truth_file(path: Path, out_dir: Path, *, as_json: bool) -> None:
    """Write the annotation of ``path`` into ``out_dir`` and print a one-line summary."""
    try:
        annotation = read_truth(path)
    except TruthError as error:
        raise click.ClickException(str(error)) from error
    target = save_annotation(annotation, out_dir / annotation_filename(annotation))
    summary = {
        "file": str(path), "out": str(target), "source": annotation.metadata.source,
        "audio": annotation.track.path, "duration_s": annotation.track.duration_s,
        "tempo_segments": len(annotation.grid), "bpm": annotation.bpm,
        "sections": len(annotation.sections), "cues": len(annotation.cues),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    audio = annotation.track.path or "no audio found (grid runs to the last note)"
    click.echo(f"{path}: {len(annotation.grid)} tempo segment(s), {annotation.bpm:g} BPM, "
               f"{len(annotation.sections)} section(s), {len(annotation.cues)} cue(s); "
               f"audio {audio}; written to {target}")
