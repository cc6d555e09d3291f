"""The analysis commands end to end on small real stores (`dse sample` + result rows written
with Store.write_result): outputs, JSON, figures, the report, and every robustness case."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import sampled, write_results
from click.testing import CliRunner
from scipy import stats

from dse.cli import cli

PNG = b"\x89PNG\r\n\x1a\n"


def run(*args, ok=True):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert r.exit_code == 0, r.output
    return r


def one_error_line(r):
    """The failure is one `Error:` line with exit code 2 and no traceback."""
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert "Traceback" not in r.output
    return lines[0]


def sample(root, space, n, seed=0):
    return sampled(root, n, space, "fashion-mnist", None, seed)


train = write_results


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    """anynetxa and anynetxe, 60 models each; xe is better by 1.5 points and its error
    depends on total depth (best near 12 blocks)."""
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(0)
    errs = {}
    for space, base in (("anynetxa", 12.0), ("anynetxe", 10.5)):
        m = sample(root, space, 60)
        depth = m["ds"].map(sum).to_numpy()
        e = base + 0.3 * np.abs(depth - 12) + rng.normal(0, 0.4, len(m))
        train(root, space, m, e)
        errs[space] = e
    return root, errs


def digest(root):
    """Content hashes and mtimes of every model and result file."""
    files = sorted(p for p in root.rglob("*.parquet") if "analysis" not in p.parts)
    return {str(p): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in files}


def test_edf_compare_table_json_and_figure(pop, tmp_path):
    root, errs = pop
    r = run("edf", "compare", "xa", "xe", "--store", root)
    assert "anynetxa" in r.output and "KS D" in r.output
    default = root / "analysis" / "edf_anynetxa_anynetxe.png"
    assert default.read_bytes().startswith(PNG)
    out = tmp_path / "edf.svg"
    r = run("edf", "compare", "anynetxa", "xe", "--json", "--out", out, "--store", root)
    data = json.loads(r.output)
    assert set(data["spaces"]) == {"anynetxa", "anynetxe"}
    ref = stats.ks_2samp(errs["anynetxa"], errs["anynetxe"])
    (pair,) = data["pairs"]
    assert (pair["a"], pair["b"]) == ("anynetxa", "anynetxe")
    assert pair["D"] == pytest.approx(ref.statistic) and pair["p"] == pytest.approx(ref.pvalue)
    xe = data["spaces"]["anynetxe"]
    assert xe["n"] == 60 and xe["min"] == pytest.approx(errs["anynetxe"].min())
    assert xe["mean"] == pytest.approx(errs["anynetxe"].mean())
    assert xe["median"] == pytest.approx(np.median(errs["anynetxe"]))
    assert out.read_text().lstrip().startswith("<?xml")
    pdf = tmp_path / "edf.pdf"
    run("edf", "compare", "xe", "--out", pdf, "--store", root)
    assert pdf.read_bytes().startswith(b"%PDF")


def test_edf_compare_normalized(pop):
    root, _ = pop
    r = run("edf", "compare", "xa", "xe", "--normalize", "flops", "--bins", "2", "--json",
            "--store", root)
    data = json.loads(r.output)
    assert data["normalize"] == "flops"
    assert all(s["n"] <= 60 for s in data["spaces"].values())
    assert (root / "analysis" / "edf_anynetxa_anynetxe_flops.png").is_file()
    r = run("edf", "compare", "xa", "xe", "--normalize", "params", "--bins", "10000",
            "--store", root, ok=False)
    assert "--bins 10000 leave complexity bin" in one_error_line(r)


def test_fit_linear_table_json_and_files(pop):
    root, errs = pop
    r = run("fit-linear", "--space", "xe", "--top", "5", "--json", "--store", root)
    data = json.loads(r.output)
    assert data["space"] == "anynetxe" and len(data["models"]) == 60
    assert data["joint"]["top"] == 5
    assert [m["rank"] for m in data["models"]] == list(range(1, 61))
    errors = [m["error"] for m in data["models"]]
    assert errors == sorted(errors)
    assert all(0 <= m["e_fit"] < 3 for m in data["models"])
    assert -1 <= data["spearman"]["rho"] <= 1
    table = pd.read_parquet(root / "anynetxe" / "analysis" / "fit_linear.parquet")
    assert table["e_fit"].tolist() == pytest.approx([m["e_fit"] for m in data["models"]])
    assert (root / "anynetxe" / "analysis" / "fit_linear.png").read_bytes().startswith(PNG)
    cache = pd.read_parquet(root / "analysis" / "fit_linear_cache.parquet")
    assert len(cache) == len(set(cache["key"])) <= 60 and len(cache) >= 55  # per architecture
    r = run("fit-linear", "--space", "xe", "--store", root)  # the fits read from the cache
    assert "joint linear fit over the top 20" in r.output and "Spearman" in r.output
    assert pd.read_parquet(root / "anynetxe" / "analysis" / "fit_linear.parquet").equals(table)
    assert run("verify", "--store", root).output.rstrip().endswith(" 0 damaged")


def test_trends_ranges(pop):
    root, _ = pop
    r = run("trends", "xe", "--repeats", "500", "--json", "--store", root)
    data = json.loads(r.output)
    assert data["n"] == 60 and "depth" in data["ranges"]
    depth = data["ranges"]["depth"]
    assert depth["lo"] <= depth["median"] <= depth["hi"]
    r = run("trends", "xa", "--param", "depth", "--param", "b2", "--repeats", "200",
            "--store", root)
    assert "depth" in r.output and "b2" in r.output
    r = run("trends", "xa", "--param", "w0", "--store", root, ok=False)
    assert "unknown parameter" in one_error_line(r)


def test_search_efficiency(pop):
    root, errs = pop
    r = run("search-efficiency", "xa", "xe", "--json", "--store", root)
    data = json.loads(r.output)
    xe = data["spaces"]["anynetxe"]
    assert [c["k"] for c in xe] == [1, 2, 4, 8, 16, 32, 60]
    assert xe[0]["mean"] == pytest.approx(errs["anynetxe"].mean())
    assert xe[-1]["mean"] == pytest.approx(errs["anynetxe"].min())
    assert (root / "analysis" / "search_anynetxa_anynetxe.png").is_file()


def test_report_has_every_section_and_is_self_contained(pop, tmp_path):
    from dse.analysis.report import SECTIONS

    root, _ = pop
    out = tmp_path / "r.html"
    before = digest(root)
    r = run("report", "--out", out, "--store", root)
    assert digest(root) == before  # analysis never changes models or results
    assert str(out) in r.output
    text = out.read_text()
    for key, title in SECTIONS:
        assert f'id="{key}"' in text and f"<h2>{title}</h2>" in text
    assert text.count("data:image/png;base64,") >= 7  # 2 EDFs, search, 2 fit-linear, 2 trends
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "KS D" in text and "anynetxa" in text and "anynetxe" in text


def test_analysis_never_changes_models_or_results(pop):
    root, _ = pop
    before = digest(root)
    run("edf", "compare", "xa", "xe", "--normalize", "flops", "--bins", "2", "--store", root)
    run("fit-linear", "--space", "xa", "--store", root)
    run("trends", "xa", "--repeats", "100", "--store", root)
    run("search-efficiency", "xe", "--store", root)
    assert digest(root) == before  # (the report is checked in its own test)


# ---- robustness: one-line errors, no traceback -----------------------------------------------


def test_missing_store(tmp_path):
    for args in (["edf", "compare", "xa"], ["fit-linear"], ["trends", "xa"],
                 ["search-efficiency", "xa"], ["report"]):
        r = run(*args, "--store", tmp_path / "nope", ok=False)
        assert "does not exist" in one_error_line(r)


def test_unknown_and_absent_spaces(pop):
    root, _ = pop
    assert "unknown space 'nosuch'" in one_error_line(
        run("edf", "compare", "xa", "nosuch", "--store", root, ok=False))
    assert "no anynetxb models in store" in one_error_line(
        run("trends", "xb", "--store", root, ok=False))


def test_bad_figure_extension(pop, tmp_path):
    root, _ = pop
    line = one_error_line(run("edf", "compare", "xa", "--out", tmp_path / "f.txt",
                              "--store", root, ok=False))
    assert ".png, .svg, .pdf" in line


@pytest.fixture
def small(tmp_path):
    root = tmp_path / "s"
    return root, sample(root, "anynetxa", 6), sample(root, "anynetxe", 6)


def test_space_without_results(small):
    root, _, _ = small
    for args in (["edf", "compare", "xa"], ["fit-linear", "--space", "xa"], ["trends", "xa"],
                 ["search-efficiency", "xa"]):
        line = one_error_line(run(*args, "--store", root, ok=False))
        assert "no results yet" in line and "dse train --space anynetxa" in line
    r = run("report", "--store", root)  # the report says so instead of failing
    assert "No space has finished models yet" in (root / "report.html").read_text()
    assert r.exit_code == 0


def test_one_result(small):
    root, xa, _ = small
    train(root, "anynetxa", xa.head(1), [11.5])
    data = json.loads(run("edf", "compare", "xa", "--json", "--store", root).output)
    assert data["spaces"]["anynetxa"] == dict(n=1, min=11.5, mean=11.5, median=11.5)
    data = json.loads(run("fit-linear", "--space", "xa", "--json", "--store", root).output)
    assert len(data["models"]) == 1 and data["spearman"]["rho"] is None
    assert "undefined" in run("fit-linear", "--space", "xa", "--store", root).output
    data = json.loads(run("trends", "xa", "--param", "depth", "--json", "--repeats", "50",
                          "--store", root).output)
    d = data["ranges"]["depth"]
    assert d["lo"] == d["hi"] == d["best"]
    assert "nothing to plot" in run("trends", "xa", "--store", root).output
    data = json.loads(run("search-efficiency", "xa", "--json", "--store", root).output)
    assert data["spaces"]["anynetxa"] == [dict(k=1, mean=11.5, std=0.0, trials=10)]
    run("report", "--store", root)
    text = (root / "report.html").read_text()
    assert "anynetxe (6 sampled, 0 trained)" in text


def test_only_diverged_and_nan_errors(small):
    root, xa, xe = small
    train(root, "anynetxa", xa, [None] * 6, status="diverged")
    line = one_error_line(run("edf", "compare", "xa", "--store", root, ok=False))
    assert "no finished models" in line and "6 diverged" in line
    train(root, "anynetxe", xe.head(3), [float("nan")] * 3)
    train(root, "anynetxe", xe.tail(3), [9.0, 10.0, 11.0])
    data = json.loads(run("edf", "compare", "xe", "--json", "--store", root).output)
    assert data["spaces"]["anynetxe"]["n"] == 3  # NaN errors are not finished models
    train(root, "anynetxe", xe.tail(3), [float("nan")] * 3)
    line = one_error_line(run("fit-linear", "--space", "xe", "--store", root, ok=False))
    assert "6 done without an error value" in line


def test_the_python_api_example_in_the_docs_runs(pop, tmp_path, monkeypatch):
    from pathlib import Path

    root, _ = pop
    text = (Path(__file__).parent.parent / "docs" / "analysis.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "runs").symlink_to(root)
    monkeypatch.chdir(tmp_path)
    before = digest(root)
    exec(compile(code, "docs/analysis.md", "exec"), {})
    assert (tmp_path / "edf.png").read_bytes().startswith(PNG)
    assert digest(root) == before
