"""Benchmark: write results back into a generated Rekordbox XML (default 10,000 tracks).

Prints wall and CPU seconds for

- ``export, unchanged``: :func:`edm.data.rekordbox.write_rekordbox_xml` of the imported
  annotations onto their own XML (``edm data export``); checks the output is byte-identical,
- ``export, 10 % edited``: the same with one cue added to every tenth track,
- ``write-back``: :func:`edm.data.rekordbox.write_back_xml` of an "analysis" for every track
  (a grid at another tempo, five section cues: ``edm analyze --format rekordbox``).

The XML is :func:`bench_import.generate_xml`'s (3 TEMPO + 8 cues per track). The dev box is
shared, so CPU seconds are shown beside wall seconds. Target: each under 12 s of CPU (the
import of the same file takes 12.2).

Usage::

    python benchmarks/bench_writeback.py                # 10,000 tracks
    python benchmarks/bench_writeback.py --tracks 1000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from bench_import import generate_xml

from edm.data.rekordbox import read_rekordbox_xml, write_back_xml, write_rekordbox_xml
from edm.data.schema import Cue, TempoSegment

#: No slower than `edm data import` of the same 10,000-track file (12.2 CPU s, RESULTS.md).
TARGET_CPU_S = 12.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        xml = Path(temp) / "rekordbox.xml"
        generate_xml(xml, args.tracks)
        tracks = read_rekordbox_xml(xml, hash_audio=False).tracks
        edited = [a.model_copy(update={"cues": [*a.cues, Cue(start_s=1.5, name="new")]})
                  if i % 10 == 0 else a for i, a in enumerate(tracks)]
        analysed = [a.model_copy(update={
            "grid": [TempoSegment(start_s=0.0, bpm=125.0)],
            "cues": [Cue(start_s=t, name="edm") for t in (0.0, 30.0, 60.0, 90.0, 120.0)],
        }) for a in tracks]
        rows = []
        for label, run in (
            ("export, unchanged", lambda: write_rekordbox_xml(tracks, Path(temp) / "a.xml",
                                                              base=xml)),
            ("export, 10 % edited", lambda: write_rekordbox_xml(edited, Path(temp) / "b.xml",
                                                                base=xml)),
            ("write-back", lambda: write_back_xml(analysed, Path(temp) / "c.xml", base=xml)),
        ):
            wall, cpu = time.perf_counter(), time.process_time()
            report = run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append((label, wall, cpu, report.summary().split(": ", 1)[1]))
        identical = (Path(temp) / "a.xml").read_bytes() == xml.read_bytes()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.tracks} tracks; unchanged export byte-identical: {identical}; "
          f"peak RSS of the whole run {peak_mb:.0f} MB")
    print(f"| case | wall s | CPU s | CPU target < {TARGET_CPU_S:g} s | result |")
    print("|---|---|---|---|---|")
    for label, wall, cpu, summary in rows:
        verdict = "met" if cpu < TARGET_CPU_S else "MISSED"
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {verdict} | {summary} |")


if __name__ == "__main__":
    main()
