"""Compiled loss/gradient functions and the training engine.

* :func:`objective` — the mean loss of a batch (plus L1/L2 penalties) as a pure function.
* :func:`value_and_grad_fn`, :func:`per_example_loss_fn`, :func:`per_example_grad_fn` —
  ``jit``-compiled factories (the per-example ones through ``vmap``).
* :func:`make_train_step` — one optimizer step on one batch.
* :func:`epoch_plan` — an epoch's shuffled batches and step keys from its key (:data:`plan_epoch`,
  :data:`plan_runs`: compiled once per process); :func:`epoch_order` the same for a run's epoch.
* :func:`make_epoch_fn` — one training epoch as one pure function: shuffle, then
  ``lax.scan`` over minibatches (the ``"scan"`` engine). It can be ``vmap``-ped over runs.
  :func:`make_planned_epoch_fn` — the same given its plan (what ``fit`` compiles).
* :func:`make_step_epoch_fn` — the same epoch as one compiled call per batch (the ``"step"``
  engine), for one run or, with ``in_axes``, for stacked runs.
* :func:`choose_engine` — which of the two an epoch uses.
* :func:`make_chunk_fn` — K steps over K batches given to it (``lax.scan``): the compiled piece of an
  epoch streamed from host data in chunks (:mod:`jaxnets.streaming`).
* :func:`make_evaluate_fn` — loss and accuracy over a whole set, in batches, as one call;
  :func:`make_evaluate_runs_fn` and :func:`make_metrics_runs_fn` the same vmapped over stacked runs;
  :func:`evaluate` a one-off evaluation.

The Python loop over epochs that ``fit`` and ``fit_seeds`` share lives in :mod:`jaxnets._loop`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets._util import memoize_hashable, unknown
from jaxnets.losses import correct, get_loss, l1_penalty, l2_penalty
from jaxnets.nn import conv_impl
from jaxnets.parallel import to_host

Array = jax.Array
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")
ENGINES = ("auto", "scan", "step")


class TrainState(NamedTuple):
    """What one training step changes: trained params, carried model state, optimizer state."""

    params: Any
    state: Any
    opt_state: Any


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names epoch, step and leaves."""


def _cast_floats(tree, dtype):
    """Every floating-point leaf of ``tree`` as ``dtype`` (integer leaves, e.g. labels, unchanged)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def objective(model, loss: str | Callable, penalty_mask=None, compute_dtype=None) -> Callable:
    """The training objective as a pure function.

    Returns ``f(params, state, x, t, key, train, l1, l2) -> (total, (new_state, outputs, data_loss))``
    where x: (batch, …), t: targets (batch, …), ``data_loss`` is the mean per-example loss and
    ``total = data_loss + l1·Σ|w| + l2·½Σw²`` over the weights selected by ``penalty_mask``. A
    penalty strength that is ``None`` or a Python 0 adds no term to the compiled program.
    ``compute_dtype`` (e.g. ``"bfloat16"``; None: the params' own): mixed precision. The forward and
    backward pass run on params and inputs cast to it; the outputs, the loss and the penalties are
    float32, the gradient arrives in the params' dtype, and the new state keeps the state's dtypes.
    """
    loss_fn = get_loss(loss)
    compute = None if compute_dtype is None else jnp.dtype(compute_dtype)

    def absent(strength) -> bool:
        return strength is None or (isinstance(strength, (int, float)) and strength == 0)

    def f(params, state, x, t, key, train, l1=None, l2=None):
        if compute is None:
            outputs, new_state = model.apply(params, state, x, key=key, train=train)
        else:
            outputs, new_state = model.apply(_cast_floats(params, compute), state, _cast_floats(x, compute),
                                             key=key, train=train)
            outputs = _cast_floats(outputs, jnp.float32)
            new_state = jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)
        data_loss = jnp.mean(loss_fn(outputs, t))
        total = data_loss
        if not absent(l1):
            total = total + l1 * l1_penalty(params, penalty_mask)
        if not absent(l2):
            total = total + l2 * l2_penalty(params, penalty_mask)
        return total, (new_state, outputs, data_loss)

    return f


def value_and_grad_fn(model, loss: str | Callable, *, train: bool = True) -> Callable:
    """Jitted ``f(params, state, x, t, key=None) -> ((loss, (new_state, outputs)), grads)``:
    the mean loss of the batch x: (batch, …) and its gradient with respect to params."""
    obj = objective(model, loss)

    @jax.jit
    def f(params, state, x, t, key=None):
        (value, (new_state, outputs, _)), grads = jax.value_and_grad(obj, has_aux=True)(
            params, state, x, t, key, train)
        return (value, (new_state, outputs)), grads

    return f


def _single_example(model, loss):
    obj = objective(model, loss)

    def f(params, state, x, t):  # x: one example, without batch axis
        value, _ = obj(params, state, x[None], t[None], None, False)
        return value

    return f


def per_example_loss_fn(model, loss: str | Callable) -> Callable:
    """Jitted ``f(params, state, x, t) -> (batch,)``: each example's loss, by ``vmap`` over the
    batch (evaluation mode: batch norm uses running statistics)."""
    return jax.jit(jax.vmap(_single_example(model, loss), in_axes=(None, None, 0, 0)))


def per_example_grad_fn(model, loss: str | Callable) -> Callable:
    """Jitted ``f(params, state, x, t) -> grads`` whose leaves have a leading batch axis: the
    gradient of each example's loss, by ``vmap(grad(...))`` (evaluation mode)."""
    return jax.jit(jax.vmap(jax.grad(_single_example(model, loss)), in_axes=(None, None, 0, 0)))


def is_classification(loss: str | Callable) -> bool:
    """Whether accuracy is reported for ``loss`` (the cross-entropies)."""
    return loss in CLASSIFICATION_LOSSES


def make_train_step(model, loss, optimizer: optax.GradientTransformation, penalty_mask=None,
                    compute_dtype=None, constrain_params: Callable | None = None) -> Callable:
    """``step(train_state, x, t, key, l1, l2) -> (train_state, (loss, correct))`` for one batch
    x: (batch, …); ``loss`` is the batch's mean data loss, ``correct`` the number right (0 for
    losses that are not classification losses). ``compute_dtype``: see :func:`objective`.
    ``constrain_params``: applied to the new params and optimizer state (FSDP-style sharding,
    :func:`jaxnets.parallel.fsdp_constraint`)."""
    classification = is_classification(loss)
    grad_fn = jax.value_and_grad(objective(model, loss, penalty_mask, compute_dtype), has_aux=True)
    keep = constrain_params or (lambda tree: tree)

    def step(ts: TrainState, x, t, key, l1, l2):
        (_, (new_state, outputs, data_loss)), grads = grad_fn(ts.params, ts.state, x, t, key, True, l1, l2)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params, opt_state = keep((optax.apply_updates(ts.params, updates), opt_state))
        num_correct = jnp.sum(correct(outputs, t)) if classification else jnp.zeros((), data_loss.dtype)
        return TrainState(params, new_state, opt_state), (data_loss, num_correct)

    return step


def epoch_batches(key: Array, num_examples: int, batch_size: int) -> Array:
    """A random permutation of the examples cut into full batches: (steps, batch_size) indices.
    The last ``num_examples % batch_size`` examples of each permutation are left out."""
    steps = num_examples // batch_size
    if steps == 0:
        raise ValueError(f"batch_size {batch_size} is larger than the {num_examples} training examples")
    return jax.random.permutation(key, num_examples)[: steps * batch_size].reshape(steps, batch_size)


def epoch_plan(key: Array, num_examples: int, batch_size: int) -> tuple[Array, Array]:
    """What an epoch drawn from ``key`` trains on: the batches (steps, batch_size) of example indices
    (:func:`epoch_batches`) and one PRNG key per step (steps,), from the two halves of ``key``."""
    perm_key, step_key = jax.random.split(key)
    batches = epoch_batches(perm_key, num_examples, batch_size)
    return batches, jax.random.split(step_key, batches.shape[0])


# Compiled once per (runs, num_examples, batch_size) in a process and shared by every fit: the
# epochs take their plan as input, so their own programs hold no random-number code. The plan, like
# the derivation of each epoch's keys (fold_in, split), is integer arithmetic (threefry, a sort), so
# the compiler's optimisation level cannot change it. On CPU, level 1 compiles the plan of 32 stacked
# runs 0.15 s faster than the default, and one run's plan up to 0.05 s faster, at the same run time
# (benchmarks/RESULTS.md).
PLAN_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
plan_epoch = jax.jit(epoch_plan, static_argnums=(1, 2), compiler_options=PLAN_COMPILER_OPTIONS)
plan_runs = jax.jit(jax.vmap(epoch_plan, in_axes=(0, None, None)), static_argnums=(1, 2),
                    compiler_options=PLAN_COMPILER_OPTIONS)
plan_runs.__doc__ = """:func:`epoch_plan` of stacked keys (runs,): batches (runs, steps, batch_size), keys (runs, steps)."""


def epoch_order(key: Array, epoch: int, num_examples: int, batch_size: int) -> np.ndarray:
    """The batches (steps, batch_size) of example indices that epoch ``epoch`` of a run with PRNG key
    ``key`` trains on in memory (without ``augment``): the plan the training loop draws from
    ``fold_in(key, epoch)``. Streamed sources read in this order, and an iterable can reproduce it."""
    return np.asarray(plan_epoch(jax.random.fold_in(key, epoch), num_examples, batch_size)[0])


def _batch(x, idx, batch_sharding):
    """x[idx]: the batch (batch, …), split over the devices of ``batch_sharding`` when given."""
    xb = x[idx]
    return xb if batch_sharding is None else jax.lax.with_sharding_constraint(xb, batch_sharding)


@functools.partial(jax.jit, compiler_options=PLAN_COMPILER_OPTIONS)
def split_run_keys(keys: Array) -> tuple[Array, Array]:
    """Each run's key split in two, as an epoch splits its key (shuffling, steps; or augmentation, epoch):
    keys (runs,) -> two (runs,) key arrays."""
    return jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)


def make_epoch_fn(model, loss, optimizer, *, batch_size: int, penalty_mask=None,
                  batch_sharding: jax.sharding.NamedSharding | None = None, compute_dtype=None,
                  constrain_params: Callable | None = None) -> Callable:
    """One training epoch as a pure function (not jitted; ``jax.jit`` it, or ``vmap`` it first).

    ``epoch(train_state, x, t, key, l1, l2) -> (train_state, (losses, num_correct))`` with
    x: (N, …), t: (N, …), losses and num_correct of shape (steps,) with steps = N // batch_size;
    ``l1``, ``l2``: penalty strengths (``None``, the default: no penalty term). The whole epoch is
    one ``lax.scan`` over shuffled minibatches gathered from x and t (the plan drawn from ``key``,
    :func:`epoch_plan`, then :func:`make_planned_epoch_fn`), so
    ``jax.vmap(epoch, in_axes=(0, None, None, 0, 0, 0))`` trains many runs at once.
    ``batch_sharding``: split each batch's leading axis over a mesh axis (data parallelism, e.g.
    ``NamedSharding(mesh, PartitionSpec("data"))``; under ``vmap`` pass ``spmd_axis_name`` for the runs).
    ``compute_dtype``: mixed precision (:func:`objective`); ``constrain_params``: :func:`make_train_step`.
    """
    planned = make_planned_epoch_fn(model, loss, optimizer, penalty_mask=penalty_mask, batch_sharding=batch_sharding,
                                    compute_dtype=compute_dtype, constrain_params=constrain_params)

    def epoch(ts: TrainState, x, t, key, l1=None, l2=None):
        return planned(ts, x, t, *epoch_plan(key, x.shape[0], batch_size), l1, l2)

    return epoch


def make_planned_epoch_fn(model, loss, optimizer, *, penalty_mask=None,
                          batch_sharding: jax.sharding.NamedSharding | None = None, compute_dtype=None,
                          constrain_params: Callable | None = None) -> Callable:
    """:func:`make_epoch_fn`'s epoch given its plan instead of its key (what ``fit`` compiles: the plan
    comes from :data:`plan_runs`, compiled once per process, and the epoch's program holds no
    random-number code: the spirals MLP compiles in 0.6–0.75 s instead of 0.95–1.1 s on CPU; for LeNet and
    the Fashion-MNIST MLP the difference is within noise).

    ``epoch(train_state, x, t, batches, step_keys, l1, l2) -> (train_state, (losses, num_correct))``
    with batches: (steps, batch) indices into x: (N, …) and t: (N, …), step_keys: (steps,); the rest
    as in :func:`make_epoch_fn`.
    """
    step = make_train_step(model, loss, optimizer, penalty_mask, compute_dtype, constrain_params)

    def epoch(ts: TrainState, x, t, batches, step_keys, l1=None, l2=None):
        def body(ts, inputs):
            idx, k = inputs
            with conv_impl.training_loop():  # on CPU, impl="xla" takes its gradients in the fast form
                return step(ts, _batch(x, idx, batch_sharding), _batch(t, idx, batch_sharding), k, l1, l2)

        return jax.lax.scan(body, ts, (batches, step_keys))

    return epoch


def make_chunk_fn(model, loss, optimizer, *, penalty_mask=None,
                  batch_sharding: jax.sharding.NamedSharding | None = None, compute_dtype=None,
                  constrain_params: Callable | None = None) -> Callable:
    """K training steps over K given batches, as one pure function (``jax.jit`` it, or ``vmap`` it first).

    ``chunk(train_state, xs, ts, keys, l1, l2) -> (train_state, (losses, num_correct))`` with
    xs: (K, batch, …), ts: (K, batch, …), keys: (K,) step keys, losses and num_correct (K,). Batch k is
    trained with key k, as step k of :func:`make_epoch_fn` is, so an epoch cut into chunks of the
    same batches and keys trains as the in-memory epoch does. ``batch_sharding``, ``compute_dtype``,
    ``constrain_params``: as in :func:`make_epoch_fn`.
    """
    step = make_train_step(model, loss, optimizer, penalty_mask, compute_dtype, constrain_params)

    def constrain(batch):
        return batch if batch_sharding is None else jax.lax.with_sharding_constraint(batch, batch_sharding)

    def chunk(ts: TrainState, xs, ts_targets, keys, l1=None, l2=None):
        def body(ts, inputs):
            xb, tb, k = inputs
            with conv_impl.training_loop():
                return step(ts, constrain(xb), constrain(tb), k, l1, l2)

        return jax.lax.scan(body, ts, (xs, ts_targets, keys))

    return chunk


def choose_engine(engine: str) -> str:
    """``"scan"`` (one compiled call per epoch) or ``"step"`` (one compiled call per batch).

    ``"auto"`` is ``"scan"`` for every model on every backend: with every ``impl`` of a convolution
    the scanned epoch is as fast as the step engine or faster (on CPU ``"xla"`` takes its gradients
    in the form XLA:CPU computes fast inside a loop, :func:`jaxnets.nn.conv_impl.eigen_conv`;
    benchmarks/RESULTS.md), and it has no per-batch dispatch."""
    if engine not in ENGINES:
        raise unknown("engine", engine, ENGINES)
    return "scan" if engine == "auto" else engine


def _is_typed_key(key) -> bool:
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def make_step_epoch_fn(model, loss, optimizer, *, batch_size: int, penalty_mask=None,
                       in_axes: tuple | None = None, batch_sharding: jax.sharding.NamedSharding | None = None,
                       spmd_axis_name: str | None = None, compute_dtype=None,
                       constrain_params: Callable | None = None) -> Callable:
    """One training epoch as one compiled call per batch (the ``"step"`` engine); the same
    batches, keys and updates as :func:`make_epoch_fn`, so both engines train alike.

    ``epoch(train_state, x, t, key, l1, l2) -> (train_state, (losses, num_correct))`` as in
    :func:`make_epoch_fn`. The epoch's plan (:data:`plan_epoch`, :data:`plan_runs`) is read back to
    the host once; each step gathers its own batch from the device-resident x, t, and
    losses stay on the device until the epoch ends (2.2–2.7× faster than slicing with separate
    device calls per step; benchmarks/RESULTS.md).

    ``in_axes``: ``None`` for one run, or the ``vmap`` axes of ``(train_state, x, t, key, l1, l2)``
    to train stacked runs (``key`` must be batched); losses and counts are then (runs, steps).
    ``batch_sharding``, ``spmd_axis_name``, ``compute_dtype``, ``constrain_params``: as in :func:`make_epoch_fn`.
    """
    step = make_train_step(model, loss, optimizer, penalty_mask, compute_dtype, constrain_params)

    def gathered(ts, x, t, idx, key, l1, l2):  # idx: (batch_size,) indices
        return step(ts, _batch(x, idx, batch_sharding), _batch(t, idx, batch_sharding), key, l1, l2)

    if in_axes is not None:
        ts_axis, x_axis, t_axis, key_axis, l1_axis, l2_axis = in_axes
        if key_axis != 0:
            raise ValueError("make_step_epoch_fn: stacked runs need one key per run (key axis 0)")
        gathered = jax.vmap(gathered, in_axes=(ts_axis, x_axis, t_axis, 0, 0, l1_axis, l2_axis),
                            spmd_axis_name=spmd_axis_name)

    @functools.partial(jax.jit, static_argnums=(7,))
    def compiled_step(ts, x, t, idx, key_data, l1, l2, typed_key):
        return gathered(ts, x, t, idx, jax.random.wrap_key_data(key_data) if typed_key else key_data, l1, l2)

    plan = plan_epoch if in_axes is None else plan_runs
    step_axis = 0 if in_axes is None else 1

    def epoch(ts, x, t, key, l1=None, l2=None):
        batches, step_keys = plan(key, t.shape[0], batch_size)  # t is shared by the runs: (N, …)
        typed_key = _is_typed_key(step_keys)
        batches = to_host(batches)
        step_keys = to_host(jax.random.key_data(step_keys) if typed_key else step_keys)
        losses, corrects = [], []
        for s in range(batches.shape[step_axis]):
            idx = np.take(batches, s, axis=step_axis)
            ts, (batch_loss, batch_correct) = compiled_step(ts, x, t, idx, np.take(step_keys, s, axis=step_axis),
                                                            l1, l2, typed_key)
            losses.append(batch_loss)
            corrects.append(batch_correct)
        return ts, (jnp.stack(losses, axis=step_axis), jnp.stack(corrects, axis=step_axis))

    return epoch


@memoize_hashable(32)
def make_evaluate_fn(model, loss, *, batch_size: int = 1000) -> Callable:
    """Jitted ``evaluate(params, state, x, t) -> (mean_loss, accuracy)`` in evaluation mode, in
    batches (the last one masked), so large test sets fit in memory. Equal arguments give the same
    function (so :func:`evaluate` compiles once per model, loss and data shape)."""
    loss_fn = get_loss(loss)
    classification = is_classification(loss)

    @jax.jit
    def evaluate(params, state, x, t):
        n = x.shape[0]
        steps = -(-n // batch_size)
        pad = steps * batch_size - n
        xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(steps, batch_size, *x.shape[1:])
        ts = jnp.pad(t, [(0, pad)] + [(0, 0)] * (t.ndim - 1)).reshape(steps, batch_size, *t.shape[1:])
        mask = (jnp.arange(steps * batch_size) < n).reshape(steps, batch_size)

        def body(totals, batch):
            xb, tb, mb = batch
            outputs, _ = model.apply(params, state, xb, train=False)
            per_example = loss_fn(outputs, tb)
            right = correct(outputs, tb) if classification else jnp.zeros_like(per_example)
            return (totals[0] + jnp.sum(per_example * mb), totals[1] + jnp.sum(right * mb)), None

        (loss_sum, correct_sum), _ = jax.lax.scan(body, (jnp.zeros(()), jnp.zeros(())), (xs, ts, mask))
        return loss_sum / n, correct_sum / n

    return evaluate


@memoize_hashable(32)
def make_evaluate_runs_fn(model, loss, *, batch_size: int = 1000) -> Callable:
    """Jitted ``evaluate(params, state, x, t) -> (loss (runs,), accuracy (runs,))`` for stacked
    params/state and shared data x: (N, …), t: (N, …)."""
    return jax.jit(jax.vmap(make_evaluate_fn(model, loss, batch_size=batch_size), in_axes=(0, 0, None, None)))


@functools.lru_cache(maxsize=16)
def make_metrics_runs_fn(metrics_fn: Callable[..., dict], num_data: int = 0) -> Callable:
    """Jitted ``f(params, state, *data) -> {name: (runs, …)}``: ``metrics_fn`` vmapped over stacked
    params/state, with ``num_data`` shared (not vmapped) data arguments. The same ``metrics_fn``
    gives the same jitted function, so metrics taken before ``fit_seeds`` (at initialisation)
    and during it share one compilation."""
    return jax.jit(jax.vmap(metrics_fn, in_axes=(0, 0) + (None,) * num_data))


def evaluate(model, params, state, data: tuple[Any, Any], *, loss: str | Callable,
             batch_size: int = 1000) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of a trained model on ``data = (x, t)`` in evaluation mode
    (accuracy is NaN for a loss that is not a classification loss). Compiled once per model, loss
    and data shape in a process (:func:`make_evaluate_fn`)."""
    x, t = (jnp.asarray(a) for a in data)
    value, accuracy = make_evaluate_fn(model, loss, batch_size=batch_size)(params, state, x, t)
    return float(value), float(accuracy) if is_classification(loss) else float("nan")
