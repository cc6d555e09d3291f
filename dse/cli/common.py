"""What every command shares: the error handling, option decorators and output helpers.

Every error a user can cause ends as one line `Error: ...` with a non-zero exit code (2 for
usage errors), never a traceback; a library `ArgumentError` names the flag that set the
argument. Warnings of dse (a damaged file skipped) are one `Warning:` line on stderr.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings

import click

from dse.errors import ArgumentError, DseError, DseWarning, one_line


class Command(click.Command):
    """A click command that names its own flag in a library's ArgumentError."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ArgumentError as e:
            flags = [max(p.opts, key=len) for p in self.params
                     if isinstance(p, click.Option) and p.name == e.param]
            if not flags:
                raise
            raise DseError(f"{flags[0]} {e.problem}") from None


class Group(click.Group):
    """A click group whose commands report every user error as a single `Error:` line."""

    command_class = Command
    group_class = type  # subgroups are Groups too

    def main(self, args=None, prog_name=None, **extra):
        extra.pop("standalone_mode", None)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                rv = super().main(args, prog_name, standalone_mode=False, **extra)
            except click.exceptions.Exit as e:
                sys.exit(e.exit_code)
            except click.ClickException as e:
                _error(e.format_message(), e.exit_code)
            except DseError as e:
                _error(str(e), 2)
            except click.Abort:
                _error("aborted", 1)
            except KeyboardInterrupt:
                _error("interrupted", 130)
        sys.exit(rv if isinstance(rv, int) else 0)


def _error(msg: str, code: int):
    click.echo(f"Error: {one_line(msg)}", err=True)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, DseWarning):
        click.echo(f"Warning: {one_line(str(message))}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


# ---- shared options --------------------------------------------------------------------------

STORE_HELP = "Store directory [default: $DSE_STORE or ./runs]."
OUT_HELP = "Figure file; the extension picks the format (.png, .svg, .pdf) [default: {}]."


def store_option(f):
    """--store DIR, passed as `store_path`."""
    return click.option("--store", "store_path", default=None, help=STORE_HELP)(f)


def seed_option(help_text: str = "Seed of the random draws (the same seed, the same result)."):
    return click.option("--seed", type=int, default=0, show_default=True, help=help_text)


def json_option(help_text: str = "Print JSON instead of a table."):
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def out_option(default: str):
    """--out FIG, a figure path whose default is described by `default`."""
    return click.option("--out", default=None, help=OUT_HELP.format(default))


# ---- parameter types: text from the command line to the library's typed values -----------

def flag(param) -> str:
    """The option's longest flag ('--recipe'), or an argument's name in capitals."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return (param.name or "value").upper() if param is not None else "value"


class _Typed(click.ParamType):
    """A parameter read by a library parser (`read(text, what)`); its ArgumentError names the
    option's flag, a DseError passes as it is (one `Error:` line either way)."""

    def convert(self, value, param, ctx):
        if not isinstance(value, str):  # already read
            return value
        try:
            return self.read(value, flag(param))
        except ArgumentError as e:
            raise DseError(f"{flag(param)} {e.problem}") from None

    def read(self, text: str, what: str):
        raise NotImplementedError


class PopulationType(_Typed):
    """SPACE, SPACE@STORE, SPACE[EXPR] or SPACE@STORE[EXPR] → dse.analysis.population.Operand."""

    name = "population"

    def read(self, text, what):
        from dse.analysis.population import Operand

        return Operand.parse(text)


class RecipeType(_Typed):
    """KEY=VALUE,... → the recipe settings it names (dse.store.recipes.parse_recipe)."""

    name = "recipe"

    def read(self, text, what):
        from dse.store.recipes import parse_recipe

        return parse_recipe(text, what)


class WindowType(_Typed):
    """LO:HI with K/M/G suffixes → dse.space.sampling.Window."""

    name = "window"

    def read(self, text, what):
        from dse.space.sampling import parse_window

        return parse_window(text, what)


class SetType(_Typed):
    """KEY=VALUE of an experiment file (dotted keys) → (key parts, value)."""

    name = "set"

    def read(self, text, what):
        from dse.method.overrides import parse_set

        return parse_set(text)


POPULATION, RECIPE, WINDOW, SET = PopulationType(), RecipeType(), WindowType(), SetType()


def recipe_option(what: str = "Read the results of this recipe, e.g. epochs=8"):
    """--recipe KEY=VALUE,...: which recipe's results a command reads (dse.store.recipes), as
    the settings it names."""
    return click.option("--recipe", type=RECIPE, default=None, metavar="KEY=VALUE,...",
                        help=f"{what} [default: the recipe with the most results, named in "
                             "the output].")


def selected(recipe=None, aggregate: str = "mean", epoch: str = "last", option: str = "--recipe"):
    """The results a command reads (dse.store.recipes.Pick), its recipe named by `option`."""
    from dse.store.recipes import Pick

    return Pick(recipe or None, aggregate, epoch, flag=option)


def selection_options(f):
    """--regime NAME, --where EXPR, --recipe, --aggregate and --epoch, passed as one
    `selection` (dse.analysis.population.Selection): the models every analysis reads."""
    @functools.wraps(f)
    def run(*args, regime=None, where=None, recipe=None, aggregate="mean", epoch="last",
            **kwargs):
        from dse.analysis.population import Selection

        return f(*args, selection=Selection(regime, where, selected(recipe, aggregate, epoch)),
                 **kwargs)

    run = click.option("--epoch", type=click.Choice(["last", "best"]), default="last",
                       show_default=True,
                       help="Which epoch's test error: the last, or the best of a result's "
                            "history (dse train --curves).")(run)
    run = click.option("--aggregate", type=click.Choice(["mean", "first"]), default="mean",
                       show_default=True,
                       help="A model's error from its seeds: their mean, or the first seed's.")(run)
    run = recipe_option()(run)
    run = click.option("--where", default=None, metavar="EXPR",
                       help="Only models for which EXPR holds, over their columns: flops, "
                            "params, acts, error, d, w, b, g, w0, wa, wm, regime, per stage "
                            "d1.. w1.. b1.. g1..; e.g. \"g == 1 and flops < 2M\".")(run)
    return click.option("--regime", default=None, metavar="NAME",
                        help="Only the models of this flop regime [default: every regime; "
                             "the output says when a space has several].")(run)


def echo_notes(notes: list[str]) -> None:
    """The selection's notes (several regimes read together, a --where) above a table."""
    for note in notes:
        click.echo(f"({note})")


def compose(*decorators):
    """Several option decorators as one."""
    return lambda f: functools.reduce(lambda acc, d: d(acc), reversed(decorators), f)


# ---- output ----------------------------------------------------------------------------------

def table(rows: list[dict], keys: list[str], header: list[str] | None = None) -> str:
    """A plain-text table: numbers right-aligned (integers with thousands separators)."""
    cells = [[("" if r[k] is None else f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]))
              for k in keys] for r in rows]
    header = header or keys
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    num = [all(isinstance(r[k], (int, float)) or r[k] is None for r in rows) for k in keys]
    line = lambda cs: "  ".join(c.rjust(w) if n else c.ljust(w)  # noqa: E731
                                for c, w, n in zip(cs, widths, num)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in cells])


def clean(x):
    """JSON-safe values: numpy scalars to Python, NaN/inf to null."""
    from dse.files import jsonable

    return jsonable(x)


def echo_json(obj) -> None:
    click.echo(json.dumps(clean(obj), indent=2))
