"""Use an Equinox module wherever a jaxnets model is expected.

``EquinoxModel(make)`` wraps a function that builds the module from a PRNG key: ``make(key)``
returns the module, or ``(module, state)`` for a stateful one (``eqx.nn.make_with_state(Net)``, for
``eqx.nn.BatchNorm``). Equinox modules take one example; the adapter maps them over the batch with
``jax.vmap`` (axis name ``"batch"``, the name to give ``eqx.nn.BatchNorm(axis_name=...)``), so:

* ``init(key, x) -> (params, state)``: ``params`` are the module's floating-point arrays as nested
  dicts keyed by attribute path (``params["layers"]["0"]["weight"]``), ``state`` the ``eqx.nn.State``
  entries (``state["Net.bn.batch_state_index"]``), ``{}`` for a stateless module;
* ``apply(params, state, x, *, key=None, train=False) -> (y, state)`` with x: (batch, …); ``train``
  is ``eqx.nn.inference_mode(module, not train)``; the module is called as ``module(x_i, *, key=k_i)``
  (``module(x_i, state, *, key=k_i) -> (y_i, state)`` when stateful), one key per example split
  from ``key`` when its ``__call__`` takes ``key``;
* ``output_shape`` and ``summary_rows`` (one row per submodule holding parameters).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxnets._util import key_name
from jaxnets.interop._tree import Adapter, LeafLayout

BATCH_AXIS = "batch"


def layout_names(arrays) -> list[str]:
    """The top-level attribute names under which ``arrays`` holds parameters."""
    return sorted({key_name(path[0]) for path, _ in jax.tree_util.tree_leaves_with_path(arrays) if path})


def _is_float_array(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def _state_names(state) -> Callable[[tuple], tuple[str, ...]]:
    """Readable names for the leaves of an ``eqx.nn.State`` (its entries are named after the layer
    that owns them, e.g. ``Net.bn.batch_state_index``)."""
    _, aux = jax.tree_util.tree_structure(state).node_data()
    labels = list(aux) if isinstance(aux, (tuple, list)) and all(isinstance(a, str) for a in aux) else None

    def names(path: tuple) -> tuple[str, ...]:
        parts = [key_name(k) for k in path]
        if labels is not None and parts and parts[0].isdigit() and int(parts[0]) < len(labels):
            parts[0] = labels[int(parts[0])]
        return tuple(parts)

    return names


@dataclasses.dataclass(frozen=True)
class EquinoxModel(Adapter):
    """A jaxnets model backed by the Equinox module that ``make(key)`` builds."""

    make: Callable[[jax.Array], Any]

    def _build(self, key):
        built = self.make(key)
        module, state = built if isinstance(built, tuple) else (built, None)
        if not isinstance(module, eqx.Module):
            raise TypeError(f"EquinoxModel: make(key) must return an eqx.Module (or (module, state)), got "
                            f"{type(module).__name__}")
        return module, state

    @functools.cached_property
    def _layout(self) -> dict:
        module, state = eqx.filter_eval_shape(self._build, jax.random.key(0))
        arrays, static = eqx.partition(module, _is_float_array)
        others = [jax.tree_util.keystr(p) for p, leaf in jax.tree_util.tree_leaves_with_path(static)
                  if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct))]
        if others:
            raise TypeError(f"EquinoxModel: the module holds arrays that are not floating point at {others}; "
                            "jaxnets trains floating-point arrays only (mark others eqx.field(static=True))")
        takes_key = "key" in inspect.signature(type(module).__call__).parameters
        types = {name: type(getattr(module, name)).__name__ for name in layout_names(arrays)}
        return {"params": LeafLayout(arrays), "static": static, "stateful": state is not None,
                "state": LeafLayout(state, _state_names(state)) if state is not None else None,
                "state_template": state, "takes_key": takes_key, "types": types}

    def init(self, key: jax.Array, x) -> tuple[dict, dict]:
        """``(params, state)`` of the module built with ``make(key)``; ``x`` is not used (an
        Equinox module knows its sizes when it is built)."""
        del x
        module, state = self._build(key)
        layout = self._layout
        params = layout["params"].to_dict(eqx.filter(module, _is_float_array))
        return params, layout["state"].to_dict(state) if layout["stateful"] else {}

    def apply(self, params, state, x, *, key=None, train: bool = False):
        """``(y, new_state)`` for a batch x: (batch, …); the state changes only in training."""
        layout = self._layout
        arrays = layout["params"].from_dict(params, "EquinoxModel")
        module = eqx.nn.inference_mode(eqx.combine(arrays, layout["static"]), value=not train)
        if train and key is None and layout["takes_key"]:
            raise ValueError("EquinoxModel: train=True needs key= (the module's __call__ takes a key)")
        keys = jax.random.split(key, x.shape[0]) if key is not None else None
        kwargs = (lambda k: {"key": k}) if layout["takes_key"] else (lambda k: {})
        if not layout["stateful"]:
            if keys is None:
                return jax.vmap(lambda xi: module(xi, **kwargs(None)), axis_name=BATCH_AXIS)(x), state
            return jax.vmap(lambda xi, ki: module(xi, **kwargs(ki)), axis_name=BATCH_AXIS)(x, keys), state
        eqx_state = layout["state"].from_dict(state, "EquinoxModel")
        call = (lambda xi, ki: module(xi, eqx_state, **kwargs(ki)))
        y, new_state = jax.vmap(call, in_axes=(0, 0 if keys is not None else None), out_axes=(0, None),
                                axis_name=BATCH_AXIS)(x, keys)
        return y, (layout["state"].to_dict(new_state) if train else state)

    def type_names(self) -> dict[str, str]:
        return self._layout["types"]
