"""The refinement assistant: from a trained population of a space, rank the constraints the
paper's method would try next (DDS §3: share b and g, make w and d non-decreasing, fix b = 1,
narrow a range, replace free widths by the quantized linear rule; for RegNet spaces narrow or
fix d, w0, wa, wm, g, b), each with its evidence. Pure: no torch, no files.

For every candidate, each model gets a score in [0, 1]: the fraction of its stages (or of
adjacent stage pairs) that obey the constraint, 1 or 0 for whole-model rules. Scores read the
values a constraint fixes on the model as built: sharing and non-decreasing hold on the
rounded widths and groups (the sampler keeps them there), and a stage whose group width was
capped at its bottleneck width obeys any larger fixed g. The evidence:
- shares: the fraction of the top models (best `frac` by error) and of all models that obey
  it fully;
- p: is the mean score of the top models higher than chance? Exact (hypergeometric) when
  scores are 0/1, otherwise a permutation test over random top sets;
- p_adjusted: Holm's correction over all candidates (the family-wise error stays at alpha),
  so a population without signal yields nothing significant;
- KS: the error EDF of the models that obey it against the rest (D, and which side is
  better);
- the space's size before and after (log10 of the number of settings).
A range to narrow to is chosen on one random half of the models and tested on the other
half, so the test does not see the models that chose it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import yaml

from dse.analysis import effects, fitlinear, stats
from dse.errors import DseError
from dse.files import write_atomic
from dse.method.claims import one_sided
from dse.space import definition as spaces
from dse.space import regnet
from dse.space.definition import Space
from dse.store.schema import definition

MIN_MODELS = 12           # fewer finished models: nothing can be said
PERMUTATIONS = 4999
LINEAR_FIT = 200          # models fit for the linear-rule candidate (~10 ms each)
REGNET_COLS = {"d": "d", "w0": "w0", "wa": "wa", "wm": "wm", "g": "group_w", "b": "b"}
# the RegNet design space of the paper (DDS §4): what an AnyNet refined by the linear rule gets
LINEAR_RULE = {"w0": {"dist": "log_uniform", "low": 8, "high": 256, "q": 8},
               "wa": {"dist": "log_uniform", "low": 8, "high": 256, "q": 0.1},
               "wm": {"dist": "log_uniform", "low": 1.5, "high": 3, "q": 0.001}}


def _stage_matrix(col: pd.Series, stages: int) -> np.ndarray:
    return np.array([list(v)[:stages] for v in col], dtype=float)


def _candidates(space: Space, pop: pd.DataFrame, half: np.ndarray, frac: float, rng,
                fits=None):
    """(description, constraint, score per model, chosen on the half `half` or None)."""
    out = []
    e = pop["error"].to_numpy(dtype=float)
    if space.kind == "anynet":
        S = space.stages
        arr = {p: _stage_matrix(pop[c], S) for p, c in (("d", "ds"), ("w", "ws"),
                                                          ("b", "bs"), ("g", "gs"))}
        for p in ("b", "g"):
            if p in space.params and p not in space.shared and space.params[p].size > 1 \
                    and S > 1:
                distinct = np.array([len(set(r)) for r in arr[p]], dtype=float)
                out.append((f"share {p} across stages", {"shared": [p]},
                            1 - (distinct - 1) / (S - 1), None))
        for p in ("w", "d"):
            if p not in space.non_decreasing and space.params[p].size > 1 and S > 1:
                out.append((f"make {p} non-decreasing across stages",
                            {"non_decreasing": [p]}, (np.diff(arr[p], axis=1) >= 0).mean(1),
                            None))
        # a stage whose group width is its bottleneck width was capped there: any g drawn at
        # least as large builds the same stage, so a constraint on g keeps it
        capped = {"g": arr["g"] == regnet.bottleneck(arr["w"], arr["b"])}
        for p in ("b", "g"):
            d = space.params.get(p)
            if d is not None and d.size > 1:
                for v in d.values:
                    obey = (arr[p] == v) | (capped[p] & (arr[p] < v)) if p in capped \
                        else arr[p] == v
                    out.append((f"fix {p} = {_num(v)}", {"params": {p: _num(v)}},
                                obey.mean(1), None))
        for p in (p for p in ("d", "w", "b", "g") if p in space.params):
            c = _narrow(space, p, arr[p], e, half, frac, rng, capped.get(p))
            if c:
                out.append(c)
        if space.params["w"].size > 1:
            out.append(_linear_rule(space, pop, rng, fits))
        out += _bottleneck_not_inverted(space, arr["b"])
    else:
        for p, col in ((p, c) for p, c in REGNET_COLS.items() if p in space.params):
            x = pop[col].to_numpy(dtype=float)[:, None]
            d = space.params[p]
            if d.size > 1 and p in ("g", "b", "d") and d.size <= 16:
                for v in d.values:
                    out.append((f"fix {p} = {_num(v)}", {"params": {p: _num(v)}},
                                (x[:, 0] == v).astype(float), None))
            c = _narrow(space, p, x, e, half, frac, rng)
            if c:
                out.append(c)
        if "b" in space.params:
            out += _bottleneck_not_inverted(space, pop["b"].to_numpy(dtype=float)[:, None])
    return out + _fix_choices(space, pop)


def _bottleneck_not_inverted(space: Space, b: np.ndarray) -> list:
    """b ≥ 1 (DDS §4: the inverted bottleneck, b < 1, degrades), where the space has both."""
    values = space.params["b"].values
    if not (values.min() < 1 <= values.max()):
        return []
    cfg = space.config["params"]["b"]
    keep = [_num(v) for v in values if v >= 1]
    new = ({**cfg, "low": 1} if isinstance(cfg, dict) and cfg.get("dist") == "power2"
           else {"dist": "choice", "values": keep})
    return [("keep b ≥ 1 (no inverted bottleneck)", {"params": {"b": new}},
             (b >= 1).mean(1), None)]


def _fix_choices(space: Space, pop: pd.DataFrame) -> list:
    """Fix the block type, the activation or the resolution where the space draws several."""
    out = []
    choices = {**space.categorical}
    if space.resolution is not None and space.resolution.size > 1:
        choices["resolution"] = tuple(_num(v) for v in space.resolution.values)
    for key, values in choices.items():
        col = pop[key].to_numpy()
        for v in values:
            out.append((f"fix {key} = {v}", {key: v}, (col == v).astype(float), None))
    return out


def _num(v):
    v = float(v)
    return int(v) if v.is_integer() else v


def _narrow(space: Space, p: str, x: np.ndarray, e: np.ndarray, half: np.ndarray,
            frac: float, rng, capped=None):
    """Narrow p to the 95% bootstrap good range of the best models of one half; a stage
    `capped` below the range (g at its bottleneck width) obeys it as built."""
    d = space.params[p]
    if d.size <= 2:
        return None
    idx = np.flatnonzero(half)
    best = stats.bootstrap_best(e[idx], frac, 2000, rng=rng)
    vals = x[idx][best].ravel()
    lo_q, hi_q = np.percentile(vals, [2.5, 97.5])
    support = d.values
    lo = support[support <= lo_q + 1e-9].max(initial=support[0])
    hi = support[support >= hi_q - 1e-9].min(initial=support[-1])
    if lo <= support[0] and hi >= support[-1]:
        return None
    cfg = space.config["params"][p]
    if isinstance(cfg, dict) and cfg.get("dist") in ("log_uniform", "uniform", "power2"):
        new = {**cfg, "low": _num(lo), "high": _num(hi)}
    else:
        new = {"dist": "choice", "values": [_num(v) for v in support if lo <= v <= hi]}
    obey = (x >= lo) & (x <= hi)
    if capped is not None:
        obey |= capped & (x < lo)
    score = obey.mean(1)
    return (f"narrow {p} to [{_num(lo)}, {_num(hi)}]", {"params": {p: new}}, score, half)


def _linear_rule(space: Space, pop: pd.DataFrame, rng, fits=None):
    """Replace free widths by the quantized linear rule: a model obeys it when its widths are
    fit better than the median e_fit. The fit costs ~10 ms a model, so at most LINEAR_FIT
    models drawn at random are fit and tested (the others score NaN: left out). `fits`: a
    cache of fits (dse.analysis.fitlinear.fit_linear_cached)."""
    n = len(pop)
    fit = np.sort(rng.permutation(n)[:LINEAR_FIT]) if n > LINEAR_FIT else np.arange(n)
    W, d = fitlinear.block_widths(pop["ds"].iloc[fit], pop["ws"].iloc[fit])
    e_fit = np.full(n, np.nan)
    e_fit[fit] = fitlinear.fit_linear_cached(W, d, fits)["e_fit"].to_numpy(dtype=float)
    depth = pop["ds"].map(sum).to_numpy()
    base = space.config["params"]
    rule = {"kind": "regnet",
            "params": {"d": {"dist": "uniform", "low": int(depth.min()),
                             "high": int(max(depth.max(), depth.min() + 1)), "q": 1},
                       **LINEAR_RULE, **{p: base[p] for p in ("g", "b") if p in base}}}
    med = float(np.nanmedian(e_fit))
    score = np.where(np.isnan(e_fit), np.nan, (e_fit <= med).astype(float))
    return ("replace free widths by the quantized linear rule (e_fit below the median "
            f"{med:.3f})", rule, score, None)


@dataclass(frozen=True)
class Refinement:
    """A candidate refinement of a space (`what`, as a space-file `constraint`) and its
    evidence (see the module doc)."""

    what: str
    constraint: dict
    significant: bool
    p: float
    p_adjusted: float
    top_share: float
    all_share: float
    top_score: float
    all_score: float
    ks_D: float
    ks_p: float
    better: str                 # obeying | rest | neither: which side's errors are lower
    log10_size_before: float
    log10_size_after: float
    tested_on: int
    range_chosen_on: int
    frac: float

    @property
    def summary(self) -> str:
        """One line: the refinement, its verdict and evidence."""
        return _summary(self)

    def to_json(self) -> dict:
        return {**asdict(self), "summary": self.summary}


@dataclass(frozen=True)
class Suggestion:
    """The candidate refinements of one space's population, best first."""

    space: str
    n: int
    frac: float
    alpha: float
    candidates: list

    @property
    def best(self) -> Refinement | None:
        """The best supported candidate, or None."""
        return next((c for c in self.candidates if c.significant), None)

    def to_json(self) -> dict:
        return dict(space=self.space, n=self.n, frac=self.frac, alpha=self.alpha,
                    candidates=[c.to_json() for c in self.candidates])


def suggest(space: Space, pop: pd.DataFrame, frac: float = 0.25, alpha: float = 0.05,
            seed: int = 0, fits=None) -> Suggestion:
    """Candidates for the next refinement of `space` from its finished models `pop`, best
    first (see the module doc); `fits` caches the linear fits (a store's fit_cache())."""
    pop = pop.reset_index(drop=True)
    n = len(pop)
    if n < MIN_MODELS:
        raise DseError(f"{space.name} has {n} finished models; suggest needs at least "
                       f"{MIN_MODELS} (train more with `dse train`)")
    rng = np.random.default_rng(seed)
    e = pop["error"].to_numpy(dtype=float)
    half = np.zeros(n, bool)
    half[rng.permutation(n)[: n // 2]] = True
    cands = _candidates(space, pop, half, frac, rng, fits)
    before = space.log10_size
    rows, perms = [], {}
    for desc, constraint, score, chosen_on in cands:
        test = ~chosen_on if chosen_on is not None else np.ones(n, bool)
        test &= ~np.isnan(score)
        row = _evidence(score[test], e[test], frac, rng, perms)
        if row is None:
            continue
        try:
            after = spaces.derive(space, constraint).log10_size
        except DseError:
            continue
        row.update(constraint=constraint, log10_size_before=before, log10_size_after=after,
                   tested_on=int(test.sum()),
                   range_chosen_on=int(chosen_on.sum()) if chosen_on is not None else 0,
                   what=desc)
        rows.append(row)
    adj = effects.adjust([r["p"] for r in rows], "holm")
    found = [Refinement(**r, p_adjusted=float(pa),
                        significant=bool(pa < alpha and r["better"] == "obeying"), frac=frac)
             for r, pa in zip(rows, adj)]
    found.sort(key=lambda c: (not c.significant, c.p_adjusted, c.p, -c.ks_D,
                              c.log10_size_after))
    return Suggestion(space.name, n, frac, alpha, found)


def _evidence(score, e, frac, rng, perms) -> dict | None:
    n = len(e)
    full = score >= 1 - 1e-9
    if full.all() or score.max() <= 0:
        return None  # every model obeys it already, or none does: nothing to learn
    k = max(1, int(round(frac * n)))
    top = np.argsort(e, kind="stable")[:k]
    t = float(score[top].mean())
    if np.isin(score, (0.0, 1.0)).all():
        K = int(score.sum())
        p = float(scipy.stats.hypergeom.sf(int(round(t * k)) - 1, n, K, k))
    else:
        key = (n, k)
        if key not in perms:
            perms[key] = random_sets(rng, n, k)
        null = score[perms[key]].mean(1)
        p = float((1 + (null >= t - 1e-12).sum()) / (PERMUTATIONS + 1))
    obey = full if full.sum() >= 5 else score >= np.median(score)
    if obey.all() or not obey.any():
        d_good, d_bad, p_good, p_bad = 0.0, 0.0, 1.0, 1.0
    else:
        d_good, p_good = one_sided(e[obey], e[~obey], exact=False)
        d_bad, p_bad = one_sided(e[~obey], e[obey], exact=False)
    better = "obeying" if d_good > d_bad else "rest" if d_bad > d_good else "neither"
    return dict(p=p, top_share=float(full[top].mean()), all_share=float(full.mean()),
                top_score=t, all_score=float(score.mean()), ks_D=float(max(d_good, d_bad)),
                ks_p=float(p_good if better == "obeying" else p_bad), better=better)


def random_sets(rng, n: int, k: int, count: int = PERMUTATIONS,
                rows: int = 256) -> np.ndarray:
    """`count` random k-subsets of range(n) (count, k): in each row of uniform draws, the
    indices of the k smallest, as ranking the whole row would give them (the same sets for
    the same rng; argpartition is O(n) a row where argsort is O(n log n)). The draws come
    `rows` rows at a time (the generator's stream is the same) to bound the memory."""
    out = np.empty((count, k), dtype=np.int32 if n < 2 ** 31 else np.int64)
    for s in range(0, count, rows):
        u = rng.random((min(rows, count - s), n))
        out[s:s + len(u)] = np.argpartition(u, k - 1, axis=1)[:, :k]
    return out


def _summary(r: Refinement) -> str:
    pct = int(round(r.frac * 100))
    side = {"obeying": "the models that obey it are better",
            "rest": "the models that obey it are worse", "neither": "no difference"}[r.better]
    verdict = "supported" if r.significant else "not supported"
    return (f"{r.what}: {verdict}; {r.top_share:.0%} of the top {pct}% obey it against "
            f"{r.all_share:.0%} of all (mean score {r.top_score:.2f} vs {r.all_score:.2f}, "
            f"p = {r.p:.2g}, adjusted {r.p_adjusted:.2g}); KS D = {r.ks_D:.2f}, {side}; size "
            f"10^{r.log10_size_before:.1f} → 10^{r.log10_size_after:.1f}")


def _definition(space: Space) -> dict:
    return definition(space.config)


def space_file(space: Space, candidate: Refinement, name: str) -> dict:
    """The mapping of a space file that refines `space` by a candidate: it extends a built-in
    space by name, a space file that still holds the same definition by its absolute path,
    and otherwise states the whole definition."""
    head = {"name": name, "title": name, "adds": candidate.what}
    for ref in (space.name, space.source):
        try:
            if ref and _definition(spaces.load(ref)) == _definition(space):
                extends = ref if ref == space.name else str(Path(ref).resolve())
                return {"extends": extends, **head, **candidate.constraint}
        except DseError:
            continue
    whole = spaces.merge({k: v for k, v in _definition(space).items() if v is not None},
                         candidate.constraint)
    return {**head, **whole}


def write_space_file(space: Space, candidate: Refinement, path, name: str | None = None,
                     write=write_atomic) -> Space:
    """Write the space file of a refinement to `path` (its name: `name`, else the file's stem
    when that is a valid name, else <space>-next) and load it back, as `dse sample --space
    PATH` will; returns the refined space."""
    path = Path(path)
    if name is None:
        stem = path.stem
        name = stem if stem.replace("_", "").replace("-", "").isalnum() else f"{space.name}-next"
    text = yaml.safe_dump(space_file(space, candidate, name), sort_keys=False,
                          allow_unicode=True)
    write(path, lambda p: Path(p).write_text(text))
    return spaces.load(str(path))


def stored_space(record: dict, name: str, where: str) -> Space:
    """The space a store's models were drawn from, rebuilt from its record (space.yaml)."""
    definition = record.get("definition") or {}
    cfg = {"name": name, **{k: v for k, v in definition.items() if v is not None}}
    return spaces.check(cfg, where, str(record.get("source") or where))
