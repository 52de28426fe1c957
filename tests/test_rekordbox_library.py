"""USB exports (export.pdb + ANLZ) and Rekordbox 6/7 master.db as annotations (issue 16, item 3).

Against pyrekordbox's real test files (tests/data/pyrekordbox/SOURCES.md), plus an EXT file
and an encrypted database the tests build from them.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edm.cli import main
from edm.data.rekordbox import RekordboxError, read_rekordbox_xml
from edm.data.rekordbox_anlz import grid_from_beats, read_anlz
from edm.data.rekordbox_library import (
    merge_annotations,
    read_master_db,
    read_usb_export,
    save_annotations,
)
from edm.data.rekordbox_pdb import PdbError, read_export_pdb
from edm.data.schema import Cue, beat_grid, iter_annotation_files, load_annotation

DATA = Path(__file__).parent / "data" / "pyrekordbox"
USB = DATA / "export"
ANLZ = USB / "PIONEER" / "USBANLZ"
DEMO1, DEMO2 = ANLZ / "P016" / "0000875E", ANLZ / "P053" / "0001D21F"
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "shared" if (ROOT / "shared").is_dir() else ROOT.parent / "shared"
XML = SHARED / "fixtures" / "rekordbox" / "rekordbox-5.8.6-export.xml"

try:
    import sqlcipher3
except ImportError:  # pragma: no cover - sqlcipher3-wheels is a dependency
    sqlcipher3 = None
needs_sqlcipher = pytest.mark.skipif(
    sqlcipher3 is None, reason="sqlcipher3 (sqlcipher3-wheels) does not install here, so an "
    "encrypted master.db cannot be built or read")


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["data", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_export_pdb_track_table() -> None:
    tracks = {t.title: t for t in read_export_pdb(USB / "PIONEER" / "rekordbox" / "export.pdb")}
    assert sorted(tracks) == ["Demo Track 1", "Demo Track 2", "HORN", "NOISE", "SINEWAVE",
                              "SIREN"]
    demo = tracks["Demo Track 1"]
    assert (demo.artist, demo.key, demo.bpm, demo.duration_s) == ("Loopmasters", "Fm", 128.0,
                                                                  172.0)
    assert demo.file_path == "/Contents/Loopmasters/UnknownAlbum/Demo Track 1.mp3"
    assert demo.anlz_path == "/PIONEER/USBANLZ/P016/0000875E/ANLZ0000.DAT"
    assert tracks["HORN"].bpm is None and tracks["HORN"].duration_s == 7.0


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"PMAI" + b"\x00" * 5000])
def test_broken_export_pdb_is_one_line(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "export.pdb"
    path.write_bytes(content)
    with pytest.raises(PdbError, match=rf"^{tmp_path}/export.pdb: ") as caught:
        read_export_pdb(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("folder", "beats", "bpm"), [(DEMO1, 368, 128.0), (DEMO2, 257, 120.0)])
def test_every_pqtz_beat_survives(folder: Path, beats: int, bpm: float) -> None:
    anlz = read_anlz(folder / "ANLZ0000.DAT")
    assert len(anlz.beat_times) == beats
    grid = anlz.grid()
    times, numbers = beat_grid(grid, float(anlz.beat_times[-1]) + 0.01)
    # Rekordbox stores whole milliseconds: every beat within 1 ms, numbered as Rekordbox does.
    assert len(times) == beats
    assert np.max(np.abs(times - anlz.beat_times)) <= 0.001 + 1e-9
    assert (numbers == anlz.beat_numbers).all()
    assert [s.bpm for s in grid] == [bpm]


def test_live_played_grid_is_kept_beat_by_beat() -> None:
    # A drummer drifting from 124 to 127 BPM, with Rekordbox's tempo field per beat.
    periods = 60.0 / np.linspace(124.0, 127.0, 200)
    times = np.round(0.31 + np.concatenate([[0.0], np.cumsum(periods[:-1])]), 3)
    numbers = np.arange(200) % 4 + 1
    grid = grid_from_beats(times, numbers, np.round(60.0 / periods, 2))
    expanded, beat_numbers = beat_grid(grid, float(times[-1]) + 0.01)
    assert len(expanded) == 200 and np.max(np.abs(expanded - times)) <= 0.002
    assert (beat_numbers == numbers).all()
    assert 1 < len(grid) < 200


def test_phrases_become_labelled_sections() -> None:
    library = read_usb_export(USB, hash_audio=False)
    assert not library.problems
    by_title = {a.track.title: a for a in library.tracks}
    demo1, demo2 = by_title["Demo Track 1"], by_title["Demo Track 2"]
    assert [len(demo1.sections), len(demo2.sections)] == [19, 11]
    assert all(not by_title[t].sections and not by_title[t].grid
               for t in ("HORN", "NOISE", "SINEWAVE", "SIREN"))
    prov = demo2.metadata.provenance
    assert prov["phrase_mood"] == "mid" and prov["sections_complete"] == "true"
    kinds = prov["phrase_kinds"].split("|")
    assert kinds == ["Intro", "Verse 1", "Verse 2", "Verse 2", "Verse 3", "Bridge", "Bridge",
                     "Verse 4", "Verse 5", "Verse 4", "Outro"]
    labels = [s.label for s in demo2.sections]
    assert labels == ["intro", None, None, None, None, "breakdown", "breakdown", None, None,
                      None, "outro"]
    # Phrases start on beats of the grid (beat 1, 33, 61 … of PQTZ) and tile the track.
    beats = demo2.beats()
    assert all(np.min(np.abs(beats - s.start_s)) <= 1e-3 + 1e-9 for s in demo2.sections)
    assert [s.start_s for s in demo2.sections[:3]] == [0.025, 16.025, 30.025]
    assert all(a.end_s == b.start_s for a, b in zip(demo2.sections, demo2.sections[1:],
                                                    strict=False))
    assert demo2.metadata.source == "rekordbox-usb" and demo2.metadata.tier == 2
    assert {prov["grid_source"], prov["section_source"], prov["cue_source"]} == {
        "anlz-pqtz", "anlz-pssi", "anlz-pco2"}
    assert demo2.track.path == str(USB / "Contents" / "Loopmasters" / "UnknownAlbum" /
                                   "Demo Track 2.mp3")


def _cue_tag(kind: int, cues: list[tuple]) -> bytes:
    """A PCO2 tag (kind 1: hot cues, 0: memory), packed by the layout in pyrekordbox's
    ``anlz.structs.PCO2`` (its struct cannot build one: two fields share the name "type")."""
    import struct

    entries = b""
    for hot, start_ms, loop_ms, name, rgb in cues:
        comment = (name + "\0").encode("utf-16-be") if name else b""
        red, green, blue = rgb or (0, 0, 0)
        body = struct.pack(">IBxxxIIB7xHHI", hot, 2 if loop_ms else 1, start_ms,
                           loop_ms or 0xFFFFFFFF, 0, 0, 0, len(comment))
        body += comment + struct.pack(">BBBB", 1 if rgb else 0, red, green, blue) + bytes(8)
        entries += b"PCP2" + struct.pack(">II", 16, 12 + len(body)) + body
    content = struct.pack(">IHH", kind, len(cues), 0) + entries
    return b"PCO2" + struct.pack(">II", 20, 12 + len(content)) + content


def _usb_with_cues(tmp_path: Path) -> Path:
    """The real export, with Demo Track 1's EXT given real-looking cue lists (its own has
    none): hot cue A "Drop" at 60.025 s (red), a loop on B, a memory cue at 15.025 s (one
    the XML export also has) and a memory cue at 90.025 s."""
    from pyrekordbox.anlz.structs import AnlzFileHeader

    usb = tmp_path / "USB"
    shutil.copytree(USB, usb)
    ext = usb / DEMO1.relative_to(USB) / "ANLZ0000.EXT"
    data = ext.read_bytes()
    header = AnlzFileHeader.parse(data)
    tags = data[header.len_header:]
    extra = _cue_tag(1, [(1, 60025, 0, "Drop", (255, 0, 0)), (2, 30025, 37525, "", None)])
    extra += _cue_tag(0, [(0, 15025, 0, "", None), (0, 90025, 0, "Break", None)])
    # The real (empty) PCO2 tags stay in front: the built ones are read after them.
    body = tags + extra
    new_header = AnlzFileHeader.build(dict(header, len_file=header.len_header + len(body)))
    ext.write_bytes(new_header + body)
    return usb


def test_anlz_cues_with_names_colours_and_loops(tmp_path: Path) -> None:
    usb = _usb_with_cues(tmp_path)
    anlz = read_anlz(usb / DEMO1.relative_to(USB) / "ANLZ0000.DAT")
    assert anlz.cue_tag == "PCO2"
    assert sorted((c.start_s, c.end_s, c.kind, c.slot, c.name, c.color) for c in anlz.cues) == [
        (15.025, None, "memory", None, "", None),
        (30.025, 37.525, "hot", 1, "", None),
        (60.025, None, "hot", 0, "Drop", "#FF0000"),
        (90.025, None, "memory", None, "Break", None),
    ]


@pytest.mark.skipif(not XML.is_file(), reason="shared fixtures not present")
def test_xml_and_usb_of_one_library_merge_without_duplicate_cues(tmp_path: Path) -> None:
    usb = _usb_with_cues(tmp_path)
    ann = tmp_path / "ann"
    code, stdout, _ = _run("import", str(XML), "--out", str(ann), "--json", "--no-hash")
    assert code == 0 and json.loads(stdout)["written"] == 6
    code, stdout, stderr = _run("import", str(usb / "PIONEER"), "--out", str(ann), "--json",
                                "--no-hash")
    summary = json.loads(stdout)
    assert code == 0, stderr
    assert (summary["written"], summary["merged"], summary["with_phrases"]) == (6, 6, 2)
    files = list(iter_annotation_files(ann))
    assert len(files) == 6  # one file per track, not one per source
    demo = next(a for a in map(load_annotation, files) if a.track.title == "Demo Track 1")
    xml_demo = next(a for a in read_rekordbox_xml(XML).tracks
                    if a.track.title == "Demo Track 1")
    assert demo.metadata.source == "rekordbox-xml+rekordbox-usb"
    assert demo.grid == xml_demo.grid and len(demo.sections) == 19
    starts = sorted((c.start_s, c.kind) for c in demo.cues)
    # The XML's four memory cues (0.025, 15.025, 30.025, 45.025) once each, plus the ANLZ
    # cues that are new; its memory cue at 15.025 s and hot loop at 30.025 s are the same.
    assert starts == [(0.025, "memory"), (15.025, "memory"), (30.025, "memory"),
                      (45.025, "memory"), (60.025, "hot"), (90.025, "memory")]
    assert demo.metadata.provenance["rekordbox-usb:track_id"] == "1"
    assert demo.metadata.provenance["track_id"] == "5"

    # Importing either source again changes nothing.
    before = {f.name: f.read_bytes() for f in files}
    _run("import", str(usb / "PIONEER"), "--out", str(ann), "--no-hash")
    _run("import", str(XML), "--out", str(ann), "--no-hash")
    assert {f.name: f.read_bytes() for f in iter_annotation_files(ann)} == before


def test_merge_is_symmetric_in_what_it_keeps(tmp_path: Path) -> None:
    usb = read_usb_export(USB, hash_audio=False).tracks[0]
    manual = usb.model_copy(update={
        "grid": [], "sections": [], "cues": [Cue(start_s=16.03, kind="hot", slot=0)],
        "metadata": usb.metadata.model_copy(update={"source": "rekordbox-xml",
                                                    "provenance": {"track_id": "9"}}),
    })
    merged = merge_annotations(manual, usb)
    assert merged.grid == usb.grid and merged.sections == usb.sections
    assert merge_annotations(merged, usb) == merged
    report = save_annotations([manual], tmp_path)
    report = save_annotations([usb], tmp_path)
    assert (report.written, report.merged) == (1, 1)


# ---------------------------------------------------------------------------------------------
# master.db


def _library_folder(tmp_path: Path) -> Path:
    """A Rekordbox 6 library folder: pyrekordbox's master.db and, in share/, the analysis
    files of its two demo tracks (the USB export's files of the same tracks)."""
    folder = tmp_path / "rekordbox"
    folder.mkdir()
    db = folder / "master.db"
    with gzip.open(DATA / "rekordbox 6" / "master_unlocked.db.gz") as stream:
        db.write_bytes(stream.read())
    import sqlite3

    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT Title, AnalysisDataPath FROM djmdContent").fetchall()
    for title, analysis in rows:
        source = {"Demo Track 1": DEMO1, "Demo Track 2": DEMO2}.get(title)
        if source is not None:
            target = folder / "share" / analysis.lstrip("/")
            target.parent.mkdir(parents=True)
            for ext in ("DAT", "EXT"):
                shutil.copy(source / f"ANLZ0000.{ext}", target.with_suffix(f".{ext}"))
    return db


def _encrypt(db: Path, key: str) -> Path:
    out = db.with_name("encrypted.db")
    connection = sqlcipher3.connect(str(db))
    connection.execute(f"ATTACH DATABASE '{out}' AS encrypted KEY '{key}'")
    connection.execute("SELECT sqlcipher_export('encrypted')")
    connection.execute("DETACH DATABASE encrypted")
    connection.close()
    out.replace(db)
    return db


def _check_db_library(tracks: list) -> None:
    by_title = {a.track.title: a for a in tracks}
    assert len(tracks) == 6
    demo = by_title["Demo Track 1"]
    assert demo.track.path == "C:/Users/dylan/Music/PioneerDJ/Demo Tracks/Demo Track 1.mp3"
    assert (demo.bpm, demo.track.duration_s, demo.track.artist) == (128.0, 172.0, "Loopmasters")
    assert len(demo.beats()) == 367 and len(demo.sections) == 19  # PQTZ beats before 172 s
    assert demo.metadata.source == "rekordbox-db"
    assert demo.metadata.provenance["sections_complete"] == "true"


def test_plain_master_db(tmp_path: Path) -> None:
    library = read_master_db(_library_folder(tmp_path), hash_audio=False)
    _check_db_library(library.tracks)
    # The four one-shots' analysis files are not in this folder: named, imported without.
    assert len(library.problems) == 4 and all("not found" in p for p in library.problems)


@needs_sqlcipher
def test_encrypted_master_db_key_and_lock_errors(tmp_path: Path) -> None:
    from edm.data.rekordbox_library import _builtin_key

    key = _builtin_key()
    db = _encrypt(_library_folder(tmp_path), key)
    assert not db.read_bytes().startswith(b"SQLite format 3")
    ann = tmp_path / "ann"
    code, stdout, stderr = _run("import", "--rekordbox-db", str(db), "--out", str(ann),
                                "--json", "--no-hash")
    assert code == 0, stderr
    assert json.loads(stdout)["with_phrases"] == 2
    _check_db_library([load_annotation(f) for f in iter_annotation_files(ann)])

    code, _, stderr = _run("import", "--rekordbox-db", str(db), "--db-key", "402fd" + "0" * 59,
                           "--out", str(ann))
    assert code == 1 and stderr.strip().splitlines() == [
        f"Error: {db}: cannot decrypt the database: the key does not open this file (pass the "
        "right one with --db-key)"]

    holder = sqlcipher3.connect(str(db))
    holder.execute(f"PRAGMA key = '{key}'")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(RekordboxError, match=r"locked by another program \(close Rekordbox"):
            read_master_db(db, hash_audio=False)
    finally:
        holder.rollback()
        holder.close()


def test_default_master_db_missing_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("APPDATA", str(tmp_path))
    code, _, stderr = _run("import", "--rekordbox-db", "--out", str(tmp_path / "ann"))
    lines = stderr.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert "master.db: no Rekordbox database here" in lines[0]


def test_dat_cue_list_when_the_ext_has_none(tmp_path: Path) -> None:
    """Older exports keep cues only in the DAT's PCOB list (hot cues A-C, no names)."""
    import struct

    from pyrekordbox.anlz.structs import AnlzFileHeader

    folder = tmp_path / "anlz"
    folder.mkdir()
    data = (DEMO2 / "ANLZ0000.DAT").read_bytes()
    header = AnlzFileHeader.parse(data)
    entry = (b"PCPT" + struct.pack(">IIIIIHHBxHII", 28, 56, 2, 4, 0x10000, 0xFFFF, 0xFFFF, 2,
                                   1000, 16025, 24025) + bytes(16))
    content = struct.pack(">IHHi", 1, 0, 1, -1) + entry
    tag = b"PCOB" + struct.pack(">II", 24, 12 + len(content)) + content
    body = data[header.len_header:] + tag
    (folder / "ANLZ0000.DAT").write_bytes(
        AnlzFileHeader.build(dict(header, len_file=header.len_header + len(body))) + body)
    anlz = read_anlz(folder / "ANLZ0000.DAT")  # no EXT beside it
    assert anlz.cue_tag == "PCOB" and not anlz.phrases
    assert [(c.start_s, c.end_s, c.kind, c.slot) for c in anlz.cues] == [
        (16.025, 24.025, "hot", 1)]
