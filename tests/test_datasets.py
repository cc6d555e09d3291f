"""Datasets of your own images (folder) and the official downsampled ImageNet, on small copies
the tests generate: reading, decoding, caching, sampling and training from the CLI, and every
mistake in a tree as one line."""

import numpy as np
import pytest
import yaml
from cli_helpers import ok, one_error, run
from PIL import Image

from dse.data import datasets, folders
from dse.errors import DseError, DseWarning
from dse.store.core import Store

CLASSES = ("cat", "dog", "eel")
COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "eel": (30, 30, 200)}
SMALL = ["--flops", "0.1M:2M"]
FAST = ["--epochs", "1", "--batch-size", "8"]


def image_tree(root, n_train=8, n_val=3, classes=CLASSES, seed=0):
    """train/ and val/ of class folders: non-square PNG and JPEG images of each class's
    colour under noise."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                w, h = (int(v) for v in rng.integers(20, 60, size=2))
                mean = np.array(COLOURS.get(c, (128, 128, 128)))
                x = np.clip(mean + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
                ext = ".png" if i % 2 else ".JPEG"
                Image.fromarray(x).save(d / f"{i}{ext}")
    return root


# ---- folder: reading ---------------------------------------------------------------------------

def test_scan_lists_classes_and_images_without_decoding(tmp_path):
    tree = folders.scan(image_tree(tmp_path / "d"))
    assert tree.classes == CLASSES and tree.test_split == "val"
    assert len(tree.train) == 24 and len(tree.test) == 9
    assert {k for _, k in tree.train} == {0, 1, 2}
    assert tree.record()["classes"] == list(CLASSES)


def test_decode_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    x = np.zeros((20, 40, 3), dtype=np.uint8)  # h 20, w 40: left half red, right half blue
    x[:, :20, 0] = 255
    x[:, 20:, 2] = 255
    Image.fromarray(x).save(tmp_path / "a.png")
    y = folders.decode(str(tmp_path / "a.png"), 10)  # → 20×10, centre 10×10
    assert y.shape == (3, 10, 10) and y.dtype == np.uint8
    assert (y[0, :, :4] > 200).all() and (y[2, :, 6:] > 200).all()  # red left, blue right
    Image.fromarray(x[:, :, :1].repeat(3, 2)).convert("L").save(tmp_path / "g.png")
    assert folders.decode(str(tmp_path / "g.png"), 8).shape == (3, 8, 8)  # grey → RGB


def test_load_decodes_once_then_reads_the_cache(tmp_path, monkeypatch):
    root = image_tree(tmp_path / "d")
    a = folders.load(root, 16, cache=tmp_path / "cache")
    assert a.train_x.shape == (24, 3, 16, 16) and a.test_x.shape == (9, 3, 16, 16)
    assert sorted(set(a.train_y.tolist())) == [0, 1, 2]
    (cached,) = (tmp_path / "cache").glob("folder-*.npz")
    monkeypatch.setattr(folders, "_decode_all", lambda *a: pytest.fail("decoded again"))
    b = folders.load(root, 16, cache=tmp_path / "cache")
    np.testing.assert_array_equal(a.train_x, b.train_x)
    with pytest.raises(pytest.fail.Exception):  # another resolution is another cache entry
        folders.load(root, 8, cache=tmp_path / "cache")
    (root / "train" / "cat" / "0.JPEG").touch()  # a changed tree is decoded again
    monkeypatch.undo()
    folders.load(root, 16, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("folder-*.npz"))) == 2


def test_parallel_and_serial_decoding_agree(tmp_path):
    root = image_tree(tmp_path / "d", n_train=25)  # 84 images: enough for the pool
    a = folders.load(root, 12, cache=tmp_path / "c1", jobs=2)
    b = folders.load(root, 12, cache=tmp_path / "c2", jobs=1)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "val").rename(r / "elsewhere"), "no val/ or test/ folder"),
    (lambda r: [p.unlink() for p in (r / "train" / "dog").iterdir()], "class 'dog' has no images"),
    (lambda r: (r / "val" / "eel").rename(r / "val" / "fish"),
     "differ: only in train: eel; only in val: fish"),
    (lambda r: (r / "train").rename(r / "training"), "has no train/ folder"),
])
def test_a_malformed_tree_is_one_clear_error(tmp_path, damage, message):
    root = image_tree(tmp_path / "d")
    damage(root)
    with pytest.raises(DseError, match=message):
        folders.scan(root)


def test_an_undecodable_image_stops_or_is_skipped(tmp_path):
    root = image_tree(tmp_path / "d")
    bad = root / "train" / "cat" / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DseError, match=f"{bad} is not a decodable image"):
        folders.load(root, 16, cache=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*.npz"))  # nothing cached from a failed read
    with pytest.warns(DseWarning, match="skipped 1 undecodable image.*broken.jpg"):
        a = folders.load(root, 16, skip_bad=True, cache=tmp_path / "c")
    assert len(a.train_y) == 24


# ---- folder: sample and train from the CLI -----------------------------------------------------

def test_sample_and_train_a_folder_dataset(tmp_path, monkeypatch):
    root, store = image_tree(tmp_path / "imgs"), tmp_path / "runs"
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "cache"))
    r = ok("sample", "--space", "rx", "--n", 2, "--dataset", "folder", "--data-dir", root,
           "--resolution", 16, *SMALL, "--store", store)
    assert "folder 16×16, 3 classes" in r.stdout
    m = Store(store).read_models("regnetx")
    assert set(m["resolution"]) == {16} and set(m["num_classes"]) == {3}
    assert set(m["stem"]) == {"cifar"}
    rec = yaml.safe_load(Store(store).definition_path("regnetx").read_text())
    assert rec["data"]["classes"] == list(CLASSES) and rec["data"]["dir"] == str(root.resolve())
    assert rec["task"] == {"resolution": 16, "stem": "cifar", "in_channels": 3, "num_classes": 3}

    r = ok("train", "--store", store, *FAST)  # the tree is found where the store recorded it
    assert "folder: 24 training images, 9 test images" in r.stdout
    res = Store(store).read_results("regnetx")
    assert len(res) == 2 and (res["status"] == "done").all()
    (cached,) = (tmp_path / "cache").glob("folder-*.npz")
    before = cached.stat().st_mtime_ns
    ok("sample", "--space", "rx", "--n", 1, "--seed", 1, "--dataset", "folder", "--data-dir",
       root, "--resolution", 16, *SMALL, "--store", store)
    ok("train", "--store", store, *FAST)  # reuses the cache
    assert cached.stat().st_mtime_ns == before and len(Store(store).read_results("regnetx")) == 3


def test_folder_mistakes_are_one_line_and_store_nothing(tmp_path):
    root, store = image_tree(tmp_path / "imgs"), tmp_path / "runs"
    assert "--resolution is needed for folder" in one_error(run(
        "sample", "--space", "rx", "--n", 1, "--dataset", "folder", "--data-dir", root,
        "--store", store))
    assert "--resolution 64 does not apply to cifar10" in one_error(run(
        "sample", "--space", "rx", "--n", 1, "--resolution", 64, "--store", store))
    assert "has no train/ folder" in one_error(run(
        "sample", "--space", "rx", "--n", 1, "--dataset", "folder", "--data-dir", tmp_path,
        "--resolution", 16, "--store", store))
    assert not store.exists()
    ok("sample", "--space", "rx", "--n", 1, "--dataset", "folder", "--data-dir", root,
       "--resolution", 16, *SMALL, "--store", store)
    assert "holds models for 16×16×3 inputs, 3 classes, not 32×32×3" in one_error(run(
        "sample", "--space", "rx", "--n", 1, "--dataset", "folder", "--data-dir", root,
        "--resolution", 32, "--store", store))
    other = image_tree(tmp_path / "other", classes=("ant", "bee", "cow"))
    assert "are not those the regnetx models were sampled for" in one_error(run(
        "train", "--store", store, "--data-dir", other, *FAST))
    bad = root / "val" / "dog" / "x.png"
    bad.write_bytes(b"\x89PNG broken")
    assert f"{bad} is not a decodable image" in one_error(run(
        "train", "--store", store, "--cache-dir", tmp_path / "c", *FAST))
    assert not list(Store(store).results_dir("regnetx").glob("*"))
    r = ok("train", "--store", store, "--cache-dir", tmp_path / "c", "--skip-bad-images", *FAST)
    assert "Warning: skipped 1 undecodable image" in r.stderr


# ---- downsampled ImageNet ----------------------------------------------------------------------

def downsampled(root, r=16, batches=2, n=150, one_folder=False, seed=0):
    """Fake files in the official format: channel planes, labels 1..1000 (1 and 1000 used)."""
    rng = np.random.default_rng(seed)
    tr = root if one_folder else root / f"Imagenet{r}_train_npz"
    va = root if one_folder else root / f"Imagenet{r}_val_npz"
    tr.mkdir(parents=True, exist_ok=True)
    va.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, d in [(f"train_data_batch_{i + 1}", tr) for i in range(batches)] + \
            [("val_data", va)]:
        x = rng.integers(0, 256, size=(n, 3 * r * r), dtype=np.uint8)
        y = rng.integers(1, 1001, size=n)
        y[:2] = (1, 1000)
        np.savez(d / f"{name}.npz", data=x, labels=y.tolist())
        out[name] = (x, y)
    return out


@pytest.mark.parametrize("one_folder", [False, True])
def test_downsampled_imagenet_reads_the_official_format(tmp_path, one_folder):
    raw = downsampled(tmp_path, 16, one_folder=one_folder)
    a = datasets.load("imagenet16", tmp_path)
    assert a.train_x.shape == (300, 3, 16, 16) and a.test_x.shape == (150, 3, 16, 16)
    x, y = raw["train_data_batch_1"]
    assert a.train_x[0, 1, 2, 3] == x[0, 256 + 2 * 16 + 3]  # green plane, row 2, column 3
    np.testing.assert_array_equal(a.train_y[:150], y - 1)
    assert a.train_y.min() == 0 and a.train_y.max() == 999


def test_downsampled_imagenet_damage_is_one_line(tmp_path):
    raw = downsampled(tmp_path, 16)
    x, y = raw["val_data"]
    np.savez(tmp_path / "Imagenet16_val_npz" / "val_data.npz", data=x, labels=y - 1)
    with pytest.raises(DseError, match="labels outside 1..1000"):
        datasets.load("imagenet16", tmp_path)
    with pytest.raises(DseError, match="does not hold 32×32 images"):
        downsampled(tmp_path / "b", 16, batches=1)
        (tmp_path / "b" / "Imagenet16_train_npz").rename(tmp_path / "b" / "Imagenet32_train_npz")
        (tmp_path / "b" / "Imagenet16_val_npz").rename(tmp_path / "b" / "Imagenet32_val_npz")
        datasets.load("imagenet32", tmp_path / "b")
    with pytest.raises(DseError, match="imagenet64 not found; looked in"):
        datasets.load("imagenet64", tmp_path / "nowhere")


def test_sample_and_train_downsampled_imagenet(tmp_path):
    downsampled(tmp_path / "data", 16)
    store = tmp_path / "runs"
    ok("sample", "--space", "rx", "--n", 1, "--dataset", "imagenet16", *SMALL, "--store", store)
    m = Store(store).read_models("regnetx")
    assert (m["resolution"] == 16).all() and (m["num_classes"] == 1000).all()
    ok("train", "--store", store, "--data-dir", tmp_path / "data", "--epochs", "1",
       "--batch-size", "32")
    (status,) = Store(store).read_results("regnetx")["status"]
    assert status == "done"


def test_every_dataset_has_a_default_window_by_the_paper_rule():
    for name, d in datasets.DATASETS.items():
        if d.task is not None:
            lo, hi = datasets.default_flops_window(name)
            assert 0 < lo < hi and hi / lo == pytest.approx(400 / 360, rel=0.02)  # 0.1M rounding
    assert datasets.default_flops_window("imagenet32") == datasets.default_flops_window("cifar10")
    assert datasets.flops_window(datasets.task("imagenet")) == (360e6, 400e6)


# ---- ImageNet, streamed ------------------------------------------------------------------------

@pytest.mark.slow  # worker processes: test_cli_train.py in the default tier
def test_sample_and_train_imagenet_streamed_by_worker_processes(tmp_path):
    """The paper's setting end to end through the CLI, on a tiny ImageNet-layout tree of
    JPEGs: two worker processes, each streaming through DataLoader workers of its own."""
    image_tree(tmp_path / "data" / "imagenet", n_train=4, n_val=2,
               classes=("n01440764", "n01443537", "n01484850"))
    store = tmp_path / "runs"
    ok("sample", "--space", "rx", "--n", 2, "--dataset", "imagenet", "--flops", "10M:60M",
       "--store", store)
    r = ok("train", "--store", store, "--data-dir", tmp_path / "data", "--epochs", "1",
           "--batch-size", "4", "--jobs", "2")
    assert "imagenet: 12 training images, 6 test images" in r.stdout and "(streamed)" in r.stdout
    res = Store(store).read_results("regnetx")
    assert len(res) == 2 and (res["status"] == "done").all(), res["message"].tolist()
    assert not res["channels_last"].any()  # NCHW on CPU at 224 px (dse.train.trainer)


def test_data_that_does_not_fit_stops_the_run_before_anything_is_claimed(tmp_path, monkeypatch):
    from dse.data import device as data

    downsampled(tmp_path / "data", 16)
    store = tmp_path / "runs"
    ok("sample", "--space", "rx", "--n", 1, "--dataset", "imagenet16", *SMALL, "--store", store)
    monkeypatch.setattr(data, "free_memory", lambda device: 1 << 20)  # 1 MiB free
    msg = one_error(run("train", "--store", store, "--data-dir", tmp_path / "data",
                        "--jobs", "2"))
    assert "imagenet16 for 2 workers on cpu needs 2.1 GB on cpu" in msg and "are free" in msg
    assert not list(Store(store).claims_dir("regnetx").glob("*"))
    assert not list(Store(store).results_dir("regnetx").glob("*"))
