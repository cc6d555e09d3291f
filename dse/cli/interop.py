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
