"""Writers of analyses: JSON and JAMS (one file per track), Rekordbox XML and cue CSV (one
file per batch), PNG pictures (:mod:`edm.analyze.plot`).

:class:`AnalysisWriter` is what ``edm analyze`` runs: per-track files are written as each
track finishes (a batch stopped half way keeps what it wrote), batch files at :meth:`finish`.

Where files go (:func:`resolve_out`, :func:`output_names`)
---------------------------------------------------------
- ``--out`` is followed as given, or refused with the reason before any track is analysed:
  a name ending in ``/``, an existing folder or a name without an extension is a folder; a
  name with the format's extension is that one file (``result.json`` for one track,
  ``cues.csv``, ``library.xml``). A file name for several per-track files, or another
  extension (``--format csv --out cues.json``), is an :class:`OutputError`. Batch formats
  written into a folder take the default name there (``cues_dir/edm-cues.csv``).
- Per-track files never overwrite each other: each keeps the audio's path relative to the
  folder the batch's files share (``dir/a/loop.mp3`` and ``dir/b/loop.mp3`` give
  ``OUT/a/loop.json`` and ``OUT/b/loop.json``; one folder gives flat names); files that still
  clash (``loop.mp3`` beside ``loop.wav``) keep the audio extension (``loop.mp3.json``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from functools import partial
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

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
#: Extensions that make ``--out`` one file of the format (JAMS files are JSON too).
FILE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "json": (".json",), "jams": (".jams", ".json"), "rekordbox": (".xml",), "csv": (".csv",),
}


class OutputError(ValueError):
    """An output path that cannot hold what was asked for; the message says why and what to
    give instead."""


def resolve_out(fmt: str, out: str | Path | None, n_tracks: int) -> tuple[Path, bool]:
    """The path a batch of ``n_tracks`` goes to in ``fmt``, and whether it is a folder.

    >>> resolve_out("json", "result.json", 1), resolve_out("csv", "cues_dir/", 3)
    ((PosixPath('result.json'), False), (PosixPath('cues_dir/edm-cues.csv'), False))
    >>> resolve_out("json", None, 3)
    (PosixPath('edm-analysis'), True)
    """
    if out is None:
        return Path(DEFAULT_OUT[fmt]), fmt in PER_TRACK_FORMATS
    text, path = str(out), Path(out)
    folder = text.endswith(("/", os.sep)) or path.is_dir()
    suffix = path.suffix.lower()
    expected = " or ".join(FILE_SUFFIXES[fmt])
    if not folder and suffix and suffix not in FILE_SUFFIXES[fmt]:
        what = (f"{fmt} output is one {expected} file per track" if fmt in PER_TRACK_FORMATS
                else f"{fmt} output is one {expected} file")
        raise OutputError(f"--out {text}: {what}; name it {path.stem}{FILE_SUFFIXES[fmt][0]} "
                          f"or give a folder (end the name with /)")
    if not folder and not suffix and path.is_file() and fmt in PER_TRACK_FORMATS:
        raise OutputError(f"--out {text}: is a file, and {fmt} output is a folder of one "
                          f"{FILE_SUFFIXES[fmt][0]} file per track")
    if fmt in PER_TRACK_FORMATS:
        if folder or not suffix:
            return path, True
        if n_tracks > 1:
            raise OutputError(f"--out {text}: names one file, but {n_tracks} inputs give "
                              f"{n_tracks} {fmt} files; give a folder (--out {path.stem}/)")
        return path, False
    if folder or (not suffix and not path.is_file()):
        return path / DEFAULT_OUT[fmt], False
    return path, False


def output_names(paths: Sequence[str | Path]) -> dict[str, PurePath]:
    """Output name (no extension) of each audio file that exists, keyed by its resolved path:
    the path relative to the folder all of them share; names that still clash (``loop.mp3``
    and ``loop.wav``, or names differing only in case) keep the audio extension.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for name in ("a/loop.mp3", "b/loop.mp3", "b/solo.wav", "b/solo.flac"):
    ...         (Path(folder) / name).parent.mkdir(exist_ok=True)
    ...         (Path(folder) / name).touch()
    ...     names = output_names(sorted(Path(folder).rglob("*.*")))
    >>> sorted(str(name) for name in names.values())
    ['a/loop', 'b/loop', 'b/solo.flac', 'b/solo.wav']
    """
    files = sorted({Path(p).resolve() for p in paths if Path(p).is_file()})
    if not files:
        return {}
    root = Path(os.path.commonpath([file.parent for file in files]))
    names = {file: PurePath(file.relative_to(root).with_suffix("")) for file in files}
    clashes = Counter(str(name).casefold() for name in names.values())
    for file, name in names.items():
        if clashes[str(name).casefold()] > 1:
            names[file] = PurePath(file.relative_to(root))
    final = Counter(str(name).casefold() for name in names.values())
    if same := sorted(str(file) for file, name in names.items() if final[str(name).casefold()] > 1):
        raise OutputError(f"{same[0]} and {same[1]}: names differ only in case, so their "
                          "outputs would overwrite each other; rename one or analyse them apart")
    return {str(file): name for file, name in names.items()}


def _annotator(analysis: Analysis) -> dict[str, Any]:
    return {"name": "edm analyze", "model": analysis.model,
            "model_version": analysis.model_version, "backbone": analysis.backbone,
            "beat_source": analysis.extra.get("beat_source", "heads")}


def write_json(analysis: Analysis, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def write_jams(analysis: Analysis, path: str | Path) -> Path:
    """JAMS with the heads' probabilities as confidences and the model in the metadata."""
    from edm.data.jams_io import save_jams

    confidence = {task: partial(analysis.confidence_at, task) for task in ("beat", "boundary")}
    return save_jams(analysis.to_annotation(), path, confidence=confidence,
                     annotator=_annotator(analysis))


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
        Folder or file, followed as given (see the module docstring); None gives
        :data:`DEFAULT_OUT`. Raises :class:`OutputError` when it cannot hold the batch.
    inputs : sequence of paths, default=()
        The batch's audio files, known before the first track is analysed: they decide the
        per-track names (:func:`output_names`) and whether ``out`` may be one file.
    plot : bool, default=False
        Also write a PNG per track, named like its JSON, in ``out`` (folders) or beside it.
    replace_cues : bool, default=False
        Rekordbox: drop the tracks' own cues instead of keeping them.
    replace_grid : bool, default=False
        Rekordbox: write edm's grid over the DJ's (by default the DJ's grid is kept).
    base : path, default=None
        Rekordbox: the XML the tracks came from, updated instead of a new library.
    """

    def __init__(self, fmt: str, out: str | Path | None = None, *,
                 inputs: Sequence[str | Path] = (), plot: bool = False,
                 replace_cues: bool = False, replace_grid: bool = False,
                 base: str | Path | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        self.fmt = fmt
        self.out, self.out_is_folder = resolve_out(fmt, out, n_tracks=max(len(inputs), 1))
        self.names = output_names(inputs)
        self.plot = plot
        self.replace_cues = replace_cues
        self.replace_grid = replace_grid
        self.base = base
        #: What the Rekordbox write did (grid disagreements …); None for other formats.
        self.rekordbox: RekordboxWrite | None = None
        self.analyses: list[Analysis] = []

    @property
    def plot_dir(self) -> Path:
        return self.out if self.out_is_folder else self.out.parent

    def _name(self, analysis: Analysis) -> PurePath:
        path = Path(analysis.path)
        return self.names.get(str(path.resolve()), PurePath(path.stem))

    def track_path(self, analysis: Analysis) -> Path:
        """Where one track's JSON/JAMS goes."""
        if not self.out_is_folder:
            return self.out
        name = self._name(analysis)
        return self.out / name.with_name(f"{name.name}.{self.fmt}")

    def plot_path(self, analysis: Analysis) -> Path:
        if self.fmt in PER_TRACK_FORMATS and not self.out_is_folder:
            return self.out.with_suffix(".png")
        name = self._name(analysis)
        return self.plot_dir / name.with_name(f"{name.name}.png")

    def add(self, analysis: Analysis) -> None:
        """Write one track's own files now; keep it for the batch files."""
        if self.fmt in PER_TRACK_FORMATS and not self.out_is_folder and self.analyses:
            raise OutputError(f"--out {self.out}: names one file, but a second track came; "
                              "give a folder")
        self.analyses.append(analysis)
        if self.fmt == "json":
            write_json(analysis, self.track_path(analysis))
        elif self.fmt == "jams":
            write_jams(analysis, self.track_path(analysis))
        if self.plot:
            from edm.analyze.plot import plot_analysis

            plot_analysis(analysis, self.plot_path(analysis))

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
