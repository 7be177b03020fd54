"""What the training loop decides between epochs from a monitored number: early stopping and plateau
annealing.

Each is a frozen config (hashable, reusable: the same object given to two ``fit`` calls gives two
identical runs) whose state is a NamedTuple of NumPy arrays, created by ``init`` and advanced by
``update``, which returns a new state and changes nothing. The arrays are scalars for one run and
have a run axis (runs,) under :func:`jaxnets.fit_seeds`, where every run decides for itself. The
loop saves the states in its checkpoints, so a resumed run continues exactly.

>>> stopping = EarlyStopping(patience=2)
>>> state = stopping.init()
>>> for epoch, loss in enumerate([1.0, 0.8, 0.9, 0.85]):
...     state = stopping.update(state, loss, epoch)
>>> int(state.best_epoch), bool(state.stopped)
(1, True)
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jaxnets._util import unknown

# monitored number → whether lower is better
MONITORS = {"val_loss": True, "val_accuracy": False, "train_loss": True, "train_accuracy": False}


def _check_monitor(owner: str, monitor: str) -> None:
    if monitor not in MONITORS:
        raise ValueError(f"{owner}: {unknown('monitor', monitor, MONITORS)}")


def _improved(monitor: str, min_delta: float, value: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Elementwise: ``value`` beats ``best`` by more than ``min_delta`` (NaN never does)."""
    with np.errstate(invalid="ignore"):
        if MONITORS[monitor]:
            return value < best - min_delta
        return value > best + min_delta


def _worst(monitor: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.inf if MONITORS[monitor] else -np.inf)


class EarlyStoppingState(NamedTuple):
    """best: the best monitored value so far (±inf before the first epoch); best_epoch: its epoch
    (-1 before); bad_epochs: epochs since the last improvement; stopped: whether training ended."""

    best: np.ndarray
    best_epoch: np.ndarray
    bad_epochs: np.ndarray
    stopped: np.ndarray


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` (``val_loss``, ``train_loss``: lower is better; ``val_accuracy``,
    ``train_accuracy``: higher is better) has not improved by more than ``min_delta`` for
    ``patience`` epochs; ``fit`` then returns the params of the best epoch."""

    patience: int = 5
    monitor: str = "val_loss"
    min_delta: float = 0.0

    def __post_init__(self):
        _check_monitor("EarlyStopping", self.monitor)
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"EarlyStopping: patience must be a positive int, got {self.patience!r}")

    def init(self, shape: tuple[int, ...] = ()) -> EarlyStoppingState:
        """The state before the first epoch, for ``shape`` runs (``()``: one run)."""
        return EarlyStoppingState(_worst(self.monitor, shape), np.full(shape, -1), np.zeros(shape, np.int64),
                                  np.zeros(shape, bool))

    def update(self, state: EarlyStoppingState, value, epoch: int) -> EarlyStoppingState:
        """The state after ``epoch`` whose monitored number was ``value`` (one per run). Runs that
        have stopped keep their state."""
        value = np.asarray(value, np.float64)
        live = ~state.stopped
        better = live & _improved(self.monitor, self.min_delta, value, state.best)
        bad = np.where(better, 0, np.where(live, state.bad_epochs + 1, state.bad_epochs))
        return EarlyStoppingState(np.where(better, value, state.best), np.where(better, epoch, state.best_epoch),
                                  bad, state.stopped | (bad >= self.patience))


class PlateauState(NamedTuple):
    """best: the best monitored value so far; bad_epochs: epochs since the last improvement or
    reduction; scale: the factor applied to the initial learning rate (1 until the first plateau)."""

    best: np.ndarray
    bad_epochs: np.ndarray
    scale: np.ndarray


@dataclasses.dataclass(frozen=True)
class ReduceOnPlateau:
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs (the notes' "train until the validation error flattens,
    then divide the step size"), never below ``min_learning_rate``. The optimizer's learning rate
    must be injectable and constant (:func:`jaxnets.optim.optimizer` with a float)."""

    factor: float = 0.1
    patience: int = 3
    min_delta: float = 0.0
    min_learning_rate: float = 0.0
    monitor: str = "val_loss"

    def __post_init__(self):
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"ReduceOnPlateau: factor must be in (0, 1), got {self.factor}")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"ReduceOnPlateau: patience must be a positive int, got {self.patience!r}")
        _check_monitor("ReduceOnPlateau", self.monitor)

    def init(self, shape: tuple[int, ...] = ()) -> PlateauState:
        """The state before the first epoch, for ``shape`` runs (``()``: one run)."""
        return PlateauState(_worst(self.monitor, shape), np.zeros(shape, np.int64), np.ones(shape))

    def update(self, state: PlateauState, value) -> PlateauState:
        """The state after an epoch whose monitored number was ``value`` (one per run)."""
        value = np.asarray(value, np.float64)
        better = _improved(self.monitor, self.min_delta, value, state.best)
        bad = np.where(better, 0, state.bad_epochs + 1)
        reduce = bad >= self.patience
        return PlateauState(np.where(better, value, state.best), np.where(reduce, 0, bad),
                            np.where(reduce, state.scale * self.factor, state.scale))

    def learning_rate(self, state: PlateauState, initial) -> np.ndarray:
        """The learning rate for the next epoch: ``max(initial × scale, min_learning_rate)``."""
        return np.maximum(np.asarray(initial, np.float64) * state.scale, self.min_learning_rate)
