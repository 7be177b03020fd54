"""Many runs in one compiled program (jaxnets.seeds): vmapped seeds train the same weights as
sequential ``fit`` calls with the same keys, hyper-parameter grids match one fit per setting, an
interrupted run resumes to the uninterrupted result, diverging runs are reported, runs split over
devices train as on one. (The option-by-option equivalence with ``fit`` is tests/test_fit_options.py.)"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnets as jn
from jaxnets import data, losses, models, nn, optim
from jaxnets.seeds import (fit_seeds, init_runs, seed_grid, seed_keys, stack_trees,
                           unstack_tree)
from jaxnets.train import NonFiniteError, make_evaluate_fn, make_evaluate_runs_fn

from conftest import lowerings_of

SEEDS = [0, 1]


def spirals(n=128):
    return data.make_synthetic("spirals", n, key=jax.random.PRNGKey(0))


def setup(x, seeds=SEEDS, hidden=16):
    model = models.mlp([hidden, hidden, 2], activation="tanh")
    inits = [model.init(jax.random.PRNGKey(100 + s), x[:1]) for s in seeds]
    return model, inits, seed_keys(seeds)


def sequential_fits(model, inits, keys, x, y, learning_rates, epochs=4, validation_data=None, name="adam", **options):
    return [jn.fit(model, p, s, (x, y), loss="cross_entropy", optimizer=optim.optimizer(name, lr, **options),
                   epochs=epochs, batch_size=32, key=keys[i], engine="scan", validation_data=validation_data,
                   progress=False)
            for i, ((p, s), lr) in enumerate(zip(inits, learning_rates))]


@pytest.mark.parametrize("name, model, shape", [
    ("tanh MLP", models.mlp([16, 16, 2], activation="tanh"), (1, 2)),
    ("LeNet-5 (he_normal)", models.lenet5(), (1, 28, 28, 1)),
    ("ResNet (batch-norm state)", models.resnet(widths=(4, 8), blocks=(1, 1)), (1, 12, 12, 3)),
    ("small_normal MLP", nn.Sequential([nn.Dense(9, w_init="small_normal", b_init="small_normal")]), (1, 3)),
])
def test_init_runs_equals_init_per_key(name, model, shape):
    # one compiled program for all runs (at LLVM level 1) draws what model.init draws run by run, at most
    # the last bit apart (small_normal: XLA folds its two constant factors into one in the whole program)
    keys = seed_keys([0, 1, 7])
    x = jnp.ones(shape)
    params, state = init_runs(model, keys, x)
    for i in range(3):
        alone = model.init(keys[i], x)
        chex.assert_trees_all_close(unstack_tree((params, state), i), alone, rtol=1e-6, atol=0)
    # a shape or ShapeDtypeStruct stands for the batch, typed keys and a list of keys work the same
    chex.assert_trees_all_equal(init_runs(model, list(keys), shape), (params, state))
    chex.assert_trees_all_equal(init_runs(model, keys, jax.ShapeDtypeStruct(shape, jnp.float32)), (params, state))
    typed = jax.random.wrap_key_data(keys)
    chex.assert_trees_all_equal(init_runs(model, typed, x), (params, state))


def test_stack_and_unstack_trees_round_trip_in_one_program_each():
    model = models.mlp([7, 5, 3], activation="tanh")  # leaf shapes of no other test here
    trees = [model.init(jax.random.PRNGKey(k), jnp.zeros((1, 4))) for k in range(3)]
    stacked, stack_lowerings = lowerings_of(lambda: stack_trees(trees))
    chex.assert_trees_all_equal_shapes(stacked, jax.tree.map(lambda leaf: np.zeros((3, *leaf.shape)), trees[0]))
    runs, unstack_lowerings = lowerings_of(lambda: [unstack_tree(stacked, r) for r in (0, 1, 2, -1)])
    for run, tree in zip(runs, trees + trees[-1:]):
        chex.assert_trees_all_equal(run, tree)
    assert (stack_lowerings, unstack_lowerings) == (1, 1)  # one program for all leaves, and for every index
    assert unstack_tree({}, 0) == {}  # a model without state
    with pytest.raises(IndexError, match="run 3 of a tree of 3 runs"):
        unstack_tree(stacked, 3)
    with pytest.raises(IndexError, match="run -4"):
        unstack_tree(stacked, -4)
    with pytest.raises(ValueError, match="same leading run axis"):
        unstack_tree({"w": jnp.zeros((3, 2)), "b": jnp.zeros((2,))}, 0)
    with pytest.raises(ValueError, match="same leading run axis"):
        unstack_tree({"w": jnp.zeros((3, 2)), "step": jnp.zeros(())}, 0)


def test_vmapped_seeds_equal_sequential_fits():
    # float64, so that the only differences (batched vs single matrix products) stay at 1e-12.
    with jax.enable_x64(True):
        x, y = spirals()
        x = x.astype(jnp.float64)
        model, inits, keys = setup(x)
        sequential = sequential_fits(model, inits, keys, x, y, [1e-2] * len(SEEDS), validation_data=(x, y))
        result = fit_seeds(model, stack_trees([p for p, _ in inits]), stack_trees([s for _, s in inits]), (x, y),
                           loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=4, batch_size=32,
                           keys=keys, validation_data=(x, y), progress=False)
        tolerance = dict(rtol=1e-10, atol=1e-12)
        for i, fit_result in enumerate(sequential):
            chex.assert_trees_all_close(unstack_tree(result.params, i), fit_result.params, **tolerance)
            for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                np.testing.assert_allclose(np.asarray(result.history[name])[:, i], fit_result.history[name], **tolerance)
        assert np.asarray(result.history["train_loss"]).shape == (4, len(SEEDS))
        assert (result.diverged_epoch == -1).all()


def test_seed_grid_is_a_product_over_named_values():
    assert seed_grid([0, 1], learning_rate=[3e-3, 3e-2]) == ([0, 1, 0, 1], {"learning_rate": [3e-3, 3e-3, 3e-2, 3e-2]})
    seeds, values = seed_grid([7], learning_rate=[1.0, 2.0], momentum=[0.5, 0.9])
    assert seeds == [7] * 4
    assert values == {"learning_rate": [1.0, 1.0, 2.0, 2.0], "momentum": [0.5, 0.9, 0.5, 0.9]}


def test_hyperparameter_grid_equals_one_fit_per_setting():  # float32
    x, y = spirals()
    seeds, values = seed_grid([5], learning_rate=[3e-2, 1e-1], momentum=[0.5, 0.9])
    model, inits, keys = setup(x, seeds)
    sequential = [jn.fit(model, p, s, (x, y), loss="cross_entropy", optimizer=optim.optimizer("momentum", lr, momentum=m),
                         epochs=3, batch_size=32, key=keys[i], progress=False)
                  for i, ((p, s), lr, m) in enumerate(zip(inits, values["learning_rate"], values["momentum"]))]
    result = fit_seeds(model, stack_trees([p for p, _ in inits]), stack_trees([s for _, s in inits]), (x, y),
                       loss="cross_entropy", optimizer=optim.optimizer("momentum", 1.0), epochs=3, batch_size=32,
                       keys=keys, hyperparams=values, progress=False)
    np.testing.assert_allclose(result.history["learning_rate"][-1], values["learning_rate"], rtol=1e-6)
    np.testing.assert_allclose(optim.get_hyperparams(result.opt_state)["momentum"], values["momentum"], rtol=1e-6)
    for i, fit_result in enumerate(sequential):
        chex.assert_trees_all_close(unstack_tree(result.params, i), fit_result.params, rtol=2e-5, atol=2e-6)
    assert len({float(np.asarray(p["dense1"]["w"]).sum()) for p in (unstack_tree(result.params, i) for i in range(4))}) == 4


def test_l2_per_run_equals_one_fit_per_strength():
    x, y = spirals()
    model, inits, keys = setup(x, [3, 3])
    strengths = [0.0, 0.05]
    sequential = [jn.fit(model, p, s, (x, y), loss="cross_entropy", optimizer=optim.optimizer("sgd", 0.1), epochs=3,
                         batch_size=32, key=keys[i], l2=strength, progress=False)
                  for i, ((p, s), strength) in enumerate(zip(inits, strengths))]
    result = fit_seeds(model, stack_trees([p for p, _ in inits]), stack_trees([s for _, s in inits]), (x, y),
                       loss="cross_entropy", optimizer=optim.optimizer("sgd", 0.1), epochs=3, batch_size=32, keys=keys,
                       hyperparams={"l2": strengths}, progress=False)
    for i, fit_result in enumerate(sequential):
        chex.assert_trees_all_close(unstack_tree(result.params, i), fit_result.params, rtol=2e-5, atol=2e-6)
    assert float(losses.l2_penalty(unstack_tree(result.params, 1))) < float(losses.l2_penalty(unstack_tree(result.params, 0)))


def test_hyperparams_need_one_value_per_run_and_known_names():
    x, y = spirals(64)
    model, inits, keys = setup(x)
    params = stack_trees([p for p, _ in inits])
    state = stack_trees([s for _, s in inits])
    common = dict(loss="cross_entropy", epochs=1, batch_size=32, keys=keys, progress=False)
    adam = optim.optimizer("adam", 1e-2)
    with pytest.raises(ValueError, match=r"learning_rate must be a number or 2 numbers \(one per run\), got shape \(3,\)"):
        fit_seeds(model, params, state, (x, y), optimizer=adam, hyperparams={"learning_rate": [1e-2] * 3}, **common)
    with pytest.raises(ValueError, match="unknown hyper-parameter 'momentum'; known hyper-parameters of this optimizer "
                                         r"\(and penalties\): b1, b2, eps, eps_root, learning_rate, l1, l2"):
        fit_seeds(model, params, state, (x, y), optimizer=adam, hyperparams={"momentum": [0.9] * 2}, **common)
    import optax
    with pytest.raises(ValueError, match="known hyper-parameters of this optimizer \\(and penalties\\): l1, l2"):
        fit_seeds(model, params, state, (x, y), optimizer=optax.adam(1e-2), hyperparams={"learning_rate": [1e-2] * 2},
                  **common)
    with pytest.raises(ValueError, match="l2 is given twice"):
        fit_seeds(model, params, state, (x, y), optimizer=adam, l2=0.1, hyperparams={"l2": [0.1, 0.2]}, **common)
    with pytest.raises(ValueError, match="leading run axis"):
        fit_seeds(model, inits[0][0], inits[0][1], (x, y), optimizer=adam, **common)
    with pytest.raises(ValueError, match=r"keys must be stacked PRNG keys, one per run"):
        fit_seeds(model, params, state, (x, y), optimizer=adam, **{**common, "keys": jax.random.PRNGKey(0)})


def test_metrics_fn_and_vmapped_evaluation_match_per_run_values():
    x, y = spirals()
    model, inits, keys = setup(x)
    params = stack_trees([p for p, _ in inits])
    state = stack_trees([s for _, s in inits])

    def metrics(p, s, scale):
        return {"w_norms": scale * jnp.stack([jnp.linalg.norm(p[f"dense{i}"]["w"]) for i in (1, 2, 3)])}

    result = fit_seeds(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2),
                       epochs=2, batch_size=32, keys=keys, metrics_fn=metrics, metrics_data=(jnp.float32(2.0),), progress=False)
    assert np.asarray(result.history["w_norms"]).shape == (2, len(SEEDS), 3)
    losses_, accuracies = make_evaluate_runs_fn(model, "cross_entropy")(result.params, result.state, x, y)
    evaluate = make_evaluate_fn(model, "cross_entropy")
    for i in range(len(SEEDS)):
        p = unstack_tree(result.params, i)
        np.testing.assert_allclose(result.history["w_norms"][-1][i], metrics(p, None, 2.0)["w_norms"], rtol=1e-5)
        loss_i, accuracy_i = evaluate(p, unstack_tree(result.state, i), x, y)
        np.testing.assert_allclose([losses_[i], accuracies[i]], [loss_i, accuracy_i], rtol=1e-5)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    x, y = spirals()
    model, inits, keys = setup(x)
    params = stack_trees([p for p, _ in inits])
    state = stack_trees([s for _, s in inits])
    common = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=5, batch_size=32, keys=keys,
                  validation_data=(x, y), progress=False)
    whole = fit_seeds(model, params, state, (x, y), **common)

    def interrupt_after_epoch_2(record):
        if record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_seeds(model, params, state, (x, y), checkpoint_dir=tmp_path, on_epoch_end=interrupt_after_epoch_2, **common)
    seen = []
    resumed = fit_seeds(model, params, state, (x, y), checkpoint_dir=tmp_path,
                        on_epoch_end=lambda record: seen.append(record["epoch"]), **common)
    assert seen == [3, 4]  # epochs 0–2 were not redone
    chex.assert_trees_all_equal(resumed.params, whole.params)
    chex.assert_trees_all_equal(resumed.opt_state, whole.opt_state)
    for name in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_array_equal(resumed.history[name], whole.history[name])
    with pytest.raises(ValueError, match="other keys"):
        fit_seeds(model, params, state, (x, y), checkpoint_dir=tmp_path, **{**common, "keys": seed_keys([7, 8])})


def test_diverging_run_is_recorded_or_raised():
    x, y = spirals()
    model, inits, keys = setup(x, [0, 1, 2])
    params = stack_trees([p for p, _ in inits])
    state = stack_trees([s for _, s in inits])
    # Run 1 gets an infinite learning rate; the others train normally.
    common = dict(loss="cross_entropy", optimizer=optim.optimizer("sgd", 1.0), epochs=3, batch_size=32, keys=keys,
                  hyperparams={"learning_rate": [1e-2, np.inf, 1e-2]}, progress=False)
    result = fit_seeds(model, params, state, (x, y), on_non_finite="record", **common)
    assert result.diverged_epoch.tolist() == [-1, 0, -1]
    assert np.isfinite(np.asarray(result.history["train_loss"])[:, [0, 2]]).all()
    with pytest.raises(NonFiniteError, match=r"in runs \[1\] \(of 3\): run 1: loss nan at step 1"):
        fit_seeds(model, params, state, (x, y), **common)


SHARDED_SCRIPT = """
import tempfile
import jax, numpy as np
from jaxnets import data, models, optim, runtime
runtime.use_cpu_devices(2)
from jaxnets.parallel import run_layout
from jaxnets.seeds import fit_seeds, init_runs, seed_keys
assert len(jax.devices()) == 2
for runs, used, padded in ((4, 2, 4), (3, 2, 4), (1, 1, 1)):
    layout = run_layout(runs, jax.devices())
    assert (layout.split.mesh.size, layout.padded) == (used, padded), (runs, layout)
x, y = data.make_synthetic("spirals", 256, key=jax.random.PRNGKey(0))
model = models.mlp([16, 16, 2], activation="tanh")
for runs in (4, 3):  # 2 runs on each device; 3 runs padded to 4 with a copy of the last
    keys = seed_keys(list(range(runs)))
    params, state = init_runs(model, keys, x[:1])
    kw = dict(loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-2), epochs=3, batch_size=32, keys=keys,
              progress=False, validation_data=(x, y), metrics_fn=lambda p, s: {"w_norm": jax.numpy.linalg.norm(p["dense1"]["w"])})
    split = fit_seeds(model, params, state, (x, y), **kw)
    one = fit_seeds(model, params, state, (x, y), devices=jax.devices()[:1], **kw)
    for a, b in zip(jax.tree.leaves(split[:3]), jax.tree.leaves(one[:3])):  # params, state, opt_state
        assert a.sharding.device_set == {jax.devices()[0]} and a.shape == b.shape and a.shape[0] == runs
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in ("train_loss", "val_loss", "learning_rate", "w_norm"):  # (epochs, runs)
        assert np.shape(split.history[name]) == (3, runs), (name, np.shape(split.history[name]))
        np.testing.assert_allclose(split.history[name], one.history[name], rtol=1e-5)
# interrupted after 2 epochs and resumed: the padded run is not saved, and resuming equals not stopping
with tempfile.TemporaryDirectory() as ckpt:
    fit_seeds(model, params, state, (x, y), checkpoint_dir=ckpt, **{**kw, "epochs": 2})
    resumed = fit_seeds(model, params, state, (x, y), checkpoint_dir=ckpt, **kw)
for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(split.params)):
    np.testing.assert_array_equal(a, b)
np.testing.assert_array_equal(resumed.history["train_loss"], split.history["train_loss"])
print("ok")
"""


def test_runs_split_over_two_cpu_devices_train_as_on_one():
    # A fresh process: JAX fixes its devices at the first computation, and this one has run already.
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_use_cpu_devices_after_the_first_computation_says_it_came_too_late():
    from jaxnets import runtime

    jnp.ones(1).block_until_ready()
    with pytest.raises(RuntimeError, match=r"came too late.*before the first JAX computation"):
        runtime.use_cpu_devices(3)
