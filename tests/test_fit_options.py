"""One table of ``fit`` options drives the three promises of the shared training loop:

* run r of ``fit_seeds`` equals ``fit`` with the same settings and key r (bit-identical with one run,
  where the program is the same; to 1e-9 (relative; 1e-8 absolute) in float64 with two runs, where the matrix products are
  batched);
* a run interrupted after an epoch and resumed from its checkpoint equals the uninterrupted run,
  bit for bit, for ``fit`` and ``fit_seeds``;
* the same option objects (monitors included) used for two calls give identical results.

The model has batch norm (state that changes) and dropout (randomness from the key) so that every
option is checked with both."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnets as jn
from jaxnets import data, nn, optim
from jaxnets.seeds import fit_seeds, stack_trees, unstack_tree

EPOCHS = 4


def jitter(key, x):
    """A keyed augmentation: Gaussian noise of standard deviation 0.05."""
    return x + 0.05 * jax.random.normal(key, x.shape, x.dtype)


def weight_norms(params, state):
    return {"w_norm": jnp.stack([jnp.linalg.norm(params["dense1"]["w"]), jnp.linalg.norm(params["dense2"]["w"])])}


# name → (fit options, needs validation data, a check that the option did something)
OPTIONS = {
    "plain": ({}, False, None),
    "l1 from epoch 1": ({"l1": 1e-3, "regularize_from_epoch": 1}, False, None),
    "l2": ({"l2": 1e-2}, False, None),
    "augment": ({"augment": jitter}, False, None),
    "early stopping": ({"early_stopping": jn.EarlyStopping(patience=1, min_delta=0.02)}, True,
                       lambda r: r.stopped_early and len(r.history["epoch"]) < EPOCHS),
    "reduce on plateau": ({"reduce_on_plateau": jn.ReduceOnPlateau(factor=0.5, patience=1, min_delta=0.02)}, True,
                          lambda r: r.history["learning_rate"][-1] < r.history["learning_rate"][0]),
    "momentum hyper-parameter": ({"hyperparams": {"momentum": 0.5}}, False, None),
    "step engine": ({"engine": "step"}, True, None),
    "metrics": ({"metrics_fn": weight_norms}, False, lambda r: np.shape(r.history["w_norm"]) == (EPOCHS, 2)),
    "typed keys": ({"typed_keys": True}, False, None),
}


def problem(dtype=jnp.float32):
    x, y = data.make_synthetic("spirals", 128, key=jax.random.PRNGKey(0))
    xv, yv = data.make_synthetic("spirals", 64, key=jax.random.PRNGKey(1))
    model = nn.Sequential([nn.Dense(16), nn.BatchNorm(), nn.Activation("tanh"), nn.Dropout(0.2), nn.Dense(2)])
    inits = [model.init(jax.random.PRNGKey(10 + r), x[:1].astype(dtype)) for r in range(2)]
    return model, inits, (x.astype(dtype), y), (xv.astype(dtype), yv)


def run_keys(typed: bool):
    return jax.random.split(jax.random.key(3), 2) if typed else jnp.stack([jax.random.PRNGKey(3), jax.random.PRNGKey(4)])


def options_of(name, validation):
    options, needs_validation, _ = OPTIONS[name]
    options = dict(options)
    typed = options.pop("typed_keys", False)
    if needs_validation:
        options["validation_data"] = validation
    optimizer = optim.optimizer("momentum" if "hyperparams" in options else "adam", 0.05)
    return dict(loss="cross_entropy", optimizer=optimizer, epochs=EPOCHS, batch_size=32, progress=False, **options), typed


def one_fit(name, run, **extra):
    model, inits, train, validation = extra.pop("problem")
    options, typed = options_of(name, validation)
    params, state = inits[run]
    return jn.fit(model, params, state, train, key=run_keys(typed)[run], **options, **extra)


def seeds_fit(name, runs, **extra):
    model, inits, train, validation = extra.pop("problem")
    options, typed = options_of(name, validation)
    if "hyperparams" in options:
        options["hyperparams"] = {k: [v] * len(runs) for k, v in options["hyperparams"].items()}
    params = stack_trees([inits[r][0] for r in runs])
    state = stack_trees([inits[r][1] for r in runs])
    return fit_seeds(model, params, state, train, keys=run_keys(typed)[jnp.asarray(runs)], **options, **extra)


def assert_run_equals_fit(seeds_result, run, fit_result, **tolerance):
    check = chex.assert_trees_all_equal if not tolerance else (
        lambda a, b: chex.assert_trees_all_close(a, b, **tolerance))
    check(unstack_tree(seeds_result.params, run), fit_result.params)
    check(unstack_tree(seeds_result.state, run), fit_result.state)
    epochs = len(fit_result.history["epoch"])  # the other run may go on after this one stopped:
    for later in range(epochs, len(seeds_result.history["epoch"])):  # then this one's numbers are NaN
        assert seeds_result.history["stopped"][later][run] and np.isnan(seeds_result.history["train_loss"][later][run])
    for name, values in fit_result.history.items():
        if name == "seconds":
            continue
        got = np.asarray([np.asarray(v)[run] if name != "epoch" else v for v in seeds_result.history[name][:epochs]])
        if tolerance:
            np.testing.assert_allclose(got, np.asarray(values), **tolerance, err_msg=name)
        else:
            np.testing.assert_array_equal(got, np.asarray(values), err_msg=name)
    assert bool(seeds_result.stopped_early[run]) == fit_result.stopped_early
    assert int(seeds_result.best_epoch[run]) == (-1 if fit_result.best_epoch is None else fit_result.best_epoch)


@pytest.mark.parametrize("name", OPTIONS)
def test_fit_seeds_run_equals_fit(name):
    check = OPTIONS[name][2]
    with jax.enable_x64(True):
        setup = problem(jnp.float64)
        fits = [one_fit(name, r, problem=setup) for r in range(2)]
        alone = seeds_fit(name, [1], problem=setup)
        together = seeds_fit(name, [0, 1], problem=setup)
    assert_run_equals_fit(alone, 0, fits[1])  # one run: the same program, the same bits
    for r in range(2):
        assert_run_equals_fit(together, r, fits[r], rtol=1e-9, atol=1e-8)
    if check is not None:
        assert check(fits[1]), f"the option {name!r} had no effect"


class Interrupt(Exception):
    pass


def interrupt_after(epoch):
    def on_epoch_end(record):
        if record["epoch"] == epoch:
            raise Interrupt
    return on_epoch_end


@pytest.mark.parametrize("name", OPTIONS)
def test_interrupted_and_resumed_equals_uninterrupted(name, tmp_path):
    setup = problem()
    whole = one_fit(name, 0, problem=setup)
    with pytest.raises(Interrupt):
        one_fit(name, 0, problem=setup, checkpoint_dir=tmp_path / "fit", on_epoch_end=interrupt_after(0))
    seen = []
    resumed = one_fit(name, 0, problem=setup, checkpoint_dir=tmp_path / "fit",
                      on_epoch_end=lambda record: seen.append(record["epoch"]))
    assert seen == list(range(1, len(whole.history["epoch"])))  # epoch 0 was not redone
    chex.assert_trees_all_equal((resumed.params, resumed.state, resumed.opt_state),
                                (whole.params, whole.state, whole.opt_state))
    assert _nan_equal(resumed.history, whole.history)
    assert (resumed.best_epoch, resumed.stopped_early) == (whole.best_epoch, whole.stopped_early)

    whole_runs = seeds_fit(name, [0, 1], problem=setup)
    with pytest.raises(Interrupt):
        seeds_fit(name, [0, 1], problem=setup, checkpoint_dir=tmp_path / "seeds", on_epoch_end=interrupt_after(0))
    resumed_runs = seeds_fit(name, [0, 1], problem=setup, checkpoint_dir=tmp_path / "seeds")
    chex.assert_trees_all_equal((resumed_runs.params, resumed_runs.state, resumed_runs.opt_state),
                                (whole_runs.params, whole_runs.state, whole_runs.opt_state))
    assert _nan_equal(resumed_runs.history, whole_runs.history)


def _nan_equal(a: dict, b: dict) -> bool:
    keys = [k for k in a if k != "seconds"]
    return keys == [k for k in b if k != "seconds"] and all(
        np.array_equal(np.asarray(a[k], np.float64), np.asarray(b[k], np.float64), equal_nan=True) for k in keys)


@pytest.mark.parametrize("name", OPTIONS)
def test_the_same_option_objects_used_twice_give_identical_results(name):
    setup = problem()
    first, second = one_fit(name, 0, problem=setup), one_fit(name, 0, problem=setup)
    chex.assert_trees_all_equal((first.params, first.state), (second.params, second.state))
    assert _nan_equal(first.history, second.history)
