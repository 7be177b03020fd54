"""Concatenate (branches over the same input, joined on the channel axis) and the Inception module:
outputs against their branches applied one by one, shapes, parameter counts by hand, jit, gradients,
and the error that names a branch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_jit_equals_eager, assert_layer_gradients_match, assert_output_shape_agrees
from jaxnets import nn


def test_concatenate_joins_the_branch_outputs_in_order(key):
    layer = nn.Concatenate([nn.Dense(3), ("double", nn.Lambda(lambda x: 2 * x, name="double")), nn.Dense(1)])
    x = jax.random.normal(key, (4, 5))
    params, state = layer.init(key, x)
    y, _ = layer.apply(params, state, x)
    assert y.shape == (4, 3 + 5 + 1) == layer.output_shape((4, 5))
    np.testing.assert_allclose(y[:, :3], x @ params["dense1"]["w"] + params["dense1"]["b"][None], rtol=1e-5)
    np.testing.assert_allclose(y[:, 3:8], 2 * x, rtol=1e-6)
    assert set(params) == {"dense1", "dense2"}


def test_inception_module_shapes_and_parameter_count_by_hand():
    module = nn.inception(8, 4, 6, 2, 3, 5)
    assert module.output_shape((2, 14, 14, 10)) == (2, 14, 14, 8 + 6 + 3 + 5)
    params, _ = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), (2, 14, 14, 10)))
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
    # 1×1: 10·8 + 8; 3×3 branch: 10·4 + 4 + 9·4·6 + 6; 5×5 branch: 10·2 + 2 + 25·2·3 + 3; pool branch: 10·5 + 5
    assert count == (88) + (44 + 222) + (22 + 153) + (55)


def test_branch_outputs_that_do_not_line_up_are_an_error_naming_them():
    layer = nn.Concatenate([("same", nn.Conv2D(2, 3, padding="SAME")), ("valid", nn.Conv2D(2, 3))])
    with pytest.raises(nn.LayerError, match=r"agree on every axis but the last.*same \(1, 6, 6, 2\), valid \(1, 4, 4, 2\)"):
        layer.output_shape((1, 6, 6, 1))
    with pytest.raises(nn.LayerError, match=r"layer 'valid'"):
        nn.Concatenate([("valid", nn.Conv2D(2, 9))]).output_shape((1, 6, 6, 1))
    with pytest.raises(ValueError, match="at least one branch"):
        nn.Concatenate([])


@pytest.mark.parametrize("layer,in_shape,out_shape", [
    (nn.inception(2, 2, 3, 1, 2, 2), (2, 6, 6, 3), (2, 6, 6, 9)),
    (nn.Concatenate([nn.Conv1D(2, 3, padding="SAME"), nn.Sequential([nn.BatchNorm(), nn.Dropout(0.5)])]), (2, 7, 3),
     (2, 7, 5)),
])
def test_shapes_jit_and_state(layer, in_shape, out_shape, key):
    assert_output_shape_agrees(layer, in_shape, out_shape, key)
    assert_jit_equals_eager(layer, in_shape, rtol=1e-5, atol=1e-5)


def test_gradients_match_central_differences_float64():
    assert_layer_gradients_match(nn.inception(1, 1, 2, 1, 1, 1), (1, 4, 4, 2))
    assert_layer_gradients_match(nn.Concatenate([nn.Dense(2), nn.Activation("tanh")]), (2, 3))


def test_batch_norm_inside_a_branch_updates_its_state_in_training(key):
    layer = nn.Concatenate([nn.Dense(2), nn.Sequential([nn.Dense(2), nn.BatchNorm()])])
    x = jax.random.normal(key, (8, 3))
    params, state = layer.init(key, x)
    _, trained = layer.apply(params, state, x, train=True)
    assert not np.allclose(trained["sequential1"]["batchnorm1"]["mean"], state["sequential1"]["batchnorm1"]["mean"])
    assert jnp.all(layer.apply(params, state, x)[1]["sequential1"]["batchnorm1"]["mean"] == 0)
