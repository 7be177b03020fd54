"""BatchNorm (train/eval, running averages), LayerNorm and Dropout (scaling, fraction zeroed,
determinism per key) against NumPy, float64 gradients, shapes, jit, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_jit_equals_eager, assert_layer_gradients_match, assert_output_shape_agrees
from jaxnets.nn import BatchNorm, Conv2D, Dense, Dropout, LayerError, LayerNorm, Sequential


def random_affine(params, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(v.shape) + (1.0 if k == "scale" else 0.0)).astype(np.float32)
            for k, v in params.items()}


@pytest.mark.parametrize("shape", [(16, 5), (4, 6, 5, 3)])
def test_batchnorm_train_uses_batch_statistics(shape, key):
    layer = BatchNorm(momentum=0.8, epsilon=1e-3)
    x = np.asarray(jax.random.normal(key, shape)) * 3.0 + 2.0
    params, state = layer.init(key, x)
    params = random_affine(params)
    y, new_state = layer.apply(params, state, x, train=True)
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)  # biased variance
    expected = (x - mean) / np.sqrt(var + 1e-3) * params["scale"] + params["offset"]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new_state["mean"], 0.8 * 0.0 + 0.2 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state["var"], 0.8 * 1.0 + 0.2 * var, rtol=1e-5, atol=1e-6)


def test_batchnorm_running_averages_over_several_steps_and_eval_uses_them(key):
    layer = BatchNorm(momentum=0.9)
    params, state = layer.init(key, (8, 3))
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(5):
        x = np.asarray(jax.random.normal(jax.random.fold_in(key, step), (8, 3))) * (step + 1) + step
        _, state = layer.apply(params, state, x, train=True)
        running_mean = 0.9 * running_mean + 0.1 * x.mean(axis=0)
        running_var = 0.9 * running_var + 0.1 * x.var(axis=0)
    np.testing.assert_allclose(state["mean"], running_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["var"], running_var, rtol=1e-5, atol=1e-6)
    x = np.asarray(jax.random.normal(key, (4, 3)))
    y, eval_state = layer.apply(params, state, x, train=False)
    np.testing.assert_allclose(y, (x - running_mean) / np.sqrt(running_var + 1e-5), rtol=1e-4, atol=1e-5)
    assert eval_state is state  # evaluation leaves the running averages alone
    # Evaluation of one example does not depend on the rest of the batch; training does.
    np.testing.assert_allclose(layer.apply(params, state, x[:1])[0], y[:1], rtol=1e-6)
    assert not np.allclose(layer.apply(params, state, x[:1], train=True)[0], layer.apply(params, state, x, train=True)[0][:1])


def test_batchnorm_state_is_carried_by_name_in_sequential(key):
    model = Sequential([Conv2D(4, 3), BatchNorm(), Dense(2)])
    params, state = model.init(key, (2, 5, 5, 1))
    assert set(state) == {"batchnorm1"} and set(params["batchnorm1"]) == {"scale", "offset"}
    x = jax.random.normal(key, (2, 5, 5, 1))
    _, new_state = jax.jit(lambda p, s, x: model.apply(p, s, x, train=True))(params, state, x)
    assert not np.allclose(new_state["batchnorm1"]["mean"], state["batchnorm1"]["mean"])
    _, eval_state = model.apply(params, new_state, x)
    np.testing.assert_array_equal(eval_state["batchnorm1"]["var"], new_state["batchnorm1"]["var"])


@pytest.mark.parametrize("shape", [(3, 6), (2, 4, 5)])
def test_layernorm_normalises_each_example_over_the_last_axis(shape, key):
    layer = LayerNorm()
    x = np.asarray(jax.random.normal(key, shape)) * 4.0 - 1.0
    params, state = layer.init(key, x)
    params = random_affine(params)
    y, _ = layer.apply(params, state, x, train=True)
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * params["scale"] + params["offset"],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.apply(params, state, x)[0], y)  # same in evaluation


# ---- dropout ------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_zeroes_a_fraction_rate_and_preserves_the_mean(rate, key):
    n = 200_000
    x = jnp.ones((n, 1)) * 3.0
    y, _ = Dropout(rate).apply({}, {}, x, key=key, train=True)
    y = np.asarray(y)
    zeroed = np.mean(y == 0.0)
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs(zeroed - rate) < 5 * sigma
    np.testing.assert_allclose(y[y != 0], 3.0 / (1 - rate), rtol=1e-6)  # inverted scaling
    assert abs(y.mean() - 3.0) < 5 * 3.0 * np.sqrt(rate / (1 - rate) / n)


def test_dropout_is_deterministic_per_key_and_the_identity_in_evaluation(key):
    layer = Dropout(0.5)
    x = jax.random.normal(key, (4, 50))
    a, _ = layer.apply({}, {}, x, key=jax.random.PRNGKey(1), train=True)
    b, _ = layer.apply({}, {}, x, key=jax.random.PRNGKey(1), train=True)
    c, _ = layer.apply({}, {}, x, key=jax.random.PRNGKey(2), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a == 0, c == 0)
    np.testing.assert_array_equal(layer.apply({}, {}, x, key=key)[0], x)
    np.testing.assert_array_equal(layer.apply({}, {}, x)[0], x)  # no key needed in evaluation
    np.testing.assert_array_equal(Dropout(0.0).apply({}, {}, x, train=True)[0], x)
    np.testing.assert_array_equal(Dropout(1.0).apply({}, {}, x, key=key, train=True)[0], np.zeros((4, 50)))


def test_dropout_in_training_without_a_key_names_the_layer(key):
    model = Sequential([Dense(4), Dropout(0.3), Dense(2)])
    params, state = model.init(key, (2, 3))
    with pytest.raises(LayerError, match=r"layer 'dropout1' \(Dropout\): needs a PRNG key in training \(rate 0.3\)"):
        model.apply(params, state, jnp.ones((2, 3)), train=True)
    y, _ = model.apply(params, state, jnp.ones((2, 3)), key=key, train=True)
    assert y.shape == (2, 2)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_dropout_rate_outside_unit_interval_is_rejected(rate):
    with pytest.raises(ValueError, match=r"Dropout: rate must be in \[0, 1\]"):
        Dropout(rate)


# ---- table-driven: shapes, jit, gradients ---------------------------------------------------

LAYERS = [
    (BatchNorm(), (4, 3), (4, 3)),
    (BatchNorm(momentum=0.5), (2, 5, 5, 6), (2, 5, 5, 6)),
    (LayerNorm(), (2, 7), (2, 7)),
    (LayerNorm(), (2, 3, 8), (2, 3, 8)),
    (Dropout(0.5), (3, 4, 4, 2), (3, 4, 4, 2)),
    (Sequential([Dense(6), BatchNorm(), Dropout(0.2), LayerNorm()]), (5, 3), (5, 6)),
]
IDS = [f"{type(layer).__name__}-{i}" for i, (layer, _, _) in enumerate(LAYERS)]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_output_shape_agrees_with_apply(layer, in_shape, out_shape, train, key):
    state, new_state = assert_output_shape_agrees(layer, in_shape, out_shape, key, key=key, train=train)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_jit_equals_no_jit(layer, in_shape, out_shape, key):
    for train in (False, True):
        assert_jit_equals_eager(layer, in_shape, rtol=1e-5, atol=1e-6, key=key, train=train)


GRAD_CASES = [
    (BatchNorm(), (5, 3), True),
    (BatchNorm(), (2, 2, 2, 3), True),
    (BatchNorm(), (4, 3), False),
    (LayerNorm(), (3, 4), False),
    (Dropout(0.4), (3, 5), True),
]


@pytest.mark.parametrize("layer,in_shape,train", GRAD_CASES,
                         ids=[f"{type(l).__name__}-{'train' if t else 'eval'}-{len(s)}d" for l, s, t in GRAD_CASES])
def test_gradients_match_central_differences_float64(layer, in_shape, train, key):
    """Gradient with respect to params and input (in training BatchNorm couples the whole batch;
    in evaluation it uses random running statistics)."""
    assert_layer_gradients_match(layer, in_shape, train=train)


# ---- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [BatchNorm(), LayerNorm()])
def test_feature_mismatch_names_expected_and_actual(layer, key):
    model = Sequential([("norm", layer)])
    params, state = model.init(key, (2, 4, 4, 3))
    with pytest.raises(LayerError, match=rf"layer 'norm' \({type(layer).__name__}\): feature mismatch: expected 3 "
                                         r"features \(channels, last axis\), got 5 in input of shape \(2, 4, 4, 5\)"):
        model.apply(params, state, jnp.ones((2, 4, 4, 5)))


def test_norm_needs_a_feature_axis_and_batchnorm_needs_its_state(key):
    with pytest.raises(LayerError, match=r"\(BatchNorm\): expected input of shape \(batch, \.\.\., features\), got \(5,\)"):
        BatchNorm().init(key, (5,))
    params, _ = BatchNorm().init(key, (2, 3))
    with pytest.raises(LayerError, match=r"state holds no running statistics \('mean', 'var'\)"):
        BatchNorm().apply(params, {}, jnp.ones((2, 3)))


@pytest.mark.parametrize("make,match", [
    (lambda: BatchNorm(momentum=1.5), "momentum must be in"),
    (lambda: BatchNorm(epsilon=0.0), "epsilon must be positive"),
    (lambda: LayerNorm(epsilon=-1.0), "epsilon must be positive"),
])
def test_bad_hyperparameters_are_rejected_when_built(make, match):
    with pytest.raises(ValueError, match=match):
        make()
