"""Selections (pure): the models a `dse train --top K` or `--sample M` chose, written to
<store>/<space>/selections/<name>.json when first made and read back by every later run of
the same options, so that what is trained meanwhile (the selection's own seeds, a killed
run's results, other recipes, models sampled later) never changes which models it trains.
A selection is named by the fingerprint of the recipe it trains and its options; the seeds
are not part of it, so `--seeds 3` after `--seeds 2` adds a seed to the same models:

    name("0876654477", top=2)                           == "0876654477-top2"
    name("0876654477", sample=3, sample_seed=1)         == "0876654477-sample3-s1"
    name("0876654477", top=2, sample=3, sample_seed=0)  == "0876654477-top2-sample3-s0"
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dse.errors import DseError
from dse.files import write_output

_TEXT = ("recipe", "recipe_label", "ranked_by", "ranked_label", "made_at")


def name(recipe: str, top: int | None = None, sample: int | None = None,
         sample_seed: int = 0) -> str:
    """The name of the selection of `top` and `sample` (seeded by sample_seed) for the recipe
    with fingerprint `recipe`."""
    parts = [recipe] + ([f"top{top}"] if top is not None else []) + \
        ([f"sample{sample}", f"s{sample_seed}"] if sample is not None else [])
    return "-".join(parts)


@dataclass(frozen=True)
class Selection:
    """The models one `--top K` / `--sample M` chose for one recipe: the K lowest errors under
    the recipe `ranked_by` when it was made (seeds averaged), then M drawn from the rest."""

    recipe: str                        # fingerprint of the recipe the selection trains
    recipe_label: str = ""
    top: int | None = None
    sample: int | None = None
    sample_seed: int = 0
    top_models: tuple[str, ...] = ()
    sample_models: tuple[str, ...] = ()
    ranked_by: str | None = None       # fingerprint of the recipe ranked on (None: no top)
    ranked_label: str = ""
    made_at: str = ""                  # UTC, ISO 8601

    def __post_init__(self):
        for f in ("top", "sample"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{f} must be a positive integer or null (got {v!r})")
        if self.top is None and self.sample is None:
            raise ValueError("names neither top nor sample")
        if not isinstance(self.sample_seed, int) or isinstance(self.sample_seed, bool):
            raise ValueError(f"sample_seed must be an integer (got {self.sample_seed!r})")
        for f in ("top_models", "sample_models"):
            ids = getattr(self, f)
            if not isinstance(ids, tuple) or not all(isinstance(m, str) for m in ids):
                raise ValueError(f"{f} must be a list of model ids")
        for f in _TEXT:
            v = getattr(self, f)
            if not (isinstance(v, str) or (v is None and f == "ranked_by")):
                raise ValueError(f"{f} must be text (got {v!r})")

    @property
    def name(self) -> str:
        return name(self.recipe, self.top, self.sample, self.sample_seed)

    @property
    def models(self) -> list[str]:
        """Its model ids: the top ones (best first), then the sampled ones."""
        return [*self.top_models, *self.sample_models]

    def to_json(self) -> dict:
        return dict(asdict(self), name=self.name, top_models=list(self.top_models),
                    sample_models=list(self.sample_models))

    @classmethod
    def from_json(cls, d) -> Selection:
        """The Selection of a parsed file; ValueError when it is not one."""
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("recipe", "top", "sample", "top_models", "sample_models")
                   if k not in d]
        if missing:
            raise ValueError(f"no {missing[0]}")
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("top_models", "sample_models"):
            if not isinstance(kw[k], list):
                raise ValueError(f"{k} must be a list of model ids")
            kw[k] = tuple(kw[k])
        return cls(**kw)


def read(store, space: str, selection: str) -> Selection | None:
    """The stored selection named `selection` (None when there is none); a DseError naming
    the file when it cannot be read (it is left as it is)."""
    path = store.selection_path(space, selection)
    if not path.is_file():
        return None
    return _read(path, selection)


def _read(path: Path, selection: str) -> Selection:
    try:
        sel = Selection.from_json(json.loads(path.read_text()))
        if sel.name != selection:
            raise ValueError(f"it holds selection {sel.name}")
        return sel
    except (OSError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise DseError(f"{path} is not a readable selection ({e}); dse left it unchanged; "
                       "restore it, or delete it to choose these models afresh") from None


def held(store, space: str) -> tuple[list[Selection], list[tuple[Path, str]]]:
    """The space's stored selections (by name) and the files among them that cannot be
    read, each with why."""
    out, bad = [], []
    d = store.selections_dir(space)
    for path in sorted(d.glob("*.json")) if d.is_dir() else ():
        try:
            out.append(_read(path, path.stem))
        except DseError as e:
            bad.append((path, str(e)))
    return out, bad


def keep(store, space: str, made: Selection) -> Selection:
    """Write `made` unless a selection of its name is stored already (another run chose
    first: a task of the same cluster array, a concurrent `dse train`); returns the stored
    one. The check and the write happen under the space's lock."""
    path = store.selection_path(space, made.name)
    text = json.dumps(made.to_json(), indent=1)
    with store.lock(space):
        have = read(store, space, made.name)
        if have is not None:
            return have
        write_output(path, lambda p: Path(p).write_text(text + "\n"), store.root)
    return made
