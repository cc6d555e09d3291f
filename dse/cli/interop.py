"""Populations from other tools (docs/interop.md): `dse import` reads pycls sweeps and the
NDS data release into a store."""

from __future__ import annotations

import click

from dse.cli.common import Command, echo_json, json_option, store_option, table

SHOWN_MISMATCHES = 20


@click.command("import", cls=Command)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--space", "space_name", default=None, metavar="NAME",
              help="The space the models join [default: named after each file: nds-resnet "
                   "for ResNet.json and its _rng/_reruns files, pycls-<sweep> for a sweep].")
@click.option("--series", type=click.Choice(["test", "ema"]), default="test",
              show_default=True,
              help="pycls sweeps: the error series read, the model's (test) or its weight "
                   "EMA's (ema; pycls's own metric is its best epoch: --epoch best).")
@json_option()
@store_option
def import_cmd(paths, space_name, series, as_json, store_path):
    """Import trained populations: pycls sweeps (a sweep directory, its sweep.json or a
    job's stdout.log) and NDS files (a list of records, or the reruns' {"top", "mid"}), the
    format told from the content. Each file is imported whole or not at all; importing it
    again adds nothing."""
    from dse.store import imports
    from dse.store.core import Store

    store = Store(store_path or None)
    sources = [imports.read(p, series) for p in paths]  # every file read before any write
    reports = [imports.import_source(store, s, space_name) for s in sources]
    if as_json:
        echo_json([r.to_json() for r in reports])
        return
    for r in reports:
        _show(r)


def _show(r) -> None:
    """One import's summary: what was added, complexity checked, the mismatches."""
    st = ", ".join(f"{v} {k}" for k, v in sorted(r.statuses.items()))
    click.echo(f"{r.path} ({r.format}) → space {r.space}: {r.records} records ({st}); "
               f"{r.models_added} models and {r.results_added} results added"
               + (f", {r.results_held} already held" if r.results_held else ""))
    if r.opaque:
        click.echo(f"  {r.opaque} records are opaque models (dse cannot build them): "
                   "error distributions, noise and transfer read them, parameter trends "
                   "do not")
    if r.compared:
        click.echo(f"  complexity: {r.matched} of {r.compared} match the file's; "
                   f"{r.compared - r.matched} differ beyond rounding (imported with dse's "
                   "numbers)")
    if r.mismatches:
        rows = [dict(record=m[0], model_id=m[1], key=m[2], file=m[3], dse=m[4])
                for m in r.mismatches[:SHOWN_MISMATCHES]]
        click.echo(table(rows, ["record", "model_id", "key", "file", "dse"]))
        if len(r.mismatches) > SHOWN_MISMATCHES:
            click.echo(f"  ... {len(r.mismatches) - SHOWN_MISMATCHES} more (--json lists all)")


# keys of a pycls recipe that dse train applies, by their dse name
APPLIED = {"OPTIM.MAX_EPOCH": "epochs", "TRAIN.BATCH_SIZE": "batch_size",
           "OPTIM.BASE_LR": "lr", "OPTIM.MOMENTUM": "momentum", "OPTIM.NESTEROV": "nesterov",
           "OPTIM.WEIGHT_DECAY": "wd", "OPTIM.WARMUP_EPOCHS": "warmup_epochs",
           "BN.ZERO_INIT_FINAL_GAMMA": "zero_init_final_gamma"}
# keys that say where data, logs and devices are: no part of a recipe
PLACES = {"TRAIN.DATASET", "TRAIN.SPLIT", "TRAIN.IM_SIZE", "TEST.DATASET", "TEST.SPLIT",
          "TEST.IM_SIZE", "TEST.BATCH_SIZE", "OPTIM.LR_POLICY"}


def not_applied(base: dict) -> list[str]:
    """The recipe keys of a pycls base config that dse train does not apply (cosine is
    dse's lr policy, so LR_POLICY cos is applied)."""
    out = []
    for sec in ("OPTIM", "BN", "TRAIN"):
        for k, v in (base.get(sec) or {}).items():
            key = f"{sec}.{k}"
            if key in APPLIED or key in PLACES:
                continue
            out.append(f"{key}={v}")
    pol = (base.get("OPTIM") or {}).get("LR_POLICY", "cos")
    if pol != "cos":
        out.append(f"OPTIM.LR_POLICY={pol}")
    return out


def sample_pycls(path, n, space_name, seed, dry_run, store_path) -> None:
    """`dse sample --pycls-sweep`: draw a pycls sweep config's models into a store."""
    import hashlib
    from pathlib import Path

    import yaml

    from dse.data import datasets
    from dse.errors import DseError
    from dse.space import pyclssweep
    from dse.store.core import Store

    try:
        raw = Path(path).read_bytes()
        obj = yaml.safe_load(raw)
    except OSError as e:
        raise DseError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise DseError(f"{path} is not valid YAML ({' '.join(str(e).split())})") from None
    sweep = pyclssweep.parse(obj, str(path))
    n = n or sweep.num_configs
    dataset = str(((sweep.base.get("TRAIN") or {}).get("DATASET")) or "")
    if dataset not in datasets.names():
        raise DseError(f"{path}: TRAIN.DATASET {dataset!r} is no dse dataset; dse has "
                       f"{', '.join(datasets.names())}")
    space = _SweepSpace.of(space_name or _space_name(sweep), sweep,
                           hashlib.sha256(raw).hexdigest())
    extra = not_applied(sweep.base)
    draws, why = pyclssweep.draw(sweep, n, seed)
    if not draws:
        raise DseError(f"{path}: no draw met the constraints in {sweep.num_samples:,} tries "
                       f"({why['stages']} with skipped or too many stages, "
                       f"{why['complexity']} outside the CX windows)")
    fl = [d.cx["flops"] for d in draws]
    click.echo(f"pycls sweep {sweep.name}: {len(sweep.samplers)} samplers "
               f"({', '.join(sweep.samplers)}), constraints "
               + ", ".join(f"{k} {lo or 0:g}–{hi or float('inf'):g}"
                           for k, (lo, hi) in sweep.cx.items())
               + f"; {len(draws)} models drawn ({why['stages']} rejected for stages, "
               f"{why['complexity']} for complexity), flops {min(fl) / 1e6:.1f}–"
               f"{max(fl) / 1e6:.1f} M")
    if extra:
        click.echo(f"recipe keys dse train does not apply: {', '.join(extra)}")
    if dry_run:
        click.echo(f"(dry run: nothing written; would add to space {space.name})")
        return
    task = draws[0].task
    rows = [dict(model_id=_mid(d), ds=list(d.spec.ds), ws=list(d.spec.ws),
                 bs=[float(b) for b in d.spec.bs], gs=list(d.spec.gs),
                 se_ratio=d.spec.se_ratio, stem_w=d.spec.stem_w, block=d.spec.block,
                 activation=d.spec.activation, first_stride=d.spec.first_stride,
                 resolution=d.task.resolution, data_resolution=d.task.resolution,
                 **d.cx, **d.regnet) for d in draws]
    added = Store(store_path).add_models(space, dataset, task, rows, seed)
    click.echo(f"sampled {len(added)} models into space {space.name} "
               f"({len(rows) - len(added)} already held)")


def _mid(d) -> str:
    from dse.space.spec import model_id

    return model_id(d.spec, d.task)


class _SweepSpace:
    """What the store records of a space drawn from a pycls sweep config."""

    def __init__(self, name, kind, config, source):
        self.name, self.kind, self.config, self.source = name, kind, config, source

    @classmethod
    def of(cls, name, sweep, sha256):
        model = (sweep.base.get("MODEL") or {}).get("TYPE", "")
        kind = "regnet" if str(model).lower() == "regnet" else "anynet"
        return cls(name, kind, dict(kind=kind, params={"pycls_sweep": sha256}), "pycls sweep")


def is_pycls_sweep(path) -> bool:
    """Whether a file `dse run` was given is a pycls sweep config (it has SETUP)."""
    import yaml

    from dse.space import pyclssweep

    try:
        with open(path, "rb") as f:
            return pyclssweep.is_sweep(yaml.safe_load(f))
    except (OSError, yaml.YAMLError):
        return False  # the experiment loader reports it


def run_pycls(ctx, path, store_path, dry_run) -> None:
    """`dse run SWEEP.yaml`: draw the sweep's models, then train them with its recipe,
    which must be one dse train applies (every other key is named, all at once)."""
    import yaml

    from dse.cli.train import train_cmd
    from dse.errors import DseError
    from dse.space import pyclssweep

    with open(path, "rb") as f:
        sweep = pyclssweep.parse(yaml.safe_load(f), str(path))
    base = sweep.base
    refused = not_applied(base) + [f"SETUP.SAMPLERS.{k} (drawn per model)"
                                   for k in sweep.samplers
                                   if k.split(".")[0] in ("OPTIM", "BN", "TRAIN", "TEST")]
    if (base.get("OPTIM") or {}).get("NESTEROV") is False:
        refused.append("OPTIM.NESTEROV=False")
    if refused and not dry_run:
        raise DseError(f"{path}: dse train cannot run this sweep's recipe; keys it does not "
                       f"apply: {', '.join(refused)} (dse sample --pycls-sweep draws its "
                       "models alone)")
    space = _space_name(sweep)
    sample_pycls(path, None, space, 0, dry_run, store_path)
    optim, train = base.get("OPTIM") or {}, base.get("TRAIN") or {}
    recipe = dict(epochs=int(optim.get("MAX_EPOCH", 200)), lr=float(optim.get("BASE_LR", 0.1)),
                  wd=float(optim.get("WEIGHT_DECAY", 5e-4)),
                  momentum=float(optim.get("MOMENTUM", 0.9)),
                  warmup_epochs=float(optim.get("WARMUP_EPOCHS", 0)),
                  batch_size=int(train.get("BATCH_SIZE", 128)),
                  zero_init_final_gamma=bool((base.get("BN") or {}).get(
                      "ZERO_INIT_FINAL_GAMMA", False)))
    if dry_run:
        click.echo("would train them with " + " ".join(f"{k}={v}" for k, v in recipe.items()))
        return
    ctx.invoke(train_cmd, spaces=(space,), store_path=store_path, **recipe)


def _space_name(sweep) -> str:
    return "pycls-" + sweep.name.split("/")[-1].lower().replace("_", "-")
