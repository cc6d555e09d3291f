"""Design spaces as data: load and validate spaces/*.yaml, resolving `extends:` (pure).

A space file names its parent with `extends:` and states only what it adds. Merging rules:
`params` merge key by key; `shared` and `non_decreasing` lists accumulate; other keys
override; name, alias, title and adds belong to the file itself and are not inherited.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from dse.errors import DseError, out_of_bounds
from dse.space import blocks as btypes
from dse.space import dists as rand
from dse.space.checks import (
    GROUPS,
    PARAMS,
    choices,
    one_of,
    params_of,
    positive_int,
    resolution_of,
    stage_range,
)

KEYS = {"name", "alias", "title", "adds", "kind", "stages", "se_ratio", "params", "shared",
        "non_decreasing", "extends", "block", "activation", "first_stride", "stem_w",
        "resolution"}
OWN = ("name", "alias", "title", "adds")  # not inherited through `extends`
ACCUMULATE = ("shared", "non_decreasing")


def spaces_dir() -> Path:
    """Where the built-in spaces live: $DSE_SPACES, else the package data dse/builtin_spaces
    (real files once installed; in the source tree a symlink to the top-level spaces/, which
    is also the last resort where a checkout has no symlinks)."""
    env = os.environ.get("DSE_SPACES")
    candidates = [Path(env)] if env else []
    data = resources.files("dse") / "builtin_spaces"
    if isinstance(data, Path):  # a package on the file system (not a zip)
        candidates.append(data.resolve())  # in the source tree: spaces/, as before
    candidates.append(Path(__file__).resolve().parent.parent / "spaces")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.yaml")):
            return c
    return candidates[0]


@dataclass(frozen=True, eq=False)
class Space:
    """A resolved design space: kind, stage count, parameter distributions, constraints."""

    name: str
    kind: str
    stages: int
    params: dict
    se_ratio: float = 0.0
    alias: str | None = None
    title: str = ""
    adds: str = ""
    shared: tuple = ()
    non_decreasing: tuple = ()
    extends: str | None = None
    source: str = ""
    config: dict = field(default_factory=dict)  # the resolved YAML mapping, for provenance
    blocks: tuple = (btypes.DEFAULT,)       # block types, each equally likely (dse.space.blocks)
    activations: tuple = (btypes.DEFAULT_ACTIVATION,)  # activations, each equally likely
    first_stride: int = 2                   # stride of the first stage (NDS's CIFAR nets: 1)
    stem_w: int = 32
    resolution: rand.Dist | None = None     # input sides to draw; None: the dataset's
    min_stages: int | None = None           # RegNet: fewest stages a sample may have

    @property
    def stage_range(self) -> tuple[int, int]:
        """(fewest, most) stages of a sample: `stages` for an AnyNet space."""
        return (self.min_stages or self.stages), self.stages

    @property
    def categorical(self) -> dict:
        """The non-numeric choices a model draws: block and activation, when several."""
        return {k: v for k, v in (("block", self.blocks), ("activation", self.activations))
                if len(v) > 1}

    @property
    def dof(self) -> int:
        """Degrees of freedom: free parameters, per stage unless shared (AnyNet)."""
        free = [k for k, d in self.params.items() if d.size > 1]
        extra = len(self.categorical) + (self.resolution is not None and self.resolution.size > 1)
        extra += self.stage_range[0] != self.stage_range[1]
        if self.kind == "regnet":
            return len(free) + extra
        return sum(1 if k in self.shared else self.stages for k in free) + extra

    @property
    def log10_size(self) -> float:
        """log10 of the number of distinct parameter settings (before flops windows and
        compatibility rounding); non-decreasing sequences are counted exactly."""
        total = 0.0
        for k, d in self.params.items():
            n = d.size
            if self.kind == "regnet" or k in self.shared:
                total += math.log10(n)
            elif k in self.non_decreasing:  # multisets of size S from n values
                total += math.log10(math.comb(n + self.stages - 1, self.stages))
            else:
                total += self.stages * math.log10(n)
        choices = [len(v) for v in self.categorical.values()]
        if self.resolution is not None:
            choices.append(self.resolution.size)
        lo, hi = self.stage_range
        return total + sum(math.log10(c) for c in choices) + math.log10(hi - lo + 1)


def _read(path: Path) -> dict:
    """The mapping of one space file (parsed once per version of the file: a lookup by
    alias or the order of the built-ins reads every file)."""
    try:
        st = path.stat()
    except OSError as e:
        raise DseError(f"cannot read space file {path}: {e.strerror}") from None
    return copy.deepcopy(_parse(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=256)
def _parse(name: str, mtime_ns: int, size: int) -> dict:
    path = Path(name)
    try:
        text = path.read_text()
    except OSError as e:
        raise DseError(f"cannot read space file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DseError(f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise DseError(f"{path}: a space file must be a YAML mapping (name:, kind:, params:, ...)")
    unknown = set(data) - KEYS
    if unknown:
        raise DseError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
    return data


def _builtin_files() -> dict:
    """The built-in space files by name: DDS's X spaces (four stages of X blocks) first, in
    name order, then the others."""
    return {p.stem: p for p in sorted(spaces_dir().glob("*.yaml"), key=_paper_first)}


def _paper_first(path: Path) -> tuple:
    try:
        cfg = _merged(path)
    except DseError:
        return (2, path.stem)
    x = cfg.get("block", btypes.DEFAULT) == btypes.DEFAULT and cfg.get("stages", 4) == 4
    return (0 if x else 1, path.stem)


def _resolve_path(name: str) -> Path:
    """A built-in name, an alias, or a path to a YAML file."""
    files = _builtin_files()
    if name in files:
        return files[name]
    for p in files.values():
        try:
            if _read(p).get("alias") == name:
                return p
        except DseError:
            continue
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or os.sep in name:
        if not p.is_file():
            raise DseError(f"space file {name} does not exist")
        return p
    raise DseError(f"unknown space {name!r}; valid names: {', '.join(valid_names())} "
                   "(or the path of a .yaml space file)")


def valid_names() -> list[str]:
    """Built-in space names with their aliases, e.g. 'anynetxa (xa)'."""
    out = []
    for stem, p in _builtin_files().items():
        try:
            alias = _read(p).get("alias")
        except DseError:
            alias = None
        out.append(f"{stem} ({alias})" if alias else stem)
    return out


def _merged(path: Path, seen=()) -> dict:
    data = _read(path)
    parent = data.get("extends")
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise DseError(f"{path}: 'extends' must name a space (got {parent!r})")
    ppath = _resolve_path(parent) if not (path.parent / f"{parent}.yaml").is_file() \
        else path.parent / f"{parent}.yaml"
    if ppath.resolve() in seen or ppath.resolve() == path.resolve():
        raise DseError(f"{path}: 'extends' forms a cycle through {parent}")
    return merge(_merged(ppath, seen + (path.resolve(),)), data)


def merge(base: dict, data: dict) -> dict:
    """A space's mapping `data` laid over the mapping of the space it extends: params are
    merged, `shared` and `non_decreasing` accumulate, other keys replace; name, alias, title
    and adds are not inherited. A space that changes `kind` (an AnyNet refined into a RegNet)
    inherits no params or constraints, only stages and se_ratio."""
    out = {k: v for k, v in base.items() if k not in OWN and k != "extends"}
    if "kind" in data and data["kind"] != base.get("kind"):
        for k in ("params", *ACCUMULATE):
            out.pop(k, None)
    if "block" in data and data["block"] != base.get("block", btypes.DEFAULT):
        _drop_inapplicable(out, data["block"])
    for k, v in data.items():
        if k == "params" and isinstance(v, dict) and isinstance(out.get("params"), dict):
            out["params"] = {**out["params"], **v}
        elif k in ACCUMULATE and isinstance(v, list):
            out[k] = list(dict.fromkeys(list(out.get(k) or []) + v))
        else:
            out[k] = v
    return out


def _drop_inapplicable(out: dict, block) -> None:
    """A space that changes its block type inherits no b or g (nor constraints on them)
    that the new block lacks: AnyNetX_A's ranges become AnyNetV's by `block: v` alone."""
    names = block if isinstance(block, list) else [block]
    known = [btypes.BLOCKS[b] for b in names if isinstance(b, str) and b in btypes.BLOCKS]
    if not known:
        return  # check() reports the unknown block
    drop = set()
    if not any(b.bottleneck for b in known):
        drop.add("b")
    if not any(b.groups for b in known):
        drop |= {"g", GROUPS}
    if isinstance(out.get("params"), dict):
        out["params"] = {k: v for k, v in out["params"].items() if k not in drop}
    for k in ACCUMULATE:
        if isinstance(out.get(k), list):
            out[k] = [p for p in out[k] if p not in drop]


def derive(space: Space, diff: dict, name: str | None = None) -> Space:
    """The space `diff` makes of `space`, as a file with `extends: <space>` and `diff` would
    (validated the same way), without writing it."""
    cfg = merge(space.config, {**diff, "name": name or f"{space.name}-refined"})
    return check(cfg, f"{space.name} + {diff}", space.source)


def load(name: str) -> Space:
    """Load a space by name, alias or YAML path, validated; raises DseError saying what is
    wrong and what is allowed."""
    path = _resolve_path(name)
    return check(_merged(path), str(path), str(path))


def check(cfg: dict, where: str, source: str) -> Space:
    """The Space of a merged mapping; a DseError starting with `where` otherwise."""
    for k in ("name", "kind", "params"):
        if k not in cfg:
            raise DseError(f"{where}: missing required key '{k}'")
    sname = cfg["name"]
    if not isinstance(sname, str) or not sname.replace("_", "").replace("-", "").isalnum():
        raise DseError(f"{where}: 'name' must be letters, digits, '-' or '_' (got {sname!r})")
    kind = cfg["kind"]
    if kind not in PARAMS:
        raise DseError(f"{where}: 'kind' must be one of {', '.join(PARAMS)} (got {kind!r})")
    lo, hi = stage_range(cfg.get("stages", 4), kind, where)
    se = cfg.get("se_ratio", 0)
    if why := out_of_bounds(se, 0, 1, hi_open=True):
        raise DseError(f"{where}: 'se_ratio' {why}")
    kinds = choices(cfg.get("block", btypes.DEFAULT), lambda b: btypes.get(b, where).name)
    acts = choices(cfg.get("activation", btypes.DEFAULT_ACTIVATION),
                    lambda a: btypes.activation(a, where))
    types = [btypes.BLOCKS[b] for b in kinds]
    if se and not any(b.se for b in types):
        raise DseError(f"{where}: se_ratio does not apply to {', '.join(kinds)} blocks; SE goes "
                       "with the bottleneck blocks x and r")
    params = params_of(cfg["params"], kind, types, where)
    lists = {}
    for k in ACCUMULATE:
        v = cfg.get(k) or []
        if not isinstance(v, list):
            raise DseError(f"{where}: '{k}' must be a list of parameter names")
        if v and kind == "regnet":
            raise DseError(f"{where}: '{k}' applies to anynet spaces only")
        bad = [x for x in v if x not in params or x in ("w0", "wa", "wm")]
        if bad:
            raise DseError(f"{where}: '{k}' names unknown parameter(s) {bad}; allowed: "
                           f"{', '.join(params)}")
        lists[k] = tuple(v)
    alias = cfg.get("alias")
    return Space(name=sname, kind=kind, stages=hi, params=params, se_ratio=float(se),
                 alias=alias if isinstance(alias, str) else None,
                 title=str(cfg.get("title", sname)), adds=str(cfg.get("adds", "")),
                 shared=lists["shared"], non_decreasing=lists["non_decreasing"],
                 extends=cfg.get("extends"), source=source, config=cfg, blocks=kinds,
                 activations=acts, first_stride=one_of(where, "first_stride",
                                                        cfg.get("first_stride", 2), (1, 2)),
                 stem_w=positive_int(where, "stem_w", cfg.get("stem_w", 32)),
                 resolution=resolution_of(cfg.get("resolution"), where),
                 min_stages=lo if lo != hi else None)


def builtin() -> list[Space]:
    """Every built-in space, in file-name order."""
    return [load(str(p)) for p in _builtin_files().values()]
