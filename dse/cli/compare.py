"""The paper's comparisons: `dse zoo` (the named models), `dse speed` (runtime against flops
and activations) and `dse export` (a model as a pycls, timm, torchvision or torch file)."""

from __future__ import annotations

import click

from dse.cli.common import (
    Command,
    echo_json,
    json_option,
    recipe_option,
    selected,
    store_option,
    table,
)

FAMILIES = ("all", "regnet", "reference")


def zoo_rows(family: str = "all") -> list[dict]:
    """One row per zoo model: name, family, resolution, flops/params/acts (RegNets from
    dse.space.complexity, references counted on their torchvision module)."""
    from dse.space import zoo
    from dse.space.complexity import complexity
    from dse.space.spec import Task, parse_spec

    rows = []
    if family in ("all", "regnet"):
        for name in zoo.regnet_names():
            spec, rp = parse_spec(name)
            rows.append(dict(name=name, family=zoo.family(name), resolution=224,
                             **complexity(spec, Task()), **rp))
    if family in ("all", "reference"):
        from dse.compare import references

        rows += [dict(name=n, **references.complexity(n)) for n in zoo.REFERENCES]
    return rows


@click.command("zoo", cls=Command)
@click.option("--family", type=click.Choice(FAMILIES), default="all", show_default=True,
              help="regnet: the 24 RegNetX/RegNetY models; reference: the torchvision "
                   "networks (ResNet, ResNeXt, EfficientNet, MobileNetV2).")
@json_option("Print a JSON list instead of a table.")
def zoo_cmd(family, as_json):
    """The paper's RegNetX/RegNetY models and reference networks with flops/params/acts."""
    rows = zoo_rows(family)
    if as_json:
        echo_json(rows)
        return
    click.echo(table(rows, ["name", "family", "resolution", "flops", "params", "acts"],
                     ["model", "family", "res", "flops", "params", "acts"]))


def speed_text(result: dict) -> str:
    """The table, fits and exponents of a dse.compare.speed result, and where it was measured."""
    rows = [dict(name=m["name"], family=m["family"], res=m["resolution"],
                 mf=round(m["flops"] / 1e6, 1), ma=round(m["acts"] / 1e6, 2),
                 mp=round(m["params"] / 1e6, 2), ms=round(m["ms_per_batch"], 2),
                 ips=round(m["images_per_second"], 1)) for m in result["models"]]
    lines = [table(rows, ["name", "family", "res", "mf", "ma", "mp", "ms", "ips"],
                   ["model", "family", "res", "MF", "M acts", "M params", "ms/batch",
                    "images/s"]), ""]
    for k, f in result["fits"].items():
        fit = "n/a (needs 2 models of different complexity)" if f["slope"] is None else \
            f"slope {f['slope']:.2f}, R² {f['r2']:.3f}"
        lines.append(f"log time per image vs log {k}: {fit}")
    for fam, f in result["family_exponents"].items():
        if f["slope"] is not None:
            lines.append(f"{fam}: acts ∝ flops^{f['slope']:.2f} (R² {f['r2']:.3f}, "
                         f"{f['n']} models)")
    where = (f"CPU numbers ({result['device']}); the paper's runtimes are GPU runtimes"
             if result["cpu"] else result["device"])
    lines.append(f"{where}; {result['mode']}, batch {result['batch_size']}, median of "
                 f"{result['iters']} after {result['warmup']} warm-up")
    return "\n".join(lines)


@click.command("speed", cls=Command)
@click.argument("names", nargs=-1)
@store_option
@click.option("--space", "space_name", default=None,
              help="Time the --top best trained models of this space of the store.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="With --space: how many of the lowest-error models.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="auto: CUDA when visible, else CPU.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per step [default: 64 on CUDA, as the paper; 8 on CPU].")
@click.option("--mode", type=click.Choice(["infer", "train"]), default="infer",
              show_default=True, help="infer: forward only; train: forward, backward, SGD.")
@click.option("--resolution", type=click.IntRange(min=8), default=None,
              help="Run every model on R×R inputs [default: each model's own].")
@click.option("--iters", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed steps per model (the median is reported).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed steps before timing.")
@click.option("--channels-last/--no-channels-last", default=False, show_default=True,
              help="NHWC memory format.")
@click.option("--bf16/--fp32", default=False, show_default=True,
              help="bf16 autocast instead of fp32.")
@json_option("Print one JSON object.")
@click.option("--out", default=None, help="Figure of time against flops and against acts, "
                                          "by family (.png, .svg, .pdf) [default: none].")
def speed_cmd(names, store_path, space_name, top, device, batch_size, mode, resolution, iters,
              warmup, channels_last, bf16, as_json, out):
    """Time per image of zoo, reference or stored models, fit against flops and acts.

    NAMES are names of `dse zoo` (any case) or JSON specs. Without NAMES or --space: every
    RegNetY and efficientnet_b0..b5, the paper's comparison.
    """
    from dse.analysis import plots
    from dse.compare import speed
    from dse.errors import DseError

    if out:
        plots.check_path(out)
    cands = [speed.zoo_candidate(n, resolution) for n in names]
    if space_name:
        from dse.store.core import Store

        cands += speed.store_candidates(Store(store_path), space_name, top)
    elif not names:
        cands = [speed.zoo_candidate(n, resolution) for n in speed.DEFAULT_NAMES]
    if len({c.name for c in cands}) != len(cands):
        raise DseError("a model is named twice; give each model once")
    result = speed.measure(cands, device, batch_size, mode, iters, warmup, channels_last, bf16)
    if out:
        result["figure"] = str(plots.save(plots.speed_figure(result), out))
    if as_json:
        echo_json(result)
        return
    click.echo(speed_text(result))
    if out:
        click.echo(f"figure: {result['figure']}")


def _resolve(text: str, store_path):
    """(spec, task, RegNet params or {}, name) of a zoo name, a JSON spec or a store model id."""
    from dse.errors import DseError
    from dse.space import zoo
    from dse.space.spec import Task, from_row, parse_spec, regnet_params

    if zoo.canonical(text) or text.lstrip().startswith("{"):
        spec, rp = parse_spec(text)
        return spec, Task(), rp, zoo.canonical(text) or "spec"
    from dse.store.core import Store

    store = Store(store_path)
    for space in store.spaces():
        df = store.read_models(space)
        hit = df[df["model_id"].str.startswith(text)] if len(text) >= 4 else df.iloc[:0]
        if len(hit) > 1:
            raise DseError(f"model id prefix {text!r} matches {len(hit)} models of {space}; "
                           "give more of the id")
        if len(hit):
            r = hit.iloc[0]
            spec, task = from_row(r)
            rp = regnet_params(r) or {}
            return spec, task, rp, r["model_id"]
    zoo.lookup(text)  # not in the store either: the zoo's error with its near misses
    raise AssertionError("unreachable")


@click.command("export", cls=Command)
@click.argument("model", metavar="MODEL|STORE")
@click.option("--format", "fmt", type=click.Choice(["pycls", "timm", "torchvision", "torch",
                                                    "pycls-sweep"]),
              default="pycls", show_default=True,
              help="pycls config YAML, timm RegNetCfg JSON, torchvision BlockParams JSON, "
                   "a torch file (state_dict + spec) that dse loads back, or pycls-sweep: a "
                   "store's results as the sweep.json of pycls's sweep analysis (the "
                   "argument is the store).")
@click.option("--out", "out_path", default=None,
              help="File to write [default: print it; --format torch needs a file].")
@click.option("--space", "space_name", default=None, metavar="NAME",
              help="pycls-sweep: the space exported [default: the store's only space].")
@recipe_option("pycls-sweep: export the trials of this recipe, e.g. epochs=50")
@store_option
def export_cmd(model, fmt, out_path, space_name, recipe, store_path):
    """Write a model (zoo name, JSON spec or store model id) in another library's terms, or
    with --format pycls-sweep a store's population as a pycls sweep.json."""
    from pathlib import Path

    from dse.compare import export
    from dse.errors import ArgumentError, DseError
    from dse.files import write_output

    if fmt == "pycls-sweep":
        return _export_sweep(model, space_name, recipe, out_path)
    if space_name or recipe:
        raise DseError(f"{'--space' if space_name else '--recipe'} applies to --format "
                       "pycls-sweep only")
    spec, task, rp, name = _resolve(model, store_path)
    if fmt == "torch":
        if not out_path:
            raise ArgumentError("out_path", "is required with --format torch (a .pt file)")
        path = write_output(Path(out_path), lambda p: export.save_torch(p, spec, task))
        click.echo(f"{name}: {len(spec.ds)} stages, fresh pycls-initialized weights → {path}")
        return
    text = export.config_text(fmt, spec, task, rp)
    if out_path:
        path = write_output(Path(out_path), lambda p: Path(p).write_text(text))
        click.echo(f"{name} as a {fmt} config → {path}")
    else:
        click.echo(text, nl=False)


def _export_sweep(store_path, space_name, recipe, out_path) -> None:
    """`dse export --format pycls-sweep STORE`: one recipe's trials of a space as pycls's
    sweep.json (dse.compare.sweep)."""
    import json
    from pathlib import Path

    from dse.compare import sweep
    from dse.errors import DseError
    from dse.files import write_output
    from dse.store.core import Store

    store = Store.existing(store_path)
    spaces = store.spaces()
    if space_name is None:
        if len(spaces) != 1:
            raise DseError(f"{store.root} holds {len(spaces)} spaces "
                           f"({', '.join(spaces) or 'none'}); name one with --space")
        space_name = spaces[0]
    space = store.resolve(space_name)
    jobs = sweep.jobs(store, space, selected(recipe, option="--recipe"))
    text = json.dumps(jobs, indent=None, sort_keys=True)
    if not out_path:
        click.echo(text)
        return
    path = write_output(Path(out_path), lambda p: Path(p).write_text(text))
    ema = sum("test_ema_epoch" in j for j in jobs)
    click.echo(f"{space}: {len(jobs)} trials as a pycls sweep → {path}"
               + ("" if ema == len(jobs) else
                  f"; {len(jobs) - ema} without a weight-EMA series (trained without "
                  "ema_alpha), which pycls's load_sweep leaves out"))
