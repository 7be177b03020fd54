"""Checks of training data made before any training, so that bad input fails at once with a message
that names the bad values, instead of as a NaN loss epochs later.

* inputs: one array with a leading example axis, every value finite;
* targets: as many as inputs and of the kind the loss needs for the model's output: class indices in
  ``[0, K)`` or one-hot rows of width K for ``cross_entropy`` (K = the model's output size), 0/1 (or
  probabilities) for ``binary_cross_entropy``, the output's shape for ``squared_error``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_SHOWN = 5  # how many bad values or examples a message lists


def _listed(values) -> str:
    values = list(values)
    more = f", … ({len(values)} in all)" if len(values) > _SHOWN else ""
    return ", ".join(str(v) for v in values[:_SHOWN]) + more


def check_inputs(what: str, x: jax.Array) -> None:
    """Raises ValueError naming the first example of ``x`` (N, …) that holds NaN or ±inf."""
    if x.ndim == 0:
        raise ValueError(f"{what}: inputs must have a leading example axis, got a scalar")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return
    bad = ~jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)  # (N,)
    if bool(jnp.any(bad)):
        rows = np.flatnonzero(np.asarray(bad))
        raise ValueError(f"{what}: inputs hold NaN or inf in example {rows[0]} (bad examples: {_listed(rows)}); "
                         "clean or drop them before training")


def output_shape(model, params, state, x: jax.Array, *, stacked: bool) -> tuple[int, ...]:
    """The shape of ``model.apply`` on one example of x (batch axis included), traced with
    ``jax.eval_shape`` (nothing is computed). ``stacked``: params/state have a leading run axis."""
    def one_run(tree):
        return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:] if stacked else leaf.shape, leaf.dtype),
                            tree)

    spec = jax.ShapeDtypeStruct((1, *x.shape[1:]), x.dtype)
    out = jax.eval_shape(lambda p, s, v: model.apply(p, s, v)[0], one_run(params), one_run(state), spec)
    return tuple(out.shape)


def check_targets(what: str, loss: Any, t: jax.Array, out_shape: tuple[int, ...]) -> None:
    """Raises ValueError when targets t (N, …) cannot be the targets of ``loss`` for model outputs of
    shape ``out_shape`` (batch axis first), naming the bad values and the first examples holding
    them. A loss given as a function is not checked."""
    if not isinstance(loss, str):
        return
    per_example = out_shape[1:]
    if loss == "cross_entropy":
        if len(per_example) != 1:
            raise ValueError(f"{what}: cross_entropy needs model outputs of shape (batch, classes), the model "
                             f"gives {out_shape}")
        classes = per_example[0]
        if t.ndim == 2 and t.shape[1] != classes:
            raise ValueError(f"{what}: one-hot targets have {t.shape[1]} columns but the model has {classes} "
                             "outputs; they must be equal")
        if t.ndim == 1:
            if not jnp.issubdtype(t.dtype, jnp.integer):
                raise ValueError(f"{what}: cross_entropy needs integer class indices (N,) or one-hot rows "
                                 f"(N, {classes}); got {t.dtype} of shape {t.shape}")
            labels = np.asarray(t)
            bad = (labels < 0) | (labels >= classes)
            if bad.any():
                rows = np.flatnonzero(bad)
                raise ValueError(f"{what}: labels must be class indices in [0, {classes}) for a model with "
                                 f"{classes} outputs; found {_listed(np.unique(labels[bad]))} (in examples "
                                 f"{_listed(rows)})")
        elif t.ndim != 2:
            raise ValueError(f"{what}: cross_entropy needs integer class indices (N,) or one-hot rows "
                             f"(N, {classes}); got shape {t.shape}")
    elif loss == "binary_cross_entropy":
        values = np.asarray(t, np.float64)
        bad = ~((values >= 0) & (values <= 1))
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
            raise ValueError(f"{what}: binary_cross_entropy needs targets in [0, 1]; found "
                             f"{_listed(np.unique(values[bad]))} (in examples {_listed(rows)})")
    elif loss == "squared_error":
        if tuple(t.shape[1:]) != per_example:
            raise ValueError(f"{what}: squared_error needs targets shaped like the model's outputs, "
                             f"(N, {', '.join(map(str, per_example))}); got {t.shape}")
        check_inputs(f"{what} (targets)", t)


def check_pair(what: str, model, params, state, x: jax.Array, t: jax.Array, loss: Any, *, stacked: bool) -> None:
    """All checks of one (inputs, targets) pair: lengths, finite inputs, targets for the model."""
    if x.ndim == 0 or t.ndim == 0 or x.shape[0] != t.shape[0]:
        raise ValueError(f"{what} has {x.shape[0] if x.ndim else 'no'} inputs but "
                         f"{t.shape[0] if t.ndim else 'no'} targets; give one target per input")
    check_inputs(what, x)
    check_targets(what, loss, t, output_shape(model, params, state, x, stacked=stacked))
