"""Benchmark: import a generated Rekordbox XML (default 10,000 tracks, 3 TEMPO + 8 cues each).

Prints a table with wall time and peak RSS for

- ``read``: :func:`edm.data.rekordbox.read_rekordbox_xml` (parse + validate into annotations),
- ``cli``: ``edm data import`` end to end (read + one YAML file per track),

each run in a fresh child process so peak RSS is that of the import alone. CPU seconds are
shown beside wall seconds because the dev box is shared: wall time includes waiting for a core.
Targets (issue 3): read under 5 s and under 500 MB on the 2-core dev box.

Usage::

    python benchmarks/bench_import.py                 # 10,000 tracks
    python benchmarks/bench_import.py --tracks 1000 --skip-cli
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

TARGET_S = 5.0
TARGET_MB = 500.0


def generate_xml(path: Path, tracks: int, seed: int = 0) -> None:
    """Write a Rekordbox-shaped XML: each track has 3 TEMPO entries and 8 POSITION_MARKs."""
    rng = random.Random(seed)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<DJ_PLAYLISTS Version="1.0.0">',
        '  <PRODUCT Name="rekordbox" Version="6.8.2" Company="AlphaTheta"/>',
        f'  <COLLECTION Entries="{tracks}">',
    ]
    for index in range(1, tracks + 1):
        bpm = round(rng.uniform(118, 176), 2)
        beat = 60.0 / bpm
        first = rng.uniform(0.0, beat)
        duration = rng.randint(180, 480)
        name = f"Track {index} (Extended Mix)"
        location = f"file://localhost/Users/dj/Music/Caf%C3%A9/Artist%20{index % 97}/{index}.mp3"
        lines.append(
            f'    <TRACK TrackID="{index}" Name={quoteattr(name)} Artist="Artist {index % 97}" '
            f'Genre="Techno" Kind="MP3 File" Size="9000000" TotalTime="{duration}" '
            f'AverageBpm="{bpm:.2f}" Tonality="{rng.randint(1, 12)}A" '
            f'Comments="Energy {rng.randint(1, 10)}" Location="{location}">'
        )
        # A re-anchor on the same tempo and a real change, as real exports have them.
        anchors = [(first, bpm, 1), (first + 64 * beat, bpm, 1), (first + 256 * beat, bpm + 2, 1)]
        for start, tempo, battito in anchors:
            lines.append(
                f'      <TEMPO Inizio="{start:.3f}" Bpm="{tempo:.2f}" Metro="4/4" '
                f'Battito="{battito}"/>'
            )
        lines.append(f'      <POSITION_MARK Name="" Type="0" Start="{first:.3f}" Num="-1"/>')
        for slot in range(6):
            start = first + 32 * beat * (slot + 1)
            lines.append(
                f'      <POSITION_MARK Name="Cue {slot}" Type="0" Start="{start:.3f}" '
                f'Num="{slot}" Red="40" Green="226" Blue="20"/>'
            )
        loop = first + 16 * beat
        lines.append(
            f'      <POSITION_MARK Name="Loop" Type="4" Start="{loop:.3f}" '
            f'End="{loop + 4 * beat:.3f}" Num="7" Red="255" Green="140" Blue="0"/>'
        )
        lines.append("    </TRACK>")
    lines += ["  </COLLECTION>", "</DJ_PLAYLISTS>", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


_CHILD = """
import json, resource, sys, time
from edm.data.rekordbox import read_rekordbox_xml
start, cpu = time.perf_counter(), time.process_time()
library = read_rekordbox_xml(sys.argv[1])
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({
    "seconds": seconds, "cpu_seconds": cpu, "tracks": len(library.tracks),
    "tempo": sum(len(a.grid) for a in library.tracks),
    "cues": sum(len(a.cues) for a in library.tracks), "problems": len(library.problems),
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def run_read(xml: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(xml)], check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout)


def run_cli(xml: Path, out: Path) -> dict[str, float]:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from edm.cli import main; main()", "data", "import", str(xml),
         "--out", str(out), "--json"],
        check=True, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    # ru_maxrss of children is the largest child so far (the read child ran before).
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_mb": after.ru_maxrss / 1024,
            "files": len(list(out.glob("*.yaml")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--skip-cli", action="store_true", help="Time only the library read.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        xml = Path(temp) / "rekordbox.xml"
        generate_xml(xml, args.tracks)
        size_mb = xml.stat().st_size / 1e6
        read = run_read(xml)
        assert read["tracks"] == args.tracks and read["tempo"] == 3 * args.tracks
        assert read["cues"] == 8 * args.tracks and read["problems"] == 0
        print(f"{args.tracks} tracks, 3 TEMPO + 8 POSITION_MARK each, XML {size_mb:.1f} MB")
        print(f"{'stage':<8}{'wall s':>10}{'CPU s':>10}{'peak RSS MB':>14}{'target':>22}")
        ok = read["seconds"] < TARGET_S and read["peak_mb"] < TARGET_MB
        print(f"{'read':<8}{read['seconds']:>10.2f}{read['cpu_seconds']:>10.2f}"
              f"{read['peak_mb']:>14.0f}"
              f"{f'<{TARGET_S:g} s, <{TARGET_MB:g} MB':>22} {'ok' if ok else 'MISSED'}")
        if not args.skip_cli:
            cli = run_cli(xml, Path(temp) / "annotations")
            assert cli["files"] == args.tracks
            print(f"{'cli':<8}{cli['seconds']:>10.2f}{cli['cpu_seconds']:>10.2f}"
                  f"{cli['peak_mb']:>14.0f}"
                  f"{'(read + YAML files)':>22}")


if __name__ == "__main__":
    main()
