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


# pycls's recipe keys that dse train applies: (section, key) → (dse's setting, pycls's default)
APPLIED = {("OPTIM", "MAX_EPOCH"): ("epochs", 200), ("OPTIM", "BASE_LR"): ("lr", 0.1),
           ("TRAIN", "BATCH_SIZE"): ("batch_size", 128), ("OPTIM", "MOMENTUM"): ("momentum", 0.9),
           ("OPTIM", "NESTEROV"): ("nesterov", True), ("OPTIM", "WEIGHT_DECAY"): ("wd", 5e-4),
           ("OPTIM", "WARMUP_EPOCHS"): ("warmup_epochs", 0.0),
           ("OPTIM", "WARMUP_FACTOR"): ("warmup_factor", 0.1),
           ("OPTIM", "LR_POLICY"): ("lr_policy", "cos"), ("OPTIM", "STEPS"): ("lr_steps", ()),
           ("OPTIM", "LR_MULT"): ("lr_mult", 0.1), ("OPTIM", "MIN_LR"): ("min_lr", 0.0),
           ("OPTIM", "EMA_ALPHA"): ("ema_alpha", 1e-5),
           ("OPTIM", "EMA_UPDATE_PERIOD"): ("ema_period", 32),
           ("BN", "ZERO_INIT_FINAL_GAMMA"): ("zero_init_final_gamma", False),
           ("BN", "CUSTOM_WEIGHT_DECAY"): ("bn_wd", 0.0),
           ("TRAIN", "LABEL_SMOOTHING"): ("label_smoothing", 0.0),
           ("TRAIN", "MIXUP_ALPHA"): ("mixup_alpha", 0.0)}
# keys applied by what they switch: BN weight decay on or off, the precision
SWITCHES = {("BN", "USE_CUSTOM_WEIGHT_DECAY"), ("TRAIN", "MIXED_PRECISION")}
# keys at the value dse trains with (anything else is refused)
AS_DSE = {("OPTIM", "DAMPENING"): 0, ("TRAIN", "CUTMIX_ALPHA"): 0,
          ("BN", "USE_PRECISE_STATS"): False, ("BN", "EPS"): 1e-5, ("BN", "MOM"): 0.1}
# keys that say where data, logs and devices are, or matter to a policy dse refuses: no part
# of a recipe
PLACES = {("TRAIN", k) for k in ("DATASET", "SPLIT", "IM_SIZE", "EVAL_PERIOD",
                                  "CHECKPOINT_PERIOD", "AUTO_RESUME", "WEIGHTS")} | \
    {("TEST", k) for k in ("DATASET", "SPLIT", "IM_SIZE", "BATCH_SIZE", "WEIGHTS")} | \
    {("OPTIM", "GAMMA"), ("BN", "NUM_SAMPLES_PRECISE")}


def pycls_recipe(base: dict) -> tuple[dict, bool, list[str]]:
    """A pycls base config's recipe as dse's settings (pycls's defaults for the keys it
    leaves out: EMA on with alpha 1e-5 every 32 steps, warm-up factor 0.1, no zero-init γ),
    whether it trains in mixed precision, and its keys dse train cannot apply (KEY=VALUE)."""
    settings = {name: default for name, default in APPLIED.values()}
    refused = []
    for sec in ("OPTIM", "BN", "TRAIN"):
        for k, v in (base.get(sec) or {}).items():
            key = (sec, k)
            if key in APPLIED:
                settings[APPLIED[key][0]] = v
            elif key in AS_DSE and v == AS_DSE[key] or key in SWITCHES or key in PLACES:
                continue
            else:
                refused.append(f"{sec}.{k}={v}")
    bn = base.get("BN") or {}
    if not bn.get("USE_CUSTOM_WEIGHT_DECAY", False):
        settings["bn_wd"] = None
    if not settings["ema_period"]:  # pycls: period 0 = no EMA
        settings.update(ema_alpha=0.0, ema_period=32)
    if settings["lr_policy"] not in ("cos", "lin", "steps"):
        refused.append(f"OPTIM.LR_POLICY={settings['lr_policy']}")
    if settings["lr_policy"] != "steps":
        settings["lr_steps"] = ()
    settings["lr_steps"] = tuple(settings["lr_steps"] or ())
    amp = bool((base.get("TRAIN") or {}).get("MIXED_PRECISION", False))
    return settings, amp, refused


def not_applied(base: dict) -> list[str]:
    """The recipe keys of a pycls base config that dse train does not apply."""
    return pycls_recipe(base)[2]


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
    from dse.errors import ArgumentError, DseError
    from dse.space import pyclssweep
    from dse.train.recipe import Recipe

    with open(path, "rb") as f:
        sweep = pyclssweep.parse(yaml.safe_load(f), str(path))
    settings, amp, refused = pycls_recipe(sweep.base)
    refused += [f"SETUP.SAMPLERS.{k} (drawn per model)" for k in sweep.samplers
                if k.split(".")[0] in ("OPTIM", "BN", "TRAIN", "TEST")]
    if not refused:
        try:
            Recipe(**settings)
        except (ArgumentError, TypeError) as e:
            refused.append(f"{e.param}: {e.problem}" if isinstance(e, ArgumentError)
                           else str(e))
    if refused and not dry_run:
        raise DseError(f"{path}: dse train cannot run this sweep's recipe; keys it does not "
                       f"apply: {', '.join(refused)} (dse sample --pycls-sweep draws its "
                       "models alone)")
    space = _space_name(sweep)
    sample_pycls(path, None, space, 0, dry_run, store_path)
    flags = ("epochs", "batch_size", "lr", "momentum", "wd", "warmup_epochs",
             "zero_init_final_gamma")
    shown = {k: v for k, v in settings.items() if k in flags or k in ("nesterov",)
             or v != getattr(Recipe(), k)}
    if dry_run:
        click.echo("would train them with " + " ".join(f"{k}={v}" for k, v in shown.items())
                   + ("" if amp else " in fp32 (MIXED_PRECISION off)"))
        return
    ctx.invoke(train_cmd, spaces=(space,), store_path=store_path, fp32=not amp,
               settings={k: v for k, v in settings.items() if k not in flags},
               **{k: v for k, v in settings.items() if k in flags})


def _space_name(sweep) -> str:
    return "pycls-" + sweep.name.split("/")[-1].lower().replace("_", "-")
