"""Populations trained elsewhere brought into a store (pure; docs/interop.md): `dse import`.

A file's format is told from its content: a pycls `sweep.json` (a list of jobs with `cfg`),
one pycls job log (`json_stats:` lines), a pycls sweep directory (its sweep.json, else its
logs), an NDS list (records with `net` and `optim`) or NDS reruns (`{"top", "mid"}`).
Its records (dse.store.records) become ordinary models and results of one space:

- a network dse can build gets its usual model id, and the flops, params and acts dse
  computes; where the file records complexity too, the two are compared and every model
  beyond rounding (0.1 %) is listed (it is imported with dse's numbers: flagged, not
  refused); a network dse cannot build is an opaque model (kind `opaque`: the file's flops
  and params, no widths) so error distributions, noise and transfer still read it;
- a result's recipe fingerprint covers dse's recipe settings and every other setting the
  source records; an lr or wd that differs between a file's records was drawn per model
  and is fingerprinted as such (each result keeps its own value); the seed is the record's,
  moved to the next free one where that trial is already held (the reruns of a model);
- each result records where it came from (`source`: the file's sha256 and the record), so
  importing a file again adds nothing, and space.yaml lists each file (format, path,
  sha256) and each recipe's settings.

One file is written under the space's lock as models.parquet, then one results segment,
then space.yaml, each atomically: a kill leaves a state that the next import completes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from dse import __version__
from dse.errors import DseError
from dse.files import write_atomic
from dse.space.complexity import batch
from dse.space.spec import model_id
from dse.store import checksums, compaction, generations, nds, pycls, results
from dse.store.core import Store
from dse.store.recipes import OPTIONAL_KEYS, canonical
from dse.store.records import Record, opaque_id
from dse.store.schema import MODELS_SCHEMA, RESULTS_SCHEMA

TOLERANCE = 1e-3  # relative difference of complexity counted as rounding
FORMATS = ("pycls sweep", "pycls log", "nds list", "nds reruns")


@dataclass(frozen=True)
class Source:
    """A file (or sweep directory) read: its format, content hash and records."""

    path: Path
    format: str
    sha256: str
    space: str          # the default space name
    records: tuple[Record, ...]
    series: str = ""    # the error series read (pycls: test or ema)

    @property
    def tag(self) -> str:
        """What names this reading of the file in each result's `source`."""
        return self.sha256[:16] + (f"/{self.series}" if self.series else "")


@dataclass(frozen=True)
class Report:
    """What importing one source did."""

    path: str
    format: str
    space: str
    records: int
    models_added: int
    results_added: int
    results_held: int      # already in the store (an earlier import of the same records)
    opaque: int
    compared: int          # models whose complexity the file records
    matched: int
    mismatches: tuple = field(default_factory=tuple)  # (record, model_id, key, file, dse)
    statuses: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {**self.__dict__, "mismatches": [dict(zip(
            ("record", "model_id", "key", "file", "dse"), m)) for m in self.mismatches]}


def read(path, which: str = "test") -> Source:
    """The source at `path`, its format recognized from its content; DseError in one line
    when it is none of the formats or a record is malformed."""
    path = Path(path)
    if path.is_dir():
        jobs, files = pycls.read_dir(path)
        if jobs is None:
            return read(files[0], which)
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
        return Source(path, "pycls log", digest, "pycls-" + _slug(path.name),
                      tuple(pycls.records(jobs, str(path), which)), which)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DseError(f"cannot read {path}: {e.strerror or e}") from None
    digest = hashlib.sha256(raw).hexdigest()
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if pycls.TAG in text:
            job = pycls.parse_log(text, str(path))
            return Source(path, "pycls log", digest, "pycls-" + _slug(path.parent.name),
                          tuple(pycls.records([job], str(path), which)), which)
        raise DseError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column "
                       f"{e.colno}; truncated?) nor a pycls log with json_stats lines") from None
    shape = nds.is_nds(data)
    if shape:
        return Source(path, f"nds {shape}", digest, nds.space_name(path.stem),
                      tuple(nds.records(data, path.stem, str(path))))
    if pycls.is_sweep(data):
        name = path.parent.name if path.name == "sweep.json" else path.stem
        return Source(path, "pycls sweep", digest, "pycls-" + _slug(name),
                      tuple(pycls.records(data, str(path), which)), which)
    raise DseError(f"{path} is neither a pycls sweep.json (a list of jobs with a cfg) nor an "
                   "NDS file (a list of records with net and optim, or {\"top\", \"mid\"})")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in name.lower()).strip("-") \
        or "sweep"


# ---- networks: ids and complexity ---------------------------------------------------------

def _differs(file: dict, got) -> list[tuple[str, int, int]]:
    """The complexity keys where the file's count and dse's differ beyond rounding."""
    return [(k, int(file[k]), int(v)) for k, v in zip(("flops", "params", "acts"), got)
            if k in file and abs(file[k] - v) > TOLERANCE * max(abs(file[k]), 1)]


def networks(records) -> tuple[list, list, list]:
    """Per record: (model id, spec or None, complexity dict) and the mismatches. Of several
    candidate readings the first that matches the file's complexity is kept (the first when
    none does)."""
    chosen = [0] * len(records)
    costs: dict[int, np.ndarray] = {}
    pending = [i for i, r in enumerate(records) if r.specs]
    depth = 0
    while pending:
        got = batch([records[i].specs[depth] for i in pending], [records[i].task
                                                                  for i in pending]).tolist()
        nxt = []
        for i, c in zip(pending, got):
            r = records[i]
            off = _differs(r.file_cx, c) if r.file_cx else ()
            if depth == 0 or not off:
                costs[i], chosen[i] = c, depth
            if off and depth + 1 < len(r.specs):
                nxt.append(i)
        pending, depth = nxt, depth + 1
    ids, specs, cx, bad = [], [], [], []
    for i, r in enumerate(records):
        if not r.specs:
            ids.append(opaque_id(r.net, r.task))
            specs.append(None)
            cx.append(dict(flops=r.file_cx.get("flops"), params=r.file_cx.get("params"),
                           acts=r.file_cx.get("acts")))
            continue
        spec = r.specs[chosen[i]]
        ids.append(model_id(spec, r.task))
        specs.append(spec)
        c = costs[i]
        cx.append(dict(flops=int(c[0]), params=int(c[1]), acts=int(c[2])))
        bad += [(r.index, ids[-1], *d) for d in _differs(r.file_cx, c)]
    return ids, specs, cx, bad


def model_rows(space: str, records, ids, specs, cx, start: int, held: set) -> list[dict]:
    """The models.parquet rows of the records' networks not yet held (first occurrence)."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    rows, seen = [], set(held)
    for r, mid, spec, c in zip(records, ids, specs, cx):
        if mid in seen:
            continue
        seen.add(mid)
        t = r.task
        row = dict(model_id=mid, space=space, kind="opaque" if spec is None else "anynet",
                   se_ratio=0.0, flops=c["flops"], params=c["params"], acts=c["acts"],
                   dataset=r.dataset, resolution=t.resolution, stem=t.stem,
                   in_channels=t.in_channels, num_classes=t.num_classes,
                   sample_index=start + len(rows), sampled_at=now, dse_version=__version__,
                   data_resolution=t.resolution)
        if spec is not None:
            row.update(ds=list(spec.ds), ws=list(spec.ws), bs=[float(b) for b in spec.bs],
                       gs=list(spec.gs), se_ratio=spec.se_ratio, stem_w=spec.stem_w,
                       block=spec.block, activation=spec.activation,
                       first_stride=spec.first_stride)
        rows.append(row)
    return rows


# ---- recipes ---------------------------------------------------------------------------------

def recipes(records) -> tuple[list[str], dict]:
    """Each record's recipe fingerprint, and every fingerprint's settings. lr and wd that
    differ between the records were drawn per model: fingerprinted by their range."""
    drawn = {}
    for k in ("lr", "wd"):
        vals = {r.recipe.get(k) for r in records}
        if len(vals) > 1 and None not in vals:
            drawn[k] = dict(dist="per-model", low=min(vals), high=max(vals))
    fps, settings, memo = [], {}, {}
    for r in records:
        text = json.dumps({"recipe": {**r.recipe, **drawn}, "extra": r.extra}, sort_keys=True,
                          default=str)
        if text not in memo:
            body = dict(recipe=canonical({**r.recipe, **drawn}), extra=r.extra)
            fp = hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()) \
                .hexdigest()[:10]
            memo[text] = fp
            settings[fp] = {**body["recipe"], **r.extra}
        fps.append(memo[text])
    return fps, settings


def result_rows(space, records, ids, fps, tag: str, held: dict) -> tuple[pa.Table, int]:
    """The results of records not yet imported, as a table of RESULTS_SCHEMA (`held`: key →
    source of the results already stored; updated), and how many were held already. Built
    column by column: a row dict per result costs as much again as the rest."""
    sources = set(held.values())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    keep, seeds, srcs, skipped = [], [], [], 0
    for i, (r, mid, fp) in enumerate(zip(records, ids, fps)):
        src = f"{tag}:{r.index}"
        if src in sources:
            skipped += 1
            continue
        seed = r.seed
        while (mid, fp, seed) in held:
            seed += 1
        held[(mid, fp, seed)] = src
        keep.append(i)
        seeds.append(seed)
        srcs.append(src)
    recs = [records[i] for i in keep]
    known: dict = {}
    canon = [known.get(fps[i]) or known.setdefault(fps[i], canonical(records[i].recipe))
             for i in keep]

    def each(get):
        return [get(r) for r in recs]

    def recipe(key):
        return [r.recipe.get(key) for r in recs]

    cols = dict(
        model_id=[ids[i] for i in keep], space=[space] * len(keep), status=each(
            lambda r: r.status), error=each(lambda r: r.error), message=each(lambda r: r.message),
        epochs=[c["epochs"] for c in canon], batch_size=[c["batch_size"] for c in canon],
        lr=recipe("lr"), wd=recipe("wd"), seed=seeds, dataset=each(lambda r: r.dataset),
        train_seconds=each(lambda r: r.train_seconds),
        train_loss=each(lambda r: r.history_loss[-1] if r.history_loss else None),
        dse_version=[__version__] * len(keep), finished_at=[now] * len(keep),
        momentum=recipe("momentum"), nesterov=recipe("nesterov"),
        warmup_epochs=recipe("warmup_epochs"),
        zero_init_final_gamma=recipe("zero_init_final_gamma"), augment=recipe("augment"),
        epochs_run=each(lambda r: r.epochs_run), recipe=[fps[i] for i in keep],
        history_error=each(lambda r: r.history_error), history_loss=each(
            lambda r: r.history_loss), source=srcs,
        series=each(lambda r: r.extra.get("series")),
        **{k: each(lambda r, k=k: r.settings.get(k)) for k in OPTIONAL_KEYS if k != "series"})
    n = len(keep)
    table = pa.table({f.name: pa.array(cols[f.name], f.type) if f.name in cols
                      else pa.nulls(n, f.type) for f in RESULTS_SCHEMA}, schema=RESULTS_SCHEMA)
    return table, skipped


# ---- writing -------------------------------------------------------------------------------

def import_source(store: Store, src: Source, space: str | None = None) -> Report:
    """Store one source's records in `space` (default: named after the file); the whole
    file or nothing new. Importing the same records again adds nothing."""
    space = space or src.space
    recs = list(src.records)
    if not recs:
        raise DseError(f"{src.path} holds no records")
    tasks = {(r.dataset, r.task) for r in recs}
    if len(tasks) > 1:
        raise DseError(f"{src.path} mixes datasets or input sizes ({len(tasks)} of them); "
                       "dse keeps one task per space")
    dataset, task = tasks.pop()
    ids, specs, cx, bad = networks(recs)
    fps, settings = recipes(recs)
    task_rec = {k: getattr(task, k) for k in ("resolution", "stem", "in_channels",
                                              "num_classes")}
    with store.lock(space):
        record = _check_space(store, space, dataset, task_rec)
        old = store.read_models(space)
        new_models = model_rows(space, recs, ids, specs, cx, len(old), set(old["model_id"]))
        held = _held(store, space)
        rows, skipped = result_rows(space, recs, ids, fps, src.tag, held)
        if new_models:
            table = pa.concat_tables([
                pa.Table.from_pandas(old, schema=MODELS_SCHEMA, preserve_index=False),
                pa.Table.from_pylist(new_models, schema=MODELS_SCHEMA)])
            dst = store.models_path(space)
            with generations.keeping_previous(store, space):  # as dse sample writes it
                write_atomic(dst, lambda p: checksums.write_verified(table, Path(p), name=dst),
                             store.root, durable=True)
        if rows.num_rows:
            _append(store, space, rows)
        _record_file(store, space, record, src, dataset, task_rec, settings)
    statuses = dict(pd.Series([r.status for r in recs]).value_counts())
    compared = sum(1 for r, s in zip(recs, specs) if s is not None and r.file_cx)
    flagged = {m[0] for m in bad}
    return Report(str(src.path), src.format, space, len(recs), len(new_models), rows.num_rows,
                  skipped, sum(s is None for s in specs), compared, compared - len(flagged),
                  tuple(bad), {k: int(v) for k, v in statuses.items()})


def _check_space(store: Store, space: str, dataset: str, task_rec: dict) -> dict:
    """The space's record, refusing a sampled space or another dataset or task."""
    rec = store.space_record(space)
    if rec and "imported" not in rec:
        raise DseError(f"space {space} of {store.root} holds sampled models; import into "
                       "another space (--space NAME)")
    if rec and (rec.get("dataset") != dataset or rec.get("task") != task_rec):
        raise DseError(f"space {space} holds {rec.get('dataset')} models "
                       f"({rec.get('task')}), not {dataset} ({task_rec}); import into "
                       "another space (--space NAME)")
    return rec


def _held(store: Store, space: str) -> dict:
    """(model_id, recipe, seed) → source of every stored result of the space."""
    scan = results.scan(store, space, ("source",))
    cols = [scan.table.column(c).to_pylist() for c in ("model_id", "recipe", "seed", "source")]
    return {(m, r, s): src for m, r, s, src in zip(*cols)}


def _append(store: Store, space: str, table: pa.Table) -> None:
    """Add rows to a space's results (the caller holds the space's lock): sorted by the
    result key and written as new segments of at most compaction.SEGMENT_ROWS results after
    the newest, each read back and checked (what compaction would make of one big segment,
    without writing the rows twice), then the space compacted as usual (its loose per-trial
    files, a small last segment). A kill between two segments leaves the rest of the file's
    results to the next import, which skips what is held."""
    segs = results.segments(store, space)
    compaction.write_segments(store, space, table, max(g for g, _ in segs) if segs else 0,
                              store.root)
    compaction.compact(store, space, store.root)


def _record_file(store, space, rec, src: Source, dataset, task_rec, settings) -> None:
    """space.yaml with this source in its provenance and its recipes' settings."""
    files = list(rec.get("imported") or [])
    path = str(src.path.resolve())
    if any(f.get("sha256") == src.sha256 and f.get("series", "") == src.series
           for f in files):
        return
    files.append(dict(format=src.format, file=path, sha256=src.sha256,
                      **({"series": src.series} if src.series else {}),
                      records=len(src.records),
                      at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")))
    out = dict(name=space, dataset=dataset, source="imported",
               definition=dict(kind="imported"), task=task_rec, imported=files,
               recipes={**(rec.get("recipes") or {}), **settings})
    text = yaml.safe_dump(json.loads(json.dumps(out, default=str)), sort_keys=False)
    write_atomic(store.definition_path(space), lambda p: Path(p).write_text(text), store.root)
