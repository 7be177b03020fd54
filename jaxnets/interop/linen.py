"""Use a ``flax.linen`` module wherever a jaxnets model is expected.

``LinenModel(module)`` has the jaxnets contract:

* ``init(key, x) -> (params, state)`` — ``params = variables["params"]`` and ``state`` holds every
  other collection by name (``state["batch_stats"]`` for ``nn.BatchNorm``);
* ``apply(params, state, x, *, key=None, train=False) -> (y, state)`` — in training the non-param
  collections are mutable and their new values are returned as the new state; ``key`` becomes the
  ``"dropout"`` RNG (and any other names in ``rng_names``); the module's ``__call__`` gets
  ``train=train`` (``train_argument=None`` passes nothing, another name passes it under that name);
* ``output_shape(input_shape)`` and ``summary_rows(input_shape)`` (one row per direct submodule:
  output shape, weights, biases; connections and FLOPs for ``nn.Dense``/``nn.Conv``).

So ``jaxnets.fit`` trains it (checkpoints included: params and state are plain nested dicts),
``jaxnets.inspect.summary`` summarises it and the gradient tools check it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax
import flax.linen as linen
import jax
import jax.numpy as jnp

from jaxnets.interop._tree import Adapter
from jaxnets.nn.core import as_shape_dtype


def _plain(tree) -> dict:
    """FrozenDicts (older Flax) → dicts, so params/state are plain nested dicts."""
    return flax.core.unfreeze(tree) if isinstance(tree, flax.core.FrozenDict) else dict(tree)


@dataclasses.dataclass(frozen=True)
class LinenModel(Adapter):
    """A jaxnets model backed by a linen module. x: whatever the module takes, batch axis first."""

    module: linen.Module
    train_argument: str | None = "train"
    rng_names: tuple[str, ...] = ("dropout",)

    def _kwargs(self, train: bool) -> dict:
        return {} if self.train_argument is None else {self.train_argument: train}

    def _rngs(self, key):
        if key is None:
            return None
        return dict(zip(self.rng_names, jax.random.split(key, len(self.rng_names))))

    def init(self, key: jax.Array, x) -> tuple[dict, dict]:
        """Params and state for inputs like x (an array, ShapeDtypeStruct or shape tuple)."""
        spec = as_shape_dtype(x)
        params_key, other_key = jax.random.split(key)
        rngs = {"params": params_key, **self._rngs(other_key)}
        variables = self.module.init(rngs, jnp.zeros(spec.shape, spec.dtype), **self._kwargs(False))
        variables = _plain(variables)
        params = variables.pop("params", {})
        return params, variables

    def apply(self, params, state, x, *, key=None, train: bool = False):
        """(y, new_state); the state changes only in training (batch statistics)."""
        variables = {"params": params, **state}
        rngs = self._rngs(key)
        if train and state:
            y, updates = self.module.apply(variables, x, rngs=rngs, mutable=list(state), **self._kwargs(True))
            return y, {**state, **_plain(updates)}
        return self.module.apply(variables, x, rngs=rngs, **self._kwargs(train)), state

    def summary_rows(self, input_shape: Sequence[int]) -> list:
        """Rows for :func:`jaxnets.inspect.summary`: one per direct submodule call, in call order."""
        from jaxnets.inspect import SummaryRow, count_params

        spec = jax.ShapeDtypeStruct((1, *tuple(input_shape)), jnp.float32)
        params, state = jax.eval_shape(lambda: self.init(jax.random.PRNGKey(0), spec))
        calls = []

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            module = context.module
            if context.method_name == "__call__" and len(module.path) == 1:
                calls.append((module.path[0], module, args[0].shape if args else None, out.shape))
            return out

        def run(p, s, v):
            with linen.intercept_methods(record):
                return self.apply(p, s, v)[0]

        jax.eval_shape(run, params, state, spec)
        rows = []
        for name, module, in_shape, out_shape in calls:
            weights, biases = count_params(params.get(name, {}))
            units = math.prod(out_shape[1:])
            connections = flops = None
            kernel = params.get(name, {}).get("kernel")
            if isinstance(module, (linen.Dense, linen.Conv)) and kernel is not None:
                connections = units * math.prod(kernel.shape[:-1])  # fan-in incl. padded taps
                flops = 2 * connections + (units if "bias" in params[name] else 0)
            rows.append(SummaryRow(name, type(module).__name__, tuple(out_shape[1:]), units, connections,
                                   weights, biases, flops))
        return rows
