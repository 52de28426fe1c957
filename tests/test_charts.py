"""Chart readers: one chart of each format with a tempo change and an offset, written here."""

from __future__ import annotations

import json
from pathlib import Path

import mir_eval
import numpy as np
import pytest
from click.testing import CliRunner

from edm.cli import main
from edm.data.charts import ChartError, read_chart
from edm.data.schema import Tier, load_annotation

OSU = """osu file format v{version}

[General]
AudioFilename: audio.mp3
AudioLeadIn: 2000

[Metadata]
Title:Song
Artist:Someone

[TimingPoints]
1000,500,4,2,0,60,1,0
3000,-100,4,2,0,60,0,1
4000,-100,4,2,0,60,0,0
5000,375,3,2,0,60,1,0

[HitObjects]
256,192,1000,1,0,0:0:0:0:
256,192,8000,1,0,0:0:0:0:
"""


def _osu_expected(shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """120 BPM from 1.0 s (its grid running back to 0), then 160 BPM in 3/4 from 5.0 s."""
    first = np.arange(0.0, 5.0 - 1e-9, 0.5) + shift
    second = 5.0 + shift + np.arange(0, 20) * 0.375
    beats = np.concatenate([first, second])
    downbeats = np.concatenate([[1.0 + shift, 3.0 + shift], second[::3]])
    return beats, downbeats


def test_osu_tempo_change_meter_and_kiai(tmp_path: Path) -> None:
    path = tmp_path / "song.osu"
    path.write_text(OSU.format(version=14))
    annotation = read_chart(path).to_annotation(duration_s=12.0)
    beats, downbeats = _osu_expected()
    np.testing.assert_allclose(annotation.beats(), beats[beats < 12.0], atol=1e-6)
    np.testing.assert_allclose(annotation.downbeats(), downbeats[downbeats < 12.0], atol=1e-6)
    assert [(c.start_s, c.name) for c in annotation.cues] == [(3.0, "kiai"), (4.0, "kiai end")]
    assert annotation.metadata.tier == Tier.VERIFIED and annotation.sections == []
    assert annotation.bpm == pytest.approx(160.0)


def test_osu_before_v5_is_played_24ms_late(tmp_path: Path) -> None:
    path = tmp_path / "old.osu"
    path.write_text(OSU.format(version=4))
    beats, _ = _osu_expected(shift=0.024)
    annotation = read_chart(path).to_annotation(duration_s=12.0)
    # The grid extends back from 1.024 s, so its first beat is 0.024 s.
    np.testing.assert_allclose(annotation.beats(), beats[beats < 12.0], atol=1e-6)


SM = """#TITLE:Song;
#ARTIST:Someone;
#MUSIC:audio.ogg;
#OFFSET:-0.100;
#BPMS:0.000=120.000,
8.000=240.000;
#STOPS:4.000=0.500;
{extra}
#NOTES:
     dance-single:
     :
     Beginner:
     1:
     0,0,0,0,0:
1000
0000
0000
0000
,
0000
0000
0000
0000
,
0000
0000
0000
0100
;
"""


def _sm_expected() -> np.ndarray:
    """Beat 0 at 0.1 s; 0.5 s per beat; a 0.5 s stop after beat 4; 0.25 s per beat from 8."""
    first = 0.1 + 0.5 * np.arange(5)                   # beats 0..4
    middle = first[-1] + 0.5 + 0.5 * np.arange(1, 5)   # beats 5..8
    last = middle[-1] + 0.25 * np.arange(1, 40)        # beats 9..
    return np.concatenate([first, middle, last])


@pytest.mark.parametrize("suffix", [".sm", ".ssc"])
def test_stepmania_offset_bpms_and_stops(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"song{suffix}"
    path.write_text(SM.format(extra=""))
    chart = read_chart(path)
    annotation = chart.to_annotation(duration_s=10.0)
    expected = _sm_expected()
    expected = expected[expected < 10.0]
    # The schema's grid runs back to 0 s from beat 0 at 0.1 s: no earlier beat fits.
    np.testing.assert_allclose(annotation.beats(), expected, atol=1e-6)
    np.testing.assert_allclose(annotation.downbeats(), expected[::4], atol=1e-6)
    assert chart.audio == "audio.ogg" and chart.artist == "Someone"
    assert chart.last_event_s == pytest.approx(expected[12])  # notes end with measure 3
    assert mir_eval.beat.f_measure(mir_eval.beat.trim_beats(expected),
                                   mir_eval.beat.trim_beats(annotation.beats())) == 1.0


def test_ssc_delays_and_time_signatures(tmp_path: Path) -> None:
    path = tmp_path / "song.ssc"
    path.write_text(SM.format(extra="#DELAYS:2.000=0.250;\n#TIMESIGNATURES:0.000=4=4,4.000=3=4;"))
    annotation = read_chart(path).to_annotation(duration_s=10.0)
    expected = _sm_expected()
    expected[2:] += 0.25  # the delay comes before beat 2
    expected = expected[expected < 10.0]
    np.testing.assert_allclose(annotation.beats(), expected, atol=1e-6)
    np.testing.assert_allclose(annotation.downbeats(), [expected[0], *expected[4::3]], atol=1e-6)


def test_chart_offset_argument_shifts_every_time(tmp_path: Path) -> None:
    path = tmp_path / "song.sm"
    path.write_text(SM.format(extra=""))
    shifted = read_chart(path, offset_s=-0.009).to_annotation(duration_s=10.0)
    expected = _sm_expected() - 0.009
    np.testing.assert_allclose(shifted.beats(), expected[expected < 10.0], atol=1e-6)


QUA = """AudioFile: audio.mp3
Title: Song
Artist: Someone
TimingPoints:
- StartTime: 250
  Bpm: 150
- StartTime: 4250
  Bpm: 100
  Signature: Triple
HitObjects:
- StartTime: 250
  Lane: 1
- StartTime: 9000
  EndTime: 9500
  Lane: 2
"""


def test_quaver_timing_points(tmp_path: Path) -> None:
    path = tmp_path / "song.qua"
    path.write_text(QUA)
    chart = read_chart(path)
    annotation = chart.to_annotation()
    assert annotation.track.duration_s == pytest.approx(10.5)  # last note end + 1 s
    first = 0.25 + 0.4 * np.arange(10)  # 4.25 s is 10 beats after 0.25 s
    second = 4.25 + 0.6 * np.arange(11)
    expected = np.concatenate([first, second])
    np.testing.assert_allclose(annotation.beats(), expected[expected < 10.5], atol=1e-6)
    np.testing.assert_allclose(annotation.downbeats(), [0.25, 1.85, 3.45, 4.25, 6.05, 7.85,
                                                        9.65], atol=1e-6)


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("a.osu", "osu file format v14\n[TimingPoints]\n0,-100,4,2,0,60,0,0\n", "no uninherited"),
    ("a.osu", "osu file format v14\n[TimingPoints]\nabc,def\n", "malformed"),
    ("a.sm", "#TITLE:x;\n", "no #BPMS"),
    ("a.sm", "#BPMS:0=120;\n#WARPS:4=2;\n", "WARPS"),
    ("a.qua", "TimingPoints:\n- StartTime: 0\n", "no usable Bpm"),
    ("a.qua", "- just a list\n", "not a Quaver map"),
    ("a.txt", "", "not a chart"),
])
def test_bad_charts_fail_with_the_file_name(tmp_path: Path, name: str, text: str,
                                            problem: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ChartError, match=problem) as error:
        read_chart(path)
    assert str(path) in str(error.value)


def test_data_import_chart_with_its_audio(tmp_path: Path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "audio.wav", np.zeros((44100 * 12, 2)), 44100)
    path = tmp_path / "song.osu"
    path.write_text(OSU.format(version=14).replace("audio.mp3", "audio.wav"))
    result = CliRunner().invoke(main, ["data", "import", str(path), "--out",
                                       str(tmp_path / "ann"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    annotation = load_annotation(summary["out"])
    assert annotation.track.duration_s == pytest.approx(12.0)
    assert annotation.track.content_hash and annotation.track.path.endswith("audio.wav")
    beats, _ = _osu_expected()
    np.testing.assert_allclose(annotation.beats(), beats[beats < 12.0], atol=1e-6)


def test_data_import_bad_chart_exits_nonzero(tmp_path: Path) -> None:
    path = tmp_path / "bad.sm"
    path.write_text("#TITLE:x;")
    result = CliRunner().invoke(main, ["data", "import", str(path), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "bad.sm: no #BPMS" in result.output
