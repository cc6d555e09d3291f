"""A full disk, an exceeded quota or a read-only store: every write that the file system
refuses (sample, claim, heartbeat, result, compaction, analysis outputs, report, experiment
files) ends in one line naming the store and its free space, gives its claims back and leaves
every file that was there readable. The errors are injected at the write; where the machine
allows it (unshare), a tiny tmpfs is filled and then made read-only for real."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_helpers import ok, run

from dse.errors import WriteRefusedError
from dse.method import experiment, stages
from dse.runner import leases
from dse.store import results
from dse.store.core import Store

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--epochs", "1", "--train-subset", "200", "--batch-size", "50"]
WORDS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
         errno.EROFS: "read-only file system"}


def refuse(monkeypatch, where: str, err: int = errno.ENOSPC, op: str = "replace"):
    """Make every rename (or hard link) onto a path matching `where` fail with `err`, as the
    write of a full or read-only file system does."""
    real = getattr(os, op)

    def refused(src, dst, *a, **k):
        if re.search(where, str(dst)):
            raise OSError(err, os.strerror(err))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, op, refused)


def snapshot(root):
    """Every file but the locks and the log of runs (runs/: a refused run is recorded there as
    stopped, see ran_nothing), by content; each Parquet file must read."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.name != ".lock" and p.relative_to(root).parts[0] != "runs":
            out[p] = p.read_bytes()
            if p.suffix == ".parquet":
                pq.read_table(p)
    assert not [p for p in out if p.name.endswith(".tmp")]
    return out


def refused_line(r, root, err=errno.ENOSPC) -> str:
    """The one-line error of a refused write (`dse train` may have shown progress before)."""
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    msg = r.stderr
    assert msg.startswith("Error: ") and msg.count("\n") == 1, r.output
    assert WORDS[err] in msg and f"(store {root}: " in msg and " free)" in msg, msg
    return msg


@pytest.fixture
def store(tmp_path):
    """anynetxa with 3 synthetic models, the first with a result file."""
    root = tmp_path / "store"
    ok("sample", "--space", "xa", "--n", 3, "--dataset", "synthetic", "--flops", "0.5M:3M",
       "--store", root)
    s = Store(root)
    mid = s.read_models("anynetxa")["model_id"][0]
    s.write_result("anynetxa", dict(model_id=mid, space="anynetxa", status="done", error=20.0))
    return s


@pytest.mark.parametrize("err", sorted(WORDS))
def test_sample(store, monkeypatch, err):
    before = snapshot(store.root)
    refuse(monkeypatch, "models.parquet", err)
    r = run("sample", "--space", "xa", "--n", 2, "--dataset", "synthetic", "--flops",
            "0.5M:3M", "--seed", 1, "--store", store.root)
    assert refused_line(r, store.root, err).startswith(
        f"Error: cannot write {store.models_path('anynetxa')}: ")
    assert snapshot(store.root) == before


def test_result_write(store, monkeypatch):
    before = snapshot(store.root)
    refuse(monkeypatch, "results")
    with pytest.raises(WriteRefusedError, match=f"no space left on device \\(store "
                                                f"{store.root}: .* free\\)"):
        store.write_result("anynetxa", dict(model_id="x" * 16, space="anynetxa",
                                            status="done", error=1.0))
    assert snapshot(store.root) == before


def ran_nothing(root):
    """The refused run's record in the log of runs: stopped, no model trained."""
    import json

    recs = [json.loads(p.read_text()) for p in sorted((Path(root) / "runs").glob("*.json"))]
    assert [(r["status"], r["trained"]) for r in recs] == [("stopped", 0)], recs


def test_train_cannot_claim(store, monkeypatch):
    before = snapshot(store.root)
    refuse(monkeypatch, "claims", op="link")
    r = run("train", "--store", store.root, *FAST)
    assert "/claims/" in refused_line(r, store.root)
    assert snapshot(store.root) == before and not list(store.claims_dir("anynetxa").iterdir())
    ran_nothing(store.root)


def test_train_cannot_write_a_result_and_gives_its_claims_back(store, monkeypatch):
    before = snapshot(store.root)
    refuse(monkeypatch, "/results/")
    r = run("train", "--store", store.root, *FAST)
    assert "/results/" in refused_line(r, store.root)
    assert snapshot(store.root) == before and not list(store.claims_dir("anynetxa").iterdir())
    ran_nothing(store.root)
    assert ok("status", "--store", store.root).stdout.split("\n")[2].split()[6] == "2"


def test_heartbeat(store, monkeypatch):
    mid = store.read_models("anynetxa")["model_id"][1]
    c = leases.claim(store, "anynetxa", mid)
    held = c.path.read_bytes()
    refuse(monkeypatch, "claims")
    with pytest.raises(WriteRefusedError, match="no space left on device"):
        leases.heartbeat(c)
    assert c.path.read_bytes() == held  # still a readable claim of this process
    monkeypatch.undo()
    leases.release(c)


def test_compaction(store, monkeypatch):
    before = snapshot(store.root)
    refuse(monkeypatch, "segments")
    r = run("compact", "--store", store.root)
    assert "/segments/" in refused_line(r, store.root)
    assert snapshot(store.root) == before and len(results.per_model_files(store,
                                                                          "anynetxa")) == 1


@pytest.mark.parametrize("args, where", [
    (["edf", "compare", "xa"], r"\.png"),
    (["fit-linear", "--space", "xa"], r"fit_linear\.parquet"),
    (["report"], r"report\.html"),
])
def test_analysis_outputs(store, monkeypatch, args, where):
    before = snapshot(store.root)
    refuse(monkeypatch, where)
    r = run(*args, "--store", store.root)
    assert re.search(where, refused_line(r, store.root)) and r.stdout == ""
    assert snapshot(store.root) == before


def test_experiment_files(store, monkeypatch):
    exp = experiment.load(ROOT / "experiments" / "demo.yaml")
    refuse(monkeypatch, "experiments", errno.EROFS)
    with pytest.raises(WriteRefusedError, match="read-only file system"):
        stages.record(exp, store)


# ---- a real tmpfs ----------------------------------------------------------------------------

def _unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


INSIDE = r'''
import json, os, subprocess, sys
from pathlib import Path
store, mnt, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
root = mnt / "store"
subprocess.run(["cp", "-r", str(store), str(root)], check=True)
fd = os.open(mnt / "fill", os.O_WRONLY | os.O_CREAT)
for size in (65536, 4096, 512, 1):  # fill the file system to the last byte
    try:
        while True:
            os.write(fd, b"\0" * size)
    except OSError:
        pass
os.close(fd)

def files():
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}

def dse(*args):
    p = subprocess.run([sys.executable, "-m", "dse", *args, "--store", str(root)],
                       capture_output=True, text=True)
    return dict(args=list(args), rc=p.returncode, out=p.stdout, err=p.stderr)

before = files()
runs = {"full": [dse("sample", "--space", "xa", "--n", "2", "--dataset", "synthetic",
                     "--flops", "0.5M:3M", "--seed", "1"),
                 dse("train", *sys.argv[4:]), dse("compact"), dse("status"),
                 dse("edf", "compare", "xa")]}
full_after = files()
subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
runs["read-only"] = [dse("status"), dse("edf", "compare", "xa"), dse("train", *sys.argv[4:]),
                     dse("compact")]
json.dump(dict(runs=runs, same=[before == full_after, before == files()],
               claims=[str(p) for p in root.rglob("claims/*")]), open(out, "w"))
'''


@pytest.mark.slow  # nine dse commands in processes: about 25 s on 2 quiet cores
@pytest.mark.skipif(not _unshare(), reason="needs user and mount namespaces (unshare -rm)")
def test_a_full_then_read_only_tmpfs(store, tmp_path):
    (tmp_path / "mnt").mkdir()
    (tmp_path / "inside.py").write_text(INSIDE)
    out = tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(["unshare", "-rm", sys.executable, tmp_path / "inside.py", store.root,
                        tmp_path / "mnt", out, *FAST], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads(out.read_text())
    root = tmp_path / "mnt" / "store"
    expect = {("full", "status"): 0, ("read-only", "status"): 0}
    for mode, runs in rec["runs"].items():
        word = WORDS[errno.ENOSPC if mode == "full" else errno.EROFS]
        for r in runs:
            if expect.get((mode, r["args"][0])) == 0:
                assert r["rc"] == 0 and "anynetxa" in r["out"] and not r["err"], r
                continue
            assert r["rc"] == 2 and r["err"].count("\n") == 1, r  # train shows progress first
            assert r["err"].startswith("Error: cannot write ") and word in r["err"], r
            assert f"(store {root}: " in r["err"] and " free)" in r["err"], r
    assert rec["same"] == [True, True] and rec["claims"] == []
    shutil.rmtree(tmp_path / "mnt", ignore_errors=True)
