"""Checks made before any training, so that bad input fails at once with a message that names the
bad values, instead of as a NaN loss epochs later: the training data, and the arguments of ``fit`` and
``fit_seeds`` that need resolving (keys, per-run hyper-parameters, the augmentation).

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

from jaxnets import optim
from jaxnets._util import unknown

PENALTIES = ("l1", "l2")
_SHOWN = 5  # how many bad values or examples a message lists


def _listed(values) -> str:
    values = list(values)
    more = f", … ({len(values)} in all)" if len(values) > _SHOWN else ""
    return ", ".join(str(v) for v in values[:_SHOWN]) + more


@jax.jit
def _non_finite_rows(x: jax.Array) -> jax.Array:
    """(N,) bool: whether example n of x (N, …) holds NaN or ±inf (one compiled program per shape)."""
    return ~jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)


def check_inputs(what: str, x: jax.Array) -> None:
    """Raises ValueError naming the first example of ``x`` (N, …) that holds NaN or ±inf."""
    if x.ndim == 0:
        raise ValueError(f"{what}: inputs must have a leading example axis, got a scalar")
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return
    bad = np.asarray(_non_finite_rows(x))  # (N,)
    if bad.any():
        rows = np.flatnonzero(bad)
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


def is_typed_key(key) -> bool:
    return jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key)


def stack_keys(caller: str, keys, stacked: bool) -> jax.Array:
    """Keys as a stacked array: typed (runs,) or raw (runs, 2)."""
    keys = jnp.asarray(keys) if not is_typed_key(keys) else keys
    per_key_ndim = 0 if is_typed_key(keys) else 1
    if not stacked:
        if keys.ndim != per_key_ndim:
            raise ValueError(f"{caller}: key must be one PRNG key (jax.random.key(seed) or PRNGKey(seed)), got shape "
                             f"{keys.shape}")
        return keys[None]
    if keys.ndim != per_key_ndim + 1 or keys.shape[0] == 0:
        raise ValueError(f"{caller}: keys must be stacked PRNG keys, one per run: shape (runs,) typed or (runs, 2) "
                         f"raw, got {keys.shape}")
    return keys


def key_data(keys) -> np.ndarray:
    return np.asarray(jax.random.key_data(keys) if is_typed_key(keys) else keys)


def per_run(caller: str, name: str, value, runs: int, stacked: bool) -> np.ndarray:
    """A scalar, or (stacked) one value per run, as a float64 (runs,) array."""
    array = np.asarray(value, np.float64)
    if array.ndim == 0:
        return np.full((runs,), float(array))
    if not stacked or array.shape != (runs,):
        expected = "a number" if not stacked else f"a number or {runs} numbers (one per run)"
        raise ValueError(f"{caller}: {name} must be {expected}, got shape {array.shape}")
    return array


def resolve_hyperparams(caller: str, hyperparams: dict | None, l1, l2, opt_shapes, runs: int, stacked: bool):
    """(optimizer values {name: (runs,)}, l1 (runs,), l2 (runs,)); unknown names are an error."""
    hyperparams = dict(hyperparams or {})
    exposed = optim.hyperparam_names(opt_shapes)
    for name in hyperparams:
        if name not in exposed and name not in PENALTIES:
            raise unknown("hyper-parameter", name, [*exposed, *PENALTIES],
                          plural="hyper-parameters of this optimizer (and penalties)")
    penalties = {}
    for name, given in (("l1", l1), ("l2", l2)):
        if name in hyperparams and np.any(np.asarray(given) != 0):
            raise ValueError(f"{caller}: {name} is given twice, as {name}= and in hyperparams; give it once")
        penalties[name] = per_run(caller, name, hyperparams.pop(name, given), runs, stacked)
    values = {name: per_run(caller, name, value, runs, stacked) for name, value in hyperparams.items()}
    return values, penalties["l1"], penalties["l2"]


def checked_augment(caller: str, augment, key, x):
    """``augment`` after checking, on shapes alone (``key`` may be a ShapeDtypeStruct), that it keeps
    x's shape and dtype."""
    if augment is None:
        return None
    if not callable(augment):
        raise TypeError(f"{caller}: augment must be a function augment(key, x) -> x, got {augment!r}")
    out = jax.eval_shape(augment, key, x)
    if not (isinstance(out, jax.ShapeDtypeStruct) and out.shape == x.shape and out.dtype == x.dtype):
        raise ValueError(f"{caller}: augment(key, x) must return an array shaped like the training inputs, "
                         f"{x.dtype}{list(x.shape)}; got {out}")
    return augment
