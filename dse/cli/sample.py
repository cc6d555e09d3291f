"""Defining and sampling: `dse spaces`, `dse describe`, `dse sample`."""

from __future__ import annotations

import json
import warnings

import click

from dse.cli.common import WINDOW, Command, json_option, seed_option, store_option, table
from dse.data import datasets
from dse.errors import DseWarning
from dse.space.spec import STEMS


@click.command("spaces", cls=Command)
@json_option("Print a JSON list instead of a table.")
def spaces_cmd(as_json):
    """List the built-in design spaces."""
    from dse.space import definition as spaces

    rows = [dict(name=s.name, alias=s.alias, title=s.title, kind=s.kind, adds=s.adds,
                 dof=s.dof, log10_size=round(s.log10_size, 2)) for s in spaces.builtin()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(table(rows, ["name", "alias", "dof", "log10_size", "adds"],
                     ["space", "alias", "dof", "log10 size", "adds"]))


@click.command("describe", cls=Command)
@click.argument("model", required=False)
@click.option("--spec", "spec_text", default=None,
              help='Model as JSON: {"kind":"regnet","depth":22,"w0":24,"wa":24.48,"wm":2.54,'
                   '"group_w":16} or {"kind":"anynet","ds":[..],"ws":[..],"bs":[..],"gs":[..]} '
                   '(optional "block": x|r|v|vr|basic|plain, "activation": relu|silu, '
                   '"first_stride": 2|1), or a name of `dse zoo` (also accepted as MODEL).')
@click.option("--resolution", type=click.IntRange(min=1), default=None,
              help="Input side [default: 224; a reference network's own].")
@click.option("--stem", type=click.Choice(STEMS), default="imagenet",
              show_default=True)
@click.option("--in-channels", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--num-classes", type=click.IntRange(min=1), default=1000, show_default=True)
@json_option("Print one JSON object.")
def describe_cmd(model, spec_text, resolution, stem, in_channels, num_classes, as_json):
    """Per-stage shapes and flops/params/acts of one model (a spec or a zoo name)."""
    from dse.space import zoo
    from dse.space.complexity import complexity, stage_table
    from dse.space.spec import Task, parse_spec

    if (model is None) == (spec_text is None):
        raise click.UsageError("give the model once: a name or JSON as MODEL, or --spec JSON")
    spec_text = spec_text or model
    if zoo.is_reference(zoo.canonical(spec_text) or ""):
        if (stem, in_channels, num_classes) != ("imagenet", 3, 1000):
            raise click.UsageError("a torchvision reference network has the ImageNet stem, 3 "
                                   "channels and 1000 classes; of the task options only "
                                   "--resolution applies")
        return _describe_reference(zoo.canonical(spec_text), resolution, as_json)
    resolution = resolution or 224
    spec, rp = parse_spec(spec_text)
    task = Task(resolution, stem, in_channels, num_classes)
    cx = complexity(spec, task)
    from dse.train.models import build, num_params  # torch: the module's own parameter count

    module_params = num_params(build(spec, task))
    if as_json:
        click.echo(json.dumps(dict(ds=list(spec.ds), ws=list(spec.ws), bs=list(spec.bs),
                                   gs=list(spec.gs), se_ratio=spec.se_ratio, stem_w=spec.stem_w,
                                   block=spec.block, activation=spec.activation,
                                   first_stride=spec.first_stride, **rp, **cx,
                                   module_params=module_params)))
        return
    rows = stage_table(spec, task)
    click.echo(table(rows, ["part", "d", "w", "b", "g", "groups", "out", "flops", "params",
                            "acts"]))
    blocks = ("" if spec.is_default_block else
              f"{spec.block} blocks, {spec.activation}, first stride {spec.first_stride}; ")
    click.echo(f"\ntotal: {cx['flops'] / 1e6:.2f} MF, {cx['params'] / 1e6:.3f} M params, "
               f"{cx['acts'] / 1e6:.3f} M acts  (module params: {module_params:,}; {blocks}"
               f"{resolution}×{resolution}×{in_channels}, {stem} stem, {num_classes} classes)")


def _describe_reference(name: str, resolution: int | None, as_json: bool):
    """Totals of a torchvision reference network, counted on its module (dse.compare.references)."""
    import torch

    from dse.compare import references
    from dse.space import zoo

    ref = zoo.REFERENCES[name]
    with torch.device("meta"):
        cx = references.count(references.build(name), resolution or ref.resolution)
    res = resolution or ref.resolution
    if as_json:
        click.echo(json.dumps(dict(name=name, family=ref.family, resolution=res, **cx)))
        return
    click.echo(f"{name} ({ref.family}, torchvision, {res}×{res}×3, 1000 classes): "
               f"{cx['flops'] / 1e6:.2f} MF, {cx['params'] / 1e6:.3f} M params, "
               f"{cx['acts'] / 1e6:.3f} M acts")


@click.command("sample", cls=Command)
@click.option("--space", "space_name", default=None,
              help="Space name, alias (xa..xe, rx, ry) or path of a .yaml space file "
                   "(with --pycls-sweep: the name of the space the draws join).")
@click.option("--n", type=int, default=None,
              help="Number of models to add (with --pycls-sweep default: its NUM_CONFIGS).")
@click.option("--pycls-sweep", "pycls_sweep", default=None, metavar="SWEEP.yaml",
              help="Draw from a pycls sweep config instead: its samplers, constraints and "
                   "base model (docs/interop.md).")
@click.option("--dry-run", is_flag=True,
              help="With --pycls-sweep: print what would be drawn, write nothing.")
@click.option("--flops", "flops_w", type=WINDOW, default=None,
              help="Flops window LO:HI (multiply-adds; K/M/G suffixes) "
                   "[default: by dataset, see README].")
@click.option("--params", "params_w", type=WINDOW, default=None,
              help="Optional params window LO:HI.")
@click.option("--acts", "acts_w", type=WINDOW, default=None,
              help="Optional activations window LO:HI.")
@click.option("--dataset", type=click.Choice(datasets.names()),
              default=datasets.DEFAULT, show_default=True,
              help="Dataset the models are for; fixes resolution, stem, channels, classes "
                   "(docs/datasets.md).")
@click.option("--resolution", type=int, default=None,
              help="folder: the side R of the R×R images the models see (CIFAR stem up to "
                   "64, ImageNet stem above).")
@click.option("--data-dir", default=None,
              help="folder: the image tree (train/<class>/*, val/<class>/*) [default: "
                   "$DSE_DATA or ./data]; its classes and path are recorded in the store.")
@click.option("--regime", "regime_name", default=None, metavar="NAME",
              help="Name of the flop regime these models join or start [default: the "
                   "stored regime of this --flops window, else the window itself, e.g. "
                   "1.5M:2M]. Windows of one space's regimes never overlap.")
@seed_option("Sampling seed: the same seed and arguments give the same models.")
@store_option
def sample_cmd(space_name, n, pycls_sweep, dry_run, flops_w, params_w, acts_w, dataset,
               resolution, data_dir, regime_name, seed, store_path):
    """Sample N new models of a space into the store, in one flop regime (or draw them
    from a pycls sweep config with --pycls-sweep)."""
    from dse.space import checks, regimes, sampling
    from dse.space import definition as spaces
    from dse.store.core import Store

    if n is not None and n < 1:
        raise click.BadParameter(f"must be a positive integer (got {n})", param_hint="'--n'")
    if pycls_sweep is not None:
        from dse.cli.interop import sample_pycls

        return sample_pycls(pycls_sweep, n, space_name, seed, dry_run, store_path)
    for flag, given in (("--space", space_name), ("--n", n)):
        if given is None:
            raise click.UsageError(f"Missing option '{flag}'.")
    if n < 1:
        raise click.BadParameter(f"must be a positive integer (got {n})", param_hint="'--n'")
    space = spaces.load(space_name)
    task, data = datasets.task_and_record(dataset, data_dir, resolution)
    flops = flops_w if flops_w is not None else sampling.Window(*datasets.flops_window(task))
    params, acts = params_w or sampling.Window(), acts_w or sampling.Window()
    store = Store(store_path)
    draw = lambda have: sampling.sample(space, n, task, flops, params, acts, seed, exclude=have)
    added = store.add_models(space, dataset, task, draw, seed, data,
                             regimes.Regime(regime_name, flops))
    models = store.read_models(space.name)
    label = regimes.labels(models)
    name = added["regime"].iloc[0]
    f = added["flops"]
    what = dataset if not data else (f"{dataset} {task.resolution}×{task.resolution}, "
                                     f"{task.num_classes} classes")
    click.echo(f"sampled {len(added)} {space.name} models for {what} (flops {flops}, "
               f"{f.min() / 1e6:.1f}–{f.max() / 1e6:.1f} MF) → "
               f"{store.models_path(space.name)} "
               f"({len(models)} in all)")
    for line in checks.rare_choices(space, models[label == name]):
        warnings.warn(line, DseWarning, stacklevel=1)
    kinds = list(dict.fromkeys(label))
    if len(kinds) > 1:
        click.echo(f"regime {name}: {int((label == name).sum())} models; {space.name} has "
                   f"{len(kinds)} regimes ({', '.join(kinds)}), analyzed apart with --regime "
                   "or together by default")
