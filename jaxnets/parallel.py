"""Devices for training: the ``("runs", "data")`` mesh, and the padding that makes runs divide among devices.

:func:`jaxnets.fit_seeds` stacks its runs along a leading axis; :func:`jaxnets.fit` trains one run. Both
train on a two-dimensional device mesh with axes ``"runs"`` and ``"data"``:

* the run axis of every stacked leaf (params, optimizer state, keys) is split over ``"runs"``, so each
  row of devices trains its share of the runs (the default of ``fit_seeds``: one row per local device,
  several CPU devices after :func:`jaxnets.runtime.use_cpu_devices`, or several GPUs);
* each step's batch is split over ``"data"`` (data parallelism): every device of a row holds the same
  params (replicated over ``"data"``) and computes the gradient of its slice of the batch, and the
  compiled program averages them (XLA inserts the all-reduce), so batch-norm statistics and the loss
  are those of the whole batch (the default of ``fit``: one device; ``fit(devices=[...])`` or ``mesh=``).

A run count that does not divide among the rows is padded with copies of the last run, which train
alongside and are dropped. The training set itself is replicated on every device (or streamed, each process
reading its rows of each batch: :mod:`jaxnets.streaming`).

With ``shard_params=True`` (FSDP-style, for models too large for one device) params and optimizer state are
not replicated over ``"data"`` but split over it, each leaf along its largest axis that divides by the
axis's size (:func:`fsdp_spec`; leaves without one stay replicated); XLA gathers each weight where a step
needs it and reduce-scatters its gradient, so each device holds 1/n of the trained state.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

RUNS, DATA = "runs", "data"
AXES = (RUNS, DATA)


class RunLayout(NamedTuple):
    """Where stacked runs live: ``runs`` real runs padded to ``padded`` (a multiple of the mesh's
    ``"runs"`` axis), the run axis split by ``split``, shared arrays placed by ``replicated``, and each
    step's batch (batch, …) split over the ``"data"`` axis by ``batch`` (None when it has one device)."""

    runs: int
    padded: int
    split: NamedSharding
    replicated: NamedSharding
    batch: NamedSharding | None

    @property
    def mesh(self) -> Mesh:
        return self.split.mesh

    @property
    def data_devices(self) -> int:
        return self.mesh.shape[DATA]

    @property
    def first_device(self) -> jax.Device:
        """A device of this process that holds every run (for the results)."""
        local = [d for d in self.mesh.devices.flat if d.process_index == jax.process_index()]
        return local[0] if local else jax.local_devices()[0]


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh for data parallelism: one run, each batch split over ``devices`` (default: all
    devices of every process, ``jax.devices()``). Shape (runs 1, data len(devices))."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; give at least one device")
    return Mesh(np.array(devices).reshape(1, len(devices)), AXES)


def runs_data_mesh(runs: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh for ``runs`` runs on ``devices`` (default: ``jax.devices()``): as many rows (the
    ``"runs"`` axis) as the largest divisor of the device count that is at most ``runs``, the rest
    of the devices splitting each batch (``"data"``). 3 runs on 4 devices: 2 × 2 (4 runs, one
    padded); 8 runs on 4 devices: 4 × 1."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; give at least one device")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    rows = max(r for r in range(1, len(devices) + 1) if len(devices) % r == 0 and r <= runs)
    return Mesh(np.array(devices).reshape(rows, len(devices) // rows), AXES)


def as_runs_data_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` with the axes ``("runs", "data")`` in that order, a missing one of size 1; ValueError
    for other axis names."""
    names = tuple(mesh.axis_names)
    unknown = [n for n in names if n not in AXES]
    if unknown or len(set(names)) != len(names) or not names:
        raise ValueError(f"mesh axes must be 'runs' and/or 'data', got {names}")
    devices = mesh.devices
    if names == (DATA, RUNS):
        devices = devices.T
    elif names == (RUNS,):
        devices = devices.reshape(-1, 1)
    elif names == (DATA,):
        devices = devices.reshape(1, -1)
    return Mesh(devices, AXES)


def run_layout(runs: int, devices: Sequence[jax.Device] | None = None, mesh: Mesh | None = None) -> RunLayout:
    """The layout of ``runs`` stacked runs: on ``mesh`` (axes ``"runs"``/``"data"``, see
    :func:`as_runs_data_mesh`) when given, else on the first ``min(runs, len(devices))`` of
    ``devices`` (default: ``jax.local_devices()``), one row each (no data parallelism)."""
    if mesh is not None:
        if devices is not None:
            raise ValueError("give devices or mesh, not both")
        mesh = as_runs_data_mesh(mesh)
    else:
        devices = list(jax.local_devices() if devices is None else devices)
        if not devices:
            raise ValueError("devices is empty; give at least one device")
        used = min(runs, len(devices))
        mesh = Mesh(np.array(devices[:used]).reshape(used, 1), AXES)
    rows = mesh.shape[RUNS]
    padded = math.ceil(runs / rows) * rows
    batch = NamedSharding(mesh, PartitionSpec(DATA)) if mesh.shape[DATA] > 1 else None
    return RunLayout(runs, padded, NamedSharding(mesh, PartitionSpec(RUNS)), NamedSharding(mesh, PartitionSpec()),
                     batch)


def fsdp_spec(shape: tuple[int, ...], devices: int) -> PartitionSpec:
    """How ``shard_params`` splits a leaf of ``shape`` over ``devices`` devices of the ``"data"`` axis: along
    its largest axis whose size divides by ``devices`` (the first of equal ones), or not at all (replicated)
    when none does. A (784, 256) weight on 4 devices: ``PartitionSpec("data", None)``."""
    axes = [i for i, size in enumerate(shape) if size >= devices and size % devices == 0]
    if devices == 1 or not axes:
        return PartitionSpec()
    axis = max(axes, key=lambda i: (shape[i], -i))
    return PartitionSpec(*(DATA if i == axis else None for i in range(len(shape))))


def fsdp_shardings(tree: Any, mesh: Mesh) -> Any:
    """The shardings of stacked leaves (runs, …) under ``shard_params``: the run axis over ``"runs"``, the
    rest as :func:`fsdp_spec` splits it over ``"data"``."""
    devices = mesh.shape[DATA]
    return jax.tree.map(lambda leaf: NamedSharding(mesh, PartitionSpec(RUNS, *fsdp_spec(leaf.shape[1:], devices))),
                        tree)


@functools.lru_cache(maxsize=8)
def fsdp_constraint(mesh: Mesh):
    """``constrain(tree) -> tree`` that keeps a run's leaves (no run axis; under ``vmap`` with
    ``spmd_axis_name="runs"`` for stacked runs) split over ``"data"`` as :func:`fsdp_spec` says, inside a
    compiled step. The same mesh gives the same function (so the programs that use it are reused)."""
    devices = mesh.shape[DATA]

    def constrain(tree):
        return jax.tree.map(lambda leaf: jax.lax.with_sharding_constraint(
            leaf, NamedSharding(mesh, fsdp_spec(leaf.shape, devices))), tree)
    return constrain


def put(tree: Any, sharding: NamedSharding | Any) -> Any:
    """``jax.device_put(tree, sharding)``, also for a sharding over the devices of several processes
    (then every process passes the same full values, and each keeps its devices' pieces). ``sharding``:
    one for every leaf, or a tree of them shaped like ``tree``. PRNG key leaves keep their key type."""
    if isinstance(sharding, NamedSharding):
        if sharding.is_fully_addressable:
            return jax.device_put(_split_from_host(sharding, tree), sharding)
        return jax.tree.map(lambda leaf: _place(leaf, sharding), tree)
    if all(s.is_fully_addressable for s in jax.tree.leaves(sharding)):
        return jax.device_put(jax.tree.map(_split_from_host, sharding, tree), sharding)
    return jax.tree.map(_place, tree, sharding)


def _split_from_host(sharding: NamedSharding, tree: Any) -> Any:
    """``tree`` with the CPU arrays that ``sharding`` splits over several devices as NumPy views.
    Splitting a device array compiles a slicing program per leaf shape (≈ 0.025 s each in a fresh
    process); splitting host memory compiles nothing, and on CPU the view costs no copy. Arrays
    that stay whole (one device, or replicated) and other leaves are left as they are."""
    if len(sharding.device_set) == 1 or sharding.is_fully_replicated:
        return tree

    def host(leaf):
        if (isinstance(leaf, jax.Array) and not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
                and leaf.is_fully_addressable and all(d.platform == "cpu" for d in leaf.devices())):
            return np.asarray(leaf)
        return leaf
    return jax.tree.map(host, tree)


def _place(leaf, sharding: NamedSharding):
    """One leaf as a global array: this process's pieces of the full value every process holds."""
    if jnp.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_place(jax.random.key_data(leaf), sharding), impl=jax.random.key_impl(leaf))
    value = np.asarray(leaf)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def to_host(value: Any) -> np.ndarray:
    """The whole value of an array as a NumPy array on this host, also when it is spread over the
    devices of several processes (a replicated one is read locally, a split one gathered: every
    process must call this for the same array)."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        if value.is_fully_replicated:
            return np.asarray(value.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def to_device(tree: Any, device: jax.Device) -> Any:
    """Every leaf whole on ``device`` (one of this process's), gathered from other processes if needed."""
    def move(leaf):
        if leaf.is_fully_addressable:
            return jax.device_put(leaf, device)
        if leaf.is_fully_replicated:
            return jax.device_put(leaf.addressable_data(0), device)
        return jax.device_put(to_host(leaf), device)
    return jax.tree.map(move, tree)


def pad_runs(tree: Any, padded: int) -> Any:
    """Leaves (runs, …) → (padded, …), the extra runs copies of the last one."""
    def pad(leaf):
        extra = padded - leaf.shape[0]
        if extra == 0:
            return leaf
        stack = np.concatenate if isinstance(leaf, np.ndarray) else jnp.concatenate
        return stack([leaf, leaf[-1:].repeat(extra, axis=0)])
    return jax.tree.map(pad, tree)


def first_runs(tree: Any, runs: int) -> Any:
    """The first ``runs`` runs of every leaf (the leaf itself when there is no padding)."""
    return jax.tree.map(lambda leaf: leaf if leaf.shape[0] == runs else leaf[:runs], tree)
