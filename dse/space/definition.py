"""Design spaces as data: load and validate spaces/*.yaml, resolving `extends:` (pure).

A space file names its parent with `extends:` and states only what it adds. Merging rules:
`params` merge key by key; `shared` and `non_decreasing` lists accumulate; other keys
override; name, alias, title and adds belong to the file itself and are not inherited.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from dse.errors import DseError, out_of_bounds
from dse.space import dists as rand

PARAMS = {"anynet": ("d", "w", "b", "g"), "regnet": ("d", "w0", "wa", "wm", "g", "b")}
KEYS = {"name", "alias", "title", "adds", "kind", "stages", "se_ratio", "params", "shared",
        "non_decreasing", "extends"}
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

    @property
    def dof(self) -> int:
        """Degrees of freedom: free parameters, per stage unless shared (AnyNet)."""
        free = [k for k, d in self.params.items() if d.size > 1]
        if self.kind == "regnet":
            return len(free)
        return sum(1 if k in self.shared else self.stages for k in free)

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
        return total


def _read(path: Path) -> dict:
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
    return {p.stem: p for p in sorted(spaces_dir().glob("*.yaml"))}


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
    for k, v in data.items():
        if k == "params" and isinstance(v, dict) and isinstance(out.get("params"), dict):
            out["params"] = {**out["params"], **v}
        elif k in ACCUMULATE and isinstance(v, list):
            out[k] = list(dict.fromkeys(list(out.get(k) or []) + v))
        else:
            out[k] = v
    return out


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
    stages = cfg.get("stages", 4)
    if why := out_of_bounds(stages, 1, 8, integer=True):
        raise DseError(f"{where}: 'stages' {why}")
    se = cfg.get("se_ratio", 0)
    if why := out_of_bounds(se, 0, 1, hi_open=True):
        raise DseError(f"{where}: 'se_ratio' {why}")
    raw = cfg["params"]
    if not isinstance(raw, dict):
        raise DseError(f"{where}: 'params' must be a mapping of {', '.join(PARAMS[kind])}")
    need = PARAMS[kind]
    missing = [k for k in need if k not in raw]
    extra = [k for k in raw if k not in need]
    if missing or extra:
        raise DseError(f"{where}: a {kind} space needs params {', '.join(need)}"
                       + (f"; missing {', '.join(missing)}" if missing else "")
                       + (f"; unknown {', '.join(map(str, extra))}" if extra else ""))
    params = {k: rand.from_config(f"{where}: params.{k}", raw[k]) for k in need}
    for k in ("d", "w", "b", "g", "w0"):
        if k in params and not params[k].is_int:
            raise DseError(f"{where}: params.{k} must take integer values")
    if "w0" in params and any(v % 8 for v in params["w0"].values):
        raise DseError(f"{where}: params.w0 must take multiples of 8")
    if "wm" in params and params["wm"].values.min() <= 1:
        raise DseError(f"{where}: params.wm must be greater than 1")
    lists = {}
    for k in ACCUMULATE:
        v = cfg.get(k) or []
        if not isinstance(v, list):
            raise DseError(f"{where}: '{k}' must be a list of parameter names")
        if v and kind == "regnet":
            raise DseError(f"{where}: '{k}' applies to anynet spaces only")
        bad = [x for x in v if x not in PARAMS["anynet"]]
        if bad:
            raise DseError(f"{where}: '{k}' names unknown parameter(s) {bad}; "
                           f"allowed: {', '.join(PARAMS['anynet'])}")
        lists[k] = tuple(v)
    alias = cfg.get("alias")
    return Space(name=sname, kind=kind, stages=stages, params=params, se_ratio=float(se),
                 alias=alias if isinstance(alias, str) else None,
                 title=str(cfg.get("title", sname)), adds=str(cfg.get("adds", "")),
                 shared=lists["shared"], non_decreasing=lists["non_decreasing"],
                 extends=cfg.get("extends"), source=source, config=cfg)


def builtin() -> list[Space]:
    """Every built-in space, in file-name order."""
    return [load(str(p)) for p in _builtin_files().values()]
