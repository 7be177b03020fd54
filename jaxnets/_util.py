"""Helpers shared by several jaxnets modules, each with one home.

* :func:`path_str` — a pytree key path as ``dense1/w`` (dict keys, attribute names, indices).
* :func:`to_json` — any result (dataclasses, NamedTuples, NumPy/JAX arrays and scalars, Paths)
  as plain JSON types; non-finite floats become ``None`` so the output is strict JSON.
* :func:`unknown` — the one "unknown X 'y'; known Xs: …" error.
* :data:`BIAS_NAMES`, :func:`is_bias`, :func:`weight_mask` — the one rule for what is a bias
  (a leaf named ``b``, ``bias`` or ``offset``) and what is a weight (every other trained value),
  used by the L1/L2 penalties and by the model summary.
* :func:`drop_run_axis`, :func:`add_run_axis` — one run of stacked runs, and back (inside a trace);
  :func:`first_run`, :func:`as_one_run` — the same for concrete arrays, one compiled program per tree.
* :func:`memoize_hashable` — reuse what a builder of compiled functions made for equal arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import PurePath
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

BIAS_NAMES = ("b", "bias", "offset")


def key_name(entry: Any) -> str:
    """One entry of a key path (``DictKey``, ``GetAttrKey``, ``SequenceKey``, …) as text."""
    for attribute in ("key", "name", "idx"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    return str(entry)


def path_str(path: Iterable[Any]) -> str:
    """A key path from ``jax.tree_util.tree_leaves_with_path`` as ``conv1/w`` (``<root>`` if empty)."""
    return "/".join(key_name(entry) for entry in path) or "<root>"


def leaf_paths(tree: Any) -> list[str]:
    """The path of every leaf of ``tree``, in leaf order."""
    return [path_str(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]


def unknown(kind: str, name: Any, known: Iterable[Any], *, plural: str | None = None) -> ValueError:
    """``ValueError("unknown optimizer 'adm'; known optimizers: adam, sgd")``."""
    names = ", ".join(str(k) for k in known) or "none"
    return ValueError(f"unknown {kind} {name!r}; known {plural or kind + 's'}: {names}")


def is_bias(path: Iterable[Any]) -> bool:
    """Whether the leaf at ``path`` is a bias: its last key is ``b``, ``bias`` or ``offset``."""
    path = tuple(path)
    return bool(path) and key_name(path[-1]) in BIAS_NAMES


def weight_mask(params: Any) -> Any:
    """A tree of bools like ``params``: True for weights, False for biases (see :func:`is_bias`)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: not is_bias(path), params)


def to_json(value: Any) -> Any:
    """``value`` as plain JSON types: dataclasses and NamedTuples → dicts, tuples and arrays →
    lists, NumPy/JAX scalars → Python numbers, Paths → str, NaN/±inf → None. Dict keys become str.
    Raises TypeError naming the path of anything else."""
    return _to_json(value, "")


def _to_json(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value if not isinstance(value, float) or math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        value = value._asdict()
    if isinstance(value, dict):
        return {str(k): _to_json(v, f"{path}/{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{path}/{i}") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"to_json: {path or '<root>'} is an array of dtype {array.dtype}, not numbers")
        return _to_json(array.tolist(), path)
    raise TypeError(f"to_json: {path or '<root>'} is a {type(value).__name__}, which has no JSON form")


def drop_run_axis(tree: Any) -> Any:
    """The first run of a tree of stacked runs: every leaf (runs, …) -> (…)."""
    return jax.tree.map(lambda leaf: leaf[0], tree)


def add_run_axis(tree: Any) -> Any:
    """One run as stacked runs of size 1: every leaf (…) -> (1, …)."""
    return jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], tree)


# The two above for concrete arrays (or NumPy values), as one compiled program per tree of shapes
# (0.03-0.05 s on a CPU). Outside a trace each leaf's indexing is an operation of its own, compiled
# once per leaf shape: ≈ 10 ms each, 0.1-0.2 s for a small CNN's params and Adam state in a fresh process.
first_run = jax.jit(drop_run_axis)
as_one_run = jax.jit(add_run_axis)


class _EqualPartial(functools.partial):
    """A ``functools.partial`` equal to another of the same function, arguments and keywords (a plain
    partial is equal only to itself, so a partial written anew at each call would never be reused)."""

    def _identity(self):
        return self.func, self.args, tuple(sorted(self.keywords.items()))

    def __eq__(self, other):
        return isinstance(other, functools.partial) and self._identity() == _EqualPartial._identity(other)

    def __hash__(self):
        return hash(self._identity())


def _comparable(value: Any) -> Any:
    """``value``, with a ``functools.partial`` compared by what it calls instead of by identity."""
    if isinstance(value, functools.partial) and not isinstance(value, _EqualPartial):
        return _EqualPartial(value.func, *value.args, **value.keywords)
    return value


def memoize_hashable(maxsize: int) -> Callable[[Callable], Callable]:
    """``functools.lru_cache(maxsize)`` for builders of compiled functions: a call whose arguments
    are all hashable returns what an equal earlier call returned (so its jitted functions, and the
    programs XLA compiled for them, are reused); a call with an unhashable argument (a dict, an
    array) builds afresh instead of raising. Functions compare by identity, except that a
    ``functools.partial`` equals another of the same function, arguments and keywords (written anew
    in a notebook cell, ``partial(augment, shift=1)`` is still the same augmentation). Only for
    builders whose result depends on nothing but their arguments; ``wrapper.cache_clear()``
    empties the cache."""
    def decorate(build: Callable) -> Callable:
        cached = functools.lru_cache(maxsize=maxsize)(build)

        @functools.wraps(build)
        def wrapper(*args, **kwargs):
            args = tuple(_comparable(a) for a in args)
            kwargs = {name: _comparable(value) for name, value in kwargs.items()}
            try:
                hash((args, tuple(kwargs.items())))
            except TypeError:
                return build(*args, **kwargs)
            return cached(*args, **kwargs)

        wrapper.cache_clear = cached.cache_clear
        wrapper.cache_info = cached.cache_info
        return wrapper
    return decorate
