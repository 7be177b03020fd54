"""The transfer-learning lesson: the class split and relabelling, balanced nested subsets, which layers each
regime trains (one epoch, params compared before and after), the new head, epochs to target, the verdict
rules, and the quick run of ``experiments all --quick`` (schema, sourced claims, the full run's verdicts or
none, figures, report)."""

import json

import jax
import numpy as np
import pytest

from experiments import common
from experiments import transfer as lesson
from jaxnets.seeds import fit_seeds, init_runs, seed_keys, unstack_tree

# The full run's verdicts (python -m experiments transfer, 2026-12-01; see the module docstring), claim by claim.
FULL_VERDICTS = [False, False, False, False]


def test_select_classes_keeps_the_classes_and_renumbers_them_from_zero():
    y = np.array([5, 0, 9, 7, 3, 5, 6, 8])
    x = np.arange(8) * 10
    kept_x, labels = lesson.select_classes(x, y, lesson.TARGET_CLASSES)
    assert kept_x.tolist() == [0, 20, 30, 50, 60, 70]  # the examples of classes 5–9, in their order
    assert labels.tolist() == [0, 4, 2, 0, 1, 3] and labels.dtype == np.int32
    _, source = lesson.select_classes(x, y, lesson.SOURCE_CLASSES)
    assert source.tolist() == [0, 3]


def test_balanced_order_is_a_permutation_whose_prefixes_are_balanced():
    labels = np.repeat([0, 1, 2], [4, 4, 6])  # class 2 has two more than the others
    order = lesson.balanced_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(14))
    for n in (3, 6, 9, 12):  # multiples of the 3 classes while none has run out: n / 3 of each
        assert np.bincount(labels[order[:n]], minlength=3).tolist() == [n // 3] * 3
    assert labels[order[12:]].tolist() == [2, 2]  # what is left over comes last
    assert not np.array_equal(order, lesson.balanced_order(labels, seed=4))


def test_target_splits_hold_out_a_balanced_validation_set_and_nest_the_subsets():
    labels = np.repeat(np.arange(5), 40).astype(np.int32)
    x = np.arange(200)
    (x_val, y_val), (x_pool, y_pool) = lesson.target_splits(x, labels, validation=50, seed=0)
    assert np.bincount(y_val).tolist() == [10] * 5 and len(x_pool) == 150
    assert not set(x_val.tolist()) & set(x_pool.tolist())  # validation images never train
    assert np.bincount(y_pool[:20], minlength=5).tolist() == [4] * 5  # a training subset of 20: 4 per class
    np.testing.assert_array_equal(labels[x_pool], y_pool)


def test_size_plan_reads_0_as_all_and_merges_sizes_that_coincide():
    assert lesson.size_plan([50, 500, 0], [40, 25, 8], available=3000) == {50: 40, 500: 25, 3000: 8}
    assert lesson.size_plan([100, 5000, 0], [60, 30, 10], available=700) == {100: 60, 700: 30}


@pytest.mark.parametrize("n, expected", [(50, 5), (100, 10), (500, 50), (1000, 64), (28000, 64), (5, 1)])
def test_batch_size(n, expected):
    assert lesson.batch_size(n) == expected


def test_patience_is_a_quarter_of_the_budget_and_at_least_3():
    assert [lesson.patience(e) for e in (8, 25, 40, 60)] == [3, 6, 10, 15]


@pytest.fixture(scope="module")
def transferred():
    """Two seeds of the lesson's network on 8×8 images with their 5-way heads replaced."""
    seeds = [0, 1]
    model = lesson.cnn()
    params, state = init_runs(model, seed_keys(seeds), (1, 8, 8, 1))
    new_model, new_params, new_state = lesson.new_head(model, params, state, seeds, (1, 8, 8, 1))
    return params, new_model, new_params, new_state, seeds


def test_new_head_keeps_each_seeds_body_and_draws_a_new_output_layer(transferred):
    params, new_model, new_params, _, _ = transferred
    assert new_model.output_shape((3, 8, 8, 1)) == (3, 5)
    for name in ("conv1", "conv2", "dense1"):
        for leaf, new_leaf in zip(jax.tree.leaves(params[name]), jax.tree.leaves(new_params[name])):
            np.testing.assert_array_equal(leaf, new_leaf)
    assert new_params["output"]["w"].shape == params["output"]["w"].shape == (2, 64, 5)
    assert not np.array_equal(new_params["output"]["w"], params["output"]["w"])
    assert not np.array_equal(new_params["output"]["w"][0], new_params["output"]["w"][1])  # one head per seed


@pytest.mark.parametrize("regime, trained", [("head_only", {"output"}), ("frozen_convs", {"dense1", "output"}),
                                             ("fine_tune", {"conv1", "conv2", "dense1", "output"})])
def test_each_regime_trains_exactly_its_layers_with_stacked_params(transferred, regime, trained):
    _, model, params, state, seeds = transferred
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 8, 8, 1), np.float32), rng.integers(0, 5, 20).astype(np.int32)
    result = fit_seeds(model, params, state, (x, y), loss="cross_entropy",
                       optimizer=lesson.regime_optimizer(regime, params), epochs=1, batch_size=10,
                       keys=seed_keys(seeds), progress=False)
    for name in ("conv1", "conv2", "dense1", "output"):
        for path, before in jax.tree_util.tree_leaves_with_path(params[name]):
            after = result.params[name][path[0].key]
            for run in range(len(seeds)):
                changed = not np.array_equal(unstack_tree(before, run), unstack_tree(after, run))
                assert changed == (name in trained), (regime, name, path, run)


def test_epochs_to_target_interpolates_each_seed_and_ignores_epochs_after_stopping():
    history = {"val_accuracy": [[0.5, 0.6, 0.5], [0.8, 0.7, 0.6], [0.9, 0.95, np.nan]]}  # (epochs, seeds)
    reached = lesson.epochs_to_target({"history": history}, 0.85)
    # seed 0: error 0.2 → 0.1 crosses 0.15 halfway through the third epoch; seed 1: 0.3 → 0.05, 0.15 of 0.25
    assert reached[0] == pytest.approx(2.5) and reached[1] == pytest.approx(2.6) and reached[2] is None
    assert lesson.epochs_to_target({"history": {"val_accuracy": [[0.9]]}}, 0.85) == [1.0]


def test_difference_and_verdicts():
    d, noise = lesson.difference([0.9, 0.8], [0.6, 0.6])
    assert d == pytest.approx(0.25) and noise == pytest.approx(np.sqrt(0.0025 / 2))
    assert lesson.verdict(0.25, 0.035, 0.005, quick=False) is True
    assert lesson.verdict(-0.25, 0.035, 0.005, quick=True) is False
    assert lesson.verdict(0.05, 0.035, 0.005, quick=True) is None  # 0.05 < 2 × 0.035 + 0.005: noise
    assert lesson.verdict(0.05, 0.035, 0.005, quick=False) is False
    assert lesson.all_verdicts([True, True]) is True
    assert lesson.all_verdicts([True, None]) is None and lesson.all_verdicts([None, False]) is False


def synthetic_summary(val: dict, epochs: dict, sizes=(50, 500, 5000)) -> dict:
    """A summary with given validation accuracies {(regime, size): per seed} and epochs to target."""
    results = [{"regime": r, "size": s, "val_accuracy": val.get((r, s), [0.5, 0.5, 0.5]),
                "epochs_to_target": epochs.get((r, s), [1.0, 1.0, 1.0])} for r in lesson.REGIMES for s in sizes]
    return {"sizes": list(sizes), "results": results, "targets": {str(s): 0.9 for s in sizes}}


def test_judge_follows_the_slides_table_when_the_numbers_do():
    val = {("head_only", 50): [0.80, 0.81, 0.80], ("frozen_convs", 50): [0.78, 0.78, 0.79],
           ("fine_tune", 50): [0.70, 0.71, 0.70], ("scratch", 50): [0.60, 0.61, 0.60],
           ("frozen_convs", 500): [0.90, 0.91, 0.90], ("fine_tune", 500): [0.85, 0.85, 0.86],
           ("head_only", 500): [0.84, 0.84, 0.84], ("fine_tune", 5000): [0.97, 0.97, 0.97],
           ("head_only", 5000): [0.90, 0.90, 0.91]}
    epochs = {("fine_tune", 50): [3.0, 3.5, 3.2], ("scratch", 50): [9.0, 10.0, 9.5],
              ("fine_tune", 500): [2.0, 2.0, 2.5], ("scratch", 500): [5.0, 4.5, 5.0]}  # n=5000: all within epoch 1
    claims = lesson.judge(synthetic_summary(val, epochs), quick=False)
    assert [c["held"] for c in claims] == [True, True, True, True]
    assert "not resolved" in claims[0]["evidence"]
    for c in claims:
        assert any(deck in c["source"] for deck in common.DECKS.values()) and "slide '" in c["source"]


def test_judge_leaves_noise_unjudged_in_quick_mode_and_counts_it_against_the_claim_in_the_full_run():
    val = {("head_only", 50): [0.80, 0.70, 0.75], ("fine_tune", 50): [0.76, 0.72, 0.74],  # within noise
           ("fine_tune", 5000): [0.97, 0.97, 0.97], ("head_only", 5000): [0.90, 0.90, 0.91]}
    epochs = {("fine_tune", 50): [1.0, 1.0, 1.0], ("scratch", 50): [1.0, 1.0, 1.0]}  # nothing resolves
    quick = lesson.judge(synthetic_summary(val, epochs), quick=True)
    full = lesson.judge(synthetic_summary(val, epochs), quick=False)
    assert quick[0]["held"] is None and full[0]["held"] is None  # epochs cannot tell: unjudged in both modes
    assert quick[1]["held"] is None and full[1]["held"] is False


# ------------------------------------------------------------------------------------------ the quick run


@pytest.fixture(scope="module")
def quick(quick_results):
    out, run = quick_results
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    return out / "transfer"


def test_the_quick_run_writes_a_valid_summary_with_sourced_claims(quick):
    summary = json.loads((quick / "summary.json").read_text())
    common.validate(summary, lesson.SUMMARY_SCHEMA)
    assert summary["config"]["quick"] is True and len(summary["sizes"]) == 3
    assert {(r["regime"], r["size"]) for r in summary["results"]} == {
        (regime, size) for regime in lesson.REGIMES for size in summary["sizes"]}
    assert len(summary["claims"]) == len(FULL_VERDICTS)
    for claim, full in zip(summary["claims"], FULL_VERDICTS):
        assert any(deck in claim["source"] for deck in common.DECKS.values()) and "slide '" in claim["source"]
        assert claim["held"] in (full, None), claim  # the quick run gives the full run's verdict, or none


def test_the_quick_run_learns_both_tasks(quick):
    summary = json.loads((quick / "summary.json").read_text())
    assert min(summary["pretraining"]["test_accuracy"]) > 0.8  # classes 0–4
    for row in summary["results"]:
        assert min(row["test_accuracy"]) > 0.4, row["regime"]  # classes 5–9; chance is 0.2
    fine_tune = [r for r in summary["results"] if r["regime"] == "fine_tune"]
    assert all(e is not None for r in fine_tune for e in r["epochs_to_target"])  # the target is reachable


def test_the_quick_run_writes_figures_and_a_report_with_the_claims(quick):
    summary = json.loads((quick / "summary.json").read_text())
    for name in ("accuracy_vs_size.png", "learning_curves.png"):
        assert (quick / name).stat().st_size > 10_000
    text = (quick / "report.md").read_text()
    assert "## What the numbers say" in text and "](accuracy_vs_size.png)" in text and "](learning_curves.png)" in text
    assert "## Why a claim may not hold here" in text
    for claim in summary["claims"]:
        assert claim["claim"] in text
    assert len((quick / "runs.csv").read_text().splitlines()) == 1 + 4 * 3 * summary["seeds"]
