"""The track table of a Rekordbox USB export's ``export.pdb`` (a DeviceSQL database).

pyrekordbox reads the ANLZ analysis files and ``master.db`` but not ``export.pdb``, and no
maintained Python package does, so the few structures needed here are read with
:mod:`struct`. The layout follows the reverse-engineering notes of Deep Symmetry's
crate-digger project ("Database Exports",
https://djl-analysis.deepsymmetry.org/rekordbox-export-analysis/exports.html):

- page 0: ``u32 0, u32 page_size, u32 n_tables, u32 next_unused, u32 ?, u32 sequence, u32 0``,
  then per table ``u32 type, u32 empty_candidate, u32 first_page, u32 last_page``;
- every page: a 40-byte header (``u32 0, u32 index, u32 type, u32 next_page, u32 ?, u32 ?,
  u8 n_rows_small, u8 ?, u8 ?, u8 flags, u16 free, u16 used, u16 ?, u16 n_rows_large …``),
  a heap of rows from byte 40, and from the page's end backwards groups of 16 row offsets
  (``u16`` each, relative to the heap) with a ``u16`` bit mask of the rows still present;
- strings: one byte ``k``; odd ``k`` is a short ASCII string of ``k >> 1`` bytes including
  ``k``; ``0x40`` and ``0x90`` are long ASCII and UTF-16-LE strings with a ``u16`` length
  (including the 4-byte header) after ``k``.

All numbers are little-endian. Only the tables edm uses are read: tracks (type 0), genres (1),
artists (2) and keys (5).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_TRACKS, _GENRES, _ARTISTS, _KEYS = 0, 1, 2, 5
_HEAP = 0x28
_GROUP = 0x24
_STRINGS_AT = 0x5E  # the track row's 21 string offsets
# Field order of the track row before its string offsets (see the module docstring's source).
_TRACK_ROW = struct.Struct("<HHIIIIIHHIIIIIIIIIIIIHHHHHHBBHH")
_TITLE, _ANALYZE_PATH, _FILE_PATH, _COMMENT, _DATE_ADDED = 17, 14, 20, 16, 10


class PdbError(ValueError):
    """An ``export.pdb`` that cannot be read; the message names the file."""


@dataclass(frozen=True)
class PdbTrack:
    """One row of the track table, with artist, genre and key names looked up."""

    track_id: int
    title: str
    artist: str
    genre: str
    key: str
    bpm: float | None
    duration_s: float | None
    file_path: str  # relative to the export's root (the folder holding PIONEER/)
    anlz_path: str  # the ANLZ .DAT file, same root
    comment: str = ""


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = path.read_bytes()
        except OSError as error:
            raise PdbError(f"{path}: cannot read ({error.strerror or error})") from error
        if len(self.data) < 28:
            raise PdbError(f"{path}: too short for a Rekordbox export.pdb")
        _, self.page_size, n_tables, *_ = struct.unpack_from("<7I", self.data, 0)
        if self.page_size not in (4096, 8192) or not 0 < n_tables < 64:
            raise PdbError(f"{path}: not a Rekordbox export.pdb (page size {self.page_size}, "
                           f"{n_tables} tables)")
        self.tables: dict[int, tuple[int, int]] = {}
        for index in range(n_tables):
            kind, _, first, last = struct.unpack_from("<4I", self.data, 28 + 16 * index)
            self.tables[kind] = (first, last)

    def rows(self, kind: int) -> list[int]:
        """Byte offsets of the present rows of one table, page by page."""
        if kind not in self.tables:
            return []
        page, last = self.tables[kind]
        offsets: list[int] = []
        seen: set[int] = set()
        while page not in seen and (page + 1) * self.page_size <= len(self.data):
            seen.add(page)
            base = page * self.page_size
            _, _, page_type, next_page = struct.unpack_from("<4I", self.data, base)
            small, _, _, flags = struct.unpack_from("<4B", self.data, base + 24)
            large = struct.unpack_from("<H", self.data, base + 34)[0]
            if page_type == kind and not flags & 0x40:  # 0x40: an index page, no rows
                count = large if small < large != 0x1FFF else small
                for group in range((count + 15) // 16):
                    end = base + self.page_size - group * _GROUP
                    present = struct.unpack_from("<H", self.data, end - 4)[0]
                    for slot in range(min(16, count - 16 * group)):
                        if present >> slot & 1:
                            heap = struct.unpack_from("<H", self.data, end - 6 - 2 * slot)[0]
                            offsets.append(base + _HEAP + heap)
            if page == last:
                break
            page = next_page
        return offsets

    def string(self, at: int) -> str:
        kind = self.data[at]
        if kind & 1:
            return self.data[at + 1 : at + (kind >> 1)].decode("ascii", errors="replace")
        length = struct.unpack_from("<H", self.data, at + 1)[0]
        raw = self.data[at + 4 : at + length]
        if kind == 0x40:
            return raw.decode("ascii", errors="replace")
        if kind == 0x90:
            return raw.decode("utf-16-le", errors="replace")
        raise PdbError(f"{self.path}: unknown string kind 0x{kind:02x} at byte {at}")

    def names(self, kind: int) -> dict[int, str]:
        """id → name of a genre, artist or key table."""
        found: dict[int, str] = {}
        for row in self.rows(kind):
            if kind == _ARTISTS:
                subtype, _, row_id, _, near = struct.unpack_from("<HHIBB", self.data, row)
                offset = struct.unpack_from("<H", self.data, row + 10)[0] if (
                    subtype == 0x64) else near
                found[row_id] = self.string(row + offset)
            elif kind == _KEYS:
                found[struct.unpack_from("<I", self.data, row)[0]] = self.string(row + 8)
            else:
                found[struct.unpack_from("<I", self.data, row)[0]] = self.string(row + 4)
        return found


def read_export_pdb(path: str | Path) -> list[PdbTrack]:
    """The tracks of a USB export's ``PIONEER/rekordbox/export.pdb``.

    Raises :class:`PdbError` (one line, naming the file) for a file that is not one.
    """
    reader = _Reader(Path(path))
    try:
        artists, genres, keys = (reader.names(k) for k in (_ARTISTS, _GENRES, _KEYS))
        tracks = []
        for row in reader.rows(_TRACKS):
            fields = _TRACK_ROW.unpack_from(reader.data, row)
            offsets = struct.unpack_from("<21H", reader.data, row + _STRINGS_AT)
            text = [reader.string(row + offset) for offset in offsets]
            tempo, duration = fields[16], fields[25]
            tracks.append(PdbTrack(
                track_id=fields[20], title=text[_TITLE], artist=artists.get(fields[19], ""),
                genre=genres.get(fields[17], ""), key=keys.get(fields[10], ""),
                bpm=tempo / 100 if tempo else None, duration_s=float(duration) or None,
                file_path=text[_FILE_PATH], anlz_path=text[_ANALYZE_PATH],
                comment=text[_COMMENT],
            ))
    except (struct.error, IndexError) as error:
        raise PdbError(f"{reader.path}: damaged export.pdb ({error})") from error
    return sorted(tracks, key=lambda t: t.track_id)
