"""Build the real-music corpus from git mirrors on disk: LMMS projects rendered by LMMS, and
rhythm-game charts with their audio, each with a Tier-1 annotation and a manifest row.

Fetches nothing: it reads git mirrors already on disk (``git log --all``, ``git show``), so
every item is pinned to a source repository, commit and path. Audio stays out of the repo:
everything is written under ``OUT`` (e.g. ``/work/realdata``), outside the working tree.

Steps (each skips what is already done, so a run can be stopped and resumed):

1. ``collect``: every ``.mmp``/``.mmpz`` and every chart (``.osu``/``.sm``/``.ssc``/``.qua``)
   whose audio is in the same commit, across all commits of each mirror; one version per
   song (the newest that LMMS 1.2 can render), names matching the reserved list
   (``reserved.txt``: Debian lmms-common's demo projects and the other held-back songs)
   excluded wherever found.
2. ``render``: LMMS projects to FLAC, ONE ``lmms`` process at a time (renders take ~1/10 of
   real time on a free core); projects over ``--max-minutes`` are skipped.
3. ``annotate``: ``edm.data.truth.read_truth`` on each item plus per-section energy
   measured on the render (RMS in dB, scaled to [0, 1] within the track).

Usage::

    python benchmarks/realdata/build_corpus.py /work/realdata \\
        --mirror /work/.mirror/LMMS+lmms/repo=LMMS/lmms \\
        --mirror /work/.mirror/anytizer+melodies.lmms/repo=anytizer/melodies.lmms

Writes ``OUT/manifest.json`` (one entry per item: id, kind, group for splitting, source
repo, commit, path, licence, status) and ``OUT/annotations/<id>.yaml``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

HERE = Path(__file__).resolve().parent
LMMS_SUFFIXES = (".mmp", ".mmpz")
CHART_SUFFIXES = (".osu", ".sm", ".ssc", ".qua")
#: Names too generic to identify a song on their own; the folder above is prefixed.
GENERIC_STEMS = {"project", "song", "main", "untitled", "music", "track", "demo"}


@dataclass
class Item:
    id: str
    kind: str  # "lmms" or "chart"
    group: str  # artist / project: the unit of train/test splits
    repo: str
    commit: str
    path: str
    licence: str
    file: str = ""  # local copy of the project / chart, relative to OUT
    audio: str = ""  # local audio, relative to OUT
    status: str = "collected"
    note: str = ""
    duration_s: float | None = None
    extra: dict = field(default_factory=dict)


def normalise(name: str) -> str:
    return re.sub(r"[\W_]", "", name.lower())


@dataclass(frozen=True)
class Reserved:
    """Held-back material: file names (any folder) and path fragments (any repository)."""

    names: frozenset[str]
    paths: tuple[str, ...]

    def match(self, path: str) -> bool:
        """A file whose name is, or ends with, a reserved name (``MAMINS-DirtyLove`` is the
        reserved ``DirtyLove``), or whose path contains a reserved fragment."""
        key = normalise(PurePosixPath(path).stem)
        folded = path.lower()
        return (any(key == r or key.endswith(r) for r in self.names)
                or any(fragment in folded for fragment in self.paths))


def reserved_list(path: Path = HERE / "reserved.txt") -> Reserved:
    """``<kind> <name>`` lines name files; ``path <fragment>`` lines name folders."""
    names, paths = set(), []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, value = line.partition(" ")
        if kind == "path":
            paths.append(value.lower())
        else:
            names.add(normalise(PurePosixPath(value).stem))
    return Reserved(frozenset(names), tuple(paths))


def git(mirror: Path, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(mirror), *args], check=True,
                          capture_output=True).stdout


def history(mirror: Path, suffixes: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """``(commit, time, path)`` of every added or modified file with ``suffixes``, newest
    first, across all refs."""
    out = git(mirror, "log", "--all", "--diff-filter=AM", "--format=@%H %ct", "--name-only",
              "-z").decode("utf-8", "replace")
    rows, commit, stamp = [], "", 0
    for chunk in out.replace("\n", "\0").split("\0"):
        if chunk.startswith("@"):
            commit, stamp_text = chunk[1:].split(" ")
            stamp = int(stamp_text)
        elif chunk and chunk.lower().endswith(suffixes):
            rows.append((commit, stamp, chunk))
    rows.sort(key=lambda row: -row[1])
    return rows


def licence_notes(mirror: Path) -> dict[str, str]:
    """LMMS's ``LICENSES.TXT`` files (``* Name.mmpz`` / ``  - licence``) across history."""
    notes: dict[str, str] = {}
    for commit, _, path in history(mirror, ("licenses.txt",)):
        text = git(mirror, "show", f"{commit}:{path}").decode("utf-8", "replace")
        for name, licence in re.findall(r"^\*\s*(.+?)\s*\n\s*-\s*(.+?)\s*$", text, re.M):
            notes.setdefault(normalise(PurePosixPath(name).stem), licence)
    return notes


def repo_licence(mirror: Path, commit: str) -> str:
    names = git(mirror, "ls-tree", "--name-only", commit).decode().split("\n")
    for name in names:
        if re.match(r"(licen[cs]e|copying)", name, re.I):
            first = git(mirror, "show", f"{commit}:{name}").decode("utf-8", "replace")
            return f"{name}: {first.strip().splitlines()[0][:80]}" if first.strip() else name
    return "NOASSERTION (no licence file in the repository)"


def item_id(repo: str, path: str) -> str:
    pure = PurePosixPath(path)
    stem = pure.stem
    if normalise(stem) in GENERIC_STEMS or len(normalise(stem)) < 3:
        folder = pure.parent.parent if pure.parent.name == "project" else pure.parent
        stem = f"{folder.name}-{stem}"
    return re.sub(r"[^\w.-]+", "_", f"{repo.split('/')[-1]}--{stem}").strip("_")


def group_of(repo: str, path: str) -> str:
    """The artist for LMMS's ``Artist-Title`` names; else the song's folder in its repo."""
    stem = PurePosixPath(path).stem
    if repo == "LMMS/lmms" and "-" in stem:
        return f"lmms:{normalise(stem.split('-', 1)[0])}"
    if repo == "LMMS/lmms":
        return f"lmms:{normalise(stem)}"
    return f"{repo}:{normalise(PurePosixPath(path).parts[0])}"


def collect(mirrors: list[tuple[Path, str]], out: Path, items: dict[str, Item],
            excluded: list[dict]) -> None:
    reserved = reserved_list()
    for mirror, repo in mirrors:
        notes = licence_notes(mirror)
        seen: set[str] = set()
        licences: dict[str, str] = {}
        for commit, _, path in history(mirror, LMMS_SUFFIXES + CHART_SUFFIXES):
            stem = PurePosixPath(path).stem
            if reserved.match(path):
                if normalise(stem) not in {normalise(e["name"]) for e in excluded}:
                    excluded.append({"name": stem, "repo": repo, "path": path,
                                     "why": "reserved list (reserved.txt)"})
                continue
            key = normalise(item_id(repo, path).split("--", 1)[1])
            # One version per song: the newest; aliases like lb302quick/lb302_quick collapse.
            if key in seen or any(key.endswith(k) or k.endswith(key) for k in seen
                                  if min(len(k), len(key)) >= 8):
                continue
            kind = "lmms" if path.lower().endswith(LMMS_SUFFIXES) else "chart"
            if kind == "chart" and not _chart_audio_in_commit(mirror, commit, path):
                continue
            # LMMS 1.2 renders 1.3 saves without their renamed clips: take an older version.
            if kind == "lmms" and too_new(_creator_version(mirror, commit, path)):
                continue
            seen.add(key)
            ident = item_id(repo, path)
            if ident in items and items[ident].status != "needs newer lmms":
                continue
            if commit not in licences:
                licences[commit] = repo_licence(mirror, commit)
            licence = notes.get(normalise(stem)) or licences[commit]
            if repo == "LMMS/lmms" and normalise(stem) not in notes:
                licence = f"as distributed with LMMS ({licences[commit]})"
            item = Item(id=ident, kind=kind, group=group_of(repo, path), repo=repo,
                        commit=commit, path=path, licence=licence)
            _extract(mirror, item, out)
            items[item.id] = item


def _creator_version(mirror: Path, commit: str, path: str) -> str:
    from edm.data.lmms import LmmsError, project_xml

    try:
        xml = project_xml(git(mirror, "show", f"{commit}:{path}"), path)
    except LmmsError:
        return ""
    match = re.search(rb'creatorversion="([^"]*)"', xml[:2000])
    return match.group(1).decode() if match else ""


def _chart_audio_in_commit(mirror: Path, commit: str, path: str) -> str | None:
    from edm.data.charts import ChartError, read_chart_text

    text = git(mirror, "show", f"{commit}:{path}").decode("utf-8-sig", "replace")
    try:
        chart = read_chart_text(text, path)
    except ChartError:
        return None
    if not chart.audio:
        return None
    audio = str(PurePosixPath(path).parent / chart.audio)
    listed = git(mirror, "ls-tree", "--name-only", commit, "--", audio).decode().strip()
    return audio if listed else None


def _extract(mirror: Path, item: Item, out: Path) -> None:
    folder = out / "items" / item.id
    folder.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(item.path).name
    target = folder / name
    target.write_bytes(git(mirror, "show", f"{item.commit}:{item.path}"))
    item.file = str(target.relative_to(out))
    if item.kind == "chart":
        audio = _chart_audio_in_commit(mirror, item.commit, item.path)
        audio_target = folder / PurePosixPath(audio).name
        audio_target.write_bytes(git(mirror, "show", f"{item.commit}:{audio}"))
        item.audio = str(audio_target.relative_to(out))


# ---------------------------------------------------------------------------------------------
# Render


#: Where Debian's lmms keeps its factory samples and instrument plugins.
LMMS_SAMPLES = Path("/usr/share/lmms/samples")
LMMS_PLUGINS = tuple(Path("/usr/lib").glob("*/lmms"))
#: Instruments that play a file named by their ``src``.
FILE_INSTRUMENTS = ("audiofileprocessor", "sf2player", "patman", "gigplayer")


def missing_sources(xml: bytes, samples: Path = LMMS_SAMPLES,
                    plugins: tuple[Path, ...] = LMMS_PLUGINS) -> list[str]:
    """What an unmuted track of the project needs and this lmms lacks: an instrument plugin
    that is not installed (VST, Carla) or a sample/soundfont file that is not on disk.

    LMMS renders such a track as silence, while the project's arrangement still counts it as
    sounding, so the truth would mark sections no listener can hear. Relative paths resolve
    against the factory sample folder, as LMMS 1.2 does for a user without a sample folder.
    """
    import defusedxml.ElementTree as SafeET

    def on_disk(src: str) -> bool:
        path = Path(src.removeprefix("factorysample:"))
        return (path if path.is_absolute() else samples / path).is_file()

    missing: list[str] = []
    for track in SafeET.fromstring(xml).iter("track"):
        if track.get("muted") == "1":
            continue
        for instrument in track.iter("instrument"):
            name = instrument.get("name", "")
            if plugins and not any((folder / f"lib{name}.so").is_file() for folder in plugins):
                missing.append(f"plugin {name}")
            for player in instrument:
                src = player.get("src", "")
                if player.tag in FILE_INSTRUMENTS and src and not on_disk(src):
                    missing.append(f"{player.tag} file {src}")
        for clip in (*track.iter("sampletco"), *track.iter("sampleclip")):
            src = clip.get("src", "")
            if src and not clip.get("data") and clip.get("muted") != "1" and not on_disk(src):
                missing.append(f"sample file {src}")
    return sorted(set(missing))


def _left_out_for_missing_sources(item: Item, out: Path) -> bool:
    """Mark an LMMS item whose project needs what this lmms lacks (:func:`missing_sources`)."""
    from edm.data.lmms import project_xml

    if item.kind != "lmms":
        return False
    missing = missing_sources(project_xml((out / item.file).read_bytes(), item.file))
    if missing:
        item.status, item.note = "missing samples", f"{len(missing)} missing, e.g. {missing[0]}"
    return bool(missing)


def too_new(creator_version: str) -> bool:
    """Saved by LMMS 1.3 or later: LMMS 1.2 loads such files without their renamed clips."""
    return re.match(r"1\.([3-9]|\d\d)|[2-9]\.", creator_version) is not None


def render(items: dict[str, Item], out: Path, max_minutes: float, timeout_s: float,
           save: callable) -> None:
    from edm.data.lmms import LmmsError, read_lmms

    todo = [i for i in items.values() if i.kind == "lmms" and i.status == "collected"]
    # Short projects first: a slow one late in the queue delays fewer others.
    todo.sort(key=lambda i: (out / i.file).stat().st_size)
    for number, item in enumerate(todo, 1):
        project_path = out / item.file
        try:
            project = read_lmms(project_path)
        except LmmsError as error:
            item.status, item.note = "unreadable", str(error).splitlines()[0]
            save()
            continue
        if too_new(project.creator_version):
            item.status = "needs newer lmms"
            item.note = f"saved by LMMS {project.creator_version}; this lmms is 1.2"
            save()
            continue
        if _left_out_for_missing_sources(item, out):
            save()
            continue
        if project.end_s > max_minutes * 60:
            item.status = "too long"
            item.note = f"{project.end_s / 60:.1f} min > {max_minutes} min"
            save()
            continue
        wav = project_path.with_suffix(".wav")
        flac = project_path.with_suffix(".flac")
        started = time.time()
        print(f"[{number}/{len(todo)}] rendering {item.id} ({project.end_s:.0f} s)",
              file=sys.stderr, flush=True)
        try:
            subprocess.run(
                ["lmms", "--allowroot", "render", str(project_path), "-f", "wav", "-o",
                 str(wav)], env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin",
                                 "HOME": str(out)},
                capture_output=True, timeout=timeout_s + project.end_s, check=False)
        except subprocess.TimeoutExpired:
            item.status, item.note = "render failed", "timed out (slower than real time)"
        # LMMS may crash on exit after writing the file: judge by the file.
        if item.status == "render failed":
            pass
        elif wav.exists() and wav.stat().st_size > 44 + 44100 * 4:
            subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), str(flac)],
                           check=True)
            item.audio = str(flac.relative_to(out))
            item.status = "rendered"
            item.extra["render_s"] = round(time.time() - started, 1)
        else:
            item.status, item.note = "render failed", "no audio written"
        wav.unlink(missing_ok=True)
        save()


# ---------------------------------------------------------------------------------------------
# Annotate


def section_energy(audio: np.ndarray, sample_rate: int, sections: list) -> list[float | None]:
    """RMS level (dB re full scale) of each section; None for a section with no samples.

    The annotation stores it on edm's fixed energy scale (:func:`edm.data.schema.energy_from_db`,
    -60 dB -> 0, 0 dB -> 1), the scale ``edm analyze`` reports, not rescaled per track."""
    from edm.data.schema import level_db

    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    levels: list[float | None] = []
    for section in sections:
        chunk = mono[int(section.start_s * sample_rate):int(section.end_s * sample_rate)]
        levels.append(round(float(level_db(np.sqrt(np.mean(np.square(chunk, dtype=np.float64))))),
                            2) if len(chunk) else None)
    return levels


def annotate(items: dict[str, Item], out: Path, save: callable, min_seconds: float) -> None:
    import soundfile as sf

    from edm.data.schema import EnergyData, energy_from_db, save_annotation
    from edm.data.truth import TruthError, read_truth

    folder = out / "annotations"
    folder.mkdir(exist_ok=True)
    for item in items.values():
        if item.status not in ("rendered", "collected", "ready") or not item.audio:
            continue
        if _left_out_for_missing_sources(item, out):
            (folder / f"{item.id}.yaml").unlink(missing_ok=True)
            save()
            continue
        audio_path = out / item.audio
        try:
            annotation = read_truth(out / item.file, audio=audio_path)
        except TruthError as error:
            item.status, item.note = "unreadable", str(error).splitlines()[0]
            save()
            continue
        if (annotation.track.duration_s or 0) < min_seconds:
            item.status = "too short"
            item.note = f"{annotation.track.duration_s:.0f} s < {min_seconds:g} s"
            save()
            continue
        if item.kind == "lmms":
            from edm.data.lmms import read_lmms

            version = read_lmms(out / item.file).creator_version
            if too_new(version):
                item.status = "needs newer lmms"
                item.note = f"saved by LMMS {version}; this lmms is 1.2"
                save()
                continue
            audio, rate = sf.read(audio_path, dtype="float32", always_2d=True)
            if float(np.max(np.abs(audio), initial=0.0)) < 1e-4:
                item.status, item.note = "silent render", "missing instruments or samples?"
                save()
                continue
            levels = section_energy(audio, rate, annotation.sections)
            sections = [s.model_copy(update={"energy": EnergyData(
                            overall=round(float(energy_from_db(db)), 4), level_db=db)})
                        if db is not None else s for s, db in zip(annotation.sections, levels,
                                                                  strict=True)]
            annotation = annotation.model_copy(update={"sections": sections})
        provenance = {**annotation.metadata.provenance, "repo": item.repo,
                      "commit": item.commit, "path": item.path, "licence": item.licence}
        annotation = annotation.model_copy(update={"metadata": annotation.metadata.model_copy(
            update={"provenance": provenance})})
        save_annotation(annotation, folder / f"{item.id}.yaml")
        item.status = "ready"
        item.duration_s = annotation.track.duration_s
        item.extra["sections"] = len(annotation.sections)
        item.extra["bpm"] = annotation.bpm
        save()


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("Usage::")[1])
    parser.add_argument("out", type=Path, help="Corpus folder (outside the repository).")
    parser.add_argument("--mirror", action="append", default=[],
                        help="GIT_DIR=owner/name of a mirror on disk (repeatable).")
    parser.add_argument("--steps", default="collect,render,annotate")
    parser.add_argument("--max-minutes", type=float, default=6.0,
                        help="Skip projects longer than this (default 6).")
    parser.add_argument("--min-seconds", type=float, default=20.0,
                        help="Leave out shorter items (default 20 s: too few bars to score).")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="Seconds allowed per render on top of the song's length.")
    args = parser.parse_args(argv)
    if shutil.which("lmms") is None and "render" in args.steps:
        parser.error("lmms is not installed (apt-get install lmms)")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    items: dict[str, Item] = {}
    excluded: list[dict] = []
    if manifest_path.exists():
        data = json.loads(manifest_path.read_text())
        items = {row["id"]: Item(**row) for row in data["items"]}
        excluded = data.get("excluded", [])

    def save() -> None:
        data = {"items": [asdict(i) for i in items.values()], "excluded": excluded}
        temp = manifest_path.with_suffix(".tmp")
        temp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
        temp.replace(manifest_path)

    mirrors = []
    for spec in args.mirror:
        path, _, repo = spec.partition("=")
        mirrors.append((Path(path), repo or Path(path).parent.name.replace("+", "/")))
    steps = args.steps.split(",")
    if "collect" in steps:
        collect(mirrors, out, items, excluded)
        save()
    if "render" in steps:
        render(items, out, args.max_minutes, args.timeout, save)
    if "annotate" in steps:
        annotate(items, out, save, args.min_seconds)
    save()
    counts: dict[str, int] = {}
    for item in items.values():
        counts[item.status] = counts.get(item.status, 0) + 1
    ready = [i for i in items.values() if i.status == "ready"]
    print(f"{len(items)} items: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
          + f"; {len(excluded)} reserved names excluded; {len(ready)} ready in "
          f"{len({i.group for i in ready})} groups, "
          f"{sum(i.duration_s or 0 for i in ready) / 60:.0f} min of audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
