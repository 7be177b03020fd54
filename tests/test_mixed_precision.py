"""Mixed precision (``compute_dtype``): the step computes in bfloat16, params, optimizer state, the loss and the
state stay float32, and training reaches the float32 accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnets as jn
from jaxnets import data, models, nn, optim
from jaxnets.train import TrainState, make_train_step, objective


def bn_mlp():
    return nn.Sequential([("flatten", nn.Flatten()), ("dense1", nn.Dense(32)), ("bn", nn.BatchNorm()),
                          ("relu", nn.Activation("relu")), ("dense2", nn.Dense(10))])


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


def test_the_objective_computes_in_bfloat16_and_returns_float32(digits):
    model = bn_mlp()
    x, y = digits.x_train[:64], digits.y_train[:64]
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    f = objective(model, "cross_entropy", compute_dtype="bfloat16")
    jaxpr = str(jax.make_jaxpr(lambda p: f(p, state, x, y, None, True))(params))
    assert "bf16" in jaxpr and "dot_general" in jaxpr
    (total, (new_state, outputs, data_loss)), grads = jax.value_and_grad(f, has_aux=True)(
        params, state, x, y, None, True)
    assert total.dtype == outputs.dtype == data_loss.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    assert jax.tree.map(lambda a: a.dtype, new_state) == jax.tree.map(lambda a: a.dtype, state)
    # the bfloat16 gradient is the float32 one to bfloat16's precision (8 bits of mantissa)
    (_, (_, _, full_loss)), full = jax.value_and_grad(objective(model, "cross_entropy"), has_aux=True)(
        params, state, x, y, None, True)
    assert float(data_loss) == pytest.approx(float(full_loss), rel=2e-2)
    # (over the whole gradient: dense1's bias, just before batch norm, has a gradient of 0 in exact arithmetic)
    g, h = (jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(tree)]) for tree in (grads, full))
    assert float(jnp.linalg.norm(g - h)) <= 0.05 * float(jnp.linalg.norm(h))
    # and it is not the float32 computation
    assert "bf16" not in str(jax.make_jaxpr(lambda p: objective(model, "cross_entropy")(p, state, x, y, None, True))(
        params))


def test_a_train_step_keeps_params_and_optimizer_state_in_float32(digits):
    model = bn_mlp()
    x, y = digits.x_train[:64], digits.y_train[:64]
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    optimizer = optim.optimizer("adam", 1e-2)
    step = jax.jit(make_train_step(model, "cross_entropy", optimizer, compute_dtype="bfloat16"))
    ts, (loss, correct) = step(TrainState(params, state, optimizer.init(params)), x, y, None, None, None)
    dtypes = {leaf.dtype for leaf in jax.tree.leaves((ts.params, ts.state, ts.opt_state)) if
              jnp.issubdtype(leaf.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}
    assert loss.dtype == jnp.float32 and 0 <= int(correct) <= 64


@pytest.mark.parametrize("engine", ["scan", "step"])
def test_bfloat16_training_reaches_the_float32_accuracy(digits, engine):
    model = models.mlp([64, 10], activation="relu")
    params, state = model.init(jax.random.PRNGKey(0), digits.x_train[:1])
    kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 3e-3), epochs=15, batch_size=32,
              key=jax.random.PRNGKey(1), progress=False, validation_data=(digits.x_test, digits.y_test),
              engine=engine)
    full = jn.fit(model, params, state, (digits.x_train, digits.y_train), **kw)
    half = jn.fit(model, params, state, (digits.x_train, digits.y_train), compute_dtype="bfloat16", **kw)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(half.params))
    assert full.history["val_accuracy"][-1] > 0.9
    # 360 test digits: one example is 0.28 points; bfloat16 lands within 2 points of float32
    assert abs(half.history["val_accuracy"][-1] - full.history["val_accuracy"][-1]) <= 0.02
    assert not np.allclose(np.asarray(half.params["dense1"]["w"]), np.asarray(full.params["dense1"]["w"]))


def test_a_checkpoint_of_another_precision_is_not_resumed(digits, tmp_path):
    model = models.mlp([16, 10])
    params, state = model.init(jax.random.PRNGKey(0), digits.x_train[:1])
    kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=1, batch_size=64,
              key=jax.random.PRNGKey(1), progress=False, checkpoint_dir=tmp_path)
    jn.fit(model, params, state, (digits.x_train, digits.y_train), compute_dtype="bfloat16", **kw)
    with pytest.raises(ValueError, match="compute_dtype bfloat16 there, None now"):
        jn.fit(model, params, state, (digits.x_train, digits.y_train), **{**kw, "epochs": 2})
