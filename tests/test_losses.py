"""Losses and metrics against hand-computed values, central differences (float64) and extreme logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import central_difference_grad
from jaxnets import losses


def test_squared_error_is_half_squared_norm():
    y = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    t = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(losses.squared_error(y, t), [0.5 * 5, 0.5 * 5])


def test_binary_cross_entropy_values():
    z = jnp.array([0.0, 2.0, -1.0])
    t = jnp.array([1.0, 0.0, 0.0])
    p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
    expected = -(np.array([1, 0, 0]) * np.log(p) + (1 - np.array([1, 0, 0])) * np.log(1 - p))
    np.testing.assert_allclose(losses.binary_cross_entropy(z, t), expected, rtol=1e-6)
    np.testing.assert_allclose(losses.binary_cross_entropy(z[:, None], t), expected, rtol=1e-6)


def test_cross_entropy_integer_and_one_hot_agree_with_formula():
    z = np.array([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]])
    labels = np.array([2, 0])
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(2), labels]
    np.testing.assert_allclose(losses.cross_entropy(jnp.asarray(z), jnp.asarray(labels)), expected, rtol=1e-6)
    one_hot = np.eye(3)[labels]
    np.testing.assert_allclose(losses.cross_entropy(jnp.asarray(z), jnp.asarray(one_hot)), expected, rtol=1e-6)


@pytest.mark.parametrize("scale", [1e4, 1e9])
def test_losses_finite_and_correct_at_extreme_logits(scale):
    z = jnp.array([[scale, -scale, 0.0], [-scale, scale, 0.0]])
    ce = losses.cross_entropy(z, jnp.array([0, 0]))
    np.testing.assert_allclose(ce, [0.0, 2 * scale], rtol=1e-6)
    # one-hot (and soft) labels take another path through the loss: it must be as stable
    one_hot = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(losses.cross_entropy(z, one_hot), [0.0, 2 * scale], rtol=1e-6)
    soft = jnp.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(losses.cross_entropy(z, soft), [0.5 * scale, 0.0], rtol=1e-6)
    assert bool(jnp.all(jnp.isfinite(jax.grad(lambda v: losses.cross_entropy(v, one_hot).sum())(z))))
    bce = losses.binary_cross_entropy(jnp.array([scale, -scale, scale]), jnp.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(bce, [0.0, 0.0, scale], rtol=1e-6)
    for g in (jax.grad(lambda z: losses.cross_entropy(z, jnp.array([0, 0])).sum())(z),
              jax.grad(lambda z: losses.binary_cross_entropy(z, jnp.array([1.0, 0.0, 0.0])).sum())(jnp.array([scale, -scale, scale]))):
        assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_loss_gradients_match_central_differences(name, key):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        outputs = rng.normal(size=(4, 3))
        targets = {
            "squared_error": jnp.asarray(rng.normal(size=(4, 3))),
            "binary_cross_entropy": jnp.asarray(rng.integers(0, 2, size=(4, 3)).astype(np.float64)),
            "cross_entropy": jnp.asarray(rng.integers(0, 3, size=4)),
        }[name]
        f = lambda y: jnp.sum(losses.get_loss(name)(jnp.asarray(y), targets) * jnp.arange(1.0, 5.0))
        np.testing.assert_allclose(jax.grad(f)(jnp.asarray(outputs)), central_difference_grad(f, outputs), rtol=1e-7, atol=1e-9)


def test_penalties_cover_weights_not_biases():
    # one rule (jaxnets._util.is_bias), shared with the summary's weight/bias columns: biases are the
    # leaves named b/bias/offset; everything else that is trained (a PReLU slope, a BN scale) is a weight
    params = {"dense1": {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([100.0, 100.0])},
              "prelu1": {"slope": jnp.array([5.0])}, "bn": {"scale": jnp.array([0.5]), "offset": jnp.array([7.0])}}
    np.testing.assert_allclose(losses.l1_penalty(params), 1.0 + 2.0 + 5.0 + 0.5)
    np.testing.assert_allclose(losses.l2_penalty(params), 0.5 * (1.0 + 4.0 + 25.0 + 0.25))
    mask = {"dense1": {"w": False, "b": True}, "prelu1": {"slope": False}, "bn": {"scale": False, "offset": False}}
    np.testing.assert_allclose(losses.l1_penalty(params, mask), 200.0)
    from jaxnets import inspect

    assert inspect.count_params(params) == (2 + 1 + 1, 2 + 1)  # (weights, biases): the same split


def test_penalty_gradients():
    params = {"d": {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([3.0])}}
    g1 = jax.grad(losses.l1_penalty)(params)
    np.testing.assert_allclose(g1["d"]["w"], [1, -1, 1])
    np.testing.assert_allclose(g1["d"]["b"], [0])
    g2 = jax.grad(losses.l2_penalty)(params)
    np.testing.assert_allclose(g2["d"]["w"], [1.0, -2.0, 0.5])


def test_accuracy_multiclass_binary_and_one_hot():
    logits = jnp.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    np.testing.assert_allclose(losses.accuracy(logits, jnp.array([0, 1, 1])), 2 / 3)
    np.testing.assert_allclose(losses.accuracy(logits, jnp.eye(2)[jnp.array([0, 1, 1])]), 2 / 3)
    np.testing.assert_allclose(losses.accuracy(jnp.array([[1.0], [-1.0]]), jnp.array([1, 1])), 0.5)


def test_bad_label_shapes_and_unknown_names():
    with pytest.raises(ValueError, match="labels must be integers of shape \\(2,\\)"):
        losses.cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="outputs \\(2, 3\\) and targets \\(2, 2\\) differ"):
        losses.squared_error(jnp.zeros((2, 3)), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="known losses: binary_cross_entropy, cross_entropy, squared_error"):
        losses.get_loss("hinge")
