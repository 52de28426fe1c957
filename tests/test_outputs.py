"""Outputs a DJ and a researcher can trust (issue 17): what edm writes and prints.

JSON/JAMS fields, no silent overwrites, ``--out`` followed as given, honest exit codes, clean
decoder errors, readable tables and plain-words help.
"""

from __future__ import annotations

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
    assert "failed" in lines[-1]
