"""The gradcheck experiment, in a config smaller than --quick: it writes a summary that matches its
schema, plots and a report, and its agreement claims hold (the timing claims are only reported:
they depend on the machine)."""

import json

import pytest

from experiments import common
from experiments import gradcheck as experiment


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradcheck")
    config = experiment.Config(quick=True, out=out, activations=("tanh", "relu"), depths=(1,), width=6,
                               epsilons=(1e-1, 1e-2, 1e-3, 1e-5, 1e-7, 1e-10, 1e-12), max_backprop_params=3_000,
                               max_fd_params=700, cost_depths=(1, 2, 3), repeats=1, cost_batch=16)
    result = experiment.run(config)
    return out, result


def test_summary_matches_its_schema_and_the_issue(summary):
    out, result = summary
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == result
    common.validate(on_disk, experiment.SUMMARY_SCHEMA)
    for case in on_disk["cases"]:
        for field in ("model", "activation", "dtype", "num_params", "max_rel_error", "fd_seconds", "backprop_seconds"):
            assert field in case
    assert {c["model"] for c in on_disk["cases"]} == {"mlp-1x6", "cnn"}
    assert {c["dtype"] for c in on_disk["cases"]} == {"float32", "float64"}
    for name in ("eps_sweep.png", "time_vs_params.png", "time_vs_depth.png", "report.md"):
        assert (out / name).stat().st_size > 0
    assert "## What the numbers say" in (out / "report.md").read_text()
    assert experiment.headline(on_disk).startswith("float64 smooth max rel. error")


def test_agreement_claims_hold(summary):
    _, result = summary
    held = {c["claim"]: c["held"] for c in result["claims"]}
    for claim, ok in held.items():
        if "backprop (the delta rule) equals" in claim or "≤ 1e-7 in float64" in claim or "U-curve" in claim:
            assert ok, claim
    for case in result["cases"]:
        if case["dtype"] == "float64":
            assert case["max_rel_error"] < 1e-7, case
            if case["rel_error_backprop_vs_grad"] is not None:
                assert case["rel_error_backprop_vs_grad"] < 1e-13
        else:
            assert case["best_rel_error"] < 1e-2, case


def test_eps_sweep_has_its_minimum_inside_the_range(summary):
    _, result = summary
    f64 = [r for r in result["eps_sweep"] if r["dtype"] == "float64"]
    errors = [r["rel_error"] for r in f64]
    best = min(range(len(errors)), key=errors.__getitem__)
    assert f64[best]["eps"] in (1e-5, 1e-7) and errors[0] > 100 * errors[best] and errors[-1] > 100 * errors[best]


def test_quick_mode_leaves_the_timing_claims_unjudged_and_every_claim_names_its_source(summary):
    _, result = summary
    timing = [c for c in result["claims"] if "cost" in c["claim"]]
    assert timing and all(c["held"] is None for c in timing)  # the full run's sizes are needed to judge them
    assert all(c["source"] for c in result["claims"])
    assert any("Toronto" in c["source"] or "Fergus" in c["source"] for c in result["claims"])
