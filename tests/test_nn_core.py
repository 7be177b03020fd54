"""Core layers: shape agreement (init's prediction = apply's result), jit = no-jit, determinism,
gradients against central differences, and errors naming the layer."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import central_difference_grad, lowerings_of
from jaxnets import activations, initializers, models
from jaxnets.nn import Activation, Dense, Flatten, Lambda, LayerError, Sequential


def square(x):
    return x * x


# One table drives the shape, jit and determinism tests: (layer, input shape, expected output shape)
LAYERS = [
    (Dense(7), (3, 5), (3, 7)),
    (Dense(4, use_bias=False), (2, 3, 6), (2, 3, 4)),
    (Dense(2, in_features=5), (1, 5), (1, 2)),
    (Flatten(), (3, 4, 5, 2), (3, 40)),
    (Lambda(square), (2, 3), (2, 3)),
    *[(Activation(name), (4, 6), (4, 6)) for name in activations.ACTIVATIONS],
    (Activation("leaky_relu", negative_slope=0.2), (2, 3), (2, 3)),
    (Activation("softmax", beta=3.0), (2, 3), (2, 3)),
    (Sequential([Flatten(), Dense(8), Activation("tanh"), Dense(3)]), (2, 4, 4, 1), (2, 3)),
    (models.perceptron(), (5, 2), (5, 1)),
    (models.mlp([16, 16, 4], activation="elu"), (3, 6, 6, 1), (3, 4)),
    (models.mlp([8, 1], activation="prelu", output="sigmoid"), (3, 2), (3, 1)),
]
IDS = [f"{type(layer).__name__}-{i}" for i, (layer, _, _) in enumerate(LAYERS)]


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_output_shape_agrees_with_apply(layer, in_shape, out_shape, key):
    x = jax.random.normal(key, in_shape)
    params, state = layer.init(key, x)
    y, _ = layer.apply(params, state, x)
    assert layer.output_shape(in_shape) == out_shape  # hand-computed
    assert y.shape == out_shape


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_jit_equals_no_jit(layer, in_shape, out_shape, key):
    x = jax.random.normal(key, in_shape)
    params, state = layer.init(key, x)
    eager, _ = layer.apply(params, state, x)
    compiled, _ = jax.jit(layer.apply)(params, state, x)
    np.testing.assert_allclose(compiled, eager, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_same_key_gives_bit_identical_params(layer, in_shape, out_shape):
    p1, _ = layer.init(jax.random.PRNGKey(42), in_shape)
    p2, _ = layer.init(jax.random.PRNGKey(42), in_shape)
    chex.assert_trees_all_equal(p1, p2)
    if jax.tree_util.tree_leaves(p1) and not isinstance(layer, Activation):  # PReLU's slope starts constant
        p3, _ = layer.init(jax.random.PRNGKey(43), in_shape)
        assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p3)))


def test_init_from_shape_runs_nothing_and_matches_init_from_array(key):
    model = models.mlp([5, 3])
    from_shape, _ = model.init(key, (2, 4))
    from_array, _ = model.init(key, jnp.ones((2, 4)))
    chex.assert_trees_all_equal(from_shape, from_array)
    assert from_shape["dense1"]["w"].shape == (4, 5)
    assert from_shape["dense2"]["w"].shape == (5, 3)


# With a concrete key each named initialiser draws by one compiled program per shape (initializers.compiled);
# with a traced key (vmap, jit) it draws op by op into the caller's program. Whole models: test_seeds compares
# model.init (compiled draws) with init_runs (draws traced into one vmapped program).
@pytest.mark.parametrize("name", sorted(initializers.INITIALIZERS))
def test_compiled_draw_equals_the_initializer_run_op_by_op(name):
    raw, draw = initializers.INITIALIZERS[name], initializers.get_initializer(name)
    for key, shape in [(jax.random.PRNGKey(3), (5, 7)), (jax.random.key(3), (3, 3, 2, 4))]:
        compiled = draw(key, shape, jnp.float32)
        # equal on this machine bit for bit but for small_normal's last bit (XLA folds its two constant
        # factors); rtol 1e-6 so that another CPU's rounding cannot fail the test
        chex.assert_trees_all_close(compiled, raw(key, shape, jnp.float32), rtol=1e-6, atol=0)
        assert compiled.shape == shape and compiled.dtype == jnp.float32


def test_compiled_init_works_inside_a_trace_that_closes_over_the_key():
    model, shape = Sequential([Dense(9, w_init="he_normal"), Activation("relu"), Dense(3)]), (1, 5)
    key = jax.random.PRNGKey(4)
    expected = model.init(key, shape)
    chex.assert_trees_all_close(jax.jit(lambda: model.init(key, shape))(), expected, rtol=1e-6, atol=0)
    chex.assert_trees_all_equal_shapes_and_dtypes(jax.eval_shape(lambda: model.init(key, shape)), expected)
    grads = jax.grad(lambda v: model.apply(model.init(key, shape)[0], {}, v)[0].sum())(jnp.ones(shape))
    assert grads.shape == shape


def test_weights_of_one_shape_share_their_compiled_draw_across_models():
    def mlp(activation, width=41):  # widths no other test uses; the same initialisers whatever the activation
        return Sequential([Dense(width), Activation(activation), Dense(41), Activation(activation), Dense(29)])

    key = jax.random.PRNGKey(5)
    first, lowered_first = lowerings_of(lambda: mlp("tanh").init(key, (1, 43)))
    assert lowered_first >= 5  # a draw per shape: (43, 41), (41,), (41, 41), (41, 29), (29,)
    # another activation: the same weight shapes, no new program
    other, lowered = lowerings_of(lambda: mlp("elu").init(key, (1, 43)))
    assert lowered == 0
    chex.assert_trees_all_equal(first, other)
    # a wider first layer: new shapes (43, 47), (47,) and (47, 41); the others' programs are kept
    _, lowered_wider = lowerings_of(lambda: mlp("tanh", width=47).init(key, (1, 43)))
    assert lowered_wider == 3


def test_a_users_own_jitted_step_compiles_once_for_params_from_init():
    """model.init's weights are placed like the key: a default key gives uncommitted arrays (as op
    by op), so a jitted step taking them and then its own outputs compiles once."""
    model = Sequential([Dense(19), Activation("relu"), Dense(23)])  # widths no other test uses
    params, _ = model.init(jax.random.PRNGKey(6), (1, 17))
    assert not any(leaf.committed for leaf in jax.tree.leaves(params))
    step = jax.jit(lambda p: jax.tree.map(lambda w: 0.9 * w, p))
    once, lowered_first = lowerings_of(lambda: step(params))
    _, lowered_again = lowerings_of(lambda: step(once))
    assert (lowered_first, lowered_again) == (1, 0)
    device = jax.devices()[-1]  # a committed key draws on its device
    placed, _ = model.init(jax.device_put(jax.random.PRNGKey(6), device), (1, 17))
    assert all(leaf.committed and leaf.devices() == {device} for leaf in jax.tree.leaves(placed["dense1"]["w"]))
    chex.assert_trees_all_equal(placed, params)


def test_dense_computes_xw_plus_b(key):
    layer = Dense(3)
    params, state = layer.init(key, (2, 4))
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y, _ = layer.apply(params, state, x)
    expected = x @ np.asarray(params["w"]) + np.asarray(params["b"])
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_params_are_named_dicts(key):
    params, state = models.mlp([4, 4, 2], activation="prelu").init(key, (1, 3))
    assert set(params) == {"dense1", "prelu1", "dense2", "prelu2", "dense3"}
    assert set(params["dense1"]) == {"w", "b"}
    np.testing.assert_array_equal(params["prelu1"]["slope"], np.full(4, 0.25, np.float32))
    assert state == {}


def test_float64_inputs_give_float64_params(key):
    with jax.enable_x64(True):
        params, _ = models.mlp([3, 2]).init(key, jnp.ones((1, 2), jnp.float64))
        assert all(p.dtype == jnp.float64 for p in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "elu", "softplus", "gelu", "prelu", "leaky_relu", "relu"])
def test_mlp_gradients_match_central_differences_float64(activation, key):
    """Autodiff through Dense + each activation against a NumPy central-difference loop."""
    with jax.enable_x64(True):
        model = models.mlp([4, 3], activation=activation)
        x = jax.random.normal(key, (5, 3), jnp.float64)
        params, state = model.init(key, x)
        w = np.asarray(params["dense1"]["w"])

        def loss_of_w(w1):
            p = {**params, "dense1": {**params["dense1"], "w": jnp.asarray(w1)}}
            return jnp.sum(model.apply(p, state, x)[0] ** 2)

        numeric = central_difference_grad(loss_of_w, w)
        analytic = jax.grad(loss_of_w)(jnp.asarray(w))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_wrong_input_shape_names_the_layer_and_shapes(key):
    model = models.mlp([8, 10])
    params, state = model.init(key, (2, 28, 28, 1))
    with pytest.raises(LayerError, match=r"layer 'dense1' \(Dense\): expected input of shape \(\.\.\., 784\), got \(2, 64\)"):
        model.apply(params, state, jnp.ones((2, 8, 8, 1)))


def test_nested_sequential_error_gives_the_path(key):
    inner = Sequential([("hidden", Dense(3, in_features=4))], name="block")
    outer = Sequential([("block1", inner)])
    with pytest.raises(LayerError, match=r"layer 'block1/hidden' \(Dense\): expected input of shape \(\.\.\., 4\), got \(2, 5\)"):
        outer.init(key, (2, 5))


def test_unknown_activation_lists_known_names():
    with pytest.raises(ValueError, match="unknown activation 'relu6'.*elu.*sigmoid.*tanh"):
        Activation("relu6")


def test_unknown_activation_option_is_an_error():
    with pytest.raises(TypeError, match="negative_slop.*accepted options: negative_slope"):
        Activation("leaky_relu", negative_slop=0.1)


def test_unknown_initializer_lists_known_names():
    with pytest.raises(ValueError, match="unknown initializer 'glorot'.*glorot_uniform.*he_normal"):
        Dense(3, w_init="glorot")


def test_duplicate_layer_names_are_rejected():
    with pytest.raises(ValueError, match="duplicate layer names"):
        Sequential([("a", Dense(2)), ("a", Dense(3))])


def test_layers_are_hashable_and_static_under_jit(key):
    model = models.mlp([4, 2])
    assert hash(model) == hash(models.mlp([4, 2]))
    params, state = model.init(key, (1, 3))
    apply = jax.jit(lambda m, p, s, x: m.apply(p, s, x)[0], static_argnums=0)
    assert apply(model, params, state, jnp.ones((1, 3))).shape == (1, 2)
