"""The compiled pieces of a training call (:mod:`jaxnets._loop`), built once for equal settings.

A call of :func:`jaxnets.fit` or :func:`jaxnets.fit_seeds` trains with a handful of jitted
functions: the epoch (or the chunk of a streamed epoch), the evaluation, the augmentation, the
metrics. XLA compiles each one at its first call, which on a CPU takes longer than many epochs of a
small network. :func:`programs_for` keeps the last 32 sets of them, keyed by the model, the loss,
the optimizer's ``update`` function and the options (all compared by value or, for functions, by
identity), so a second call with the same settings — a notebook cell run again, another seed,
another learning rate of an optimizer from :func:`jaxnets.optim.optimizer`, whose numeric
hyper-parameters live in the optimizer state — trains at once instead of compiling again. What the
functions compute depends only on those settings, so reuse never changes a result; settings that
cannot be hashed (a ``penalty_mask`` given as a tree) build new functions each call, as before.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import optax

from jaxnets._util import add_run_axis, drop_run_axis, memoize_hashable
from jaxnets.nn import conv_impl
from jaxnets.parallel import RUNS
from jaxnets.train import (PLAN_COMPILER_OPTIONS, make_chunk_fn, make_evaluate_fn, make_evaluate_runs_fn,
                           make_metrics_runs_fn, make_planned_epoch_fn, make_step_epoch_fn, plan_runs, split_run_keys)

CACHED_SETTINGS = 32  # sets of programs kept for reuse (least recently used first out)

# (keys (runs,), epoch) -> (runs,); integer arithmetic, compiled as the plan is
fold_in_runs = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)), compiler_options=PLAN_COMPILER_OPTIONS)


class Programs(NamedTuple):
    """The compiled pieces of one call, all on stacked runs (the plain epoch when there is one run)."""

    epoch: Callable  # (train_state, x, t, keys, l1, l2) -> (train_state, (losses, corrects)), both (runs, …);
    # streamed: the chunk program, x and t (K, batch, …), keys (runs, K)
    epoch_keys: Callable  # (keys, epoch) -> fold_in of each run's key
    split_keys: Callable  # keys -> (augmentation keys, epoch keys)
    augment: Callable | None  # (keys, x) -> each run's augmented x
    evaluate: Callable  # (params, state, x, t) -> (loss (runs,), accuracy (runs,))
    metrics: Callable | None  # (params, state, *data) -> {name: (runs, …)}


def programs_for(model, loss, optimizer: optax.GradientTransformation, *, batch_size: int, penalty_mask, engine: str,
                 vmapped: bool, augment, metrics_fn, num_metrics_data: int, batch_sharding, compute_dtype,
                 streamed: bool, constrain_params) -> Programs:
    """The :class:`Programs` that train ``model`` with these settings, the same objects as an earlier
    call's with equal settings (see the module docstring). Only ``optimizer.update`` enters them:
    its ``init`` runs outside, on the caller's params."""
    return _build(model, loss, optimizer.update, batch_size=batch_size, penalty_mask=penalty_mask, engine=engine,
                  vmapped=vmapped, augment=augment, metrics_fn=metrics_fn, num_metrics_data=num_metrics_data,
                  batch_sharding=batch_sharding, compute_dtype=compute_dtype, streamed=streamed,
                  constrain_params=constrain_params)


def _one_run(fn: Callable, batched: int) -> Callable:
    """``fn`` of one run applied to stacked runs of size 1: the first ``batched`` arguments lose their
    run axis, the result gains it (free inside jit), so one run compiles the plain program."""
    def wrapped(*args):
        return add_run_axis(fn(*(drop_run_axis(a) for a in args[:batched]), *args[batched:]))
    return wrapped


def _over_runs(fn: Callable) -> Callable:
    """``fn`` traced inside :func:`jaxnets.nn.conv_impl.stacked_runs` (it is about to be vmapped over the runs)."""
    def traced(*args):
        with conv_impl.stacked_runs():
            return fn(*args)
    return traced


@memoize_hashable(CACHED_SETTINGS)
def _build(model, loss, update, *, batch_size, penalty_mask, engine, vmapped, augment, metrics_fn,
           num_metrics_data, batch_sharding, compute_dtype, streamed, constrain_params) -> Programs:
    optimizer = optax.GradientTransformation(init=None, update=update)  # the programs only update
    x_axis = 0 if augment is not None and vmapped else None
    in_axes = (0, x_axis, None, 0, 0, 0)
    spmd = RUNS if batch_sharding is not None else None  # the runs' mesh axis, for the batch's sharding
    if streamed:  # (train_state, xs, ts, keys, l1, l2) for chunks of batches (K, batch, …) shared by the runs
        chunk_fn = make_chunk_fn(model, loss, optimizer, penalty_mask=penalty_mask, batch_sharding=batch_sharding,
                                 compute_dtype=compute_dtype, constrain_params=constrain_params)
        if vmapped:
            epoch = jax.jit(jax.vmap(_over_runs(chunk_fn), in_axes=(0, None, None, 0, 0, 0), spmd_axis_name=spmd))
        else:
            epoch = jax.jit(lambda ts, x, t, k, a, b: add_run_axis(
                chunk_fn(drop_run_axis(ts), x, t, k[0], drop_run_axis(a), drop_run_axis(b))))
    elif engine == "scan":  # the plan (batches, step keys) drawn by a program compiled once per process
        epoch_fn = make_planned_epoch_fn(model, loss, optimizer, penalty_mask=penalty_mask, batch_sharding=batch_sharding,
                                         compute_dtype=compute_dtype, constrain_params=constrain_params)
        if vmapped:
            planned = jax.jit(jax.vmap(_over_runs(epoch_fn), in_axes=(0, x_axis, None, 0, 0, 0, 0),
                                       spmd_axis_name=spmd))
        else:  # the state, plan and penalties carry the run axis
            planned = jax.jit(lambda ts, x, t, idx, k, a, b: add_run_axis(
                epoch_fn(drop_run_axis(ts), x, t, idx[0], k[0], drop_run_axis(a), drop_run_axis(b))))

        def epoch(ts, x, t, keys, l1, l2):
            return planned(ts, x, t, *plan_runs(keys, t.shape[0], batch_size), l1, l2)
    elif vmapped:
        epoch = make_step_epoch_fn(model, loss, optimizer, batch_size=batch_size, penalty_mask=penalty_mask,
                                   in_axes=in_axes, batch_sharding=batch_sharding, spmd_axis_name=spmd,
                                   compute_dtype=compute_dtype, constrain_params=constrain_params)
    else:
        step_epoch = make_step_epoch_fn(model, loss, optimizer, batch_size=batch_size, penalty_mask=penalty_mask,
                                        batch_sharding=batch_sharding, compute_dtype=compute_dtype,
                                        constrain_params=constrain_params)

        def epoch(ts, x, t, k, a, b):
            return add_run_axis(step_epoch(drop_run_axis(ts), x, t, k[0], drop_run_axis(a), drop_run_axis(b)))
    augment_runs = None
    if augment is not None:
        augment_runs = jax.jit(jax.vmap(augment, in_axes=(0, None)) if vmapped else lambda k, v: augment(k[0], v))
    metrics = None
    if metrics_fn is not None:
        metrics = make_metrics_runs_fn(metrics_fn, num_metrics_data) if vmapped else _one_run(jax.jit(metrics_fn), 2)
    evaluate = make_evaluate_runs_fn(model, loss) if vmapped else _one_run(make_evaluate_fn(model, loss), 2)
    return Programs(epoch, fold_in_runs, split_run_keys, augment_runs, evaluate, metrics)
