"""Devices for many runs: the ``"runs"`` mesh axis, and the padding that makes runs divide among devices.

:func:`jaxnets.fit_seeds` stacks its runs along a leading axis. With several devices (several CPU
devices after :func:`jaxnets.runtime.use_cpu_devices`, or several GPUs) that axis is sharded over a
one-dimensional mesh named ``"runs"`` and the data replicated, so each device trains its share of the
runs. A run count that does not divide among the devices is padded with copies of the last run,
which train alongside and are dropped.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class RunLayout(NamedTuple):
    """Where stacked runs live: ``runs`` real runs padded to ``padded`` (a multiple of the devices
    used), the run axis split by ``split`` and shared arrays placed by ``replicated``."""

    runs: int
    padded: int
    split: NamedSharding
    replicated: NamedSharding

    @property
    def first_device(self) -> jax.Device:
        return self.split.mesh.devices.flat[0]


def run_layout(runs: int, devices: Sequence[jax.Device] | None = None) -> RunLayout:
    """The layout of ``runs`` stacked runs on the first ``min(runs, len(devices))`` of ``devices``
    (default: ``jax.local_devices()``)."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; give at least one device")
    used = min(runs, len(devices))
    mesh = Mesh(np.array(devices[:used]), ("runs",))
    padded = -(-runs // used) * used
    return RunLayout(runs, padded, NamedSharding(mesh, PartitionSpec("runs")), NamedSharding(mesh, PartitionSpec()))


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
