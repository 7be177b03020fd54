"""Models of Flax linen, Flax NNX and Equinox used as jaxnets models: the contract (shapes, state that
changes in training only, dropout from key=), training on digits to the accuracy of the same native
network, fit_seeds equal to fit, a resumed checkpointed run equal to an uninterrupted one, gradient
checks and the summary's parameter counts. One network, written in each library: 64 inputs → Dense(32)
→ BatchNorm → ReLU → Dropout(0.1) → Dense(10)."""

import chex
import equinox as eqx
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxnets as jn
from jaxnets import data, gradcheck, inspect, losses, nn, optim
from jaxnets.interop import EquinoxModel, LinenModel, NNXModel
from jaxnets.seeds import fit_seeds, init_runs, unstack_tree

HIDDEN, CLASSES = 32, 10


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool = False):
        x = linen.Dense(HIDDEN)(x.reshape((x.shape[0], -1)))
        x = linen.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = linen.Dropout(0.1, deterministic=not train)(linen.relu(x))
        return linen.Dense(CLASSES)(x)


class NNXNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, HIDDEN, rngs=rngs)
        self.norm = nnx.BatchNorm(HIDDEN, momentum=0.9, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.out = nnx.Linear(HIDDEN, CLASSES, rngs=rngs)

    def __call__(self, x):
        x = self.norm(self.hidden(x.reshape((x.shape[0], -1))))
        return self.out(self.dropout(nnx.relu(x)))


class EquinoxNet(eqx.Module):
    hidden: eqx.nn.Linear
    norm: eqx.nn.BatchNorm
    dropout: eqx.nn.Dropout
    out: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(64, HIDDEN, key=k1)
        self.norm = eqx.nn.BatchNorm(HIDDEN, axis_name="batch", momentum=0.9, mode="batch")
        self.dropout = eqx.nn.Dropout(0.1)
        self.out = eqx.nn.Linear(HIDDEN, CLASSES, key=k2)

    def __call__(self, x, state, *, key=None):
        h, state = self.norm(self.hidden(x.reshape(-1)), state)
        return self.out(self.dropout(jax.nn.relu(h), key=key)), state


ADAPTERS = {
    "linen": lambda: LinenModel(LinenNet()),
    "nnx": lambda: NNXModel(NNXNet),
    "equinox": lambda: EquinoxModel(eqx.nn.make_with_state(EquinoxNet)),
}
NATIVE = nn.Sequential([nn.Flatten(), nn.Dense(HIDDEN), nn.BatchNorm(momentum=0.9), nn.Activation("relu"),
                        nn.Dropout(0.1), nn.Dense(CLASSES)])


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


def train(model, ds, *, key=0, epochs=20, **options):
    params, state = model.init(jax.random.PRNGKey(key), ds.x_train[:1])
    return jn.fit(model, params, state, (ds.x_train, ds.y_train), loss="cross_entropy",
                  optimizer=optim.optimizer("adam", 3e-3), epochs=epochs, batch_size=32, key=jax.random.PRNGKey(100 + key),
                  progress=False, **options)


@pytest.mark.parametrize("name", ADAPTERS)
def test_contract_state_changes_in_training_and_dropout_follows_the_key(name, digits):
    model = ADAPTERS[name]()
    x = jnp.asarray(digits.x_train[:16])
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    assert model.output_shape((16, 8, 8, 1)) == (16, CLASSES)
    y, same = model.apply(params, state, x)
    assert y.shape == (16, CLASSES)
    chex.assert_trees_all_equal(same, state)  # evaluation leaves the running statistics alone
    y1, trained = model.apply(params, state, x, key=jax.random.PRNGKey(1), train=True)
    y2, _ = model.apply(params, state, x, key=jax.random.PRNGKey(1), train=True)
    y3, _ = model.apply(params, state, x, key=jax.random.PRNGKey(2), train=True)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, y3)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(state)))
    counts = inspect.count_params(params)
    assert counts == inspect.count_params(NATIVE.init(jax.random.PRNGKey(0), x[:1])[0])  # same weights/biases split


@pytest.mark.parametrize("name", ADAPTERS)
def test_trains_on_digits_like_the_native_network(name, digits):
    native = train(NATIVE, digits)
    native_accuracy = jn.evaluate(NATIVE, native.params, native.state, (digits.x_test, digits.y_test),
                                  loss="cross_entropy")[1]
    model = ADAPTERS[name]()
    result = train(model, digits)
    accuracy = jn.evaluate(model, result.params, result.state, (digits.x_test, digits.y_test), loss="cross_entropy")[1]
    assert native_accuracy > 0.93
    assert accuracy >= native_accuracy - 0.02, (accuracy, native_accuracy)


@pytest.mark.parametrize("name", ADAPTERS)
def test_resumed_checkpointed_run_equals_the_uninterrupted_one(name, digits, tmp_path):
    model = ADAPTERS[name]()
    whole = train(model, digits, epochs=3)

    def stop_after_first(record):
        if record["epoch"] == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, digits, epochs=3, checkpoint_dir=tmp_path, on_epoch_end=stop_after_first)
    resumed = train(model, digits, epochs=3, checkpoint_dir=tmp_path)
    chex.assert_trees_all_equal((resumed.params, resumed.state), (whole.params, whole.state))
    assert resumed.history["train_loss"] == whole.history["train_loss"]


@pytest.mark.parametrize("name", ADAPTERS)
def test_fit_seeds_runs_equal_fits(name, digits):
    model = ADAPTERS[name]()
    x, y = digits.x_train[:256], digits.y_train[:256]
    keys = jnp.stack([jax.random.PRNGKey(5), jax.random.PRNGKey(6)])
    params, state = init_runs(model, keys, x[:1])
    # (SGD: the bias before batch norm gets a gradient of pure rounding noise, which Adam would scale up)
    options = dict(loss="cross_entropy", optimizer=optim.optimizer("sgd", 0.1), epochs=2, batch_size=32,
                   progress=False)
    together = fit_seeds(model, params, state, (x, y), keys=keys, **options)
    for r in range(2):
        alone = jn.fit(model, unstack_tree(params, r), unstack_tree(state, r), (x, y), key=keys[r], **options)
        chex.assert_trees_all_close(unstack_tree((together.params, together.state), r), (alone.params, alone.state),
                                    rtol=1e-4, atol=1e-5)
    assert not np.allclose(jax.tree.leaves(unstack_tree(together.params, 0))[0],
                           jax.tree.leaves(unstack_tree(together.params, 1))[0])


@pytest.mark.parametrize("name", ADAPTERS)
def test_gradients_pass_the_finite_difference_check_and_summary_counts(name, digits):
    model = ADAPTERS[name]()
    params, state = model.init(jax.random.PRNGKey(0), digits.x_train[:1])
    with jax.enable_x64(True):  # the check in float64, where central differences are accurate to ~1e-10
        x, t = jnp.asarray(digits.x_train[:8], jnp.float64), jnp.asarray(digits.y_train[:8])
        params64, state64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, state))

        def loss(p):
            return jnp.mean(losses.cross_entropy(model.apply(p, state64, x)[0], t))

        report = gradcheck.check_gradients(loss, params64)
    assert report.passed, report
    rows = inspect.summary(model, (8, 8, 1), print_table=False)
    assert rows.total.weights == 64 * HIDDEN + HIDDEN + HIDDEN * CLASSES  # two kernels and the BN scale
    assert rows.total.biases == HIDDEN + HIDDEN + CLASSES
