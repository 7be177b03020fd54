"""A flax.linen CNN with BatchNorm and Dropout used as a jaxnets model: init/apply contract, state
updates in training only, dropout from key=, fit, summary and checkpoint round trip."""

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import TrainState, checkpoint, fit, inspect
from jaxnets.interop import LinenModel


class SmallCNN(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool = False):
        x = linen.Conv(4, (3, 3))(x)
        x = linen.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = linen.relu(x)
        x = x.reshape((x.shape[0], -1))
        x = linen.Dropout(0.5, deterministic=not train)(x)
        return linen.Dense(3)(x)


def test_contract_state_and_dropout(key):
    model = LinenModel(SmallCNN())
    x = jax.random.normal(key, (5, 6, 6, 1))
    params, state = model.init(key, (5, 6, 6, 1))
    assert set(params) == {"Conv_0", "BatchNorm_0", "Dense_0"} and set(state) == {"batch_stats"}
    y_eval, same = model.apply(params, state, x)
    assert y_eval.shape == (5, 3) == model.output_shape((5, 6, 6, 1))
    assert same is state
    y1, new_state = model.apply(params, state, x, key=jax.random.PRNGKey(1), train=True)
    y2, _ = model.apply(params, state, x, key=jax.random.PRNGKey(1), train=True)
    y3, _ = model.apply(params, state, x, key=jax.random.PRNGKey(2), train=True)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, y3)
    mean = np.asarray(linen.Conv(4, (3, 3)).apply({"params": params["Conv_0"]}, x)).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)


def test_fit_summary_and_checkpoint(key, tmp_path, capsys):
    model = LinenModel(SmallCNN())
    x = jax.random.normal(key, (64, 6, 6, 1))
    t = (x[:, :3, :, 0].sum(axis=(1, 2)) > 0).astype(jnp.int32)
    params, state = model.init(key, x[:1])
    import optax

    result = fit(model, params, state, (x, t), loss="cross_entropy", optimizer=optax.adam(1e-2), epochs=3,
                 batch_size=16, key=key, validation_data=(x, t), checkpoint_dir=tmp_path, progress=False)
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]
    assert not np.allclose(result.state["batch_stats"]["BatchNorm_0"]["var"], 1.0)
    restored, meta = checkpoint.restore_checkpoint(tmp_path, {"train": TrainState(result.params, result.state, result.opt_state),
                                                           "best_params": params, "best_state": state})
    np.testing.assert_array_equal(restored["train"][0]["Dense_0"]["kernel"], result.params["Dense_0"]["kernel"])
    np.testing.assert_array_equal(restored["train"][1]["batch_stats"]["BatchNorm_0"]["mean"],
                                  result.state["batch_stats"]["BatchNorm_0"]["mean"])
    assert meta["epoch"] == 2
    rows = inspect.summary(model, (6, 6, 1))
    assert [r.name for r in rows] == ["Conv_0", "BatchNorm_0", "Dropout_0", "Dense_0"]
    assert rows["Conv_0"].output_shape == (6, 6, 4) and rows["Conv_0"].weights == 36 and rows["Conv_0"].biases == 4
    assert rows["Dense_0"].connections == 144 * 3 and rows["BatchNorm_0"].biases == 4
    assert "Conv_0" in capsys.readouterr().out
