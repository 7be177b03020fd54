"""Use a Flax NNX module wherever a jaxnets model is expected.

``NNXModel(make)`` wraps a function (or class) that builds the module from an ``nnx.Rngs``, e.g.
``NNXModel(lambda rngs: MLP(784, 256, 10, rngs=rngs))``, and gives it the jaxnets contract:

* ``init(key, x) -> (params, state)`` builds the module with ``nnx.Rngs(key)``; ``params`` holds its
  ``nnx.Param`` variables and ``state`` every other variable (``nnx.BatchStat`` running averages, …)
  as nested dicts keyed by attribute names (``params["linear1"]["kernel"]``; list indices as
  strings). Its random streams are not kept: they are re-seeded from ``key=`` at every call;
* ``apply(params, state, x, *, key=None, train=False) -> (y, state)`` — ``train`` switches the
  module's mode (``module.train()`` / ``module.eval()``: dropout on, batch statistics used and
  updated); in training the module's random streams (dropout) are seeded from ``key``;
* ``output_shape`` and ``summary_rows`` (one row per submodule holding parameters).

So ``fit``, ``fit_seeds``, checkpoints, the gradient checks and ``inspect.summary`` work on it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnets.interop._tree import Adapter, lookup, nested


def _flat(state) -> list[tuple[tuple, Any]]:
    return list(nnx.to_flat_state(state))


@dataclasses.dataclass(frozen=True)
class NNXModel(Adapter):
    """A jaxnets model backed by the NNX module that ``make(rngs)`` builds. x: what the module
    takes, batch axis first."""

    make: Callable[[nnx.Rngs], nnx.Module]

    @functools.cached_property
    def _layout(self) -> dict:
        """From the module built on shapes alone: the graph of each mode and the paths (with their
        original key types) and templates of its params, random streams and other state."""
        module = nnx.eval_shape(lambda: self.make(nnx.Rngs(0)))
        if not isinstance(module, nnx.Module):
            raise TypeError(f"NNXModel: make(rngs) must return an nnx.Module, got {type(module).__name__}")
        _, params, rngs, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
        module.train()
        train_graph = nnx.graphdef(module)
        module.eval()
        eval_graph = nnx.graphdef(module)
        types = {name: type(getattr(module, name)).__name__ for name in nnx.to_pure_dict(params)
                 if isinstance(name, str) and hasattr(module, name)}
        return {"graphs": {True: train_graph, False: eval_graph}, "params": [p for p, _ in _flat(params)],
                "state": [p for p, _ in _flat(rest)], "rngs": _flat(rngs), "types": types}

    @staticmethod
    def _names(path: tuple) -> tuple[str, ...]:
        return tuple(str(part) for part in path)

    def _to_dict(self, state) -> dict:
        return nested((self._names(path), variable.get_value()) for path, variable in _flat(state))

    def init(self, key: jax.Array, x) -> tuple[dict, dict]:
        """``(params, state)`` of the module built with ``nnx.Rngs(key)``; ``x`` is not used (an
        NNX module knows its sizes when it is built)."""
        del x
        module = self.make(nnx.Rngs(key))
        _, params, _, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return self._to_dict(params), self._to_dict(rest)

    def _streams(self, key) -> list[tuple[tuple, Any]]:
        """The module's random streams, every key drawn from ``key`` and every counter at 0."""
        if key is not None and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        items = []
        for i, (path, variable) in enumerate(self._layout["rngs"]):
            value = variable.get_value()
            if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
                items.append((path, jax.random.fold_in(key if key is not None else jax.random.key(0), i)))
            else:
                items.append((path, jnp.zeros(value.shape, value.dtype)))
        return items

    def apply(self, params, state, x, *, key=None, train: bool = False):
        """``(y, new_state)``; the state changes only in training (batch statistics)."""
        layout = self._layout
        if train and key is None and layout["rngs"]:
            raise ValueError("NNXModel: train=True needs key= (the module has random streams, e.g. dropout)")
        items = [(path, lookup(params, self._names(path), "NNXModel")) for path in layout["params"]]
        items += [(path, lookup(state, self._names(path), "NNXModel")) for path in layout["state"]]
        module = nnx.merge(layout["graphs"][bool(train)], nested(items + self._streams(key)))
        y = module(x)
        if not train:
            return y, state
        _, _, _, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
        return y, self._to_dict(rest)

    def type_names(self) -> dict[str, str]:
        return self._layout["types"]
