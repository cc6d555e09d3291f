"""The claim lease: which process trains which trial (pure: no torch).

A process claims a trial (a model under one recipe and seed, dse.store.recipes.trial_id) by
creating <space>/claims/<trial>.json atomically (a hard link of
a complete temporary file: exactly one creator wins). The file records its owner (host, pid, a
random token) and a heartbeat time that a thread refreshes. A claim is stale when its
heartbeat is older than the timeout or its pid is dead on this host; a stale claim is taken
over under the space's lock. So a kill -9 loses only the models in flight, a rerun trains
exactly the models without a result, and two runs on one store never train a model twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dse.errors import DseError
from dse.files import write_atomic, writing
from dse.runner.options import CLAIM_TIMEOUT, HEARTBEAT
from dse.store.core import Store, needs_training
from dse.store.recipes import parse_trial
from dse.system import HOST, pid_alive


@dataclass
class Lease:
    """A claim this process holds on one trial (`model_id`: its name, dse.store.recipes.trial_id;
    a bare model id claims the model as a whole)."""

    store: Store
    space: str
    model_id: str
    token: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def path(self) -> Path:
        return self.store.claim_path(self.space, self.model_id)

    def record(self) -> dict:
        now = time.time()
        return dict(model_id=parse_trial(self.model_id)[0], trial=self.model_id, host=HOST,
                    pid=os.getpid(), token=self.token, claimed_at=now, heartbeat_at=now)


def read_claim(path: Path) -> dict | None:
    """The record of a claim file; {} if unreadable; None if there is none."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def is_stale(rec: dict | None, path: Path, timeout: float = CLAIM_TIMEOUT) -> bool:
    """Whether a claim no longer protects its model: no heartbeat for `timeout` seconds, or
    its owner's pid is dead on this host (unreadable claims go stale by file age)."""
    if rec is None:
        return False
    now = time.time()
    if not rec:
        try:
            return now - path.stat().st_mtime > timeout
        except FileNotFoundError:
            return False
    if rec.get("host") == HOST and not pid_alive(int(rec.get("pid", -1))):
        return True
    return now - float(rec.get("heartbeat_at", 0)) > timeout


def _link_new(path: Path, rec: dict) -> bool:
    """Create `path` holding `rec`, atomically and only if it does not exist."""
    tmp = path.with_name(f".{path.name}.{rec['token']}.tmp")
    try:
        tmp.write_text(json.dumps(rec))
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def claim(store: Store, space: str, model_id: str, timeout: float = CLAIM_TIMEOUT,
          retry_failed: bool = False) -> Lease | None:
    """Claim a model for this process; None if another live process holds it or it already
    has a result (other than `failed`, with retry_failed). A stale claim is taken over."""
    c = Lease(store, space, model_id)
    with writing(c.path, store.root):  # a full or read-only store: one line, nothing held
        c.path.parent.mkdir(parents=True, exist_ok=True)
        if not _link_new(c.path, c.record()):
            with store.lock(space):  # takeovers are serialized
                if not is_stale(read_claim(c.path), c.path, timeout):
                    return None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(c.path)
                if not _link_new(c.path, c.record()):
                    return None
    if not needs_training(store.result_status(space, model_id), retry_failed):
        release(c)  # finished by another run just before we claimed it
        return None
    return c


def release(c: Lease) -> None:
    """Remove a claim if it is still ours."""
    with c.store.lock(c.space):
        rec = read_claim(c.path)
        if rec and rec.get("token") == c.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(c.path)


def heartbeat(c: Lease) -> bool:
    """Refresh a claim's heartbeat; False if it is no longer ours (it was taken over)."""
    with c.store.lock(c.space):
        rec = read_claim(c.path)
        if not rec or rec.get("token") != c.token:
            return False
        rec["heartbeat_at"] = time.time()
        write_atomic(c.path, lambda p: Path(p).write_text(json.dumps(rec)), c.store.root)
        return True


def held(store: Store, space: str, names=None,
         timeout: float = CLAIM_TIMEOUT) -> tuple[int, int]:
    """How many of the trials `names` (None: every claim of the space) have a live claim,
    and how many a stale one."""
    if names is None:
        d = store.claims_dir(space)
        names = sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []
    live = stale = 0
    for m in names:
        p = store.claim_path(space, m)
        rec = read_claim(p)
        if rec is not None:
            if is_stale(rec, p, timeout):
                stale += 1
            else:
                live += 1
    return live, stale


class Heartbeats:
    """A daemon thread that refreshes the heartbeat of every claim held, every `interval` s."""

    def __init__(self, interval: float = HEARTBEAT):
        self.interval, self.claims = interval, {}
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="dse-heartbeat", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def add(self, c: Lease):
        with self._lock:
            self.claims[c.path] = c

    def remove(self, c: Lease):
        with self._lock:
            self.claims.pop(c.path, None)

    def _run(self):
        while not self._stop.wait(self.interval):
            with self._lock:
                claims = list(self.claims.values())
            for c in claims:
                with contextlib.suppress(OSError, DseError):
                    heartbeat(c)
