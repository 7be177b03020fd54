"""The regularization lesson: its pieces against hand-computed values (the weight statistics and their bias
mask, the per-run dropout layer against nn.Dropout, where the model drops, the split, the paired comparison
and the verdict rule), and the quick run of ``experiments all --quick`` (schema, sourced claims, figures,
report; quick verdicts never contradict the full run's)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import common
from experiments import regularization as lesson
from jaxnets import data, nn
from jaxnets.seeds import init_runs, seed_keys

# The full run's verdicts (python -m experiments regularization, 2026-12-01), in the order of judge().
FULL_VERDICTS = [True, True, False, False, False, True, True, True, False, False, False, False]


def test_weight_magnitudes_leave_the_biases_out():
    params = {"hidden": {"w": jnp.array([[[0.5, -2e-4]], [[1e-5, 3.0]]]), "b": jnp.array([[9.0], [9.0]])},
              "output": {"w": jnp.array([[-0.25], [0.0]]), "b": jnp.array([[-9.0], [9.0]])}}  # 2 runs
    magnitudes = lesson.weight_magnitudes(params)
    assert magnitudes.shape == (2, 3)  # 2 + 1 weights per run; the biases of 9 are not there
    np.testing.assert_allclose(np.sort(magnitudes, axis=1), [[2e-4, 0.25, 0.5], [0.0, 1e-5, 3.0]], rtol=1e-6)
    stats = lesson.weight_statistics(magnitudes, tolerance=1e-3)
    np.testing.assert_allclose(stats["zero_fraction"], [1 / 3, 2 / 3])
    np.testing.assert_allclose(stats["median_abs"], [0.25, 1e-5], rtol=1e-6)


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_run_dropout_draws_nn_dropouts_mask_and_is_the_identity_in_evaluation(rate):
    x = jnp.arange(1.0, 401.0).reshape(4, 100)
    key = jax.random.PRNGKey(3)
    layer = lesson.RunDropout(rate)
    params, state = layer.init(key, x)
    assert params == {} and float(state["rate"]) == pytest.approx(rate)
    ours, _ = layer.apply(params, state, x, key=key, train=True)
    theirs, _ = nn.Dropout(rate).apply({}, {}, x, key=key, train=True)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    kept = np.asarray(ours) != 0
    np.testing.assert_allclose(np.asarray(ours)[kept], np.asarray(x)[kept] / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(layer.apply(params, state, x, key=key)[0]), np.asarray(x))


def test_each_run_drops_at_the_rate_in_its_own_state():
    model = lesson.mlp(2000)
    x = jnp.ones((1, 2, 2, 1))
    params, state = init_runs(model, seed_keys([0, 1, 2]), x)
    state = lesson.with_dropout_rates(state, [0.0, 0.25, 0.75])
    hidden = jax.vmap(lambda s: model["dropout"].apply({}, s, jnp.ones((1, 2000)), key=jax.random.PRNGKey(0),
                                                       train=True)[0])(state["dropout"])  # (3 runs, 1, 2000)
    dropped = np.mean(np.asarray(hidden) == 0, axis=(1, 2))
    np.testing.assert_allclose(dropped, [0.0, 0.25, 0.75], atol=0.04)
    with pytest.raises(ValueError, match="rates in"):
        lesson.with_dropout_rates(state, [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="expected 3 rates"):
        lesson.with_dropout_rates(state, [0.5])


def test_the_model_drops_out_on_its_fully_connected_hidden_layer_only():
    model = lesson.mlp(16, num_classes=10)
    names = [name for name, _ in model.layers]
    assert names == ["flatten", "hidden", "relu", "dropout", "output"]
    kinds = [type(layer) for _, layer in model.layers]
    assert kinds == [nn.Flatten, nn.Dense, nn.Activation, lesson.RunDropout, nn.Dense]
    # not on the input pixels (before the first dense layer), not on the logits (after the last)
    assert [i for i, k in enumerate(kinds) if k is lesson.RunDropout] == [names.index("relu") + 1]
    assert model.output_shape((5, 28, 28, 1)) == (5, 10)


def test_split_is_disjoint_and_keeps_the_ratio_on_a_small_set():
    x = np.arange(30, dtype=np.float32).reshape(30, 1, 1, 1)
    dataset = data.Dataset(x, np.arange(30) % 3, x[:5], np.arange(5) % 3, "tiny", 3)
    splits = lesson.split(dataset, lesson.Config(train_examples=40, validation_examples=20))
    train, val = splits["train"][0].ravel(), splits["val"][0].ravel()
    assert (len(train), len(val)) == (20, 10)  # 40:20 scaled to the 30 images
    assert not set(train) & set(val)
    assert len(splits["test"][0]) == 5


def test_paired_difference_and_the_verdict_rules():
    difference, noise = lesson.paired_difference([0.81, 0.82, 0.83], [0.80, 0.80, 0.80])
    assert difference == pytest.approx(0.02)
    assert noise == pytest.approx(0.01 / np.sqrt(3))  # std of (0.01, 0.02, 0.03) with ddof 1 is 0.01
    full, quick = 2 * noise + lesson.MARGIN, 3 * noise + lesson.MARGIN  # the thresholds
    assert lesson.judged(quick + 1e-4, noise, quick=True) is True
    assert lesson.judged(-quick - 1e-4, noise, quick=True) is False
    assert lesson.judged(quick - 1e-4, noise, quick=True) is None  # clear at 2 standard errors, not at 3
    assert lesson.judged(quick - 1e-4, noise, quick=False) is True
    assert lesson.judged(full - 1e-4, noise, quick=False) is False
    assert lesson.judged_at_least(-full + 1e-4, noise, quick=False) is True  # worse, but within the noise
    assert lesson.judged_at_least(-full - 1e-4, noise, quick=False) is False
    assert lesson.judged_at_least(-full - 1e-4, noise, quick=True) is None


def test_the_free_strength_is_the_strongest_within_the_accuracy_cost():
    rows = [{"penalty": "l1", "strength": s, "val_accuracy": [v]}
            for s, v in ((1e-4, 0.80), (1e-3, 0.795), (1e-2, 0.7))]
    assert lesson.free_strength(rows, "l1", 0.80)["strength"] == 1e-3  # 0.005 below, within 0.01
    assert lesson.free_strength(rows, "l1", 0.83) is None
    assert lesson.free_strength(rows, "l2", 0.80) is None


@pytest.fixture(scope="module")
def quick(quick_results):
    out, run = quick_results
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    return json.loads((out / "regularization" / "summary.json").read_text()), out / "regularization"


def test_the_quick_run_writes_a_valid_summary_with_sourced_claims(quick):
    summary, out = quick
    common.validate(summary, lesson.SUMMARY_SCHEMA)
    assert summary["config"]["quick"] is True and len(summary["claims"]) == len(FULL_VERDICTS)
    for claim, full in zip(summary["claims"], FULL_VERDICTS):
        assert any(deck in claim["source"] for deck in common.DECKS.values()) and "slide '" in claim["source"]
        assert claim["held"] in (full, None), claim  # the full run's verdict, or none
    text = (out / "report.md").read_text()
    assert "## What the numbers say" in text and all(c["claim"] in text for c in summary["claims"])
    assert "## Why a claim may not hold here" in text
    for name in ("penalties.png", "first_layer_weights.png", "penalty_timing.png", "dropout.png",
                 "early_stopping.png", "augmentation.png", "width_sweep.png"):
        assert (out / name).stat().st_size > 5_000
        assert f"]({name})" in text


def test_the_quick_run_shows_l1_zeroing_and_l2_shrinking(quick):
    summary, _ = quick
    rows = summary["penalties"]["settings"]
    none = rows[0]
    assert none["penalty"] == "none" and summary["penalties"]["tolerance"] == lesson.ZERO_TOLERANCE
    strongest = {p: max((r for r in rows if r["penalty"] == p), key=lambda r: r["strength"]) for p in ("l1", "l2")}
    assert np.mean(strongest["l1"]["zero_fraction"]) > 5 * np.mean(none["zero_fraction"])
    assert np.mean(strongest["l2"]["median_abs"]) < np.mean(none["median_abs"])
    assert np.mean(strongest["l2"]["zero_fraction"]) < np.mean(strongest["l1"]["zero_fraction"])
    gaps = {r["dropout"]: np.mean(r["train_accuracy"]) - np.mean(r["test_accuracy"])
            for r in summary["dropout"]["rates"]}
    assert gaps[0.5] < gaps[0.0]
