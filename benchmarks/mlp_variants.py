"""Prototypes of changes to the jaxnets epoch engine, timed by ``bench_mlp.py --variants``.

:func:`make_variant_epoch_fn` rebuilds ``jaxnets.train.make_epoch_fn`` from the same parts
(``objective``, ``correct``, the same shuffling) with one switch per suspected cost, so a variant
differs from ``jaxnets-scan`` in exactly the switches it names:

* ``penalty``: ``"traced"`` — as ``fit`` calls the epoch today: l1 = l2 = 0.0 are traced
  arguments, so ``l1·Σ|w| + l2·½Σw²`` and its gradient are computed every step;
  ``"static"`` — the penalties are left out of the compiled program when they are zero.
* ``optimizer``: ``"inject"`` (``jaxnets.optim.optimizer``, ``optax.inject_hyperparams``) or
  ``"plain"`` (``optax.adam``).
* ``unroll``: ``lax.scan(..., unroll=k)``.
* ``gather``: ``"step"`` (``x[idx]`` inside the scan) or ``"epoch"`` (``x[perm]`` once per epoch).
* ``accuracy``: count correct predictions per step (``fit`` reports train accuracy).
* ``donate``: ``jax.jit(..., donate_argnums=0)`` (the train state's buffers are reused).
* ``compiler_options``: XLA debug options for this compilation only (e.g. ``xla_cpu_use_xnnpack``).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import models, optim
from jaxnets.losses import correct
from jaxnets.train import TrainState, epoch_batches, objective

BATCH = 128


def make_variant_epoch_fn(model, optimizer, *, penalty: str = "traced", unroll: int = 1, gather: str = "step",
                          accuracy: bool = True, batch_size: int = BATCH) -> Callable:
    """``epoch(ts, x, t, key, l1, l2) -> (ts, (losses, num_correct))`` like ``make_epoch_fn`` for a
    classifier trained with cross-entropy; x: (N, …), t: (N,), outputs (steps,)."""
    grad_fn = jax.value_and_grad(objective(model, "cross_entropy"), has_aux=True)

    def step(ts, xb, tb, key, l1, l2):
        if penalty == "static":
            l1 = l2 = 0.0  # Python zeros: objective leaves the penalty terms out
        (_, (new_state, outputs, data_loss)), grads = grad_fn(ts.params, ts.state, xb, tb, key, True, l1, l2)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        num_correct = jnp.sum(correct(outputs, tb)) if accuracy else jnp.zeros((), data_loss.dtype)
        return TrainState(params, new_state, opt_state), (data_loss, num_correct)

    def epoch(ts, x, t, key, l1=0.0, l2=0.0):
        perm_key, step_key = jax.random.split(key)
        batches = epoch_batches(perm_key, x.shape[0], batch_size)  # (steps, batch)
        step_keys = jax.random.split(step_key, batches.shape[0])
        if gather == "epoch":
            xs = x[batches]  # (steps, batch, …)
            ts_ = t[batches]
            body = lambda ts, inputs: step(ts, inputs[0], inputs[1], inputs[2], l1, l2)
            return jax.lax.scan(body, ts, (xs, ts_, step_keys), unroll=unroll)
        body = lambda ts, inputs: step(ts, x[inputs[0]], t[inputs[0]], inputs[1], l1, l2)
        return jax.lax.scan(body, ts, (batches, step_keys), unroll=unroll)

    return epoch


def make_variant(x, y, *, optimizer: str = "inject", donate: bool = False, compiler_options: dict | None = None,
                 seed: int = 0, **switches) -> Callable[[], tuple[float, float]]:
    """A runner like ``bench_mlp.make_jaxnets`` for the variant named by the switches."""
    model = models.mlp([256, 256, 10])
    opt = optim.optimizer("adam", 1e-3) if optimizer == "inject" else optax.adam(1e-3)
    params, state = model.init(jax.random.PRNGKey(seed), x[:1])
    epoch = make_variant_epoch_fn(model, opt, **switches)
    x_dev, y_dev = jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))
    carry = {"ts": TrainState(params, state, opt.init(params)), "epoch": 0, "compiled": None}
    key = jax.random.PRNGKey(seed)
    jitted = jax.jit(epoch, donate_argnums=(0,) if donate else ())

    def run_epoch():
        args = (carry["ts"], x_dev, y_dev, jax.random.fold_in(key, carry["epoch"]), 0.0, 0.0)
        if carry["compiled"] is None:
            carry["compiled"] = jitted.lower(*args).compile(compiler_options) if compiler_options else jitted
        carry["ts"], (losses, corrects) = carry["compiled"](*args)
        carry["epoch"] += 1
        losses = np.asarray(losses)
        return float(losses.mean()), float(np.sum(corrects)) / (losses.size * BATCH)

    return run_epoch


V = functools.partial
FACTORIES = {
    "v-static-penalty": V(make_variant, penalty="static"),
    "v-plain-adam": V(make_variant, optimizer="plain"),
    "v-no-accuracy": V(make_variant, accuracy=False),
    "v-static+plain": V(make_variant, penalty="static", optimizer="plain"),
    "v-gather-epoch": V(make_variant, gather="epoch"),
    "v-unroll2": V(make_variant, unroll=2),
    "v-donate": V(make_variant, donate=True),
    "v-xnnpack": V(make_variant, compiler_options={"xla_cpu_use_xnnpack": True}),
    "v-onednn": V(make_variant, compiler_options={"xla_cpu_use_onednn": True}),
    "v-O1": V(make_variant, compiler_options={"xla_backend_optimization_level": 1}),
    "v-O0": V(make_variant, compiler_options={"xla_backend_optimization_level": 0}),
}


def make_handwritten(x, y, seed: int = 0) -> Callable[[], tuple[float, float]]:
    """The lower bound: the same epoch written by hand (plain dicts, ``optax.adam``, no penalty
    terms, no Sequential), with the same shuffling, gather and accuracy count."""
    opt = optax.adam(1e-3)
    params, _ = models.mlp([256, 256, 10]).init(jax.random.PRNGKey(seed), x[:1])

    def loss_fn(p, xb, tb):
        h = xb.reshape(xb.shape[0], -1)  # (batch, 784)
        for name in ("dense1", "dense2"):
            h = jax.nn.relu(h @ p[name]["w"] + p[name]["b"].reshape(1, -1))
        z = h @ p["dense3"]["w"] + p["dense3"]["b"].reshape(1, -1)  # (batch, 10)
        return optax.softmax_cross_entropy_with_integer_labels(z, tb).mean(), z

    @jax.jit
    def epoch(p, o, x, t, key):
        batches = epoch_batches(jax.random.split(key)[0], x.shape[0], BATCH)

        def body(carry, idx):
            p, o = carry
            (loss, z), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x[idx], t[idx])
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), (loss, jnp.sum(jnp.argmax(z, -1) == t[idx]))

        return jax.lax.scan(body, (p, o), batches)

    x_dev, y_dev = jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))
    carry = {"p": params, "o": opt.init(params), "epoch": 0}

    def run_epoch():
        (carry["p"], carry["o"]), (losses, corrects) = epoch(carry["p"], carry["o"], x_dev, y_dev,
                                                             jax.random.PRNGKey(carry["epoch"]))
        carry["epoch"] += 1
        losses = np.asarray(losses)
        return float(losses.mean()), float(np.sum(corrects)) / (losses.size * BATCH)

    return run_epoch


FACTORIES["v-handwritten"] = make_handwritten


# ---------------------------------------------------------------- where the time goes
# Scans of the same 468 steps doing part of the work, to split the epoch time.


def _parts(x, y, part: str, seed: int = 0) -> Callable[[], tuple[float, float]]:
    """part: "forward" (gather + forward + loss), "sgd" (… + backward + SGD update, no Adam),
    "adam-only" (468 Adam updates of the params with the params as gradients, no data)."""
    opt = optax.adam(1e-3)
    params, _ = models.mlp([256, 256, 10]).init(jax.random.PRNGKey(seed), x[:1])

    def loss_fn(p, xb, tb):
        h = xb.reshape(xb.shape[0], -1)  # (batch, 784)
        for name in ("dense1", "dense2"):
            h = jax.nn.relu(h @ p[name]["w"] + p[name]["b"].reshape(1, -1))
        z = h @ p["dense3"]["w"] + p["dense3"]["b"].reshape(1, -1)  # (batch, 10)
        return optax.softmax_cross_entropy_with_integer_labels(z, tb).mean()

    @jax.jit
    def epoch(p, o, x, t, key):
        batches = epoch_batches(jax.random.split(key)[0], x.shape[0], BATCH)

        def body(carry, idx):
            p, o = carry
            if part == "forward":
                p = jax.tree.map(lambda a: a, p)
                return (p, o), loss_fn(p, x[idx], t[idx]) + 0 * o[0].count
            if part == "sgd":
                loss, g = jax.value_and_grad(loss_fn)(p, x[idx], t[idx])
                return (jax.tree.map(lambda a, b: a - 1e-3 * b, p, g), o), loss
            u, o = opt.update(p, o, p)
            return (optax.apply_updates(p, u), o), jnp.zeros(())

        return jax.lax.scan(body, (p, o), batches)

    x_dev, y_dev = jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))
    carry = {"p": params, "o": opt.init(params), "epoch": 0}

    def run_epoch():
        (p, carry["o"]), losses = epoch(carry["p"], carry["o"], x_dev, y_dev, jax.random.PRNGKey(carry["epoch"]))
        carry["epoch"] += 1
        if part != "forward":
            carry["p"] = p
        return float(np.asarray(losses).mean()), float("nan")

    return run_epoch


FACTORIES.update({f"b-{part}": V(_parts, part=part) for part in ("forward", "sgd", "adam-only")})


# ---------------------------------------------------------------- a faster per-step engine


def make_fast_step_engine(x, y, seed: int = 0) -> Callable[[], tuple[float, float]]:
    """Prototype for ``fit(engine="step")``: one jitted call per batch that gathers its batch
    itself (x, t stay on the device and are passed whole; the batch indices and step keys come
    from NumPy arrays made once per epoch), instead of slicing ``batches[i]``, ``x[idx]``,
    ``t[idx]`` and ``step_keys[i]`` with separate device calls in Python, and the loss and
    correct count are left on the device until the epoch ends."""
    from jaxnets.train import make_train_step

    model = models.mlp([256, 256, 10])
    opt = optim.optimizer("adam", 1e-3)
    params, state = model.init(jax.random.PRNGKey(seed), x[:1])
    step = make_train_step(model, "cross_entropy", opt)

    @jax.jit
    def gathered_step(ts, x, t, idx, key, l1, l2):  # idx: (batch,) int32
        return step(ts, x[idx], t[idx], key, l1, l2)

    @functools.partial(jax.jit, static_argnums=(1, 2))
    def plan(key, n, batch_size):
        perm_key, step_key = jax.random.split(key)
        batches = epoch_batches(perm_key, n, batch_size)
        return batches, jax.random.split(step_key, batches.shape[0])

    x_dev, y_dev = jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))
    carry = {"ts": TrainState(params, state, opt.init(params)), "epoch": 0}
    key = jax.random.PRNGKey(seed)

    def run_epoch():
        batches, keys = (np.asarray(a) for a in plan(jax.random.fold_in(key, carry["epoch"]), x.shape[0], BATCH))
        ts, losses, corrects = carry["ts"], [], []
        for i in range(batches.shape[0]):
            ts, (loss, right) = gathered_step(ts, x_dev, y_dev, batches[i], keys[i], 0.0, 0.0)
            losses.append(loss)
            corrects.append(right)
        carry["ts"] = ts
        carry["epoch"] += 1
        losses = np.asarray(jnp.stack(losses))
        return float(losses.mean()), float(np.sum(jnp.stack(corrects))) / (losses.size * BATCH)

    return run_epoch


FACTORIES["v-step-fast"] = make_fast_step_engine
