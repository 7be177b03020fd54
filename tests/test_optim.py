"""Every optimizer name converges on a quadratic and does not recompile after its first step;
hyper-parameters are read and written through one API (also stacked, also inside wrappers);
schedules and the scaling rule give the values their definitions say, between epoch boundaries too."""

import chex
import jax
import jax.numpy as jnp
import optax
import numpy as np
import pytest

from jaxnets import optim

TARGET = jnp.array([1.0, -2.0, 3.0])

# learning rates chosen per method (adagrad/rmsprop/adam move ~lr per step)
RATES = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.5, "adadelta": 1.0, "rmsprop": 0.02,
         "adam": 0.05, "adamw": 0.05, "lamb": 0.02}


def quadratic(w):
    return 0.5 * jnp.sum((w - TARGET) ** 2 * jnp.array([1.0, 2.0, 0.5]))


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_optimizer_converges_on_quadratic_without_recompiling(name):
    assert name in RATES
    chex.clear_trace_counter()  # the counter is per code location, shared by the parametrized cases
    options = {"weight_decay": 0.0} if name in ("adamw", "lamb") else {}
    # LAMB's step is proportional to ‖w‖ (trust ratio), so it needs a decaying rate to settle
    rate = optim.schedule("cosine", RATES[name], epochs=1000) if name == "lamb" else RATES[name]
    opt = optim.optimizer(name, rate, **options)
    w = jnp.zeros(3)
    state = opt.init(w)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(w, state):
        updates, state = opt.update(jax.grad(quadratic)(w), state, w)
        return optax.apply_updates(w, updates), state

    for _ in range(1000):
        w, state = step(w, state)
    assert float(quadratic(w)) < 1e-4, (name, w)
    if name != "lamb":
        assert float(optim.get_hyperparams(state)["learning_rate"]) == pytest.approx(RATES[name])


def test_unknown_optimizer_and_schedule_list_known_names():
    with pytest.raises(ValueError, match="known optimizers: adadelta, adagrad, adam, adamw, lamb, momentum, nesterov, "
                                         "rmsprop, sgd"):
        optim.optimizer("adamax", 0.1)
    with pytest.raises(ValueError, match="known schedules: constant, cosine, exponential, step, warmup"):
        optim.schedule("onecycle", 0.1)
    with pytest.raises(TypeError, match="optimizer 'adam'"):
        optim.optimizer("adam", 0.1, beta1=0.9)


def test_step_schedule_multiplies_at_epochs():
    s = optim.schedule("step", 1.0, steps_per_epoch=10, epochs=[2, 5], factor=0.1)
    assert [float(s(i)) for i in (0, 19, 20, 49, 50)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_exponential_cosine_and_warmup_schedules():
    e = optim.schedule("exponential", 1.0, steps_per_epoch=10, decay_rate=0.5)
    assert float(e(20)) == pytest.approx(0.25)
    # smooth, not a staircase: half an epoch in, the rate is 0.5 ** 0.5 (a staircase would give 1.0)
    assert [float(e(i)) for i in (5, 15)] == pytest.approx([0.5 ** 0.5, 0.5 ** 1.5])
    c = optim.schedule("cosine", 2.0, steps_per_epoch=10, epochs=4)
    assert float(c(0)) == pytest.approx(2.0) and float(c(20)) == pytest.approx(1.0) and float(c(40)) == pytest.approx(0.0, abs=1e-7)
    w = optim.schedule("warmup", 0.4, steps_per_epoch=10, warmup_epochs=2)
    assert [float(w(i)) for i in (0, 10, 20, 100)] == pytest.approx([0.0, 0.2, 0.4, 0.4])
    wc = optim.schedule("warmup", 0.4, steps_per_epoch=10, warmup_epochs=1, epochs=3)
    assert float(wc(10)) == pytest.approx(0.4) and float(wc(30)) == pytest.approx(0.0, abs=1e-6)


def test_schedule_drives_an_optimizer():
    opt = optim.optimizer("sgd", optim.schedule("step", 1.0, steps_per_epoch=1, epochs=[1], factor=0.5))
    w = jnp.zeros(1)
    state = opt.init(w)
    moves = []
    for _ in range(2):
        updates, state = opt.update(jnp.ones(1), state, w)
        moves.append(float(updates[0]))
    assert moves == pytest.approx([-1.0, -0.5])


def test_linear_scaling_rule():
    assert optim.scale_learning_rate(0.1, 8192, 256) == pytest.approx(3.2)
    with pytest.raises(ValueError):
        optim.scale_learning_rate(0.1, 0)


def test_hyperparams_are_read_and_set_by_name():
    opt = optim.optimizer("momentum", 0.1, momentum=0.9)
    state = opt.init(jnp.zeros(3))
    assert optim.hyperparam_names(state) == ["learning_rate", "momentum"]
    state = optim.set_hyperparams(state, momentum=0.5)
    values = optim.get_hyperparams(state)
    assert float(values["momentum"]) == pytest.approx(0.5) and float(values["learning_rate"]) == pytest.approx(0.1)
    assert values["momentum"].dtype == jnp.float32
    # the value is used: with momentum 0.5 the second step is lr · (g + 0.5 g)
    w = jnp.zeros(3)
    for _ in range(2):
        updates, state = opt.update(jnp.ones(3), state, w)
    np.testing.assert_allclose(updates, -0.1 * 1.5 * jnp.ones(3), rtol=1e-6)


def test_hyperparams_of_stacked_runs_take_one_value_per_run():
    opt = optim.optimizer("adam", 1e-3)
    stacked = jax.vmap(opt.init)(jnp.zeros((4, 2)))
    stacked = optim.set_hyperparams(stacked, learning_rate=[1.0, 2.0, 3.0, 4.0], b1=0.5)
    values = optim.get_hyperparams(stacked)
    np.testing.assert_allclose(values["learning_rate"], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(values["b1"], [0.5] * 4)
    with pytest.raises(ValueError, match="learning_rate: 3 values for 4 runs; give one value per run"):
        optim.set_hyperparams(stacked, learning_rate=[1.0, 2.0, 3.0])


def test_hyperparams_inside_a_wrapper_and_bad_names():
    from jaxnets import transfer

    params = {"a": {"w": jnp.zeros(2)}, "b": {"w": jnp.zeros(2)}}
    frozen = transfer.freeze(optim.optimizer("sgd", 0.1), params, ["a"])
    state = optim.set_hyperparams(frozen.init(params), learning_rate=0.01)  # found inside multi_transform
    assert float(optim.get_hyperparams(state)["learning_rate"]) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown hyper-parameter 'momentum'; known hyper-parameters of this "
                                         "optimizer: learning_rate"):
        optim.set_hyperparams(state, momentum=0.9)
    with pytest.raises(ValueError, match="exposes no hyper-parameters"):
        optim.set_hyperparams(optax.sgd(0.1).init(params), learning_rate=0.1)
    assert optim.get_hyperparams(optax.sgd(0.1).init(params)) == {}
    scheduled = optim.optimizer("sgd", optim.schedule("cosine", 0.1, epochs=3)).init(params)
    with pytest.raises(ValueError, match="a schedule computes it from the step count"):
        optim.set_hyperparams(scheduled, learning_rate=0.5)


def test_optimizers_that_differ_only_in_numbers_share_one_update_function():
    """Numeric hyper-parameters live in the state, so one update serves them all (and fit reuses its
    programs); a schedule, another name or an unhashable option gives another."""
    adam = optim.optimizer("adam", 1e-3)
    assert optim.optimizer("adam", 3e-2).update is adam.update
    assert optim.optimizer("adam", 1e-3, b1=0.8).update is not adam.update  # b1 becomes a state value
    assert optim.optimizer("adam", 1e-3, b1=0.8).update is optim.optimizer("adam", 0.1, b1=0.95).update
    assert optim.optimizer("rmsprop", 1e-3).update is not adam.update
    nesterov = optim.optimizer("sgd", 0.1, momentum=0.9, nesterov=True)  # a flag, compiled in: not shared
    assert nesterov.update is not optim.optimizer("sgd", 0.1, momentum=0.9, nesterov=False).update
    assert nesterov.update is optim.optimizer("sgd", 0.5, momentum=0.5, nesterov=True).update
    cosine = optim.schedule("cosine", 1e-3, steps_per_epoch=10, epochs=5)
    assert optim.optimizer("adam", cosine).update is not adam.update
    assert optim.optimizer("adam", cosine).update is optim.optimizer("adam", cosine).update
    mask = {"w": True, "b": False}
    assert optim.optimizer("adamw", 1e-3, mask=mask).update is not optim.optimizer("adamw", 1e-3, mask=mask).update


def test_a_shared_update_steps_exactly_as_the_optimizer_built_for_its_own_numbers():
    params = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.2])}
    grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
    optim.optimizer("momentum", 0.5, momentum=0.3)  # the first of this kind: its update is the shared one
    shared = optim.optimizer("momentum", 0.05, momentum=0.9)
    own = optax.inject_hyperparams(lambda learning_rate, momentum: optax.sgd(learning_rate, momentum=momentum))(
        learning_rate=0.05, momentum=0.9)
    states = [shared.init(params), own.init(params)]
    for _ in range(3):
        (u1, states[0]), (u2, states[1]) = shared.update(grads, states[0], params), own.update(grads, states[1], params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def assert_same_state(a, b):
    """Same structure, values, dtypes and weak types (a weak type decides the dtype of later arithmetic)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = jnp.asarray(x), jnp.asarray(y)
        assert (x.dtype, x.shape, x.weak_type) == (y.dtype, y.shape, y.weak_type)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_the_compiled_shared_init_gives_optax_own_initial_state(name):
    params = {"w": jnp.full((3, 2), 0.5), "b": jnp.zeros((2,)), "w64": np.ones((2,), np.float32)}
    for rate in (0.1, 1, np.float64(0.3)):  # a float, an int, a NumPy float
        own = optax.inject_hyperparams(optim.OPTIMIZERS[name])(learning_rate=rate).init(params)
        assert_same_state(optim.optimizer(name, rate).init(params), own)
        assert_same_state(jax.jit(optim.optimizer(name, rate).init)(params), own)  # also inside a user's jit
    # stacked runs: each run's state, the numbers broadcast over the runs as jax.vmap(init) gives them
    stacked = jax.tree.map(lambda leaf: jnp.stack([leaf, 2 * leaf]), params)
    own = jax.vmap(optax.inject_hyperparams(optim.OPTIMIZERS[name])(learning_rate=0.2).init)(stacked)
    assert_same_state(optim.init_runs(optim.optimizer(name, 0.2), stacked), own)
    # any other optax optimizer: jax.vmap of its own init
    assert_same_state(optim.init_runs(optax.adam(0.1), stacked), jax.vmap(optax.adam(0.1).init)(stacked))
