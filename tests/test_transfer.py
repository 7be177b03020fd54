"""Transfer learning: frozen params stay bit-identical while the rest train, patterns, head
replacement keeps the body's params."""

import jax
import numpy as np
import optax
import pytest

from jaxnets import models, nn, transfer


def data(key, n=256):
    x = jax.random.normal(key, (n, 6))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int32)


def test_frozen_params_stay_bit_identical_while_the_rest_train(key):
    model = models.mlp([8, 8, 2])
    params, state = model.init(key, (1, 6))
    result = transfer.fine_tune(model, params, state, data(key), frozen=["dense1", "dense2/b"],
                                optimizer=optax.adam(1e-2), loss="cross_entropy", epochs=2, batch_size=32,
                                key=key, progress=False)
    np.testing.assert_array_equal(result.params["dense1"]["w"], params["dense1"]["w"])
    np.testing.assert_array_equal(result.params["dense1"]["b"], params["dense1"]["b"])
    np.testing.assert_array_equal(result.params["dense2"]["b"], params["dense2"]["b"])
    assert not np.array_equal(result.params["dense2"]["w"], params["dense2"]["w"])
    assert not np.array_equal(result.params["dense3"]["w"], params["dense3"]["w"])


def test_masks_by_glob_and_subtree_and_typos_raise(key):
    params, _ = models.mlp([4, 4, 2]).init(key, (1, 3))
    mask = transfer.frozen_mask(params, "*/b")
    assert mask["dense1"]["b"] and not mask["dense1"]["w"] and mask["dense3"]["b"]
    assert transfer.frozen_mask(params, "dense2") == {"dense1": {"w": False, "b": False},
                                                      "dense2": {"w": True, "b": True},
                                                      "dense3": {"w": False, "b": False}}
    with pytest.raises(ValueError, match="matches no parameter.*dense1/w"):
        transfer.frozen_mask(params, "dens1")


def test_replace_head_keeps_body_and_inits_new_head(key):
    model = models.mlp([8, 5, 10])
    params, state = model.init(key, (1, 6))
    new_model, new_params, _ = transfer.replace_head(
        model, params, state, [("new_output", nn.Dense(3))], key=jax.random.PRNGKey(1), input_shape=(1, 6))
    assert new_model.output_shape((2, 6)) == (2, 3)
    assert "dense3" not in new_params and new_params["new_output"]["w"].shape == (5, 3)
    np.testing.assert_array_equal(new_params["dense1"]["w"], params["dense1"]["w"])
    y, _ = new_model.apply(new_params, {}, np.ones((2, 6), np.float32))
    assert y.shape == (2, 3)
    with pytest.raises(ValueError, match="already used"):
        transfer.replace_head(model, params, state, [("dense1", nn.Dense(3))], key=key, input_shape=(1, 6))
