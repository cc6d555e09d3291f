"""Recipe keys as dimensions, for real: an experiment whose lr and wd are drawn per model
trains each model with its own draw under one recipe fingerprint, and `dse trends` reads
lr, wd and lr·wd as parameters with an lr × wd figure."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_helpers import ok, one_error, run

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_drawn_lr_and_wd_train_one_recipe_and_become_trend_parameters(tmp_path):
    exp = dict(name="sweep", dataset="fashion-mnist", n=6, spaces=["regnetx"],
               flops="1.5M:2M", store=str(tmp_path / "runs"),
               train=dict(epochs=1, train_subset=300, device="cpu",
                          lr={"dist": "log_uniform", "low": 0.01, "high": 1},
                          wd={"dist": "log_uniform", "low": 1e-5, "high": 1e-3}))
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump(exp))
    ok("run", f, "--only", "sample")
    ok("run", f, "--only", "train")
    res = pd.read_parquet(tmp_path / "runs" / "regnetx" / "results")
    assert len(res) == 6 and res["recipe"].nunique() == 1
    assert res["lr"].nunique() == 6 and res["lr"].between(0.01, 1).all()
    assert res["wd"].between(1e-5, 1e-3).all()
    assert "nothing to train" in ok("run", f, "--only", "train").output  # the same draws
    assert len(pd.read_parquet(tmp_path / "runs" / "regnetx" / "results")) == 6
    out = json.loads(ok("trends", "regnetx", "--param", "lr", "--param", "wd", "--param",
                        "lrwd", "--store", tmp_path / "runs", "--repeats", "200",
                        "--json").stdout)
    assert set(out["ranges"]) == {"lr", "wd", "lrwd"}
    assert Path(out["lr_wd_figure"]).is_file()
    for k in ("lr", "wd"):
        lo, hi = out["ranges"][k]["lo"], out["ranges"][k]["hi"]
        assert res[k].min() <= lo <= hi <= res[k].max()


def test_a_bad_distribution_is_one_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(dict(name="bad", dataset="fashion-mnist", n=2,
                                     spaces=["regnetx"], train=dict(lr={"dist": "normal"}))))
    msg = one_error(run("run", f, "--dry-run"))
    assert "train.lr" in msg and "log_uniform" in msg
    f.write_text(yaml.safe_dump(dict(name="bad", dataset="fashion-mnist", n=2,
                                     spaces=["regnetx"],
                                     train=dict(momentum={"dist": "uniform", "low": 0.1,
                                                          "high": 0.9}))))
    assert "train.momentum" in one_error(run("run", f, "--dry-run"))
