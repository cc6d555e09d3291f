"""The foundation commands and their one-line errors (click's CliRunner on tmp_path)."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from cli_helpers import run


def assert_error(result, code, *fragments):
    """One `Error:` line, the exit code, no traceback."""
    out = result.output.strip()
    assert result.exit_code == code, out
    assert out.startswith("Error: ") and "\n" not in out, out
    assert "Traceback" not in out and not isinstance(result.exception, Exception) \
        or isinstance(result.exception, SystemExit)
    for f in fragments:
        assert f in out, out


def test_spaces_table_and_json():
    r = run("spaces")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].split()[:4] == ["space", "alias", "dof", "log10"]
    assert any(line.split()[:4] == ["anynetxa", "xa", "16", "18.27"] for line in lines)
    rows = json.loads(run("spaces", "--json").output)
    assert [r["alias"] for r in rows] == ["xa", "xb", "xc", "xd", "xe", "rx", "ry", "ar", "av",
                                          "avr", None, None, None, None]


def test_describe_json_golden(zoo_model):
    _, spec, flops, params, acts = zoo_model
    r = run("describe", "--spec", json.dumps(spec), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["flops"], out["params"], out["acts"]) == (flops, params, acts)
    assert out["module_params"] == params
    if spec["depth"] == 22:
        assert out["ws"] == [32, 64, 160, 384] and out["ds"] == [1, 2, 7, 12]
        assert out["gs"] == [16] * 4 and out["bs"] == [1] * 4


def test_describe_table_and_task_options():
    spec = '{"kind":"anynet","ds":[1,2,3,1],"ws":[24,48,96,200],"bs":[1,2,4,1],"gs":[8,8,8,4]}'
    r = run("describe", "--spec", spec, "--resolution", 28, "--stem", "cifar",
            "--in-channels", 1, "--num-classes", 10)
    assert r.exit_code == 0, r.output
    assert [line.split()[0] for line in r.output.splitlines()[2:8]] == \
        ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    j = json.loads(run("describe", "--spec", spec, "--resolution", 28, "--stem", "cifar",
                       "--in-channels", 1, "--num-classes", 10, "--json").output)
    assert j["module_params"] == j["params"] and j["ws"] == [24, 48, 96, 200]
    assert f"{j['flops'] / 1e6:.2f} MF" in r.output


def test_sample_writes_store_and_adds_more(tmp_path):
    store = tmp_path / "runs"
    r = run("sample", "--space", "xa", "--n", 6, "--dataset", "fashion-mnist", "--store", store)
    assert r.exit_code == 0, r.output
    assert "sampled 6 anynetxa models for fashion-mnist" in r.output
    df = pd.read_parquet(store / "anynetxa" / "models.parquet")
    assert len(df) == 6 and df["flops"].between(22.5e6, 25e6).all()
    r = run("sample", "--space", "anynetxa", "--n", 4, "--dataset", "fashion-mnist",
            "--store", store)
    assert r.exit_code == 0 and "(10 in all)" in r.output
    assert pd.read_parquet(store / "anynetxa" / "models.parquet")["model_id"].is_unique


def test_sample_options_and_env_store(tmp_path):
    store = tmp_path / "env-store"
    r = run("sample", "--space", "rx", "--n", 3, "--flops", "1M:3M", "--params", ":200K",
            "--dataset", "synthetic", "--seed", 4, env={"DSE_STORE": str(store)})
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(store / "regnetx" / "models.parquet")
    assert df["flops"].between(1e6, 3e6).all() and (df["params"] <= 2e5).all()
    assert (df["seed"] == 4).all() and (df["dataset"] == "synthetic").all()


def test_sample_from_a_user_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("extends: regnetx\nname: tinyreg\nstages: 3\n")
    r = run("sample", "--space", path, "--n", 3, "--flops", "3M:20M", "--store", tmp_path)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(tmp_path / "tinyreg" / "models.parquet")
    assert (df["ds"].map(len) == 3).all()


@pytest.mark.parametrize("args,code,fragments", [
    (["sample", "--space", "nope", "--n", 5], 2, ["unknown space 'nope'", "anynetxa (xa)"]),
    (["sample", "--space", "xa", "--n", 0], 2, ["--n", "positive"]),
    (["sample", "--space", "xa", "--n", -3], 2, ["--n", "positive"]),
    (["sample", "--space", "xa", "--n", "x"], 2, ["'--n'", "not a valid integer"]),
    (["sample", "--space", "xa", "--n", 5, "--flops", "360M"], 2, ["malformed", "LO:HI"]),
    (["sample", "--space", "xa", "--n", 5, "--flops", "400M:360M"], 2, ["reversed"]),
    (["sample", "--space", "xa", "--n", 5, "--flops", "1:10"], 2,
     ["found only 0 of 5", "flops 1:10", "widen the window"]),
    (["sample", "--space", "xa", "--n", 5, "--dataset", "mnist"], 2, ["'--dataset'", "cifar10"]),
    (["sample", "--space", "xa"], 2, ["Missing option '--n'"]),
    (["describe", "--spec", "{bad json"], 2, ["not valid JSON"]),
    (["describe", "--spec", '{"kind":"regnet","depth":13}'], 2, ["needs", "w0"]),
    (["describe", "--spec", '{"kind":"anynet","ds":[1],"ws":[8,16],"bs":[1],"gs":[1]}'], 2,
     ["one entry per stage"]),
    (["describe", "--spec", '{"kind":"regnet","depth":13,"w0":24,"wa":-1,"wm":2.5,'
                            '"group_w":8}'], 2, ["wa must be > 0"]),
    (["describe", "--spec", '{"kind":"anynet","ds":[1],"ws":[8],"bs":[1],"gs":[1]}',
      "--stem", "huge"], 2, ["'--stem'"]),
    (["frobnicate"], 2, ["No such command"]),
])
def test_user_errors_are_one_line(args, code, fragments):
    assert_error(run(*args), code, *fragments)


def test_bad_yaml_and_unwritable_store(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [oops\n")
    assert_error(run("sample", "--space", bad, "--n", 2), 2, "not valid YAML", "line")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_error(run("sample", "--space", "xa", "--n", 2, "--flops", "1M:5M", "--store",
                     blocker / "sub"), 2, "cannot write to store")


def test_console_script_prints_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "dse", "sample", "--space", "zz", "--n", "1"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("Error: unknown space 'zz'") and p.stderr.count("\n") == 1
