"""Dataset readers on small fake copies in the official on-disk formats, real Fashion-MNIST
when installed, and the on-device epoch: normalization, crop, flip, shuffling."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from dse.data import datasets, readers
from dse.data import device as data
from dse.errors import DseError

FASHION = readers.DEBIAN_FASHION_MNIST
has_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                 reason="Debian's dataset-fashion-mnist is not installed")


def fake_cifar10(root, n=20, seed=0):
    """A cifar-10-batches-py folder with n images per batch, in the official format."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for name in readers.CIFAR_TRAIN + readers.CIFAR_TEST:
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(d / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": x, "labels": y,
                         "filenames": [f"{i}.png" for i in range(n)]}, f)
        batches[name] = (x, y)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}, f)
    return d, batches


def write_idx(path, arr, gz):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    (gzip.open(path, "wb") if gz else open(path, "wb")).write(raw)


def fake_fashion(d, n_train=30, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {"train_x": rng.integers(0, 256, (n_train, 28, 28)),
              "train_y": rng.integers(0, 10, n_train),
              "test_x": rng.integers(0, 256, (n_test, 28, 28)),
              "test_y": rng.integers(0, 10, n_test)}
    for key, stem in readers.FASHION_FILES.items():
        write_idx(d / (stem + (".gz" if gz else "")), arrays[key], gz)
    return arrays


def test_cifar10_reads_the_official_pickles(tmp_path):
    _, batches = fake_cifar10(tmp_path)
    a = datasets.load("cifar10", tmp_path)
    assert a.train_x.shape == (100, 3, 32, 32) and a.test_x.shape == (20, 3, 32, 32)
    assert a.train_x.dtype == np.uint8 and a.train_y.dtype == np.int64
    x1, y1 = batches["data_batch_2"]
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32×32
    np.testing.assert_array_equal(a.train_x[20 + 3, 1, 5], x1[3, 1024 + 5 * 32: 1024 + 6 * 32])
    assert a.train_y[20:40].tolist() == y1
    assert a.test_y.tolist() == batches["test_batch"][1]
    # the folder itself may be given
    assert datasets.load("cifar10", tmp_path / "cifar-10-batches-py").train_x.shape[0] == 100


def test_cifar10_damaged_or_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("DSE_DATA", raising=False)
    with pytest.raises(DseError, match=r"cifar10 not found; looked in .*cifar-10-batches-py.*"
                                       r"--download"):
        datasets.load("cifar10", tmp_path)
    d, _ = fake_cifar10(tmp_path)
    (d / "data_batch_3").write_bytes((d / "data_batch_3").read_bytes()[:500])
    with pytest.raises(DseError, match="data_batch_3 is damaged"):
        datasets.load("cifar10", tmp_path)


def test_cifar10_reads_batches_pickled_by_python_2_and_old_protocols(tmp_path):
    """The official batches are Python 2 pickles (protocol 2) that name
    numpy.core.multiarray._reconstruct; numpy 2 and Python 3 at protocol 2 name
    numpy._core and _codecs.encode."""
    d, batches = fake_cifar10(tmp_path)
    for name in readers.CIFAR_TRAIN + readers.CIFAR_TEST:
        x, y = batches[name]
        raw = pickle.dumps({"batch_label": name, "data": x, "labels": y,
                            "filenames": [b"a.png"] * len(y)}, protocol=2)
        if name == "data_batch_1":
            raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
            assert b"cnumpy.core.multiarray\n_reconstruct" in raw
        (d / name).write_bytes(raw)
    a = datasets.load("cifar10", tmp_path)
    np.testing.assert_array_equal(a.train_x[:20].reshape(20, -1), batches["data_batch_1"][0])
    assert a.test_y.tolist() == batches["test_batch"][1]


class Crafted:
    """A pickle that runs a command when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["system", "eval", "array of objects"])
def test_a_crafted_cifar_batch_runs_no_code(tmp_path, payload):
    d, _ = fake_cifar10(tmp_path)
    marker = tmp_path / "ran"
    entry = {"system": lambda: {"data": Crafted(marker), "labels": [0]},
             "eval": lambda: {"data": eval, "labels": [0]},  # a global other than numpy's
             "array of objects": lambda: {"data": np.array([Crafted(marker)], dtype=object),
                                          "labels": [0]}}[payload]()
    (d / "data_batch_4").write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DseError) as e:
        datasets.load("cifar10", tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{d / 'data_batch_4'} is not an official CIFAR-10 batch: it refers "
                          "to ") and "\n" not in msg and "could run code" in msg
    assert not marker.exists()


def test_data_dir_from_environment(tmp_path, monkeypatch):
    fake_cifar10(tmp_path)
    monkeypatch.setenv("DSE_DATA", str(tmp_path))
    assert datasets.load("cifar10").train_x.shape[0] == 100


@pytest.mark.parametrize("layout,gz", [("FashionMNIST/raw", False), ("fashion-mnist", True),
                                       (".", True)])
def test_fashion_mnist_reads_idx_files(tmp_path, layout, gz):
    arrays = fake_fashion(tmp_path / layout, gz=gz)
    a = datasets.load("fashion-mnist", tmp_path)
    assert a.train_x.shape == (30, 1, 28, 28) and a.test_x.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(a.train_x[:, 0], arrays["train_x"])
    np.testing.assert_array_equal(a.test_y, arrays["test_y"])
    assert a.train_x.flags.writeable


def test_fashion_mnist_damaged_or_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(DseError, match="fashion-mnist not found; looked in .*nowhere"):
        datasets.load("fashion-mnist", tmp_path)
    fake_fashion(tmp_path)
    f = tmp_path / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:20])  # truncated gzip stream
    with pytest.raises(DseError, match="t10k-labels-idx1-ubyte.gz is damaged"):
        datasets.load("fashion-mnist", tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(7), gz=True)  # 7 labels, 10 images
    with pytest.raises(DseError, match="do not match"):
        datasets.load("fashion-mnist", tmp_path)


def test_streamed_and_unknown_datasets_are_not_read_into_memory():
    with pytest.raises(DseError, match="imagenet cannot be read into memory: it is streamed"):
        datasets.load("imagenet")
    with pytest.raises(DseError, match="unknown dataset 'mnist'"):
        datasets.load("mnist")


@has_fashion
def test_debian_fashion_mnist_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("DSE_DATA", raising=False)
    a = datasets.load("fashion-mnist", tmp_path)  # nothing in tmp_path: falls back to Debian's
    assert a.source == str(FASHION)
    assert a.train_x.shape == (60000, 1, 28, 28) and a.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(a.train_y).tolist() == [6000] * 10
    assert np.bincount(a.test_y).tolist() == [1000] * 10


def test_synthetic_is_deterministic_and_balanced():
    a, b = readers.synthetic(), readers.synthetic.__wrapped__()
    np.testing.assert_array_equal(a.train_x, b.train_x)
    assert a.train_x.shape == (10_000, 3, 32, 32) and a.test_x.shape == (2_000, 3, 32, 32)
    counts = np.bincount(a.train_y, minlength=10)
    assert counts.min() > 800
    # the class signal is there: per-class mean colours differ by far more than noise
    means = np.stack([a.train_x[a.train_y == c].mean(axis=(0, 2, 3)) for c in range(10)])
    assert np.ptp(means, axis=0).max() > 50


def small_device_data(n=300, subset=None):
    return data.DeviceData(datasets.Arrays("synthetic", *[
        v[:n] if i < 2 else v for i, v in enumerate(
            (readers.synthetic().train_x, readers.synthetic().train_y,
             readers.synthetic().test_x[:100], readers.synthetic().test_y[:100]))], "test"),
        "cpu", subset)


def test_epoch_is_normalized_shuffled_and_drops_the_partial_batch():
    d = small_device_data()
    g = torch.Generator().manual_seed(0)
    xs, ys = d.epoch(64, g, augment=False)
    assert xs.shape == (4, 64, 3, 32, 32) and ys.shape == (4, 64)  # 300 // 64 = 4 steps
    full = d.normalize(d.train_x)
    assert abs(full.mean().item()) < 0.05 and abs(full.std().item() - 1) < 0.05
    # every row is the normalized image of a distinct training example with its label
    flat = xs.reshape(256, -1)
    idx = [int(torch.argmin((full.reshape(300, -1) - r).abs().sum(1))) for r in flat[:40]]
    assert len(set(idx)) == 40
    for k, j in enumerate(idx):
        torch.testing.assert_close(flat[k], full[j].reshape(-1))
        assert ys.reshape(-1)[k] == d.train_y[j]
    assert idx != sorted(idx)


def test_augment_is_a_padded_crop_and_flip_of_each_image():
    d = small_device_data()
    x = d.normalize(d.train_x[:32])
    out = d.augment(x, torch.Generator().manual_seed(1))
    p = d.pad
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    shifts, flips = set(), 0
    for i in range(32):
        found = [(dy, dx, f) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 for f in (False, True)
                 if torch.equal(out[i], (lambda c: c.flip(2) if f else c)(
                     padded[i, :, dy: dy + 32, dx: dx + 32]))]
        assert found, f"image {i} is not a crop of its padded source"
        shifts.add(found[0][:2])
        flips += found[0][2]
    assert len(shifts) > 10 and 4 <= flips <= 28


def test_channels_last_epoch_equals_the_contiguous_one():
    d = small_device_data()
    a, ya = d.epoch(64, torch.Generator().manual_seed(3))
    b, yb = d.epoch(64, torch.Generator().manual_seed(3), channels_last=True)
    assert b[1].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(a, b)
    assert torch.equal(ya, yb)


def test_train_subset_is_fixed_and_checked():
    a = small_device_data(subset=100)
    b = small_device_data(subset=100)
    assert a.n_train == 100 and torch.equal(a.train_x, b.train_x)
    with pytest.raises(DseError, match="train_subset 400 exceeds the 300 training images"):
        small_device_data(subset=400)
    with pytest.raises(DseError, match="batch_size 512 exceeds the 300 training images"):
        small_device_data().epoch(512, torch.Generator())
