"""LMMS project reader: exact grid and arrangement sections from small projects written here."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import mir_eval
import numpy as np
import pytest
from click.testing import CliRunner

from edm.cli import main
from edm.data.lmms import LmmsError, read_lmms, read_lmms_text, section_starts, smooth_voices
from edm.data.schema import Tier, load_annotation

#: Bar 1 at 120 BPM, bar 2 at 60 BPM (tempo automation, discrete). Voices: a lead in both
#: bars; a muted bass track and a muted lead clip in bar 2; a drum B+B track in bar 2 with a
#: muted inner hat; a note-less clip in bar 1 (silent).
TWO_BARS = """<?xml version="1.0"?>
<!DOCTYPE lmms-project>
<lmms-project version="1.0" creator="LMMS" creatorversion="1.2.2" type="song">
 <head timesig_numerator="4" timesig_denominator="4" mastervol="100">
  <bpm value="120" id="4242"/>
 </head>
 <song>
  <trackcontainer type="song">
   <track type="0" name="Lead" muted="0">
    <instrumenttrack/>
    <pattern pos="0" len="384" muted="0"><note pos="0" len="96" key="60"/>
     <note pos="192" len="192" key="62"/></pattern>
   </track>
   <track type="0" name="Bass" muted="{bass_muted}">
    <instrumenttrack/>
    <pattern pos="192" len="192" muted="0"><note pos="0" len="192" key="36"/></pattern>
   </track>
   <track type="0" name="Lead 2" muted="0">
    <instrumenttrack/>
    <pattern pos="0" len="192" muted="0"/>
    <pattern pos="192" len="192" muted="1"><note pos="0" len="48" key="72"/></pattern>
   </track>
   <track type="1" name="Drums" muted="0">
    <bbtrack>
     <trackcontainer type="bbtrackcontainer">
      <track type="0" name="Kick" muted="0"><instrumenttrack/>
       <pattern pos="0" len="192" steps="16" type="0"><note pos="0" len="-192"/>
        <note pos="96" len="-192"/></pattern></track>
      <track type="0" name="Hat" muted="1"><instrumenttrack/>
       <pattern pos="0" len="192" steps="16" type="0"><note pos="24" len="-192"/></pattern>
      </track>
     </trackcontainer>
    </bbtrack>
    <bbtco pos="192" len="192" muted="0"/>
   </track>
   <track type="5" name="Tempo">
    <automationtrack/>
    <automationpattern pos="192" len="192" prog="0" name="Tempo">
     <time pos="0" value="60"/><object id="4242"/>
    </automationpattern>
   </track>
  </trackcontainer>
 </song>
</lmms-project>
"""


def write_mmpz(path: Path, xml: str) -> Path:
    data = xml.encode()
    path.write_bytes(struct.pack(">I", len(data)) + zlib.compress(data))
    return path


def test_two_bar_project_grid_is_exact(tmp_path: Path) -> None:
    project = read_lmms(write_mmpz(tmp_path / "Artist-Song.mmpz", TWO_BARS.format(bass_muted=1)))
    expected = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0])
    assert project.end_s == pytest.approx(6.0)
    np.testing.assert_allclose(project.beats(), expected, atol=1e-9)
    annotation = project.to_annotation()
    np.testing.assert_allclose(annotation.beats(), expected, atol=1e-6)
    np.testing.assert_allclose(annotation.downbeats(), [0.0, 2.0], atol=1e-6)
    assert [round(s.bpm, 6) for s in annotation.grid] == [120.0, 60.0]
    assert annotation.metadata.tier == Tier.VERIFIED
    assert (annotation.track.artist, annotation.track.title) == ("Artist", "Song")
    assert mir_eval.beat.f_measure(expected, annotation.beats()) == 1.0


def test_muted_tracks_and_clips_and_empty_clips_never_sound(tmp_path: Path) -> None:
    project = read_lmms_text(TWO_BARS.format(bass_muted=1), "p.mmp", min_bars=1)
    first, second = (sorted(v) for v in project.bar_voices)
    assert first == ["0:Lead"]
    assert second == ["0:Lead", "B+B/0:Kick"]  # bass, lead-2 clip and hat are muted
    assert project.boundary_bars() == [1]
    assert [(s.start_s, s.end_s) for s in project.sections()] == [(0.0, 2.0), (2.0, 6.0)]
    unmuted = read_lmms_text(TWO_BARS.format(bass_muted=0), "p.mmp", min_bars=1)
    assert "1:Bass" in unmuted.bar_voices[1]


def test_short_runs_are_fills_not_sections(tmp_path: Path) -> None:
    # With the default four-bar minimum, a one-bar change at the end is merged away.
    assert read_lmms_text(TWO_BARS.format(bass_muted=1), "p.mmp").boundary_bars() == []
    a, b, c = frozenset("a"), frozenset("ab"), frozenset("abc")
    assert section_starts([a] * 8 + [b] * 8 + [c] + [b] * 7 + [c] * 8) == [0, 8, 24]


def test_a_crash_on_the_downbeat_does_not_move_the_boundary() -> None:
    # Pad from bar 16; a crash (one bar) and a hat fill (two bars) around the change; the
    # bass drops out for one bar at 24: the only boundary is bar 16.
    bars = []
    for bar in range(32):
        voices = {"bass"} if bar != 24 else set()
        voices |= {"pad"} if bar >= 16 else set()
        voices |= {"crash"} if bar == 16 else set()
        voices |= {"hat"} if bar in (15, 16) else set()
        bars.append(frozenset(voices))
    assert section_starts(smooth_voices(bars)) == [0, 16]
    # Unsmoothed (and with one-bar sections allowed), the fill bars start sections.
    assert section_starts(bars, 1)[1:3] == [15, 16]


def test_linear_tempo_ramp_integrates_exactly() -> None:
    xml = TWO_BARS.format(bass_muted=1).replace(
        'prog="0" name="Tempo">\n     <time pos="0" value="60"/>',
        'prog="1" name="Tempo">\n     <time pos="0" value="120"/><time pos="192" value="60"/>')
    project = read_lmms_text(xml, "ramp.mmp")
    # Bar 2 ramps 120 -> 60 BPM over 192 ticks: t = 60/48 * ln(b(x)/b0) / slope.
    slope = (60 - 120) / 192
    beat_6 = 2.0 + 60 / 48 * np.log((120 + slope * 96) / 120) / slope
    assert project.beats()[6] == pytest.approx(beat_6, abs=1e-9)
    np.testing.assert_allclose(project.to_annotation().beats()[:8], project.beats()[:8],
                               atol=1e-6)


def test_sample_tracks_sound_over_their_clip() -> None:
    xml = TWO_BARS.format(bass_muted=1).replace(
        '<track type="5"',
        '<track type="2" name="Vox"><sampletrack/><sampletco pos="0" len="96" src="v.ogg"/>'
        '<sampletco pos="192" len="96" src="v.ogg" muted="1"/></track>\n   <track type="5"')
    project = read_lmms_text(xml, "s.mmp", min_bars=1)
    assert any(v.endswith(":Vox") for v in project.bar_voices[0])
    assert not any(v.endswith(":Vox") for v in project.bar_voices[1])


@pytest.mark.parametrize(("data", "problem"), [
    (b"\x00\x00\x10\x00garbage", "neither XML nor qCompress"),
    (b"<lmms-project><head/></lmms-project>", "no <head> or <song>"),
    (b'<!DOCTYPE x [<!ENTITY e "boom">]><lmms-project>&e;</lmms-project>', "not valid"),
    (b'<lmms-project><head bpm="120"/><song><trackcontainer/></song></lmms-project>',
     "no clip sounds"),
])
def test_bad_projects_fail_with_the_file_name(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "bad.mmpz"
    path.write_bytes(data)
    with pytest.raises(LmmsError, match=problem) as error:
        read_lmms(path)
    assert str(path) in str(error.value)


def test_data_import_writes_a_tier1_annotation(tmp_path: Path) -> None:
    project = write_mmpz(tmp_path / "Artist-Song.mmpz", TWO_BARS.format(bass_muted=1))
    result = CliRunner().invoke(main, ["data", "import", str(project), "--out",
                                       str(tmp_path / "ann")])
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "ann").glob("*.yaml")
    annotation = load_annotation(written)
    np.testing.assert_allclose(annotation.downbeats(), [0.0, 2.0], atol=1e-6)


def test_lmms_1_3_clip_names_read_the_same() -> None:
    old = TWO_BARS.format(bass_muted=1)
    new = (old.replace("<pattern ", "<midiclip ").replace("</pattern>", "</midiclip>")
           .replace("<bbtco ", "<patternclip ").replace("<bbtrack>", "<patterntrack>")
           .replace("</bbtrack>", "</patterntrack>").replace("automationpattern", "automationclip"))
    assert "<pattern " not in new and "<bbtco" not in new
    a, b = read_lmms_text(old, "a.mmp", min_bars=1), read_lmms_text(new, "b.mmp", min_bars=1)
    assert a.bar_voices == b.bar_voices and a.tempo == b.tempo
