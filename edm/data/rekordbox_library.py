"""A DJ's whole Rekordbox library as annotations: USB exports and Rekordbox 6/7 ``master.db``.

Both hold, per track, what the XML export leaves out: Rekordbox's *phrase analysis* (``PSSI``),
i.e. section boundaries with labels for every analysed track. Each track becomes a Tier 2
annotation with

- the beat grid from the ANLZ ``PQTZ`` beats (every beat; see :mod:`edm.data.rekordbox_anlz`),
- the memory cues, hot cues and loops of the ANLZ cue lists, with names and colours,
- the phrases as labelled sections; the track's ``provenance`` names the mood and each
  phrase's original Rekordbox label (``phrase_kinds``, one per section, ``|``-separated) and
  says ``sections_complete: "true"``: Rekordbox labels *every* phrase of the track, so its
  boundaries are complete labels (see :mod:`edm.heads.targets`), unlike cues;
- ``source`` ``rekordbox-usb`` or ``rekordbox-db`` and, in ``provenance``, where each kind of
  label came from (``grid_source``, ``cue_source``, ``section_source``).

:func:`save_annotations` writes them into an annotation folder and merges a track that is
already there from another source (an XML import of the same library): one file per track,
cues merged with :func:`~edm.data.rekordbox.merge_cues` (no duplicates), the grid and sections
of whichever source has them.

``master.db`` is read with pyrekordbox (SQLCipher through ``sqlcipher3``); a database saved
without encryption (as pyrekordbox's test data) is read directly. pyrekordbox is never given an
XML file (its XML reader is not hardened): not the library's ``masterPlaylists6.xml`` either.
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edm.data.rekordbox import RekordboxError, RekordboxLibrary, _hash_file, merge_cues
from edm.data.rekordbox_anlz import AnlzAnalysis, AnlzError, read_anlz
from edm.data.rekordbox_pdb import PdbError, read_export_pdb
from edm.data.schema import (
    AnnotationError,
    Metadata,
    Tier,
    TrackAnnotation,
    TrackIdentity,
    annotation_filename,
    iter_annotation_files,
    load_annotation,
    save_annotation,
)

USB_SOURCE = "rekordbox-usb"
DB_SOURCE = "rekordbox-db"
_SQLITE_MAGIC = b"SQLite format 3\x00"


# ---------------------------------------------------------------------------------------------
# One track


def _annotation(
    *, title: str, artist: str, genre: str, key: str, bpm: float | None,
    duration_s: float | None, path: str | None, source_id: str, anlz: AnlzAnalysis | None,
    tier: Tier, source: str, provenance: dict[str, str],
) -> TrackAnnotation:
    provenance = dict(provenance)
    grid, cues, sections = [], [], []
    if anlz is not None:
        provenance["anlz"] = str(anlz.path)
        grid, cues, sections = anlz.grid(), anlz.cues, anlz.sections(duration_s)
        if grid:
            provenance["grid_source"] = "anlz-pqtz"
        if anlz.cue_tag:
            provenance["cue_source"] = f"anlz-{anlz.cue_tag.lower()}"
        if sections:
            provenance.update(section_source="anlz-pssi", sections_complete="true",
                              phrase_mood=anlz.mood or "",
                              phrase_kinds="|".join(p.label for p in anlz.phrases))
    return TrackAnnotation(
        track=TrackIdentity(path=path, duration_s=duration_s or None, title=title,
                            artist=artist, genre=genre, source_id=source_id),
        grid=grid, cues=cues, sections=sections, key=key or None, bpm=bpm,
        metadata=Metadata(tier=tier, confidence=1.0 if tier == Tier.VERIFIED else 0.5,
                          source=source, provenance=provenance),
    )


def _anlz_or_problem(path: Path | None, label: str, problems: list[str]) -> AnlzAnalysis | None:
    if path is None:
        return None
    if not path.is_file():
        problems.append(f"{label}: analysis file {path} not found: imported without grid, "
                        "cues or phrases")
        return None
    try:
        return read_anlz(path)
    except AnlzError as error:
        problems.append(f"{label}: {error}")
        return None


def _locate_audio(
    library: RekordboxLibrary, hash_audio: bool, progress: Callable[[int, int], None] | None,
) -> None:
    tracks = []
    for done, annotation in enumerate(library.tracks, start=1):
        if progress is not None:
            progress(done, len(library.tracks))
        path = annotation.track.path
        if path and os.path.isfile(path):
            library.audio_found += 1
            if hash_audio:
                try:
                    digest = _hash_file(Path(path))
                except ValueError as error:
                    library.problems.append(f"{path}: {error}")
                else:
                    track = annotation.track.model_copy(update={"content_hash": digest})
                    annotation = annotation.model_copy(update={"track": track})
        tracks.append(annotation)
    library.tracks = tracks


# ---------------------------------------------------------------------------------------------
# USB export


def export_root(path: str | Path) -> Path:
    """The folder holding ``PIONEER/`` for a USB stick, its ``PIONEER`` folder or export.pdb."""
    path = Path(path)
    if path.name == "export.pdb":
        return path.parents[2]
    if path.name.upper() == "PIONEER":
        return path.parent
    return path


def is_usb_export(path: str | Path) -> bool:
    root = export_root(path)
    return (root / "PIONEER" / "rekordbox" / "export.pdb").is_file()


def read_usb_export(
    path: str | Path, *, tier: int | Tier = Tier.DJ_SOFTWARE, hash_audio: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> RekordboxLibrary:
    """Read a Rekordbox USB export (``/Volumes/USB``, its ``PIONEER`` folder or export.pdb).

    Raises :class:`~edm.data.rekordbox.RekordboxError` when there is no readable export.pdb;
    a track whose analysis file is missing or damaged is imported without those labels and
    reported in ``problems``.
    """
    root = export_root(path)
    pdb = root / "PIONEER" / "rekordbox" / "export.pdb"
    if not pdb.is_file():
        raise RekordboxError(f"{path}: no Rekordbox USB export here ({pdb} not found)")
    try:
        rows = read_export_pdb(pdb)
    except PdbError as error:
        raise RekordboxError(str(error)) from error
    library = RekordboxLibrary(tracks=[], path=pdb, tracks_in_file=len(rows))
    tier = Tier(tier)
    for row in rows:
        label = f"{pdb}: track {row.track_id} ({row.title or 'untitled'})"
        dat = root / row.anlz_path.lstrip("/") if row.anlz_path else None
        anlz = _anlz_or_problem(dat, label, library.problems)
        library.tracks.append(_annotation(
            title=row.title, artist=row.artist, genre=row.genre, key=row.key, bpm=row.bpm,
            duration_s=row.duration_s, path=str(root / row.file_path.lstrip("/")),
            source_id=str(row.track_id), anlz=anlz, tier=tier, source=USB_SOURCE,
            provenance={"pdb": str(pdb.absolute()), "track_id": str(row.track_id)},
        ))
    _locate_audio(library, hash_audio, progress)
    return library


# ---------------------------------------------------------------------------------------------
# master.db


def default_master_db() -> Path:
    """Where Rekordbox 6/7 keeps ``master.db`` on this platform."""
    system = platform.system()
    if system == "Windows":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / (
            "Pioneer/rekordbox/master.db")
    if system == "Darwin":
        return Path.home() / "Library" / "Pioneer" / "rekordbox" / "master.db"
    return Path.home() / ".Pioneer" / "rekordbox" / "master.db"  # no Rekordbox on Linux


def _builtin_key() -> str | None:
    """The master.db key pyrekordbox ships (the same for Rekordbox 6 and 7 so far)."""
    try:
        from pyrekordbox.masterdb.database import BLOB
        from pyrekordbox.utils import deobfuscate
    except ImportError:  # pragma: no cover - a pyrekordbox that moved it
        return None
    return deobfuscate(BLOB)


def _check_unlocks(path: Path, key: str) -> None:
    """Open ``path`` with ``key`` once, quietly, so a wrong key or a lock is one clear line
    (pyrekordbox would fail later, with SQLCipher's log on stderr)."""
    try:
        import sqlcipher3
    except ImportError as error:
        raise RekordboxError(
            f"{path}: the database is encrypted and sqlcipher3 is not installed "
            "(pip install sqlcipher3-wheels)") from error
    connection = sqlcipher3.connect(str(path), timeout=1.0)
    try:
        connection.execute("PRAGMA cipher_log_level = NONE")
        connection.execute(f"PRAGMA key = '{key}'")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError as error:
        raise _db_error(path, error) from error
    finally:
        connection.close()


def _open_master_db(path: Path, key: str | None) -> Any:
    from edm.data.rekordbox_anlz import _quiet_pyrekordbox

    _quiet_pyrekordbox()
    from pyrekordbox import MasterDatabase

    with path.open("rb") as stream:
        plain = stream.read(16) == _SQLITE_MAGIC
    if not plain:
        key = key or _builtin_key()
        if not key:
            raise RekordboxError(f"{path}: the database key was not found (pass it with "
                                 "--db-key)")
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise RekordboxError(f"{path}: --db-key must be 64 hexadecimal digits")
        _check_unlocks(path, key)
    # db_dir: an empty folder, so pyrekordbox does not parse the library's masterPlaylists6.xml
    # with its own (not hardened) XML reader; edm needs no playlists and finds share/ itself.
    try:
        with tempfile.TemporaryDirectory() as empty:
            return MasterDatabase(path, db_dir=empty, key=key or "", unlock=not plain)
    except ValueError as error:  # pyrekordbox: "The provided database key doesn't look valid"
        raise RekordboxError(f"{path}: {error}") from error


def _db_error(path: Path, error: Exception) -> RekordboxError:
    text = str(error).lower()
    if "locked" in text or "busy" in text:
        return RekordboxError(f"{path}: the database is locked by another program "
                              "(close Rekordbox and try again)")
    if "not a database" in text or "encrypt" in text or "cipher" in text:
        return RekordboxError(f"{path}: cannot decrypt the database: the key does not open "
                              "this file (pass the right one with --db-key)")
    return RekordboxError(f"{path}: cannot read the Rekordbox database "
                          f"({type(error).__name__}: {str(error).splitlines()[0][:100]})")


def read_master_db(
    path: str | Path | None = None, *, key: str | None = None,
    tier: int | Tier = Tier.DJ_SOFTWARE, hash_audio: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> RekordboxLibrary:
    """Read a Rekordbox 6/7 ``master.db`` and the analysis files in its ``share/`` folder.

    ``path`` defaults to :func:`default_master_db`; ``key`` to the one pyrekordbox knows.
    Raises :class:`~edm.data.rekordbox.RekordboxError` in one line when the file is missing,
    locked (Rekordbox is running), or cannot be decrypted.
    """
    path = Path(path) if path else default_master_db()
    if not path.is_file():
        raise RekordboxError(f"{path}: no Rekordbox database here (give its path: "
                             "--rekordbox-db PATH/master.db)")
    database = _open_master_db(path, key)
    share = path.parent / "share"
    tier = Tier(tier)
    library = RekordboxLibrary(tracks=[], path=path)
    try:
        contents = list(database.get_content())
        library.tracks_in_file = len(contents)
        for content in contents:
            title = content.Title or ""
            label = f"{path}: track {content.ID} ({title or 'untitled'})"
            anlz_path = content.AnalysisDataPath
            dat = share / anlz_path.lstrip("/") if anlz_path else None
            anlz = _anlz_or_problem(dat, label, library.problems)
            bpm = content.BPM / 100 if content.BPM else None
            library.tracks.append(_annotation(
                title=title, artist=content.ArtistName or "", genre=content.GenreName or "",
                key=content.KeyName or "", bpm=bpm, duration_s=float(content.Length or 0),
                path=content.FolderPath or None, source_id=str(content.ID), anlz=anlz,
                tier=tier, source=DB_SOURCE,
                provenance={"db": str(path.absolute()), "track_id": str(content.ID)},
            ))
    except RekordboxError:
        raise
    except Exception as error:  # sqlalchemy / sqlcipher errors on the first query
        raise _db_error(path, error) from error
    finally:
        database.close()
    _locate_audio(library, hash_audio, progress)
    return library


# ---------------------------------------------------------------------------------------------
# Several sources for one track


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def same_track(a: TrackAnnotation, b: TrackAnnotation) -> bool:
    """Two annotations of one recording: same content hash, or (without hashes on both) the
    same title and artist and durations within 2 s."""
    if a.track.content_hash and b.track.content_hash:
        return a.track.content_hash == b.track.content_hash
    if not a.track.title or _norm(a.track.title) != _norm(b.track.title):
        return False
    if _norm(a.track.artist) != _norm(b.track.artist):
        return False
    da, db = a.track.duration_s, b.track.duration_s
    return da is None or db is None or abs(da - db) <= 2.0


def sources_of(annotation: TrackAnnotation) -> set[str]:
    return set(annotation.metadata.source.split("+"))


def merge_annotations(first: TrackAnnotation, second: TrackAnnotation) -> TrackAnnotation:
    """One annotation from two sources of the same track.

    ``first``'s grid, sections, key and BPM win where it has them; cues are merged
    (:func:`~edm.data.rekordbox.merge_cues`: ``second``'s cues within 10 ms of one of
    ``first``'s, or on a hot-cue slot it uses, are the same cue); the sources are joined with
    ``+`` and ``second``'s provenance is kept under keys prefixed with its source. Merging the
    same source twice changes nothing.
    """
    added, _ = merge_cues(first.cues, second.cues)
    provenance = dict(first.metadata.provenance)
    prefix = second.metadata.source
    for name, value in second.metadata.provenance.items():
        if provenance.get(name, value) == value:
            provenance[name] = value
        elif not name.startswith(f"{prefix}:"):
            provenance[f"{prefix}:{name}"] = value
        else:
            provenance[name] = value
    sources = first.metadata.source.split("+")
    sources += [s for s in second.metadata.source.split("+") if s not in sources]
    identity = first.track.model_copy(update={
        name: getattr(second.track, name) for name in ("path", "content_hash", "duration_s")
        if getattr(first.track, name) is None
    })
    return TrackAnnotation(
        track=identity, grid=first.grid or second.grid, cues=[*first.cues, *added],
        sections=first.sections or second.sections, key=first.key or second.key,
        bpm=first.bpm or second.bpm,
        energy_rating=first.energy_rating if first.energy_rating is not None
        else second.energy_rating,
        metadata=Metadata(
            tier=min(first.metadata.tier, second.metadata.tier),
            confidence=max(first.metadata.confidence, second.metadata.confidence),
            source="+".join(sources), version=first.metadata.version,
            provenance=provenance,
        ),
    )


@dataclass
class SaveReport:
    """What :func:`save_annotations` did with each annotation."""

    written: int = 0
    merged: int = 0
    kept_edited: list[str] = field(default_factory=list)


def save_annotations(
    annotations: Iterable[TrackAnnotation], out_dir: str | Path, *, overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SaveReport:
    """Write one YAML per track into ``out_dir``, merging with what is there.

    A track already in the folder (same file name, or :func:`same_track`) from *other*
    sources is merged (:func:`merge_annotations`, the file's labels first); one from the same
    source only is replaced. A file edited since import (``version > 1``, e.g. by an audit
    fix, or labels that did not come from Rekordbox) is kept unless ``overwrite``. The same
    audio twice in one import keeps both.
    """
    annotations = list(annotations)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    existing: dict[Path, TrackAnnotation] = {}
    for file in iter_annotation_files(out_dir):
        try:
            existing[file] = load_annotation(file)
        except AnnotationError:
            continue  # a broken file is not worth keeping over a fresh import
    by_hash = {a.track.content_hash: f for f, a in existing.items() if a.track.content_hash}
    by_title: dict[str, list[Path]] = {}
    for file, annotation in existing.items():
        by_title.setdefault(_norm(annotation.track.title), []).append(file)
    report = SaveReport()
    used: set[str] = set()
    for done, annotation in enumerate(annotations, start=1):
        if progress is not None:
            progress(done, len(annotations))
        name = annotation_filename(annotation)
        stem, counter = name.removesuffix(".yaml"), 2
        while name in used:  # the same audio twice in one import: keep both
            name = f"{stem}.{counter}.yaml"
            counter += 1
        used.add(name)
        target = out_dir / name
        match = target if target in existing else None
        if match is None and annotation.track.content_hash in by_hash:
            match = by_hash[annotation.track.content_hash]
        if match is None:
            match = next((f for f in by_title.get(_norm(annotation.track.title), [])
                          if f.name not in used and same_track(existing[f], annotation)
                          and not sources_of(existing[f]) <= sources_of(annotation)), None)
        if match is not None:
            old = existing[match]
            edited = old.metadata.version > 1 or not all(
                source.startswith("rekordbox-") for source in sources_of(old))
            if edited and not overwrite:
                report.kept_edited.append(str(match))
                used.add(match.name)
                continue
            if not edited and not sources_of(old) <= sources_of(annotation):
                annotation = merge_annotations(old, annotation)
                report.merged += 1
            target = match
            used.add(match.name)
        save_annotation(annotation, target)
        report.written += 1
    return report


def read_any_library(
    source: Path | None, *, rekordbox_db: str | None = None, db_key: str | None = None,
    audio_root: Path | None = None, playlist: str | None = None,
    tier: int | Tier = Tier.DJ_SOFTWARE, hash_audio: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> RekordboxLibrary:
    """``edm data import``'s reader: ``rekordbox_db`` ("" = the default master.db), else a
    USB export folder (or its export.pdb), else a Rekordbox XML file."""
    from edm.data.rekordbox import read_rekordbox_xml

    if rekordbox_db is not None:
        return read_master_db(rekordbox_db or None, key=db_key, tier=tier,
                              hash_audio=hash_audio, progress=progress)
    if source is None:
        raise RekordboxError("give a Rekordbox XML, a USB export folder or --rekordbox-db")
    if source.is_dir() or source.name == "export.pdb":
        return read_usb_export(source, tier=tier, hash_audio=hash_audio, progress=progress)
    return read_rekordbox_xml(source, audio_root=audio_root, playlist=playlist, tier=tier,
                              hash_audio=hash_audio, progress=progress)
