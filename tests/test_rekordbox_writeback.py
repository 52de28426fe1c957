"""Writing results back into a DJ's Rekordbox library without damage (issue 16, items 1-2).

Every real fixture goes through both write paths: `edm data import` + `edm data export`
(which must give back the very same bytes when nothing was edited) and the analysis write-back
of `edm analyze --format rekordbox` (which may only add cues, and the grid on request). What
is not edm's (attributes, other TRACKs, playlists) is compared byte for byte.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from defusedxml.ElementTree import fromstring

from edm.cli import main
from edm.data.rekordbox import (
    location_to_path,
    merge_cues,
    path_to_location,
    read_rekordbox_xml,
    snap_to_downbeats,
    write_back_xml,
    write_rekordbox_xml,
)
from edm.data.schema import (
    Cue,
    TempoSegment,
    TrackAnnotation,
    iter_annotation_files,
    load_annotation,
    save_annotation,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "shared" if (ROOT / "shared").is_dir() else ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "rekordbox"
AUDIO = SHARED / "fixtures" / "audio" / "vibe-ace-kevin-macleod.ogg"
NAMES = sorted(p.name for p in FIXTURES.glob("*.xml")) if FIXTURES.is_dir() else []
needs_fixtures = pytest.mark.skipif(not NAMES, reason="shared fixtures not present")

_TRACK = re.compile(rb'<TRACK\s(?:[^>"/]|"[^"]*")*(?:/>|>.*?</TRACK>)', re.DOTALL)


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _collection_tracks(data: bytes) -> dict[str, bytes]:
    """Raw bytes of every COLLECTION TRACK, by TrackID (a plain regex, not edm's locator)."""
    start = data.index(b"<COLLECTION")
    stop = data.index(b"</COLLECTION>")
    tracks = {}
    for match in _TRACK.finditer(data, start, stop):
        track_id = re.search(rb'TrackID="([^"]*)"', match.group()).group(1).decode()
        tracks[track_id] = match.group()
    return tracks


def _outside_collection(data: bytes) -> tuple[bytes, bytes]:
    """The file before the COLLECTION tag and after it (PRODUCT, PLAYLISTS …)."""
    return data[: data.index(b"<COLLECTION")], data[data.index(b"</COLLECTION>") :]


def _elements(text: bytes) -> tuple[dict, list[dict], list[dict]]:
    element = fromstring(text)
    return (dict(element.attrib), [dict(t.attrib) for t in element.findall("TEMPO")],
            [dict(m.attrib) for m in element.findall("POSITION_MARK")])


# ---------------------------------------------------------------------------------------------
# Item 1: the analysis write-back


def _edm_result(dj: TrackAnnotation) -> TrackAnnotation:
    """What `edm analyze` hands the writer: its own grid (here 3/4 of the DJ's tempo, so
    every gridded track disagrees), section cues from 0 s, and the TrackID."""
    bpm = 0.75 * (dj.grid[0].bpm if dj.grid else 128.0)
    duration = dj.track.duration_s or 240.0
    starts = [0.0, *np.arange(30.0, duration - 5.0, 45.0).tolist()]
    return TrackAnnotation(
        track=dj.track.model_copy(update={"path": "/elsewhere/remapped.mp3"}),
        grid=[TempoSegment(start_s=0.0, bpm=bpm)],
        cues=[Cue(start_s=s, name=f"edm {i}", color="#00FF00") for i, s in enumerate(starts)],
        bpm=bpm,
    )


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_analyze_write_back_keeps_everything_not_edms(name: str, tmp_path: Path) -> None:
    base = FIXTURES / name
    original = base.read_bytes()
    library = read_rekordbox_xml(base, hash_audio=False)
    # Half the tracks analysed (as when some audio is missing), the rest untouched.
    analysed = library.tracks[::2]
    report = write_back_xml([_edm_result(a) for a in analysed], tmp_path / "out.xml", base=base)
    out = report.path.read_bytes()
    assert report.added == 0  # the remapped path never makes a second TRACK
    assert _outside_collection(out) == _outside_collection(original)  # playlists, header

    before, after = _collection_tracks(original), _collection_tracks(out)
    assert list(after) == list(before)
    ids = {a.track.source_id for a in analysed}
    for track_id, text in before.items():
        if track_id not in ids:
            assert after[track_id] == text  # byte for byte
            continue
        attrs, tempos, marks = _elements(text)
        new_attrs, new_tempos, new_marks = _elements(after[track_id])
        if tempos:
            assert new_attrs == attrs and new_tempos == tempos  # DJ grid and attributes kept
        else:  # no grid of the DJ's to keep: edm's is written, with its AverageBpm
            assert len(new_tempos) == 1 and new_attrs.pop("AverageBpm") != attrs.pop(
                "AverageBpm", None)
            assert new_attrs == attrs
        assert new_marks[: len(marks)] == marks  # the DJ's cues, as they were, first
    back = {a.track.source_id: a for a in read_rekordbox_xml(report.path).tracks}
    gridded = [a for a in analysed if a.grid and a.track.duration_s]
    for dj in gridded:
        added = back[dj.track.source_id].cues[len(dj.cues):]
        added = [c for c in back[dj.track.source_id].cues if c.name.startswith("edm ")]
        assert added, dj.track.source_id
        downbeats = dj.downbeats()
        # On downbeats of the DJ's grid (the one written), never before the first beat.
        assert all(np.min(np.abs(downbeats - c.start_s)) < 1e-3 for c in added)
        assert min(c.start_s for c in added) >= dj.beats()[0] - 1e-3
    assert len(report.grid_disagreements) == len(
        [a for a in analysed if a.grid and len(a.beats()) > 1])
    assert all("kept the DJ's grid" in line for line in report.grid_disagreements)


GOOD = (
    '<TRACK TrackID="7" Name="Tune" Artist="A" Album="LP" TotalTime="240" AverageBpm="129.00" '
    'Tonality="8A" Rating="204" PlayCount="12" Comments="Energy 7 &amp; vocal" '
    'Location="file://localhost/Users/dj/Music/A%20%26%20B%27s%20Tune.mp3">\n'
    '      <TEMPO Inizio="0.608" Bpm="129.00" Metro="4/4" Battito="1"/>\n'
    '      <POSITION_MARK Name="Drop" Type="0" Start="60.139" Num="0" Red="255" Green="0" '
    'Blue="0"/>\n'
    '      <POSITION_MARK Name="" Type="0" Start="60.139" Num="-1"/>\n'
    "    </TRACK>"
)


def _library(tmp_path: Path, tracks: str, playlists: str = "") -> Path:
    path = tmp_path / "rekordbox.xml"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n\n<DJ_PLAYLISTS Version="1.0.0">\n'
        '  <PRODUCT Name="rekordbox" Version="6.7.7" Company="AlphaTheta"/>\n'
        f'  <COLLECTION Entries="{tracks.count("<TRACK ")}">\n    {tracks}\n  </COLLECTION>\n'
        f"  <PLAYLISTS>{playlists}</PLAYLISTS>\n</DJ_PLAYLISTS>\n",
        encoding="utf-8",
    )
    return path


def test_write_back_merges_cues_and_keeps_the_djs_grid(tmp_path: Path) -> None:
    base = _library(tmp_path, GOOD)
    dj = read_rekordbox_xml(base).tracks[0]
    # edm's grid: the tempo that broke a real library (97 BPM against a correct 129).
    ours = dj.model_copy(update={
        "grid": [TempoSegment(start_s=0.0, bpm=97.004, beat_in_bar=2)], "bpm": 97.004,
        "cues": [Cue(start_s=0.0, name="Intro"), Cue(start_s=60.145, name="Drop"),
                 Cue(start_s=90.0, kind="hot", slot=0, name="Breakdown"),
                 Cue(start_s=120.2, name="Outro")],
    })
    report = write_back_xml([ours], tmp_path / "out.xml", base=base)
    back = read_rekordbox_xml(report.path).tracks[0]
    assert back.grid == dj.grid and back.bpm == 129.0
    assert [(c.start_s, c.kind, c.name) for c in back.cues] == [
        (0.608, "memory", "Intro"),  # the first downbeat, not 0.000 s
        (60.139, "hot", "Drop"), (60.139, "memory", ""),  # the DJ's two, not a third
        (119.678, "memory", "Outro"),  # the nearest bar line: 0.608 s + 64 bars at 129 BPM
    ]
    assert (report.cues_added, report.cues_merged) == (2, 2)
    assert report.grid_disagreements == [
        f"{base}: track 7 (A - Tune): DJ grid 129.00 BPM, edm 97.00 BPM; kept the DJ's grid "
        "(--replace-grid writes edm's)"
    ]
    attrs, _, _ = _elements(_collection_tracks(report.path.read_bytes())["7"])
    assert attrs == _elements(_collection_tracks(base.read_bytes())["7"])[0]

    replaced = write_back_xml([ours], tmp_path / "replaced.xml", base=base, replace_grid=True)
    again = read_rekordbox_xml(replaced.path).tracks[0]
    assert again.grid == ours.grid and again.bpm == 97.0 and not replaced.grid_disagreements
    # Cues now follow edm's grid: 97.004 BPM, beat 2 at 0 s, so bar lines at 1.856 s + 2.474 k.
    edm_downbeats = again.downbeats()
    assert all(np.min(np.abs(edm_downbeats - c.start_s)) < 1e-3
               for c in again.cues if c.name in ("Intro", "Outro"))
    attrs, _, _ = _elements(_collection_tracks(replaced.path.read_bytes())["7"])
    original = _elements(_collection_tracks(base.read_bytes())["7"])[0]
    assert {k: v for k, v in attrs.items() if k != "AverageBpm"} == {
        k: v for k, v in original.items() if k != "AverageBpm"}
    assert attrs["AverageBpm"] == "97.00"

    wiped = write_back_xml([ours], tmp_path / "wiped.xml", base=base, replace_cues=True)
    names = [c.name for c in read_rekordbox_xml(wiped.path).tracks[0].cues]
    assert names == ["Intro", "Drop", "Breakdown", "Outro"]


def test_merge_and_snap_rules() -> None:
    dj = [Cue(start_s=10.0, kind="hot", slot=3)]
    added, merged = merge_cues(dj, [Cue(start_s=9.991), Cue(start_s=9.989),
                                    Cue(start_s=50.0, kind="hot", slot=3),
                                    Cue(start_s=50.0, kind="hot", slot=4)])
    # 9.991 s is the DJ's cue (9 ms away), slot 3 is taken; 11 ms away and slot 4 are new.
    assert [(c.start_s, c.slot) for c in added] == [(9.989, None), (50.0, 4)] and merged == 2
    grid = [TempoSegment(start_s=1.0, bpm=120.0, beat_in_bar=3)]  # downbeats at 2, 4, 6 …
    loop = Cue(start_s=4.9, end_s=8.9)
    assert [(c.start_s, c.end_s) for c in snap_to_downbeats([loop], grid, 30.0)] == [(4.0, 8.0)]
    assert snap_to_downbeats([loop], [], 30.0) == [loop]


@pytest.mark.skipif(not AUDIO.is_file(), reason="shared audio fixture not present")
def test_analyze_cli_with_audio_root_updates_the_original_track(tmp_path: Path) -> None:
    """README step 7 as a new user runs it: the audio sits elsewhere on this machine."""
    audio = tmp_path / "here" / "Music"
    audio.mkdir(parents=True)
    shutil.copy(AUDIO, audio / "A & B's Tune.mp3")  # a name Rekordbox percent-encodes
    shutil.copy(AUDIO, audio / "vibe.ogg")
    track = GOOD.replace("A%20%26%20B%27s%20Tune.mp3", "vibe.ogg").replace(
        'TotalTime="240"', 'TotalTime="61"').replace("60.139", "30.139")
    playlists = ('<NODE Type="0" Name="ROOT" Count="1"><NODE Name="Set" Type="1" KeyType="0" '
                 'Entries="1"><TRACK Key="7"/></NODE></NODE>')
    base = _library(tmp_path, track, playlists)
    out = tmp_path / "analysed.xml"
    code, stdout, stderr = _run("analyze", str(base), "--format", "rekordbox", "--out", str(out),
                                "--audio-root", str(tmp_path / "here"), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)["rekordbox"]
    assert (summary["updated"], summary["added"]) == (1, 0)
    data = out.read_bytes()
    assert _outside_collection(data) == _outside_collection(base.read_bytes())
    (only,) = _collection_tracks(data).values()
    attrs, tempos, marks = _elements(only)
    assert attrs == _elements(_collection_tracks(base.read_bytes())["7"])[0]
    assert attrs["Location"] == "file://localhost/Users/dj/Music/vibe.ogg"
    assert tempos == [{"Inizio": "0.608", "Bpm": "129.00", "Metro": "4/4", "Battito": "1"}]
    # The DJ's hot cue "Drop" (slot 0) comes out once; edm's section cues (which may also be
    # called "Drop" when the model hears one) are memory cues beside it.
    hot = [m for m in marks if m["Num"] != "-1"]
    assert [(m["Name"], m["Num"], m["Start"]) for m in hot] == [("Drop", "0", "30.139")]
    assert len(marks) > 2


# ---------------------------------------------------------------------------------------------
# Item 2: import + export loses nothing


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_import_then_export_gives_the_same_bytes(name: str, tmp_path: Path) -> None:
    base = tmp_path / name
    shutil.copy(FIXTURES / name, base)
    ann = tmp_path / "ann"
    code, _, stderr = _run("data", "import", str(base), "--out", str(ann), "--no-hash")
    assert code in (0, 1), stderr
    out = tmp_path / "out.xml"
    code, stdout, stderr = _run("data", "export", str(ann), "--format", "rekordbox", "--out",
                                str(out), "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["rekordbox"]["base"] == str(base.absolute())
    assert out.read_bytes() == base.read_bytes()

    # Without the original: a new file, every Location exactly as Rekordbox wrote it.
    moved = base.rename(tmp_path / "moved.xml")
    fresh = tmp_path / "fresh.xml"
    code, stdout, stderr = _run("data", "export", str(ann), "--format", "rekordbox", "--out",
                                str(fresh))
    assert code == 0 and "no original library XML found" in stderr
    locations = {a.track.source_id: a.metadata.provenance.get("location")
                 for a in read_rekordbox_xml(moved).tracks}
    exported = read_rekordbox_xml(fresh).tracks
    assert sorted(a.metadata.provenance.get("location") or "" for a in exported) == sorted(
        loc or "" for loc in locations.values())


@needs_fixtures
def test_export_rewrites_only_what_the_annotations_changed(tmp_path: Path) -> None:
    base = tmp_path / "dnb.xml"
    shutil.copy(FIXTURES / "rekordbox-6.6.1-dnb-collection.xml", base)
    ann = tmp_path / "ann"
    _run("data", "import", str(base), "--out", str(ann), "--no-hash")
    files = list(iter_annotation_files(ann))
    edited = {}
    for file in files:
        annotation = load_annotation(file)
        if len(annotation.cues) >= 2 and len(annotation.grid) >= 2 and len(edited) < 3:
            # An audit-style fix: one cue removed, one added, the grid re-anchored.
            fixed = TrackAnnotation.model_validate({
                **annotation.model_dump(), "grid": annotation.model_dump()["grid"][:1],
                "cues": [*annotation.model_dump()["cues"][1:], {"start_s": 33.3, "name": "f"}],
            })
            save_annotation(fixed, file)
            edited[annotation.track.source_id] = fixed
    out = tmp_path / "out.xml"
    code, stdout, _ = _run("data", "export", str(ann), "--format", "rekordbox", "--out",
                           str(out), "--json")
    report = json.loads(stdout)["rekordbox"]
    assert code == 0 and report["updated"] == 3 and report["unchanged"] == 2018 - 3
    before, after = _collection_tracks(base.read_bytes()), _collection_tracks(out.read_bytes())
    assert _outside_collection(out.read_bytes()) == _outside_collection(base.read_bytes())
    assert [k for k in before if before[k] != after[k]] == sorted(edited, key=list(before).index)
    back = {a.track.source_id: a for a in read_rekordbox_xml(out).tracks}
    for track_id, fixed in edited.items():
        assert back[track_id].grid == fixed.grid and back[track_id].cues == fixed.cues
        assert _elements(after[track_id])[0] == _elements(before[track_id])[0]
        # The cues that stayed keep their original elements (wrapped lines and all).
        kept = [m for m in _elements(before[track_id])[2][1:]]
        assert _elements(after[track_id])[2][: len(kept)] == kept


STREAMING_AND_ODD = (
    '<TRACK TrackID="1" Name="Stream" TotalTime="200" '
    'Location="file://localhost/soundcloud:tracks:838330168"/>\n'
    '    <TRACK TrackID="2" Name="Beatport" TotalTime="200" '
    'Location="file://localhost/beatport:tracks:17093045"/>\n'
    '    <TRACK TrackID="3" Name="Win" TotalTime="200" '
    'Location="file://localhost/C:/Users/dj/Music/Drum%20%26%20Bass/Caf%c3%a9%20%27Mix%27.mp3"/>'
    '\n    <TRACK TrackID="4" Name="Reanchored" TotalTime="200" Location="file://localhost/x.mp3">'
    + "".join(f'\n      <TEMPO Inizio="0.120" Bpm="{bpm:.2f}" Metro="4/4" Battito="1"/>'
              for bpm in [174.0] * 16 + [87.0])
    + "\n    </TRACK>"
)


def test_streaming_locations_odd_encodings_and_tempo_lists_survive(tmp_path: Path) -> None:
    base = _library(tmp_path, STREAMING_AND_ODD)
    library = read_rekordbox_xml(base)
    by_id = {a.track.source_id: a for a in library.tracks}
    assert by_id["1"].track.path is None and by_id["2"].track.path is None
    assert by_id["3"].track.path == "C:/Users/dj/Music/Drum & Bass/Café 'Mix'.mp3"
    # 17 TEMPO entries at one Inizio: the import keeps the first (the same beats) and says so.
    assert by_id["4"].grid == [TempoSegment(start_s=0.12, bpm=174.0)]
    assert sum("duplicate TEMPO entry at Inizio=0.12" in p for p in library.problems) == 16

    # An edit elsewhere in the library; these four come back as written, byte for byte.
    extra = by_id["3"].model_copy(update={"cues": [Cue(start_s=1.0)]})
    report = write_rekordbox_xml([*library.tracks[:2], extra, by_id["4"]],
                                 tmp_path / "out.xml", base=base)
    assert report.updated == 1
    before, after = _collection_tracks(base.read_bytes()), _collection_tracks(
        report.path.read_bytes())
    assert [after[k] == before[k] for k in "1234"] == [True, True, False, True]
    assert after["4"].count(b"<TEMPO ") == 17
    assert _elements(after["3"])[0]["Location"] == _elements(before["3"])[0]["Location"]

    # Without the base file the original Location strings are still written as they were.
    fresh = write_rekordbox_xml(library.tracks, tmp_path / "fresh.xml")
    locations = [_elements(t)[0]["Location"] for t in _collection_tracks(
        fresh.path.read_bytes()).values()]
    assert locations == [_elements(t)[0]["Location"] for t in before.values()]
    # … and the TEMPO list as the annotation holds it (one entry: the beats are the same).
    assert _collection_tracks(fresh.path.read_bytes())["4"].count(b"<TEMPO ") == 1


@needs_fixtures
def test_new_paths_are_encoded_like_rekordbox() -> None:
    checked = 0
    for name in NAMES:
        for annotation in read_rekordbox_xml(FIXTURES / name, hash_audio=False).tracks:
            location = annotation.metadata.provenance.get("location", "")
            path = annotation.track.path
            # Rekordbox wrote some non-ASCII escapes in lower case; edm writes upper case.
            if path is None or re.search(r"%[0-9a-f][a-f]|%[a-f][0-9a-f]", location):
                continue
            assert location_to_path(location) == path
            if path.startswith("/") or re.match(r"[A-Za-z]:", path):
                assert path_to_location(path) == location
                checked += 1
    assert checked > 2500


@pytest.mark.parametrize(
    ("text", "message"),
    [('<?xml version="1.0" encoding="ISO-8859-1"?><DJ_PLAYLISTS><COLLECTION/></DJ_PLAYLISTS>',
      "encoded as ISO-8859-1; edm updates UTF-8 exports"),
     ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><DJ_PLAYLISTS><COLLECTION/>'
      "</DJ_PLAYLISTS>", "refused an entity declaration"),
     ("<DJ_PLAYLISTS><COLLECTION>", "malformed XML")],
)
def test_a_base_that_cannot_be_updated_is_one_line_and_nothing_is_written(
    text: str, message: str, tmp_path: Path
) -> None:
    from edm.data.rekordbox import RekordboxError

    base = tmp_path / "base.xml"
    base.write_text(text, encoding="latin-1")
    with pytest.raises(RekordboxError, match=message) as caught:
        write_back_xml([], tmp_path / "out.xml", base=base)
    assert "\n" not in str(caught.value) and not (tmp_path / "out.xml").exists()
