"""Compacted results: per-model files fold into segments without loss, a reader counts every
result once at every moment of a compaction (kills included), files written by others are read
against the store's schema, and a store written by the previous release opens unchanged and
compacts without loss."""

import datetime as dt
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import ok, one_error, run

from dse.errors import DseError, DseWarning, WriteRefusedError
from dse.runner import loop
from dse.runner.options import TrainOptions
from dse.store import compaction, results
from dse.store.core import DAMAGED, Store
from dse.store.recipes import fingerprint, parse_trial, trial_id
from dse.store.schema import RESULTS_SCHEMA
from dse.train.recipe import Recipe

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
RECIPE = {k: v for k, v in Recipe(epochs=1).asdict().items() if k != "seed"}  # two_spaces'

DDS_CPU = Path(__file__).resolve().parent.parent / "experiments" / "results" / "dds-cpu"


def row(mid, status="done", error=None, t=0, space="s"):
    return dict(model_id=mid, space=space, status=status, epochs=1, dataset="synthetic",
                error=(error if error is not None else 10.0 + int(mid[1:]) / 100)
                if status == "done" else None, finished_at=T0 + dt.timedelta(seconds=t))


def ids(n, start=0):
    return [f"m{i:03d}" for i in range(start, start + n)]


def frame(store, space="s"):
    """The space's results as a reader sees them, one row per model, sorted."""
    df = store.read_results(space)
    assert df["model_id"].is_unique
    return df.sort_values("model_id").reset_index(drop=True)


def parquet_files(root):
    return sorted(p for p in Path(root).rglob("*.parquet") if not p.name.startswith("."))


def test_compaction_folds_files_into_a_segment_without_loss(tmp_path):
    s = Store(tmp_path)
    for i, m in enumerate(ids(40)):
        s.write_result("s", row(m, "diverged" if i % 10 == 3 else "done", t=i))
    before, statuses = frame(s), s.statuses("s")
    c = s.compact("s")
    assert (c.absorbed, c.results, c.set_aside) == (40, 40, ())
    assert c.segment == s.segment_path("s", 1) and c.segment.is_file()
    assert results.per_model_files(s, "s") == []
    pd.testing.assert_frame_equal(frame(s), before)
    assert s.statuses("s") == statuses and s.result_status("s", "m003") == "diverged"
    # a compacted store is one table to pandas as well
    assert sorted(pd.read_parquet(s.results_dir("s"))["model_id"]) == ids(40)
    assert s.compact("s").segment is None  # nothing to fold
    for i, m in enumerate(ids(5, 40)):
        s.write_result("s", row(m, t=100 + i))
    assert s.result_status("s", "m041") == "done" and s.result_status("s", "m001") == "done"
    c = s.compact("s")
    assert c.segment == s.segment_path("s", 2) and (c.absorbed, c.results) == (5, 45)
    assert [p.name for p in parquet_files(s.results_dir("s"))] == ["000002.parquet"]
    assert frame(s)["model_id"].tolist() == ids(45)
    assert s.result_status("s", "m999") is None


def test_a_newer_result_replaces_its_segment_row(tmp_path):
    """--retry-failed: a model whose failed result was compacted trains again."""
    s = Store(tmp_path)
    for i, m in enumerate(ids(3)):
        s.write_result("s", row(m, "failed", t=i))
    s.compact("s")
    s.write_result("s", row("m001", "done", error=7.5, t=50))
    assert s.result_status("s", "m001") == "done"
    df = frame(s)
    assert df["status"].tolist() == ["failed", "done", "failed"] and df["error"][1] == 7.5
    s.compact("s")
    assert frame(s)["status"].tolist() == ["failed", "done", "failed"]


class Killed(BaseException):
    """The process died here."""


def _store_mid_life(root):
    """A segment of 20 results, then 10 per-model files: 8 new models, one retrained (failed
    → done) and one identical to its segment row (a compaction killed before its removal)."""
    s = Store(root)
    for i, m in enumerate(ids(20)):
        s.write_result("s", row(m, "failed" if m == "m005" else "done", t=i))
    s.compact("s")
    seg = pq.read_table(s.segment_path("s", 1)).to_pylist()
    for i, m in enumerate(ids(8, 20)):
        s.write_result("s", row(m, t=30 + i))
    s.write_result("s", row("m005", "done", error=3.0, t=60))
    s.write_result("s", next(r for r in seg if r["model_id"] == "m007"))
    return s


@pytest.fixture(scope="module")
def mid_life_frame(tmp_path_factory):
    """What a reader must see of _store_mid_life, before or after any compaction."""
    return frame(_store_mid_life(tmp_path_factory.mktemp("reference")))


def _kill_at(monkeypatch, n):
    """Make the n-th file operation of a compaction (write, rename, unlink) the last."""
    calls = [0]

    def killer(real):
        def op(*a, **k):
            calls[0] += 1
            if calls[0] == n:
                raise Killed
            return real(*a, **k)
        return op

    monkeypatch.setattr(compaction.checksums, "write_table",
                        killer(compaction.checksums.write_table))
    monkeypatch.setattr(compaction.os, "unlink", killer(os.unlink))
    monkeypatch.setattr("dse.files.os.replace", killer(os.replace))
    return calls


@pytest.mark.parametrize("n", range(1, 15))
def test_a_kill_at_any_step_of_a_compaction_loses_and_doubles_nothing(tmp_path, monkeypatch, n,
                                                                     mid_life_frame):
    want = mid_life_frame
    s = _store_mid_life(tmp_path)
    calls = _kill_at(monkeypatch, n)
    try:
        s.compact("s")
        killed = False
    except Killed:
        killed = True
    monkeypatch.undo()
    assert killed == (n <= calls[0])  # 14 operations: write, rename, 1 + 10 removals + spare
    for p in parquet_files(s.root):
        pq.read_table(p)  # nothing unreadable
    pd.testing.assert_frame_equal(frame(s), want)
    st = s.statuses("s")
    assert len(st) == 28 and st["m005"] == "done"
    s.compact("s")
    pd.testing.assert_frame_equal(frame(s), want)
    assert [p.parent.name for p in parquet_files(s.results_dir("s"))] == ["segments"]


def test_a_file_rewritten_during_a_compaction_is_not_removed(tmp_path, monkeypatch):
    """A writer that does not take the lock (another tool, an old dse) replaces a result file
    after the compaction read it: the compaction keeps the new file."""
    s = Store(tmp_path)
    for i, m in enumerate(ids(5)):
        s.write_result("s", row(m, "failed", t=i))
    real = compaction.write_atomic

    m002 = s.result_path("s", trial_id("m002", fingerprint(row("m002")), 0))

    def meanwhile(path, write, **k):
        tmp = s.results_dir("s") / "elsewhere.tmp"
        pq.write_table(pa.Table.from_pylist([row("m002", "done", error=1.0, t=99)],
                                            schema=RESULTS_SCHEMA), tmp)
        os.replace(tmp, m002)  # the trial's own file, rewritten
        return real(path, write, **k)

    monkeypatch.setattr(compaction, "write_atomic", meanwhile)
    c = s.compact("s")
    assert c.absorbed == 4 and m002.is_file()
    df = frame(s)
    assert df.set_index("model_id").loc["m002", "status"] == "done"
    monkeypatch.undo()
    s.compact("s")
    assert frame(s).set_index("model_id").loc["m002", "error"] == 1.0


def test_a_writer_and_compactions_at_the_same_time(tmp_path):
    """Another process writes 200 results while this one compacts over and over."""
    code = ("import sys, datetime as dt; from dse.store.core import Store\n"
            "s = Store(sys.argv[1])\n"
            "for i in range(200):\n"
            "    s.write_result('s', dict(model_id=f'm{i:03d}', space='s', status='done',"
            " error=float(i), finished_at=dt.datetime.now(dt.timezone.utc)))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env)
    s, seen, compactions = Store(tmp_path), 0, 0
    while p.poll() is None:
        c = s.compact("s")
        compactions += c.segment is not None
        df = frame(s)  # never a result twice, never one lost
        assert len(df) >= seen and set(df["error"]) == set(map(float, range(len(df))))
        seen = len(df)
    assert p.returncode == 0 and compactions >= 2
    s.compact("s")
    assert frame(s)["error"].tolist() == list(map(float, range(200)))
    assert results.per_model_files(s, "s") == []


def test_readers_compact_a_space_of_many_files_first(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "COMPACT_AT", 10)
    s = Store(tmp_path)
    for i, m in enumerate(ids(9)):
        s.write_result("s", row(m, t=i))
    s.statuses("s")
    assert len(results.per_model_files(s, "s")) == 9  # few: left as they are
    s.write_result("s", row("m009", t=9))
    assert len(s.statuses("s")) == 10 and results.per_model_files(s, "s") == []
    for i, m in enumerate(ids(10, 10)):
        s.write_result("s", row(m, t=10 + i))

    def refused(space):
        raise WriteRefusedError("cannot write x: read-only file system (store y: 1 GB free)", 30)

    monkeypatch.setattr(s, "compact", refused)
    with pytest.warns(DseWarning, match="10 results of s stay in per-model files.*read-only"):
        assert len(s.read_results("s")) == 20  # read all the same


def test_leftovers_of_killed_writers_are_ignored_and_cleaned_up(tmp_path):
    s = Store(tmp_path)
    for i, m in enumerate(ids(3)):
        s.write_result("s", row(m, t=i))
    s.compact("s")
    old = [s.results_dir("s") / ".m009.parquet.x1.tmp", s.segments_dir("s") / ".000002.a.tmp"]
    fresh = s.results_dir("s") / ".m010.parquet.x2.tmp"
    for p in old + [fresh]:
        p.write_bytes(b"PAR1 half a file")
    for p in old:
        os.utime(p, (time.time() - 3600,) * 2)
    assert len(frame(s)) == 3 and s.status_scan("s")[1] == []
    s.write_result("s", row("m003", t=3))
    s.compact("s")
    assert not any(p.exists() for p in old) and fresh.exists()


# ---- files written by others ----------------------------------------------------------------

def _foreign(path, rows, **types):
    """A result file as pandas writes it, with some columns of other (compatible) types."""
    df = pd.DataFrame(rows)
    table = pa.Table.from_pandas(df, preserve_index=False)
    for name, t in types.items():
        table = table.set_column(table.schema.get_field_index(name), name,
                                 table.column(name).cast(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_compatible_types_are_cast_to_the_stores(tmp_path):
    s = Store(tmp_path)
    s.write_result("s", row("m000", t=0))
    rows = [dict(row("m001", t=1), train_subset=None, note="imported"),
            dict(row("m002", "diverged", t=2), train_subset=None, note="imported")]
    for r in rows:
        r["finished_at"] = pd.Timestamp(r["finished_at"]) + pd.Timedelta(microseconds=7)
    _foreign(s.results_dir("s") / "imported.parquet", rows, model_id=pa.large_string(),
             epochs=pa.int32(), error=pa.float32(), status=pa.dictionary(pa.int8(),
                                                                          pa.string()))
    df = frame(s)
    assert df["model_id"].tolist() == ["m000", "m001", "m002"]
    assert df["status"].tolist() == ["done", "done", "diverged"]
    assert df["error"][1] == pytest.approx(10.01, rel=1e-6) and pd.isna(df["error"][2])
    assert df["epochs"].dtype == "int64" and df["note"].fillna("").tolist() == [
        "", "imported", "imported"]
    assert df["finished_at"][1] == pd.Timestamp(T0 + dt.timedelta(seconds=1))  # to the ms
    s.compact("s")
    seg = pq.read_schema(s.segment_path("s", 1))
    assert [seg.field(f.name).type for f in RESULTS_SCHEMA] == RESULTS_SCHEMA.types
    assert frame(s)["note"].fillna("").tolist() == ["", "imported", "imported"]


def test_extra_columns_that_disagree_are_read_without_and_stop_a_compaction(tmp_path):
    s = Store(tmp_path)
    _foreign(s.result_path("s", "m000"), [dict(row("m000"), note="text")])
    _foreign(s.result_path("s", "m001"), [dict(row("m001", t=1), note=7)])
    df = frame(s)
    assert df["model_id"].tolist() == ["m000", "m001"] and "note" not in df
    with pytest.raises(DseError, match="columns that the store's schema does not name "
                                       "disagree in type"):
        s.compact("s")
    assert len(results.per_model_files(s, "s")) == 2 and not s.segments_dir("s").exists()


@pytest.mark.parametrize("bad, reason", [
    (dict(error=["about ten"]), "column error is (large_)?string, not double"),
    (dict(epochs=[1.5]), "column epochs holds double values that are not int64"),
    (dict(status=["finished"]), "status 'finished' is none of done, diverged, failed"),
    (dict(model_id=[None]), "a row has no model_id"),
    (dict(finished_at=[[1, 2]]), "column finished_at is list<"),
])
def test_a_file_that_cannot_be_cast_is_damaged(tmp_path, bad, reason):
    s = Store(tmp_path)
    s.write_result("s", row("m000", t=0))
    r = {**row("m001", t=1), **{k: v[0] for k, v in bad.items()}}
    path = s.result_path("s", "m001")
    pq.write_table(pa.Table.from_pandas(pd.DataFrame([r]), preserve_index=False), path)
    with pytest.warns(DseWarning, match=f"skipped damaged result file {path} .*{reason}"):
        assert frame(s)["model_id"].tolist() == ["m000"]
    assert s.statuses("s")["m001"] == DAMAGED and s.result_status("s", "m001") == DAMAGED
    data = path.read_bytes()
    s.compact("s")
    assert path.read_bytes() == data  # left where it is, unchanged
    moved = s.set_aside("s", "m001")
    assert moved.read_bytes() == data and s.result_status("s", "m001") is None


@pytest.fixture
def two_spaces(tmp_path):
    """anynetxa and anynetxe, 3 synthetic models each; results written half by dse and half
    by pandas with large_string keys (results imported from another cluster)."""
    for space in ("xa", "xe"):
        ok("sample", "--space", space, "--n", 3, "--dataset", "synthetic", "--flops",
           "0.5M:3M", "--store", tmp_path)
    s = Store(tmp_path)
    for space, base in (("anynetxa", 30.0), ("anynetxe", 20.0)):
        for i, mid in enumerate(s.read_models(space)["model_id"]):
            r = dict(row("m000", t=i), model_id=mid, space=space, error=base + i, **RECIPE)
            if i % 2:
                s.write_result(space, r)
            else:
                _foreign(s.result_path(space, mid), [r], model_id=pa.large_string())
    return s


def test_commands_read_a_store_of_mixed_writers(two_spaces):
    root = two_spaces.root
    for args in (["status"], ["edf", "compare", "xa", "xe"], ["search-efficiency", "xa", "xe"],
                 ["report"], ["compact"]):
        r = ok(*args, "--store", root)
        assert r.stderr == "", (args, r.stderr)
    assert "anynetxa  synthetic        3     3" in ok("status", "--store", root).stdout


def test_a_damaged_file_of_another_writer_is_named_skipped_and_trained_again(two_spaces):
    root, s = two_spaces.root, two_spaces
    victim = sorted(s.results_dir("anynetxe").glob("*.parquet"))[0]
    victim_id = parse_trial(victim.stem)[0]
    _foreign(victim, [dict(row("m000"), model_id=victim_id, space="anynetxe",
                           error="twenty", **RECIPE)])
    r = ok("status", "--store", root)
    assert str(victim) in r.stdout and "damaged" in r.stdout
    r = ok("edf", "compare", "xa", "xe", "--store", root)
    assert r.stderr.startswith(f"Warning: skipped damaged result file {victim} (column error "
                               "is large_string, not double)")  # pandas' strings
    # dse train trains it again (test_damaged.py follows a damaged file through a real run)
    same = TrainOptions(recipe=Recipe(**RECIPE))  # the recipe the results were trained with
    assert [j.model_id for j in loop.jobs_of(s, "anynetxe", options=same)] == [victim_id]
    assert [j.model_id for j in loop.jobs_of(s, "anynetxa", options=same)] == []


# ---- a store of the previous release ------------------------------------------------------

def test_a_store_of_the_previous_release_opens_unchanged_and_compacts_without_loss(tmp_path):
    root = tmp_path / "dds-cpu"
    shutil.copytree(DDS_CPU, root)
    files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    s = Store(root)
    before = s.load().sort_values(["space", "model_id"]).reset_index(drop=True)
    assert len(before) == 224 and before["status"].eq("done").all()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == files  # read only
    r = ok("compact", "--store", root)
    assert r.stdout.count(" 32            32  ") == 7
    after = Store(root).load().sort_values(["space", "model_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(after, before)
    for space in s.spaces():
        old = pd.concat([pd.read_parquet(io.BytesIO(b)) for p, b in files.items()
                         if p.parent.name == "results" and p.parent.parent.name == space])
        new = pd.read_parquet(s.results_dir(space))
        # the columns added since (recipe, history_*) follow; the recipe is the one recorded
        assert new["recipe"].notna().all() and new["history_error"].isna().all()
        pd.testing.assert_frame_equal(
            new[old.columns].sort_values("model_id").reset_index(drop=True),
            old.sort_values("model_id").reset_index(drop=True))


# ---- damaged segments and `dse compact` -----------------------------------------------------

def test_a_damaged_segment_is_named_and_set_aside_and_an_older_one_read(tmp_path):
    s = Store(tmp_path)
    for i, m in enumerate(ids(10)):
        s.write_result("s", row(m, t=i))
    s.compact("s")
    first = s.segment_path("s", 1).read_bytes()
    for i, m in enumerate(ids(5, 10)):
        s.write_result("s", row(m, t=10 + i))
    s.compact("s")
    s.segment_path("s", 1).write_bytes(first)  # left by a compaction killed before cleanup
    newest = s.segment_path("s", 2)
    newest.write_bytes(newest.read_bytes()[:200])
    bad = newest.read_bytes()
    with pytest.warns(DseWarning, match=f"skipped damaged result file {newest}"):
        assert frame(s)["model_id"].tolist() == ids(10)
    assert [d.path for d in s.status_scan("s")[1]] == [newest]
    s.write_result("s", row("m010", t=20))
    c = s.compact("s")
    (aside,) = c.set_aside
    assert aside.parent == s.damaged_dir("s") and aside.name.startswith("segment-000002.")
    assert aside.read_bytes() == bad  # moved, never changed
    assert c.segment == s.segment_path("s", 3) and frame(s)["model_id"].tolist() == ids(11)
    assert [p.name for p in parquet_files(s.results_dir("s"))] == ["000003.parquet"]


def test_compact_command(tmp_path):
    assert "does not exist" in one_error(run("compact", "--store", tmp_path / "none"))
    ok("sample", "--space", "xa", "--n", 2, "--dataset", "synthetic", "--flops", "0.5M:3M",
       "--store", tmp_path)
    assert "unknown space 'xq'" in one_error(run("compact", "--space", "xq", "--store",
                                                 tmp_path))
    s = Store(tmp_path)
    for i, mid in enumerate(s.read_models("anynetxa")["model_id"]):
        s.write_result("anynetxa", dict(row("m000", t=i), model_id=mid, space="anynetxa"))
    r = ok("compact", "--space", "xa", "--store", tmp_path)
    assert r.stdout.splitlines()[2].split() == [
        "anynetxa", "2", "2", str(s.segment_path("anynetxa", 1))]
    assert ok("compact", "--store", tmp_path).stdout.splitlines()[2].split() == \
        ["anynetxa", "2", "0"]
