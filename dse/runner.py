"""Training a population: pending models, atomic claims with heartbeats, workers, progress.

    <store>/<space>/results/<model_id>.parquet   written atomically when a model finishes
    <store>/<space>/claims/<model_id>.json       held while a model trains

A model is pending while it has no result file. A process claims a model by creating its
claim file atomically (hard link of a complete temporary file: exactly one creator wins); the
file records the owner (host, pid, a random token) and a heartbeat time that a thread
refreshes. A claim is stale when its heartbeat is older than the timeout or its pid is dead on
this host; a stale claim is taken over under the space's lock. So a kill -9 loses only the
models in flight, a rerun trains exactly the models without a result, and two runs on one
store never train the same model twice.

One process trains on the calling thread (CPU, one GPU, --jobs 1); more workers are
separate processes, one per (device, job slot), fed by this process, which alone holds
claims and writes results. See docs/training.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import queue as queue_mod
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dse import __version__, store
from dse.errors import DseError
from dse.spec import DATASETS, AnyNetSpec, Task

CLAIM_TIMEOUT = 300.0  # seconds without a heartbeat after which a claim is stale
HEARTBEAT = 15.0       # seconds between heartbeats
HOST = socket.gethostname()


@dataclass(frozen=True)
class Job:
    """One model to train."""

    space: str
    model_id: str
    dataset: str
    spec: AnyNetSpec
    task: Task
    flops: int

    @property
    def key(self) -> str:
        return f"{self.space}/{self.model_id}"


def jobs_of(store_dir: Path, space: str, retry_failed: bool = False) -> list[Job]:
    """Models of a space that have no result (or a failed one, with retry_failed)."""
    models = store.read_models(store_dir, space)
    done = _result_statuses(store_dir, space)
    out = []
    for r in models.itertuples(index=False):
        st = done.get(r.model_id)
        if st is not None and not (retry_failed and st == "failed"):
            continue
        task = Task(int(r.resolution), r.stem, int(r.in_channels), int(r.num_classes))
        spec = AnyNetSpec(tuple(map(int, r.ds)), tuple(map(int, r.ws)), tuple(map(int, r.bs)),
                          tuple(map(int, r.gs)), float(r.se_ratio), int(r.stem_w))
        out.append(Job(space, r.model_id, r.dataset, spec, task, int(r.flops)))
    return out


def _result_statuses(store_dir: Path, space: str) -> dict[str, str]:
    res = store.read_results(store_dir, space)
    return dict(zip(res["model_id"], res["status"]))


def stored_status(store_dir: Path, space: str, model_id: str) -> str | None:
    """The status of a model's stored result; None if it has none."""
    import pyarrow.parquet as pq

    path = store.results_dir(store_dir, space) / f"{model_id}.parquet"
    if not path.is_file():
        return None
    try:
        return pq.read_table(path, columns=["status"]).column(0)[0].as_py()
    except Exception:  # noqa: BLE001 - unreadable: a result is there, leave it alone
        return "unreadable"


# ---- claims -------------------------------------------------------------------------------

@dataclass
class Claim:
    """A claim this process holds on one model."""

    store: Path
    space: str
    model_id: str
    token: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def path(self) -> Path:
        return claims_dir(self.store, self.space) / f"{self.model_id}.json"


def claims_dir(store_dir: Path, space: str) -> Path:
    return store.space_dir(store_dir, space) / "claims"


def _claim_record(c: Claim) -> dict:
    now = time.time()
    return dict(model_id=c.model_id, host=HOST, pid=os.getpid(), token=c.token,
                claimed_at=now, heartbeat_at=now)


def read_claim(path: Path) -> dict | None:
    """The record of a claim file; {} if unreadable; None if there is none."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie is dead for our purpose
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


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
    if rec.get("host") == HOST and not _pid_alive(int(rec.get("pid", -1))):
        return True
    return now - float(rec.get("heartbeat_at", 0)) > timeout


def _link_new(path: Path, rec: dict) -> bool:
    """Create `path` holding `rec`, atomically and only if it does not exist."""
    tmp = path.with_name(f".{path.name}.{rec['token']}.tmp")
    tmp.write_text(json.dumps(rec))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def claim(store_dir: Path, space: str, model_id: str, timeout: float = CLAIM_TIMEOUT,
          retry_failed: bool = False) -> Claim | None:
    """Claim a model for this process; None if another live process holds it or it already
    has a result (other than `failed`, with retry_failed). A stale claim is taken over."""
    c = Claim(Path(store_dir), space, model_id)
    c.path.parent.mkdir(parents=True, exist_ok=True)
    if not _link_new(c.path, _claim_record(c)):
        with store.locked(store.space_dir(store_dir, space)):  # takeovers are serialized
            if not is_stale(read_claim(c.path), c.path, timeout):
                return None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(c.path)
            if not _link_new(c.path, _claim_record(c)):
                return None
    st = stored_status(store_dir, space, model_id)
    if st is not None and not (retry_failed and st == "failed"):
        release(c)  # finished by another run just before we claimed it
        return None
    return c


def release(c: Claim) -> None:
    """Remove a claim if it is still ours."""
    with store.locked(store.space_dir(c.store, c.space)):
        rec = read_claim(c.path)
        if rec and rec.get("token") == c.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(c.path)


def heartbeat(c: Claim) -> bool:
    """Refresh a claim's heartbeat; False if it is no longer ours (it was taken over)."""
    with store.locked(store.space_dir(c.store, c.space)):
        rec = read_claim(c.path)
        if not rec or rec.get("token") != c.token:
            return False
        rec["heartbeat_at"] = time.time()
        store.write_atomic(c.path, lambda p: Path(p).write_text(json.dumps(rec)))
        return True


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

    def add(self, c: Claim):
        with self._lock:
            self.claims[c.path] = c

    def remove(self, c: Claim):
        with self._lock:
            self.claims.pop(c.path, None)

    def _run(self):
        while not self._stop.wait(self.interval):
            with self._lock:
                held = list(self.claims.values())
            for c in held:
                with contextlib.suppress(OSError, DseError):
                    heartbeat(c)


# ---- status -------------------------------------------------------------------------------

def status(store_dir: Path, timeout: float = CLAIM_TIMEOUT) -> list[dict]:
    """Per space: sampled / done / diverged / failed / pending, and how many of the pending
    are in flight (live claims) or held by stale claims."""
    store_dir = Path(store_dir)
    if not store_dir.is_dir():
        raise DseError(f"store {store_dir} does not exist; sample models first "
                       "(dse sample --store ...)")
    rows = []
    for space in store.spaces_in(store_dir):
        models = store.read_models(store_dir, space)
        res = _result_statuses(store_dir, space)
        ids = set(models["model_id"])
        counts = {s: sum(1 for m, st in res.items() if m in ids and st == s)
                  for s in store.RESULT_STATUSES}
        pending = [m for m in models["model_id"] if m not in res]
        live = stale = 0
        cdir = claims_dir(store_dir, space)
        for m in pending:
            p = cdir / f"{m}.json"
            rec = read_claim(p)
            if rec is not None:
                if is_stale(rec, p, timeout):
                    stale += 1
                else:
                    live += 1
        dataset = models["dataset"].iloc[0] if len(models) else ""
        rows.append(dict(space=space, dataset=dataset, sampled=len(models), **counts,
                         pending=len(pending), in_flight=live, stale_claims=stale))
    return rows


# ---- the run ------------------------------------------------------------------------------

@dataclass
class Summary:
    """What a run did."""

    total: int = 0                     # models that needed training when the run started
    counts: dict = field(default_factory=lambda: {s: 0 for s in store.RESULT_STATUSES})
    skipped: int = 0                   # held by another live run
    seconds: float = 0.0
    best: tuple | None = None          # (error, space, model_id)
    last_error: str = ""

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        c = self.counts
        s = (f"trained {self.finished} of {self.total} pending models in "
             f"{_fmt_s(self.seconds)}: {c['done']} done, {c['diverged']} diverged, "
             f"{c['failed']} failed")
        if self.skipped:
            s += f"; {self.skipped} left to another running dse train"
        if self.best:
            s += f"; best {self.best[0]:.2f}% ({self.best[1]}/{self.best[2]})"
        return s


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def select_spaces(store_dir: Path, names: list[str] | tuple = ()) -> list[str]:
    """The spaces to train (default: every space in the store), checked to be trainable."""
    from dse import data

    store_dir = Path(store_dir)
    if not store_dir.is_dir():
        raise DseError(f"store {store_dir} does not exist; sample models first "
                       "(dse sample --store ...)")
    have = store.spaces_in(store_dir)
    if not have:
        raise DseError(f"store {store_dir} holds no sampled models; run dse sample first")
    names = list(dict.fromkeys(names)) or have
    for n in names:
        if n not in have:
            from dse import spaces

            with contextlib.suppress(DseError):  # accept an alias such as rx
                n2 = spaces.load(n).name
                if n2 in have:
                    names[names.index(n)] = n2
                    continue
            raise DseError(f"space {n!r} has no models in {store_dir}; spaces there: "
                           f"{', '.join(have)}")
    for n in names:
        models = store.read_models(store_dir, n)
        ds = models["dataset"].iloc[0] if len(models) else None
        if ds == "imagenet":
            others = [s for s in have if s != n]
            raise DseError(f"space {n!r} holds imagenet models, which dse train cannot train "
                           f"yet (supported: {', '.join(data.TRAINABLE)})"
                           + (f"; name the others with --space ({', '.join(others)})"
                              if others else ""))
        if ds not in data.TRAINABLE:
            raise DseError(f"space {n!r} holds models for unknown dataset {ds!r}")
        task = DATASETS[ds]
        r = models.iloc[0]
        if (int(r.resolution), r.stem, int(r.in_channels), int(r.num_classes)) != \
                (task.resolution, task.stem, task.in_channels, task.num_classes):
            raise DseError(f"space {n!r}: its models' task does not match {ds}")
    return names


def devices_for(device: str, jobs: int) -> list[str]:
    """One entry per worker: `jobs` per device; 'auto'/'cuda' use every GPU."""
    import torch

    from dse.train import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count()) for _ in range(jobs)]
    return [str(dev)] * jobs


def result_row(job: Job, recipe, outcome: dict, device: str) -> dict:
    """The stored row of a finished model: outcome, recipe, device and versions."""
    import torch

    r = recipe
    return dict(
        model_id=job.model_id, space=job.space, status=outcome["status"],
        error=outcome.get("error"), message=outcome.get("message") or "",
        epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, wd=r.wd, seed=r.seed,
        dataset=job.dataset, train_subset=r.train_subset,
        train_seconds=outcome.get("train_seconds"),
        images_per_second=outcome.get("images_per_second"),
        train_loss=_finite_or_none(outcome.get("train_loss")),
        device=device, torch_version=torch.__version__, dse_version=__version__,
        finished_at=_now_ms(),
        momentum=r.momentum, nesterov=r.nesterov, warmup_epochs=r.warmup_epochs,
        zero_init_final_gamma=r.zero_init_final_gamma, augment=r.augment,
        precision=outcome.get("precision"), cuda_graph=outcome.get("cuda_graph"),
        channels_last=outcome.get("channels_last"),
        epochs_run=outcome.get("epochs_run"), host=HOST)


def _now_ms() -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _describe(workers: list[str]) -> str:
    """'1 worker (cpu)', '8 workers (4 × cuda:0, 4 × cuda:1)'."""
    per = {w: workers.count(w) for w in workers}
    where = ", ".join(f"{k} × {w}" if k > 1 else w for w, k in per.items())
    return f"{len(workers)} worker{'s' * (len(workers) > 1)} ({where})"


def _finite_or_none(x):
    return x if isinstance(x, float) and math.isfinite(x) else None


def run(store_dir, spaces=(), recipe=None, *, device: str = "auto", jobs: int = 1,
        max_models: int | None = None, data_dir=None, download: bool = False,
        retry_failed: bool = False, amp: bool | None = None, cuda_graph: bool | None = None,
        channels_last: bool | None = None, claim_timeout: float = CLAIM_TIMEOUT,
        heartbeat_s: float = HEARTBEAT, report=None) -> Summary:
    """Train every pending model of the spaces; returns a Summary. `report` (a Progress or
    None) hears start(total, workers), info(line), begin(job), epoch(job, epoch, loss),
    result(job, row), tick() and end(summary)."""
    from dse import data
    from dse.train import Recipe

    recipe = recipe or Recipe()
    store_dir = Path(store_dir)
    if jobs < 1:
        raise DseError(f"--jobs must be ≥ 1 (got {jobs})")
    if max_models is not None and max_models < 1:
        raise DseError(f"--max-models must be ≥ 1 (got {max_models})")
    names = select_spaces(store_dir, spaces)
    todo = [j for n in names for j in jobs_of(store_dir, n, retry_failed)]
    todo.sort(key=lambda j: -j.flops)  # longest first: the last models finish together
    workers = devices_for(device, jobs)
    summary = Summary(total=len(todo) if max_models is None else min(len(todo), max_models))
    report = report or _Silent()
    if not todo:
        report.start(0, _describe(workers))
        report.end(summary)
        return summary
    arrays = {ds: data.load(ds, data_dir, download) for ds in {j.dataset for j in todo}}
    for ds, a in arrays.items():  # fail before claiming anything
        if recipe.train_subset is not None and recipe.train_subset > len(a.train_y):
            raise DseError(f"--train-subset {recipe.train_subset} exceeds the "
                           f"{len(a.train_y)} training images of {ds}")
        if recipe.batch_size > min(len(a.train_y), recipe.train_subset or len(a.train_y)):
            raise DseError(f"--batch-size {recipe.batch_size} exceeds the training images")
    opts = dict(recipe=recipe, data_dir=data_dir, download=download, amp=amp,
                cuda_graph=cuda_graph, channels_last=channels_last)
    if len(workers) == 1:
        executor = _InProcess(workers[0], arrays, report, **opts)
    else:
        executor = _Processes(workers, **opts)
    report.start(summary.total, _describe(workers))
    for ds, a in arrays.items():
        report.info(f"{ds}: {len(a.train_y)} training images"
                    + (f" (using {recipe.train_subset})" if recipe.train_subset else "")
                    + f", {len(a.test_y)} test images, from {a.source}")
    start = time.perf_counter()
    held: dict[str, tuple[Job, Claim]] = {}
    it = iter(todo)
    started = 0
    try:
        with Heartbeats(heartbeat_s) as hb, executor:
            while True:
                while executor.free() and (max_models is None or started < max_models):
                    job = _next_claimable(it, store_dir, claim_timeout, retry_failed,
                                          summary, held, hb)
                    if job is None:
                        break
                    executor.submit(job)
                    report.begin(job)
                    started += 1
                if not held:
                    break
                for ev in executor.events(timeout=1.0):
                    kind, key = ev[0], ev[1]
                    job, c = held[key]
                    if kind == "epoch":
                        report.epoch(job, ev[2], ev[3])
                        continue
                    outcome, dev_name = ev[2], ev[3]
                    row = result_row(job, recipe, outcome, dev_name)
                    store.write_result(store_dir, job.space, row)
                    release(c)
                    hb.remove(c)
                    del held[key]
                    summary.counts[row["status"]] += 1
                    if row["status"] == "done" and (summary.best is None
                                                    or row["error"] < summary.best[0]):
                        summary.best = (row["error"], job.space, job.model_id)
                    if row["status"] != "done":
                        summary.last_error = f"{job.model_id}: {row['message']}"
                    report.result(job, row)
                report.tick()
    finally:
        for _job, c in held.values():  # interrupted: give the models in flight back at once
            with contextlib.suppress(OSError, DseError):
                release(c)
        summary.seconds = time.perf_counter() - start
    report.end(summary)
    return summary


def _next_claimable(it, store_dir, timeout, retry_failed, summary, held, hb) -> Job | None:
    """Claim the next job of `it` that nobody finished or holds meanwhile."""
    for job in it:
        st = stored_status(store_dir, job.space, job.model_id)
        if st is not None and not (retry_failed and st == "failed"):
            continue  # finished by another run since we listed it
        c = claim(store_dir, job.space, job.model_id, timeout, retry_failed)
        if c is None:
            summary.skipped += 1
            continue
        held[job.key] = (job, c)
        hb.add(c)
        return job
    return None


# ---- executors ----------------------------------------------------------------------------

def _train_one(job: Job, device_data, opts, on_epoch) -> dict:
    """Train a job, turning any exception into a `failed` outcome with its message."""
    import torch

    from dse.train import train

    t0 = time.perf_counter()
    try:
        return train(job.spec, job.task, device_data, opts["recipe"], amp=opts["amp"],
                     cuda_graph=opts["cuda_graph"], channels_last=opts["channels_last"],
                     on_epoch=on_epoch)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - OOM, cuDNN errors, bad shapes: record them
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        if isinstance(e, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        return dict(status="failed", error=None, message=msg,
                    train_seconds=time.perf_counter() - t0)


class _DataCache:
    """Datasets put on one device, loaded once per dataset and train subset."""

    def __init__(self, device, arrays=None, data_dir=None, download=False):
        self.device, self.arrays, self.data_dir, self.download = device, arrays or {}, \
            data_dir, download
        self.on_device = {}

    def get(self, dataset, train_subset):
        from dse import data

        key = (dataset, train_subset)
        if key not in self.on_device:
            if dataset not in self.arrays:
                self.arrays[dataset] = data.load(dataset, self.data_dir, self.download)
            self.on_device.clear()  # one dataset on the device at a time
            self.on_device[key] = data.DeviceData(self.arrays[dataset], self.device,
                                                  train_subset)
        return self.on_device[key]


def _set_threads(n_workers_here: int) -> None:
    """CPU threads of a worker: $OMP_NUM_THREADS if set, else its share of the cores."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env = os.environ.get("OMP_NUM_THREADS", "")
    torch.set_num_threads(int(env) if env.isdigit() and int(env) > 0
                          else max(1, cores // n_workers_here))


class _InProcess:
    """Trains on the calling thread; events are produced while `events` runs."""

    def __init__(self, device, arrays, report, **opts):
        import torch

        from dse.train import device_name

        self.dev = torch.device(device)
        if self.dev.type == "cpu":
            _set_threads(1)
        elif self.dev.index is not None:
            torch.cuda.set_device(self.dev)
        self.name = device_name(self.dev)
        self.opts, self.job, self.report = opts, None, report
        self.cache = _DataCache(self.dev, dict(arrays), opts["data_dir"], opts["download"])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def free(self) -> bool:
        return self.job is None

    def submit(self, job: Job):
        self.job = job

    def events(self, timeout):
        job, self.job = self.job, None
        if job is None:
            return []
        try:
            d = self.cache.get(job.dataset, self.opts["recipe"].train_subset)
        except DseError as e:
            outcome = dict(status="failed", error=None, message=str(e))
        else:
            outcome = _train_one(job, d, self.opts,
                                 lambda e, loss: self.report.epoch(job, e, loss))
        return [("result", job.key, outcome, self.name)]


def _worker_main(device: str, n_here: int, opts: dict, tasks, results, parent: int) -> None:
    """A worker process: train the jobs it is sent on `device` until it gets None."""
    import signal

    with contextlib.suppress(Exception):  # die with the parent (Linux)
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    import torch

    from dse.train import device_name

    dev = torch.device(device)
    if dev.type == "cpu":
        _set_threads(n_here)
    else:
        torch.cuda.set_device(dev)
    cache = _DataCache(dev, None, opts["data_dir"], opts["download"])
    name = device_name(dev)
    while True:
        try:
            job = tasks.get(timeout=5)
        except queue_mod.Empty:
            if os.getppid() != parent:
                return
            continue
        if job is None:
            return

        def on_epoch(e, loss, job=job):
            if os.getppid() != parent:
                raise SystemExit(0)
            results.put(("epoch", job.key, e, loss))

        try:
            d = cache.get(job.dataset, opts["recipe"].train_subset)
            outcome = _train_one(job, d, opts, on_epoch)
        except DseError as e:
            outcome = dict(status="failed", error=None, message=str(e))
        results.put(("result", job.key, outcome, name))


class _Processes:
    """Worker processes, one per entry of `devices`; each trains one model at a time."""

    def __init__(self, devices, **opts):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.devices, self.opts = devices, opts
        # per worker: [process, task queue, job key, result queue]. Each worker has its own
        # result queue: a worker killed while writing holds that queue's lock forever, which
        # would block every other writer of a shared queue.
        self.slots = [None] * len(devices)

    def _start(self, i):
        tasks, results = self.ctx.Queue(), self.ctx.Queue()
        n_here = self.devices.count(self.devices[i])
        p = self.ctx.Process(target=_worker_main, name=f"dse-worker-{i}", daemon=True,
                             args=(self.devices[i], n_here, self.opts, tasks, results,
                                   os.getpid()))
        p.start()
        self.slots[i] = [p, tasks, None, results]

    def __enter__(self):
        for i in range(len(self.devices)):
            self._start(i)
        return self

    def __exit__(self, *exc):
        for _p, tasks, _, _r in self.slots:
            with contextlib.suppress(Exception):
                tasks.put(None)
        for p, _, key, _r in self.slots:
            p.join(timeout=None if key is None and exc[0] is None else 0.5)
            if p.is_alive():
                p.kill()
                p.join()

    def free(self) -> bool:
        return any(s[2] is None for s in self.slots)

    def submit(self, job: Job):
        i = next(i for i, s in enumerate(self.slots) if s[2] is None)
        self.slots[i][2] = job.key
        self.slots[i][1].put(job)

    def events(self, timeout):
        out = []
        deadline = time.monotonic() + timeout
        while True:
            for s in self.slots:
                if s[0].is_alive() or s[0].exitcode == 0:
                    with contextlib.suppress(queue_mod.Empty):
                        while True:
                            out.append(s[3].get_nowait())
            if out or time.monotonic() >= deadline or any(not s[0].is_alive()
                                                          for s in self.slots):
                break
            time.sleep(0.02)
        for ev in out:
            if ev[0] == "result":
                for s in self.slots:
                    if s[2] == ev[1]:
                        s[2] = None
        for i, (p, _, key, _r) in enumerate(self.slots):
            if not p.is_alive():  # killed (OOM killer, segfault): its model failed
                if key is not None and not any(e[0] == "result" and e[1] == key for e in out):
                    out.append(("result", key, dict(
                        status="failed", error=None,
                        message=f"worker process died (exit code {p.exitcode})"), self.devices[i]))
                self._start(i)
        return out


# ---- progress -----------------------------------------------------------------------------

class _Silent:
    def start(self, total, workers): pass
    def begin(self, job): pass
    def info(self, line): pass
    def epoch(self, job, epoch, loss): pass
    def result(self, job, row): pass
    def tick(self): pass
    def end(self, summary): pass


class Progress:
    """On a terminal, a progress bar (models done/total, in flight, ETA, the last model's
    error or why it diverged/failed) under one log line per finished model; otherwise the
    log lines alone. Ends with the summary line."""

    def __init__(self, stream=None, tty: bool | None = None, epochs: int = 10):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.epochs = epochs

    def start(self, total, workers):
        self.total, self.workers, self.done = total, workers, 0
        self.t0, self.last, self.epoch_of = time.perf_counter(), "", {}
        self._w = 0
        if total == 0:
            return
        self._print(f"training {total} model{'s' * (total != 1)} on {workers}")

    def begin(self, job):
        self.epoch_of[job.key] = 0
        self.tick()

    def info(self, line):
        self._print(line)

    def epoch(self, job, epoch, loss):
        self.epoch_of[job.key] = epoch
        if not self.tty:
            return
        self.tick()

    def result(self, job, row):
        self.done += 1
        self.epoch_of.pop(f"{job.space}/{job.model_id}", None)
        err = f"{row['error']:.2f}%" if row["error"] is not None else row["status"]
        self.last = (f"{job.model_id[:8]} {err}" if row["status"] == "done" else
                     f"{job.model_id[:8]} {row['status']}: {row['message'][:60]}")
        line = (f"[{self.done}/{self.total}] {job.space} {job.model_id} {row['status']} "
                f"error {err}  {row['train_seconds'] or 0:.1f}s")
        if row.get("images_per_second"):
            line += f"  {row['images_per_second']:.0f} img/s"
        if row["status"] != "done":
            line += f"  ({row['message']})"
        self._print(line)

    def tick(self):
        if not self.tty or not self.total:
            return
        el = time.perf_counter() - self.t0
        frac = (self.done + sum(self.epoch_of.values()) / self.epochs) / self.total
        eta = _fmt_s(el / frac * (1 - frac)) if frac > 0 else "?"
        bar = "#" * int(24 * self.done / self.total)
        s = (f"\r[{bar:<24}] {self.done}/{self.total} models  {len(self.epoch_of)} in flight"
             f"  ETA {eta}" + (f"  last: {self.last}" if self.last else ""))
        self.stream.write(s[:160].ljust(self._w))
        self._w = len(s[:160])
        self.stream.flush()

    def _print(self, line):
        if self.tty and self._w:
            self.stream.write("\r" + " " * self._w + "\r")
            self._w = 0
        self.stream.write(line + "\n")
        self.stream.flush()
        self.tick()

    def end(self, summary):
        if self.tty and self._w:
            self.stream.write("\r" + " " * self._w + "\r")
        self.stream.write(summary.line() + "\n" if summary.total else
                          "nothing to train: every sampled model has a result\n")
        self.stream.flush()
