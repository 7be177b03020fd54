"""jaxnets.data: the IDX reader and its errors, dataset search and loading, digits, the synthetic
sets and preprocessing."""

import gzip
import struct
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxnets import data

# ----------------------------------------------------------------------------------------- IDX files

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's bytes written independently of the reader: magic, big-endian dims, data."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, payload: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


ROUND_TRIP = {
    "uint8_3d": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    "int8_2d": np.array([[-128, 0], [5, 127]], dtype=np.int8),
    "int16_1d": np.array([-30000, 0, 1, 30000], dtype=np.int16),
    "int32_1d": np.array([-2**31, -1, 0, 7, 2**31 - 1], dtype=np.int32),
    "float32_2d": np.array([[0.5, -1.25, np.pi], [1e30, -0.0, 3e-8]], dtype=np.float32),
    "float64_1d": np.array([np.e, -1e-300, 1e300], dtype=np.float64),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_read_idx_round_trip(tmp_path, name, compress):
    expected = ROUND_TRIP[name]
    # A raw file named .gz and a gzip file without .gz: the magic bytes decide, not the name.
    path = write(tmp_path / ("a.gz" if not compress else "a"), idx_bytes(expected), compress)
    array = data.read_idx(path)
    assert array.dtype == expected.dtype and array.dtype.isnative and array.flags.writeable
    np.testing.assert_array_equal(array, expected)


def test_read_idx_empty_dimension(tmp_path):
    array = data.read_idx(write(tmp_path / "empty", idx_bytes(np.zeros((0, 28, 28), np.uint8))))
    assert array.shape == (0, 28, 28)


GOOD = idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
CORRUPTIONS = {
    "truncated": (GOOD[:-7], "truncated: header says 3x4x5 uint8 = 60 bytes of data, found 53"),
    "trailing": (GOOD + b"\0\0", "2 trailing bytes: header says 3x4x5 uint8 = 60 bytes of data, found 62"),
    "magic": (b"\x01" + GOOD[1:], "not an IDX file: expected the magic number to start with two zero bytes"),
    "dtype": (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown IDX type code 0x0A"),
    "header": (GOOD[:9], "truncated: a 3-dimensional IDX header needs 16 bytes, found 9"),
    "tiny": (b"\0\0", "truncated: expected a 4-byte IDX magic number"),
    "zero_dims": (b"\0\0\x08\0", "0 dimensions"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_read_idx_rejects_malformed_files(tmp_path, name, compress):
    payload, message = CORRUPTIONS[name]
    path = write(tmp_path / f"bad-{name}-idx3-ubyte", payload, compress)
    with pytest.raises(data.DataFileError, match="bad-" + name) as info:
        data.read_idx(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_read_idx_corrupt_gzip_names_the_file(tmp_path, damage):
    packed = bytearray(gzip.compress(GOOD))
    if damage == "cut":
        packed = packed[:len(packed) // 2]
    else:
        packed[-6] ^= 0xFF  # breaks the CRC-32 trailer
    path = write(tmp_path / "broken.gz", bytes(packed))
    with pytest.raises(data.DataFileError, match="broken.gz: corrupt gzip stream"):
        data.read_idx(path)


# ---------------------------------------------------------------------------------------- datasets

def write_tiny_mnist(directory: Path, n_train=12, n_test=5, compress=True, size=4) -> dict:
    """The four standard IDX files with tiny random contents; returns the arrays written."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
              "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8)}
    arrays["train-images-idx3-ubyte"][0, 0, 0] = 255  # a pixel at the top of the range
    for stem, array in arrays.items():
        write(directory / (stem + (".gz" if compress else "")), idx_bytes(array), compress)
    return arrays


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $JAXNETS_DATA, an empty HOME and a system data dir that does not exist."""
    monkeypatch.delenv("JAXNETS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "SYSTEM_DATA_DIRS", (str(tmp_path / "system"),))
    return tmp_path


def check_tiny(ds, arrays, name):
    assert ds.name == name and ds.num_classes == 10
    assert ds.x_train.shape == (12, 4, 4, 1) and ds.x_test.shape == (5, 4, 4, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    np.testing.assert_allclose(ds.x_train[..., 0] * 255, arrays["train-images-idx3-ubyte"], atol=1e-4)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.x_train.min() >= 0 and ds.x_train.max() == 1.0


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_load_fashion_mnist_from_data_dir(isolated, compress):
    arrays = write_tiny_mnist(isolated / "mine", compress=compress)
    check_tiny(data.load_fashion_mnist(isolated / "mine"), arrays, "fashion_mnist")
    check_tiny(data.load_dataset("fashion-mnist", data_dir=isolated / "mine"), arrays, "fashion_mnist")


def test_loaders_search_env_then_home_then_system(isolated, monkeypatch):
    monkeypatch.setenv("JAXNETS_DATA", str(isolated / "env"))
    arrays = write_tiny_mnist(isolated / "env" / "fashion-mnist")
    check_tiny(data.load_fashion_mnist(), arrays, "fashion_mnist")
    write_tiny_mnist(isolated / "home" / ".cache" / "jaxnets" / "mnist", n_train=3, n_test=2)
    assert data.load_mnist().x_train.shape == (3, 4, 4, 1)  # $JAXNETS_DATA/mnist is missing: falls through
    write_tiny_mnist(isolated / "system" / "mnist", n_train=7, n_test=2)
    assert data.load_mnist().x_train.shape == (3, 4, 4, 1)  # home comes before the system directory
    expected = [isolated / "env" / "mnist", isolated / "home" / ".cache" / "jaxnets" / "mnist", isolated / "system" / "mnist"]
    assert data.dataset_search_dirs("mnist") == expected
    # an explicit directory is the only one searched: never silently replaced by another
    assert data.dataset_search_dirs("mnist", isolated / "given") == [isolated / "given"]
    with pytest.raises(data.DatasetNotFoundError, match="data_dir=.*given' was given, so no other directory was searched"):
        data.load_mnist(data_dir=isolated / "given")


def test_missing_dataset_lists_dirs_and_how_to_get_it(isolated, monkeypatch):
    monkeypatch.setenv("JAXNETS_DATA", str(isolated / "env"))
    partial = isolated / "env" / "fashion-mnist"
    write_tiny_mnist(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_fashion_mnist()
    message = str(info.value)
    for directory in data.dataset_search_dirs("fashion-mnist"):
        assert str(directory) in message
    assert str(isolated / "system" / "fashion-mnist") in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "~/.cache/jaxnets/fashion-mnist" in message and "$JAXNETS_DATA/fashion-mnist" in message
    assert "lacks t10k-labels-idx1-ubyte" in message
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(data.DatasetNotFoundError, match="(?s)lacks t10k-labels-idx1-ubyte.*so no other directory"):
        data.load_fashion_mnist(partial)  # given explicitly: only it is searched, and named
    with pytest.raises(data.DatasetNotFoundError, match="mnist not found"):
        data.load_mnist()


def test_load_default_falls_back_to_digits_and_says_why(isolated):
    dataset, message = data.load_default()
    assert dataset.name == "digits"
    assert "digits" in message and "apt-get install dataset-fashion-mnist" in message
    write_tiny_mnist(isolated / "home" / ".cache" / "jaxnets" / "fashion-mnist")
    dataset, message = data.load_default()
    assert dataset.name == "fashion_mnist" and "Fashion-MNIST" in message


def test_count_mismatch_names_both_files(isolated):
    directory = isolated / "mismatch"
    write_tiny_mnist(directory, compress=False)
    write(directory / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(data.DataFileError) as info:
        data.load_fashion_mnist(directory)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte holds 5 images" in message and "t10k-labels-idx1-ubyte holds 4 labels" in message


def test_wrong_kind_of_file_is_rejected(isolated):
    directory = isolated / "wrong"
    write_tiny_mnist(directory, compress=False)
    write(directory / "train-labels-idx1-ubyte", idx_bytes(np.zeros(12, np.int32)))
    with pytest.raises(data.DataFileError, match="train-labels-idx1-ubyte: expected 1-D uint8 labels"):
        data.load_fashion_mnist(directory)
    write(directory / "train-labels-idx1-ubyte", idx_bytes(np.full(12, 10, np.uint8)))
    with pytest.raises(data.DataFileError, match=r"expected labels in \[0, 10\), found 10"):
        data.load_fashion_mnist(directory)


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; known datasets: fashion_mnist, mnist, digits"):
        data.load_dataset("cifar")
    assert set(data.DATASETS) == {"fashion_mnist", "mnist", "digits"}


SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (SYSTEM_FASHION / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("JAXNETS_DATA", raising=False)
    ds = data.load_fashion_mnist(SYSTEM_FASHION)
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.num_classes == 10
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))


def test_digits_split():
    ds = data.load_digits()
    assert ds.x_train.shape == (1438, 8, 8, 1) and ds.x_test.shape == (359, 8, 8, 1)
    assert ds.y_train.shape == (1438,) and ds.y_test.shape == (359,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0 and ds.num_classes == 10
    again = data.load_digits()
    for a, b in zip(ds[:4], again[:4]):
        np.testing.assert_array_equal(a, b)
    train_counts, test_counts = np.bincount(ds.y_train, minlength=10), np.bincount(ds.y_test, minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(0.2 * (train_counts + test_counts)))
    # No image is in both sets (the digits contain no exact duplicates across this split).
    train_rows = {row.tobytes() for row in ds.x_train.reshape(len(ds.x_train), -1)}
    assert not any(row.tobytes() in train_rows for row in ds.x_test.reshape(len(ds.x_test), -1))


# ------------------------------------------------------------------------------- synthetic sets

CLASSIFIERS = {"xor": 2, "spirals": 2, "circles": 2, "moons": 2, "blobs": 3}


@pytest.mark.parametrize("name", sorted(data.SYNTHETIC))
def test_synthetic_shapes_determinism_and_balance(name):
    assert set(data.SYNTHETIC) == {"xor", "spirals", "circles", "moons", "blobs", "bump"}
    x, y = data.make_synthetic(name, 301, key=jax.random.PRNGKey(3))
    x2, y2 = data.make_synthetic(name, 301, key=jax.random.PRNGKey(3))
    x3, _ = data.make_synthetic(name, 301, key=jax.random.PRNGKey(4))
    x4, y4 = data.make_synthetic(name, 301, key=jax.random.key(3))  # new-style typed keys work too
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(x, x4)
    assert not np.allclose(x, x3)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and np.all(np.isfinite(x))
    if name == "bump":
        assert x.shape == (301, 1) and y.shape == (301, 1) and y.dtype == np.float32
        return
    assert x.shape == (301, 2) and y.shape == (301,) and isinstance(y, np.ndarray) and y.dtype == np.int32
    counts = np.bincount(y)
    assert len(counts) == CLASSIFIERS[name] and counts.max() - counts.min() <= 1
    assert len(set(y[:50].tolist())) > 1  # shuffled, not sorted by class


def test_synthetic_geometry():
    key = jax.random.PRNGKey(0)
    x, y = data.make_xor(400, key=key, noise=0.0)
    np.testing.assert_array_equal(y, (x[:, 0] != x[:, 1]).astype(np.int32))
    assert set(map(tuple, x.tolist())) == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}
    x, y = data.make_circles(400, key=key, factor=0.3, noise=0.0)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), np.where(y == 0, 1.0, 0.3), rtol=1e-5)
    x, y = data.make_moons(400, key=key, noise=0.0)
    np.testing.assert_allclose(np.linalg.norm(x[y == 0], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(x[y == 1] - [1.0, 0.5], axis=1), 1.0, rtol=1e-5)
    x, y = data.make_spirals(400, key=key, noise=0.0)
    assert np.abs(x).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(*[np.mean(np.linalg.norm(x[y == c], axis=1)) for c in (0, 1)], atol=0.1)
    x, y = data.make_blobs(600, key=key, num_classes=4, std=0.1)
    centers = np.stack([x[y == c].mean(0) for c in range(4)])
    assert np.all(np.abs(x - centers[y]) < 1.0) and np.all(np.abs(centers) <= 10.5)
    noisy, _ = data.make_xor(400, key=key, noise=0.3)
    assert 0.2 < np.std(noisy - np.round(np.clip(noisy, 0, 1))) < 0.45


def test_bump_targets():
    x, t = data.make_bump(500, key=jax.random.PRNGKey(1))
    assert x.min() >= 0.0 and x.max() <= 3.0 and x.std() > 0.7
    np.testing.assert_array_equal(t, ((x >= 1) & (x <= 2)).astype(np.float32))
    assert set(np.unique(t).tolist()) == {0.0, 1.0}
    _, noisy = data.make_bump(500, key=jax.random.PRNGKey(1), noise=0.1)
    assert 0.05 < np.std(noisy - t) < 0.15


def test_synthetic_errors():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="unknown synthetic set 'swiss'; known synthetic sets: xor, spirals, circles"):
        data.make_synthetic("swiss", 10, key=key)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        data.make_moons(0, key=key)
    with pytest.raises(ValueError, match="factor must be in"):
        data.make_circles(10, key=key, factor=1.5)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        data.make_spirals(10, key=key, noise=-1)
    with pytest.raises(TypeError):
        data.make_xor(10, jax.random.PRNGKey(0))  # key is keyword-only


# --------------------------------------------------------------------------------- preprocessing

def test_standardize_uses_train_statistics():
    rng = np.random.default_rng(0)
    train = rng.normal([3.0, -2.0, 0.0], [2.0, 0.5, 1.0], (500, 3)).astype(np.float32)
    train[:, 2] = 7.0  # a constant feature
    test = rng.normal(0.0, 1.0, (50, 3)).astype(np.float32)
    train_s, test_s = data.standardize(train, test)
    np.testing.assert_allclose(train_s[:, :2].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train_s[:, :2].std(0), 1.0, rtol=1e-4)
    assert np.all(np.isfinite(train_s)) and np.all(train_s[:, 2] == 0.0)
    stats = data.fit_standardizer(train)
    assert stats.mean.shape == (3,) and stats.std[2] > 0
    np.testing.assert_allclose(test_s, (test - stats.mean) / stats.std, rtol=1e-6)
    np.testing.assert_allclose(test_s[:, 0], (test[:, 0] - train[:, 0].mean()) / train[:, 0].std(), rtol=1e-4)
    assert train_s.dtype == np.float32
    images = np.random.default_rng(1).random((20, 4, 4, 1), dtype=np.float32)
    assert data.fit_standardizer(images).mean.shape == (4, 4, 1)
    with pytest.raises(ValueError, match=r"fitted on features of shape \(3,\), got an array of shape \(2, 4\)"):
        stats.apply(np.zeros((2, 4)))


def test_train_validation_split():
    x = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50, dtype=np.int32)
    x_tr, y_tr, x_val, y_val = data.train_validation_split(x, y, 0.2, key=jax.random.PRNGKey(0))
    assert x_tr.shape == (40, 2) and y_tr.shape == (40,) and x_val.shape == (10, 2) and y_val.shape == (10,)
    np.testing.assert_array_equal(x_tr[:, 0], 2 * y_tr)  # pairs stay together
    np.testing.assert_array_equal(x_val[:, 0], 2 * y_val)
    assert sorted(np.concatenate([y_tr, y_val]).tolist()) == list(range(50))
    assert not np.array_equal(y_val, np.arange(40, 50))  # random, not the tail
    again = data.train_validation_split(x, y, 0.2, key=jax.random.PRNGKey(0))
    other = data.train_validation_split(x, y, 0.2, key=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(again[3], y_val)
    assert not np.array_equal(other[3], y_val)
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="validation_fraction must be in"):
            data.train_validation_split(x, y, fraction, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="50 inputs but 49 targets"):
        data.train_validation_split(x, y[:-1], 0.2, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="both must be non-empty"):
        data.train_validation_split(x[:5], y[:5], 0.01, key=jax.random.PRNGKey(0))


def test_one_hot():
    np.testing.assert_array_equal(data.one_hot(np.array([2, 0, 1]), 3),
                                  np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32))
    grid = data.one_hot(np.array([[0, 3], [1, 2]]), 4)
    assert grid.shape == (2, 2, 4) and grid.dtype == np.float32
    np.testing.assert_array_equal(grid.argmax(-1), [[0, 3], [1, 2]])
    with pytest.raises(ValueError, match=r"label 5 at index \(1,\) is outside \[0, 3\)"):
        data.one_hot(np.array([0, 5, 1]), 3)
    with pytest.raises(ValueError, match="label -1"):
        data.one_hot(np.array([-1]), 3)
    with pytest.raises(ValueError, match="labels must be integers"):
        data.one_hot(np.array([0.5]), 3)
