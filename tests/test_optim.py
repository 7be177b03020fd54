"""Every optimizer name converges on a quadratic and does not recompile after its first step;
schedules and the scaling rule give the values their definitions say."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from jaxnets import optim

TARGET = jnp.array([1.0, -2.0, 3.0])

# learning rates chosen per method (adagrad/rmsprop/adam move ~lr per step)
RATES = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.5, "rmsprop": 0.02,
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
        assert optim.current_learning_rate(state) == pytest.approx(RATES[name])


def test_unknown_optimizer_and_schedule_list_known_names():
    with pytest.raises(ValueError, match="known optimizers: adagrad, adam, adamw, lamb, momentum, nesterov, rmsprop, sgd"):
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


def test_reduce_on_plateau():
    plateau = optim.ReduceOnPlateau(factor=0.5, patience=2)
    lrs, lr = [], 1.0
    for val in [1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.85]:
        lr = plateau.update(val, lr)
        lrs.append(lr)
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    with pytest.raises(ValueError):
        optim.ReduceOnPlateau(factor=2.0)
