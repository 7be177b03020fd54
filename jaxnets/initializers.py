"""Weight initialisers by name.

An initialiser is ``init(key, shape, dtype) -> Array``. For a dense weight of shape
(fan_in, fan_out) and a convolution kernel of shape (*window, in_channels, out_channels)
fan-in and fan-out follow the usual convention (receptive field × channels), as in
``jax.nn.initializers``, which does the work here.

* Glorot/Xavier: Var = 2 / (fan_in + fan_out) — suits sigmoid and tanh.
* He/Kaiming:    Var = 2 / fan_in — suits ReLU and its relatives.
* LeCun:         Var = 1 / fan_in — suits SELU/ELU-like and linear units.
* small:         the notes' "small random numbers", uniform on [-scale, scale] or N(0, scale²).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxnets._util import unknown

Initializer = Callable[..., jax.Array]


def small_uniform(scale: float = 0.01) -> Initializer:
    """Uniform on [-scale, scale], independent of the layer's size."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, minval=-scale, maxval=scale)

    return init


def small_normal(scale: float = 0.01) -> Initializer:
    """Normal with standard deviation ``scale``, independent of the layer's size."""
    return jax.nn.initializers.normal(stddev=scale)


INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": jax.nn.initializers.glorot_uniform(),
    "glorot_normal": jax.nn.initializers.glorot_normal(),
    "xavier_uniform": jax.nn.initializers.glorot_uniform(),
    "xavier_normal": jax.nn.initializers.glorot_normal(),
    "he_uniform": jax.nn.initializers.he_uniform(),
    "he_normal": jax.nn.initializers.he_normal(),
    "lecun_uniform": jax.nn.initializers.lecun_uniform(),
    "lecun_normal": jax.nn.initializers.lecun_normal(),
    "small_uniform": small_uniform(),
    "small_normal": small_normal(),
    "zeros": jax.nn.initializers.zeros,
    "ones": jax.nn.initializers.ones,
}

# The initialiser each activation is usually paired with (Glorot for saturating units,
# He for rectifiers, LeCun for linear/exponential units).
SUITED_INITIALIZER: dict[str, str] = {
    "sigmoid": "glorot_uniform",
    "tanh": "glorot_uniform",
    "softmax": "glorot_uniform",
    "identity": "lecun_normal",
    "step": "glorot_uniform",
    "relu": "he_normal",
    "leaky_relu": "he_normal",
    "prelu": "he_normal",
    "elu": "he_normal",
    "gelu": "he_normal",
    "softplus": "he_normal",
}


def get_initializer(name_or_fn: str | Initializer) -> Initializer:
    """Returns the initialiser called ``name`` (a callable passes through unchanged).

    Raises ValueError listing the known names when ``name`` is unknown.
    """
    if callable(name_or_fn):
        return name_or_fn
    try:
        return INITIALIZERS[name_or_fn]
    except (KeyError, TypeError):
        raise unknown("initializer", name_or_fn, sorted(INITIALIZERS)) from None


def initializer_for(activation: str) -> str:
    """Name of the initialiser suited to ``activation`` (Glorot, He or LeCun)."""
    return SUITED_INITIALIZER.get(activation, "glorot_uniform")
