"""Activation functions of the lecture notes, by name.

Every function maps an array of any shape to an array of the same shape, elementwise
(softmax normalises over the last axis). Parametric forms take their parameter as a
keyword: ``leaky_relu(x, negative_slope=0.01)``, ``prelu(x, slope)`` (``slope`` is learned,
see :class:`jaxnets.nn.Activation`), ``elu(x, alpha=1.0)``, ``softmax(x, beta=1.0)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxnets._util import unknown

Array = jax.Array


def sigmoid(x: Array) -> Array:
    """Logistic function 1 / (1 + e^-x); saturates for |x| large."""
    return jax.nn.sigmoid(x)


def tanh(x: Array) -> Array:
    """Hyperbolic tangent, a zero-centred sigmoid: tanh(x) = 2 sigmoid(2x) - 1."""
    return jnp.tanh(x)


def relu(x: Array) -> Array:
    """Rectified linear unit max(0, x); derivative 0 for x < 0 (units can die)."""
    return jax.nn.relu(x)


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """max(x, negative_slope * x): a small slope keeps gradients alive for x < 0."""
    return jax.nn.leaky_relu(x, negative_slope)


def prelu(x: Array, slope: Array) -> Array:
    """Parametric ReLU: like leaky ReLU, but ``slope`` (broadcast over x) is learned."""
    return jnp.where(x >= 0, x, slope * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """Exponential linear unit: x for x > 0, alpha (e^x - 1) otherwise (smooth, mean near 0)."""
    return jax.nn.elu(x, alpha)


def softplus(x: Array) -> Array:
    """log(1 + e^x), a smooth ReLU whose derivative is the sigmoid."""
    return jax.nn.softplus(x)


def gelu(x: Array) -> Array:
    """Gaussian error linear unit x Φ(x) (exact form), used in transformers."""
    return jax.nn.gelu(x, approximate=False)


def step(x: Array) -> Array:
    """Hard threshold of the perceptron: 1 for x >= 0, else 0. Its gradient is zero everywhere."""
    return jnp.where(x >= 0, jnp.ones_like(x), jnp.zeros_like(x))


def identity(x: Array) -> Array:
    """The linear unit: returns x unchanged (regression outputs, logits)."""
    return x


def softmax(x: Array, beta: float = 1.0) -> Array:
    """Softmax with inverse temperature β over the last axis: exp(βx_i) / Σ_j exp(βx_j).

    β → ∞ approaches a one-hot argmax, β → 0 the uniform distribution.
    """
    return jax.nn.softmax(beta * x, axis=-1)


ACTIVATIONS: dict[str, Callable[..., Array]] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "prelu": prelu,
    "elu": elu,
    "softplus": softplus,
    "gelu": gelu,
    "step": step,
    "identity": identity,
    "softmax": softmax,
}


def get_activation(name: str) -> Callable[..., Array]:
    """Returns the activation called ``name``; raises ValueError listing the known names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise unknown("activation", name, sorted(ACTIVATIONS)) from None
