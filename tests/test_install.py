"""A non-editable install ships the built-in spaces as package data (real files, not the
dse/builtin_spaces symlink) and finds them from any directory, without the source tree."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILTIN = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "spaces").glob("*.yaml"))
PAPER = ["anynetxa", "anynetxb", "anynetxc", "anynetxd", "anynetxe", "regnetx", "regnety"]
LISTED = PAPER + [n for n in BUILTIN if n not in PAPER]  # `dse spaces`: the paper's X first

PROBE = """
import json, dse, dse.space.definition
print(json.dumps({"file": dse.__file__, "dir": str(dse.space.definition.spaces_dir()),
                  "spaces": {s.name: s.source for s in dse.space.definition.builtin()}}))
"""


def _source_copy(dst: Path) -> Path:
    """What a build reads, dse/builtin_spaces kept a symlink as in git; building a copy
    leaves no build/ or egg-info behind in the work tree, nor reuses a stale build/."""
    dst.mkdir()
    for p in ROOT.iterdir():
        if p.is_file():
            shutil.copy2(p, dst / p.name)
    for d in ("dse", "spaces"):
        shutil.copytree(ROOT / d, dst / d, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def test_pip_install_ships_the_builtin_spaces(tmp_path):
    link = ROOT / "dse" / "builtin_spaces"
    assert link.is_symlink() and link.resolve() == (ROOT / "spaces").resolve()
    src, target, elsewhere = _source_copy(tmp_path / "src"), tmp_path / "site", tmp_path / "cwd"
    elsewhere.mkdir()
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                        "--target", str(target), str(src)],
                       capture_output=True, text=True, cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr

    data = target / "dse" / "builtin_spaces"
    assert data.is_dir() and not data.is_symlink()
    files = sorted(data.iterdir())
    assert [f.name for f in files] == [f"{n}.yaml" for n in BUILTIN]
    assert all(f.is_file() and not f.is_symlink() for f in files)

    env = {k: v for k, v in os.environ.items() if k != "DSE_SPACES"}
    env["PYTHONPATH"] = str(target)
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                       cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert Path(got["file"]).parent == target / "dse"  # the install, not the source tree
    assert Path(got["dir"]) == data
    assert sorted(got["spaces"]) == BUILTIN
    assert all(Path(p).parent == data for p in got["spaces"].values())

    script = target / "bin" / "dse"  # the console script, run from the install
    r = subprocess.run([sys.executable, str(script), "spaces"], capture_output=True,
                       text=True, cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines()[2:] if line.strip()]
    assert listed == LISTED

    r = subprocess.run([sys.executable, "-m", "dse", "spaces", "--json"], capture_output=True,
                       text=True, cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    assert [s["name"] for s in json.loads(r.stdout)] == LISTED
