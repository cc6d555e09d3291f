"""The paper's 24 RegNets by name: widths, complexity equal to pycls's published numbers,
case-insensitive names usable wherever a spec is accepted (pure: no torch)."""

import pytest

from dse.errors import DseError
from dse.space import zoo
from dse.space.complexity import complexity
from dse.space.spec import Task, parse_spec

# pycls dev/model_complexity.json (224×224 ImageNet, 1000 classes): flops, params, acts
PYCLS = {
    "RegNetX-200MF": (199_040_872, 2_684_792, 2_164_056),
    "RegNetX-400MF": (397_678_568, 5_157_512, 3_143_272),
    "RegNetX-600MF": (600_891_112, 6_196_040, 3_975_096),
    "RegNetX-800MF": (799_700_712, 7_259_656, 5_148_744),
    "RegNetX-1.6GF": (1_602_850_792, 9_190_136, 7_933_512),
    "RegNetX-3.2GF": (3_176_622_952, 15_296_552, 11_367_432),
    "RegNetX-4.0GF": (3_964_499_816, 22_118_248, 12_201_608),
    "RegNetX-6.4GF": (6_460_292_264, 26_209_256, 16_369_744),
    "RegNetX-8.0GF": (7_995_133_416, 39_572_648, 14_059_688),
    "RegNetX-12GF": (12_086_679_016, 46_106_056, 21_366_568),
    "RegNetX-16GF": (15_940_756_456, 54_278_536, 25_515_496),
    "RegNetX-32GF": (31_735_930_792, 107_811_560, 36_302_160),
    "RegNetY-200MF": (199_519_076, 3_162_996, 2_168_052),
    "RegNetY-400MF": (401_849_056, 4_344_144, 3_892_496),
    "RegNetY-600MF": (601_227_608, 6_055_160, 4_334_296),
    "RegNetY-800MF": (797_183_328, 6_263_168, 5_249_888),
    "RegNetY-1.6GF": (1_612_087_326, 11_202_430, 8_044_814),
    "RegNetY-3.2GF": (3_176_496_162, 19_436_338, 11_263_418),
    "RegNetY-4.0GF": (3_973_301_344, 20_646_656, 12_287_200),
    "RegNetY-6.4GF": (6_355_221_876, 30_583_252, 16_407_188),
    "RegNetY-8.0GF": (7_963_074_196, 39_180_068, 17_968_916),
    "RegNetY-12GF": (12_092_395_504, 51_822_544, 21_384_496),
    "RegNetY-16GF": (15_911_534_044, 83_590_140, 23_041_228),
    "RegNetY-32GF": (32_279_583_362, 145_046_770, 30_261_570),
}
# pycls MODEL_ZOO.md as published: flops (B), params (M), acts (M), one decimal
_X = [(0.2, 2.7, 2.2), (0.4, 5.2, 3.1), (0.6, 6.2, 4.0), (0.8, 7.3, 5.1), (1.6, 9.2, 7.9),
      (3.2, 15.3, 11.4), (4.0, 22.1, 12.2), (6.5, 26.2, 16.4), (8.0, 39.6, 14.1),
      (12.1, 46.1, 21.4), (15.9, 54.3, 25.5), (31.7, 107.8, 36.3)]
_Y = [(0.2, 3.2, 2.2), (0.4, 4.3, 3.9), (0.6, 6.1, 4.3), (0.8, 6.3, 5.2), (1.6, 11.2, 8.0),
      (3.2, 19.4, 11.3), (4.0, 20.6, 12.3), (6.4, 30.6, 16.4), (8.0, 39.2, 18.0),
      (12.1, 51.8, 21.4), (15.9, 83.6, 23.0), (32.3, 145.0, 30.3)]
MODEL_ZOO_MD = dict(zip(PYCLS, _X + _Y))

def test_the_zoo_is_the_papers_24_models():
    assert zoo.regnet_names() == list(PYCLS)


@pytest.mark.parametrize("name", list(PYCLS))
def test_complexity_equals_pycls_exactly(name):
    spec, rp = parse_spec(name)
    got = complexity(spec, Task())
    assert (got["flops"], got["params"], got["acts"]) == PYCLS[name]
    assert rp["b"] == 1 and (spec.se_ratio == 0.25) == name.startswith("RegNetY")
    assert (round(got["flops"] / 1e9, 1), round(got["params"] / 1e6, 1),
            round(got["acts"] / 1e6, 1)) == MODEL_ZOO_MD[name]


def test_widths_after_pycls_rounding():
    # RegNetX-8.0GF: the first stage is narrower than g = 120, so its group width drops to 80
    spec, _ = parse_spec("RegNetX-8.0GF")
    assert spec.ws == (80, 240, 720, 1920) and spec.gs == (80, 120, 120, 120)
    assert spec.ds == (2, 5, 15, 1)
    spec, _ = parse_spec("RegNetY-32GF")
    assert spec.ws == (232, 696, 1392, 3712) and spec.ds == (2, 5, 12, 1)


@pytest.mark.parametrize("text", ["regnety-8.0gf", "REGNETY-8.0GF", " RegNetY-8.0GF "])
def test_names_are_case_insensitive_and_equal_their_json(text):
    j = dict(kind="regnet", depth=17, w0=192, wa=76.82, wm=2.19, group_w=56, se_ratio=0.25)
    assert parse_spec(text) == parse_spec(j)
    assert zoo.canonical(text) == "RegNetY-8.0GF"


def test_unknown_name_suggests_near_misses():
    with pytest.raises(DseError, match="did you mean RegNetX-400MF"):
        parse_spec("RegNetX-410MF")
    with pytest.raises(DseError, match="not valid JSON"):
        parse_spec("{bad json")


def test_a_reference_is_not_a_spec():
    assert zoo.canonical("ResNet50") == "resnet50" and zoo.is_reference("resnet50")
    with pytest.raises(DseError, match="torchvision reference model"):
        parse_spec("resnet50")


def test_reference_families_and_native_resolutions():
    res = {n: r.resolution for n, r in zoo.REFERENCES.items() if r.family == "EfficientNet"}
    assert list(res.values()) == [224, 240, 260, 300, 380, 456]
    assert {zoo.family(n) for n in zoo.REFERENCES} == \
        {"ResNet", "ResNeXt", "EfficientNet", "MobileNetV2"}


def test_acts_grow_with_the_square_root_of_flops_across_the_zoo():
    from dse.compare import speedfit

    rows = [dict(family=zoo.family(n), flops=f, acts=a) for n, (f, _, a) in PYCLS.items()]
    ex = speedfit.family_exponents(rows)
    assert ex["RegNetX"]["slope"] == pytest.approx(0.55, abs=0.005)
    assert ex["RegNetY"]["slope"] == pytest.approx(0.52, abs=0.005)
    assert min(ex["RegNetX"]["r2"], ex["RegNetY"]["r2"]) > 0.98
