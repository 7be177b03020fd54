"""Data: the IDX reader, Fashion-MNIST / MNIST / digits loaders, the lecture notes' synthetic sets
and preprocessing (standardisation, train/validation split, one-hot).

Images come as float32 NHWC in [0, 1] and class labels as int32; synthetic sets as float32 x and
int32 labels (float32 targets for the regression set ``bump``). Nothing here unpickles anything.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxnets._util import unknown

# ----------------------------------------------------------------------------------------- IDX files


class DataFileError(ValueError):
    """A data file is malformed; the message names the file, what was expected and what was found."""


# IDX type code → (name, big-endian numpy dtype).
IDX_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0x08: ("uint8", np.dtype(np.uint8)),
    0x09: ("int8", np.dtype(np.int8)),
    0x0B: ("int16", np.dtype(">i2")),
    0x0C: ("int32", np.dtype(">i4")),
    0x0D: ("float32", np.dtype(">f4")),
    0x0E: ("float64", np.dtype(">f8")),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed (told apart by the gzip magic
    bytes, not the extension).

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64; multi-byte types big-endian), the number of dimensions, one big-endian uint32 per
    dimension, then exactly prod(dims) * itemsize bytes of data.

    Returns:
      a writable array of shape ``dims`` in native byte order.
    Raises:
      DataFileError: bad magic, unknown type code, truncated or over-long data, corrupt gzip stream.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DataFileError(f"{path}: corrupt gzip stream: {error}") from error
    if len(raw) < 4:
        raise DataFileError(f"{path}: truncated: expected a 4-byte IDX magic number, found {len(raw)} bytes")
    if raw[0] != 0 or raw[1] != 0:
        raise DataFileError(f"{path}: not an IDX file: expected the magic number to start with two zero "
                            f"bytes, found {raw[:2].hex(' ')}")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} {name}" for c, (name, _) in IDX_DTYPES.items())
        raise DataFileError(f"{path}: unknown IDX type code 0x{code:02X}; expected one of {known}")
    if ndim == 0:
        raise DataFileError(f"{path}: IDX header says 0 dimensions; expected at least 1")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataFileError(f"{path}: truncated: a {ndim}-dimensional IDX header needs {header_size} bytes, "
                            f"found {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    name, dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_size
    if found != expected:
        problem = "truncated" if found < expected else f"{found - expected} trailing bytes"
        shape = "x".join(map(str, dims))
        raise DataFileError(f"{path}: {problem}: header says {shape} {name} = {expected} bytes of data, "
                            f"found {found}")
    array = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a native-order, writable copy


# ---------------------------------------------------------------------------------------- datasets


class Dataset(NamedTuple):
    """A labelled train/test set.

    x_train: (N_train, H, W, C) float32 in [0, 1]; y_train: (N_train,) int32 in [0, num_classes);
    x_test: (N_test, H, W, C); y_test: (N_test,).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the searched directories; the message lists them and says
    how to get the files."""


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
# System-wide places (Debian's dataset-fashion-mnist installs /usr/share/datasets/fashion-mnist).
SYSTEM_DATA_DIRS: tuple[str, ...] = ("/usr/share/datasets",)


def dataset_search_dirs(subdir: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched, in order, for a dataset stored under ``subdir`` (e.g. "fashion-mnist"):
    only ``data_dir`` when it is given (an explicit directory is never silently replaced by
    another); else ``$JAXNETS_DATA/<subdir>`` if set, ``~/.cache/jaxnets/<subdir>``, then
    ``<d>/<subdir>`` for each ``d`` in ``SYSTEM_DATA_DIRS``."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs = []
    if os.environ.get("JAXNETS_DATA"):
        dirs.append(Path(os.environ["JAXNETS_DATA"]).expanduser() / subdir)
    dirs.append(Path.home() / ".cache" / "jaxnets" / subdir)
    dirs.extend(Path(d) / subdir for d in SYSTEM_DATA_DIRS)
    return dirs


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(name: str, subdir: str, data_dir: str | os.PathLike | None, how_to_get: str) -> Dataset:
    """Find the four standard IDX files in the first directory that holds them all and load them."""
    searched = dataset_search_dirs(subdir, data_dir)
    notes = []
    for directory in searched:
        paths = [_find_file(directory, stem) for stem in IDX_FILES]
        if all(p is not None for p in paths):
            return _dataset_from_idx(name, paths)
        present = [p.name for p in paths if p is not None]
        if present:
            missing = [stem for stem, p in zip(IDX_FILES, paths) if p is None]
            notes.append(f"  {directory}: has {', '.join(present)} but lacks {', '.join(missing)}")
    looked = "\n".join(f"  {d}" for d in searched)
    partial = ("\nincomplete directories:\n" + "\n".join(notes)) if notes else ""
    raise DatasetNotFoundError(
        f"{name} not found: looked for {', '.join(IDX_FILES)} (each optionally .gz) in\n{looked}{partial}\n"
        + (f"data_dir={str(data_dir)!r} was given, so no other directory was searched." if data_dir is not None else
           f"To get it: {how_to_get}put the four IDX files in ~/.cache/jaxnets/{subdir} or "
           f"$JAXNETS_DATA/{subdir}, or pass data_dir=."))


def _dataset_from_idx(name: str, paths: Sequence[Path], num_classes: int = 10) -> Dataset:
    """Images (N, H, W) uint8 → (N, H, W, 1) float32 / 255; labels (N,) uint8 → int32, checked."""
    arrays = []
    for images_path, labels_path in (paths[0:2], paths[2:4]):
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataFileError(f"{images_path}: expected 3-D uint8 images (N, H, W), found "
                                f"{images.ndim}-D {images.dtype} of shape {images.shape}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise DataFileError(f"{labels_path}: expected 1-D uint8 labels (N,), found "
                                f"{labels.ndim}-D {labels.dtype} of shape {labels.shape}")
        if len(images) != len(labels):
            raise DataFileError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                                f"{len(labels)} labels")
        if labels.size and labels.max() >= num_classes:
            raise DataFileError(f"{labels_path}: expected labels in [0, {num_classes}), found {labels.max()}")
        x = images.astype(np.float32)[..., None] / np.float32(255.0)  # (N, H, W, 1)
        arrays += [x, labels.astype(np.int32)]
    return Dataset(*arrays, name=name, num_classes=num_classes)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST (Zalando): x_train (60000, 28, 28, 1), x_test (10000, 28, 28, 1) float32 in
    [0, 1], int32 labels, 10 classes. Searched in ``dataset_search_dirs("fashion-mnist", data_dir)``;
    on Debian/Ubuntu ``sudo apt-get install dataset-fashion-mnist`` installs it.

    Raises:
      DatasetNotFoundError: listing the directories searched and how to get the files.
      DataFileError: a file is malformed or image and label counts differ.
    """
    return _load_idx_dataset("fashion_mnist", "fashion-mnist", data_dir,
                             "on Debian/Ubuntu `sudo apt-get install dataset-fashion-mnist`, or ")


def load_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """MNIST digits: x_train (60000, 28, 28, 1), x_test (10000, 28, 28, 1) float32 in [0, 1], int32
    labels, 10 classes. Searched in ``dataset_search_dirs("mnist", data_dir)``.

    Raises:
      DatasetNotFoundError: listing the directories searched and how to get the files.
      DataFileError: a file is malformed or image and label counts differ.
    """
    return _load_idx_dataset("mnist", "mnist", data_dir, "download the four IDX files of MNIST and ")


DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, no download), scaled to [0, 1] by /16.

    A fixed stratified split (per class, ``round(0.2 * count)`` test images chosen with
    ``numpy.random.default_rng(0)``): x_train (1438, 8, 8, 1), x_test (359, 8, 8, 1) float32, int32
    labels, 10 classes. Both sets keep the original order of the images.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[..., None]  # (1797, 8, 8, 1)
    y = bunch.target.astype(np.int32)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(y == c)
        test[rng.permutation(members)[:round(DIGITS_TEST_FRACTION * len(members))]] = True
    return Dataset(x[~test], y[~test], x[test], y[test], name="digits", num_classes=10)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "digits": load_digits,
}


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Load a dataset by name (``DATASETS``; "fashion-mnist" is accepted for "fashion_mnist")."""
    key = name.replace("-", "_")
    if key not in DATASETS:
        raise unknown("dataset", name, DATASETS)
    return DATASETS[key](**kwargs)


def load_default() -> tuple[Dataset, str]:
    """Fashion-MNIST if its files are found, else the digits. Returns ``(dataset, message)``; the
    message says which was loaded and, on falling back, why (the not-found message)."""
    try:
        dataset = load_fashion_mnist()
    except DatasetNotFoundError as error:
        return load_digits(), f"using scikit-learn's 8x8 digits because Fashion-MNIST was not found:\n{error}"
    return dataset, "using Fashion-MNIST"


# ------------------------------------------------------------------------------- synthetic sets


def _check_n(n: int, noise: float = 0.0) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")


def _balanced_labels(key: jax.Array, n: int, k: int) -> np.ndarray:
    """(n,) int labels 0..k-1, each appearing n // k or n // k + 1 times, in random order."""
    return np.asarray(jax.random.permutation(key, np.arange(n) % k))


def _normal(key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(jax.random.normal(key, shape, dtype=np.float32))


def _uniform(key: jax.Array, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> np.ndarray:
    return np.asarray(jax.random.uniform(key, shape, dtype=np.float32, minval=low, maxval=high))


def make_xor(n: int, *, key: jax.Array, noise: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian blobs (std ``noise``) at the corners of the unit square; label 1 where exactly
    one coordinate of the corner is 1 (XOR). Returns x (n, 2) float32, y (n,) int32, classes balanced."""
    _check_n(n, noise)
    corner_key, noise_key = jax.random.split(key)
    corner = _balanced_labels(corner_key, n, 4)
    bits = np.stack([corner // 2, corner % 2], axis=1)  # (n, 2) in {0, 1}
    x = bits + noise * _normal(noise_key, (n, 2))
    return x.astype(np.float32), (bits[:, 0] ^ bits[:, 1]).astype(np.int32)


def make_spirals(n: int, *, key: jax.Array, noise: float = 0.05, turns: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals: class c at radius t, angle 2π·turns·t + πc, t ~ U[0, 1], plus Gaussian
    noise of std ``noise``. Returns x (n, 2) float32 within about [-1, 1]², y (n,) int32 in {0, 1}."""
    _check_n(n, noise)
    label_key, t_key, noise_key = jax.random.split(key, 3)
    y = _balanced_labels(label_key, n, 2)
    t = _uniform(t_key, (n,))
    angle = 2 * np.pi * turns * t + np.pi * y
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + noise * _normal(noise_key, (n, 2))
    return x.astype(np.float32), y.astype(np.int32)


def make_circles(n: int, *, key: jax.Array, factor: float = 0.5, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles: label 0 on the unit circle, label 1 on radius ``factor`` (0 < factor
    < 1), plus Gaussian noise of std ``noise``. Returns x (n, 2) float32, y (n,) int32."""
    _check_n(n, noise)
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1), got {factor}")
    label_key, angle_key, noise_key = jax.random.split(key, 3)
    y = _balanced_labels(label_key, n, 2)
    angle = _uniform(angle_key, (n,), 0.0, 2 * np.pi)
    radius = np.where(y == 0, 1.0, factor)
    x = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1) + noise * _normal(noise_key, (n, 2))
    return x.astype(np.float32), y.astype(np.int32)


def make_moons(n: int, *, key: jax.Array, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half moons (as scikit-learn): label 0 on (cos t, sin t), label 1 on
    (1 - cos t, 0.5 - sin t), t ~ U[0, π], plus Gaussian noise of std ``noise``.
    Returns x (n, 2) float32, y (n,) int32."""
    _check_n(n, noise)
    label_key, t_key, noise_key = jax.random.split(key, 3)
    y = _balanced_labels(label_key, n, 2)
    t = _uniform(t_key, (n,), 0.0, np.pi)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    x = np.where((y == 0)[:, None], upper, lower) + noise * _normal(noise_key, (n, 2))
    return x.astype(np.float32), y.astype(np.int32)


def make_blobs(n: int, *, key: jax.Array, num_classes: int = 3, std: float = 1.0,
               center_box: tuple[float, float] = (-10.0, 10.0)) -> tuple[np.ndarray, np.ndarray]:
    """``num_classes`` isotropic Gaussian blobs of std ``std``, centres drawn uniformly from
    ``center_box``². Returns x (n, 2) float32, y (n,) int32 in [0, num_classes), classes balanced."""
    _check_n(n)
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    label_key, center_key, noise_key = jax.random.split(key, 3)
    y = _balanced_labels(label_key, n, num_classes)
    centers = _uniform(center_key, (num_classes, 2), *center_box)
    x = centers[y] + std * _normal(noise_key, (n, 2))
    return x.astype(np.float32), y.astype(np.int32)


def make_bump(n: int, *, key: jax.Array, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """1-D regression: x ~ U[0, 3], target 1 on [1, 2] and 0 elsewhere, plus Gaussian noise of std
    ``noise``. Returns x (n, 1) float32 and targets (n, 1) float32."""
    _check_n(n, noise)
    x_key, noise_key = jax.random.split(key)
    x = _uniform(x_key, (n, 1), 0.0, 3.0)
    t = ((x >= 1) & (x <= 2)).astype(np.float32)
    if noise > 0:
        t = t + noise * _normal(noise_key, (n, 1))
    return x, t.astype(np.float32)


SYNTHETIC: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "xor": make_xor,
    "spirals": make_spirals,
    "circles": make_circles,
    "moons": make_moons,
    "blobs": make_blobs,
    "bump": make_bump,
}


def make_synthetic(name: str, n: int, *, key: jax.Array, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Make the synthetic set ``name`` (``SYNTHETIC``) with n points; kwargs go to its generator."""
    if name not in SYNTHETIC:
        raise unknown("synthetic set", name, SYNTHETIC)
    return SYNTHETIC[name](n, key=key, **kwargs)


# --------------------------------------------------------------------------------- preprocessing


class Standardizer(NamedTuple):
    """Per-feature statistics: mean and std of shape x.shape[1:] (std already floored)."""

    mean: np.ndarray
    std: np.ndarray

    def apply(self, x: Any) -> np.ndarray:
        """(x - mean) / std for x: (N, *feature_shape)."""
        x = np.asarray(x)
        if x.shape[1:] != self.mean.shape:
            raise ValueError(f"standardizer fitted on features of shape {self.mean.shape}, "
                             f"got an array of shape {x.shape} (features {x.shape[1:]})")
        return (x - self.mean) / self.std


def fit_standardizer(x: Any, *, min_std: float = 1e-6) -> Standardizer:
    """Mean and std over axis 0 of x: (N, *feature_shape); std below ``min_std`` (constant features,
    such as image borders) is raised to ``min_std``, so such features standardise to ~0, not inf."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"need at least one example to fit a standardizer, got shape {x.shape}")
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), min_std)
    return Standardizer(mean.astype(np.float32), std.astype(np.float32))


def standardize(train: Any, *others: Any) -> tuple[np.ndarray, ...]:
    """Standardise ``train`` and each of ``others`` with the per-feature mean and std of ``train``
    alone. Returns ``(train_standardised, *others_standardised)``; see ``fit_standardizer``."""
    standardizer = fit_standardizer(train)
    return tuple(standardizer.apply(a) for a in (train, *others))


def train_validation_split(x: Any, y: Any, validation_fraction: float, *,
                           key: jax.Array) -> tuple[Any, Any, Any, Any]:
    """Randomly hold out ``round(validation_fraction * N)`` examples, deterministically per key.

    Args:
      x: (N, ...) inputs; y: (N, ...) targets.
    Returns:
      x_train, y_train, x_val, y_val with leading sizes N - N_val, N - N_val, N_val, N_val.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} inputs but {len(y)} targets")
    n = len(x)
    n_val = round(validation_fraction * n)
    if not 0 < n_val < n:
        raise ValueError(f"validation_fraction {validation_fraction} of {n} examples leaves "
                         f"{n_val} for validation and {n - n_val} for training; both must be non-empty")
    order = np.asarray(jax.random.permutation(key, n))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def one_hot(labels: Any, num_classes: int) -> np.ndarray:
    """labels: (...) integers in [0, num_classes) → (..., num_classes) float32 one-hot vectors."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"label {labels[index]} at index {index} is outside [0, {num_classes})")
    return (labels[..., None] == np.arange(num_classes)).astype(np.float32)
