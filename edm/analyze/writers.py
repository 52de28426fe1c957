"""Writers of analyses: JSON and JAMS (one file per track), Rekordbox XML and cue CSV (one
file per batch), PNG pictures (:mod:`edm.analyze.plot`).

:class:`AnalysisWriter` is what ``edm analyze`` runs: per-track files are written as each
track finishes (a batch stopped half way keeps what it wrote), batch files at :meth:`finish`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edm.analyze.result import Analysis

if TYPE_CHECKING:
    from edm.data.rekordbox import RekordboxWrite

#: Output formats; the first is the default.
FORMATS: tuple[str, ...] = ("json", "jams", "rekordbox", "csv")
#: Formats written as one file per track into a folder (the others: one file per batch).
PER_TRACK_FORMATS: tuple[str, ...] = ("json", "jams")
#: Default output per format: a folder of one file per track, or one file for the batch.
DEFAULT_OUT: dict[str, str] = {
    "json": "edm-analysis", "jams": "edm-analysis", "rekordbox": "edm-analysis.xml",
    "csv": "edm-cues.csv",
}

def output_name(analysis: Analysis, fmt: str) -> str:
    """File name of one track's output: ``<audio stem>.json`` / ``.jams``."""
    return f"{Path(analysis.path).stem}.{fmt}"


def write_json(analysis: Analysis, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def write_jams(analysis: Analysis, path: str | Path) -> Path:
    from edm.data.jams_io import save_jams

    return save_jams(analysis.to_annotation(), path)


def write_rekordbox(
    analyses: Sequence[Analysis], path: str | Path, *, replace_cues: bool = False,
    replace_grid: bool = False, base: str | Path | None = None,
) -> RekordboxWrite:
    """A Rekordbox XML with edm's grid and section cues for every track.

    With ``base`` (the XML the tracks came from) that library is updated without damage:
    the DJ's grid is kept unless ``replace_grid``, section cues go on its downbeats and are
    merged with the DJ's own (dropped first with ``replace_cues``); see
    :func:`edm.data.rekordbox.write_back_xml`.
    """
    from edm.data.rekordbox import write_back_xml

    annotations = [a.to_annotation(keep_user_cues=False) for a in analyses]
    return write_back_xml(annotations, path, base=base, replace_grid=replace_grid,
                          replace_cues=replace_cues)


def write_csv(analyses: Sequence[Analysis], path: str | Path) -> Path:
    """One row per section cue (see :mod:`edm.data.csv_io` for columns)."""
    from edm.data.csv_io import write_cue_csv

    write_cue_csv([a.to_annotation(keep_user_cues=False) for a in analyses], path)
    return Path(path)


class AnalysisWriter:
    """Write a batch of analyses in one format, with an optional PNG per track.

    Parameters
    ----------
    fmt : {"json", "jams", "rekordbox", "csv"}
    out : path, default=None
        Folder (json, jams) or file (rekordbox, csv); None gives :data:`DEFAULT_OUT`.
    plot : bool, default=False
        Also write ``<stem>.png`` per track, in ``out`` (folders) or beside it (files).
    replace_cues : bool, default=False
        Rekordbox: drop the tracks' own cues instead of keeping them.
    replace_grid : bool, default=False
        Rekordbox: write edm's grid over the DJ's (by default the DJ's grid is kept).
    base : path, default=None
        Rekordbox: the XML the tracks came from, updated instead of a new library.
    """

    def __init__(self, fmt: str, out: str | Path | None = None, *, plot: bool = False,
                 replace_cues: bool = False, replace_grid: bool = False,
                 base: str | Path | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        self.fmt = fmt
        self.out = Path(out) if out is not None else Path(DEFAULT_OUT[fmt])
        self.plot = plot
        self.replace_cues = replace_cues
        self.replace_grid = replace_grid
        self.base = base
        #: What the Rekordbox write did (grid disagreements …); None for other formats.
        self.rekordbox: RekordboxWrite | None = None
        self.analyses: list[Analysis] = []

    @property
    def plot_dir(self) -> Path:
        return self.out if self.fmt in PER_TRACK_FORMATS else self.out.parent

    def add(self, analysis: Analysis) -> None:
        """Write one track's own files now; keep it for the batch files."""
        self.analyses.append(analysis)
        if self.fmt == "json":
            write_json(analysis, self.out / output_name(analysis, "json"))
        elif self.fmt == "jams":
            write_jams(analysis, self.out / output_name(analysis, "jams"))
        if self.plot:
            from edm.analyze.plot import plot_analysis

            plot_analysis(analysis, self.plot_dir / output_name(analysis, "png"))

    def finish(self) -> None:
        """Write the batch files (Rekordbox XML, cue CSV); nothing when no track was added."""
        if not self.analyses:
            return
        if self.fmt == "rekordbox":
            self.rekordbox = write_rekordbox(self.analyses, self.out,
                                             replace_cues=self.replace_cues,
                                             replace_grid=self.replace_grid, base=self.base)
        elif self.fmt == "csv":
            write_csv(self.analyses, self.out)
