"""Design spaces as YAML: built-ins, extends, aliases, sizes, validation of user files."""

import math

import pytest

from dse.errors import DseError
from dse.space import definition as spaces

BUILTIN = ["anynetxa", "anynetxb", "anynetxc", "anynetxd", "anynetxe", "regnetx", "regnety"]
OTHERS = ["anynetr", "anynetv", "anynetvr", "nds-resnet", "nds-resnext-a", "nds-resnext-b",
          "nds-vanilla"]  # other block types (DDS App. D, NDS), after the paper's X spaces


def test_builtins_and_aliases():
    assert [s.name for s in spaces.builtin()] == BUILTIN + OTHERS
    for alias, name in zip(["xa", "xb", "xc", "xd", "xe", "rx", "ry", "ar", "av", "avr"],
                           BUILTIN + OTHERS):
        assert spaces.load(alias).name == name
        assert spaces.load(name).alias == alias


def test_refinements_accumulate():
    xe = spaces.load("xe")
    assert xe.shared == ("b", "g") and xe.non_decreasing == ("w", "d")
    assert spaces.load("xc").shared == ("b", "g") and spaces.load("xc").non_decreasing == ()
    assert spaces.load("ry").se_ratio == 0.25 and spaces.load("rx").se_ratio == 0
    assert spaces.load("ry").params["wm"].values.min() == 2.0


def test_sizes_and_dof_match_the_paper():
    # DDS Table 1: dims 16, 13, 10, 10, 10; sizes 1.8e18, 6.8e16, 3.2e14 (exact products).
    # D and E: the paper divides by 4! per sorted parameter (1.3e13, 5.5e11); dse counts the
    # non-decreasing sequences exactly: C(128+3, 4) of 128^4 widths, C(16+3, 4) of 16^4 depths.
    got = {s.name: (s.dof, s.log10_size) for s in spaces.builtin()}
    assert [got[n][0] for n in BUILTIN[:5]] == [16, 13, 10, 10, 10]
    for name, exact, paper in [("anynetxa", (16 * 128 * 3 * 6) ** 4, 1.8e18),
                               ("anynetxb", (16 * 128 * 6) ** 4 * 3, 6.8e16),
                               ("anynetxc", (16 * 128) ** 4 * 3 * 6, 3.2e14)]:
        assert 10 ** got[name][1] == pytest.approx(exact)
        assert exact == pytest.approx(paper, rel=0.03)
    xc = 16 ** 4 * 128 ** 4 * 3 * 6
    assert 10 ** got["anynetxd"][1] == pytest.approx(xc * math.comb(131, 4) / 128 ** 4)
    assert 10 ** got["anynetxe"][1] == pytest.approx(
        xc * math.comb(131, 4) / 128 ** 4 * math.comb(19, 4) / 16 ** 4)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_user_space_extends_a_builtin(tmp_path):
    path = _write(tmp_path, "mine.yaml", "extends: anynetxe\nname: mine\nse_ratio: 0.25\n"
                  "params:\n  w: {dist: log_uniform, low: 16, high: 256, q: 16}\n")
    s = spaces.load(path)
    assert s.name == "mine" and s.alias is None and s.se_ratio == 0.25
    assert s.params["w"].values.tolist() == list(range(16, 257, 16))
    assert s.params["d"].size == 16 and s.shared == ("b", "g")


@pytest.mark.parametrize("text,msg", [
    ("name: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("name: x\nkind: anynet\nparams: {}\ncolour: red\n", "unknown key"),
    ("name: x\nparams: {}\n", "missing required key 'kind'"),
    ("name: x\nkind: resnet\nparams: {}\n", "'kind' must be one of"),
    ("name: x\nkind: anynet\nparams: {d: 1, w: 8, b: 1}\n", "missing g"),
    ("name: x\nkind: anynet\nparams: {d: 1, w: 8, b: 1, g: 1, z: 2}\n", "unknown z"),
    ("name: x\nkind: anynet\nstages: 0\nparams: {d: 1, w: 8, b: 1, g: 1}\n", "'stages'"),
    ("name: x\nkind: anynet\nse_ratio: 2\nparams: {d: 1, w: 8, b: 1, g: 1}\n", "se_ratio"),
    ("name: x\nkind: anynet\nparams: {d: 1.5, w: 8, b: 1, g: 1}\n", "integer values"),
    ("name: x\nkind: anynet\nshared: [q]\nparams: {d: 1, w: 8, b: 1, g: 1}\n", "unknown param"),
    ("name: x\nkind: regnet\nshared: [b]\nparams: {d: 9, w0: 8, wa: 8, wm: 2, g: 1, b: 1}\n",
     "anynet spaces only"),
    ("name: x\nkind: regnet\nparams: {d: 9, w0: 12, wa: 8, wm: 2, g: 1, b: 1}\n",
     "multiples of 8"),
    ("name: x\nkind: regnet\nparams: {d: 9, w0: 8, wa: 8, wm: 1, g: 1, b: 1}\n",
     "greater than 1"),
    ("extends: nowhere\nname: x\n", "unknown space 'nowhere'"),
    ("name: 'a b'\nkind: anynet\nparams: {d: 1, w: 8, b: 1, g: 1}\n", "'name' must be"),
])
def test_user_space_errors_say_what_is_wrong(tmp_path, text, msg):
    with pytest.raises(DseError, match=msg):
        spaces.load(_write(tmp_path, "bad.yaml", text))


def test_extends_cycle(tmp_path):
    _write(tmp_path, "a.yaml", "extends: b\nname: a\n")
    path = _write(tmp_path, "b.yaml", "extends: a\nname: b\n")
    with pytest.raises(DseError, match="cycle"):
        spaces.load(path)


def test_unknown_space_lists_valid_names():
    with pytest.raises(DseError, match=r"unknown space 'anynetxz'; valid names: anynetxa \(xa\)"):
        spaces.load("anynetxz")
    with pytest.raises(DseError, match="does not exist"):
        spaces.load("nope/mine.yaml")
