"""Parquet files that tell damage from data (pure: pyarrow). Every Parquet table of a store is
written by `write_table` and read by `read_table`, so a flipped byte, a truncation or a
stray write makes the file damaged instead of changing a value silently.

A file carries two layers of checks:

- page checksums (CRC-32 of every data page, Parquet's own, written with
  `write_page_checksum` and verified by pyarrow with `page_checksum_verification`);
- a digest in the footer's key-value metadata, `dse.digest` (JSON): a CRC-32 of the footer
  up to its key-value list (schema, row groups, where each column chunk lies, how it is
  encoded), of the Arrow schema it was written from, and per row group its row count and a
  CRC-32 of its column chunks' bytes (page headers included, which page checksums do not
  cover). The footer is checked before pyarrow parses it.

A file without a digest (written by an earlier dse, pandas or another tool) is read with the
page checksums it has. When a file fails, the row groups that still match their digest and
checksums are salvaged (`salvage`); the rest of its rows are lost, and counted.
"""

from __future__ import annotations

import io
import json
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dse.errors import DseError

DIGEST_KEY = b"dse.digest"
ROW_GROUP = 256  # rows per row group: what one damaged page can cost inside a segment


class Unreadable(Exception):
    """A file that cannot be read whole: why, in a few words."""


@dataclass(frozen=True)
class Salvage:
    """What could still be read of a damaged file."""

    table: pa.Table | None           # the intact row groups (None: nothing)
    rows: int                        # rows salvaged
    total: int | None                # rows the file held (None: its footer is gone)


def write_table(table: pa.Table, where, row_group_size: int = ROW_GROUP) -> None:
    """Write `table` to the path `where` with page checksums and a digest."""
    plain = _encode(table, row_group_size, None)
    fa, md = _footer(plain), pq.read_metadata(pa.BufferReader(plain))
    data, n = None, _metadata_start(fa, list(md.metadata or {}))
    if n is not None:
        data = _encode(table, row_group_size, _digest(plain, md, fa, n))
    if data is None or _footer(data)[:n] != fa[:n]:  # find it as the first byte a digest changes
        fb = _footer(_encode(table, row_group_size, {"footer": [0, 0]}))
        n = next((i for i, (x, y) in enumerate(zip(fa, fb)) if x != y), min(len(fa), len(fb)))
        data = _encode(table, row_group_size, _digest(plain, md, fa, n))
        if _footer(data)[:n] != fa[:n]:
            raise RuntimeError("a Parquet footer changed between two writes of one table")
    Path(where).write_bytes(data)


def _digest(plain: bytes, md: pq.FileMetaData, footer: bytes, n: int) -> dict:
    """The digest of a file written without one (`plain`), covering its footer up to `n`."""
    return {"footer": [n, zlib.crc32(footer[:n])],
            "arrow": zlib.crc32((md.metadata or {}).get(b"ARROW:schema", b"")),
            "groups": [[md.row_group(i).num_rows, _group_crc(plain, md.row_group(i))]
                       for i in range(md.num_row_groups)]}


def _metadata_start(footer: bytes, keys: list[bytes]) -> int | None:
    """Where a footer's key-value list begins (its list header, the first byte another entry
    changes): just before its first entry (thrift compact: field 1, binary, the key's length,
    the key); None if that cannot be told."""
    if not keys or any(len(k) > 127 for k in keys):
        return None
    at = [footer.find(b"\x18" + bytes([len(k)]) + k) for k in keys]
    return min(at) - 1 if min(at) >= 2 else None


def _nan_as_text(v):
    """A value with every NaN (also inside lists) as the text 'NaN', so that two copies of a
    NaN compare equal, as the same bits written and read back are."""
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, list):
        return [_nan_as_text(x) for x in v]
    if isinstance(v, dict):
        return {k: _nan_as_text(x) for k, x in v.items()}
    return v


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Whether two tables hold the same columns and values (a NaN equals a NaN)."""
    if not a.schema.equals(b.schema) or a.num_rows != b.num_rows:
        return False
    if a.equals(b):
        return True
    return _nan_as_text(a.to_pylist()) == _nan_as_text(b.to_pylist())


def write_verified(table: pa.Table, path, row_group_size: int = ROW_GROUP,
                   name: str | None = None) -> None:
    """write_table, then read the file back: DseError (naming the file as `name`) unless it
    holds exactly `table` with every checksum matching; for a file that replaces another, or
    whose other copies are removed next."""
    write_table(table, path, row_group_size)
    try:
        same = _same(read_table(path), table)
        why = "it holds other values"
    except Unreadable as e:
        same, why = False, str(e)
    if not same:
        raise DseError(f"{name or path} did not read back as written ({why}); it was not put "
                       "in place and nothing stored was changed; run the command again")


def _encode(table: pa.Table, row_group_size: int, digest: dict | None) -> bytes:
    out = io.BytesIO()
    w = pq.ParquetWriter(out, table.schema, write_page_checksum=True)
    try:
        w.write_table(table, row_group_size=row_group_size)
        if digest is not None:
            w.add_key_value_metadata({DIGEST_KEY.decode(): json.dumps(digest,
                                                                     separators=(",", ":"))})
    finally:
        w.close()
    return out.getvalue()


def _footer(data: bytes) -> bytes:
    """The footer's bytes (the file's metadata, thrift), b"" if the file has none."""
    if len(data) < 12 or data[:4] != b"PAR1" or data[-4:] != b"PAR1":
        return b""
    n = int.from_bytes(data[-8:-4], "little")
    return data[-8 - n:-8] if n <= len(data) - 12 else b""


def _group_crc(data: bytes, rg) -> int:
    """CRC-32 of a row group's column chunks' bytes (pages and their headers)."""
    crc = 0
    for j in range(rg.num_columns):
        c = rg.column(j)
        d, p = (c.dictionary_page_offset if c.has_dictionary_page else None), c.data_page_offset
        start = d if d is not None and 0 < d < p else p
        crc = zlib.crc32(data[start:start + c.total_compressed_size], crc)
    return crc


_DIGEST = re.compile(rb"dse\.digest.{1,8}?(\{[^{}]*\})", re.DOTALL)


def _open(path: Path) -> tuple[bytes, pq.ParquetFile, list[bool] | None]:
    """The file's bytes, the file, and per row group whether it matches the digest (None: no
    digest); Unreadable when its footer or schema is damaged; FileNotFoundError if gone.
    The footer is checked against the digest before pyarrow parses it."""
    data = Path(path).read_bytes()
    footer = _footer(data)
    found = _DIGEST.search(footer) if footer else None
    digest = None
    if found:
        try:
            digest = json.loads(found.group(1))
            n, crc = digest["footer"]
            groups, arrow = digest["groups"], digest["arrow"]
        except (ValueError, KeyError, TypeError):
            raise Unreadable("its checksums are unreadable") from None
        if zlib.crc32(footer[:n]) != crc:
            raise Unreadable("its footer does not match its checksum")
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        md = pf.metadata
        kv = md.metadata or {}
    except (pa.ArrowException, OSError, ValueError) as e:
        raise Unreadable(why(e)) from None
    if digest is None:
        return data, pf, None
    if zlib.crc32(kv.get(b"ARROW:schema", b"")) != arrow or len(groups) != md.num_row_groups:
        raise Unreadable("its schema does not match its checksum")
    ok = [isinstance(g, list) and g == [md.row_group(i).num_rows,
                                        _group_crc(data, md.row_group(i))]
          for i, g in enumerate(groups)]
    return data, pf, ok


def read_table(path: Path, columns=None) -> pa.Table:
    """The table in `path` (only `columns` of it, those it has, when given; or a function of
    its column names that picks them), every byte checked; Unreadable with why if any check
    fails, FileNotFoundError if it is gone."""
    _, pf, ok = _open(path)
    if ok is not None and not all(ok):
        bad = ok.index(False)
        raise Unreadable(f"row group {bad + 1} of {len(ok)} does not match its checksum")
    try:
        return pf.read(columns=_have(pf, columns))
    except (pa.ArrowException, OSError) as e:
        raise Unreadable(why(e)) from None


def salvage(path: Path, columns=None) -> Salvage:
    """The row groups of a damaged file that still match their checksums (only `columns`)."""
    try:
        _, pf, ok = _open(path)
    except Unreadable:
        return Salvage(None, 0, None)
    md, kept = pf.metadata, []
    for i in range(md.num_row_groups):
        if ok is not None and not ok[i]:
            continue
        try:
            kept.append(pf.read_row_group(i, columns=_have(pf, columns)))
        except (pa.ArrowException, OSError):
            continue
    table = pa.concat_tables(kept) if kept else None
    return Salvage(table, 0 if table is None else table.num_rows, md.num_rows)


def _have(pf: pq.ParquetFile, columns) -> list[str] | None:
    """The columns to read: all (None), those of a list the file has, or a function's choice
    given the file's column names."""
    if columns is None:
        return None
    names = pf.schema_arrow.names
    if callable(columns):
        return columns(names)
    return [c for c in columns if c in set(names)]


def why(e: Exception) -> str:
    """The first sentence of a reader's error, without the path it repeats."""
    msg = re.sub(r"^Could not open Parquet input source '[^']*':\s*", "",
                 " ".join(str(e).split()))
    return msg.split(". ")[0].rstrip(".")[:160]
