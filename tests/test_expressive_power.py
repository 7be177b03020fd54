"""The expressive-power lesson: its hand-built networks against hand-computed values, and the quick run
of ``experiments all --quick`` (shared with the other experiment tests): schema, claims with sources,
figures, report."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import common
from experiments import expressive_power as lesson
from jaxnets import inspect


def test_the_threshold_network_computes_xor():
    _, _, outputs = lesson.threshold_xor()
    assert outputs == [a ^ b for a, b in lesson.XOR_INPUTS.astype(int)] == [0, 1, 1, 0]


def test_the_bump_from_two_thresholds_is_exact_endpoints_included():
    x = jnp.array([[0.0], [0.999], [1.0], [1.5], [2.0], [2.001], [3.0]])
    np.testing.assert_array_equal(np.asarray(lesson.bump_threshold(x))[:, 0], [0, 0, 1, 1, 1, 0, 0])


@pytest.mark.parametrize("slope", [1.0, 4.0, 50.0])
def test_the_relu_bump_is_the_indicator_with_ramps_of_width_one_over_the_slope(slope):
    x = jnp.array([[1.0 - 1 / slope - 0.01], [1.0 - 0.5 / slope], [1.5], [2.0 + 0.5 / slope], [2.0 + 1 / slope + 0.01]])
    np.testing.assert_allclose(np.asarray(lesson.bump_relu(x, slope))[:, 0], [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-5)
    # two triangles of base 1/slope and height 1: the L1 error is 1/slope
    study = lesson.bump_study()
    for row in study["relu"]:
        assert row["l1_error"] == pytest.approx(1 / row["slope"], rel=2e-2)
    assert study["threshold_max_error"] == 0.0


def test_a_deep_linear_net_is_one_linear_layer():
    assert lesson.deep_linear_equals_product(jax.random.PRNGKey(3)) <= 1e-5


def test_the_depth_and_width_nets_have_equal_parameter_counts():
    deep, wide, deep_params, wide_params = lesson.equal_parameter_models(24)
    # 3 hidden layers of 24: (2·24 + 24) + 2·(24·24 + 24) + (24·2 + 2); one hidden layer of w: 2w + w + 2w + 2
    assert deep_params == 72 + 1200 + 50 == 1322
    assert wide_params == 5 * 264 + 2 == 1322
    assert sum(inspect.count_params(wide.init(jax.random.PRNGKey(0), (1, 2))[0])) == wide_params


@pytest.fixture(scope="module")
def quick(quick_results):
    out, run = quick_results
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    return out / "expressive_power"


def test_the_quick_run_writes_a_valid_summary_with_sourced_claims(quick):
    summary = json.loads((quick / "summary.json").read_text())
    common.validate(summary, lesson.SUMMARY_SCHEMA)
    assert summary["config"]["quick"] is True and len(summary["claims"]) == 10
    for claim in summary["claims"]:
        assert any(deck in claim["source"] for deck in common.DECKS.values()) and "slide '" in claim["source"]
        assert claim["held"] is not False, claim  # the quick run gives the full run's verdicts, or none
    for name in ("decision_surfaces.png", "width_sweep.png", "bump.png", "depth_vs_width.png"):
        assert (quick / name).stat().st_size > 10_000
    text = (quick / "report.md").read_text()
    assert "## What the numbers say" in text and text.count("**held**") >= 9


def test_the_quick_run_shows_the_perceptron_fail_on_xor_and_the_mlp_succeed(quick):
    summary = json.loads((quick / "summary.json").read_text())
    assert max(summary["xor"]["perceptron"]) <= 0.75 and min(summary["xor"]["mlp_1_hidden"]) == 1.0
    assert np.mean(summary["surfaces"]["circles"]["1"]) < 0.7 < 0.95 < np.mean(summary["surfaces"]["circles"]["3"])
