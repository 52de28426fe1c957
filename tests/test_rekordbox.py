"""Rekordbox XML reader and writer against real exports, hand-made bad inputs and round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edm.audio import content_hash
from edm.data.rekordbox import (
    RekordboxError,
    location_to_path,
    path_to_location,
    read_rekordbox_xml,
    write_rekordbox_xml,
)
from edm.data.schema import Cue, TempoSegment, Tier, TrackAnnotation, TrackIdentity, beat_times

FIXTURES = Path(__file__).resolve().parents[1] / "shared" / "fixtures" / "rekordbox"
if not FIXTURES.is_dir():  # The shared folder sits beside the checkout on the dev box.
    FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekordbox"

# From fixtures/rekordbox/SOURCES.md (counted by a plain ElementTree pass):
# file: (tracks, TEMPO, POSITION_MARK, hot cues, named cues)
COUNTS = {
    "rekordbox-5.8.6-export.xml": (6, 11, 8, 0, 0),
    "rekordbox-6.6.2-export.xml": (6, 11, 0, 0, 0),
    "rekordbox-6.7.1-house-set.xml": (89, 264, 305, 305, 0),
    "rekordbox-6.7.2-collection.xml": (248, 1329, 59, 0, 0),
    "rekordbox-5.6.0-hand-edited.xml": (9, 11, 0, 0, 0),
    "rekordbox-6.6.1-dnb-collection.xml": (2018, 6557, 8928, 370, 36),
    "rekordbox-6.8.2-windows.xml": (24, 11, 0, 0, 0),
    "rekordbox-7.2.8-collection.xml": (473, 1976, 18, 18, 0),
}

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures not present")


def _labels(annotation: TrackAnnotation) -> dict:
    """What a round trip must keep: everything but the import metadata."""
    return annotation.model_dump(exclude={"metadata"})


@pytest.fixture(scope="module")
def libraries() -> dict:
    return {name: read_rekordbox_xml(FIXTURES / name) for name in COUNTS}


@needs_fixtures
@pytest.mark.parametrize("name", list(COUNTS))
def test_fixture_counts_and_round_trip(name: str, libraries: dict, tmp_path: Path) -> None:
    tracks, tempos, marks, hot, named = COUNTS[name]
    library = libraries[name]
    assert library.tracks_in_file == tracks
    assert len(library.tracks) == tracks and library.skipped == 0
    cues = [cue for a in library.tracks for cue in a.cues]
    assert sum(len(a.grid) for a in library.tracks) == tempos
    assert len(cues) == marks
    assert sum(cue.kind == "hot" for cue in cues) == hot
    assert sum(bool(cue.name) for cue in cues) == named
    assert all(a.metadata.source == "rekordbox-xml" and a.metadata.tier == Tier.DJ_SOFTWARE
               for a in library.tracks)
    assert library.product_version == name.split("-")[1]

    out = write_rekordbox_xml(library.tracks, tmp_path / "export.xml").path
    again = read_rekordbox_xml(out)
    assert [_labels(a) for a in again.tracks] == [_labels(a) for a in library.tracks]


@needs_fixtures
def test_fixture_values(libraries: dict) -> None:
    demo = next(a for a in libraries["rekordbox-5.8.6-export.xml"].tracks
                if a.track.title == "Demo Track 1")
    assert demo.track.path == "C:/Music/PioneerDJ/Demo Tracks/Demo Track 1.mp3"
    assert demo.track.duration_s == 172 and demo.bpm == 128.0 and demo.track.source_id == "5"
    assert demo.grid == [TempoSegment(start_s=0.025, bpm=128.0)]
    assert [c.start_s for c in demo.cues] == [0.025, 15.025, 30.025, 45.025]
    assert {c.kind for c in demo.cues} == {"memory"}
    # 15 s at 128 BPM is exactly 32 beats: the memory cues sit on the grid's downbeats.
    downbeats = demo.downbeats()
    assert all(np.min(np.abs(downbeats - c.start_s)) < 1e-9 for c in demo.cues)

    dnb = libraries["rekordbox-6.6.1-dnb-collection.xml"].tracks
    hot = [c for a in dnb for c in a.cues if c.kind == "hot"]
    assert {c.slot for c in hot} <= set(range(8))
    assert all(c.color is not None and c.color.startswith("#") for c in hot)
    assert "#28E214" in {c.color for c in hot}  # Red=40 Green=226 Blue=20
    assert "Remove" in {c.name for a in dnb for c in a.cues}
    # The one real anomaly in that export: Battito="0", read as a downbeat and reported.
    catalyst = next(a for a in dnb if a.track.source_id == "73304528")
    assert catalyst.grid[0].beat_in_bar == 1
    problems = libraries["rekordbox-6.6.1-dnb-collection.xml"].problems
    assert any("73304528" in p and "Battito=0" in p for p in problems)


@needs_fixtures
def test_hand_edited_fixture_reports_and_imports(libraries: dict) -> None:
    library = libraries["rekordbox-5.6.0-hand-edited.xml"]
    assert library.entries_declared == 7 and len(library.tracks) == 9
    assert any("Entries=7 but the file has 9" in p for p in library.problems)
    not_files = [p for p in library.problems if "is not a local file URL" in p]
    assert len(not_files) == 8  # 7 '{testLibraryDirectory}' templates + 1 soundcloud track
    assert all("rekordbox-5.6.0-hand-edited.xml: track " in p for p in not_files)
    by_id = {a.track.source_id: a for a in library.tracks}
    assert by_id["9"].track.path is None
    assert by_id["9"].metadata.provenance["location"].endswith("soundcloud:tracks:1149223021")
    assert by_id["8"].track.path == "/Name with ?.mp3"
    assert by_id["6"].grid[1] == TempoSegment(start_s=48.026, bpm=120.0)
    assert len(by_id["6"].grid) == 10


@needs_fixtures
def test_playlist_filter() -> None:
    hand = FIXTURES / "rekordbox-5.6.0-hand-edited.xml"
    every_test = read_rekordbox_xml(hand, playlist="Test")  # four playlists share that name
    assert sorted(a.track.source_id for a in every_test.tracks) == ["1", "2", "3"]
    nested = read_rekordbox_xml(hand, playlist="Playlist Folder/Nested Playlist Folder/Test")
    assert [a.track.source_id for a in nested.tracks] == ["3"]
    with pytest.raises(RekordboxError, match=r"no playlist named 'Nope'.*Intelligent Playlist"):
        read_rekordbox_xml(hand, playlist="Nope")


def test_playlist_keyed_by_location(tmp_path: Path) -> None:
    tracks = "".join(
        f'<TRACK TrackID="{i}" Name="T{i}" TotalTime="9" Location="file://localhost/m/{i}.mp3"/>'
        for i in (1, 2, 3)
    )
    playlists = (
        '<PLAYLISTS><NODE Type="0" Name="ROOT" Count="1">'
        '<NODE Name="By path" Type="1" KeyType="1" Entries="2">'
        '<TRACK Key="file://localhost/m/3.mp3"/><TRACK Key="file://localhost/m/1.mp3"/>'
        "</NODE></NODE></PLAYLISTS>"
    )
    path = _xml(tmp_path, tracks)
    path.write_text(path.read_text().replace("</DJ_PLAYLISTS>", playlists + "</DJ_PLAYLISTS>"))
    chosen = read_rekordbox_xml(path, playlist="By path")
    assert [a.track.title for a in chosen.tracks] == ["T1", "T3"]


def _xml(tmp_path: Path, tracks: str, name: str = "lib.xml", head: str = "") -> Path:
    path = tmp_path / name
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n{head}<DJ_PLAYLISTS Version="1.0.0">'
        '<PRODUCT Name="rekordbox" Version="6.8.2" Company="AlphaTheta"/>'
        f"<COLLECTION>{tracks}</COLLECTION></DJ_PLAYLISTS>",
        encoding="utf-8",
    )
    return path


GOOD = (
    '<TRACK TrackID="1" Name="Good" Artist="A" TotalTime="200" AverageBpm="120.00" '
    'Tonality="8A" Comments="peak time, Energy 7" Location="file://localhost/m/good.mp3">'
    '<TEMPO Inizio="0.500" Bpm="120.00" Metro="4/4" Battito="1"/>'
    '<POSITION_MARK Name="Drop" Type="4" Start="64.500" End="72.500" Num="2" '
    'Red="255" Green="0" Blue="128"/></TRACK>'
)

BILLION_LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n'
)
EXTERNAL = '<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda p: _xml(p, GOOD.replace('Name="Good"', 'Name="&lol3;"'), head=BILLION_LAUGHS),
         "refused an entity declaration.*billion-laughs"),
        (lambda p: _xml(p, GOOD.replace('Name="Good"', 'Name="&xxe;"'), head=EXTERNAL),
         "refused an entity declaration"),
        (lambda p: _xml(p, GOOD, head='<!DOCTYPE DJ_PLAYLISTS SYSTEM "http://x.invalid/d">\n'),
         r"refused an external reference \('http://x.invalid/d'\)"),
        (lambda p: _xml(p, GOOD.replace("</TRACK>", "")), r"malformed XML \(mismatched tag"),
        (lambda p: (p / "lib.xml").write_text("<html><body/></html>") and p / "lib.xml",
         r"not a Rekordbox XML export \(root element <html>"),
        (lambda p: (p / "lib.xml").write_text("<DJ_PLAYLISTS/>") and p / "lib.xml",
         "without a <COLLECTION>"),
        (lambda p: (p / "lib.xml").write_bytes(b"\x00\xff binary") and p / "lib.xml",
         "malformed XML"),
        (lambda p: p / "missing.xml", "cannot read"),
    ],
    ids=["billion-laughs", "external-entity", "external-dtd", "malformed", "html",
         "no-collection", "binary", "missing-file"],
)
def test_fatal_inputs_raise_one_line_error(content, message: str, tmp_path: Path) -> None:
    path = content(tmp_path)
    with pytest.raises(RekordboxError, match=message) as caught:
        read_rekordbox_xml(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_bad_tracks_are_reported_and_the_rest_imported(tmp_path: Path) -> None:
    bad = (
        '<TRACK TrackID="2" Name="Zero" TotalTime="0" Location="file://localhost/m/zero.mp3">'
        '<TEMPO Inizio="0.1" Bpm="128" Metro="4/4" Battito="1"/></TRACK>'
        '<TRACK TrackID="3" Name="NoGrid" TotalTime="100" Location="file://localhost/m/n.mp3">'
        '<POSITION_MARK Name="" Type="0" Start="-1.5" Num="-1"/>'
        '<POSITION_MARK Name="" Type="0" Start="2.0" Num="-1"/></TRACK>'
        '<TRACK TrackID="4" Name="Broken" AverageBpm="fast" Location="file://localhost/b.mp3"/>'
        '<TRACK TrackID="5" Name="BadUrl" TotalTime="100" Location="file://localhost/%FF.mp3"/>'
        '<TRACK TrackID="6" Name="Messy" TotalTime="100" Location="file://localhost/m/x.mp3">'
        '<TEMPO Inizio="30.0" Bpm="120" Metro="4/4" Battito="1"/>'
        '<TEMPO Inizio="-0.2" Bpm="120" Metro="4/4" Battito="1"/>'
        '<TEMPO Inizio="30.0" Bpm="121" Metro="4/4" Battito="1"/>'
        '<POSITION_MARK Name="" Type="0" Start="50000" Num="-1"/>'
        '<POSITION_MARK Name="" Type="0" Start="10.0" Num="3" Red="1" Green="2" Blue="3"/>'
        "</TRACK>"
    )
    library = read_rekordbox_xml(_xml(tmp_path, GOOD + bad))
    by_id = {a.track.source_id: a for a in library.tracks}
    assert sorted(by_id) == ["1", "2", "3", "5", "6"] and library.skipped == 1

    def problems_of(track_id: str) -> list[str]:
        return [p for p in library.problems if f": track {track_id} (" in p]

    assert all(p.startswith(str(tmp_path / "lib.xml")) for p in library.problems)
    assert by_id["2"].track.duration_s is None
    assert problems_of("2") == [f"{tmp_path / 'lib.xml'}: track 2 (Zero): TotalTime='0': "
                                "duration unknown"]
    assert by_id["3"].grid == [] and [c.start_s for c in by_id["3"].cues] == [2.0]
    assert any("no TEMPO entries" in p for p in problems_of("3"))
    assert any("POSITION_MARK 1 skipped (Start=-1.5 is negative)" in p for p in problems_of("3"))
    assert any("skipped (could not convert string to float: 'fast')" in p
               for p in problems_of("4"))
    assert by_id["5"].track.path is None and problems_of("5")

    messy = by_id["6"]
    # Sorted, the duplicate at 30 s dropped, the negative anchor moved on by one beat (0.5 s).
    assert [(s.start_s, s.bpm, s.beat_in_bar) for s in messy.grid] == [
        (0.3, 120.0, 2), (30.0, 120.0, 1)
    ]
    assert [c.start_s for c in messy.cues] == [10.0] and messy.cues[0].color == "#010203"
    joined = " | ".join(problems_of("6"))
    for expected in ("out of order", "duplicate TEMPO entry at Inizio=30.0",
                     "Inizio=-0.2 is negative", "POSITION_MARK at 50000.0 s skipped"):
        assert expected in joined

    good = by_id["1"]
    assert good.key == "8A" and good.bpm == 120.0 and good.energy_rating == 7.0
    assert good.cues == [Cue(start_s=64.5, end_s=72.5, kind="hot", slot=2, name="Drop",
                             color="#FF0080")]
    assert good.metadata.provenance == {
        "xml": str(tmp_path / "lib.xml"), "rekordbox_version": "6.8.2", "track_id": "1",
        "location": "file://localhost/m/good.mp3",
    }


def test_negative_anchor_repair_keeps_the_beats(tmp_path: Path) -> None:
    track = ('<TRACK TrackID="1" Name="N" TotalTime="20" Location="file://localhost/n.mp3">'
             '<TEMPO Inizio="-0.700" Bpm="100.00" Metro="4/4" Battito="3"/></TRACK>')
    grid = read_rekordbox_xml(_xml(tmp_path, track)).tracks[0].grid
    true = -0.7 + 0.6 * np.arange(40)
    true = true[(true >= 0) & (true < 20)]
    np.testing.assert_allclose(beat_times(grid, 20.0), true, atol=1e-6)
    assert grid[0].beat_in_bar == 1  # -0.7 s was beat 3, so 0.5 s is beat 1 of the next bar


@pytest.mark.parametrize(
    ("location", "path"),
    [
        ("file://localhost/C:/Users/dj/Music/a%20b.mp3", "C:/Users/dj/Music/a b.mp3"),
        ("file://localhost/Volumes/USB%20Stick/C/x.wav", "/Volumes/USB Stick/C/x.wav"),
        ("file:///home/dj/%E3%81%82%20Caf%C3%A9.flac", "/home/dj/あ Café.flac"),
        ("file://localhost/Users/dj/100%25%20Pure%20%231.aiff", "/Users/dj/100% Pure #1.aiff"),
        ("file://localhost/Users/dj/Name with #.mp3", "/Users/dj/Name with #.mp3"),
        ("http://example.com/a.mp3", None),
        ("file://localhost/tidal:tracks:123", None),
        ("", None),
    ],
)
def test_location_decoding(location: str, path: str | None) -> None:
    assert location_to_path(location) == path
    if path is not None and "Name with #" not in location:
        assert location_to_path(path_to_location(path)) == path


def test_audio_root_remap_and_hash(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    (root / "House").mkdir(parents=True)
    audio = root / "House" / "a b.wav"
    audio.write_bytes(b"RIFF fake audio bytes")
    tracks = (
        '<TRACK TrackID="1" Name="A" TotalTime="9" '
        'Location="file://localhost/Users/dj/Music/House/a%20b.wav"/>'
        '<TRACK TrackID="2" Name="B" TotalTime="9" '
        'Location="file://localhost/Users/dj/Music/Techno/gone.wav"/>'
    )
    library = read_rekordbox_xml(_xml(tmp_path, tracks), audio_root=root)
    first, second = library.tracks
    assert first.track.path == str(audio) and first.track.content_hash == content_hash(audio)
    assert first.metadata.provenance["original_path"] == "/Users/dj/Music/House/a b.wav"
    # Nothing exists for B: its path relative to the library's common folder is kept.
    assert second.track.path == str(root / "Techno" / "gone.wav")
    assert second.track.content_hash is None and library.audio_found == 1
    unhashed = read_rekordbox_xml(_xml(tmp_path, tracks), audio_root=root, hash_audio=False,
                                  tier=1)
    assert unhashed.tracks[0].track.content_hash is None
    assert unhashed.tracks[0].metadata.tier == Tier.VERIFIED
    assert unhashed.tracks[0].metadata.confidence == 1.0


def test_audio_root_remaps_windows_paths(tmp_path: Path) -> None:
    (tmp_path / "Music" / "Techno").mkdir(parents=True)
    (tmp_path / "Music" / "Techno" / "Track 1.flac").write_bytes(b"fLaC")
    track = ('<TRACK TrackID="1" Name="W" TotalTime="9" '
             'Location="file://localhost/D:/DJ/Music/Techno/Track%201.flac"/>')
    library = read_rekordbox_xml(_xml(tmp_path, track), audio_root=tmp_path)
    assert library.tracks[0].track.path == str(tmp_path / "Music" / "Techno" / "Track 1.flac")
    assert library.audio_found == 1


def test_writer_output_is_rekordbox_shaped_and_round_trips(tmp_path: Path) -> None:
    from defusedxml.ElementTree import parse

    annotation = TrackAnnotation(
        track=TrackIdentity(path=str(tmp_path / "Café #1.mp3"), duration_s=300.4, title="T",
                            artist="A", genre="Techno"),
        grid=[TempoSegment(start_s=0.1234, bpm=127.5),
              TempoSegment(start_s=60.2, bpm=130.0, beat_in_bar=3)],
        cues=[Cue(start_s=0.123, kind="memory"),
              Cue(start_s=30.0, end_s=32.0, kind="hot", slot=7, name="Loop", color="#00FF80")],
        key="Am", bpm=128.0, energy_rating=6,
    )
    path = write_rekordbox_xml([annotation], tmp_path / "out.xml").path
    text = path.read_text(encoding="utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<DJ_PLAYLISTS')
    root = parse(str(path)).getroot()
    track = root.find("COLLECTION/TRACK")
    assert root.find("COLLECTION").get("Entries") == "1"
    assert track.get("TotalTime") == "300" and track.get("AverageBpm") == "128.00"
    assert track.get("Location") == path_to_location(tmp_path / "Café #1.mp3")
    assert [t.attrib for t in track.findall("TEMPO")] == [
        {"Inizio": "0.123", "Bpm": "127.50", "Metro": "4/4", "Battito": "1"},
        {"Inizio": "60.200", "Bpm": "130.00", "Metro": "4/4", "Battito": "3"},
    ]
    assert track.findall("POSITION_MARK")[1].attrib == {
        "Name": "Loop", "Type": "4", "Start": "30.000", "End": "32.000", "Num": "7",
        "Red": "0", "Green": "255", "Blue": "128",
    }
    assert root.find("PLAYLISTS/NODE/NODE").get("Name") == "edm"

    back = read_rekordbox_xml(path).tracks[0]
    # Rekordbox keeps milliseconds and whole-second durations; everything else is exact.
    expected = annotation.model_copy(update={
        "grid": [annotation.grid[0].model_copy(update={"start_s": 0.123}), annotation.grid[1]],
        "track": annotation.track.model_copy(update={"duration_s": 300.0, "source_id": "1"}),
    })
    assert _labels(back) == _labels(expected)


@needs_fixtures
def test_writer_updates_a_base_export(tmp_path: Path) -> None:
    base = FIXTURES / "rekordbox-5.8.6-export.xml"
    original = read_rekordbox_xml(base)
    demo = next(a for a in original.tracks if a.track.title == "Demo Track 1")
    corrected = demo.model_copy(update={
        "grid": [TempoSegment(start_s=0.030, bpm=128.0)],
        "cues": [*demo.cues[1:], Cue(start_s=60.030, kind="hot", slot=0, name="Drop")],
    })
    new = TrackAnnotation(track=TrackIdentity(path="/music/new.mp3", duration_s=10, title="N"))
    report = write_rekordbox_xml([corrected, new], tmp_path / "merged.xml", base=base)
    assert (report.updated, report.added, report.unchanged) == (1, 1, 5)
    merged = read_rekordbox_xml(report.path)
    assert len(merged.tracks) == len(original.tracks) + 1
    again = next(a for a in merged.tracks if a.track.title == "Demo Track 1")
    assert again.grid == corrected.grid and again.cues == corrected.cues
    others = [_labels(a) for a in merged.tracks if a.track.title not in ("Demo Track 1", "N")]
    assert others == [_labels(a) for a in original.tracks if a.track.title != "Demo Track 1"]
