"""Hand-written backprop (the notes' delta rule) equals jax.grad to float64 precision for every
activation of the toolkit and every loss; the naive per-layer gradients equal it too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import activations, backprop, models
from jaxnets.gradcheck import relative_error
from jaxnets.losses import get_loss

HIDDEN = sorted(activations.ACTIVATIONS)  # every activation, softmax and step included
OUTPUT_LOSSES = [("logits", "cross_entropy", 4), ("logits", "binary_cross_entropy", 1),
                 ("logits", "binary_cross_entropy", 3), ("linear", "squared_error", 2),
                 ("sigmoid", "squared_error", 3), ("softmax", "squared_error", 3), ("tanh", "squared_error", 2)]


def _problem(activation, output, loss, k, batch=6, seed=0, **options):
    rng = np.random.default_rng(seed)
    model = models.mlp([5, 4, k], activation=activation, output=output, **options)
    x = rng.standard_normal((batch, 2, 3, 1))  # goes through Flatten
    if loss == "cross_entropy":
        t = jnp.asarray(rng.integers(0, k, batch))
    elif loss == "binary_cross_entropy":
        t = jnp.asarray(rng.integers(0, 2, (batch, k)) if k > 1 else rng.integers(0, 2, batch), jnp.float64)
    else:
        t = jnp.asarray(rng.standard_normal((batch, k)))
    params, _ = model.init(jax.random.PRNGKey(seed), jnp.asarray(x))
    # random slopes (PReLU) and non-zero biases so that every term of the rule is exercised
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(0.7 * rng.standard_normal(p.shape)), params)
    return model, params, jnp.asarray(x), t


def _both(model, params, x, t, loss):
    """(hand value, hand grads), (autodiff value, autodiff grads), in one compiled program."""
    f = lambda p: jnp.mean(get_loss(loss)(model.apply(p, {}, x)[0], t))  # noqa: E731
    return jax.jit(lambda p: (backprop.backprop(model, p, x, t, loss), jax.value_and_grad(f)(p)))(params)


@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize("output,loss,k", [OUTPUT_LOSSES[0], OUTPUT_LOSSES[3]], ids=lambda v: str(v))
def test_backprop_equals_jax_grad_for_every_activation(activation, output, loss, k):
    with jax.enable_x64(True):
        model, params, x, t = _problem(activation, output, loss, k)
        (value, grads), (expected_value, expected) = _both(model, params, x, t, loss)
        assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(expected)
        np.testing.assert_allclose(value, expected_value, rtol=1e-14)
        for g, e in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
            assert g.dtype == jnp.float64
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("output,loss,k", OUTPUT_LOSSES, ids=lambda v: str(v))
def test_backprop_equals_jax_grad_for_every_output_and_loss(output, loss, k):
    with jax.enable_x64(True):
        model, params, x, t = _problem("tanh", output, loss, k, seed=3)
        (_, grads), (_, expected) = _both(model, params, x, t, loss)
        assert relative_error(grads, expected) < 1e-13


@pytest.mark.parametrize("activation,options", [("leaky_relu", {"negative_slope": 0.2}), ("elu", {"alpha": 0.5}),
                                                ("softmax", {"beta": 2.5}), ("prelu", {"slope_init": 0.1})])
def test_activation_options_are_honoured(activation, options):
    with jax.enable_x64(True):
        model, params, x, t = _problem(activation, "logits", "cross_entropy", 3, seed=1, **options)
        (_, grads), (_, expected) = _both(model, params, x, t, "cross_entropy")
        assert relative_error(grads, expected) < 1e-13


def test_notes_output_delta_is_prediction_minus_target():
    # δ⁽ᴸ⁾ = a⁽ᴸ⁾ − y: sigmoid of the logits minus the labels, divided by the batch size (mean loss)
    logits = jnp.array([[0.0, 2.0], [-1.0, 0.5]])
    labels = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    _, delta = backprop.output_delta("binary_cross_entropy", logits, labels)
    np.testing.assert_allclose(delta, (1 / (1 + np.exp(-np.asarray(logits))) - np.asarray(labels)) / 2, rtol=1e-6)


def test_naive_per_layer_gradients_equal_backprop():
    with jax.enable_x64(True):
        model, params, x, t = _problem("sigmoid", "logits", "cross_entropy", 3, seed=2)
        _, grads = backprop.backprop(model, params, x, t, "cross_entropy")
        naive = backprop.naive_gradients(model, params, x, t, "cross_entropy")
        assert relative_error(naive, grads) < 1e-14


def test_forward_cache_holds_each_layer_input():
    model, params, x, _ = _problem("relu", "logits", "cross_entropy", 3)
    outputs, cache = backprop.forward(model, params, x)
    assert len(cache) == len(model) + 1 and cache[0] is x
    np.testing.assert_allclose(outputs, model.apply(params, {}, x)[0])
    assert cache[2].shape == (6, 5)  # dense1's pre-activations z


def test_unsupported_layers_and_losses_are_named():
    from jaxnets.nn import Dropout, Sequential, Dense
    model = Sequential([Dense(3), Dropout(0.5), Dense(2)])
    params, _ = model.init(jax.random.PRNGKey(0), (2, 4))
    with pytest.raises(TypeError, match="dropout1"):
        backprop.backprop(model, params, jnp.ones((2, 4)), jnp.zeros(2, jnp.int32))
    model, params, x, t = _problem("relu", "logits", "cross_entropy", 3)
    with pytest.raises(ValueError, match="known losses"):
        backprop.backprop(model, params, x, t, "hinge")
