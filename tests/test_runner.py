"""The experiment runner and the activation study on tiny configs: an interrupted study resumes to
the uninterrupted result without redoing finished runs, summary.json validates against its
schema, a failing run (or experiment) is reported and does not stop the others, finished
experiments are not recomputed unless forced, and unknown names list the known ones."""

import dataclasses
import json
import sys
import types
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from experiments import activations, common, runner

TINY = dict(quick=True, dataset="digits", seeds=2, epochs=3, train_size=300, activations=("relu", "sigmoid"),
            depths=(2,), width=16, validation_size=100, probe_size=64, batch_size=32, learning_rate=0.05)


def tiny(out: Path) -> activations.Config:
    return activations.Config(out=out, **TINY)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    return out, activations.run(tiny(out), progress=False)


def comparable(summary: dict) -> list[dict]:
    """The numbers of each run, without wall-clock times."""
    drop = ("seconds_per_epoch", "seconds_to_target")
    return [{k: v for k, v in r.items() if k not in drop} for r in summary["runs"]]


class Interrupted(BaseException):
    """Stands for Ctrl-C / a killed process (not an Exception, so the study does not catch it)."""


def test_interrupted_study_resumes_to_the_uninterrupted_result(baseline, tmp_path, monkeypatch):
    out = tmp_path / "study"
    real_fit_seeds = activations.fit_seeds
    calls = []

    def fit_seeds_interrupting(*args, description, **kwargs):
        def on_epoch_end(record):
            calls.append((description, record["epoch"]))
            if "sigmoid" in description and record["epoch"] == 1:
                raise Interrupted
        return real_fit_seeds(*args, description=description, on_epoch_end=on_epoch_end, **kwargs)

    monkeypatch.setattr(activations, "fit_seeds", fit_seeds_interrupting)
    with pytest.raises(Interrupted):
        activations.run(tiny(out), progress=False)
    assert not (out / "summary.json").exists()
    assert (out / "runs" / "relu-d2-suited.json").exists()
    calls.clear()

    def fit_seeds_recording(*args, description, **kwargs):
        return real_fit_seeds(*args, description=description,
                              on_epoch_end=lambda record: calls.append((description, record["epoch"])), **kwargs)

    monkeypatch.setattr(activations, "fit_seeds", fit_seeds_recording)
    resumed = activations.run(tiny(out), progress=False)
    # The finished relu run was not retrained; sigmoid went on after its last finished epoch (1).
    assert calls == [("[2/2] sigmoid-d2-suited", 2)]
    assert comparable(resumed) == comparable(baseline[1])
    assert not any((out / "checkpoints").rglob("step_*"))  # finished runs leave no checkpoints


def test_summary_validates_against_its_schema(baseline):
    out, summary = baseline
    on_disk = json.loads((out / "summary.json").read_text())
    jsonschema.validate(on_disk, activations.SUMMARY_SCHEMA)
    common.validate(on_disk, activations.SUMMARY_SCHEMA)
    assert [(r["activation"], r["depth"]) for r in on_disk["runs"]] == [("relu", 2), ("sigmoid", 2)]
    for r in on_disk["runs"]:
        assert r["seeds"] == [0, 1] and len(r["test_accuracy_per_seed"]) == 2
        assert len(r["grad_norm_per_layer_init"]) == 3  # two hidden layers and the output layer
        assert len(r["dead_fraction_per_layer_final"]) == 2
        assert r["test_accuracy_mean"] == pytest.approx(np.mean(r["test_accuracy_per_seed"]))
    broken = json.loads(json.dumps(on_disk))
    broken["runs"][1]["depth"] = "two"
    with pytest.raises(common.SchemaError, match=r"runs\[1\]\.depth"):
        common.validate(broken, activations.SUMMARY_SCHEMA)
    del broken["runs"][0]["test_accuracy_std"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, activations.SUMMARY_SCHEMA)


def test_outputs_of_the_study(baseline):
    out, summary = baseline
    for name in ("report.md", "history.csv", "units.csv", "learning_curves.png", "grad_norms.png", "units.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "ReLU is better than sigmoid" in report and "![grad_norms.png](grad_norms.png)" in report
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 * 3  # header + runs × seeds × epochs
    assert {c["held"] for c in summary["claims"]} <= {True, False, None}
    assert "relu d2 suited" in activations.format_table(summary)


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    real_train_run = activations.train_run

    def train_run_failing_for_relu(spec, *args, **kwargs):
        if spec["activation"] == "relu":
            raise RuntimeError("simulated failure")
        return real_train_run(spec, *args, **kwargs)

    monkeypatch.setattr(activations, "train_run", train_run_failing_for_relu)
    summary = activations.run(tiny(tmp_path), progress=False)
    assert [r["activation"] for r in summary["runs"]] == ["sigmoid"]
    assert summary["failed_runs"][0]["name"] == "relu-d2-suited"
    assert "simulated failure" in summary["failed_runs"][0]["error"]
    assert "relu-d2-suited" in (tmp_path / "report.md").read_text()
    assert "FAILED" in capsys.readouterr().out


# --------------------------------------------------------------------------------------- runner

@dataclasses.dataclass
class FakeConfig:
    quick: bool = False
    out: Path = Path("results/fake")
    seeds: int = 2


def fake_module(name: str, calls: list, fail: bool = False) -> types.ModuleType:
    module = types.ModuleType(name)
    module.Config = FakeConfig

    def run(config):
        calls.append((name, config.quick, config.seeds))
        if fail:
            raise RuntimeError(f"{name} broke")
        summary = {"config": common.config_dict(config), "value": 42}
        common.write_summary(config.out, summary)
        common.write_report(config.out, f"# {name}\n")
        return summary

    module.run = run
    module.headline = lambda summary: f"value {summary['value']}"
    return module


@pytest.fixture
def fakes(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "fake_good", fake_module("fake_good", calls))
    monkeypatch.setitem(sys.modules, "fake_bad", fake_module("fake_bad", calls, fail=True))
    monkeypatch.setattr(runner, "EXPERIMENTS", {"bad": "fake_bad", "missing": "no_such_module_here", "good": "fake_good"})
    return calls


def test_all_reports_failures_and_runs_the_others(fakes, tmp_path, capsys):
    assert runner.main(["all", "--quick", "--out", str(tmp_path)]) == 1
    assert fakes == [("fake_bad", True, 2), ("fake_good", True, 2)]
    index = (tmp_path / "REPORT.md").read_text()
    assert "[good](good/report.md) | ok" in index and "value 42" in index
    assert "| bad | failed" in index and "fake_bad broke" in index
    assert "| missing | failed" in index and "ModuleNotFoundError" in index
    assert "fake_bad broke" in capsys.readouterr().err


def test_finished_experiment_is_kept_unless_forced_or_config_changes(fakes, tmp_path):
    args = ["good", "--out", str(tmp_path), "--seeds", "3"]
    assert runner.main(args) == 0
    assert runner.main(args) == 0  # finished: not recomputed
    assert fakes == [("fake_good", False, 3)]
    assert runner.main(args + ["--force"]) == 0
    assert runner.main(["good", "--out", str(tmp_path), "--seeds", "4"]) == 0  # another config
    assert fakes == [("fake_good", False, 3), ("fake_good", False, 3), ("fake_good", False, 4)]
    assert runner.main(["bad", "--out", str(tmp_path)]) == 1


def test_unknown_experiment_lists_the_known_ones(capsys):
    assert runner.main(["nosuch"]) == 2
    err = capsys.readouterr().err
    known = ", ".join(sorted(runner.EXPERIMENTS))
    assert "unknown experiment 'nosuch'" in err and known in err and "activations, cnn_lessons" in known
    with pytest.raises(ValueError, match=f"known experiments: {known}"):
        runner.load_experiment("nosuch")


def test_options_an_experiment_lacks_are_refused_alone_and_skipped_in_all(fakes, tmp_path, capsys):
    assert runner.main(["good", "--dataset", "digits", "--out", str(tmp_path)]) == 1
    assert "has no --dataset option" in capsys.readouterr().err
    assert runner.main(["all", "--dataset", "digits", "--out", str(tmp_path)]) == 1  # bad and missing fail
    assert "good: ignoring --dataset" in capsys.readouterr().out
    assert ("fake_good", False, 2) in fakes


def test_command_line_sets_up_cpu_devices_and_rejects_an_unknown_name():
    # `python -m experiments` itself: the entry point switches on one CPU device per core (before
    # JAX computes anything) and the runner answers an unknown name with the known ones, exit 2.
    import subprocess

    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-m", "experiments", "nope"], capture_output=True, text=True, cwd=root,
                         timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "unknown experiment 'nope'" in run.stderr and "activations" in run.stderr
    probe = subprocess.run([sys.executable, "-c", "import runpy, sys, jax; sys.argv = ['experiments', 'nope'];\n"
                            "try:\n runpy.run_module('experiments', run_name='__main__')\n"
                            "except SystemExit: pass\nimport os; print(len(jax.devices('cpu')) == (os.cpu_count() or 1))"],
                           capture_output=True, text=True, cwd=root, timeout=300)
    assert probe.stdout.strip().splitlines()[-1] == "True", probe.stderr[-2000:]


def test_all_experiments_in_quick_mode_from_the_command_line(quick_results):
    # What the issues ask CI to run: `python -m experiments all --quick` (every experiment's quick mode),
    # end to end in a fresh process (the session fixture runs it once; other tests read its outputs).
    tmp_path, run = quick_results
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    index = (tmp_path / "REPORT.md").read_text()
    for name in runner.EXPERIMENTS:
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["config"]["quick"] is True
        assert f"[{name}]({name}/report.md)" in index and (tmp_path / name / "report.md").stat().st_size > 0
    study = json.loads((tmp_path / "activations" / "summary.json").read_text())
    assert {(r["activation"], r["depth"]) for r in study["runs"]} == {
        (a, d) for a in ("sigmoid", "tanh", "relu", "elu", "leaky_relu", "softplus") for d in (2, 5, 10)}
    assert all(len(r["seeds"]) >= 3 for r in study["runs"])
