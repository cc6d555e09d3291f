"""What tests share: running the `dse` command line (a call, a call that must succeed, the
check that a failure is one `Error:` line with exit code 2 and nothing else), sampling models
into a store with `dse sample`, and results written without training."""

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from dse.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def ok(*args):
    r = run(*args)
    assert r.exit_code == 0, r.output
    return r


def one_error(r) -> str:
    assert r.exit_code == 2, r.output
    assert r.stdout == "" and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, \
        r.output
    assert "Traceback" not in r.output
    return r.stderr


def reanalyzed(tmp_path, name: str, *extra) -> dict:
    """The --json summary of experiments/<name>.yaml's analysis, rerun on a copy of its
    committed store experiments/results/<name> (extra: more `dse run` arguments)."""
    store = tmp_path / name
    shutil.copytree(ROOT / "experiments" / "results" / name, store)
    return json.loads(ok("run", ROOT / "experiments" / f"{name}.yaml", "--only", "analyze",
                         "--store", store, *extra, "--json").output)


def sampled(store, n: int, space: str = "rx", dataset: str = "synthetic",
            flops: str | None = "0.5M:2M", seed: int = 0, *more):
    """`dse sample` of n models (the synthetic task's window by default: small RegNetX that
    train in seconds) and the space's models as stored."""
    from dse.store.core import Store

    ok("sample", "--space", space, "--n", n, "--dataset", dataset, "--seed", seed,
       *(["--flops", flops] if flops and dataset == "synthetic" else []), *more,
       "--store", store)
    return Store(store).read_models(Store(store).resolve(space))


def write_results(store, space: str, models, errors, status: str = "done", **row) -> None:
    """One result per model, written as dse train stores it, with the given errors (None: no
    error) and no training."""
    from dse.store.core import Store

    for mid, e in zip(models["model_id"], errors):
        Store(store).write_result(space, dict(
            model_id=mid, space=space, status=status, error=None if e is None else float(e),
            **{"epochs": 1, "dataset": "fashion-mnist", **row}))


def killed_midway(cmd: list, env, until, timeout: float, pause: float = 0.0,
                  poll: float = 0.2) -> str:
    """Run `cmd`, wait (at most `timeout` s, the process alive) until `until()` holds, wait
    `pause` s more, kill -9 it and return what it printed."""
    import subprocess
    import time

    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    deadline = time.time() + timeout
    while not until():
        assert p.poll() is None and time.time() < deadline, p.stdout.read()
        time.sleep(poll)
    time.sleep(pause)
    p.kill()
    return p.communicate()[0]
