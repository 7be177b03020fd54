"""Weight initialisers by name.

An initialiser is ``init(key, shape, dtype) -> Array``. For a dense weight of shape
(fan_in, fan_out) and a convolution kernel of shape (*window, in_channels, out_channels)
fan-in and fan-out follow the usual convention (receptive field × channels), as in
``jax.nn.initializers``, which does the work here.

* Glorot/Xavier: Var = 2 / (fan_in + fan_out) — suits sigmoid and tanh.
* He/Kaiming:    Var = 2 / fan_in — suits ReLU and its relatives.
* LeCun:         Var = 1 / fan_in — suits SELU/ELU-like and linear units.
* small:         the notes' "small random numbers", uniform on [-scale, scale] or N(0, scale²).

The named initialisers draw with one compiled program per weight shape (:func:`compiled`). Op by op,
a draw cost one XLA compile per random-number operation and shape (threefry, bit shifts, scaling): a
first ``model.init`` in a fresh process took 1.5–1.7 s for a 784-256-256-10 MLP and 2.9–3.2 s for
LeNet-5, almost all of it compiling; now 0.8–1.0 s and 1.3–1.5 s (benchmarks/RESULTS.md, 2026-12-07).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from jaxnets._util import unknown

Initializer = Callable[..., jax.Array]

# XLA's LLVM optimisation level 1 compiles random draws 2.3-3.7x faster than the default level (measured on
# init_runs' programs), and the values are op by op's: bit for bit for the Glorot, He, LeCun, uniform, zeros
# and ones initialisers; "small_normal" can differ in the last bit, because in one program XLA folds its two
# constant factors into one (at every level). Level 0 changes more roundings.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
PROGRAMS_KEPT = 256  # (initialiser, shape, dtype, key) programs kept, least recently used first out


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
    """Returns the initialiser called ``name``, :func:`compiled` (a callable passes through unchanged).

    Raises ValueError listing the known names when ``name`` is unknown.
    """
    if callable(name_or_fn):
        return name_or_fn
    try:
        return compiled(INITIALIZERS[name_or_fn])
    except (KeyError, TypeError):
        raise unknown("initializer", name_or_fn, sorted(INITIALIZERS)) from None


@functools.cache
def compiled(init: Initializer) -> Initializer:
    """``init`` drawing each weight with one program, compiled at :data:`INIT_COMPILER_OPTIONS` and kept
    for its shape, dtype and key type, when the key is a concrete ``jax.Array``: layers whose weights
    share a shape share it, in every model of the process. A traced key (``jax.vmap(model.init)``,
    ``jax.jit``) draws op by op into the caller's program, as ``init`` itself does."""

    @functools.wraps(init)
    def draw(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        if not isinstance(key, jax.Array) or isinstance(key, jax.core.Tracer):
            return init(key, shape, dtype)
        # A key placed on a device by the user (committed) draws there; a default key draws
        # uncommitted weights, as op by op, so a user's own jitted step does not compile twice
        # (once for the committed init, once more for its own uncommitted outputs).
        key_spec = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=key.sharding if key.committed else None)
        program = _program(init, tuple(int(d) for d in shape), jnp.dtype(dtype), key_spec,
                           jax.config.read("jax_enable_x64"))
        return program(key)

    return draw


@functools.lru_cache(maxsize=PROGRAMS_KEPT)
def _program(init: Initializer, shape: tuple[int, ...], dtype, key_spec: jax.ShapeDtypeStruct, x64: bool):
    """``key -> init(key, shape, dtype)`` compiled for keys like ``key_spec``; ``x64``, the mode it is made
    in, is part of the cache key only."""
    del x64
    lowered = jax.jit(init, static_argnums=(1, 2)).lower(key_spec, shape, dtype)
    return lowered.compile(compiler_options=INIT_COMPILER_OPTIONS)


def initializer_for(activation: str) -> str:
    """Name of the initialiser suited to ``activation`` (Glorot, He or LeCun)."""
    return SUITED_INITIALIZER.get(activation, "glorot_uniform")
