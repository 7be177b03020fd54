"""Branches side by side: :class:`Concatenate` (every branch sees the same input; their outputs are
joined on the channel axis) and GoogLeNet's :func:`inception` module built from it.

The Inception module of Szegedy et al. (2014), the Toronto deck's "convolutions broken down into a
bunch of smaller convolutions": four branches over the same input — a 1×1 convolution; a 1×1
reduction then a 3×3; a 1×1 reduction then a 5×5; a 3×3 max-pool (stride 1) then a 1×1 projection —
each followed by ReLU, their feature maps concatenated. The 1×1 reductions are what keep its
parameter count small.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import jax
import jax.numpy as jnp

from jaxnets.nn.conv import Conv2D
from jaxnets.nn.core import Activation, Layer, LayerError, LayerSpec, Sequential, name_layers, as_shape_dtype
from jaxnets.nn.pool import MaxPool2D


@dataclasses.dataclass(frozen=True, init=False)
class Concatenate(Layer):
    """Applies every branch to the same input and concatenates their outputs on the last axis.

    x: (batch, …) → (batch, …, Σ branch channels); the branches must agree on every other axis.
    Branches are named like :class:`Sequential`'s layers (``sequential1``, …, or given names); params
    and state are keyed by those names.
    """

    branches: tuple[tuple[str, Layer], ...]
    name: str

    def __init__(self, branches: Iterable[LayerSpec], name: str = "concatenate"):
        named = name_layers(branches)
        if not named:
            raise ValueError("Concatenate: give at least one branch")
        object.__setattr__(self, "branches", named)
        object.__setattr__(self, "name", name)

    @property
    def default_name(self) -> str:
        return self.name

    def _shapes(self, input_shape):
        shapes = []
        for name, branch in self.branches:
            try:
                shapes.append(tuple(branch.output_shape(tuple(input_shape))))
            except LayerError as e:
                raise e.within(name) from None
        leading = {s[:-1] for s in shapes}
        if len(leading) != 1:
            raise self.error("branch outputs must agree on every axis but the last to be concatenated; got "
                             + ", ".join(f"{n} {s}" for (n, _), s in zip(self.branches, shapes)))
        return shapes

    def output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        return (*shapes[0][:-1], sum(s[-1] for s in shapes))

    def init(self, key, x):
        spec = as_shape_dtype(x)
        self._shapes(spec.shape)
        params, state = {}, {}
        for branch_key, (name, branch) in zip(jax.random.split(key, len(self.branches)), self.branches):
            p, s = branch.init(branch_key, spec)
            if p:
                params[name] = p
            if s:
                state[name] = s
        return params, state

    def apply(self, params, state, x, *, key=None, train=False):
        self._shapes(x.shape)
        keys = jax.random.split(key, len(self.branches)) if key is not None else [None] * len(self.branches)
        outputs, new_state = [], dict(state)
        for branch_key, (name, branch) in zip(keys, self.branches):
            try:
                y, s = branch.apply(params.get(name, {}), state.get(name, {}), x, key=branch_key, train=train)
            except LayerError as e:
                raise e.within(name) from None
            outputs.append(y)
            if s:
                new_state[name] = s
        return jnp.concatenate(outputs, axis=-1), new_state


def inception(b1: int, b3_reduce: int, b3: int, b5_reduce: int, b5: int, pool_proj: int, *, impl: str = "auto",
              name: str = "inception") -> Concatenate:
    """GoogLeNet's Inception module: 1×1 (``b1``) | 1×1 (``b3_reduce``) → 3×3 (``b3``) | 1×1
    (``b5_reduce``) → 5×5 (``b5``) | 3×3 max-pool → 1×1 (``pool_proj``), each convolution followed by
    ReLU, "SAME" padding, outputs concatenated. x: (batch, h, w, c) → (batch, h, w, b1 + b3 + b5 + pool_proj)."""
    def conv(features, size):
        return [Conv2D(features, size, padding="SAME", w_init="he_normal", impl=impl), Activation("relu")]

    return Concatenate([("branch1x1", Sequential(conv(b1, 1), name="branch1x1")),
                        ("branch3x3", Sequential(conv(b3_reduce, 1) + conv(b3, 3), name="branch3x3")),
                        ("branch5x5", Sequential(conv(b5_reduce, 1) + conv(b5, 5), name="branch5x5")),
                        ("branch_pool", Sequential([MaxPool2D(3, strides=1, padding="SAME")] + conv(pool_proj, 1),
                                                   name="branch_pool"))], name=name)
