"""Checksummed Parquet (dse.store.checksums): a flipped bit anywhere in a file either leaves
what is read equal to what was written or makes the file unreadable; truncations are
unreadable; intact row groups of a damaged file are salvaged; files without a digest (earlier
dse, pandas) read as before."""

import datetime as dt
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dse.store import checksums
from dse.store.schema import RESULTS_SCHEMA

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def table(n: int) -> pa.Table:
    rows = [dict(model_id=f"m{i:04d}", space="s", status="done", error=10 + i / 7, epochs=1,
                 recipe="r", seed=0, finished_at=T0, history_error=[1.0, 2.0 + i])
            for i in range(n)]
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)


def flips(path, t: pa.Table, positions) -> tuple[int, int]:
    """(unreadable, equal) over one flipped bit at each position; fails on a changed read."""
    data = path.read_bytes()
    unreadable = equal = 0
    for at, bit in positions:
        b = bytearray(data)
        b[at] ^= 1 << bit
        path.write_bytes(bytes(b))
        try:
            got = checksums.read_table(path)
        except checksums.Unreadable:
            unreadable += 1
            continue
        assert got.equals(t), f"bit {bit} of byte {at} changed what was read"
        equal += 1
    path.write_bytes(data)
    return unreadable, equal


def test_a_round_trip_and_a_file_without_a_digest(tmp_path):
    t = table(300)
    p = tmp_path / "t.parquet"
    checksums.write_table(t, p, 128)
    assert checksums.read_table(p).equals(t) and pq.read_metadata(p).num_row_groups == 3
    assert b"dse.digest" in pq.read_metadata(p).metadata
    assert checksums.read_table(p, ["error"]).column_names == ["error"]
    old = tmp_path / "old.parquet"
    pq.write_table(t, old)  # as dse 0.3 and pandas write
    assert checksums.read_table(old).equals(t)


def test_random_flipped_bits_are_detected_or_harmless(tmp_path):
    t = table(40)
    p = tmp_path / "t.parquet"
    checksums.write_table(t, p, 8)
    rng = random.Random(7)
    n = p.stat().st_size
    unreadable, equal = flips(p, t, [(rng.randrange(n), rng.randrange(8)) for _ in range(250)])
    assert unreadable + equal == 250 and unreadable > 210  # most bytes matter


@pytest.mark.slow
def test_every_flipped_bit_is_detected_or_harmless(tmp_path):
    t = table(30)
    p = tmp_path / "t.parquet"
    checksums.write_table(t, p, 8)
    n = p.stat().st_size
    unreadable, equal = flips(p, t, [(at, bit) for at in range(n) for bit in (0, 5)])
    assert unreadable > 0.95 * 2 * n


def test_truncations_are_unreadable_and_intact_row_groups_salvaged(tmp_path):
    t = table(300)
    p = tmp_path / "t.parquet"
    checksums.write_table(t, p, 100)
    data = p.read_bytes()
    for keep in (0, 3, 100, len(data) // 2, len(data) - 9, len(data) - 1):
        p.write_bytes(data[:keep])
        with pytest.raises(checksums.Unreadable):
            checksums.read_table(p)
        assert checksums.salvage(p) == checksums.Salvage(None, 0, None)  # no footer
    col = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(1).column(3)  # error
    b = bytearray(data)
    b[col.data_page_offset + col.total_compressed_size // 2] ^= 4
    p.write_bytes(bytes(b))
    with pytest.raises(checksums.Unreadable, match="row group 2 of 3"):
        checksums.read_table(p)
    got = checksums.salvage(p)
    assert (got.rows, got.total) == (200, 300)
    assert got.table.equals(pa.concat_tables([t.slice(0, 100), t.slice(200, 100)]))


def test_a_segment_with_nan_reads_back_as_written_and_a_changed_value_does_not(tmp_path):
    """A diverged model's NaN training loss (also inside its loss history) is the value written;
    write_verified accepts it, and refuses a table whose copy differs in one value."""
    rows = [dict(model_id=f"m{i}", status="diverged", train_loss=float("nan"),
                 history_loss=[1.5, float("nan")], error=None) for i in range(3)]
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in RESULTS_SCHEMA} for r in rows],
                                 schema=RESULTS_SCHEMA)
    checksums.write_verified(table, tmp_path / "a.parquet")
    assert checksums._same(checksums.read_table(tmp_path / "a.parquet"), table)
    changed = table.set_column(table.column_names.index("model_id"), "model_id",
                               pa.array(["m0", "m1", "mX"]))
    assert not checksums._same(changed, table)
