"""The real-corpus tools under ``benchmarks/``: which LMMS projects can be rendered faithfully,
and which tracks each side of the pinned split holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path[:0] = [str(BENCHMARKS), str(BENCHMARKS / "realdata")]

from bench_real import split_by_group, training_only  # noqa: E402
from build_corpus import missing_sources  # noqa: E402

PROJECT = """<?xml version="1.0"?>
<lmms-project creatorversion="1.2.2" type="song"><head/><song><trackcontainer>
 <track type="0" name="Kick" muted="0"><instrumenttrack>
  <instrument name="audiofileprocessor"><audiofileprocessor src="drums/kick01.ogg"/></instrument>
 </instrumenttrack></track>
 <track type="0" name="Piano" muted="{piano_muted}"><instrumenttrack>
  <instrument name="sf2player"><sf2player src="/home/someone/SGM-V2.01.sf2"/></instrument>
 </instrumenttrack></track>
 <track type="0" name="Synth" muted="0"><instrumenttrack>
  <instrument name="vestige"><vestige plugin="Serum.dll"/></instrument>
 </instrumenttrack></track>
 <track type="2" name="Vox" muted="0"><sampletrack/>
  <sampletco pos="0" len="192" src="vox/hey.wav" muted="0"/>
  <sampletco pos="192" len="192" src="gone.wav" data="UklGRg==" muted="0"/>
 </track>
</trackcontainer></song></lmms-project>"""


@pytest.fixture()
def lmms_install(tmp_path: Path) -> tuple[Path, tuple[Path, ...]]:
    samples, plugins = tmp_path / "samples", tmp_path / "plugins"
    (samples / "drums").mkdir(parents=True)
    (samples / "drums" / "kick01.ogg").write_bytes(b"")
    plugins.mkdir()
    for name in ("audiofileprocessor", "sf2player"):
        (plugins / f"lib{name}.so").write_bytes(b"")
    return samples, (plugins,)


def test_missing_sources_names_what_lmms_would_play_as_silence(lmms_install) -> None:
    samples, plugins = lmms_install
    missing = missing_sources(PROJECT.format(piano_muted=0).encode(), samples, plugins)
    # The factory kick resolves and the sample embedded as data needs no file.
    assert missing == ["plugin vestige", "sample file vox/hey.wav",
                       "sf2player file /home/someone/SGM-V2.01.sf2"]


def test_missing_sources_ignores_muted_tracks(lmms_install) -> None:
    samples, plugins = lmms_install
    missing = missing_sources(PROJECT.format(piano_muted=1).encode(), samples, plugins)
    assert "sf2player file /home/someone/SGM-V2.01.sf2" not in missing
    assert len(missing) == 2


def _items(groups: str) -> list[tuple[dict, None]]:
    return [({"id": f"{g}{i}", "group": g}, None) for i, g in enumerate(groups)]


def test_training_only_groups_are_on_neither_side(tmp_path: Path, capsys) -> None:
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["a"], "test": ["b"], "train_only": ["c"]}))
    items = _items("aabccd")
    train, test = split_by_group(items, split)
    assert [i["id"] for i, _ in train] == ["a0", "a1"]
    assert [i["id"] for i, _ in test] == ["b2"]
    assert [i["id"] for i, _ in training_only(items, split)] == ["c3", "c4"]
    # Only the group the file does not name is reported as left out.
    assert "1 track(s)" in capsys.readouterr().err


def test_a_group_in_two_lists_is_refused(tmp_path: Path) -> None:
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["a"], "test": ["b"], "train_only": ["b"]}))
    with pytest.raises(SystemExit, match="both under test and train_only: b"):
        split_by_group(_items("ab"), split)
