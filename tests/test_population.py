"""Populations (dse.analysis.population): every operand form read the same way by the command
line, an experiment's claims and the report, under each recipe; the parser's errors.

Two stores of AnyNetX_C models (sampled by dse, results written without training) each hold
two recipes whose errors differ; a reference space (AnyNetX_A) sits in the home store."""

import html
import json
import re

import numpy as np
import pytest
import yaml
from cli_helpers import ok, one_error, run

from dse.analysis import effects
from dse.analysis.population import Operand, Selection, load
from dse.errors import DseError
from dse.store.core import Store
from dse.store.recipes import Pick

RECIPES = {1: 5.0, 2: 0.0}   # epochs → the points added to every error under that recipe


def _store(root, seed: int, spaces=("anynetxc",)) -> dict:
    """Sampled models with a result per recipe; model id → its epochs=2 error, by space."""
    truth = {}
    rng = np.random.default_rng(seed)
    for space in spaces:
        ok("sample", "--space", space, "--n", 36, "--dataset", "fashion-mnist", "--seed", seed,
           "--store", root)
        models = Store(root).read_models(space)
        base = 10 + rng.normal(0, 2, len(models))
        for epochs, extra in RECIPES.items():
            for mid, e in zip(models["model_id"], base + extra):
                Store(root).write_result(space, dict(
                    model_id=mid, space=space, status="done", error=float(e), epochs=epochs,
                    dataset="fashion-mnist"))
        truth[space] = models.assign(error=base).set_index("model_id")
    return truth


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("pops")
    home, other = root / "home", root / "other"
    return home, other, _store(home, 0, ("anynetxc", "anynetxa")), _store(other, 1)


def _truth(stores, op: Operand, epochs: int) -> np.ndarray:
    """The errors that were written for the population, sorted."""
    _, _, home, other = stores
    models = (home if op.store is None else other)["anynetxc"]
    if op.expr is not None:
        models = models[models["flops"] < float(op.expr.split("<")[1])]
    return np.sort(models["error"].to_numpy() + RECIPES[epochs])


def _forms(stores):
    home, other, truth, _ = stores
    cut = int(np.median(truth["anynetxc"]["flops"]))
    return [Operand("anynetxc"), Operand("anynetxc", str(other)),
            Operand("anynetxc", None, f"flops < {cut}"),
            Operand("anynetxc", str(other), f"flops < {cut}")]


@pytest.mark.parametrize("epochs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_every_operand_form_reads_the_same_rows_everywhere(stores, tmp_path, epochs):
    home, other, _, _ = stores
    ref = np.sort(stores[2]["anynetxa"]["error"].to_numpy() + RECIPES[epochs])
    forms = _forms(stores)
    labels = [op.label for op in forms]
    want = {op.label: _truth(stores, op, epochs) for op in forms}
    assert all(8 <= len(w) <= 36 for w in want.values())
    recipe = ("--recipe", f"epochs={epochs}")
    # the library
    for op in forms:
        got = load([op], Selection(pick=Pick({"epochs": epochs})), home=Store(home)).frame
        assert np.allclose(np.sort(got["error"].to_numpy(float)), want[op.label])
        assert set(got["space"]) == {op.label}
    # the command line
    r = ok("edf", "compare", *labels, *recipe, "--json", "--store", home,
           "--out", tmp_path / "edf.png")
    spaces = json.loads(r.output)["spaces"]
    for label, w in want.items():
        assert (spaces[label]["n"], spaces[label]["min"]) == (len(w), pytest.approx(w.min()))
        assert spaces[label]["mean"] == pytest.approx(w.mean())
    # the report (its figures take a while: every form in the slow tier, the last otherwise)
    page = tmp_path / "report.html"
    shown = labels if epochs == 2 else labels[-1:]
    ok("report", *shown, *recipe, "--out", page, "--store", home)
    text = page.read_text()
    table = text[text.index("<table"):text.index("</table>")]  # the populations
    header = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", table)
    for label, w in ((x, want[x]) for x in shown):
        row = dict(zip(header, cells[cells.index(html.escape(label)):]))
        assert (row["finished"], row["mean error"]) == (str(len(w)), f"{w.mean():.2f}")
    # an experiment's claims: each population with itself (paired: its n), and against
    # another space (unpaired: the Hodges–Lehmann shift of exactly its errors)
    claims = [f"{x} same as {x}" for x in labels] + [f"{x} better than anynetxa" for x in labels]
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(dict(
        name="pops", spaces=["anynetxc", "anynetxa"], n=36, dataset="fashion-mnist",
        store=str(home), expect=claims, train=dict(epochs=epochs),
        analyze=dict(report=False))))
    summary = json.loads(ok("run", exp, "--only", "analyze", *recipe, "--json").output)
    verdicts = {c["claim"]: c for c in summary["claims"]}
    for label, w in want.items():
        assert verdicts[f"{label} same as {label}"]["pairs"] == len(w)
        shift = verdicts[f"{label} better than anynetxa"]["effect"]["estimate"]
        assert shift == pytest.approx(effects.hl_shift(w, ref))


def test_operands_parse_once_and_name_their_forms():
    assert Operand.parse("xc@runs/a b[g == 1 and flops < 2M]") == Operand(
        "xc", "runs/a b", "g == 1 and flops < 2M")
    assert Operand.parse(" rx ") == Operand("rx")
    assert Operand.parse("rx@s").label == "rx@s" and str(Operand("rx", None, "g > 1")) == \
        "rx[g > 1]"
    for bad in ("", "@s", "rx@", "rx[]", "rx[g == 1", "rx]", "r[x]y", "rx@[g == 1]"):
        with pytest.raises(DseError, match=r"SPACE\[EXPR\]"):
            Operand.parse(bad)


def test_population_errors_are_one_line(stores, tmp_path):
    home, other, _, _ = stores
    cases = [
        (("edf", "compare", "anynetxc[]"), "write SPACE[EXPR] with a condition"),
        (("edf", "compare", "anynetxc@"), "the store after '@' is empty"),
        (("edf", "compare", "anynetxc@nowhere"), "nowhere"),
        (("edf", "compare", "anynetxc[q > 1]"), "unknown column 'q'"),
        (("edf", "compare", "anynetxc[flops < 0]"), "keeps none"),
        (("trends", "anynetxc", "--where", "g =="), "--where 'g ==' is not an expression"),
        (("report", "anynetxc", "--recipe", "epochs=3"), "--recipe epochs=3: no results"),
        (("report", "anynetxc", "--regime", "9M"), "--regime '9M' does not exist"),
    ]
    for args, message in cases:
        assert message in one_error(run(*args, "--store", home)), args
    # claims name the same forms at check time
    exp = tmp_path / "bad.yaml"
    for claim, message in (("anynetxc[] better than anynetxa", "write SPACE[EXPR]"),
                           ("anynetxc@nowhere better than anynetxa", "does not exist")):
        exp.write_text(yaml.safe_dump(dict(name="bad", spaces=["anynetxc", "anynetxa"], n=4,
                                           dataset="fashion-mnist",
                                           expect=[claim])))
        assert message in one_error(run("run", exp, "--dry-run", "--store", home))
