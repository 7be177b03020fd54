"""The training engine: compiled loss/grad factories, the scanned epoch, and fit (early stopping,
penalties, plateau annealing, non-finite errors, checkpoint resume) on synthetic and real data."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnets as jn
from jaxnets import data, losses, models, nn, optim, train
from jaxnets.train import (TrainState, make_epoch_fn, make_evaluate_fn, per_example_grad_fn,
                           per_example_loss_fn, value_and_grad_fn)


def spirals(n=512, seed=0):
    x, y = data.make_synthetic("spirals", n, key=jax.random.PRNGKey(seed))
    return x, y


def train_mlp(x, y, *, epochs=5, key=jax.random.PRNGKey(0), **kwargs):
    model = models.mlp([32, 32, 2], activation="tanh")
    params, state = model.init(key, x[:1])
    kwargs.setdefault("optimizer", optim.optimizer("adam", 1e-2))
    return model, jn.fit(model, params, state, (x, y), loss="cross_entropy", epochs=epochs,
                         batch_size=64, key=key, progress=False, **kwargs)


def test_value_and_grad_fn_matches_jax_grad(key):
    model = models.mlp([8, 3])
    x = jax.random.normal(key, (16, 5))
    t = jnp.arange(16) % 3
    params, state = model.init(key, x)
    (value, (_, outputs)), grads = value_and_grad_fn(model, "cross_entropy")(params, state, x, t)
    direct = lambda p: jnp.mean(losses.cross_entropy(model.apply(p, state, x)[0], t))
    np.testing.assert_allclose(value, direct(params), rtol=1e-6)
    chex.assert_trees_all_close(grads, jax.grad(direct)(params), rtol=1e-5, atol=1e-7)
    assert outputs.shape == (16, 3)


def test_per_example_losses_and_grads_match_a_loop(key):
    model = models.mlp([4, 3])
    x = jax.random.normal(key, (6, 5))
    t = jnp.array([0, 1, 2, 0, 1, 2])
    params, state = model.init(key, x)
    per_loss = per_example_loss_fn(model, "cross_entropy")(params, state, x, t)
    per_grad = per_example_grad_fn(model, "cross_entropy")(params, state, x, t)
    assert per_loss.shape == (6,)
    assert per_grad["dense1"]["w"].shape == (6, 5, 4)
    for i in range(6):
        single = lambda p: losses.cross_entropy(model.apply(p, state, x[i:i + 1])[0], t[i:i + 1])[0]
        np.testing.assert_allclose(per_loss[i], single(params), rtol=1e-6)
        chex.assert_trees_all_close(jax.tree.map(lambda g: g[i], per_grad), jax.grad(single)(params), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(data.SYNTHETIC))
def test_loss_decreases_on_every_synthetic_set(name):
    x, y = data.make_synthetic(name, 400, key=jax.random.PRNGKey(1))
    x, = data.standardize(x)
    regression = name == "bump"
    model = models.mlp([32, 32, y.shape[1] if regression else int(y.max()) + 1], activation="tanh")
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    result = jn.fit(model, params, state, (x, y), loss="squared_error" if regression else "cross_entropy",
                    optimizer=optim.optimizer("adam", 1e-2), epochs=60, batch_size=20,
                    key=jax.random.PRNGKey(2), progress=False)
    history = result.history["train_loss"]
    assert history[-1] < 0.5 * history[0], history


def test_same_key_gives_bit_identical_training():
    x, y = spirals()
    _, a = train_mlp(x, y, key=jax.random.PRNGKey(7))
    _, b = train_mlp(x, y, key=jax.random.PRNGKey(7))
    _, c = train_mlp(x, y, key=jax.random.PRNGKey(8))
    chex.assert_trees_all_equal(a.params, b.params)
    assert not np.array_equal(a.params["dense1"]["w"], c.params["dense1"]["w"])


def test_step_engine_equals_scan_engine():
    x, y = spirals()
    _, scanned = train_mlp(x, y, epochs=3, engine="scan")
    _, stepped = train_mlp(x, y, epochs=3, engine="step")
    chex.assert_trees_all_close(scanned.params, stepped.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scanned.history["train_loss"], stepped.history["train_loss"], rtol=1e-5)


def test_typed_keys_work_with_both_engines():
    x, y = spirals(128)
    _, scanned = train_mlp(x, y, epochs=2, engine="scan", key=jax.random.key(5))
    _, stepped = train_mlp(x, y, epochs=2, engine="step", key=jax.random.key(5))
    chex.assert_trees_all_close(scanned.params, stepped.params, rtol=1e-5, atol=1e-6)


def test_epoch_vmapped_over_seeds_equals_separate_epochs():
    x, y = spirals()
    model = models.mlp([16, 2], activation="tanh")
    opt = optim.optimizer("sgd", 0.1)
    epoch = make_epoch_fn(model, "cross_entropy", opt, batch_size=32)
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    states = []
    for k in keys:
        p, s = model.init(k, x[:1])
        states.append(TrainState(p, s, opt.init(p)))
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    batched, (batched_losses, _) = jax.jit(jax.vmap(epoch, in_axes=(0, None, None, 0, None, None)))(
        stacked, jnp.asarray(x), jnp.asarray(y), keys, 0.0, 0.0)
    for i, (ts, k) in enumerate(zip(states, keys)):
        single, (single_losses, _) = jax.jit(epoch)(ts, jnp.asarray(x), jnp.asarray(y), k, 0.0, 0.0)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], batched.params), single.params, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched_losses[i], single_losses, rtol=1e-5)


def test_evaluate_handles_a_partial_last_batch(key):
    model = models.mlp([3])
    x = jax.random.normal(key, (2500, 4))
    t = jnp.arange(2500) % 3
    params, state = model.init(key, x)
    loss, acc = make_evaluate_fn(model, "cross_entropy", batch_size=1000)(params, state, x, t)
    logits = model.apply(params, state, x)[0]
    np.testing.assert_allclose(loss, jnp.mean(losses.cross_entropy(logits, t)), rtol=1e-5)
    np.testing.assert_allclose(acc, losses.accuracy(logits, t), rtol=1e-6)


def test_early_stopping_restores_the_best_epoch():
    x, y = spirals(256)
    xv, yv = spirals(256, seed=5)
    _, result = train_mlp(x, y, epochs=40, validation_data=(xv, yv), early_stopping=3,
                          optimizer=optim.optimizer("adam", 0.05))
    val = result.history["val_loss"]
    assert result.best_epoch == int(np.argmin(val))
    if result.stopped_early:
        assert len(val) == result.best_epoch + 4
    model = models.mlp([32, 32, 2], activation="tanh")
    best_loss, _ = make_evaluate_fn(model, "cross_entropy")(result.params, result.state, xv, yv)
    np.testing.assert_allclose(best_loss, min(val), rtol=1e-5)


def test_l2_switches_on_at_the_given_epoch():
    x, y = spirals()
    _, plain = train_mlp(x, y, epochs=4)
    _, late = train_mlp(x, y, epochs=4, l2=0.1, regularize_from_epoch=2)
    _, early = train_mlp(x, y, epochs=4, l2=0.1)
    # before its start epoch the penalty is 0 (a program with the penalty term: equal to rounding)
    np.testing.assert_allclose(plain.history["train_loss"][:2], late.history["train_loss"][:2], rtol=1e-6)
    assert plain.history["train_loss"][3] != late.history["train_loss"][3]
    norm = lambda r: float(losses.l2_penalty(r.params))
    assert norm(early) < norm(late) < norm(plain)


def test_reduce_on_plateau_lowers_the_learning_rate():
    x, y = spirals(256)
    _, result = train_mlp(x, y, epochs=12, validation_data=spirals(128, seed=9),
                          optimizer=optim.optimizer("sgd", 5.0),  # too large: validation stalls
                          reduce_on_plateau=jn.ReduceOnPlateau(factor=0.5, patience=2))
    rates = result.history["learning_rate"]
    assert rates[0] == pytest.approx(5.0) and rates[-1] < 5.0


def test_non_finite_loss_names_epoch_step_and_leaves():
    x, y = spirals(256)
    # an infinite step makes every param non-finite after the first step, so the second loss is NaN
    with pytest.raises(jn.NonFiniteError, match=r"at epoch 0: loss nan at step 1 \(of 4 steps\); non-finite params "
                                                r"after the epoch: dense1/b, dense1/w, dense2/b, dense2/w, dense3/b"):
        train_mlp(x, y, epochs=2, optimizer=optim.optimizer("sgd", np.inf))
    result = train_mlp(x, y, epochs=3, optimizer=optim.optimizer("sgd", np.inf), on_non_finite="record")[1]
    assert result.diverged_epoch == 0 and len(result.history["epoch"]) == 1  # nothing more to learn: it stops


def test_interrupted_fit_resumes_bit_identically(tmp_path):
    x, y = spirals()
    xv, yv = spirals(128, seed=4)
    kwargs = dict(validation_data=(xv, yv), early_stopping=jn.EarlyStopping(patience=50))
    _, full = train_mlp(x, y, epochs=6, **kwargs)
    _, first = train_mlp(x, y, epochs=3, checkpoint_dir=tmp_path / "run", **kwargs)
    _, resumed = train_mlp(x, y, epochs=6, checkpoint_dir=tmp_path / "run", **kwargs)
    assert first.history["epoch"] == [0, 1, 2]
    assert resumed.history["epoch"] == list(range(6))
    chex.assert_trees_all_equal(resumed.params, full.params)
    assert resumed.history["train_loss"] == full.history["train_loss"]


def jitter(key, x):
    """A keyed augmentation for the tests: Gaussian noise of standard deviation 0.1."""
    return x + 0.1 * jax.random.normal(key, x.shape, x.dtype)


def test_augment_gives_each_epoch_its_own_keyed_copy_of_the_inputs():
    x, y = spirals()
    key = jax.random.PRNGKey(0)
    model, result = train_mlp(x, y, epochs=3, key=key, augment=jitter)
    # The same run by hand: epoch e splits fold_in(key, e) into an augmentation key and an epoch key.
    optimizer = optim.optimizer("adam", 1e-2)
    params, state = model.init(key, x[:1])
    ts = TrainState(params, state, optimizer.init(params))
    epoch_fn = jax.jit(make_epoch_fn(model, "cross_entropy", optimizer, batch_size=64))
    augment = jax.jit(jitter)  # fit jits it too (eager rounding differs in the last bit)
    for epoch in range(3):
        augment_key, epoch_key = jax.random.split(jax.random.fold_in(key, epoch))
        ts, _ = epoch_fn(ts, augment(augment_key, jnp.asarray(x)), jnp.asarray(y), epoch_key)
    chex.assert_trees_all_equal(result.params, ts.params)
    _, plain = train_mlp(x, y, epochs=3, key=key)
    assert plain.history["train_loss"] != result.history["train_loss"]


def test_interrupted_augmented_fit_resumes_bit_identically(tmp_path):
    x, y = spirals()
    _, full = train_mlp(x, y, epochs=4, augment=jitter)
    train_mlp(x, y, epochs=2, augment=jitter, checkpoint_dir=tmp_path / "run")
    _, resumed = train_mlp(x, y, epochs=4, augment=jitter, checkpoint_dir=tmp_path / "run")
    chex.assert_trees_all_equal(resumed.params, full.params)
    assert resumed.history["train_loss"] == full.history["train_loss"]


def test_augment_must_keep_the_input_shape():
    x, y = spirals(128)
    with pytest.raises(ValueError, match=r"augment\(key, x\) must return an array shaped like the training "
                                         r"inputs, float32\[128, 2\]; got ShapeDtypeStruct\(shape=\(128, 1\)"):
        train_mlp(x, y, augment=lambda k, v: v[:, :1])
    with pytest.raises(TypeError, match="augment must be a function"):
        train_mlp(x, y, augment="flip")


def test_fit_rejects_inconsistent_arguments():
    x, y = spirals(128)
    with pytest.raises(ValueError, match="early_stopping monitoring val_loss needs validation_data"):
        train_mlp(x, y, early_stopping=2)
    with pytest.raises(ValueError, match="train_data has 128 inputs but 100 targets"):
        train_mlp(x, y[:100])
    with pytest.raises(ValueError, match="unknown engine 'loop'; known engines: auto, scan, step"):
        train_mlp(x, y, engine="loop")


def test_mlp_reaches_97_percent_on_digits():
    ds = data.load_digits()
    model = models.mlp([256, 256, 10], activation="relu")  # 97.2–97.8% over init seeds 0–2
    params, state = model.init(jax.random.PRNGKey(0), ds.x_train[:1])
    result = jn.fit(model, params, state, (ds.x_train, ds.y_train), loss="cross_entropy",
                    optimizer=optim.optimizer("adam", 1e-3), epochs=40, batch_size=32,
                    key=jax.random.PRNGKey(1), progress=False)
    _, acc = make_evaluate_fn(model, "cross_entropy")(result.params, result.state, ds.x_test, ds.y_test)
    assert float(acc) >= 0.97


@pytest.mark.requires_fashion_mnist
def test_mlp_reaches_88_percent_on_fashion_mnist_in_10_epochs():
    ds = data.load_fashion_mnist()
    model = models.mlp([256, 256, 10], activation="relu")
    params, state = model.init(jax.random.PRNGKey(0), ds.x_train[:1])
    result = jn.fit(model, params, state, (ds.x_train, ds.y_train), loss="cross_entropy",
                    optimizer=optim.optimizer("adam", 1e-3), epochs=10, batch_size=128,
                    key=jax.random.PRNGKey(0), progress=False)
    _, acc = make_evaluate_fn(model, "cross_entropy")(result.params, result.state, ds.x_test, ds.y_test)
    assert float(acc) >= 0.88


@pytest.mark.parametrize("n, batch", [(64, 16), (70, 16)])
def test_epoch_batches_are_a_fresh_permutation_each_key(n, batch):
    first = np.asarray(train.epoch_batches(jax.random.PRNGKey(0), n, batch))
    second = np.asarray(train.epoch_batches(jax.random.PRNGKey(1), n, batch))
    assert first.shape == (n // batch, batch)
    for batches in (first, second):  # every example at most once, and all of them when batch divides n
        assert len(np.unique(batches)) == batches.size and batches.min() >= 0 and batches.max() < n
    assert not np.array_equal(first, second)
    assert not np.array_equal(first.ravel(), np.arange(first.size))  # shuffled, not in order


def test_the_compiled_plans_equal_the_plan_drawn_op_by_op():
    """plan_epoch/plan_runs are compiled at a lower optimisation level; the plan (integers only) must
    be exactly the one epoch_plan draws without compilation, for one run and for stacked runs."""
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    with jax.disable_jit():
        eager = [train.epoch_plan(k, 1000, 64) for k in keys]
    for k, (batches, step_keys) in zip(keys, eager):
        compiled = train.plan_epoch(k, 1000, 64)
        np.testing.assert_array_equal(np.asarray(compiled[0]), np.asarray(batches))
        np.testing.assert_array_equal(np.asarray(compiled[1]), np.asarray(step_keys))
    stacked = train.plan_runs(keys, 1000, 64)
    np.testing.assert_array_equal(np.asarray(stacked[0]), np.stack([np.asarray(b) for b, _ in eager]))
    np.testing.assert_array_equal(np.asarray(stacked[1]), np.stack([np.asarray(k) for _, k in eager]))


@pytest.mark.parametrize("engine", ["scan", "step"])
def test_both_engines_shuffle_every_epoch(engine):
    """With a loss that depends on the order of the examples only, the epochs of a run differ."""
    x = jnp.arange(64, dtype=jnp.float32)[:, None]
    model = nn.Sequential([nn.Dense(1)])
    params, state = model.init(jax.random.PRNGKey(0), x[:1])
    order = lambda outputs, targets: outputs[:, 0] * 0.0 + targets[:, 0] * jnp.arange(outputs.shape[0])  # noqa: E731
    result = jn.fit(model, params, state, (x, x), loss=order, optimizer=optim.optimizer("sgd", 0.0), epochs=3,
                    batch_size=64, key=jax.random.PRNGKey(1), engine=engine, progress=False)
    # the loss is Σ_i i·x_(i)/64 for the epoch's order: 3 epochs, 3 different orders
    assert len(set(result.history["train_loss"])) == 3
    in_order = float(jnp.mean(jnp.arange(64.0) ** 2))
    assert in_order not in result.history["train_loss"]


@pytest.mark.parametrize("engine", ["scan", "step"])
def test_history_counts_match_an_independent_evaluation(engine):
    """At learning rate 0 the params never change, so the training accuracy and loss of an epoch
    (whose batches cover every example once) equal those of the model on the whole set."""
    x, y = spirals(256)
    model = models.mlp([16, 2], activation="tanh")
    params, state = model.init(jax.random.PRNGKey(3), x[:1])
    result = jn.fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("sgd", 0.0),
                    epochs=2, batch_size=64, key=jax.random.PRNGKey(4), engine=engine, progress=False)
    logits, _ = model.apply(params, state, x)
    assert result.history["train_accuracy"] == pytest.approx([float(losses.accuracy(logits, y))] * 2, abs=1e-7)
    assert result.history["train_loss"] == pytest.approx([float(jnp.mean(losses.cross_entropy(logits, y)))] * 2,
                                                         rel=1e-6)
    assert 0.2 < result.history["train_accuracy"][0] < 0.8  # an untrained net: a count, not a constant
