"""The sampler: determinism, windows, per-space constraints, no duplicates, clear failures."""

import time

import numpy as np
import pytest

from dse.data import datasets
from dse.errors import DseError
from dse.space import definition as spaces
from dse.space import regnet
from dse.space.complexity import complexity
from dse.space.sampling import Window, parse_window, sample, stream
from dse.space.spec import AnyNetSpec, Task, model_id

IMAGENET = Task()
WINDOW = Window(360e6, 400e6)


@pytest.fixture(scope="module")
def populations():
    # the 4-stage spaces (NDS's are CIFAR spaces, sampled in tests/test_block_spaces.py)
    return {s.name: sample(s, 200, IMAGENET, WINDOW, seed=3) for s in spaces.builtin()
            if s.stages == 4}


def _spec(r):
    return AnyNetSpec(tuple(r["ds"]), tuple(r["ws"]), tuple(r["bs"]), tuple(r["gs"]),
                      r["se_ratio"], r["stem_w"], r["block"], r["activation"],
                      r["first_stride"])


def test_same_seed_same_population():
    s = spaces.load("xa")
    a, b = sample(s, 50, IMAGENET, WINDOW, seed=7), sample(s, 50, IMAGENET, WINDOW, seed=7)
    assert a == b
    assert [r["model_id"] for r in sample(s, 50, IMAGENET, WINDOW, seed=8)] != \
        [r["model_id"] for r in a]


def test_windows_and_stored_complexity_are_exact(populations):
    for name, rows in populations.items():
        assert len(rows) == 200 and len({r["model_id"] for r in rows}) == 200, name
        for r in rows:
            assert 360e6 <= r["flops"] <= 400e6
            spec = _spec(r)
            assert complexity(spec, IMAGENET) == {k: r[k] for k in ("flops", "params", "acts")}
            assert r["model_id"] == model_id(spec, IMAGENET)
            assert spec.compatible() == spec  # widths already compatible with b and g
            stages = spaces.load(name).stages
            assert all(len(r[k]) == stages for k in ("ds", "ws", "bs", "gs"))


def test_anynet_constraints_hold(populations):
    for name in ("anynetxa", "anynetxb", "anynetxc", "anynetxd", "anynetxe"):
        for r in populations[name]:
            ds, ws, bs, gs = (np.array(r[k]) for k in ("ds", "ws", "bs", "gs"))
            assert ((1 <= ds) & (ds <= 16)).all() and ((8 <= ws) & (ws <= 1024)).all()
            assert (ws % 8 == 0).all() and set(bs) <= {1, 2, 4}
            # g' = min(g, w_b): a group width larger than the bottleneck becomes w_b
            assert (np.isin(gs, [1, 2, 4, 8, 16, 32]) | (gs == ws // bs)).all()
            assert ((ws // bs) % gs == 0).all()
            if name >= "anynetxb":
                assert len(set(bs)) == 1
            if name >= "anynetxc":  # one g on the built model, after compatibility rounding
                assert len(set(gs)) == 1
            if name >= "anynetxd":
                assert (np.diff(ws) >= 0).all()
            if name >= "anynetxe":
                assert (np.diff(ds) >= 0).all()
    # the constraints are not vacuous: the unconstrained space violates them
    xa = populations["anynetxa"]
    assert any(len(set(r["bs"])) > 1 for r in xa)
    assert any((np.diff(r["ws"]) < 0).any() for r in xa)
    assert any((np.diff(r["ds"]) < 0).any() for r in populations["anynetxd"])


def test_constraints_hold_after_rounding_where_drawing_alone_breaks_them():
    """Rounding widths to per-stage b and g can undo a non-decreasing draw (AnyNetX_A with
    non-decreasing w, the refine loop's first step), and a shared g is capped at a narrow
    stage's bottleneck width (AnyNetX_C); the sampler keeps only models that still obey."""
    task = datasets.task("fashion-mnist")
    window = Window(1.5e6, 2e6)
    xa_w = spaces.derive(spaces.load("xa"), {"non_decreasing": ["w"]}, "xa-w")
    xc = spaces.load("xc")
    rng = np.random.default_rng(0)
    w = xa_w.params["w"].draw_non_decreasing(rng, 4000, 4)
    b, g = xa_w.params["b"].draw(rng, (4000, 4)), xa_w.params["g"].draw(rng, (4000, 4))
    assert (np.diff(regnet.make_compatible(w, b, g)[0], axis=1) < 0).any()
    g1 = np.repeat(g[:, :1], 4, axis=1)
    assert (regnet.make_compatible(w, b, g1)[2] != g1).any(axis=1).any()
    for r in sample(xa_w, 100, task, window, seed=0):
        assert (np.diff(r["ws"]) >= 0).all()
    for r in sample(xc, 100, task, window, seed=0):
        assert len(set(r["gs"])) == 1 and len(set(r["bs"])) == 1


def test_each_space_draws_from_its_own_stream():
    """With one seed, RegNetX and RegNetY (the same parameters, SE aside) no longer draw the
    same parameters (a shared stream gave 28 of 32 models the same architecture at 1.5–2 MF;
    independent draws of this small space coincide a few times, 1–7 over seeds 0–3), nor do
    AnyNetX_A and _B; a space's stream depends on the seed and its name only."""
    task = datasets.task("fashion-mnist")
    window = Window(1.5e6, 2e6)
    arch = lambda r: (tuple(r["ds"]), tuple(r["ws"]), tuple(r["bs"]), tuple(r["gs"]))  # noqa
    rx = {arch(r) for r in sample(spaces.load("rx"), 32, task, window, seed=0)}
    ry = {arch(r) for r in sample(spaces.load("ry"), 32, task, window, seed=0)}
    assert len(rx) == len(ry) == 32 and len(rx & ry) <= 8
    xa = {tuple(r["ws"]) for r in sample(spaces.load("xa"), 64, task, window, seed=0)}
    xb = {tuple(r["ws"]) for r in sample(spaces.load("xb"), 64, task, window, seed=0)}
    assert not xa & xb
    draw = lambda seed, name: stream(seed, name).integers(1 << 62, size=4).tolist()  # noqa
    assert draw(0, "regnetx") == draw(0, "regnetx")
    assert draw(0, "regnetx") != draw(0, "regnety") and draw(0, "regnetx") != draw(1, "regnetx")


def test_regnet_samples_regenerate(populations):
    for name in ("regnetx", "regnety"):
        for r in populations[name]:
            assert 12 <= r["d"] <= 28 and r["b"] == 1 and 2 <= r["wm"] <= 3
            assert r["w0"] % 8 == 0 and 8 <= r["wa"] <= 256
            assert sum(r["ds"]) == r["d"] and len(r["ds"]) == 4
            ds, ws, _ = regnet.regnet_stages(r["d"], r["w0"], r["wa"], r["wm"])
            cws, _, cgs = regnet.make_compatible(ws, [1] * 4, [r["group_w"]] * 4)
            assert ds == r["ds"] and cws.tolist() == r["ws"] and cgs.tolist() == r["gs"]
            assert (np.diff(r["ws"]) > 0).all()
            assert r["se_ratio"] == (0.25 if name == "regnety" else 0)


def test_params_and_acts_windows():
    s = spaces.load("xc")
    rows = sample(s, 40, IMAGENET, WINDOW, params=Window(None, 3e6), acts=Window(2e6, 5e6))
    assert all(r["params"] <= 3e6 and 2e6 <= r["acts"] <= 5e6 for r in rows)


def test_exclude_adds_new_models():
    s = spaces.load("xb")
    first = sample(s, 30, IMAGENET, WINDOW, seed=0)
    more = sample(s, 30, IMAGENET, WINDOW, seed=0, exclude={r["model_id"] for r in first})
    assert not {r["model_id"] for r in first} & {r["model_id"] for r in more}


def test_unreachable_window_fails_fast_and_names_it():
    t = time.perf_counter()
    with pytest.raises(DseError, match=r"found only 0 of 5 anynetxa models with flops 1:2"):
        sample(spaces.load("xa"), 5, IMAGENET, Window(1, 2))
    assert time.perf_counter() - t < 30  # generous: a correctness guard, not a benchmark
    with pytest.raises(DseError, match="regnetx models with flops 100G:200G"):
        sample(spaces.load("rx"), 5, IMAGENET, Window(100e9, 200e9))


def test_window_parsing():
    assert parse_window("360M:400M") == Window(360e6, 400e6)
    assert parse_window("0.4G:") == Window(4e8, None)
    assert parse_window(":5e6") == Window(None, 5e6)
    assert parse_window("1.5k:2K") == Window(1500, 2000)
    for bad, msg in [("400M:360M", "reversed"), ("360M", "malformed"), ("a:b", "not a number"),
                     ("1:2:3", "malformed"), ("-5:3", "finite and ≥ 0")]:
        with pytest.raises(DseError, match=msg):
            parse_window(bad, "--flops")
    with pytest.raises(DseError, match="positive integer"):
        sample(spaces.load("xa"), 0, IMAGENET, WINDOW)


def test_default_windows_scale_the_papers_by_area():
    assert datasets.default_flops_window("imagenet") == (360e6, 400e6)
    assert datasets.default_flops_window("cifar10") == (29.4e6, 32.7e6)  # (32/112)^2
    assert datasets.default_flops_window("fashion-mnist") == (22.5e6, 25.0e6)  # (28/112)^2
    for ds in ("cifar10", "fashion-mnist"):
        window = Window(*datasets.default_flops_window(ds))
        rows = sample(spaces.load("rx"), 20, datasets.task(ds), window)
        assert len(rows) == 20
