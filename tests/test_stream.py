"""ImageNet streamed from disk (dse.data.ondisk) on a tiny generated tree in ImageNet's layout:
listing and its errors, the crops against torchvision's, batches, determinism, the test
split, undecodable files, and one epoch of dse.train.trainer.train through it. CPU only."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from dse.data import ondisk as stream
from dse.errors import DseError
from dse.space.spec import AnyNetSpec, Task
from dse.train import trainer as train

CLASSES = ("n01440764", "n01443537", "n01484850")
SIZES = [(40, 30), (30, 44), (64, 48), (50, 50), (37, 53), (90, 60)]  # (w, h), non-square
R = 32
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TINY = AnyNetSpec((1, 1), (8, 16), (1, 1), (8, 8), stem_w=8)


def write_tree(root, n_train=6, n_val=2, classes=CLASSES, seed=0):
    """root/{train,val}/<class>/*.JPEG: class k is mostly colour k, with noise; one grey,
    one CMYK and one PNG named .JPEG among them, as ImageNet has."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                w, h = SIZES[(i + k) % len(SIZES)]
                colour = np.roll([200, 40, 40], k)
                x = np.clip(colour + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                im, fmt = Image.fromarray(x), "JPEG"
                if (split, k, i) == ("train", 0, 1):
                    im = im.convert("L")
                elif (split, k, i) == ("train", 1, 2):
                    im = im.convert("CMYK")
                elif (split, k, i) == ("train", 2, 3):
                    fmt = "PNG"
                im.save(d / f"{c}_{i}.JPEG", format=fmt, quality=90)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = write_tree(tmp_path_factory.mktemp("imagenet"))
    (root / "train" / CLASSES[0] / "README.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def data(tree):
    return stream.StreamData(tree, "cpu", resolution=R, workers=0)


def unnormalize(x):
    """Normalized batches back to uint8 values (exact up to float rounding)."""
    mean = torch.tensor(stream.MEAN)[:, None, None] * 255
    std = torch.tensor(stream.STD)[:, None, None] * 255
    return x.float() * std + mean


# ---- listing -----------------------------------------------------------------------------------

def test_list_images_counts_labels_and_sorts(tree):
    images = stream.list_images(tree)
    train_files, train_labels, val_files, val_labels, classes = images
    assert classes == CLASSES
    assert len(train_files) == 18 and len(val_files) == 6  # README.txt is not an image
    assert train_labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert val_labels.tolist() == [0, 0, 1, 1, 2, 2]
    names = [stream.os.fsdecode(f) for f in train_files]
    assert names[:2] == [str(tree / "train" / CLASSES[0] / f"{CLASSES[0]}_{i}.JPEG")
                         for i in range(2)]


@pytest.mark.parametrize("breakage,message", [
    ("no val", r"has train/ but no val/ folder; ImageNet must be laid out as train/<class>"),
    ("no train", r"has no train/ folder"),
    ("flat val", r"val holds images but no class folders; sort them into val/<class>/"),
    ("other classes", r"class folders of .*train and .*val differ: only in train: n01484850; "
                      r"only in val: n09999999"),
    ("empty class", r"class 'n01443537' has no images in .*val/n01443537"),
])
def test_a_broken_tree_is_one_clear_error(tmp_path, breakage, message):
    root = write_tree(tmp_path, n_train=1, n_val=1)
    val = root / "val"
    if breakage == "no val":
        _rmtree(val)
    elif breakage == "no train":
        _rmtree(root / "train")
    elif breakage == "flat val":
        for d in list(val.iterdir()):
            for f in d.iterdir():
                f.rename(val / f.name)
            d.rmdir()
    elif breakage == "other classes":
        (val / CLASSES[2]).rename(val / "n09999999")
    elif breakage == "empty class":
        for f in (val / CLASSES[1]).iterdir():
            f.unlink()
    with pytest.raises(DseError, match=message) as e:
        stream.StreamData(root, "cpu", resolution=R, workers=0)
    assert "\n" not in str(e.value)


def _rmtree(d):
    for p in sorted(d.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    d.rmdir()


# ---- the transforms ------------------------------------------------------------------------------

def test_crop_box_follows_random_resized_crop():
    rnd = stream.random.Random(0)
    for h, w in [(375, 500), (500, 333), (60, 90), (8, 8)]:
        for _ in range(200):
            top, left, ch, cw = stream.crop_box(h, w, rnd)
            assert 0 <= top <= h - ch and 0 <= left <= w - cw and ch > 0 and cw > 0
            if (h, w) != (8, 8):  # rounding dominates tiny images
                assert 0.07 <= ch * cw / (h * w) <= 1.0
                assert 0.7 <= cw / ch <= 1.4
    # no crop of 8–100% area with aspect 3/4..4/3 fits a 10×200 strip: the widest centred one
    assert stream.crop_box(10, 200, rnd) == (0, 93, 10, 13)


def test_images_are_torchvisions_resized_crops_and_centre_crops(tree):
    images = stream.list_images(tree)
    ds = stream._Images(images.train_files, images.train_labels, R)
    for i in (0, 1, 8, 15):  # RGB, grey, CMYK, PNG
        x = stream.decode(stream.os.fsdecode(images.train_files[i]))
        assert x.shape[0] == 3 and x.dtype == torch.uint8
        seed = 1000 + i
        rnd = stream.random.Random(seed)
        box = stream.crop_box(x.shape[1], x.shape[2], rnd)
        want = TF.resized_crop(x, *box, [R, R], antialias=True)
        if rnd.random() < 0.5:
            want = want.flip(2)
        got, y = ds[(i, seed)]
        assert got.shape == (R, R, 3) and y == images.train_labels[i]
        assert torch.equal(got.permute(2, 0, 1), want)
        s = round(R * 256 / 224)
        centre = TF.center_crop(TF.resize(x, s, antialias=True), [R, R])
        got, _ = ds[(i, -1)]
        assert torch.equal(got.permute(2, 0, 1), centre)


# ---- batches -------------------------------------------------------------------------------------

def test_batches_are_normalized_labelled_and_full(data):
    assert (data.n_train, data.n_test, data.num_classes) == (18, 6, 3)
    assert data.image_shape == (3, R, R) and data.steps(4) == 4
    batches = list(data.batches(4, torch.Generator().manual_seed(0)))
    assert len(batches) == 4
    for x, y in batches:
        assert x.shape == (4, 3, R, R) and x.dtype == torch.float32 and x.is_contiguous()
        assert torch.isfinite(x).all() and abs(x.mean().item()) < 2.5
        raw = unnormalize(x)
        assert raw.min() > -0.01 and raw.max() < 255.01
        assert (raw - raw.round()).abs().max() < 1e-3  # uint8 values, normalized exactly
        assert y.dtype == torch.int64 and ((y >= 0) & (y < 3)).all()
    seen = torch.cat([y for _, y in batches])
    assert len(seen) == 16 and set(seen.tolist()) == {0, 1, 2}
    x, _ = next(data.batches(4, torch.Generator().manual_seed(0), dtype=torch.bfloat16,
                             channels_last=True))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x.float(), batches[0][0], atol=0.02, rtol=0.01)


def test_batches_follow_the_generator_and_not_the_workers(tree, data):
    def epoch(d, seed):
        return list(d.batches(4, torch.Generator().manual_seed(seed)))

    a, b, c = epoch(data, 0), epoch(data, 0), epoch(data, 1)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in c]))
    with_workers = stream.StreamData(tree, "cpu", resolution=R, workers=2)
    w = epoch(with_workers, 0)
    assert all(torch.equal(xa, xw) and torch.equal(ya, yw) for (xa, ya), (xw, yw) in zip(a, w))
    assert len(list(with_workers.test_batches(4))) == 2  # persistent workers, second pass
    next(with_workers.batches(4, torch.Generator().manual_seed(5)))  # a pass left unfinished …
    w = epoch(with_workers, 0)  # … does not leak into the next one
    assert all(torch.equal(xa, xw) and torch.equal(ya, yw) for (xa, ya), (xw, yw) in zip(a, w))
    with_workers.close()


def test_without_augmentation_training_images_get_the_test_transform(tree, data):
    images = stream.list_images(tree)
    ds = stream._Images(images.train_files, images.train_labels, R)
    centres = torch.stack([ds[(i, -1)][0].permute(2, 0, 1) for i in range(18)]).float()
    for x, y in data.batches(6, torch.Generator().manual_seed(2), augment=False):
        for xi, yi in zip(unnormalize(x).round(), y):
            j = int((centres - xi).abs().flatten(1).sum(1).argmin())
            assert torch.equal(centres[j], xi) and images.train_labels[j] == yi


def test_test_batches_are_the_val_split_in_order(data):
    batches = list(data.test_batches(4, channels_last=True))
    assert [len(y) for _, y in batches] == [4, 2]
    assert torch.cat([y for _, y in batches]).tolist() == [0, 0, 1, 1, 2, 2]
    assert batches[0][0].shape == (4, 3, R, R)
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last)


def test_train_subset_and_batch_size_are_checked(tree):
    a = stream.StreamData(tree, "cpu", train_subset=10, resolution=R, workers=0)
    b = stream.StreamData(tree, "cpu", train_subset=10, resolution=R, workers=0)
    assert a.n_train == 10 and np.array_equal(a._images.files, b._images.files)
    with pytest.raises(DseError, match="train_subset 19 exceeds the 18 training images of "
                                       "imagenet"):
        stream.StreamData(tree, "cpu", train_subset=19, resolution=R, workers=0)
    with pytest.raises(DseError, match="batch_size 11 exceeds the 10 training images"):
        a.steps(11)
    with pytest.raises(DseError, match="resolution must be an integer ≥ 8"):
        stream.StreamData(tree, "cpu", resolution=4, workers=0)


@pytest.mark.parametrize("workers", [0, 1])
def test_an_undecodable_file_is_one_line_naming_it(tmp_path, workers):
    root = write_tree(tmp_path, n_train=2, n_val=1)
    bad = root / "train" / CLASSES[1] / f"{CLASSES[1]}_0.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    d = stream.StreamData(root, "cpu", resolution=R, workers=workers)
    with pytest.raises(DseError, match=r"n01443537_0.JPEG cannot be decoded as an image "
                                       r"\(.*truncated.*\); replace or remove it") as e:
        list(d.batches(6, torch.Generator().manual_seed(0)))
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)
    assert len(list(d.test_batches(10))) == 1  # the val split is fine, and the loader too


# ---- training through it -------------------------------------------------------------------------

def test_a_tiny_model_trains_on_streamed_images(data):
    task = Task(R, "cifar", 3, 3)
    losses = []
    out = train.train(TINY, task, data, train.Recipe(epochs=2, batch_size=6, lr=0.1),
                      on_epoch=lambda e, loss: losses.append(loss))
    assert out.status == "done" and out.epochs_run == 2 and len(losses) == 2
    assert 0 <= out.error <= 100 and out.images_per_second > 0
    assert out.channels_last and out.precision == "fp32"
    with pytest.raises(DseError, match="models with 2 outputs cannot train on imagenet, whose "
                                       "labels run to 2"):
        train.train(TINY, Task(R, "cifar", 3, 2), data, train.Recipe(epochs=1, batch_size=6))
    with pytest.raises(DseError, match=r"models for 224×224×3 inputs cannot train on imagenet "
                                       r"images \(3, 32, 32\)"):
        train.train(TINY, Task(), data, train.Recipe(epochs=1, batch_size=6))


@pytest.mark.gpu
@cuda
def test_streamed_training_on_cuda_replays_a_graph(tree):
    d = stream.StreamData(tree, "cuda", resolution=R, workers=2)
    x, y = next(d.batches(6, torch.Generator("cuda").manual_seed(0), dtype=torch.bfloat16))
    assert x.device.type == y.device.type == "cuda" and x.dtype == torch.bfloat16
    task = Task(R, "cifar", 3, 3)
    fast = train.train(TINY, task, d, train.Recipe(epochs=3, batch_size=6))
    assert fast.status == "done" and fast.cuda_graph
    eager = train.train(TINY, task, d, train.Recipe(epochs=3, batch_size=6), amp=False,
                        cuda_graph=False)
    assert eager.status == "done" and not eager.cuda_graph
    d.close()
