"""Dropout with inverted scaling."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxnets.nn.core import Layer


@dataclasses.dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout. x: (...) → y: same shape.

    With ``train=True`` each value is zeroed with probability ``rate`` and the kept values are
    divided by ``1 - rate``, so the expected output equals the input and nothing needs rescaling
    at evaluation; the mask is drawn from ``key=`` (required when ``rate > 0``), so the same key
    gives the same mask. With ``train=False`` (or ``rate == 0``) the layer is the identity.
    """

    rate: float

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1], got {self.rate!r}")

    def apply(self, params, state, x, *, key=None, train=False):
        if not train or self.rate == 0.0:
            return x, state
        if key is None:
            raise self.error(
                f"needs a PRNG key in training (rate {self.rate}): call apply(..., key=key, train=True), "
                "or train=False for evaluation"
            )
        if self.rate == 1.0:
            return jnp.zeros_like(x), state
        keep = jax.random.bernoulli(key, 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros((), x.dtype)), state

    def output_shape(self, input_shape):
        return tuple(input_shape)
