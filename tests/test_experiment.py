"""`dse run`: experiment files (keys, --set, one-line errors), claims and their verdicts, the
plan of --dry-run, and a real run on synthetic data that is killed and resumed."""

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import ROOT, ok, one_error, reanalyzed, run

from dse.method import claims as expect
from dse.method import experiment, stages
from dse.store.core import Store
from dse.store.recipes import parse_trial

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
BASE = dict(name="t", dataset="synthetic", n=3, spaces=["anynetxa", "anynetxe"],
            flops="0.5M:2M", seed=0,
            train=dict(epochs=1, train_subset=400, batch_size=50, device="cpu", jobs=1),
            expect=["anynetxe better than anynetxa", "xa same as xe"])


def write(tmp_path, **changes):
    cfg = {**BASE, **changes}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


# ---- the file --------------------------------------------------------------------------------

def test_a_minimal_file_gets_the_defaults(tmp_path):
    p = write(tmp_path, flops=None, train=None, expect=None, seed=None)
    e = experiment.load(p)
    assert e.spaces == ("anynetxa", "anynetxe") and e.n == 3 and e.seed == 0
    assert (e.flops.lo, e.flops.hi) == (29.4e6, 32.7e6)  # 360–400M scaled to 32×32
    assert e.recipe.epochs == 10 and e.options.jobs == 1 and e.claims == ()
    assert e.store_path() == str(Path("runs") / "t")
    assert e.store_path("elsewhere") == "elsewhere"


def test_set_overrides_any_key_before_the_checks(tmp_path):
    e = experiment.load(write(tmp_path), ["n=5", "train.epochs=2", "spaces=[xb, xc]",
                                          "analyze.edf.bands=all", "expect=[]"])
    assert e.n == 5 and e.recipe.epochs == 2 and e.spaces == ("anynetxb", "anynetxc")
    assert e.analyses.bands == "all" and e.recipe.train_subset == 400


def test_a_relative_store_is_next_to_the_file(tmp_path):
    e = experiment.load(write(tmp_path, store="results/x"))
    assert Path(e.store_path()) == tmp_path / "results" / "x"


@pytest.mark.parametrize("changes, sets, message", [
    (dict(n=0), (), "exp.yaml: n: must be an integer ≥ 1 (got 0)"),
    (dict(spaces=["anynetxz"]), (), "exp.yaml: spaces: unknown space 'anynetxz'"),
    (dict(dataset="mnist"), (), "exp.yaml: dataset: unknown dataset 'mnist'"),
    (dict(flops="2M:1M"), (), "exp.yaml: flops:"),
    (dict(colour="red"), (), "exp.yaml: colour: unknown key; allowed: name, about"),
    ({}, ("train.epoch=2",), "exp.yaml: train.epoch: unknown key; allowed: epochs"),
    ({}, ("train.warmup=5",), "exp.yaml: train.warmup: (5) exceeds epochs (1)"),
    ({}, ("train.jobs=0",), "exp.yaml: train.jobs: must be an integer ≥ 1"),
    ({}, ("train.paper=yes please",), "exp.yaml: train.paper: must be true or false"),
    (dict(expect=["xe beats xa"]), (), "exp.yaml: expect[1]: cannot read the claim 'xe beats"),
    (dict(expect=["regnetx better than xa"]), (),
     "exp.yaml: expect[1]: 'regnetx' is not one of the experiment's spaces"),
    (dict(expect=["xe good wm contains 2.5"]), (),
     "exp.yaml: expect[1]: 'wm' is not a parameter of anynetxe"),
    (dict(analyze=dict(edf=dict(bands="some"))), (), "exp.yaml: analyze.edf.bands: must be"),
    (dict(name=None), (), "exp.yaml: name: is required"),
    (dict(margin=0), (), "exp.yaml: margin: must be a number of points of error > 0 (got 0)"),
    ({}, ("correction=bonferroni",), "exp.yaml: correction: must be none, holm, bh (got "),
    (dict(expect=["xe better than xa within 1"]), (),
     "expect[1]: 'xe better than xa within 1': a margin ('within M') goes with 'same as'"),
    (dict(expect=["xe same as xa within -1"]), (), "the margin must be a positive number"),
    ({}, ("n",), "--set 'n' is not KEY=VALUE"),
])
def test_mistakes_are_one_line_naming_the_file_and_key(tmp_path, changes, sets, message):
    p = write(tmp_path, **changes)
    r = run("run", p, "--dry-run", "--store", tmp_path / "s",
            *[a for s in sets for a in ("--set", s)])
    err = one_error(r)
    assert message in err, err
    assert not (tmp_path / "s").exists()


def test_a_file_that_is_not_yaml_or_not_there(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    assert "bad.yaml: not valid YAML (line 2)" in one_error(run("run", tmp_path / "bad.yaml"))
    assert "experiment file" in one_error(run("run", tmp_path / "none.yaml"))


# ---- claims ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, a, b", [
    ("xe better than xa", "better", "xe", "xa"),
    ("xa worse than xe", "better", "xe", "xa"),
    ("rx at least as good as xe", "at_least", "rx", "xe"),
    ("xb same as xa", "same", "xb", "xa"),
    ("xb same as xa within 0.5", "same", "xb", "xa"),
    ("rx at least as good as xe within 2", "at_least", "rx", "xe"),
])
def test_claims_are_read_from_words(text, kind, a, b):
    c = expect.parse_claim(text)
    assert (c.kind, str(c.a), str(c.b)) == (kind, a, b)
    assert c.margin == (float(text.split()[-1]) if "within" in text else None)


def test_margin_and_correction_are_read_with_their_defaults(tmp_path):
    e = experiment.load(write(tmp_path))
    assert (e.margin, e.correction) == (1.0, "holm")
    e = experiment.load(write(tmp_path, margin=0.5, correction="bh"))
    assert (e.margin, e.correction) == (0.5, "bh")


def test_verdicts_follow_the_tests_in_the_stated_direction():
    rng = np.random.default_rng(0)
    good, bad = rng.normal(10, 1, 60), rng.normal(12, 1, 60)
    noise = rng.normal(12, 1, 60)
    curves = {"g": (good, None), "b": (bad, None), "n": (noise, None)}
    verdict = lambda t: expect.judge(expect.parse_claim(t), curves,  # noqa: E731
                                     boot=500).verdict
    assert verdict("g better than b") == "holds"
    assert verdict("b better than g") == "contradicted"
    assert verdict("b better than n") == "inconclusive"
    # equivalence within 1 point: shown for b and n (64 models of spread 1), and a 2-point
    # shift is shown to lie beyond the margin
    assert verdict("b same as n") == "holds" and verdict("g same as b") == "contradicted"
    assert verdict("g at least as good as b") == "holds"
    assert verdict("b at least as good as g") == "contradicted"
    assert verdict("b same as n within 0.01") == "inconclusive"
    r = expect.judge(expect.parse_claim("g better than b"), curves, boot=500)
    d, p = r.statistic, r.p
    assert d > 0.5 and p < 1e-6
    assert r.effect.hi < 0 and r.effect.lo < r.effect.estimate < r.effect.hi
    # the same statistic, by hand: the largest gap of the EDFs
    pts = np.sort(np.r_[good, bad])
    fa = (good[:, None] <= pts).mean(0)
    fb = (bad[:, None] <= pts).mean(0)
    assert d == pytest.approx((fa - fb).max())


def test_a_good_range_claim_uses_the_bootstrap_range_and_its_null():
    rng = np.random.default_rng(1)
    d = rng.integers(8, 30, 200)
    pop = pd.DataFrame(dict(kind="regnet", ds=[[1, 1, 1, 1]] * 200, d=d,
                            error=np.abs(d - 20) + rng.normal(0, 0.5, 200)))
    check = lambda t: expect.judge(expect.parse_claim(t), {}, {"rx": pop},  # noqa: E731
                                   repeats=2000, permutations=199).verdict
    assert check("rx good d contains 20") == "holds"
    assert check("rx good d contains 10") == "contradicted"
    assert check("rx good d above 15") == "holds"
    assert check("rx good d below 15") == "contradicted"
    assert check("rx good d contains 40") == "untestable"
    assert check("ry good d contains 20") == "untestable"


# ---- plan and run ----------------------------------------------------------------------------

def test_dry_run_creates_nothing_and_prints_the_plan(tmp_path):
    p = write(tmp_path)
    r = ok("run", p, "--dry-run", "--store", tmp_path / "s", "--json")
    plan = json.loads(r.output)
    assert [row["to_sample"] for row in plan["rows"]] == [3, 3]
    assert plan["total"]["to_train"] == 6 and plan["total"]["eta_s"] is None
    assert plan["rows"][0]["image_epochs"] == 3 * 400 * 1
    assert not (tmp_path / "s").exists()
    assert "in all: 6 to sample, 6 to train" in ok("run", p, "--dry-run", "--store",
                                                     tmp_path / "s").output



def test_the_plan_trains_what_has_no_result_of_the_experiments_recipe(tmp_path):
    """Models with results of another recipe (here 2 epochs where the file says 1) are still
    to train: the train stage trains its own recipe's trials (the plan counted them as
    trained before), and the plan counts their test passes at the store's speed."""
    from cli_helpers import write_results

    p = write(tmp_path, n=3, spaces=["anynetxa"], expect=None)
    ok("run", p, "--store", tmp_path / "s", "--only", "sample")
    models = Store(tmp_path / "s").read_models("anynetxa")
    write_results(tmp_path / "s", "anynetxa", models, [30, 31, 32], epochs=2,
                  train_subset=400, batch_size=50, dataset="synthetic", train_seconds=10.0,
                  device="cpu")
    plan = json.loads(ok("run", p, "--dry-run", "--store", tmp_path / "s", "--json").output)
    assert plan["total"]["to_train"] == 3  # none has a result of epochs=1
    flops = models["flops"].sum()
    rate = 3 * flops * 400 * 2 / 30.0  # all their multiply-adds over all their seconds
    assert plan["rate"] == pytest.approx(rate)
    train, tests = 3 * flops * 400, flops * 2000  # 1 epoch; one pass of 2,000 test images
    assert plan["total"]["eta_s"] == pytest.approx((train + 1.1 * tests) / rate)
    # a promote stage of 2 trials per space at 4 epochs with curves: 4 test passes each
    from dataclasses import replace

    from dse.method import stages

    exp = experiment.load(p)
    ep = stages.plan(exp, Store(tmp_path / "s"))
    longer = replace(exp.options, recipe=replace(exp.recipe, epochs=4), curves=True)
    mean = models["flops"].mean()
    assert ep.trials_s(longer, 2, "synthetic") == pytest.approx(
        2 * (3 * mean * 400 * 4 + 1.1 * mean * 2000 * 4) / rate)


@pytest.mark.parametrize("flops", ["1M:", ":2M"])
def test_dry_run_with_an_open_window_prints_the_plan_with_an_unknown_cost(tmp_path, flops):
    p = write(tmp_path, flops=flops)
    plan = json.loads(ok("run", p, "--dry-run", "--store", tmp_path / "s", "--json").output)
    assert plan["total"]["to_sample"] == 6 and plan["total"]["cost"] is None
    out = ok("run", p, "--dry-run", "--store", tmp_path / "s").output
    assert "cost unknown (an open flops window" in out
    assert not (tmp_path / "s").exists()


def dse_run(*args):
    cmd = [sys.executable, "-c", "from dse.cli import main; main()", "run", *map(str, args)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def trained_ids(output):
    return [ln.split()[2] for ln in output.splitlines() if ln.startswith("[")]


@pytest.mark.slow  # the kill -9 property: tests/test_train_runner.py in the default tier
def test_a_killed_run_resumes_and_trains_each_model_once(tmp_path):
    p = write(tmp_path, n=3, train=dict(BASE["train"], train_subset=1000, epochs=2),
              analyze=dict(trends=["anynetxe"], fit_linear=["anynetxe"]))
    store = Store(tmp_path / "s")
    proc = dse_run(p, "--store", store)
    deadline = time.time() + 300
    while time.time() < deadline and not list(store.root.glob("*/results/*.parquet")):
        time.sleep(0.2)
    time.sleep(0.3)
    proc.kill()
    first = proc.communicate()[0]
    before = {f: f.read_bytes() for f in store.root.glob("*/results/*.parquet")}
    assert 1 <= len(before) < 6, first
    assert "plan: 6 models × 2 epochs × 1,000 images = " in first  # before any result
    assert first.index("calibrated on ") < first.index("\n[1/6] ")

    r = dse_run(p, "--store", store)
    out = r.communicate(timeout=600)[0]
    assert r.returncode == 0, out
    ids = [m for s in ("anynetxa", "anynetxe") for m in store.read_models(s)["model_id"]]
    assert len(ids) == 6  # sampled once: the rerun sampled nothing more
    assert sorted(trained_ids(first) + trained_ids(out)) == sorted(ids)
    assert re.search(r"measured: \d+ trainings? this store ran", out)  # the first run's speed
    for f, data in before.items():  # not trained again (the files are folded into segments)
        old = pd.read_parquet(io.BytesIO(data)).iloc[0]
        new = store.read_results(f.parent.parent.name).set_index("model_id").loc[
            parse_trial(f.stem)[0]]  # the file is named by its trial
        assert new["finished_at"] == old["finished_at"] and new["error"] == old["error"]
    d = store.experiment_dir("t")
    summary = json.loads((d / "summary.json").read_text())
    assert [c["claim"] for c in summary["claims"]] == BASE["expect"]
    assert all(c["verdict"] in expect.VERDICTS for c in summary["claims"])
    assert [s["finished"] for s in summary["spaces"]] == [3, 3]
    for f in ("edf.png", "report.html", "experiment.yaml", "trends_anynetxe.png",
              "fit_linear_anynetxe.png"):
        assert (d / f).stat().st_size > 0
    # finished: a rerun trains nothing, and the plan knows the speed now
    again = ok("run", p, "--store", store)
    assert "training 0 models" not in again.output and not trained_ids(again.output)
    plan = json.loads(ok("run", p, "--dry-run", "--store", store, "--set", "n=4",
                         "--json").output)
    assert plan["total"]["to_sample"] == 2 and plan["rate"] > 0 and plan["total"]["eta_s"] > 0


def test_only_analyze_reports_claims_on_what_is_there(tmp_path):
    p = write(tmp_path)
    store = Store(tmp_path / "s")
    ok("run", p, "--store", store, "--only", "sample")
    assert sorted(store.spaces()) == ["anynetxa", "anynetxe"]
    out = json.loads(ok("run", p, "--store", store, "--only", "analyze", "--json").output)
    assert {c["verdict"] for c in out["claims"]} == {"untestable"}
    assert all("has no finished models" in c["detail"] for c in out["claims"])
    assert out["spaces"][0]["finished"] == 0


def test_the_shipped_experiments_are_valid():
    root = Path(__file__).parents[1] / "experiments"
    files = sorted(root.glob("*.yaml"))
    assert {f.name for f in files} >= {"demo.yaml", "dds-cpu.yaml", "dds-gpu.yaml"}
    for f in files:
        if "extends" in (yaml.safe_load(f.read_text()) or {}):
            continue  # a space file beside the experiments that use it (findings-b1.yaml)
        e = experiment.load(f)
        assert e.n >= 1 and e.spaces
    dds = experiment.load(root / "dds-cpu.yaml")
    assert len(dds.spaces) == 7 and len(dds.claims) >= 6
    assert stages.plan(dds, Store(root / "no-such-store")).total["to_train"] == 7 * dds.n


def test_the_committed_reproduction_gives_the_numbers_of_its_doc(tmp_path):
    """docs/reproduction.md reads experiments/results/dds-cpu: its analysis, rerun on a copy,
    gives the same verdicts and per-space numbers as the doc's tables."""
    out = reanalyzed(tmp_path, "dds-cpu")
    doc = (ROOT / "docs" / "reproduction.md").read_text()
    for c in out["claims"]:
        assert f"| {c['claim']} | **{c['verdict']}** |" in doc, c
    for s in out["spaces"]:
        assert s["finished"] == 32
        row = f"| {s['space']} | 32 | {s['min']:.2f} | {s['median']:.2f} | {s['mean']:.2f} |"
        assert row in doc, row
