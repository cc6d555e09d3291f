"""docs/findings.md reads committed stores (experiments/results/findings-cpu, regimes-cpu,
blocks-cpu, dds-cpu): rerunning their analyses on copies gives the verdicts, effects, the
proxy's fidelity and the seed noise the document states."""

import json
import re
import shutil
from pathlib import Path

import pytest
from cli_helpers import ok

ROOT = Path(__file__).parents[1]
RESULTS = ROOT / "experiments" / "results"
DOC = (ROOT / "docs" / "findings.md").read_text()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Copies of the committed stores, laid out as experiments/ expects them."""
    root = tmp_path_factory.mktemp("findings")
    (root / "results").mkdir()
    for name in ("findings-cpu", "regimes-cpu", "blocks-cpu"):
        shutil.copytree(RESULTS / name, root / "results" / name)
    for f in ("findings-cpu-choices.yaml", "findings-cpu-trials.yaml", "findings-choices.yaml",
              "findings-inverted.yaml", "findings-b1.yaml", "regimes-cpu.yaml"):
        shutil.copy(ROOT / "experiments" / f, root / f)
    return root


def _analyze(stores, name: str) -> dict:
    return json.loads(ok("run", stores / f"{name}.yaml", "--only", "analyze", "--json").stdout)


@pytest.mark.parametrize("name", ["findings-cpu-choices", "findings-cpu-trials",
                                  "regimes-cpu"])
def test_every_verdict_of_the_document_comes_from_its_store(stores, name):
    out = _analyze(stores, name)
    assert out["claims"]
    for c in out["claims"]:
        assert f"| {c['claim']} | **{c['verdict']}** |" in DOC, c
        eff = c.get("effect")
        if eff and c["verdict"] != "untestable" and eff.get("unit") != "":
            assert f"{eff['estimate']:+.2f} [{eff['lo']:+.2f}, {eff['hi']:+.2f}]" in DOC, c
        if c["verdict"] == "untestable":  # a population that did not train: its numbers
            m = re.search(r"(\d+) of (\d+) models \(\d+%\) did not learn", c["detail"])
            assert m and f"{m[1]} of the {m[2]}" in DOC, c


def test_the_fidelity_and_noise_of_the_document_come_from_its_store(stores):
    store = stores / "results" / "findings-cpu"
    fid = json.loads(ok("fidelity", "regnetx", "--from", "epochs=2", "--to", "epochs=8",
                        "--store", store, "--json").stdout)
    s, k = fid["spearman"], fid["kendall"]
    assert f"ρ = {s['value']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]" in DOC
    assert f"τ = {k['value']:.2f} [{k['lo']:.2f}, {k['hi']:.2f}]" in DOC
    assert f"{fid['pairs']} models promoted at random" in DOC
    assert f"regret {fid['regret']:.2f}" in DOC
    assert f"{fid['paired']} RegNetX models were trained under both" in DOC
    assert f"ρ is {fid['all_pairs']['spearman']['value']:.2f}" in DOC
    nz = json.loads(ok("noise", "regnetx", "--store", store, "--json").stdout)
    assert f"σ_seed = {nz['sigma_seed']:.2f}" in DOC
    assert f"ICC = {nz['icc']:.2f} [{nz['icc_lo']:.2f}, {nz['icc_hi']:.2f}]" in DOC
    assert f"[{nz['icc_f_lo']:.2f}, {nz['icc_f_hi']:.2f}]" in DOC  # the F interval beside it
