"""Compiled loss/gradient functions and the training engine.

* :func:`objective` — the mean loss of a batch (plus L1/L2 penalties) as a pure function.
* :func:`value_and_grad_fn`, :func:`per_example_loss_fn`, :func:`per_example_grad_fn` —
  ``jit``-compiled factories (the per-example ones through ``vmap``).
* :func:`make_epoch_fn` — one training epoch as one pure function: shuffle, then
  ``lax.scan`` over minibatches. It can be ``vmap``-ped over seeds (:mod:`jaxnets.seeds`).
* :func:`make_evaluate_fn` — loss and accuracy over a whole set, in batches, as one call.

The Python loop over epochs (``fit``) lives in :mod:`jaxnets.loop`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnets.losses import correct, get_loss, l1_penalty, l2_penalty

Array = jax.Array
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")


class TrainState(NamedTuple):
    """What one training step changes: trained params, carried model state, optimizer state."""

    params: Any
    state: Any
    opt_state: Any


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names epoch, step and leaves."""


def objective(model, loss: str | Callable, penalty_mask=None) -> Callable:
    """The training objective as a pure function.

    Returns ``f(params, state, x, t, key, train, l1, l2) -> (total, (new_state, outputs, data_loss))``
    where x: (batch, …), t: targets (batch, …), ``data_loss`` is the mean per-example loss and
    ``total = data_loss + l1·Σ|w| + l2·½Σw²`` over the weights selected by ``penalty_mask``.
    """
    loss_fn = get_loss(loss)

    def f(params, state, x, t, key, train, l1=0.0, l2=0.0):
        outputs, new_state = model.apply(params, state, x, key=key, train=train)
        data_loss = jnp.mean(loss_fn(outputs, t))
        total = data_loss
        if not (isinstance(l1, (int, float)) and l1 == 0):
            total = total + l1 * l1_penalty(params, penalty_mask)
        if not (isinstance(l2, (int, float)) and l2 == 0):
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


def make_train_step(model, loss, optimizer: optax.GradientTransformation, penalty_mask=None) -> Callable:
    """``step(train_state, x, t, key, l1, l2) -> (train_state, (loss, correct))`` for one batch
    x: (batch, …); ``loss`` is the batch's mean data loss, ``correct`` the number right (0 for
    losses that are not classification losses)."""
    classification = is_classification(loss)
    grad_fn = jax.value_and_grad(objective(model, loss, penalty_mask), has_aux=True)

    def step(ts: TrainState, x, t, key, l1, l2):
        (_, (new_state, outputs, data_loss)), grads = grad_fn(ts.params, ts.state, x, t, key, True, l1, l2)
        updates, opt_state = optimizer.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
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


def make_epoch_fn(model, loss, optimizer, *, batch_size: int, penalty_mask=None) -> Callable:
    """One training epoch as a pure function (not jitted; ``jax.jit`` it, or ``vmap`` it first).

    ``epoch(train_state, x, t, key, l1, l2) -> (train_state, (losses, num_correct))`` with
    x: (N, …), t: (N, …), losses and num_correct of shape (steps,) with steps = N // batch_size.
    The whole epoch is one ``lax.scan`` over shuffled minibatches gathered from x and t, so
    ``jax.vmap(epoch, in_axes=(0, None, None, 0, None, None))`` trains many seeds at once.
    """
    step = make_train_step(model, loss, optimizer, penalty_mask)

    def epoch(ts: TrainState, x, t, key, l1=0.0, l2=0.0):
        perm_key, step_key = jax.random.split(key)
        batches = epoch_batches(perm_key, x.shape[0], batch_size)  # (steps, batch)
        step_keys = jax.random.split(step_key, batches.shape[0])

        def body(ts, inputs):
            idx, k = inputs
            return step(ts, x[idx], t[idx], k, l1, l2)

        return jax.lax.scan(body, ts, (batches, step_keys))

    return epoch


def make_evaluate_fn(model, loss, *, batch_size: int = 1000) -> Callable:
    """Jitted ``evaluate(params, state, x, t) -> (mean_loss, accuracy)`` in evaluation mode, in
    batches (the last one masked), so large test sets fit in memory."""
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
