"""One damaged file never takes a store down: an unreadable result is listed by `dse status`,
skipped by the analyses with a warning, and set aside (never deleted) and trained again by
`dse train`; an unreadable models.parquet stops only what needs its space."""

import warnings

import pandas as pd
import pytest
from cli_helpers import ok, one_error, run

from dse.errors import DamagedFileError, DseWarning
from dse.store.core import DAMAGED, Store
from dse.store.recipes import parse_trial
from dse.train.recipe import Recipe

FAST = ["--epochs", "1", "--train-subset", "500"]
# the settings of FAST, so that its results count as trained by `dse train ... FAST`
RECIPE = {k: v for k, v in Recipe(epochs=1, train_subset=500).asdict().items() if k != "seed"}


def truncate(path, keep=100):
    data = path.read_bytes()[:keep]
    path.write_bytes(data)
    return data


@pytest.fixture
def store(tmp_path):
    """anynetxa and anynetxe, 3 synthetic models each, every one with a result."""
    for space in ("xa", "xe"):
        ok("sample", "--space", space, "--n", 3, "--dataset", "synthetic", "--flops",
           "0.5M:3M", "--store", tmp_path)
    s = Store(tmp_path)
    for space, base in (("anynetxa", 30.0), ("anynetxe", 20.0)):
        for i, mid in enumerate(s.read_models(space)["model_id"]):
            s.write_result(space, dict(model_id=mid, space=space, status="done",
                                       error=base + i, dataset="synthetic", **RECIPE))
    return s


def test_store_skips_a_damaged_result_with_a_warning(store):
    victim = sorted(store.results_dir("anynetxa").glob("*.parquet"))[0]
    truncate(victim)
    with pytest.warns(DseWarning, match=f"skipped damaged result file {victim}"):
        res = store.read_results("anynetxa")
    mid = parse_trial(victim.stem)[0]  # the file is named by its trial
    assert len(res) == 2 and mid not in set(res["model_id"])
    assert store.statuses("anynetxa")[mid] == DAMAGED
    assert store.result_status("anynetxa", victim.stem) == DAMAGED
    assert store.result_status("anynetxa", mid) == DAMAGED
    frame, damaged = store.scan_results("anynetxa")
    assert [d.path for d in damaged] == [victim] and "magic bytes" in damaged[0].reason
    with pytest.warns(DseWarning):
        df = store.load()
    row = df[df["model_id"] == mid].iloc[0]
    assert len(df) == 6 and pd.isna(row["status"])  # counts as untrained


def test_status_lists_a_damaged_result_and_analyses_go_on(store):
    victim = sorted(store.results_dir("anynetxe").glob("*.parquet"))[1]
    data = truncate(victim)
    r = ok("status", "--store", store.root)
    assert str(victim) in r.stdout and "damaged" in r.stdout
    table = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("any")}
    assert table["anynetxe"][2:8] == ["3", "2", "0", "0", "1", "0"]  # sampled..pending
    r = ok("edf", "compare", "xa", "xe", "--store", store.root)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("Warning: skipped damaged "
                                                             f"result file {victim}")
    assert "anynetxe  2" in r.stdout
    r = ok("report", "--store", store.root)
    assert "Warning: skipped damaged result file" in r.stderr
    assert victim.read_bytes() == data  # never changed


def test_train_sets_a_damaged_result_aside_and_trains_the_model_again(store):
    victim = sorted(store.results_dir("anynetxa").glob("*.parquet"))[0]
    data = truncate(victim)
    r = ok("train", "--store", store.root, *FAST)
    assert "trained 1 of 1 pending models" in r.stdout and "was damaged; moved it to" in r.stdout
    (aside,) = store.damaged_dir("anynetxa").iterdir()
    assert aside.name.startswith(victim.stem) and aside.read_bytes() == data  # kept as it was
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing damaged is left in results/
        res = store.read_results("anynetxa")
    mid = parse_trial(victim.stem)[0]
    assert len(res) == 3 and res.set_index("model_id").loc[mid, "status"] == "done"
    assert "damaged" not in ok("status", "--store", store.root).stdout


def test_a_damaged_models_table_stops_only_its_space(store):
    path = store.models_path("anynetxa")
    data = truncate(path, 300)
    assert "dse left it unchanged" in one_error(run("edf", "compare", "xa", "xe",
                                                    "--store", store.root))
    ok("edf", "compare", "xe", "--store", store.root)
    ok("fit-linear", "--space", "xe", "--store", store.root)
    r = ok("report", "--store", store.root)
    assert "Warning: left out space anynetxa" in r.stderr
    assert "anynetxa" in (store.root / "report.html").read_text()  # named in a note
    r = ok("status", "--store", store.root)
    assert str(path) in r.stdout
    one_error(run("train", "--store", store.root, "--space", "xa", *FAST))
    r = ok("train", "--store", store.root, *FAST)  # the other spaces still train
    assert "Warning: left out space anynetxa" in r.stderr
    one_error(run("sample", "--space", "xa", "--n", 2, "--dataset", "synthetic", "--flops",
                  "0.5M:3M", "--store", store.root))
    assert path.read_bytes() == data  # never rewritten
    with pytest.raises(DamagedFileError):
        store.load(["anynetxa"])
