"""Optimizers and learning-rate schedules by name, all from Optax.

Every optimizer is wrapped in ``optax.inject_hyperparams`` so that its learning rate lives
in the optimizer state: the training engine can read it for logging and change it between
epochs (step annealing on a validation plateau) without recompiling.
"""

from __future__ import annotations

from typing import Callable, Sequence

import optax

Schedule = Callable[[int], float]

OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": lambda learning_rate, momentum=0.9: optax.sgd(learning_rate, momentum=momentum),
    "nesterov": lambda learning_rate, momentum=0.9: optax.sgd(learning_rate, momentum=momentum, nesterov=True),
    "adagrad": optax.adagrad,
    "rmsprop": optax.rmsprop,
    "adam": optax.adam,
    "adamw": optax.adamw,
    "lamb": optax.lamb,
}


def _unknown(kind: str, name, known) -> ValueError:
    return ValueError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")


def optimizer(name: str, learning_rate: float | Schedule, **options) -> optax.GradientTransformation:
    """The Optax optimizer called ``name`` with its learning rate (a float or a schedule) made
    an injectable hyper-parameter. ``options`` go to the Optax constructor (e.g. ``b1``,
    ``momentum``, ``weight_decay``). ``momentum`` and ``nesterov`` are SGD with momentum 0.9.
    """
    if name not in OPTIMIZERS:
        raise _unknown("optimizer", name, OPTIMIZERS)
    factory = optax.inject_hyperparams(OPTIMIZERS[name])
    try:
        return factory(learning_rate=learning_rate, **options)
    except TypeError as e:
        raise TypeError(f"optimizer {name!r}: {e}") from None


def current_learning_rate(opt_state) -> float | None:
    """The learning rate stored in an ``inject_hyperparams`` state (None if there is none)."""
    hyperparams = getattr(opt_state, "hyperparams", None)
    if hyperparams is None or "learning_rate" not in hyperparams:
        return None
    return float(hyperparams["learning_rate"])


def scale_learning_rate(base_learning_rate: float, batch_size: int, base_batch_size: int = 256) -> float:
    """The linear scaling rule (Goyal et al. 2017): lr = base_lr × batch_size / base_batch_size."""
    if batch_size <= 0 or base_batch_size <= 0:
        raise ValueError(f"batch sizes must be positive, got {batch_size} and {base_batch_size}")
    return base_learning_rate * batch_size / base_batch_size


def _constant(init_value, steps_per_epoch):
    return optax.constant_schedule(init_value)


def _step(init_value, steps_per_epoch, epochs: Sequence[int] = (), factor: float = 0.1):
    """Multiply by ``factor`` at the start of each epoch in ``epochs``."""
    return optax.piecewise_constant_schedule(init_value, {int(e) * steps_per_epoch: factor for e in epochs})


def _exponential(init_value, steps_per_epoch, decay_rate: float = 0.9):
    """Multiply by ``decay_rate`` every epoch, smoothly: lr = lr₀ · decay_rate^(step/steps_per_epoch)."""
    return optax.exponential_decay(init_value, transition_steps=steps_per_epoch, decay_rate=decay_rate)


def _cosine(init_value, steps_per_epoch, epochs: int = 10, final_fraction: float = 0.0):
    """Cosine decay from lr₀ to ``final_fraction``·lr₀ over ``epochs`` epochs."""
    return optax.cosine_decay_schedule(init_value, decay_steps=epochs * steps_per_epoch, alpha=final_fraction)


def _warmup(init_value, steps_per_epoch, warmup_epochs: float = 1, epochs: int | None = None):
    """Linear warm-up from 0 to lr₀ over ``warmup_epochs``; then constant, or cosine decay to 0
    at ``epochs`` when given (Goyal et al.'s gradual warm-up for large batches)."""
    warmup_steps = max(int(warmup_epochs * steps_per_epoch), 1)
    if epochs is None:
        return optax.linear_schedule(0.0, init_value, warmup_steps)
    return optax.warmup_cosine_decay_schedule(0.0, init_value, warmup_steps, max(epochs * steps_per_epoch, warmup_steps + 1))


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": _constant,
    "step": _step,
    "exponential": _exponential,
    "cosine": _cosine,
    "warmup": _warmup,
}


def schedule(name: str, init_value: float, *, steps_per_epoch: int = 1, **options) -> Schedule:
    """A learning-rate schedule by name, counted in epochs (converted to optimizer steps with
    ``steps_per_epoch``). Names: constant; step (``epochs=[…]``, ``factor``); exponential
    (``decay_rate`` per epoch); cosine (``epochs``, ``final_fraction``); warmup
    (``warmup_epochs``, optional ``epochs`` for a cosine tail). Annealing when validation stops
    improving is :class:`ReduceOnPlateau`, applied by ``fit`` between epochs.
    """
    if name not in SCHEDULES:
        raise _unknown("schedule", name, SCHEDULES)
    try:
        return SCHEDULES[name](init_value, steps_per_epoch, **options)
    except TypeError as e:
        raise TypeError(f"schedule {name!r}: {e}") from None


class ReduceOnPlateau:
    """Divide the learning rate by ``1/factor`` when the validation loss has not improved by more
    than ``min_delta`` for ``patience`` epochs (the notes' "step annealing when validation
    stops improving"). ``fit`` calls :meth:`update` after each epoch."""

    def __init__(self, factor: float = 0.1, patience: int = 3, min_delta: float = 0.0, min_learning_rate: float = 0.0):
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceOnPlateau: factor must be in (0, 1), got {factor}")
        self.factor, self.patience, self.min_delta, self.min_learning_rate = factor, patience, min_delta, min_learning_rate
        self.best = float("inf")
        self.bad_epochs = 0

    def update(self, validation_loss: float, learning_rate: float) -> float:
        """The learning rate for the next epoch."""
        if validation_loss < self.best - self.min_delta:
            self.best, self.bad_epochs = validation_loss, 0
            return learning_rate
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.bad_epochs = 0
            return max(learning_rate * self.factor, self.min_learning_rate)
        return learning_rate
