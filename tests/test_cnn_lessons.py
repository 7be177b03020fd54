"""The convolution lesson: its worked examples against hand-computed values, LeNet's input scaling, the
epochs-to-target interpolation, and the quick run of ``experiments all --quick`` (schema, sourced claims,
figures, report; quick verdicts never contradict the full run's)."""

import json

import numpy as np
import pytest

from experiments import cnn_lessons as lesson
from experiments import common


def test_the_worked_examples_come_out_exactly():
    ex = lesson.examples_study()
    assert ex["bar_edges"] == [0, 3, 3, 0, 0, -3, -3, 0] and ex["bar_edges_all_rows_equal"]
    assert ex["bar_average_pool"] == [0.0, 0.5, 1.0, 0.5, 0.0]  # 2×2 blocks of the bar: means by hand
    assert ex["max_pool"] == [[6, 8], [3, 4]]
    assert ex["filter_6x6x3_output"] == [27, 27, 1]  # 32 + 1 − 6
    assert ex["fully_connected_weights"] == 200 * 200 * 400_000 == 16_000_000_000
    assert ex["locally_connected_weights"] == 400_000 * 10 * 10 == 40_000_000
    assert ex["shared_weights"] == 10 * 10 * 10 and ex["hidden_units"] == 400_000
    assert ex["blur_flat"] < 1e-5 and 0.1 < ex["blur_noise_ratio"] < 0.3  # 1/5 for independent noise
    assert ex["edge_flat"] < 1e-5 and ex["edge_step_columns"] == [3, 4]  # around the step between columns 5|6


def test_true_convolution_study():
    conv = lesson.convolution_study()
    assert conv["a_conv_b"] == [2, 1, 4, -1, 2] and conv["cross_correlation"] == [4, 0, 3, 0, 1]
    assert max(conv["commutativity_error"], conv["distributivity_error"], conv["numpy_error"]) < 1e-5


def test_lenet_inputs_are_padded_with_background_and_scaled_as_lecun():
    images = np.zeros((2, 28, 28, 1), np.float32)
    images[0, 10:12, 10:12] = 1.0
    scaled = lesson.lenet_inputs(images)
    assert scaled.shape == (2, 32, 32, 1)
    assert np.isclose(scaled[1], -0.1).all()  # all background: white
    assert np.isclose(scaled[0, 12:14, 12:14], 1.175).all()  # ink shifted by the 2-pixel border: black


@pytest.mark.parametrize("error, expected", [([0.5, 0.3, 0.2, 0.1], 2.5), ([0.2, 0.1], 1.0), ([0.6, 0.5], None)])
def test_epochs_to_target_interpolates_between_epochs(error, expected):
    assert lesson.epochs_to(np.asarray(error), 0.25) == expected


@pytest.fixture(scope="module")
def quick(quick_results):
    out, run = quick_results
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    return json.loads((out / "cnn_lessons" / "summary.json").read_text()), out / "cnn_lessons"


def test_the_quick_run_writes_a_valid_summary_with_sourced_claims(quick):
    summary, out = quick
    common.validate(summary, lesson.SUMMARY_SCHEMA)
    assert summary["config"]["quick"] is True and len(summary["claims"]) == 14
    for claim in summary["claims"]:
        assert any(deck in claim["source"] for deck in common.DECKS.values())
    exact = summary["claims"][:9]  # the operator, the worked examples, the receptive fields: no training
    assert all(c["held"] is True for c in exact), [c["claim"] for c in exact if not c["held"]]
    for name in ("worked_examples.png", "relu_vs_tanh.png", "filters.png"):
        assert (out / name).stat().st_size > 5_000
    assert "receptive field" in (out / "report.md").read_text()
    assert summary["inception"]["plain"]["params"] > 10 * summary["inception"]["inception"]["params"]
