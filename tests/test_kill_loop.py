"""A fault test that does not pick its moments: `dse train` and a compaction running beside it
are killed with SIGKILL at random times, round after round, and restarted. After every round:
no file is unreadable, no result is counted twice, no result once written is lost, and no
model whose result was stored is trained again; at the end every model is trained exactly
once. The default suite runs a short version (2 rounds); `-m slow` runs 25 rounds with two
trainers. The kill times come from a fresh random seed, printed on failure."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_helpers import ok

from dse.runner import pending
from dse.store import results
from dse.store.core import Store

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["train", "--epochs", "1", "--train-subset", "50", "--batch-size", "50",
         "--device", "cpu"]
COMPACTOR = """
import os, sys
from dse.store.core import Store
s, log = Store(sys.argv[1]), sys.argv[2]
def note(line):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (line + "\\n").encode()); os.close(fd)
while True:
    for space in s.spaces():
        note("begin")
        c = s.compact(space)
        note("end" if c.segment is None else "wrote")
"""


def start(args, env):
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def kill(p) -> None:
    """SIGKILL the process group we started (the trainer and any child of it)."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()


class Checker:
    """The invariants, checked on the store after each round."""

    def __init__(self, root: Path, log: Path, space: str):
        self.store, self.log, self.space = Store(root), log, space
        self.stored: set[str] = set()  # models with a stored result after an earlier round
        self.rounds = 0

    def writes(self) -> list[tuple[str, str]]:
        text = self.log.read_text() if self.log.exists() else ""
        return [tuple(x.split()) for x in text.splitlines() if x]

    def __call__(self, seed) -> set[str]:
        why = f"(seed {seed}, after round {self.rounds})"
        for p in self.store.root.rglob("*"):
            if p.is_file() and p.suffix == ".parquet" and not p.name.startswith("."):
                pq.read_table(p)  # nothing unreadable
            if p.is_file() and p.parent.name == "claims" and not p.name.startswith("."):
                json.loads(p.read_text())
        scan = results.scan(self.store, self.space)
        assert not scan.damaged, (scan.damaged, why)
        keys = scan.table.column("model_id").to_pylist()
        assert len(keys) == len(set(keys)), f"a result counted twice {why}"
        have = set(keys)
        assert self.stored <= have, f"results lost: {self.stored - have} {why}"
        ended, seen = set(), []
        for kind, key in self.writes():
            m = key.split("/")[1]
            if kind == "begin":
                assert m not in ended, f"{m} written again after its result {why}"
                seen.append(m)
            else:
                ended.add(m)
        assert ended <= have, f"written but not stored: {ended - have} {why}"
        late = [m for m in seen[self._begun:] if m in self.stored]
        assert not late, f"{late} trained again though stored {why}"
        (row,) = pending.status(self.store)
        assert row["done"] + row["diverged"] + row["failed"] == len(have), (row, why)
        assert row["sampled"] == len(have) + row["pending"], (row, why)
        self.stored, self._begun, self.rounds = have, len(seen), self.rounds + 1
        return have

    _begun = 0


def kill_loop(tmp_path, rounds: int, models: int, trainers: int, window: float):
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    root, log, clog = tmp_path / "store", tmp_path / "writes.log", tmp_path / "compact.log"
    ok("sample", "--space", "xa", "--n", models, "--dataset", "synthetic", "--flops",
       "0.5M:1.5M", "--store", root)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DSE_WRITE_LOG": str(log)}
    train = [sys.executable, str(ROOT / "tests" / "logged_dse.py"), *TRAIN, "--store", str(root)]
    check, kills, mid_compaction = Checker(root, log, "anynetxa"), 0, 0
    for _ in range(rounds):
        before = len(check.writes())
        procs = [start(train, env) for _ in range(trainers)]
        comp = start([sys.executable, "-c", COMPACTOR, str(root), str(clog)], env)
        t0 = time.monotonic()  # from the first result written: torch's start-up is long
        while (len(check.writes()) == before and time.monotonic() - t0 < 300
               and any(p.poll() is None for p in procs)):
            time.sleep(0.05)
        moments = [(rng.uniform(0.0, window), p) for p in [*procs, comp]]  # one each
        t0 = time.monotonic()
        for t, p in sorted(moments, key=lambda x: x[0]):
            time.sleep(max(0.0, t - (time.monotonic() - t0)))
            if p is comp and clog.exists():
                mid_compaction += clog.read_text().splitlines()[-1:] == ["begin"]
            kills += p.poll() is None
            kill(p)
        check(seed)
    p = subprocess.run(train, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    have = check(seed)
    assert len(have) == models, f"seed {seed}"
    ends = [k.split("/")[1] for kind, k in check.writes() if kind == "end"]
    assert len(ends) == len(set(ends)), f"a model trained twice (seed {seed})"
    assert results.per_model_files(check.store, "anynetxa") == []  # compacted at the end
    wrote = clog.read_text().count("wrote") if clog.exists() else 0
    return dict(seed=seed, rounds=rounds, kills=kills, compactions_written=wrote,
                killed_mid_compaction=mid_compaction, models=models, violations=0)


@pytest.mark.slow  # the kill -9 property: tests/test_train_runner.py in the default tier
def test_random_kills_short(tmp_path):
    print(kill_loop(tmp_path, rounds=2, models=6, trainers=1, window=3.0))


@pytest.mark.slow
def test_random_kills(tmp_path):
    print(kill_loop(tmp_path, rounds=25, models=80, trainers=2, window=6.0))
