"""`dse export --format pycls-sweep`: a store's trials as the sweep.json of pycls's sweep
analysis (the keys its load_sweep and metrics read), and back through `dse import` to the
same analyses: the same models, errors, seeds, statuses, EDF and seed noise."""

import json
from functools import reduce

import numpy as np
import pytest
from cli_helpers import ok, one_error, run, sampled

from dse.store.core import Store
from dse.store.recipes import Pick


def _pycls_get(job, key):
    """A compound key of a job as pycls's analysis reads it ("cfg.OPTIM.BASE_LR")."""
    return reduce(lambda d, k: d[k], key.split("."), job)


def _store(root, dataset="synthetic", n=4):
    """n models, two seeds each, trained (in writing) with an EMA: model 0's second seed
    failed, model 1's diverged."""
    m = sampled(root, n, "rx", dataset, "0.5M:2M" if dataset == "synthetic" else None, 0)
    st, rng = Store(root), np.random.default_rng(0)
    want = {}
    for i, mid in enumerate(m["model_id"]):
        for seed in (0, 1):
            hist = [round(float(x), 3) for x in 30 + 3 * i - np.arange(3) + rng.normal(size=3)]
            row = dict(model_id=mid, space="regnetx", epochs=3, batch_size=128, lr=0.1,
                       wd=5e-4, seed=seed, dataset=dataset, ema_alpha=1e-4, ema_period=8,
                       label_smoothing=0.1, bn_wd=0.0, train_seconds=3.0, epochs_run=3,
                       history_loss=[2.0, 1.5, 1.2], status="done", error=hist[-1],
                       history_error=hist, series="test")
            if (i, seed) == (0, 1):
                row.update(status="failed", error=None, history_error=None, history_loss=None,
                           epochs_run=0, message="OutOfMemoryError: CUDA out of memory")
            if (i, seed) == (1, 1):
                row.update(status="diverged", error=None, history_error=hist[:1],
                           history_loss=[2.0, float("nan")], epochs_run=2,
                           message="train loss became nan in epoch 2")
            st.write_result("regnetx", row)
            ema = [e - 1 for e in row["history_error"] or []]
            if row["status"] != "failed":
                st.write_result("regnetx", {**row, "series": "ema", "history_error": ema,
                                            "error": ema[-1] if row["error"] else None})
            want[(mid, seed)] = row
    return m, want


def _numbers(obj):
    """Every number of a JSON answer, in order (labels and names left out)."""
    if isinstance(obj, dict):
        return [x for k in sorted(obj) if k not in ("space", "label", "recipe", "recipe_label",
                                                    "store", "figure", "path", "notes")
                for x in _numbers(obj[k])]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


def test_a_store_exports_as_pyclss_sweep_and_imports_back_to_the_same_analyses(tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "sweep.json"
    models, want = _store(a)
    said = ok("export", "--format", "pycls-sweep", a, "--out", out).output
    assert said.startswith("regnetx: 8 trials as a pycls sweep → ")
    jobs = json.loads(out.read_text())
    assert len(jobs) == 8
    # what pycls's load_sweep keeps and augment_sweep / metrics_info read
    kept = [j for j in jobs if "test_ema_epoch" in j]
    assert len(kept) == 7  # the failed job has no evaluation
    for j in kept:
        mid, seed = j["cfg"]["DESC"].split()[-1], j["cfg"]["RNG_SEED"]
        row = want[(mid, seed)]
        assert _pycls_get(j, "cfg.OPTIM.BASE_LR") == 0.1
        assert _pycls_get(j, "cfg.OPTIM.WEIGHT_DECAY") == 5e-4
        assert _pycls_get(j, "test_epoch.epoch_max")[-1] == 3
        ind = _pycls_get(j, "test_epoch.epoch_ind")[-1]
        assert ind == (3 if row["status"] == "done" else 2)
        errs = _pycls_get(j, "test_ema_epoch.min_top1_err")
        if row["status"] == "done":
            assert errs[-1] == pytest.approx(min(row["history_error"]) - 1)
            assert _pycls_get(j, "test_epoch.min_top1_err")[-1] == min(row["history_error"])
        m = models.set_index("model_id").loc[mid]
        assert _pycls_get(j, "complexity.flops") == m.flops
        assert _pycls_get(j, "cfg.REGNET.DEPTH") == m.d
        assert j["cfg"]["OPTIM"]["EMA_ALPHA"] == 1e-4 and j["cfg"]["BN"]["CUSTOM_WEIGHT_DECAY"] == 0
        assert j["cfg"]["TRAIN"]["LABEL_SMOOTHING"] == 0.1
    failed = [j for j in jobs if "test_ema_epoch" not in j][0]
    assert failed["err"] == "OutOfMemoryError: CUDA out of memory"

    # back through dse import: the same models and the same analyses
    ok("import", out, "--store", b, "--space", "back")
    ok("import", out, "--store", b, "--space", "back-ema", "--series", "ema")
    back = Store(b).read_models("back")
    assert sorted(back["model_id"]) == sorted(models["model_id"])
    assert back.set_index("model_id")["flops"].sort_index().tolist() == \
        models.set_index("model_id")["flops"].sort_index().tolist()
    res = Store(b).read_results("back")
    assert sorted(res["status"]) == sorted(r["status"] for r in want.values())
    assert (res["ema_alpha"].eq(1e-4).all() and res["label_smoothing"].eq(0.1).all()
            and res["bn_wd"].eq(0.0).all() and res["ema_period"].eq(8).all())
    again = tmp_path / "again.json"  # and out again: the same recipe and errors
    ok("export", "--format", "pycls-sweep", b, "--space", "back", "--out", again)
    for j, k in zip(sorted(jobs, key=lambda j: (j["cfg"]["DESC"], j["cfg"]["RNG_SEED"])),
                    sorted(json.loads(again.read_text()), key=lambda j: (
                        j["cfg"]["DESC"].split()[-1], j["cfg"]["RNG_SEED"]))):
        assert (j["cfg"]["OPTIM"], j["cfg"]["BN"]) == (k["cfg"]["OPTIM"], k["cfg"]["BN"])
        assert json.dumps(j.get("test_epoch")) == json.dumps(k.get("test_epoch"))
    for pick_a, pick_b in ((Pick(), Pick()), (Pick(recipe={"series": "ema"}), Pick()),
                           (Pick(recipe={"series": "ema"}, epoch="best"), Pick(epoch="best"))):
        ea = Store(a).load(["regnetx"], pick=pick_a).set_index("model_id")
        eb = Store(b).load(["back-ema" if pick_a.recipe else "back"],
                           pick=pick_b).set_index("model_id").loc[ea.index]
        assert ea["error"].tolist() == pytest.approx(eb["error"].tolist(), nan_ok=True)
        assert ea["n_seeds"].tolist() == eb["n_seeds"].tolist()
        assert ea["error_sd"].tolist() == pytest.approx(eb["error_sd"].tolist(), nan_ok=True)


@pytest.mark.slow
def test_edf_and_noise_are_the_same_after_the_round_trip(tmp_path):
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "sweep.json"
    _store(a)
    ok("export", "--format", "pycls-sweep", a, "--out", out)
    ok("import", out, "--store", b, "--space", "back")
    ok("import", out, "--store", b, "--space", "back-ema", "--series", "ema")
    for cmd in (["noise"], ["edf", "compare"]):
        for space_a, space_b, extra in (("regnetx", "back", []),
                                        ("regnetx", "back-ema", ["--recipe", "series=ema"])):
            x = json.loads(ok(*cmd, space_a, "--store", a, "--json", *extra).output)
            y = json.loads(ok(*cmd, space_b, "--store", b, "--json").output)
            assert _numbers(x) == pytest.approx(_numbers(y), nan_ok=True), (cmd, extra)
            assert len(_numbers(x)) > 3


def test_one_channel_models_and_errors(tmp_path):
    a, out = tmp_path / "a", tmp_path / "sweep.json"
    models, _ = _store(a, "fashion-mnist", n=2)
    ok("export", "--format", "pycls-sweep", a, "--out", out)
    job = json.loads(out.read_text())[0]
    assert job["cfg"]["MODEL"]["IN_CHANNELS"] == 1
    ok("import", out, "--store", tmp_path / "b", "--space", "back")
    back = Store(tmp_path / "b").read_models("back")
    assert sorted(back["model_id"]) == sorted(models["model_id"])
    # errors: one line each, nothing written
    assert "none does not exist" in one_error(run("export", "--format", "pycls-sweep",
                                                  tmp_path / "none", "--out", out))
    sampled(tmp_path / "c", 1, "rx", "synthetic", "0.5M:2M", 0)
    assert "space regnetx of " in one_error(run("export", "--format", "pycls-sweep",
                                                tmp_path / "c"))
    assert "--recipe epochs=9: no results" in one_error(run(
        "export", "--format", "pycls-sweep", a, "--recipe", "epochs=9"))
    assert "--space applies to --format pycls-sweep only" in one_error(run(
        "export", "RegNetX-200MF", "--space", "x"))
    sampled(tmp_path / "c", 1, "xa", "synthetic", "0.5M:2M", 0)
    assert "holds 2 spaces (anynetxa, regnetx); name one with --space" in one_error(run(
        "export", "--format", "pycls-sweep", tmp_path / "c"))


def test_a_regnet_model_without_groups_exports_its_regnet_section(tmp_path):
    # a refined space without g stores group_w as null (read back as NaN)
    from dse.compare.sweep import network

    row = sampled(tmp_path, 1).iloc[0].to_dict()
    with_g = network(row)
    row["group_w"] = float("nan")
    cfg = network(row)
    assert cfg["MODEL"]["TYPE"] == "regnet" and "GROUP_W" in cfg["REGNET"]
    assert {k: v for k, v in cfg["REGNET"].items() if k != "GROUP_W"} == \
        {k: v for k, v in with_g["REGNET"].items() if k != "GROUP_W"}
