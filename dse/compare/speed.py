"""Time per image of zoo, reference and stored models (torch), and the paper's fits of
runtime against flops and activations (dse.compare.speedfit).

Each model is built once, moved to the device, run `warmup` times and then timed `iters`
times (torch.cuda.synchronize after each step on CUDA); its time is the median step. Infer
runs the forward pass under inference mode; train runs forward, cross-entropy, backward and
an SGD step.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from dse.compare import references, speedfit
from dse.errors import ArgumentError, DseError
from dse.space import complexity, zoo
from dse.space.spec import AnyNetSpec, Task, from_row, parse_spec
from dse.store.status import Status

# The paper's headline comparison (DDS Table 4): RegNetY against EfficientNet.
DEFAULT_NAMES = [n for n in zoo.regnet_names() if n.startswith("RegNetY")] + \
    [f"efficientnet_b{i}" for i in range(6)]
MODES = ("infer", "train")


@dataclass(frozen=True)
class Candidate:
    """A model to time: its name, family, input resolution and complexity there; a spec
    and task for a dse network, None for a torchvision reference."""

    name: str
    family: str
    resolution: int
    flops: int
    params: int
    acts: int
    spec: AnyNetSpec | None = None
    task: Task | None = None


def zoo_candidate(name: str, resolution: int | None = None) -> Candidate:
    """A zoo name (any case) or a JSON spec, at its own resolution or `resolution`."""
    found = zoo.canonical(name)
    if found is not None and zoo.is_reference(found):
        ref = zoo.REFERENCES[found]
        res = resolution or ref.resolution
        with torch.device("meta"):
            cx = references.count(references.build(found), res)
        return Candidate(found, ref.family, res, **cx)
    spec, _ = parse_spec(found or name)
    task = Task(resolution=resolution or 224)
    fam = zoo.family(found) if found else "spec"
    return Candidate(found or name, fam, task.resolution, **complexity.complexity(spec, task),
                     spec=spec, task=task)


def store_candidates(store, space: str, top: int) -> list[Candidate]:
    """The `top` trained models of a space with the lowest error (dse.store.core.Store)."""
    df = store.load([space])
    done = df[df["status"] == Status.DONE].sort_values("error").head(top)
    if done.empty:
        raise DseError(f"no trained models of {space} in store {store}; run `dse train` first")
    out = []
    for _, r in done.iterrows():
        spec, task = from_row(r)
        out.append(Candidate(r["model_id"], r["space"], task.resolution, int(r["flops"]),
                             int(r["params"]), int(r["acts"]), spec, task))
    return out


def build(c: Candidate) -> nn.Module:
    if c.spec is None:
        return references.build(c.name)
    from dse.train.models import build as build_anynet

    return build_anynet(c.spec, c.task)


def device_of(name: str) -> torch.device:
    """auto (CUDA when visible, else CPU), cpu or cuda."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ArgumentError("device", "cuda: no CUDA device is visible; use cpu or auto")
    return torch.device(name)


def device_text(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    return f"cpu: {cpu}, {torch.get_num_threads()} threads"


def time_step(model: nn.Module, c: Candidate, device: torch.device, batch_size: int,
              mode: str, iters: int, warmup: int, channels_last: bool, bf16: bool) -> float:
    """Median seconds of one step on a batch of `batch_size` images."""
    in_ch = c.task.in_channels if c.task else 3
    x = torch.randn(batch_size, in_ch, c.resolution, c.resolution, device=device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    y = torch.zeros(batch_size, dtype=torch.long, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3) if mode == "train" else None
    model.train(mode == "train")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if opt is None:
                with torch.inference_mode():
                    model(x)
                return
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(candidates: list[Candidate], device: str = "auto", batch_size: int | None = None,
            mode: str = "infer", iters: int = 10, warmup: int = 3, channels_last: bool = False,
            bf16: bool = False, progress=None) -> dict:
    """Time every candidate and fit time per image against flops and acts (dse.compare.speedfit).
    batch_size defaults to 64 on CUDA (the paper's inference batch) and 8 on CPU."""
    if mode not in MODES:
        raise ArgumentError("mode", f"must be one of {', '.join(MODES)} (got {mode!r})")
    for name, v in (("iters", iters), ("warmup", warmup), ("batch_size", batch_size or 1)):
        if v < (0 if name == "warmup" else 1):
            raise ArgumentError(name, f"must be {'≥ 0' if name == 'warmup' else '≥ 1'} "
                                f"(got {v})")
    dev = device_of(device)
    bs = batch_size or (64 if dev.type == "cuda" else 8)
    rows = []
    for c in candidates:
        torch.manual_seed(0)
        model = build(c)
        sec = time_step(model, c, dev, bs, mode, iters, warmup, channels_last, bf16)
        rows.append(dict(name=c.name, family=c.family, resolution=c.resolution, flops=c.flops,
                         params=c.params, acts=c.acts, ms_per_batch=sec * 1e3,
                         images_per_second=bs / sec))
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if progress:
            progress(rows[-1])
    return {"device": device_text(dev), "cpu": dev.type == "cpu", "mode": mode,
            "batch_size": bs, "iters": iters, "warmup": warmup, "channels_last": channels_last,
            "bf16": bf16, "torch_version": torch.__version__, "models": rows,
            "fits": speedfit.speed_fits(rows), "family_exponents":
            speedfit.family_exponents(rows)}
