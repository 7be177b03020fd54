"""The activation study's outputs: the summary schema, the claims judged from the numbers, the
text table, the plots (learning curves with seed bands, gradient norm per layer, dead and
saturated units), the CSV files and report.md. :mod:`experiments.activations` trains; this
module only reads its records and summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from experiments import common
from jaxnets import plot

if TYPE_CHECKING:
    from experiments.activations import Config

RECTIFIERS = ("relu", "leaky_relu")  # f' is 0 (or tiny) for z < 0: "inactive", shown as dead units, not saturation


_NUM, _NUMS = {"type": ["number", "null"]}, {"type": "array", "items": {"type": "number"}}
SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["experiment", "dataset", "quick", "config", "environment", "target_train_error", "runs",
                 "failed_runs", "claims", "seconds"],
    "properties": {
        "experiment": {"enum": ["activations"]}, "dataset": {"type": "string"}, "quick": {"type": "boolean"},
        "config": {"type": "object", "required": ["seeds", "epochs", "depths", "activations"]},
        "environment": {"type": "object", "required": ["versions", "device_kind", "cpu"]},
        "target_train_error": {"type": "number", "minimum": 0, "maximum": 1}, "seconds": {"type": "number"},
        "runs": {"type": "array", "items": {
            "type": "object",
            "required": ["activation", "depth", "seeds", "test_accuracy_mean", "test_accuracy_std", "epochs_to_target",
                         "grad_norm_per_layer_init", "seconds_to_target", "dead_fraction_per_layer_final",
                         "saturated_fraction_per_layer_final", "grad_norm_per_layer_final"],
            "properties": {
                "activation": {"type": "string"}, "depth": {"type": "integer", "minimum": 1},
                "init": {"type": "string"}, "seeds": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                "test_accuracy_mean": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "test_accuracy_std": {"type": ["number", "null"], "minimum": 0},
                "epochs_to_target": {"type": ["number", "null"], "minimum": 1}, "seconds_to_target": _NUM,
                "grad_norm_per_layer_init": _NUMS, "grad_norm_per_layer_final": _NUMS,
                "dead_fraction_per_layer_final": _NUMS, "saturated_fraction_per_layer_final": _NUMS}}},
        "failed_runs": {"type": "array", "items": {"type": "object", "required": ["name", "error"]}},
        "claims": {"type": "array", "items": {"type": "object", "required": ["claim", "source", "held", "evidence"],
                                              "properties": {"held": {"type": ["boolean", "null"]},
                                                             "evidence": {"type": "string"}}}},
    },
}


def _get(runs: list[dict], activation: str, depth: int, init: str = "suited") -> dict | None:
    return next((r for r in runs if (r["activation"], r["depth"], r["init"]) == (activation, depth, init)), None)


def _acc(run: dict | None) -> str:
    return "–" if run is None or run["test_accuracy_mean"] is None else \
        f"{run['test_accuracy_mean']:.3f}±{run['test_accuracy_std']:.3f}"


def evaluate_claims(summary: dict) -> list[dict]:
    """Which of the notes' claims held, judged on the suited-initialiser runs."""
    runs, depths = summary["runs"], sorted({r["depth"] for r in summary["runs"]})
    epochs = summary["config"]["epochs"]
    claims = []

    def add(claim, verdicts, evidence, deck="S1", slide="Non-linearities"):
        verdicts = [v for v in verdicts if v is not None]
        claims.append(common.claim(claim, deck, slide, all(verdicts) if verdicts else None,
                                   "; ".join(evidence) or "no data"))

    verdicts, evidence = [], []
    for d in depths:
        relu, tanh = _get(runs, "relu", d), _get(runs, "tanh", d)
        if relu and tanh:
            e_relu, e_tanh = relu["epochs_to_target"], tanh["epochs_to_target"]
            verdicts.append(None if e_relu is None and e_tanh is None else e_tanh is None or (e_relu is not None and e_relu < e_tanh))
            ratio = f" ({e_tanh / e_relu:.1f}×)" if e_relu and e_tanh else ""
            fmt = lambda e: f"> {epochs}" if e is None else f"{e:.1f}"
            evidence.append(f"depth {d}: ReLU {fmt(e_relu)} vs tanh {fmt(e_tanh)} epochs{ratio}")
    add(f"ReLU reaches {summary['target_train_error']:.0%} training error in fewer epochs than tanh "
        "(Krizhevsky et al.: 6× fewer)", verdicts, evidence, slide="Non-linearities: Rectified Linear (ReLU)")

    verdicts, evidence = [], []
    for d in depths:
        sig, relu = _get(runs, "sigmoid", d), _get(runs, "relu", d)
        if sig and relu and sig["test_accuracy_mean"] is not None and relu["test_accuracy_mean"] is not None:
            verdicts.append(relu["test_accuracy_mean"] > sig["test_accuracy_mean"])
            evidence.append(f"depth {d}: ReLU {_acc(relu)} vs sigmoid {_acc(sig)}")
    add("ReLU is better than sigmoid (test accuracy, every depth)", verdicts, evidence, deck="S0",
        slide="Nonlinear activation function")

    deepest = depths[-1] if depths else None
    sig, relu = _get(runs, "sigmoid", deepest), _get(runs, "relu", deepest)
    ratios = {name: r["grad_norm_per_layer_init"][0] / r["grad_norm_per_layer_init"][-1]
              for name, r in (("sigmoid", sig), ("ReLU", relu)) if r and r["grad_norm_per_layer_init"]}
    add(f"sigmoid gradients vanish in deep nets (first-layer gradient norm < 1/10 of the output layer's at "
        f"initialisation, depth {deepest})", [ratios["sigmoid"] < 0.1 if "sigmoid" in ratios else None],
        [f"{k}: first/output = {v:.2g}" for k, v in ratios.items()], slide="Non-linearities: Sigmoid")

    saturated = {a: np.mean(r["saturated_fraction_per_layer_final"]) for a in ("sigmoid", "tanh", "elu", "softplus")
                 if (r := _get(runs, a, deepest)) and r["saturated_fraction_per_layer_final"]}
    add(f"sigmoid units saturate (≥ 10 % of unit-example pairs with f' < 10 % of its maximum after training, depth "
        f"{deepest})", [saturated["sigmoid"] >= 0.1 if "sigmoid" in saturated else None],
        [f"{a}: {v:.1%}" for a, v in saturated.items()]
        + ["(σ' ≤ ¼ everywhere, so a deep sigmoid net's gradient shrinks ≈ 4× per layer even without saturation)"],
        slide="Non-linearities: Sigmoid")

    verdicts, evidence = [], []
    for d in depths:
        elu, relu = _get(runs, "elu", d), _get(runs, "relu", d)
        if elu and relu and elu["test_accuracy_mean"] is not None and relu["test_accuracy_mean"] is not None:
            diff = elu["test_accuracy_mean"] - relu["test_accuracy_mean"]
            spread = max(elu["test_accuracy_std"], relu["test_accuracy_std"])
            verdicts.append(diff > 0)
            evidence.append(f"depth {d}: ELU {_acc(elu)} vs ReLU {_acc(relu)}"
                            + (" (within one std)" if abs(diff) <= spread else ""))
    add("ELU is better than ReLU (test accuracy, every depth)", verdicts, evidence, deck="S0", slide="Nonlinear activation function")

    dead = {d: np.mean(r["dead_fraction_per_layer_final"]) for d in depths
            if (r := _get(runs, "relu", d)) and r["dead_fraction_per_layer_final"]}
    add("ReLU units can die (> 1 % of hidden units never active on the probe batch after training)",
        [max(dead.values()) > 0.01 if dead else None], [f"depth {d}: {v:.1%}" for d, v in dead.items()],
        slide="Non-linearities: Rectified Linear (ReLU)")
    return claims


def _pct(values: list) -> str:
    return f"{np.mean(values):.1%}" if values else "–"


def format_table(summary: dict) -> str:
    """A compact console table: one line per run."""
    lines = [f"{'run':<24} {'test accuracy':>13} {'→target':>8} {'s→target':>8} {'∇1/∇out':>8} {'dead':>6} {'sat.':>6}"]
    for r in summary["runs"]:
        grads = r["grad_norm_per_layer_init"]
        lines.append(f"{r['activation'] + ' d' + str(r['depth']) + ' ' + r['init']:<24} {_acc(r):>13} "
                     f"{'–' if r['epochs_to_target'] is None else format(r['epochs_to_target'], '.1f'):>8} "
                     f"{'–' if r['seconds_to_target'] is None else format(r['seconds_to_target'], '.1f'):>8} "
                     f"{grads[0] / grads[-1] if grads else float('nan'):>8.2g} "
                     f"{_pct(r['dead_fraction_per_layer_final']):>6} "
                     f"{'–' if r['activation'] in RECTIFIERS else _pct(r['saturated_fraction_per_layer_final']):>6}")
    lines += [f"FAILED {f['name']}: {f['error']}" for f in summary["failed_runs"]]
    return "\n".join(lines)


def headline(summary: dict) -> str:
    """One line for results/REPORT.md."""
    held = [c for c in summary.get("claims", []) if c["held"]]
    return f"{len(summary['runs'])} runs on {summary['dataset']}; {len(held)}/{len(summary.get('claims', []))} of the notes' claims held"


def _figure(records, rows, depths, draw, path: Path, title: str, ylabel, log=False):
    fig, axes = plt.subplots(len(rows), len(depths), figsize=(4.2 * len(depths), 3.2 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j, depth in enumerate(depths):
            ax = axes[i][j]
            for record in records:
                if record["depth"] == depth and (row["init"] is None or record["init"] == row["init"]):
                    draw(ax, record, row)
            ax.set(title=f"depth {depth}, {row['label']}", ylabel=ylabel(row), yscale="log" if log else "linear")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_plots(out: Path, records: list[dict], summary: dict) -> list[str]:
    depths = sorted({r["depth"] for r in records})
    inits = sorted({r["init"] for r in records}, key=lambda i: i != "suited")
    if not records:
        return []
    target = summary["target_train_error"]

    def curve(ax, record, row):
        error = 1 - np.asarray(record["train_accuracy"], np.float64)  # (epochs, seeds)
        plot.learning_curves({"epoch": np.arange(len(error)), "train_error": error}, ("train_error",), ax=ax,
                             label=record["activation"])
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8)

    _figure(records, [{"init": i, "label": f"{i} init"} for i in inits], depths, curve, out / "learning_curves.png",
            "training error (mean, min–max band over seeds; dashed: target)", lambda row: "training error")

    def grads(ax, record, row):
        g = np.asarray(record["grad_norm"], np.float64)[row["epoch"]].T  # (layers, seeds)
        plot.grad_norms([{f"{i + 1}": v for i, v in enumerate(g)}], ax=ax, labels=[record["activation"]])
        ax.set_xlabel("layer (1 = first, last = output)")

    _figure(records, [{"init": "suited", "label": "initialisation", "epoch": 0},
                      {"init": "suited", "label": "after training", "epoch": -1}], depths, grads, out / "grad_norms.png",
            "‖∂loss/∂W‖ per layer (suited init; band: min–max over seeds)", lambda row: "gradient norm", log=True)

    def units(ax, record, row):
        if row["key"] == "saturated_fraction" and record["activation"] in RECTIFIERS:
            return  # their flat side is "inactive" (see dead units), not saturation
        v = np.asarray(record[row["key"]], np.float64).mean(axis=2)  # (epochs + 1, seeds), mean over layers
        plot.learning_curves({"epoch": np.arange(len(v)) - 1, row["key"]: v}, (row["key"],), ax=ax,
                             label=record["activation"])
        ax.set_xlabel("epoch (0 = initialisation)")

    _figure(records, [{"init": "suited", "label": "saturated", "key": "saturated_fraction"},
                      {"init": "suited", "label": "dead units", "key": "dead_fraction"}], depths, units, out / "units.png",
            "saturated units (f' < 10 % of max; not shown for ReLU/leaky ReLU) and dead units (never active), "
            "mean over layers (suited init)",
            lambda row: "fraction")
    return ["learning_curves.png", "grad_norms.png", "units.png"]


def write_csvs(out: Path, records: list[dict]) -> None:
    history, units = [], []
    for r in records:
        tags = {"run": r["name"], "activation": r["activation"], "depth": r["depth"], "init": r["init"]}
        for s, seed in enumerate(r["seeds"]):
            for e in range(len(r["train_loss"])):
                history.append({**tags, "seed": seed, "epoch": e + 1, "train_loss": r["train_loss"][e][s],
                                "train_accuracy": r["train_accuracy"][e][s], "val_loss": r["val_loss"][e][s],
                                "val_accuracy": r["val_accuracy"][e][s], "epoch_seconds_all_seeds": r["seconds"][e]})
            for e in range(len(r["grad_norm"])):
                for layer, g in enumerate(r["grad_norm"][e][s]):
                    hidden = layer < len(r["dead_fraction"][e][s])
                    units.append({**tags, "seed": seed, "epoch": e, "layer": layer + 1, "grad_norm": g,
                                  "saturated_fraction": r["saturated_fraction"][e][s][layer] if hidden else None,
                                  "dead_fraction": r["dead_fraction"][e][s][layer] if hidden else None})
    common.write_csv(out / "history.csv", history)
    common.write_csv(out / "units.csv", units)


def write_outputs(out: Path, summary: dict, records: list[dict], config: Config) -> None:
    """CSV, plots, claims, report.md, then summary.json (validated) — written last."""
    out.mkdir(parents=True, exist_ok=True)
    write_csvs(out, records)
    plots = write_plots(out, records, summary)
    summary["claims"] = evaluate_claims(summary)
    text = [f"# Activation study on {summary['dataset']}{' (quick mode)' if config.quick else ''}", "",
            f"MLPs of width {config.width} with {', '.join(config.activations)} at depths "
            f"{', '.join(map(str, config.depths))}; {config.seeds} seeds per run trained together in one compiled "
            f"program; {config.optimizer} (lr {config.learning_rate}), batch {config.batch_size}, {config.epochs} epochs "
            f"on {config.train_size} training images; initialisers: {', '.join(config.inits)}. Target training error "
            f"for the speed comparison: {config.target_train_error:.0%}. Run time {summary['seconds'] / 60:.1f} min.", "",
            "## What the lecture notes claim, and what we found", ""]
    text += [common.claims_markdown(summary["claims"])]
    text += ["", "## Numbers (mean ± std over seeds)", "", common.markdown_table(
        ["activation", "depth", "init", "test accuracy", "epochs → target", "s → target (per seed)",
         "‖∇W₁‖/‖∇W_out‖ at init", "dead units", "saturated"],
        [[r["activation"], r["depth"], r["init"], _acc(r),
          None if r["epochs_to_target"] is None else f"{r['epochs_to_target']:.1f} ({r['seeds_reaching_target']}/{len(r['seeds'])} seeds)",
          None if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.2f}",
          f"{r['grad_norm_per_layer_init'][0] / r['grad_norm_per_layer_init'][-1]:.2g}" if r["grad_norm_per_layer_init"] else None,
          f"{np.mean(r['dead_fraction_per_layer_final']):.1%}" if r["dead_fraction_per_layer_final"] else None,
          f"{np.mean(r['saturated_fraction_per_layer_final']):.1%}"
          if r["saturated_fraction_per_layer_final"] and r["activation"] not in RECTIFIERS else None]
         for r in summary["runs"]])]
    if summary["failed_runs"]:
        text += ["", "## Failed runs", ""] + [f"- {f['name']}: `{f['error']}`" for f in summary["failed_runs"]]
    text += ["", "Seconds to target are per seed: the epoch time of all seeds trained together divided by the "
             "number of seeds, on a CPU shared with other work, so compare them only roughly.", "", "## Plots", ""]
    text += [f"![{p}]({p})" for p in plots]
    common.write_report(out, "\n".join(text))
    common.write_summary(out, summary, SUMMARY_SCHEMA)
