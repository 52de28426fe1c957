"""Ground-truth files that state the grid themselves: rhythm-game charts and LMMS projects.

:func:`read_truth` turns one such file into a Tier-1 annotation of its audio: a chart's
audio is the file it names; an LMMS project's audio is its render, a file with the same stem
next to it (``song.mmpz`` → ``song.wav``/``.flac``/``.ogg``/``.mp3``). When the audio is
there, its length and content hash go into the annotation (so ``edm embed`` and
``edm evaluate`` find it); without it the grid runs to the chart's last note or the
project's last clip.
"""

from __future__ import annotations

from pathlib import Path

from edm.audio import AudioError, audio_info, content_hash
from edm.data.charts import CHART_SUFFIXES, ChartError, read_chart
from edm.data.lmms import LMMS_SUFFIXES, LmmsError, read_lmms
from edm.data.schema import TrackAnnotation, TrackIdentity

TRUTH_SUFFIXES = CHART_SUFFIXES + LMMS_SUFFIXES
RENDER_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class TruthError(ValueError):
    """A chart, project or its audio that cannot be read; names the file and the problem."""


def render_path(project: str | Path) -> Path | None:
    """The render next to an LMMS project (same stem), if there is one."""
    project = Path(project)
    for suffix in RENDER_SUFFIXES:
        candidate = project.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def read_truth(path: str | Path, *, offset_s: float = 0.0, audio: str | Path | None = None
               ) -> TrackAnnotation:
    """A chart or LMMS project as a Tier-1 annotation of its audio (see the module doc).

    ``offset_s`` is added to every chart time (a decoder's or chart family's lag);
    ``audio`` overrides where the audio is.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in LMMS_SUFFIXES:
            source = read_lmms(path)
            audio_path = Path(audio) if audio else render_path(path)
        elif suffix in CHART_SUFFIXES:
            source = read_chart(path, offset_s=offset_s)
            audio_path = Path(audio) if audio else source.audio_path()
        else:
            raise TruthError(f"{path}: not a chart or LMMS project "
                             f"(expected one of {', '.join(TRUTH_SUFFIXES)})")
    except (ChartError, LmmsError) as error:
        raise TruthError(str(error)) from error
    if audio_path is None or not audio_path.is_file():
        return source.to_annotation()
    try:
        duration = audio_info(audio_path).duration_s
        digest = content_hash(audio_path)
    except AudioError as error:
        raise TruthError(f"{path}: its audio {audio_path} cannot be read ({error})") from error
    annotation = source.to_annotation(duration_s=duration, audio_path=str(audio_path.resolve()))
    track = annotation.track.model_dump()
    track["content_hash"] = digest
    return annotation.model_copy(update={"track": TrackIdentity(**track)})
