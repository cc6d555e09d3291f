"""The Parquet store: schema round trip, appends keep old rows, refusals change nothing."""

import os
import stat

import pandas as pd
import pyarrow.parquet as pq
import pytest

from dse.data import datasets
from dse.errors import DseError
from dse.space import definition as spaces
from dse.space.sampling import Window, sample
from dse.store import schema
from dse.store.core import Store

TASK = datasets.task("fashion-mnist")


def _add(root, name="xe", n=10, seed=0, dataset="fashion-mnist"):
    space = spaces.load(name)
    have = set(Store(root).read_models(space.name)["model_id"])
    rows = sample(space, n, datasets.task(dataset), Window(1e6, 3e6), seed=seed, exclude=have)
    return Store(root).add_models(space, dataset, datasets.task(dataset), rows, seed)


def test_round_trip_with_schema(tmp_path):
    added = _add(tmp_path, "rx", 12)
    path = tmp_path / "regnetx" / "models.parquet"
    stored = pq.read_schema(path)
    assert stored.names == schema.MODELS_SCHEMA.names
    for f in schema.MODELS_SCHEMA:  # parquet renames list items; compare value types
        got = stored.field(f.name).type
        assert (got.value_type == f.type.value_type) if hasattr(f.type, "value_type") \
            else got == f.type, f.name
    df = pd.read_parquet(path)
    assert len(df) == 12 and df["model_id"].is_unique
    assert df["sample_index"].tolist() == list(range(12))
    r = df.iloc[0]
    assert r["space"] == "regnetx" and r["kind"] == "regnet" and r["dataset"] == "fashion-mnist"
    assert (r["resolution"], r["stem"], r["in_channels"], r["num_classes"]) == (28, "cifar", 1, 10)
    assert list(r["ds"]) == list(added.iloc[0]["ds"]) and sum(r["ds"]) == r["d"]
    assert 1e6 <= r["flops"] <= 3e6 and r["group_w"] in (1, 2, 4, 8, 16, 32)
    assert (tmp_path / "regnetx" / "space.yaml").is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_anynet_rows_have_null_regnet_params(tmp_path):
    df = _add(tmp_path, "xa", 5)
    df = Store(tmp_path).read_models("anynetxa")
    assert df[["d", "w0", "wa", "wm", "group_w", "b"]].isna().all().all()


def test_sampling_more_keeps_old_and_adds_distinct(tmp_path):
    _add(tmp_path, n=10, seed=0)
    before = Store(tmp_path).read_models("anynetxe")
    _add(tmp_path, n=10, seed=0)  # same seed: the first 10 are skipped as repeats
    after = Store(tmp_path).read_models("anynetxe")
    assert len(after) == 20 and after["model_id"].is_unique
    pd.testing.assert_frame_equal(after.iloc[:10], before)
    assert after["sample_index"].tolist() == list(range(20))


def _snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_refusals_leave_the_store_unchanged(tmp_path):
    root = tmp_path / "store"
    _add(root, n=5)
    snap = _snapshot(root)
    with pytest.raises(DseError, match="holds fashion-mnist models"):
        _add(root, n=5, dataset="cifar10")
    other = tmp_path / "other.yaml"
    other.write_text("extends: anynetxe\nname: anynetxe\nse_ratio: 0.25\n")
    space = spaces.load(str(other))
    with pytest.raises(DseError, match="different definition"):
        Store(root).add_models(space, "fashion-mnist", TASK, [], 0)
    assert _snapshot(root) == snap


def test_damaged_table_is_reported_not_overwritten(tmp_path):
    _add(tmp_path, n=3)
    path = tmp_path / "anynetxe" / "models.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(DseError, match="not a readable Parquet table"):
        _add(tmp_path, n=3)
    assert path.read_bytes() == b"not parquet"


def test_results_and_join(tmp_path):
    _add(tmp_path, n=4)
    ids = Store(tmp_path).read_models("anynetxe")["model_id"].tolist()
    Store(tmp_path).write_result("anynetxe", dict(model_id=ids[0], space="anynetxe",
                                                   status="done", error=12.5, epochs=10))
    Store(tmp_path).write_result("anynetxe", dict(model_id=ids[1], space="anynetxe",
                                                   status="diverged", epochs=10))
    res = pd.read_parquet(tmp_path / "anynetxe" / "results")
    assert sorted(res["status"]) == ["diverged", "done"]
    joined = Store(tmp_path).load()
    assert len(joined) == 4
    assert joined.set_index("model_id").loc[ids[0], "error"] == 12.5
    assert "train_seed" in joined and "seed_x" not in joined
    assert joined["status"].isna().sum() == 2
    assert Store(tmp_path).spaces() == ["anynetxe"]
    assert not list((tmp_path / "anynetxe" / "results").glob("*.tmp"))


def test_concurrent_samplers_never_collide(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "dse", "sample", "--space", "xd", "--n", "25",
           "--dataset", "synthetic", "--flops", "1M:5M", "--store", str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    df = Store(tmp_path).read_models("anynetxd")
    assert len(df) == 75 and df["model_id"].is_unique
    assert sorted(df["sample_index"]) == list(range(75))
