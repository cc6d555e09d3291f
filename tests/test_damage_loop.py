"""One damaged file costs a bounded chunk of results: 3,000 results of one space compacted into
bounded segments, then one file of the store damaged (truncated, a flipped byte, deleted) at a
time, round after round at random. After each: every error value read is the one written (a
flipped byte makes a file damaged, never a changed number), at least all but the damaged
file's own results still read, an analysis runs on them, and `dse verify` names the file and
what it cost. The default suite runs a few rounds; `-m slow` runs 150. The seed is fresh each
run and printed on failure."""

import datetime as dt
import json
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import ok, run

from dse.analysis import stats
from dse.errors import DamagedFileError
from dse.store import compaction, results, verify
from dse.store.core import Store
from dse.store.recipes import fingerprint
from dse.store.schema import RESULTS_SCHEMA
from dse.train.recipe import Recipe

SPACE = "anynetxa"
RECIPE = {k: v for k, v in Recipe(epochs=1, train_subset=500).asdict().items() if k != "seed"}
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A store of 3,000 anynetxa models (2,900 sampled, then 100: models.parquet has a previous
    generation) and a result for each, written as one segment of the release before bounded
    segments and compacted; a claim and an experiment summary beside them. Returns the store's
    root and model_id → the error written."""
    root = tmp_path_factory.mktemp("damage") / "runs"
    for n in (2900, 100):
        ok("sample", "--space", "xa", "--n", n, "--dataset", "synthetic", "--flops", "0.5M:3M",
           "--store", root)
    s = Store(root)
    ids = s.read_models(SPACE)["model_id"].tolist()
    rng = np.random.default_rng(0)
    rows = [dict(model_id=m, space=SPACE, status="done", error=float(rng.uniform(5, 95)),
                 dataset="synthetic", seed=0, finished_at=T0 + dt.timedelta(seconds=i),
                 **RECIPE) for i, m in enumerate(ids)]
    recipe = fingerprint(rows[0])
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in RESULTS_SCHEMA}
                                  | {"recipe": recipe} for r in rows], schema=RESULTS_SCHEMA)
    s.segments_dir(SPACE).mkdir(parents=True)
    pq.write_table(table, s.segment_path(SPACE, 1))  # one file for all, as before
    c = s.compact(SPACE)
    assert [int(p.stem) for p in c.written] == [2, 3, 4] and c.results == 3000
    assert [pq.read_metadata(p).num_rows for p in c.written] == [1024, 1024, 952]
    assert [p for _, p in results.segments(s, SPACE)[::-1]] == list(c.written)  # no other
    claim = s.claim_path(SPACE, ids[0])
    claim.parent.mkdir(parents=True)
    claim.write_text(json.dumps(dict(model_id=ids[0], host="h", pid=1, heartbeat_at=1.0)))
    summary = s.summary_path("exp")
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps(dict(name="exp", claims=[])))
    return root, dict(zip(ids, (r["error"] for r in rows)))


def victims(root: Path) -> list[Path]:
    """Every file of the store that damage could hit."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def damage(path: Path, how: str, rng: random.Random) -> str:
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
        return "deleted"
    if how == "truncate":
        keep = rng.randrange(len(data))
        path.write_bytes(data[:keep])
        return f"truncated to {keep} of {len(data)} bytes"
    at, bit = rng.randrange(len(data)), rng.randrange(8)
    flipped = bytearray(data)
    flipped[at] ^= 1 << bit
    path.write_bytes(bytes(flipped))
    return f"bit {bit} of byte {at} of {len(data)} flipped"


def read_back(s: Store, written: dict):
    """The results every analysis reads, each error value checked against the one written."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = s.load()
    done = df[df["status"] == "done"]
    assert done["model_id"].is_unique
    # never a number that was not written
    assert (done["error"].to_numpy() == done["model_id"].map(written).to_numpy()).all()
    return done


def check(root: Path, written: dict, victim: Path, how: str) -> int:
    """The invariants after one damaged file; returns the results read."""
    s = Store(root)
    rel = victim.relative_to(root / SPACE) if victim.is_relative_to(root / SPACE) else None
    done = read_back(s, written)
    n = len(done)
    rep = verify.check(s)
    named = {f.path: f for f in rep.damaged}
    if rel is not None and rel.parent.name == "segments" and victim.suffix == ".parquet":
        assert n >= 3000 - compaction.SEGMENT_ROWS and n >= 1900
        if n < 3000:  # results lost: the file is named with what it cost
            f = named[victim]
            assert f.lost == 3000 - n and f.total == compaction.recorded_rows(s, SPACE)[victim.stem]
    elif rel is not None and rel.name == "models.parquet":
        assert n >= 2900  # its previous generation: every model but the 100 sampled since
        if n < 3000:
            assert victim in named
    else:
        assert n == 3000
    if n < 3000:
        assert rep.damaged  # what was lost is named
    if named:
        assert stats.summarize(done["error"].to_numpy())["n"] == n  # analyses run on the rest
    return n


def rounds(base, tmp_path, count: int) -> None:
    root0, written = base
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    files = victims(root0)
    for k in range(count):
        root = tmp_path / f"r{k}"
        shutil.copytree(root0, root)
        victim = root / rng.choice(files).relative_to(root0)
        how = rng.choice(["truncate", "flip", "flip", "delete"])
        what = damage(victim, how, rng)
        try:
            check(root, written, victim, how)
        except (AssertionError, Exception) as e:
            raise AssertionError(f"seed {seed}, round {k}: {victim.relative_to(root)} {what}: "
                                 f"{type(e).__name__}: {e}") from e
        shutil.rmtree(root)


def test_random_damage_short(base, tmp_path):
    rounds(base, tmp_path, 6)


@pytest.mark.slow
def test_random_damage(base, tmp_path):
    rounds(base, tmp_path, 150)


def test_every_kind_of_damage_to_a_segment_costs_at_most_its_chunk(base, tmp_path):
    root0, written = base
    for how in ("truncate", "flip", "delete"):
        root = tmp_path / how
        shutil.copytree(root0, root)
        s = Store(root)
        victim = s.segment_path(SPACE, 3)
        if how == "truncate":
            victim.write_bytes(victim.read_bytes()[:5000])
        elif how == "flip":  # a byte in the data of the third row group
            col = pq.read_metadata(victim).row_group(2).column(3)  # error
            data = bytearray(victim.read_bytes())
            data[col.data_page_offset + col.total_compressed_size // 2] ^= 0x10
            victim.write_bytes(bytes(data))
        else:
            victim.unlink()
        n = check(root, written, victim, how)
        f = {x.path: x for x in verify.check(s).damaged}[victim]
        if how == "flip":  # one row group lost, the others salvaged
            assert (f.salvaged, f.total, n) == (1024 - 128, 1024, 3000 - 128)
        else:
            assert (f.salvaged, f.total, n) == (0, 1024, 3000 - 1024)
        if how == "flip":  # the analyses run on the rest, naming what they skipped
            r = run("edf", "compare", "xa", "--store", root)
            assert r.exit_code == 0 and f"anynetxa  {n:,}" in r.stdout, r.output
            assert f"skipped damaged result file {victim}" in r.stderr
            assert "read the 896 results of its intact row groups" in r.stderr
        r = run("verify", "--store", root)
        assert r.exit_code == 2 and str(victim) in r.stdout
        assert r.stderr.startswith(f"Error: 1 damaged file in store {root} ({f.lost:,} results "
                                   "lost)") and r.stderr.count("\n") == 1
        r = run("verify", "--repair", "--store", root)
        assert r.exit_code == 0, r.output
        assert ok("verify", "--store", root).stdout.splitlines()[2].split()[2:] == \
            ["3,000", f"{n:,}", f"{3000 - n:,}"]  # models, results, untrained
        if how != "delete":
            (aside,) = s.damaged_dir(SPACE).iterdir()
            assert aside.name.startswith("segment-000003.")
        assert len(read_back(s, written)) == n
        (st,) = json.loads(ok("status", "--json", "--store", root).stdout)
        assert (st["done"], st["pending"]) == (n, 3000 - n)  # `dse train` trains the lost


def test_a_damaged_models_table_reads_its_previous_generation(base, tmp_path):
    root0, written = base
    root = tmp_path / "runs"
    shutil.copytree(root0, root)
    s = Store(root)
    path = s.models_path(SPACE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(Warning, match="read its previous generation models.previous.parquet "
                                     r"\(2900 models"):
        assert len(s.read_models(SPACE)) == 2900
    r = run("edf", "compare", "xa", "--store", root)
    assert r.exit_code == 0 and "previous generation" in r.stderr
    with pytest.raises(DamagedFileError):  # sampling into it waits for the repair
        s.read_models(SPACE, previous=False)
    r = run("verify", "--repair", "--store", root)
    assert r.exit_code == 0 and "rebuilt" in r.stdout, r.output
    assert len(s.read_models(SPACE)) == 2900 and path.read_bytes() != data
    assert any(p.name.startswith("models.") for p in s.damaged_dir(SPACE).iterdir())
    assert len(read_back(s, written)) == 2900 and ok("verify", "--store", root)
