"""The optimisation lesson: its measuring pieces against hand-computed values (paths on the bowl in closed
form, AdaGrad's accumulator, the "loss decreases" rule, gradient noise), and the quick run of
``experiments all --quick``: schema, sourced claims, figures, report, and verdicts that never contradict
the full run's."""

import json
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import common
from experiments import optimizers as lesson
from jaxnets import models, optim

# The full run's verdicts (python -m experiments optimizers, 2026-12-01), in the order of summary["claims"].
FULL_VERDICTS = [False, True, True, True, True, True, True, True, True, True, True, False, True, True, False]


@pytest.mark.parametrize("rate", [0.005, 0.0195, 0.021])
def test_gradient_descent_on_the_bowl_follows_its_closed_form(rate):
    a, b = lesson.BOWL_CURVATURES
    path = lesson.descend(optax.sgd(rate), steps=30)
    t = np.arange(31)
    w1, w2 = lesson.BOWL_START
    np.testing.assert_allclose(path[:, 0], w1 * (1 - rate * a) ** t, rtol=1e-4)
    np.testing.assert_allclose(path[:, 1], w2 * (1 - rate * b) ** t, rtol=1e-3, atol=1e-6)


def test_path_numbers_count_sign_changes_and_the_step_after_which_the_loss_stays_low():
    start = 0.5 * (1.0 * 4.0 ** 2 + 100.0 * 1.0 ** 2)
    low = np.sqrt(2e-4 * start / 100.0)  # w₂ with a loss of 10⁻⁴ · start
    path = np.array([[4.0, 1.0], [0.0, -low], [0.0, 0.5], [0.0, low], [0.0, -low]])
    numbers = lesson.path_numbers(path)
    assert numbers["w2_sign_changes"] == 3  # + → − → + (+) → −
    assert numbers["steps_to_1e-3"] == 3  # below at step 1, above again at step 2, below for good from step 3
    assert not numbers["diverged"]
    assert lesson.path_numbers(path[:3])["steps_to_1e-3"] is None
    assert lesson.path_numbers(np.array([[4.0, 1.0], [4.0, 3.0]]))["diverged"]


def test_the_rule_for_a_decreasing_training_loss():
    result = SimpleNamespace(history={"train_loss": np.array([[2.0, 2.0, 1.0, np.nan],
                                                               [1.5, 2.1, 0.9, np.nan],
                                                               [1.0, 1.9, 1.1, np.nan]])},
                             diverged_epoch=np.array([-1, -1, -1, 2]))
    # falls every epoch and ends below the start: yes; rises once: no; ends above the initial loss: no; NaN: no
    np.testing.assert_array_equal(lesson.decreased(result, np.array([2.3, 2.3, 1.0, 2.3])), [True, False, False, False])


def test_adagrads_effective_rate_is_the_rate_over_the_root_of_its_accumulator():
    params = {"dense2": {"w": jnp.array([[1.0, -2.0]]), "b": jnp.zeros(2)}}
    grads = {"dense2": {"w": jnp.array([[3.0, 0.5]]), "b": jnp.zeros(2)}}
    optimizer = optim.optimizer("adagrad", 0.1)
    _, state = optimizer.update(grads, optimizer.init(params), params)
    # Optax starts the accumulator at 0.1: after one step it holds 0.1 + g²
    expected = np.median(0.1 / np.sqrt(0.1 + np.array([9.0, 0.25])))
    assert lesson.effective_rate("adagrad", state, 0.1, "dense2") == pytest.approx(expected, rel=1e-5)


def test_progress_ratio_compares_the_two_halves():
    assert lesson.progress_ratio([4.0, 3.0, 2.0, 1.5, 1.25, 1.0]) == pytest.approx((2.0 - 1.0) / (4.0 - 2.0))


def test_a_batch_of_every_example_points_exactly_along_the_full_gradient():
    rng = np.random.default_rng(0)
    task = SimpleNamespace(model=models.mlp([8, 3]), x=rng.standard_normal((40, 5)).astype(np.float32),
                           y=rng.integers(0, 3, 40).astype(np.int32))
    noise = lesson.gradient_noise_study(task, seed=0, batches=(1, 40), draws=8)
    assert noise["40"][0] == pytest.approx(1.0, abs=1e-5) and noise["40"][1] < 1e-5
    assert noise["1"][0] < 0.99


def test_the_grids_reach_rates_that_fail_and_the_bowl_is_ill_conditioned():
    assert all(len(rates) == 7 and list(rates) == sorted(rates) for rates in lesson.GRIDS.values())
    assert set(lesson.GRIDS) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adadelta"}
    a, b = lesson.BOWL_CURVATURES
    assert b / a >= 100


@pytest.fixture(scope="module")
def quick(quick_results):
    out, run = quick_results
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    return json.loads((out / "optimizers" / "summary.json").read_text()), out / "optimizers"


def test_the_quick_run_writes_a_valid_summary_with_sourced_claims(quick):
    summary, out = quick
    common.validate(summary, lesson.SUMMARY_SCHEMA)
    assert summary["config"]["quick"] is True and len(summary["claims"]) == len(FULL_VERDICTS)
    for claim in summary["claims"]:
        assert any(deck in claim["source"] for deck in common.DECKS.values()) and "slide '" in claim["source"]
    for name in ("curves.png", "lr_sweep.png", "bowl.png", "adagrad.png", "annealing.png", "batch_size.png",
                 "scaling.png"):
        assert (out / name).stat().st_size > 10_000
    text = (out / "report.md").read_text()
    assert "## What the numbers say" in text and "## The elliptical bowl" in text
    assert "## Where this setting differs from the notes'" in text


def test_quick_verdicts_never_contradict_the_full_run(quick):
    summary, _ = quick
    for claim, full in zip(summary["claims"], FULL_VERDICTS):
        assert claim["held"] is None or claim["held"] == full, claim


def test_the_quick_run_records_failing_rates_instead_of_crashing(quick):
    summary, _ = quick
    grid = summary["grid"]
    assert not all(grid["sgd"]["rows"][-1]["decreased"])  # SGD at rate 10 does not train
    assert all(all(row["decreased"]) for row in grid["sgd"]["rows"][:2])  # 0.01 and 0.03 do
    for name, g in grid.items():
        assert g["best_learning_rate"] in lesson.GRIDS[name] and len(g["test_accuracy"]) == summary["settings"]["seeds"]
