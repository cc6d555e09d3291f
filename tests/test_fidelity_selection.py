"""`dse fidelity` on the pairs that can bear it: the models promoted as the proxy's best
(dse train --top) are a selected sample, so the headline reads those promoted at random."""

import json
import shutil

from cli_helpers import ROOT, ok


def test_the_committed_promotion_is_split_into_selected_and_random(tmp_path):
    """findings-cpu promoted the proxy's 12 best and 12 others at random to 8 epochs: the
    split is inferred from the proxy's first-seed ranking, and the headline reads the 12."""
    store = tmp_path / "s"
    shutil.copytree(ROOT / "experiments" / "results" / "findings-cpu", store)
    args = ("fidelity", "regnetx", "--from", "epochs=2", "--to", "epochs=8", "--store", store)
    out = json.loads(ok(*args, "--json").output)
    assert (out["paired"], out["selected"], out["top"], out["top_from"]) == (24, 12, 12,
                                                                            "inferred")
    assert out["pairs"] == 12 and out["all_pairs"]["pairs"] == 24
    assert round(out["spearman"]["value"], 2) == 0.32
    assert round(out["all_pairs"]["spearman"]["value"], 2) == 0.26
    text = ok(*args).output
    assert "the headline reads the 12 promoted at random" in text
    everything = json.loads(ok(*args, "--top", 0, "--json").output)
    assert everything["selected"] == 0 and everything["pairs"] == 24
    given = json.loads(ok(*args, "--top", 40, "--json").output)  # 1 random left: too few
    assert given["selected"] == 23 and given["pairs"] == 24 and given["top_from"] == "given"
    assert "too few" in given["headline"]
