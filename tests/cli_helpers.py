"""Running the `dse` command line in tests: a call, a call that must succeed, and the check
that a failure is one `Error:` line with exit code 2 and nothing else."""

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from dse.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


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
