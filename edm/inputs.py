"""Which audio a command's INPUTS name, and which audio is long enough: for ``edm embed`` and
``edm analyze`` alike.

:func:`find_inputs` accepts audio files, folders of audio (searched recursively, hidden files
skipped), annotation folders (YAML files naming their audio in ``track.path``) and Rekordbox
XML exports; each track comes with the annotation it came from (None for plain audio), so a
Rekordbox write-back keeps the DJ's own labels. An unusable input is one line in
``problems``; label problems a reader repaired are ``warnings`` (they stop nothing).

:func:`check_audio` is the one rule for decoded audio: at least :data:`MIN_DURATION_S` long
and not silent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edm.audio import AUDIO_EXTENSIONS, AudioError
from edm.data.schema import TrackAnnotation

#: Shorter audio is rejected: four bars at 120 BPM are the least a beat grid and a section
#: need, and a few seconds in a DJ library are a sample or a broken export.
MIN_DURATION_S = 8.0
#: Audio never above this level (-80 dBFS) is silence.
SILENCE_LEVEL = 1e-4


def check_audio(
    audio: np.ndarray, sample_rate: int, path: str | Path, *,
    min_duration_s: float = MIN_DURATION_S,
) -> float:
    """Duration (s) of decoded audio; raises :class:`AudioError` naming ``path`` when it is
    shorter than ``min_duration_s`` or silent throughout.

    >>> check_audio(np.full(16000, 0.1, np.float32), 8000, "a.wav", min_duration_s=1.0)
    2.0
    >>> check_audio(np.zeros(16000, np.float32), 8000, "a.wav", min_duration_s=1.0)
    Traceback (most recent call last):
    ...
    edm.audio.AudioError: a.wav: silent (no sample above -80 dBFS)
    """
    duration_s = len(audio) / sample_rate
    if duration_s < min_duration_s:
        raise AudioError(f"{path}: too short ({duration_s:.1f} s < {min_duration_s:g} s)")
    # Two reductions, not abs(): no temporary the size of the track. fmax/fmin skip NaN, as
    # the comparison of abs() with the level did.
    peak = np.fmax(np.fmax.reduce(audio), -np.fmin.reduce(audio)) if len(audio) else 0.0
    if not peak > SILENCE_LEVEL:
        raise AudioError(f"{path}: silent (no sample above -80 dBFS)")
    return duration_s


@dataclass(frozen=True)
class Problem:
    """An input that gave no track: the input as given, and a one-line reason naming it."""

    path: str
    reason: str


@dataclass
class Inputs:
    """What :func:`find_inputs` found: unique tracks in input order, with their annotations."""

    tracks: list[tuple[Path, TrackAnnotation | None]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: The first Rekordbox XML among the inputs (the library a write-back updates).
    xml: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [path for path, _ in self.tracks]


def _audio_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
                  and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def find_inputs(inputs: Iterable[str | Path], *, audio_root: str | Path | None = None) -> Inputs:
    """Tracks named by ``inputs`` (see the module docstring); ``audio_root`` is where a
    Rekordbox XML's audio lives on this machine.

    A missing or undecodable audio file is kept: it fails later with the decoder's message.
    """
    from edm.data.schema import load_annotations

    found = Inputs()

    def add(path: Path, annotation: TrackAnnotation | None) -> None:
        found.tracks.append((path, annotation))

    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            audio = _audio_in(path)
            if audio:
                for file in audio:
                    add(file, None)
            elif any(path.glob("*.yaml")):
                annotations, errors = load_annotations(path)
                found.problems.extend(Problem(str(path), str(e).splitlines()[0]) for e in errors)
                for annotation in annotations:
                    if not annotation.track.path:
                        found.problems.append(Problem(str(path), (
                            f"{path}: annotation {annotation.track_id} has no track.path")))
                        continue
                    file = Path(annotation.track.path).expanduser()
                    add(file if file.is_absolute() else path / file, annotation)
            else:
                found.problems.append(Problem(str(path), f"{path}: no audio or annotation files"))
        elif path.suffix.lower() == ".xml" and path.is_file():
            # Imported here: the XML reader costs more to import than an audio input needs.
            from edm.data.rekordbox import RekordboxError, read_rekordbox_xml

            try:
                library = read_rekordbox_xml(path, audio_root=audio_root, hash_audio=False)
            except RekordboxError as error:
                found.problems.append(Problem(str(path), str(error).splitlines()[0]))
                continue
            found.xml = found.xml or path
            found.warnings.extend(library.problems)
            for track in library.tracks:
                if track.track.path:
                    add(Path(track.track.path), track)
                else:
                    found.problems.append(Problem(str(path), (
                        f"{path}: track {track.track_id} has no Location")))
        elif path.is_file() or path.suffix.lower() in AUDIO_EXTENSIONS:
            add(path, None)
        else:
            found.problems.append(Problem(str(path), (
                f"{path}: not found, or not audio, a folder or a Rekordbox .xml")))
    unique: dict[Path, tuple[Path, TrackAnnotation | None]] = {}
    for file, annotation in found.tracks:
        unique.setdefault(file.resolve() if file.exists() else file, (file, annotation))
    found.tracks = [(key, annotation) for key, (_, annotation) in unique.items()]
    return found
