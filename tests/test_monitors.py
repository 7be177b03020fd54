"""Early stopping and plateau annealing as pure state: frozen configs, NamedTuple states advanced by
``update`` (one run or a run axis), hand-computed sequences, and bad configs rejected."""

import dataclasses

import numpy as np
import pytest

import jaxnets as jn
from jaxnets.monitors import EarlyStopping, EarlyStoppingState, PlateauState, ReduceOnPlateau


def test_early_stopping_follows_a_hand_computed_sequence():
    stopping = EarlyStopping(patience=2, min_delta=0.01)
    state = stopping.init()
    assert isinstance(state, EarlyStoppingState) and state.best == np.inf and state.best_epoch == -1
    seen = []
    for epoch, loss in enumerate([1.0, 0.8, 0.795, 0.9, 0.7]):
        state = stopping.update(state, loss, epoch)
        seen.append((float(state.best), int(state.best_epoch), int(state.bad_epochs), bool(state.stopped)))
    # 0.795 improves by less than min_delta: a bad epoch; after 0.9 (a second one) it stops and stays stopped
    assert seen == [(1.0, 0, 0, False), (0.8, 1, 0, False), (0.8, 1, 1, False), (0.8, 1, 2, True),
                    (0.8, 1, 2, True)]


def test_early_stopping_on_accuracy_wants_higher_values_and_ignores_nan():
    stopping = EarlyStopping(patience=1, monitor="val_accuracy")
    state = stopping.update(stopping.init(), 0.5, 0)
    state = stopping.update(state, np.nan, 1)
    assert (float(state.best), int(state.best_epoch), bool(state.stopped)) == (0.5, 0, True)


def test_each_run_decides_for_itself():
    stopping = EarlyStopping(patience=1)
    state = stopping.init((3,))
    state = stopping.update(state, [1.0, 1.0, 1.0], 0)
    state = stopping.update(state, [0.5, 2.0, 0.9], 1)
    assert state.stopped.tolist() == [False, True, False] and state.best_epoch.tolist() == [1, 0, 1]
    state = stopping.update(state, [0.1, 0.1, 0.1], 2)  # the stopped run keeps its state
    assert state.best.tolist() == [0.1, 1.0, 0.1] and state.best_epoch.tolist() == [2, 0, 2]


def test_update_returns_a_new_state_and_changes_nothing():
    stopping = EarlyStopping(patience=3)
    before = stopping.init((2,))
    after = stopping.update(before, [1.0, 2.0], 0)
    assert before.best.tolist() == [np.inf, np.inf] and after.best.tolist() == [1.0, 2.0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        stopping.patience = 4
    assert hash(stopping) == hash(EarlyStopping(patience=3))


def test_reduce_on_plateau_follows_a_hand_computed_sequence():
    plateau = ReduceOnPlateau(factor=0.5, patience=2)
    state = plateau.init()
    assert isinstance(state, PlateauState)
    rates = []
    for loss in [1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.85]:
        state = plateau.update(state, loss)
        rates.append(float(plateau.learning_rate(state, 1.0)))
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_reduce_on_plateau_stops_at_the_minimum_rate_and_per_run():
    plateau = ReduceOnPlateau(factor=0.1, patience=1, min_learning_rate=0.05)
    state = plateau.init((2,))
    for loss in ([1.0, 1.0], [1.0, 0.5], [1.0, 0.4]):
        state = plateau.update(state, loss)
    np.testing.assert_allclose(plateau.learning_rate(state, [1.0, 2.0]), [0.05, 2.0])


@pytest.mark.parametrize("bad, match", [
    (lambda: ReduceOnPlateau(factor=2.0), r"factor must be in \(0, 1\)"),
    (lambda: ReduceOnPlateau(patience=0), "patience must be a positive int"),
    (lambda: EarlyStopping(patience=0), "patience must be a positive int"),
    (lambda: EarlyStopping(monitor="val_los"), "unknown monitor 'val_los'; known monitors: val_loss, val_accuracy"),
])
def test_bad_configs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_the_top_level_names_are_the_monitors():
    assert jn.EarlyStopping is EarlyStopping and jn.ReduceOnPlateau is ReduceOnPlateau
