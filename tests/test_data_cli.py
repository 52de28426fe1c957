"""`edm data import|stats|validate|export` through click's CliRunner."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edm.cli import main
from edm.data.jams_io import load_truth
from edm.data.rekordbox import read_rekordbox_xml
from edm.data.schema import (
    Cue,
    Metadata,
    TempoSegment,
    TrackAnnotation,
    TrackIdentity,
    iter_annotation_files,
    load_annotation,
    save_annotation,
)

FIXTURES = Path(__file__).resolve().parents[1] / "shared" / "fixtures" / "rekordbox"
if not FIXTURES.is_dir():
    FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekordbox"
EXPORT = FIXTURES / "rekordbox-5.8.6-export.xml"
needs_fixtures = pytest.mark.skipif(not EXPORT.is_file(), reason="shared fixtures not present")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:jsonschema.*")


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["data", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@needs_fixtures
def test_import_then_stats(tmp_path: Path) -> None:
    out = tmp_path / "ann"
    code, stdout, stderr = _run("import", str(EXPORT), "--out", str(out), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["tracks_in_file"] == summary["imported"] == summary["written"] == 6
    assert summary["rekordbox_version"] == "5.8.6" and summary["skipped"] == 0
    assert len(summary["problems"]) == 4  # four sampler one-shots without a TEMPO
    files = list(iter_annotation_files(out))
    assert len(files) == 6
    assert {load_annotation(f).metadata.tier for f in files} == {2}

    code, stdout, _ = _run("stats", str(out), "--json")
    stats = json.loads(stdout)
    assert code == 0 and stats["tracks"] == 6 and stats["missing_audio"] == 6
    assert stats["cues"]["total"] == 8 and stats["cues"]["memory"] == 8
    assert stats["by_source"] == {"rekordbox-xml": 6} and stats["by_tier"] == {"2": 6}
    assert stats["grid"]["tracks_with_grid"] == 2
    assert sum(stats["cues"]["per_track_histogram"].values()) == 6
    code, stdout, _ = _run("stats", str(out))
    assert code == 0 and "rekordbox-xml: 6" in stdout and "audio missing" in stdout


@needs_fixtures
def test_import_tier_playlist_and_keeps_edited_files(tmp_path: Path) -> None:
    out = tmp_path / "ann"
    code, stdout, _ = _run("import", str(EXPORT), "--out", str(out), "--tier", "1",
                           "--playlist", "Playlist1", "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["imported"] == 2
    first = next(iter_annotation_files(out))
    edited = load_annotation(first)
    fixed = edited.model_copy(update={
        "metadata": edited.metadata.model_copy(update={"version": 2, "source": "edm-audit"})
    })
    save_annotation(fixed, first)
    code, stdout, _ = _run("import", str(EXPORT), "--out", str(out), "--json")
    assert json.loads(stdout)["kept_edited"] == [str(first)]
    assert load_annotation(first).metadata.version == 2
    _run("import", str(EXPORT), "--out", str(out), "--overwrite")
    assert load_annotation(first).metadata.version == 1


def test_import_fatal_and_partial_failures(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]>'
                    "<DJ_PLAYLISTS><COLLECTION/></DJ_PLAYLISTS>")
    code, _, stderr = _run("import", str(bomb), "--out", str(tmp_path / "a"))
    assert code == 1
    assert stderr.strip().splitlines() == [
        f"Error: {bomb}: refused an entity declaration ('a'); entity expansion and external "
        "entities are not allowed (billion-laughs / XXE protection)"
    ]
    partial = tmp_path / "partial.xml"
    partial.write_text(
        '<DJ_PLAYLISTS><COLLECTION Entries="2">'
        '<TRACK TrackID="1" Name="Fine" TotalTime="100" Location="file://localhost/a.mp3"/>'
        '<TRACK TrackID="2" Name="Bad" AverageBpm="x" Location="file://localhost/b.mp3"/>'
        "</COLLECTION></DJ_PLAYLISTS>"
    )
    code, stdout, stderr = _run("import", str(partial), "--out", str(tmp_path / "b"))
    assert code == 1
    assert f"{partial}: track 2 (Bad): skipped" in stderr
    assert "1 of 2 tracks imported" in stdout
    assert len(list(iter_annotation_files(tmp_path / "b"))) == 1


def _annotation(name: str, audio: Path | None, **update) -> TrackAnnotation:
    base = TrackAnnotation(
        track=TrackIdentity(path=str(audio) if audio else None, duration_s=60.0, title=name,
                            content_hash=f"{name:0>32}"),
        grid=[TempoSegment(start_s=0.5, bpm=120.0)],
        cues=[Cue(start_s=0.5), Cue(start_s=16.5, kind="hot", slot=0, name="Drop")],
        metadata=Metadata(source="manual"),
    )
    return base.model_copy(update=update)


def test_validate_finds_each_problem(tmp_path: Path) -> None:
    audio = {}
    for name in ("clean", "offgrid", "late"):
        audio[name] = tmp_path / f"{name}.wav"
        audio[name].write_bytes(b"RIFF")
    ann = tmp_path / "ann"
    save_annotation(_annotation("clean", audio["clean"]), ann / "clean.yaml")
    code, stdout, _ = _run("validate", str(ann), "--json")
    assert code == 0 and json.loads(stdout)["findings"] == []

    save_annotation(_annotation("offgrid", audio["offgrid"], cues=[Cue(start_s=16.545)]),
                    ann / "off.yaml")
    save_annotation(_annotation("late", audio["late"], cues=[Cue(start_s=62.5)]),
                    ann / "late.yaml")
    save_annotation(_annotation("clean", None), ann / "dup.yaml")  # same hash, no audio
    (ann / "broken.yaml").write_text("schema_version: 1\ntrack: {duration_s: -3}\n")
    (ann / "grid.yaml").write_text(
        "track: {duration_s: 60}\ngrid:\n- {start_s: 10.0, bpm: 120}\n- {start_s: 4.0, bpm: 120}\n"
    )
    code, stdout, _ = _run("validate", str(ann), "--json")
    report = json.loads(stdout)
    assert code == 1 and report["files"] == 6
    found = {(Path(f["file"]).name, f["check"]) for f in report["findings"]}
    assert found == {
        ("off.yaml", "cue_off_grid"), ("late.yaml", "cue_past_end"), ("dup.yaml", "duplicate"),
        ("dup.yaml", "missing_audio"), ("broken.yaml", "schema"), ("grid.yaml", "schema"),
    }
    by_check = {(Path(f["file"]).name, f["check"]): f for f in report["findings"]}
    assert "+45 ms from the nearest beat" in by_check["off.yaml", "cue_off_grid"]["message"]
    assert by_check["broken.yaml", "schema"]["message"].startswith("field track.duration_s:")
    assert by_check["grid.yaml", "schema"]["message"].startswith(
        "field grid: Value error, tempo segments must start in increasing order: 4.0 s follows"
    )
    assert by_check["dup.yaml", "missing_audio"]["severity"] == "warning"
    # A looser tolerance lets the 45 ms cue through.
    _, stdout, _ = _run("validate", str(ann), "--json", "--grid-tolerance-ms", "50")
    assert "cue_off_grid" not in {f["check"] for f in json.loads(stdout)["findings"]}
    code, stdout, _ = _run("validate", str(ann))
    assert code == 1
    assert f"error: cue_past_end: {ann / 'late.yaml'}: late: cue at 62.500 s" in stdout


def test_validate_strict_counts_warnings(tmp_path: Path) -> None:
    ann = tmp_path / "ann"
    save_annotation(_annotation("x", None), ann / "x.yaml")
    assert _run("validate", str(ann))[0] == 0
    assert _run("validate", str(ann), "--strict")[0] == 1


@needs_fixtures
def test_export_formats(tmp_path: Path) -> None:
    ann = tmp_path / "ann"
    _run("import", str(EXPORT), "--out", str(ann))
    imported = read_rekordbox_xml(EXPORT).tracks

    code, stdout, _ = _run("export", str(ann), "--format", "rekordbox", "--out",
                           str(tmp_path / "x.xml"), "--json")
    assert code == 0 and json.loads(stdout)["written"] == 6
    again = read_rekordbox_xml(tmp_path / "x.xml").tracks

    def labels(tracks: list[TrackAnnotation]) -> dict:
        return {a.track.source_id: a.model_dump(exclude={"metadata"}) for a in tracks}

    assert labels(again) == labels(imported)

    code, _, _ = _run("export", str(ann), "--format", "csv", "--out", str(tmp_path / "c.csv"))
    rows = list(csv.DictReader((tmp_path / "c.csv").open(encoding="utf-8")))
    assert code == 0 and len(rows) == 8
    assert {r["grid_offset_ms"] for r in rows} == {"0.0"} and {r["kind"] for r in rows} == {
        "memory"
    }
    assert {r["beat_in_bar"] for r in rows} == {"1"}

    code, _, _ = _run("export", str(ann), "--format", "jams", "--out", str(tmp_path / "j"))
    jams_files = sorted((tmp_path / "j").glob("*.jams"))
    assert code == 0 and len(jams_files) == 6
    assert [load_truth(f) for f in jams_files] == [
        load_annotation(f) for f in sorted(iter_annotation_files(ann))
    ]


def test_help_has_examples() -> None:
    for command in ("import", "stats", "validate", "export"):
        result = CliRunner().invoke(main, ["data", command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output
