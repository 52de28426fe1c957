"""Outputs a DJ and a researcher can trust (issue 17): what edm writes and prints.

JSON/JAMS fields, no silent overwrites, ``--out`` followed as given, honest exit codes, clean
decoder errors, readable tables and plain-words help.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edm.cli import main
from edm.data.schema import TempoSegment, TrackAnnotation, TrackIdentity, save_annotation

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:jsonschema.*")


def _edm(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------------------------------------
# edm data: empty folders, validate's summary


@pytest.mark.parametrize("command", [["stats"], ["export", "--format", "csv", "--out"],
                                     ["validate"]])
def test_data_commands_on_an_empty_folder_say_so_and_fail(tmp_path: Path, command) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an annotation")
    out = [str(tmp_path / "c.csv")] if command[0] == "export" else []
    code, _, stderr = _edm("data", command[0], str(empty), *command[1:], *out)
    assert code == 1
    assert f"no annotation files in {empty}" in stderr
    assert not (tmp_path / "c.csv").exists()


def _missing_audio_library(folder: Path, tracks: int) -> None:
    """``tracks`` annotations whose audio is elsewhere (warnings); the first has an error."""
    for index in range(tracks):
        cues = [] if index else [{"start_s": 500.0}]  # past the 100 s end: an error
        save_annotation(TrackAnnotation.model_validate({
            "track": TrackIdentity(path=f"/elsewhere/{index}.mp3", duration_s=100.0,
                                   title=f"t{index}").model_dump(),
            "grid": [TempoSegment(start_s=0.0, bpm=128.0).model_dump()], "cues": cues,
        }), folder / f"t{index}.yaml")


def test_validate_prints_the_summary_first_and_hides_warnings_on_request(tmp_path: Path) -> None:
    ann = tmp_path / "ann"
    _missing_audio_library(ann, 30)
    code, stdout, _ = _edm("data", "validate", str(ann))
    lines = stdout.splitlines()
    assert code == 1
    assert lines[0] == f"{ann}: 30 files, 1 error, 30 warnings"
    assert lines[1] == "  errors: cue_past_end: 1" and lines[2] == "  warnings: missing_audio: 30"
    assert lines[3].startswith("error: cue_past_end:")  # errors before any warning
    assert sum(line.startswith("warning: missing_audio") for line in lines) == 30

    code, stdout, _ = _edm("data", "validate", str(ann), "--errors-only")
    lines = stdout.splitlines()
    assert code == 1
    assert lines[0] == f"{ann}: 30 files, 1 error, 30 warnings (not listed: --errors-only)"
    assert [line for line in lines if line.startswith(("error:", "warning:"))] == [lines[3]]
    assert "t0.yaml" in lines[3]

    code, stdout, _ = _edm("data", "validate", str(ann), "--errors-only", "--json")
    import json

    report = json.loads(stdout)
    assert (report["errors"], report["warnings"]) == (1, 30)
    assert [f["check"] for f in report["findings"]] == ["cue_past_end"]


def test_counts_read_in_the_singular(tmp_path: Path) -> None:
    ann = tmp_path / "ann"
    _missing_audio_library(ann, 1)
    code, stdout, _ = _edm("data", "stats", str(ann))
    assert code == 0 and f"{ann}: 1 track" in stdout and "1 tracks" not in stdout
    code, stdout, _ = _edm("data", "export", str(ann), "--format", "jams", "--out",
                           str(tmp_path / "j"))
    assert code == 0 and "1 track written" in stdout and "(0 files failed)" in stdout


# ---------------------------------------------------------------------------------------------
# Decoders


def test_a_text_file_named_mp3_gives_one_clean_line_and_no_decoder_noise(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp3"
    fake.write_bytes(b"this is not an mp3, just some text\n" * 40 + bytes(3000))
    # A subprocess: libmpg123 writes to file descriptor 2, which CliRunner cannot capture.
    result = subprocess.run(
        [sys.executable, "-c", "from edm.cli import main; main()", "analyze", str(fake),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"{fake}: not a readable audio file (Invalid data found when processing " \
                       "input)"
    assert "Note:" not in result.stderr and "mpg123" not in result.stderr.lower()
    assert lines[-1] == "1 of 1 input failed, 0 analysed"


# ---------------------------------------------------------------------------------------------
# edm analyze: JSON and JAMS fields, where files go, messages

SR = 44100
FIXTURES = Path(__file__).resolve().parents[1] / "shared" / "fixtures" / "rekordbox"
if not FIXTURES.is_dir():
    FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekordbox"
#: Six tracks (two demo tracks, four sampler one-shots without a TEMPO), none of them here.
EXPORT = FIXTURES / "rekordbox-6.6.2-export.xml"
needs_fixtures = pytest.mark.skipif(not EXPORT.is_file(), reason="shared fixtures not present")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``lib/a/loop.wav`` and ``lib/b/loop.wav``: two 24-second synth tracks, same file name."""
    from edm.audio import write_audio
    from edm.synth import synthesize_track

    root = tmp_path_factory.mktemp("lib")
    truth = {}
    for folder, seed, genre in (("a", 21, "house"), ("b", 22, "techno")):
        track = synthesize_track(seed, genre=genre, minutes=0.4, tempo_change=False)
        path = write_audio(root / folder / "loop.wav", track.audio, SR)
        truth[folder] = (path, track.truth)
    return {"root": root, "truth": truth}


def _json(path: Path) -> dict:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def test_same_file_names_in_subfolders_keep_their_relative_paths(tmp_path: Path, library) -> None:
    out = tmp_path / "out"
    code, _, stderr = _edm("analyze", str(library["root"]), "--out", str(out))
    assert code == 0, stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "a/loop.json", "b/loop.json"]
    for folder in ("a", "b"):
        path, truth = library["truth"][folder]
        data = _json(out / folder / "loop.json")
        assert data["path"] == str(path.resolve())
        assert data["bpm"] == pytest.approx(truth.grid[0].bpm, rel=0.01)


def test_json_has_beats_downbeats_boundaries_sections_and_cues(tmp_path: Path, library) -> None:
    import mir_eval
    import numpy as np

    from edm.data.schema import beat_times, downbeat_times

    path, truth = library["truth"]["a"]
    code, _, stderr = _edm("analyze", str(path), "--out", str(tmp_path / "out"))
    assert code == 0, stderr
    data = _json(tmp_path / "out" / "loop.json")
    assert data["version"] == 2 and data["model_version"].startswith("sha256:")
    assert data["edm_version"] and data["backbone"] == "spectral"
    beats, downbeats = np.array(data["beats"]), np.array(data["downbeats"])
    # The lists are the grid's beats, and they are right against the synth's exact truth.
    expanded = beat_times([TempoSegment(**s) for s in data["grid"]], data["duration_s"])
    np.testing.assert_allclose(beats, expanded, atol=1e-4)
    assert set(downbeats.round(4)) <= set(beats.round(4))
    end = truth.track.duration_s
    assert mir_eval.beat.f_measure(beat_times(truth.grid, end), beats) > 0.95
    assert mir_eval.beat.f_measure(downbeat_times(truth.grid, end), downbeats) > 0.9
    # Confidences are the heads' probabilities at the events, not a constant.
    confidence = np.array(data["beat_confidence"])
    assert len(confidence) == len(beats) and ((confidence >= 0) & (confidence <= 1)).all()
    assert confidence.mean() > 0.6 and confidence.std() > 0.0
    assert len(data["downbeat_confidence"]) == len(downbeats)
    sections = data["sections"]
    assert [set(s) for s in sections] == [{"start_s", "end_s", "label", "energy",
                                           "confidence"}] * len(sections)
    # A clean synth track: the heads are sure of its grid, and every section says how sure.
    assert data["grid_confidence"]["beats"] > 0.6
    assert 0.0 <= data["grid_confidence"]["downbeats"] <= 1.0
    for section in sections:
        assert set(section["confidence"]) == {"boundary", "label", "beats"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in section["confidence"].values())
    assert sections[0]["confidence"]["boundary"] == 1.0
    assert sections[0]["start_s"] == 0.0 and sections[-1]["end_s"] == data["duration_s"]
    assert data["boundaries"] == [s["start_s"] for s in sections[1:]]
    assert len(data["boundary_confidence"]) == len(data["boundaries"])
    assert 0.0 <= sections[0]["energy"]["overall"] <= 1.0
    assert [c["start_s"] for c in data["cues"]] == [s["start_s"] for s in sections]
    assert data["annotation"]["grid"] == data["grid"]


def test_confidence_is_high_on_the_beats_and_low_between_them(library) -> None:
    from edm.analyze import analyze

    analysis = analyze(library["truth"]["a"][0])
    beats = analysis.grid.beats
    on = analysis.confidence_at("beat", beats)
    between = analysis.confidence_at("beat", beats + analysis.grid.beat_period_s / 2)
    assert on.mean() > 0.6 > 0.2 > between.mean()


def test_jams_carries_the_heads_confidences_and_the_model(tmp_path: Path, library) -> None:
    import jams

    path, _ = library["truth"]["b"]
    assert _edm("analyze", str(path), "--out", str(tmp_path / "j.json"))[0] == 0
    code, _, stderr = _edm("analyze", str(path), "--format", "jams", "--out", str(tmp_path))
    assert code == 0, stderr
    data = _json(tmp_path / "j.json")
    jam = jams.load(str(tmp_path / "loop.jams"))  # validates against the JAMS schema
    beat = jam.annotations.search(namespace="beat")[0]
    confidences = [obs.confidence for obs in beat.data]
    assert confidences[: len(data["beat_confidence"])] == data["beat_confidence"]
    assert len(set(confidences)) > 5  # not 1.0 everywhere
    segments = jam.annotations.search(namespace="segment_open")[0]
    assert [obs.confidence for obs in segments.data] == [None, *data["boundary_confidence"]]
    meta = beat.annotation_metadata
    assert meta.version == data["model_version"] and meta.data_source == "edm-analyze"
    assert meta.annotation_tools == f"edm {data['edm_version']}"
    assert meta.annotator["model"] == data["model"]
    assert meta.annotator["backbone"] == data["backbone"]


def test_labels_without_probabilities_carry_no_confidence(tmp_path: Path) -> None:
    from edm.data.jams_io import annotation_to_jams

    annotation = TrackAnnotation(track=TrackIdentity(duration_s=20.0),
                                 grid=[TempoSegment(start_s=0.5, bpm=128.0)],
                                 sections=[{"start_s": 0.0, "end_s": 8.0},
                                           {"start_s": 8.0, "end_s": 20.0, "label": "drop"}])
    jam = annotation_to_jams(annotation)
    for namespace in ("beat", "segment_open"):
        observations = jam.annotations.search(namespace=namespace)[0].data
        assert {obs.confidence for obs in observations} == {None}
    assert jam.annotations[0].annotation_metadata.data_source == "manual"


def test_out_is_followed_as_given_or_refused_with_the_reason(tmp_path: Path, library) -> None:
    path, _ = library["truth"]["a"]
    code, _, stderr = _edm("analyze", str(path), "--out", str(tmp_path / "result.json"))
    assert code == 0, stderr
    assert (tmp_path / "result.json").is_file() and _json(tmp_path / "result.json")["beats"]

    cues_dir = tmp_path / "cues_dir"
    code, _, stderr = _edm("analyze", str(path), "--format", "csv", "--out", f"{cues_dir}/")
    assert code == 0, stderr
    assert cues_dir.is_dir() and (cues_dir / "edm-cues.csv").is_file()

    # Refused before any analysis: nothing is written, the reason is named.
    code, _, stderr = _edm("analyze", str(library["root"]), "--out", str(tmp_path / "two.json"))
    assert code == 2 and "names one file, but 2 inputs give 2 json files" in stderr
    code, _, stderr = _edm("analyze", str(path), "--format", "csv", "--out",
                           str(tmp_path / "cues.json"))
    assert code == 2 and "csv output is one .csv file" in stderr
    assert not (tmp_path / "two.json").exists() and not (tmp_path / "cues.json").exists()


def test_a_long_track_name_is_not_cut_in_the_table(tmp_path: Path, library) -> None:
    import shutil

    name = "Artist Name feat. Another Artist - A Very Long Track Title (Extended Club Mix).wav"
    assert len(name) > 80
    shutil.copy(library["truth"]["a"][0], tmp_path / name)
    code, stdout, stderr = _edm("analyze", str(tmp_path / name), "--out", str(tmp_path / "o"))
    assert code == 0, stderr
    assert name in stdout


@needs_fixtures
def test_xml_notes_are_not_failures_and_missing_audio_hints_at_audio_root(
    tmp_path: Path, library
) -> None:
    import shutil

    code, _, stderr = _edm("analyze", str(EXPORT), "--out", str(tmp_path / "o"))
    assert code == 1
    assert "6 of 6 inputs failed, 0 analysed" in stderr  # not "10": 4 notes are no failures
    assert sum(line.startswith("note: ") and "no TEMPO" in line
               for line in stderr.splitlines()) == 4
    assert "hint: 6 of the XML's tracks are not at their Location" in stderr
    assert "--audio-root" in stderr.splitlines()[-1]

    root = tmp_path / "music"
    (root / "Demo Tracks").mkdir(parents=True)
    shutil.copy(library["truth"]["a"][0], root / "Demo Tracks" / "Demo Track 1.mp3")
    code, _, stderr = _edm("analyze", str(EXPORT), "--audio-root", str(root), "--out",
                           str(tmp_path / "o"))
    assert code == 1 and "5 of 6 inputs failed, 1 analysed" in stderr
    assert f"nor under --audio-root {root}" in stderr
    assert (tmp_path / "o" / "Demo Track 1.json").is_file()


# ---------------------------------------------------------------------------------------------
# Help in plain words; README and --help agree

README = Path(__file__).resolve().parents[1] / "README.md"


def _help(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["fit-heads", "label-audit"])
def test_help_opens_with_a_plain_recipe_and_its_cost_in_time(command: str) -> None:
    text = _help(command)
    description = text.split("Options:")[0]
    first_paragraphs = description.split("\n\n")[1:3]
    assert first_paragraphs[1].lstrip().startswith("Plain recipe"), first_paragraphs
    recipe = first_paragraphs[1]
    assert f"edm {command} " in recipe and "Time:" in recipe
    assert any(unit in recipe for unit in ("seconds", "minutes"))
    for jargon in ("out-of-fold", "co-teaching", "Tier 3", "Teacher"):  # flag names aside
        assert not re.search(rf"(?<!--){jargon}", description, re.IGNORECASE), jargon


def test_fit_heads_options_all_have_a_description() -> None:
    from edm.cli.cmd_fit_heads import command

    undocumented = [p.name for p in command.params
                    if isinstance(p, __import__("click").Option) and not p.help]
    assert undocumented == []
    text = " ".join(_help("fit-heads").split())
    assert "--label-smoothing FLOAT RANGE Soften the targets" in text
    assert "--epochs INTEGER RANGE Passes over the training tracks" in text
    assert "--seed INTEGER Random seed" in text


def test_readme_and_help_say_the_same_about_importing_into_rekordbox() -> None:
    def steps(text: str) -> str:
        text = " ".join(text.replace("→", ">").replace("*", "").split())
        start = text.index("To load the XML in Rekordbox")
        return text[start: text.index("Import To Collection", start)]

    readme = README.read_text(encoding="utf-8")
    help_text = _help("analyze")
    assert steps(readme) == steps(help_text)
    assert 'Preferences > View > Layout: tick "rekordbox xml"' in steps(readme)
    assert "Preferences > Advanced > Database > rekordbox xml: choose the file" in steps(readme)
    for text in (readme, help_text):
        assert "File → Import" not in text and "File > Import" not in text


def test_readme_format_table_lists_every_json_field(library, tmp_path: Path) -> None:
    path, _ = library["truth"]["a"]
    assert _edm("analyze", str(path), "--out", str(tmp_path / "r.json"))[0] == 0
    fields = set(_json(tmp_path / "r.json")) - {"format", "version", "elapsed_s", "beat_source",
                                                 "energy_source"}
    row = next(line for line in README.read_text(encoding="utf-8").splitlines()
               if line.startswith("| `edm analyze --format json`"))
    assert [f for f in sorted(fields) if f"`{f}`" not in row] == []


def test_data_export_follows_out_as_given(tmp_path: Path) -> None:
    ann = tmp_path / "ann"
    _missing_audio_library(ann, 2)
    cues_dir = tmp_path / "cues_dir"
    code, _, stderr = _edm("data", "export", str(ann), "--format", "csv", "--out", f"{cues_dir}/")
    assert code == 0, stderr
    assert (cues_dir / "edm-cues.csv").is_file()
    code, _, stderr = _edm("data", "export", str(ann), "--format", "jams", "--out",
                           str(tmp_path / "one.jams"))
    assert code == 2 and "names one file, but 2 inputs give 2 jams files" in stderr
    assert not (tmp_path / "one.jams").exists()
    code, _, stderr = _edm("data", "export", str(ann), "--format", "rekordbox", "--out",
                           str(tmp_path / "lib.csv"))
    assert code == 2 and "rekordbox output is one .xml file" in stderr


def test_synth_summary_counts_in_the_singular(tmp_path: Path) -> None:
    code, stdout, stderr = _edm("synth", str(tmp_path / "s"), "--tracks", "1", "--minutes",
                                "0.2", "--noise", "none", "--seed", "4")
    assert code == 0, stderr
    assert stdout.startswith("1 track (") and "; 0 injected errors" in stdout
