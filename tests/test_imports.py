"""`dse import`: pycls sweeps and NDS files, written here in their exact formats, become
models and results of a store that the analyses read."""

import hashlib
import json
import math

import numpy as np
import pytest
from cli_helpers import ok, one_error, run
from interop_files import (
    R56,
    R56_FLOPS,
    R56_PARAMS,
    collect,
    nds_job,
    pycls_cfg,
    pycls_log,
    write_json,
)

from dse.space.complexity import complexity
from dse.space.spec import AnyNetSpec, Task
from dse.store import imports, recipes
from dse.store.core import Store

CIFAR = Task(32, "cifar", 3, 10)


def _errs(base: float, n: int = 4, step: float = 1.5) -> list[float]:
    return [round(base + step * (n - 1 - i) + (0.7 if i == 1 else 0.0), 2) for i in range(n)]


def resnet_net(d: int, w: int) -> dict:
    return dict(block_type="res_basic_block", ds=[1, d, d, d], ws=[16, w, 2 * w, 4 * w],
                ss=[1, 1, 2, 2])


def resnet_cx(d: int, w: int) -> dict:
    spec = AnyNetSpec((d,) * 3, (w, 2 * w, 4 * w), (1, 1, 1), (w, 2 * w, 4 * w), 0.0, 16,
                      "basic", "relu", 1)
    return complexity(spec, CIFAR)


NETS = [(d, w) for d in (1, 2, 3) for w in (8, 16)]


def nds_population(offset: float = 0.0, seed: int = 1) -> list[dict]:
    """Six ResNets of NDS's CIFAR space, deeper and wider ones better, plus R-56."""
    jobs = [nds_job(resnet_net(d, w), _errs(20 - 2 * d - w / 4 + offset), seed=seed,
                    job_id=i, **{k: v for k, v in resnet_cx(d, w).items() if k != "acts"})
            for i, (d, w) in enumerate(NETS)]
    return jobs + [nds_job(R56, _errs(7.0 + offset), flops=R56_FLOPS, params=R56_PARAMS,
                           seed=seed, job_id=len(jobs))]


def _files(store):
    return {p.relative_to(store): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_r56_imports_with_pycls_complexity_and_best_epoch_is_min_test_top1(tmp_path):
    f = write_json(tmp_path / "ResNet.json", nds_population())
    out = json.loads(ok("import", f, "--store", tmp_path / "s", "--json").output)[0]
    assert (out["format"], out["space"], out["records"]) == ("nds list", "nds-resnet", 7)
    assert (out["models_added"], out["results_added"], out["compared"], out["matched"]) == \
        (7, 7, 7, 7)
    store = Store(tmp_path / "s")
    models = store.read_models("nds-resnet")
    r56 = models[models["ds"].map(lambda ds: list(ds) == [9, 9, 9])].iloc[0]
    assert (r56["flops"], r56["params"], r56["block"], r56["first_stride"], r56["stem_w"]) == \
        (125_747_850, 855_770, "basic", 1, 16)
    assert len(models) == 7
    rec = store.space_record("nds-resnet")
    assert rec["imported"][0]["format"] == "nds list"
    assert rec["imported"][0]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    best = store.load(["nds-resnet"], recipes.Pick(epoch="best")).set_index("model_id")
    last = store.load(["nds-resnet"]).set_index("model_id")
    jobs = {tuple(j["net"]["ds"][1:]) + tuple(j["net"]["ws"][1:]): j for j in nds_population()}
    for mid, row in best.iterrows():
        job = jobs[tuple(row["ds"]) + tuple(row["ws"])]
        assert row["error"] == pytest.approx(job["min_test_top1"])
        assert last.loc[mid, "error"] == pytest.approx(job["test_ep_top1"][-1])
    assert last["history_loss"].map(len).eq(4).all()


def test_a_record_with_wrong_flops_is_listed_and_imported_with_dses_numbers(tmp_path):
    jobs = nds_population()
    jobs[2]["flops"] += 5_000_000
    f = write_json(tmp_path / "ResNet.json", jobs)
    r = ok("import", f, "--store", tmp_path / "s")
    assert "complexity: 6 of 7 match the file's; 1 differ beyond rounding" in r.output
    rep = imports.import_source(Store(tmp_path / "t"), imports.read(f))
    assert len(rep.mismatches) == 1
    rec, mid, key, file_v, dse_v = rep.mismatches[0]
    assert (rec, key, file_v - dse_v) == (2, "flops", 5_000_000)
    assert mid in r.output


def test_reruns_become_seeds_and_noise_is_finite(tmp_path):
    s = tmp_path / "s"
    files = [write_json(tmp_path / "ResNet.json", nds_population())]
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):  # the same networks trained again: other seeds, other errors
        jobs = nds_population(offset=float(rng.normal(0, 0.3)), seed=1)  # same rng_seed
        for j in jobs:
            j["test_ep_top1"][-1] += float(rng.normal(0, 0.4))
        files.append(write_json(tmp_path / f"ResNet_rng{k}.json", jobs))
    ok("import", *files, "--store", s)
    res = Store(s).read_results("nds-resnet")
    assert len(res) == 28 and res.groupby("model_id")["seed"].nunique().eq(4).all()
    nz = json.loads(ok("noise", "nds-resnet", "--store", s, "--json").output)
    assert math.isfinite(nz["sigma_seed"]) and nz["sigma_seed"] > 0
    assert nz["models"] == 7


def test_reruns_shape_and_reimport_adds_nothing(tmp_path):
    s = tmp_path / "s"
    top, mid = nds_population()[:3], nds_population()[3:]
    f = write_json(tmp_path / "ResNet_reruns.json", {"top": top + top, "mid": mid})
    out = json.loads(ok("import", f, "--store", s, "--json").output)[0]
    assert (out["format"], out["space"], out["records"], out["models_added"],
            out["results_added"]) == ("nds reruns", "nds-resnet", 10, 7, 10)
    before = _files(s)
    again = json.loads(ok("import", f, "--store", s, "--json").output)[0]
    assert (again["models_added"], again["results_added"], again["results_held"]) == (0, 0, 10)
    assert _files(s) == before


def test_bottleneck_nets_read_num_gs_as_groups_and_bot_muls_by_their_flops(tmp_path):
    spec = AnyNetSpec((2, 2, 2), (32, 64, 128), (4, 4, 4), (4, 8, 8), 0.0, 16, "x", "relu", 1)
    cx = complexity(spec, CIFAR)
    # w_b = 8, 16, 32 and group widths 4, 8, 8: 2, 2, 4 groups; element 0 is the stem
    net = dict(block_type="res_bottleneck_block", ds=[1, 2, 2, 2], ws=[16, 32, 64, 128],
               ss=[1, 1, 2, 2], num_gs=[1, 2, 2, 4])
    mult = nds_job({**net, "bot_muls": [1, 0.25, 0.25, 0.25]}, _errs(10), flops=cx["flops"],
                   params=cx["params"])
    ratio = nds_job({**net, "bot_muls": [1, 4, 4, 4]}, _errs(11), flops=cx["flops"],
                    params=cx["params"], seed=2)
    f = write_json(tmp_path / "ResNeXt-A.json", [mult, ratio])
    rep = imports.import_source(Store(tmp_path / "s"), imports.read(f))
    assert (rep.models_added, rep.matched, rep.compared) == (1, 2, 2)
    m = Store(tmp_path / "s").read_models("nds-resnext-a").iloc[0]
    assert (list(m["bs"]), list(m["gs"]), m["flops"]) == ([4, 4, 4], [4, 8, 8], cx["flops"])


def test_nas_cells_are_opaque_models_that_edfs_read(tmp_path):
    geno = dict(normal=[["sep_conv_3x3", 0]], normal_concat=[2], reduce=[["max_pool", 1]],
                reduce_concat=[2])
    jobs = [nds_job(dict(genotype=geno, width=16 + 2 * i, depth=8, aux=False, drop_prob=0.0),
                    _errs(8 + i % 5), flops=100_000_000 + i, params=500_000 + i, job_id=i)
            for i in range(12)]
    s = tmp_path / "s"
    out = json.loads(ok("import", write_json(tmp_path / "DARTS.json", jobs), "--store", s,
                        "--json").output)[0]
    assert (out["opaque"], out["models_added"], out["compared"]) == (12, 12, 0)
    m = Store(s).read_models("nds-darts")
    assert set(m["kind"]) == {"opaque"} and m["ds"].isna().all()
    assert sorted(m["flops"]) == [100_000_000 + i for i in range(12)]
    ok("import", write_json(tmp_path / "ResNet.json", nds_population()), "--store", s)
    cmp = json.loads(ok("edf", "compare", "nds-darts", "nds-resnet", "--store", s, "--json",
                        "--out", tmp_path / "edf.png").output)
    assert set(cmp["spaces"]) >= {"nds-darts", "nds-resnet"}
    r = run("trends", "nds-darts", "--store", s, "--out", tmp_path / "t.png")
    assert "opaque models" in one_error(r)
    r = run("fit-linear", "--space", "nds-darts", "--store", s, "--out", tmp_path / "f.png")
    assert "opaque models" in one_error(r)


def test_lr_wd_files_are_drawn_per_model(tmp_path):
    jobs = nds_population()
    for i, j in enumerate(jobs):
        j["optim"].update(base_lr=0.05 * (i + 1), wd=1e-4 * (i + 1))
    f = write_json(tmp_path / "ResNet_lr-wd.json", jobs)
    rep = imports.import_source(Store(tmp_path / "s"), imports.read(f))
    res = Store(tmp_path / "s").read_results("nds-resnet-lr-wd")
    assert rep.space == "nds-resnet-lr-wd" and res["recipe"].nunique() == 1
    assert sorted(res["lr"]) == pytest.approx([0.05 * (i + 1) for i in range(7)])
    settings = Store(tmp_path / "s").space_record("nds-resnet-lr-wd")["recipes"]
    assert settings[res["recipe"].iloc[0]]["lr"]["dist"] == "per-model"
    tr = json.loads(ok("trends", "nds-resnet-lr-wd", "--store", tmp_path / "s", "--json",
                       "--repeats", 200, "--out", tmp_path / "t.png").output)
    assert tr["n"] == 7 and {"lr", "wd", "lrwd", "depth", "w1"} <= set(tr["ranges"])


def test_cifar_and_imagenet_populations_transfer(tmp_path):
    a, b = tmp_path / "cifar", tmp_path / "in"
    ok("import", write_json(tmp_path / "ResNet.json", nds_population()), "--store", a)
    imnet = []
    for i, (d, w) in enumerate(NETS):
        net = dict(resnet_net(d, w), ss=[2, 1, 2, 2])
        spec = AnyNetSpec((d,) * 3, (w, 2 * w, 4 * w), (1, 1, 1), (w, 2 * w, 4 * w), 0.0, 16,
                          "basic", "relu", 1)
        cx = complexity(spec, Task(224, "imagenet", 3, 1000))
        imnet.append(nds_job(net, _errs(40 - 3 * d - w / 3), flops=cx["flops"],
                             params=cx["params"], job_id=i))
    ok("import", write_json(tmp_path / "ResNet_in.json", imnet), "--store", b,
       "--space", "nds-resnet")
    assert Store(b).space_record("nds-resnet")["dataset"] == "imagenet"
    out = json.loads(ok("transfer", a, b, "--repeats", 200, "--json").output)
    row = out["spaces"][0]
    assert row["space"] == "nds-resnet" and (row["a"]["n"], row["b"]["n"]) == (7, 6)


# ---- pycls sweeps -------------------------------------------------------------------------

def _sweep_dir(tmp_path):
    """A sweep directory with three jobs: finished, stopped at epoch 3 of 5, and one with
    stderr; returns (dir, the jobs' test and EMA errors)."""
    d = tmp_path / "cifar_regnet"
    spec = AnyNetSpec((2, 2, 2), (16, 32, 64), (1, 1, 1), (16, 32, 64), 0.0, 16, "basic",
                      "relu", 1)
    cx = complexity(spec, CIFAR)
    runs = [(pycls_cfg(depths=(9, 9, 9), seed=1), dict(flops=R56_FLOPS, params=R56_PARAMS,
                                                       acts=544_778), 5),
            (pycls_cfg(depths=(2, 2, 2), seed=2, lr=0.2), cx, 3),
            (pycls_cfg(depths=(2, 2, 2), seed=3, lr=0.4), cx, 2)]
    errs = []
    for k, (cfg, c, n) in enumerate(runs):
        e = [30.0 - 4 * i + k for i in range(n)]
        m = [x - 0.5 + (0.8 if i == n - 1 else 0) for i, x in enumerate(e)]
        log = d / "logs" / f"{k:06d}" / "stdout.log"
        log.parent.mkdir(parents=True)
        log.write_text(pycls_log(cfg, c, e, m, 5))
        (log.parent / "stderr.log").write_text(
            "Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n"
            if k == 2 else "")
        errs.append((e, m))
    return d, errs


def test_pycls_logs_and_sweep_json_import_alike(tmp_path):
    d, errs = _sweep_dir(tmp_path)
    rep = imports.import_source(Store(tmp_path / "a"), imports.read(d, "ema"))
    assert (rep.format, rep.space, rep.records, rep.statuses) == \
        ("pycls log", "pycls-cifar-regnet", 3, {"done": 1, "failed": 2})
    assert (rep.compared, rep.matched) == (3, 3)
    jobs = []
    for k in range(3):
        log = d / "logs" / f"{k:06d}"
        jobs.append({**collect((log / "stdout.log").read_text()),
                     "log_file": str(log / "stdout.log"), "err_file": str(log / "stderr.log"),
                     "err": (log / "stderr.log").read_text()})
    write_json(d / "sweep.json", jobs)
    rep2 = imports.import_source(Store(tmp_path / "b"), imports.read(d, "ema"))
    assert rep2.format == "pycls sweep" and rep2.statuses == rep.statuses
    cols = ["model_id", "status", "error", "message", "seed", "lr", "recipe"]
    ra = Store(tmp_path / "a").read_results(rep.space)[cols].sort_values("seed")
    rb = Store(tmp_path / "b").read_results(rep.space)[cols].sort_values("seed")
    assert ra.reset_index(drop=True).equals(rb.reset_index(drop=True))
    res = ra.set_index("seed")
    assert res.loc[1, "status"] == "done" and res.loc[1, "error"] == pytest.approx(errs[0][1][-1])
    assert res.loc[2, "message"] == "unfinished: 3 of 5 epochs"
    assert res.loc[3, "message"] == "RuntimeError: CUDA out of memory"
    # pycls's own metric: the best epoch of the EMA model's error
    best = Store(tmp_path / "b").load([rep.space], recipes.Pick(epoch="best"))
    done = best[best["status"] == "done"].iloc[0]
    assert done["error"] == pytest.approx(min(errs[0][1])) and done["n_seeds"] == 1
    settings = Store(tmp_path / "b").space_record(rep.space)["recipes"]
    s = next(iter(settings.values()))
    assert (s["TRAIN.LABEL_SMOOTHING"], s["TRAIN.MIXUP_ALPHA"], s["OPTIM.EMA_ALPHA"],
            s["series"], s["lr"]["dist"]) == (0.1, 0.5, 0.00025, "ema", "per-model")


def test_the_test_and_ema_series_are_two_recipes(tmp_path):
    d, errs = _sweep_dir(tmp_path)
    s = Store(tmp_path / "s")
    for which in ("test", "ema"):
        imports.import_source(s, imports.read(d, which))
    res = s.read_results("pycls-cifar-regnet")
    assert res["recipe"].nunique() == 2 and len(res) == 6
    done = res[res["status"] == "done"].set_index("recipe")["error"].sort_values()
    assert list(done) == pytest.approx(sorted([errs[0][0][-1], errs[0][1][-1]]))


def test_regnet_jobs_and_converted_ones_match_pycls_complexity(tmp_path):
    base = dict(STEM_TYPE="simple_stem_in", STEM_W=32, BLOCK_TYPE="res_bottleneck_block",
                SE_ON=False, SE_R=0.25)
    regnet = dict(base, DEPTH=13, W0=24, WA=36.44, WM=2.49, GROUP_W=8, BOT_MUL=1.0, STRIDE=2)
    any_cfg = pycls_cfg(depths=(1, 1, 4, 7), widths=(24, 56, 152, 368),
                        bot_muls=(1.0,) * 4, group_ws=(8,) * 4, block="res_bottleneck_block",
                        regnet=regnet, epochs=1)
    any_cfg["ANYNET"].update(STEM_TYPE="simple_stem_in", STEM_W=32, STRIDES=[2, 2, 2, 2])
    reg_cfg = {**any_cfg, "MODEL": {**any_cfg["MODEL"], "TYPE": "regnet"}, "RNG_SEED": 2}
    for c in (any_cfg, reg_cfg):
        c["TRAIN"] = {**c["TRAIN"], "DATASET": "imagenet", "IM_SIZE": 224}
        c["MODEL"] = {**c["MODEL"], "NUM_CLASSES": 1000}
    cx = dict(flops=199_040_872, params=2_684_792, acts=2_164_056)  # pycls's RegNetX-200MF
    jobs = [collect(pycls_log(c, cx, [40.0], [39.0], 1)) for c in (any_cfg, reg_cfg)]
    rep = imports.import_source(Store(tmp_path / "s"),
                                imports.read(write_json(tmp_path / "x" / "sweep.json", jobs)))
    assert (rep.models_added, rep.compared, rep.matched, rep.results_added) == (1, 2, 2, 2)


@pytest.mark.parametrize("content, says", [
    ('[{"net": {"block_type": "res_basic_block"', "not valid JSON"),
    ('{"a": 1}', "neither a pycls sweep.json"),
    (json.dumps([{"net": R56, "optim": {"base_lr": 0.1, "wd": 1e-4, "max_ep": 2},
                  "rng_seed": 1, "flops": 1, "params": 1}]), "has no 'test_ep_top1'"),
    (json.dumps([{"cfg": {}, "complexity": {}, "test_epch": {}}]), "unknown _type 'test_epch'"),
    (json.dumps([nds_job(dict(R56, ds=[1, 9, 9]), [5.0], flops=1, params=1)]),
     "one entry per stage"),
])
def test_bad_files_are_one_line_and_change_nothing(tmp_path, content, says):
    s = tmp_path / "s"
    ok("import", write_json(tmp_path / "ResNet.json", nds_population()), "--store", s)
    before = _files(s)
    bad = tmp_path / "ResNet_rng1.json"
    bad.write_text(content)
    assert says in one_error(run("import", bad, "--store", s))
    assert _files(s) == before


def test_an_unknown_type_in_a_log_is_one_line(tmp_path):
    d, _ = _sweep_dir(tmp_path)
    log = d / "logs" / "000001" / "stdout.log"
    log.write_text(log.read_text() + '[x.py: 1]: json_stats: {"_type": "val_epoch"}\n')
    assert "unknown _type 'val_epoch'" in one_error(run("import", d, "--store", tmp_path / "s"))
    assert not (tmp_path / "s").exists()


def test_a_sampled_space_is_not_imported_into(tmp_path):
    s = tmp_path / "s"
    ok("sample", "--space", "nds-resnet", "--n", "2", "--store", s, "--dataset", "cifar10")
    f = write_json(tmp_path / "ResNet.json", nds_population())
    assert "holds sampled models" in one_error(run("import", f, "--store", s))


@pytest.mark.parametrize("dies_in", ["_append", "_record_file"])
def test_an_import_killed_midway_is_completed_by_the_next(tmp_path, monkeypatch, dies_in):
    f = write_json(tmp_path / "ResNet.json", nds_population())
    s = Store(tmp_path / "s")

    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(imports, dies_in, killed)
        with pytest.raises(KeyboardInterrupt):
            imports.import_source(s, imports.read(f))
    assert len(s.read_models("nds-resnet")) == 7  # models.parquet went first
    rep = imports.import_source(s, imports.read(f))
    assert rep.models_added == 0 and rep.results_added + rep.results_held == 7
    res = s.read_results("nds-resnet")
    assert len(res) == 7 and res["model_id"].nunique() == 7
    assert len(s.space_record("nds-resnet")["imported"]) == 1
    again = imports.import_source(s, imports.read(f))
    assert (again.models_added, again.results_added) == (0, 0)
