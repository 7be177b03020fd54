"""Activations and initialisers: values against hand-computed formulas, gradients against
central differences in float64, initialiser variances against their definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import central_difference_grad
from jaxnets import activations, initializers

X = np.array([-3.0, -1.0, -0.25, 0.5, 1.0, 2.5])

REFERENCE = {  # NumPy formulas from the lecture notes
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(0, x),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "step": lambda x: (x >= 0).astype(float),
    "identity": lambda x: x,
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_activation_values(name):
    np.testing.assert_allclose(activations.get_activation(name)(jnp.asarray(X)), REFERENCE[name](X), rtol=1e-6, atol=1e-7)


def test_prelu_uses_its_slope_and_gelu_is_x_times_phi():
    np.testing.assert_allclose(activations.prelu(jnp.asarray(X), 0.3), np.where(X >= 0, X, 0.3 * X), rtol=1e-6)
    from math import erf, sqrt
    phi = np.array([0.5 * (1 + erf(v / sqrt(2))) for v in X])
    np.testing.assert_allclose(activations.gelu(jnp.asarray(X)), X * phi, rtol=1e-6)


def test_options_away_from_their_defaults():
    # alpha and the leaky slope are checked where they matter (x < 0) and away from their defaults
    np.testing.assert_allclose(activations.elu(jnp.asarray(X), alpha=0.5), np.where(X > 0, X, 0.5 * (np.exp(X) - 1)),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(activations.leaky_relu(jnp.asarray(X), negative_slope=0.2), np.where(X > 0, X, 0.2 * X),
                               rtol=1e-6)
    from jaxnets import nn

    layer = nn.Activation("elu", alpha=0.25)  # the option reaches the function through the layer
    y, _ = layer.apply({}, {}, jnp.asarray(X))
    np.testing.assert_allclose(y, np.where(X > 0, X, 0.25 * (np.exp(X) - 1)), rtol=1e-6, atol=1e-7)


def test_softmax_temperature():
    z = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(activations.softmax(z, beta=2.0), REFERENCE["softmax"](2 * np.array([1.0, 2, 3])), rtol=1e-6)
    np.testing.assert_allclose(activations.softmax(z, beta=0.0), np.full(3, 1 / 3), rtol=1e-6)
    assert activations.softmax(z, beta=100.0)[2] > 0.999


SMOOTH_AT_X = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "identity", "step", "prelu", "softmax"]


@pytest.mark.parametrize("name", SMOOTH_AT_X)
def test_activation_gradients_match_central_differences(name):
    """X avoids the kinks at 0, so every activation is differentiable at the test points."""
    fn = activations.get_activation(name)
    weights = np.linspace(0.5, 1.5, X.size)
    with jax.enable_x64(True):
        def scalar(x):
            y = fn(jnp.asarray(x), 0.2) if name == "prelu" else fn(jnp.asarray(x))
            return jnp.sum(y * weights)

        np.testing.assert_allclose(jax.grad(scalar)(jnp.asarray(X)), central_difference_grad(scalar, X), rtol=1e-7, atol=1e-9)


def test_prelu_slope_gradient():
    with jax.enable_x64(True):
        x = jnp.asarray(X)
        g = jax.grad(lambda a: jnp.sum(activations.prelu(x, a)))(0.2)
        np.testing.assert_allclose(g, X[X < 0].sum())


@pytest.mark.parametrize("name,variance", [
    ("glorot_normal", 2 / (300 + 200)),
    ("glorot_uniform", 2 / (300 + 200)),
    ("he_normal", 2 / 300),
    ("he_uniform", 2 / 300),
    ("lecun_normal", 1 / 300),
    ("lecun_uniform", 1 / 300),
    ("small_normal", 0.01 ** 2),
    ("small_uniform", 0.01 ** 2 / 3),
])
def test_initializer_variances(name, variance, key):
    w = initializers.get_initializer(name)(key, (300, 200), jnp.float32)
    assert w.shape == (300, 200)
    assert abs(float(jnp.var(w)) / variance - 1) < 0.05
    assert abs(float(jnp.mean(w))) < 0.05 * np.sqrt(variance) * 10


def test_small_uniform_is_bounded(key):
    w = initializers.small_uniform(0.1)(key, (1000,))
    assert float(jnp.max(jnp.abs(w))) <= 0.1


def test_unknown_initializer_lists_known():
    with pytest.raises(ValueError, match="known initializers: .*he_normal"):
        initializers.get_initializer("kaiming")


def test_every_activation_has_a_suited_initializer():
    for name in activations.ACTIVATIONS:
        initializers.get_initializer(initializers.initializer_for(name))
