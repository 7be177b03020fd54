"""Checks and shape helpers shared by the layer modules of :mod:`jaxnets.nn`."""

from __future__ import annotations

from typing import Sequence

import jax

Array = jax.Array


def as_tuple(value: int | Sequence[int], ndim: int, what: str, owner: str) -> tuple[int, ...]:
    """An int or a sequence of ``ndim`` positive ints as a tuple of ``ndim`` ints."""
    values = (value,) * ndim if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(values) != ndim or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ValueError(f"{owner}: {what} must be a positive int or {ndim} positive ints, got {value!r}")
    return values


def broadcast_last(v: Array, ndim: int) -> Array:
    """A per-feature vector (features,) reshaped to (1, …, 1, features) for explicit broadcasting."""
    return v.reshape((1,) * (ndim - 1) + v.shape)


def check_rank(layer, shape: Sequence[int], min_rank: int, expected: str) -> None:
    """Raises ``layer.error`` (a LayerError naming the layer) when ``shape`` has fewer than ``min_rank`` axes."""
    if len(shape) < min_rank:
        raise layer.error(f"expected input of shape {expected}, got {tuple(shape)}")
