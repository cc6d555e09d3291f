"""Experiments as files: which spaces, how many models, on what data, trained how, analyzed
how, and which of the paper's claims to check (e.g. `name: xa-vs-xe`, `dataset:
fashion-mnist`, `n: 32`, `spaces: [anynetxa, anynetxe]`, `flops: 1.5M:2M`, `train: {epochs:
3}`, `expect: [anynetxe better than anynetxa]`). `dse run FILE` carries one out
(dse.method.pipeline); this module reads and checks the file. No torch.

Every other key has a default (docs/experiments.md lists them). `--set KEY=VALUE` overrides
any key before the file is checked (`n=8`, `train.epochs=1`, `spaces=[xa, xb]`); values are
read as YAML. A mistake is one DseError naming the file and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from dse.analysis.effects import CORRECTIONS
from dse.analysis.population import Operand
from dse.analysis.stats import param_table
from dse.data import datasets
from dse.errors import DseError, out_of_bounds
from dse.method.claims import MARGIN, Claim, parse_claim
from dse.method.overrides import apply_sets, parse_set  # noqa: F401 (part of this API)
from dse.method.training import PROMOTE_KEYS, TRAIN_KEYS  # noqa: F401 (part of this API)
from dse.method.training import int_key as _int
from dse.method.training import promote_stages as _promotes
from dse.method.training import train_options as _train
from dse.runner.options import TrainOptions
from dse.space import definition as spaces
from dse.space import regimes as flop_regimes
from dse.space import sampling
from dse.train.recipe import Recipe

TOP_KEYS = ("name", "about", "dataset", "data_dir", "resolution", "store", "n", "spaces",
            "flops", "params", "acts", "seed", "train", "analyze", "expect", "alpha", "refine",
            "margin", "correction", "regimes", "promote", "rounds")
ROUNDS_KEYS = ("size", "max_n")
# claims judged by an interval alone have no p to spend over looks (dse.method.rounds)
NOT_IN_ROUNDS = ("ranks", "negligible")
ANALYZE_KEYS = ("edf", "fit_linear", "trends", "report")
EDF_KEYS = ("normalize", "bins", "bands")
BANDS = ("auto", "all", "none")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Analyses:
    """What the analyze stage computes besides the EDF comparison and the claims."""

    normalize: str = "none"           # none | flops | params | acts
    bins: int = 10
    bands: str = "auto"               # confidence bands: auto (≤ 3 spaces) | all | none
    fit_linear: tuple = ()            # spaces to fit the quantized linear rule to
    fit_top: int = 10
    trends: tuple = ()                # spaces whose parameter trends are drawn
    report: bool = True               # write the HTML report


@dataclass(frozen=True)
class Experiment:
    """A checked experiment file. `spaces` are the resolved space names in file order;
    `space_args` what load() needs for each (a name or a file path)."""

    path: Path
    name: str
    dataset: str
    n: int
    spaces: tuple
    space_args: tuple
    flops: sampling.Window
    params: sampling.Window = sampling.Window()
    acts: sampling.Window = sampling.Window()
    seed: int = 0
    about: str = ""
    data_dir: str | None = None
    resolution: int | None = None
    store: str | None = None
    options: TrainOptions = field(default_factory=TrainOptions)
    analyses: Analyses = field(default_factory=Analyses)
    claims: tuple = ()
    alpha: float = 0.05
    margin: float = MARGIN                       # points: "same as", "at least as good as"
    correction: str = "holm"                     # none | holm | bh over the claims
    refine_rounds: int = 0                       # refine: rounds of suggest → sample → train
    config: dict = field(default_factory=dict)   # the mapping after --set, for the record
    regimes: tuple = ()                          # regimes: n models per space in each
    promotes: tuple = ()                         # promote: TrainOptions of each stage after
    #                                              training (top K, sample M, seeds, recipe)
    rounds: tuple | None = None                  # rounds: (size, max_n): K more models per
    #                                              space per round up to max_n (None: one n)

    @property
    def regime_list(self) -> tuple:
        """The flop regimes sampled: `regimes:`, else the one of the `flops:` window."""
        return self.regimes or (flop_regimes.Regime(None, self.flops),)
    @property
    def recipe(self) -> Recipe:
        return self.options.recipe

    def store_path(self, override: str | None = None) -> str:
        """--store, else the file's `store:` (a relative path is taken from the file's
        folder), else runs/<name> in the working directory."""
        if override:
            return override
        if self.store:
            p = Path(self.store).expanduser()
            return str(p if p.is_absolute() else self.path.parent / p)
        return str(Path("runs") / self.name)


class ExperimentError(DseError):
    """A mistake in an experiment file: '<file>: <key>: <problem>'."""

    def __init__(self, path, key: str | None, problem: str):
        super().__init__(f"{path}: {key + ': ' if key else ''}{problem}")


# ---- reading ---------------------------------------------------------------------------------

def load(path, sets=()) -> Experiment:
    """Read and check an experiment file, with `--set` overrides applied first."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DseError(f"experiment file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DseError(f"cannot read experiment file {path}: {e}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where else ""
        raise ExperimentError(path, None, f"not valid YAML{at}: "
                              f"{getattr(e, 'problem', None) or e}") from None
    if not isinstance(config, dict):
        raise ExperimentError(path, None, "must be a mapping of keys (name, dataset, n, "
                              "spaces, ...)")
    return check(apply_sets(config, sets), path)


def check(config: dict, path) -> Experiment:
    """The Experiment of a mapping, or an ExperimentError naming the first wrong key."""
    path = Path(path)
    err = lambda key, problem: ExperimentError(path, key, problem)  # noqa: E731
    unknown = [k for k in config if k not in TOP_KEYS]
    if unknown:
        raise err(str(unknown[0]), f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    refine = config.get("refine")
    if refine is not None:
        if not isinstance(refine, dict) or set(refine) - {"start", "rounds"} or \
                "start" not in refine:
            raise err("refine", "must be a mapping {start: SPACE, rounds: K}")
        if config.get("spaces") is None:
            config = {**config, "spaces": [refine["start"]]}
    for k in ("name", "dataset", "n", "spaces"):
        if config.get(k) is None:
            raise err(k, "is required")
    name = config["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise err("name", f"must be a word of letters, digits, '-', '_' or '.' (got {name!r})")
    dataset = config["dataset"]
    if dataset not in datasets.names():
        raise err("dataset", f"unknown dataset {dataset!r}; known: {', '.join(datasets.names())}")
    n = _int(err, "n", config["n"], 1)
    seed = _int(err, "seed", config.get("seed", 0), 0)
    resolution = config.get("resolution")
    if resolution is not None:
        resolution = _int(err, "resolution", resolution, 8)
    names, args = _spaces(err, config["spaces"], path)
    windows = {}
    for k in ("flops", "params", "acts"):
        v = config.get(k)
        try:
            windows[k] = sampling.parse_window(str(v), k) if v is not None else None
        except DseError as e:
            raise err(k, str(e)) from None
    if windows["flops"] is None:
        task = datasets.get(dataset).task
        windows["flops"] = (sampling.Window(*datasets.flops_window(task)) if task is not None
                            else sampling.Window())
    regimes = _regimes(err, config, windows)
    alpha = config.get("alpha", 0.05)
    if why := out_of_bounds(alpha, 0, 1, lo_open=True, hi_open=True):
        raise err("alpha", why)
    margin, correction = config.get("margin", MARGIN), config.get("correction", "holm")
    if why := out_of_bounds(margin, 0, lo_open=True, unit="points of error"):
        raise err("margin", why)
    if correction not in CORRECTIONS:
        raise err("correction", f"must be {', '.join(CORRECTIONS)} (got {correction!r})")
    data_dir = _opt_str(err, "data_dir", config.get("data_dir"))
    options = _train(err, config.get("train") or {}, data_dir)
    promotes = _promotes(err, config.get("promote"), config.get("train") or {}, data_dir)
    analyses = _analyze(err, config.get("analyze") or {}, names)
    claims = _claims(err, config.get("expect") or [], names, path.parent, args)
    in_rounds = _rounds(err, config.get("rounds"), n, claims, refine, regimes, promotes)
    rounds = 0
    if refine is not None:
        rounds = _int(err, "refine.rounds", refine.get("rounds", 2), 1)
        if _space_name(err, "refine.start", refine["start"], names) != names[0]:
            raise err("refine.start", "must be the first of the experiment's spaces")
    return Experiment(
        path=path, name=name, dataset=dataset, n=n, spaces=tuple(names), space_args=tuple(args),
        flops=windows["flops"], params=windows["params"] or sampling.Window(),
        acts=windows["acts"] or sampling.Window(), seed=seed,
        about=_opt_str(err, "about", config.get("about")) or "", data_dir=data_dir,
        resolution=resolution, store=_opt_str(err, "store", config.get("store")),
        options=options, analyses=analyses, claims=tuple(claims), alpha=float(alpha),
        margin=float(margin), correction=correction, refine_rounds=rounds, config=config,
        regimes=regimes, promotes=promotes, rounds=in_rounds)


def _rounds(err, value, n: int, claims, refine, regimes, promotes) -> tuple | None:
    """`rounds: {size: K, max_n: N}`: (K, N), checked against what rounds cannot carry."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(ROUNDS_KEYS) or \
            not set(ROUNDS_KEYS) <= set(value):
        raise err("rounds", "must be a mapping {size: K, max_n: N}: K more models per space "
                  "each round, up to N")
    size = _int(err, "rounds.size", value["size"], 1)
    max_n = _int(err, "rounds.max_n", value["max_n"], 1)
    if max_n <= n:
        raise err("rounds.max_n", f"must exceed n ({n}), the first look (got {max_n})")
    for key, there in (("refine", refine), ("regimes", regimes), ("promote", promotes)):
        if there:
            raise err("rounds", f"an experiment in rounds cannot have `{key}:` as well")
    for i, c in enumerate(claims):
        if c.kind in NOT_IN_ROUNDS:
            raise err(f"expect[{i + 1}]", "is judged by an interval, which has no p to "
                      "spend over the looks of rounds; judge it in an experiment without "
                      "`rounds:`")
    if not claims:
        raise err("rounds", "an experiment in rounds needs claims (`expect:`) to decide")
    return size, max_n


def _regimes(err, config: dict, windows: dict) -> tuple:
    """`regimes:` (() for one `flops:` window); windows['flops'] becomes the span of all."""
    key = "flops" if config.get("regimes") is None else "regimes"
    try:
        if key == "flops":
            flop_regimes.check_window(windows["flops"], "flops")
            return ()
        if config.get("flops") is not None:
            raise DseError("give `flops:` (one regime) or `regimes:`, not both")
        regimes = tuple(flop_regimes.parse(config["regimes"]))
    except DseError as e:
        raise err(key, str(e)) from None
    windows["flops"] = flop_regimes.span(regimes)
    return regimes


def _opt_str(err, key, v):
    if v is not None and not isinstance(v, str):
        raise err(key, f"must be a string (got {v!r})")
    return v


def _spaces(err, value, path: Path) -> tuple[list[str], list[str]]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise err("spaces", "must be a list of space names, aliases or .yaml files")
    names, args = [], []
    for v in value:
        if not isinstance(v, str):
            raise err("spaces", f"{v!r} is not a space name, alias or file")
        arg = v
        if v.endswith((".yaml", ".yml")) and not Path(v).is_absolute():
            near = path.parent / v  # a space file next to the experiment
            arg = str(near) if near.exists() else v
        try:
            space = spaces.load(arg)
        except DseError as e:
            raise err("spaces", str(e)) from None
        if space.name in names:
            raise err("spaces", f"{space.name} is listed twice")
        names.append(space.name)
        args.append(arg)
    return names, args


def _analyze(err, value, names) -> Analyses:
    if not isinstance(value, dict):
        raise err("analyze", f"must be a mapping with keys {', '.join(ANALYZE_KEYS)}")
    for k in value:
        if k not in ANALYZE_KEYS:
            raise err(f"analyze.{k}", f"unknown key; allowed: {', '.join(ANALYZE_KEYS)}")
    a = Analyses()
    edf = value.get("edf") or {}
    if not isinstance(edf, dict) or any(k not in EDF_KEYS for k in edf):
        raise err("analyze.edf", f"must be a mapping with keys {', '.join(EDF_KEYS)}")
    normalize = edf.get("normalize", "none")
    if normalize not in ("none", "flops", "params", "acts"):
        raise err("analyze.edf.normalize", f"must be none, flops, params or acts "
                  f"(got {normalize!r})")
    bands = edf.get("bands", "auto")
    if bands not in BANDS:
        raise err("analyze.edf.bands", f"must be {', '.join(BANDS)} (got {bands!r})")
    a = replace(a, normalize=normalize, bands=bands,
                bins=_int(err, "analyze.edf.bins", edf.get("bins", 10), 1))
    fl = value.get("fit_linear")
    if fl is not None:
        if isinstance(fl, dict):
            a = replace(a, fit_linear=tuple(_named(err, "analyze.fit_linear.spaces",
                                                   fl.get("spaces", names), names)),
                        fit_top=_int(err, "analyze.fit_linear.top", fl.get("top", 10), 1))
        else:
            a = replace(a, fit_linear=tuple(_named(err, "analyze.fit_linear", fl, names)))
    tr = value.get("trends")
    if tr is not None:
        a = replace(a, trends=tuple(_named(err, "analyze.trends", tr, names)))
    report = value.get("report", True)
    if not isinstance(report, bool):
        raise err("analyze.report", f"must be true or false (got {report!r})")
    return replace(a, report=report)


def _named(err, key, value, names) -> list[str]:
    """Spaces of the experiment named in an analysis (by name or alias)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise err(key, "must be a list of the experiment's spaces")
    return [_space_name(err, key, v, names) for v in value]


def _space_name(err, key, v, names) -> str:
    if v in names:
        return v
    try:
        s = spaces.load(v).name
    except DseError:
        s = None
    if s not in names:
        raise err(key, f"{v!r} is not one of the experiment's spaces ({', '.join(names)})")
    return s


def _claim_space(err, key, op: Operand, names, base: Path) -> Operand:
    """A population of a claim, checked: a space of the experiment (by its name there),
    narrowed by an expression (checked when the claim is judged), or a space of another
    store (SPACE@STORE, a relative STORE from the file's folder), which must exist."""
    if op.store is None:
        return op.resolved(_space_name(err, key, op.space, names))
    try:
        name = spaces.load(op.space).name
    except DseError as e:
        raise err(key, str(e)) from None
    p = Path(op.store).expanduser()
    if not (p if p.is_absolute() else base / p).is_dir():
        raise err(key, f"store {op.store} of {op.label!r} does not exist (a relative path is "
                  f"read from {base})")
    return op.resolved(name)


def _claims(err, value, names, base: Path, args) -> list[Claim]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise err("expect", "must be a list of claims such as 'anynetxe better than anynetxd'")
    out = []
    for i, v in enumerate(value):
        key = f"expect[{i + 1}]"
        if not isinstance(v, str):
            raise err(key, f"must be a claim text (got {v!r})")
        try:
            c = parse_claim(v)
        except DseError as e:
            raise err(key, str(e)) from None
        b = _claim_space(err, key, c.b, names, base) if c.b is not None else None
        c = replace(c, a=_claim_space(err, key, c.a, names, base), b=b)
        # the space as listed (a name, alias or file), or another store's
        if c.param is not None:
            kind = spaces.load(args[names.index(c.a.space)] if c.a.store is None
                               else c.a.space).kind
            if c.param not in param_table(kind):
                raise err(key, f"{c.param!r} is not a parameter of {c.a}; choose from "
                          f"{', '.join(param_table(kind))}")
        out.append(c)
    return out
