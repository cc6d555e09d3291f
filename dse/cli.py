"""The `dse` command line: a thin click layer over the library, one command per stage.

torch is imported only inside the commands that build models, so `dse --help` is instant.
Every error a user can cause ends as one line `Error: ...` with a non-zero exit code
(2 for usage errors), never a traceback.
"""

from __future__ import annotations

import json
import sys

import click

from dse.errors import DseError

STORE_HELP = "Store directory [default: $DSE_STORE or ./runs]."


class Group(click.Group):
    """A click group that reports every user error as a single `Error:` line."""

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        try:
            rv = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"Error: {_one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except DseError as e:
            click.echo(f"Error: {_one_line(str(e))}", err=True)
            sys.exit(2)
        except click.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dse", message="dse %(version)s")
def cli():
    """dse: sample, train and analyze populations of networks from design spaces."""


@cli.command("spaces")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def spaces_cmd(as_json):
    """List the built-in design spaces."""
    from dse import spaces

    rows = [dict(name=s.name, alias=s.alias, title=s.title, kind=s.kind, adds=s.adds,
                 dof=s.dof, log10_size=round(s.log10_size, 2)) for s in spaces.builtin()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(_table(rows, ["name", "alias", "dof", "log10_size", "adds"],
                      ["space", "alias", "dof", "log10 size", "adds"]))


def _table(rows, keys, header=None):
    cells = [[("" if r[k] is None else f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]))
              for k in keys] for r in rows]
    header = header or keys
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    num = [all(isinstance(r[k], (int, float)) or r[k] is None for r in rows) for k in keys]
    line = lambda cs: "  ".join(c.rjust(w) if n else c.ljust(w)  # noqa: E731
                                for c, w, n in zip(cs, widths, num)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in cells])


@cli.command("describe")
@click.option("--spec", "spec_text", required=True,
              help='Model as JSON: {"kind":"regnet","depth":22,"w0":24,"wa":24.48,"wm":2.54,'
                   '"group_w":16} or {"kind":"anynet","ds":[..],"ws":[..],"bs":[..],"gs":[..]}.')
@click.option("--resolution", type=click.IntRange(min=1), default=224, show_default=True)
@click.option("--stem", type=click.Choice(["imagenet", "cifar"]), default="imagenet",
              show_default=True)
@click.option("--in-channels", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--num-classes", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def describe_cmd(spec_text, resolution, stem, in_channels, num_classes, as_json):
    """Per-stage shapes and flops/params/acts of one model."""
    from dse.complexity import complexity, stage_table
    from dse.spec import Task, parse_spec

    spec, rp = parse_spec(spec_text)
    task = Task(resolution, stem, in_channels, num_classes)
    cx = complexity(spec, task)
    from dse.models import build, num_params  # torch: the module's own parameter count

    module_params = num_params(build(spec, task))
    if as_json:
        click.echo(json.dumps(dict(ds=list(spec.ds), ws=list(spec.ws), bs=list(spec.bs),
                                   gs=list(spec.gs), se_ratio=spec.se_ratio, stem_w=spec.stem_w,
                                   **rp, **cx, module_params=module_params)))
        return
    rows = stage_table(spec, task)
    click.echo(_table(rows, ["part", "d", "w", "b", "g", "groups", "out", "flops", "params",
                             "acts"]))
    click.echo(f"\ntotal: {cx['flops'] / 1e6:.2f} MF, {cx['params'] / 1e6:.3f} M params, "
               f"{cx['acts'] / 1e6:.3f} M acts  (module params: {module_params:,}; "
               f"{resolution}×{resolution}×{in_channels}, {stem} stem, {num_classes} classes)")


@cli.command("sample")
@click.option("--space", "space_name", required=True,
              help="Space name, alias (xa..xe, rx, ry) or path of a .yaml space file.")
@click.option("--n", type=int, required=True, help="Number of models to add.")
@click.option("--flops", "flops_w", default=None,
              help="Flops window LO:HI (multiply-adds; K/M/G suffixes) "
                   "[default: by dataset, see README].")
@click.option("--params", "params_w", default=None, help="Optional params window LO:HI.")
@click.option("--acts", "acts_w", default=None, help="Optional activations window LO:HI.")
@click.option("--dataset", type=click.Choice(["cifar10", "fashion-mnist", "synthetic",
                                              "imagenet"]),
              default="cifar10", show_default=True,
              help="Dataset the models are for; fixes resolution, stem, channels, classes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--store", "store_path", default=None, help=STORE_HELP)
def sample_cmd(space_name, n, flops_w, params_w, acts_w, dataset, seed, store_path):
    """Sample N new models of a space into the store."""
    from dse import sampling, spaces, store
    from dse.spec import DATASETS, default_flops_window

    if n < 1:
        raise click.BadParameter(f"must be a positive integer (got {n})", param_hint="'--n'")
    space = spaces.load(space_name)
    task = DATASETS[dataset]
    flops = (sampling.parse_window(flops_w, "--flops") if flops_w is not None
             else sampling.Window(*default_flops_window(dataset)))
    params = sampling.parse_window(params_w, "--params")
    acts = sampling.parse_window(acts_w, "--acts")
    root = store.root(store_path)
    draw = lambda have: sampling.sample(space, n, task, flops, params, acts, seed, exclude=have)
    added = store.add_models(root, space, dataset, task, draw, seed)
    total = len(store.read_models(root, space.name))
    f = added["flops"]
    click.echo(f"sampled {len(added)} {space.name} models for {dataset} (flops {flops}, "
               f"{f.min() / 1e6:.1f}–{f.max() / 1e6:.1f} MF) → "
               f"{store.space_dir(root, space.name) / 'models.parquet'} "
               f"({total} in all)")


# Commands of the later stages live in their own modules; importing them registers them.
from dse import cli_analysis, cli_train  # noqa: E402,F401


def main():
    cli(prog_name="dse")


if __name__ == "__main__":
    main()
