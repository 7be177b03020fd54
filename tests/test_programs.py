"""A call of ``fit``/``fit_seeds`` reuses the compiled programs of an earlier call with equal
settings (:mod:`jaxnets._programs`), and optimizers from ``optim.optimizer`` that differ only in
numbers share one update function, so that reuse covers a learning-rate sweep. Reuse must never
change a result: a run on reused programs equals a run on programs built afresh, bit for bit.

Compilation is counted as lowerings to MLIR (``conftest.lowerings_of``)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnets as jn
from conftest import lowerings_of
from jaxnets import augment, data, models, optim
from jaxnets._util import weight_mask
from jaxnets.seeds import fit_seeds, init_runs


@pytest.fixture(scope="module")
def spirals():
    x, y = data.make_synthetic("spirals", 256, key=jax.random.PRNGKey(0))
    model = models.mlp([12, 2], activation="tanh")
    params, state = model.init(jax.random.PRNGKey(1), x[:1])
    return model, params, state, (x, y)


def train(spirals, optimizer, model=None, **options):
    default_model, params, state, train_data = spirals
    model = model or default_model
    if model is not default_model:
        params, state = model.init(jax.random.PRNGKey(1), train_data[0][:1])
    return jn.fit(model, params, state, train_data, loss="cross_entropy", optimizer=optimizer, epochs=3,
                  batch_size=32, key=jax.random.PRNGKey(2), progress=False, **options)


def assert_same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_second_fit_with_the_same_settings_compiles_nothing_and_gives_the_same_result(spirals):
    opt = optim.optimizer("adam", 0.02)
    first, lowered_first = lowerings_of(lambda: train(spirals, opt))
    again, lowered_again = lowerings_of(lambda: train(spirals, opt))
    assert lowered_first > 0  # the counter sees compilation (so the zero below can fail)
    assert lowered_again == 0
    assert_same_params(first.params, again.params)
    assert first.history["train_loss"] == again.history["train_loss"]


def test_clearing_jax_caches_compiles_again_with_the_same_result(spirals):
    opt = optim.optimizer("adam", 0.03)
    first = train(spirals, opt)
    jax.clear_caches()
    again, lowered = lowerings_of(lambda: train(spirals, opt))
    assert lowered > 0
    assert_same_params(first.params, again.params)


def test_a_learning_rate_sweep_compiles_once_and_each_rate_is_the_one_used(spirals):
    train(spirals, optim.optimizer("adam", 0.01))
    swept, lowered = lowerings_of(lambda: train(spirals, optim.optimizer("adam", 0.05)))
    assert lowered == 0
    # the same rate on an optimizer built without jaxnets (its own update function: fresh programs)
    fresh, lowered_fresh = lowerings_of(lambda: train(spirals, optax.inject_hyperparams(optax.adam)(learning_rate=0.05)))
    assert lowered_fresh > 0
    assert_same_params(swept.params, fresh.params)
    assert swept.history["train_loss"] == fresh.history["train_loss"]
    slower = train(spirals, optim.optimizer("adam", 0.01))
    assert not np.array_equal(np.asarray(slower.params["dense1"]["w"]), np.asarray(swept.params["dense1"]["w"]))


def test_other_models_losses_and_optimizers_build_their_own_programs(spirals):
    opt = optim.optimizer("sgd", 0.1)
    base = train(spirals, opt)
    for other in (dict(model=models.mlp([12, 2], activation="relu")), dict(model=models.mlp([13, 2], activation="tanh")),
                  dict(optimizer=optim.optimizer("momentum", 0.1)), dict(engine="step")):
        options = {"optimizer": opt, **other}
        result, lowered = lowerings_of(lambda: train(spirals, **options))
        assert lowered > 0, other
        assert result.history["train_loss"] != base.history["train_loss"] or "engine" in other, other


def test_a_first_fit_of_a_deeper_model_compiles_no_more_programs_than_a_shallow_one(spirals):
    """fit moves params and optimizer state onto its run axis and off it again as one program per
    tree, not one operation per new leaf shape (each of which compiled on its own)."""
    x, _ = spirals[3]
    opt = optim.optimizer("adam", 0.01)
    counts = {}
    # the first model compiles what every model shares (the epoch's plan, the data checks)
    for name, widths in (("first", [12, 2]), ("shallow", [37, 2]), ("deep", [41, 43, 47, 53, 2])):
        model = models.mlp(widths, activation="tanh")  # widths 37-53: leaf shapes no other test uses
        params, state = model.init(jax.random.PRNGKey(1), x[:1])
        result, counts[name] = lowerings_of(lambda: jn.fit(model, params, state, spirals[3], loss="cross_entropy",
                                                           optimizer=opt, epochs=1, batch_size=32,
                                                           key=jax.random.PRNGKey(2), progress=False))
        assert jax.tree.map(jnp.shape, result.params) == jax.tree.map(jnp.shape, params)  # the run axis is gone
        assert np.isfinite(result.history["train_loss"][0])
    assert counts["deep"] == counts["shallow"]


def test_an_augmentation_written_anew_as_the_same_partial_reuses_the_programs(spirals):
    """A notebook cell run again builds a new functools.partial; equal function, arguments and
    keywords are the same augmentation, so nothing compiles again. Other keywords do compile."""
    opt = optim.optimizer("adam", 0.02)
    first = train(spirals, opt, augment=functools.partial(augment.gaussian_noise, std=0.1))
    again, lowered = lowerings_of(lambda: train(spirals, opt, augment=functools.partial(augment.gaussian_noise, std=0.1)))
    assert lowered == 0
    assert_same_params(first.params, again.params)
    other, lowered_other = lowerings_of(lambda: train(spirals, opt, augment=functools.partial(augment.gaussian_noise,
                                                                                           std=0.5)))
    assert lowered_other > 0
    assert not np.array_equal(np.asarray(other.params["dense1"]["w"]), np.asarray(first.params["dense1"]["w"]))


def test_a_setting_that_cannot_be_hashed_trains_as_well(spirals):
    """A penalty mask given as a tree (a dict, unhashable) builds its programs afresh; the weight
    mask written out equals the default mask."""
    _, params, _, _ = spirals
    opt = optim.optimizer("adam", 0.02)
    default = train(spirals, opt, l2=0.01)
    tree_mask = train(spirals, opt, l2=0.01, penalty_mask=weight_mask(params))
    assert_same_params(default.params, tree_mask.params)
    biases_too = train(spirals, opt, l2=0.01, penalty_mask=jax.tree.map(lambda _: True, params))
    assert not np.array_equal(np.asarray(biases_too.params["dense1"]["b"]), np.asarray(default.params["dense1"]["b"]))


def test_fit_seeds_reuses_its_programs_across_calls_and_grids(spirals):
    model, params, state, train_data = spirals
    stacked = jax.tree.map(lambda leaf: jnp.stack([leaf, leaf]), (params, state))
    keys = jnp.stack([jax.random.PRNGKey(5), jax.random.PRNGKey(6)])

    def grid(rates):
        return fit_seeds(model, *stacked, train_data, loss="cross_entropy", optimizer=optim.optimizer("rmsprop", rates[0]),
                         epochs=2, batch_size=32, keys=keys, hyperparams={"learning_rate": rates}, progress=False)
    grid([1e-3, 3e-3])
    second, lowered = lowerings_of(lambda: grid([1e-2, 3e-2]))
    assert lowered == 0
    one = jn.fit(model, params, state, train_data, loss="cross_entropy", optimizer=optim.optimizer("rmsprop", 3e-2),
                 epochs=2, batch_size=32, key=keys[1], progress=False)
    np.testing.assert_allclose(np.asarray(second.params["dense1"]["w"][1]), np.asarray(one.params["dense1"]["w"]),
                               rtol=1e-5, atol=1e-6)


def test_init_runs_compiles_once_per_model_and_input_shape():
    keys = jnp.stack([jax.random.PRNGKey(3), jax.random.PRNGKey(4)])
    first, _ = lowerings_of(lambda: init_runs(models.mlp([5, 2], activation="tanh"), keys, (1, 3)))
    # an equal model built anew, other keys: the same program
    swapped = keys[::-1]
    again, lowered = lowerings_of(lambda: init_runs(models.mlp([5, 2], activation="tanh"), swapped, (1, 3)))
    assert lowered == 0
    assert_same_params(jax.tree.map(lambda leaf: leaf[::-1], first), again)
    _, lowered_wider = lowerings_of(lambda: init_runs(models.mlp([6, 2], activation="tanh"), keys, (1, 3)))
    _, lowered_shape = lowerings_of(lambda: init_runs(models.mlp([5, 2], activation="tanh"), keys, (1, 4)))
    assert lowered_wider == 1 and lowered_shape == 1


def test_optimizer_inits_of_one_kind_compile_once_whatever_their_numbers():
    # shapes no other test uses: op by op, Optax's init would lower a program per zeros-like and broadcast
    params = {"w": jnp.ones((4, 13)), "b": jnp.zeros((13,))}
    stacked = jax.tree.map(lambda leaf: jnp.stack([leaf, leaf]), params)
    _, lowered_first = lowerings_of(lambda: optim.init_runs(optim.optimizer("adam", 0.1, b1=0.8), stacked))
    state, lowered = lowerings_of(lambda: optim.init_runs(optim.optimizer("adam", 0.3, b1=0.5), stacked))
    assert (lowered_first, lowered) == (1, 0)
    assert np.asarray(optim.get_hyperparams(state)["learning_rate"]).tolist() == pytest.approx([0.3, 0.3])
    assert np.asarray(optim.get_hyperparams(state)["b1"]).tolist() == [0.5, 0.5]
    _, lowered_other_kind = lowerings_of(lambda: optim.init_runs(optim.optimizer("rmsprop", 0.3), stacked))
    assert lowered_other_kind == 1
