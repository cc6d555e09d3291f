"""`dse zoo`, `dse describe NAME`, `dse speed` and `dse export` on the command line, with
each user error as one line."""

import json

import pytest
import torch
import yaml
from cli_helpers import ok, one_error, run
from test_references import PYCLS as PYCLS_REFS
from test_zoo import PYCLS

from dse.store.core import Store


def test_zoo_regnets_json_equal_pycls():
    rows = json.loads(ok("zoo", "--family", "regnet", "--json").output)
    assert {r["name"]: (r["flops"], r["params"], r["acts"]) for r in rows} == PYCLS
    assert {r["family"] for r in rows} == {"RegNetX", "RegNetY"}


def test_zoo_table_lists_references_with_their_family():
    out = ok("zoo").output
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert len(lines) == 24 + 12
    assert lines["efficientnet_b4"][1:3] == ["EfficientNet", "380"]
    assert lines["resnet50"][3] == f"{PYCLS_REFS['resnet50'][0]:,}"


@pytest.mark.parametrize("how", [["RegNetX-400MF"], ["--spec", "regnetx-400mf"]])
def test_describe_by_name(how):
    out = json.loads(ok("describe", *how, "--json").output)
    assert (out["flops"], out["params"], out["acts"]) == PYCLS["RegNetX-400MF"]
    assert out["module_params"] == out["params"] and out["w0"] == 24


def test_describe_a_reference_at_its_resolution():
    out = json.loads(ok("describe", "EfficientNet_B3", "--json").output)
    assert out["resolution"] == 300 and out["family"] == "EfficientNet"
    assert (out["flops"], out["params"], out["acts"]) == PYCLS_REFS["efficientnet_b3"]


@pytest.mark.parametrize("args, fragment", [
    (["describe"], "give the model once"),
    (["describe", "RegNetX-400MF", "--spec", "RegNetX-400MF"], "give the model once"),
    (["describe", "RegNetZ-400MF"], "did you mean"),
    (["describe", "resnet50", "--num-classes", 10], "only --resolution applies"),
    (["export", "resnet50"], "torchvision reference model"),
    (["export", "RegNetX-200MF", "--format", "torch"], "--out is required"),
    (["export", "RegNetX-200MF", "--format", "timm", "--out", "x.txt"], None),
    (["speed", "RegNetX-200MF", "--out", "fig.txt"], "extension must be one of"),
    (["speed", "RegNetX-200MF", "RegNetX-200mf"], "named twice"),
])
def test_one_line_errors(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if fragment is None:  # not an error: a control that the same command works
        ok(*args)
        assert (tmp_path / "x.txt").read_text().startswith("{")
        return
    assert fragment in one_error(run(*args))


def test_speed_json_fits_and_figure(tmp_path):
    fig = tmp_path / "speed.png"
    r = ok("speed", "RegNetX-200MF", "regnety-400mf", "mobilenet_v2", "--resolution", 32,
           "--batch-size", 1, "--iters", 1, "--warmup", 0, "--device", "cpu", "--json",
           "--out", fig)
    out = json.loads(r.output)
    assert out["cpu"] and out["device"].startswith("cpu") and out["batch_size"] == 1
    names = [m["name"] for m in out["models"]]
    assert names == ["RegNetX-200MF", "RegNetY-400MF", "mobilenet_v2"]
    m = out["models"][0]
    assert m["resolution"] == 32 and m["params"] == PYCLS["RegNetX-200MF"][1]
    assert m["flops"] < PYCLS["RegNetX-200MF"][0] / 40  # 32×32 instead of 224×224
    assert all(m["images_per_second"] > 0 for m in out["models"])
    for k in ("flops", "acts"):
        assert out["fits"][k]["n"] == 3 and out["fits"][k]["r2"] <= 1
    assert fig.stat().st_size > 10_000 and out["figure"] == str(fig)


def test_speed_table_says_cpu_and_train_mode():
    out = ok("speed", "RegNetX-200MF", "--resolution", 32, "--batch-size", 2, "--iters", 1,
             "--warmup", 0, "--mode", "train", "--device", "cpu").output
    assert "CPU numbers" in out and "train, batch 2" in out
    assert "n/a" in out  # one model: no fit


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_speed_cuda_without_a_gpu():
    assert "--device cuda: no CUDA device" in one_error(run("speed", "RegNetX-200MF",
                                                            "--device", "cuda"))


def _store_with_results(root, dataset="cifar10"):
    ok("sample", "--space", "rx", "--n", 3, "--dataset", dataset, "--store", root)
    models = Store(root).read_models("regnetx")
    for mid, e in zip(models["model_id"], (12.0, 10.0, 11.0)):
        Store(root).write_result("regnetx", dict(model_id=mid, space="regnetx", status="done",
                                                 error=e, epochs=1, dataset=dataset))
    return models


def test_speed_and_export_of_stored_models(tmp_path):
    root = tmp_path / "runs"
    models = _store_with_results(root)
    out = json.loads(ok("speed", "--store", root, "--space", "rx", "--top", 2, "--iters", 1,
                        "--warmup", 0, "--batch-size", 1, "--device", "cpu", "--json").output)
    assert [m["name"] for m in out["models"]] == list(models["model_id"].iloc[[1, 2]])
    assert all(m["family"] == "regnetx" and m["resolution"] == 32 for m in out["models"])
    mid, row = models["model_id"].iloc[1], models.iloc[1]
    cfg = yaml.safe_load(ok("export", mid[:8], "--store", root).output)
    assert cfg["MODEL"] == {"TYPE": "regnet", "NUM_CLASSES": 10}
    assert cfg["REGNET"]["DEPTH"] == row["d"] and cfg["REGNET"]["STEM_TYPE"] == "res_stem_cifar"
    assert "only the ImageNet stem" in one_error(run("export", mid, "--store", root,
                                                     "--format", "torchvision"))
    pt = tmp_path / "m.pt"
    ok("export", mid, "--store", root, "--format", "torch", "--out", pt)
    from dse.compare.export import load_torch

    _, spec, task = load_torch(pt)
    assert list(spec.ws) == list(row["ws"]) and (task.resolution, task.stem) == (32, "cifar")
    assert "unknown model 'ffff0000'" in one_error(run("export", "ffff0000", "--store", root))


def test_export_of_a_one_channel_model_to_pycls(tmp_path):
    root = tmp_path / "runs"
    mid = _store_with_results(root, "fashion-mnist")["model_id"].iloc[0]
    assert "3-channel" in one_error(run("export", mid, "--store", root))


def test_speed_of_a_space_without_results(tmp_path):
    root = tmp_path / "runs"
    ok("sample", "--space", "rx", "--n", 2, "--dataset", "fashion-mnist", "--store", root)
    assert "no trained models" in one_error(run("speed", "--store", root, "--space", "rx"))
