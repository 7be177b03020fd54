"""Expressive power: what one, two and three layers can represent.

Tests the lecture notes' claims about representational power with numbers and pictures:

* a perceptron (no hidden layer) cannot fit XOR, an MLP with one hidden layer can (Fergus lecture 2
  and the architectures deck);
* the Toronto deck's hand-built threshold network (h₁ = OR, h₂ = AND, y = h₁ ∧ ¬h₂) computes XOR;
* decision surfaces of 1-, 2- and 3-layer nets on xor, circles, moons and spirals: one layer draws a
  line, two and more draw anything (Fergus: "1 layer? Linear decision surface. 2+ layers? In theory,
  can represent any function");
* universality: a one-hidden-layer net fits a 1-D function better as it widens; the Toronto exercise
  ``1[x ∈ [1, 2]]`` built exactly from two hard thresholds and approximately from ReLUs;
* deep linear networks equal one linear layer (the product of their weight matrices) and cannot do XOR;
* depth against width at an equal number of parameters on spirals (the architectures deck: "using
  deeper models can reduce the number of units required … and reduce the generalization error").

Every grid of runs trains its seeds together (``fit_seeds``); learning rates and epochs are fixed in
advance (no selection on test data: the accuracies of the representational claims are training
accuracies, and the depth-vs-width claim is judged on a validation split).

Command: ``python -m experiments expressive_power`` (full) or ``--quick`` (CI). Run time on the 2-core
CPU: quick 68 s, full 101 s (measured 2026-12-01, AMD EPYC). Expected result (both modes): all 10
claims held; the perceptron gets 0.25–0.50 of the XOR points right while the one-hidden-layer MLP gets
1.00; 1-layer nets stay at 0.48–0.60 on xor, circles and spirals while 2- and 3-layer ones reach
0.98–1.00; the width sweep's error falls from 8.4e-2 (1 unit) to 3.4e-4 (128 units); the threshold
constructions are exact; at 1322 parameters the 3-hidden-layer net beats the 1-hidden-layer one on the
validation spirals (0.73 vs 0.65).

Outputs in ``results/expressive_power/``: summary.json, decision_surfaces.png, width_sweep.png, bump.png,
depth_vs_width.png, report.md.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments import common
from jaxnets import data, inspect, models, nn, optim, plot
from jaxnets.runtime import environment
from jaxnets.seeds import fit_seeds, init_runs, seed_keys, unstack_tree
from jaxnets.train import make_evaluate_runs_fn

SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["config", "environment", "xor", "surfaces", "width_sweep", "bump", "deep_linear", "depth_vs_width",
                 "claims", "seconds"],
    "properties": {"claims": common.CLAIMS_SCHEMA},
}
XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_LABELS = np.array([0, 1, 1, 0], np.int32)
SURFACE_SETS = ("xor", "circles", "moons", "spirals")
NONLINEAR_SETS = ("xor", "circles", "spirals")  # no line separates their classes


@dataclasses.dataclass
class Config:
    """See the module docstring for the command, run time and expected result."""

    quick: bool = False
    out: Path = Path("results/expressive_power")
    seeds: int | None = None  # default 3 (quick) / 5 (full)
    seed: int = 0
    xor_epochs: int = 300
    hidden: int = 64  # width of the ReLU layers of the 2- and 3-layer nets of the decision surfaces
    surface_points: int = 400
    surface_epochs: int | None = None  # default 250 / 400
    widths: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    sweep_epochs: int | None = None  # full-batch steps; default 1500 / 3000
    equal_params_epochs: int | None = None  # default 150 / 300
    spiral_turns: float = 3.0  # of the depth-vs-width spirals

    def resolved(self) -> dict:
        quick = self.quick
        return {"seeds": self.seeds or (3 if quick else 5),
                "surface_epochs": self.surface_epochs or (250 if quick else 400),
                "sweep_epochs": self.sweep_epochs or (1500 if quick else 3000),
                "equal_params_epochs": self.equal_params_epochs or (150 if quick else 300)}


def train_seeds(model, x, y, *, loss: str, seeds: list[int], epochs: int, batch_size: int, learning_rate,
                validation=None):
    """Every seed of one model trained together (Adam at ``learning_rate``, a number or a schedule);
    returns the SeedsResult."""
    keys = seed_keys(seeds)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    params, state = init_runs(model, init_keys, x[:1])
    return fit_seeds(model, params, state, (x, y), loss=loss, optimizer=optim.optimizer("adam", learning_rate),
                     epochs=epochs, batch_size=batch_size, keys=keys, validation_data=validation, progress=False)


def accuracies(model, result, x, y) -> list[float]:
    """Each run's accuracy on (x, y)."""
    _, accuracy = make_evaluate_runs_fn(model, "cross_entropy")(result.params, result.state, jnp.asarray(x),
                                                                jnp.asarray(y))
    return [float(a) for a in accuracy]


def linear_model() -> nn.Sequential:
    """The 1-layer net: one dense layer from the inputs to the 2 class logits (a perceptron's line)."""
    return models.mlp([2], flatten=False)


def mlp(hidden_layers: int, width: int, activation: str = "tanh") -> nn.Sequential:
    return models.mlp([width] * hidden_layers + [2], activation=activation, flatten=False)


# ------------------------------------------------------------------------------------------- XOR


def xor_study(config: Config, seeds: list[int]) -> dict:
    """Perceptron, one-hidden-layer MLP and deep linear net on the four XOR points, full batch."""
    x, y = np.repeat(XOR_INPUTS, 4, axis=0), np.repeat(XOR_LABELS, 4)  # 16 examples: 4 copies of each point
    out = {}
    for name, model in (("perceptron", linear_model()), ("mlp_1_hidden", mlp(1, 8)),
                        ("deep_linear", models.mlp([8, 8, 2], activation="identity", flatten=False))):
        result = train_seeds(model, x, y, loss="cross_entropy", seeds=seeds, epochs=config.xor_epochs, batch_size=16,
                             learning_rate=0.05)
        out[name] = accuracies(model, result, XOR_INPUTS, XOR_LABELS)
    return out


def threshold_xor() -> tuple[nn.Sequential, dict, list[int]]:
    """The Toronto deck's network with hard thresholds: h₁ = 1[x₁ + x₂ − 0.5 > 0] (OR),
    h₂ = 1[x₁ + x₂ − 1.5 > 0] (AND), y = 1[h₁ − h₂ − 0.5 > 0] (h₁ AND NOT h₂ = XOR)."""
    model = nn.Sequential([("hidden", nn.Dense(2)), ("h", nn.Activation("step")), ("out", nn.Dense(1)),
                           ("y", nn.Activation("step"))])
    params = {"hidden": {"w": jnp.array([[1.0, 1.0], [1.0, 1.0]]), "b": jnp.array([-0.5, -1.5])},
              "out": {"w": jnp.array([[1.0], [-1.0]]), "b": jnp.array([-0.5])}}
    y, _ = model.apply(params, {}, jnp.asarray(XOR_INPUTS))
    return model, params, [int(v) for v in np.asarray(y)[:, 0]]


def deep_linear_equals_product(key) -> float:
    """Max |deep linear net(x) − (x W + b)| with W = W₁W₂W₃ and b the composed bias, on random x."""
    model = models.mlp([8, 8, 3], activation="identity", flatten=False)
    x = jax.random.normal(key, (64, 5))
    params, _ = model.init(jax.random.fold_in(key, 1), x)
    weight, bias = jnp.eye(5), jnp.zeros(5)
    for name in ("dense1", "dense2", "dense3"):
        weight, bias = weight @ params[name]["w"], bias @ params[name]["w"] + params[name]["b"]
    deep, _ = model.apply(params, {}, x)
    return float(jnp.max(jnp.abs(deep - (x @ weight + bias[None, :]))))


# ----------------------------------------------------------------------------- decision surfaces


def surface_study(config: Config, seeds: list[int], epochs: int) -> tuple[dict, dict]:
    """Each (set, depth) trained over the seeds; returns training accuracies and, for the figure, the
    first seed's model and params."""
    table, drawn = {}, {}
    for i, name in enumerate(SURFACE_SETS):
        x, y = data.make_synthetic(name, config.surface_points, key=jax.random.PRNGKey(100 + i))
        table[name] = {}
        for layers, model in ((1, linear_model()), (2, mlp(1, config.hidden, "relu")), (3, mlp(2, config.hidden, "relu"))):
            result = train_seeds(model, x, y, loss="cross_entropy", seeds=seeds, epochs=epochs, batch_size=32,
                                 learning_rate=0.01)
            table[name][str(layers)] = accuracies(model, result, x, y)
            drawn[(name, layers)] = (model, unstack_tree(result.params, 0), unstack_tree(result.state, 0), x, y)
    return table, drawn


# ---------------------------------------------------------------------------------- universality


def target_function(x):
    """The continuous function of the width sweep, |x| on [-1, 1]: its kink needs ever more smooth
    (tanh) units to follow closely."""
    return jnp.abs(x)


def width_sweep(config: Config, seeds: list[int], epochs: int) -> tuple[list[dict], dict]:
    x = np.linspace(-1, 1, 256, dtype=np.float32)[:, None]
    t = np.asarray(target_function(x))
    grid = np.linspace(-1, 1, 1001, dtype=np.float32)[:, None]
    rows, fits = [], {}
    rate = optim.schedule("cosine", 0.01, steps_per_epoch=1, epochs=epochs)  # full batch: one step an epoch
    for width in config.widths:
        model = models.mlp([width, 1], activation="tanh", output="linear", flatten=False)
        result = train_seeds(model, x, t, loss="squared_error", seeds=seeds, epochs=epochs, batch_size=len(x),
                             learning_rate=rate)
        outputs = jax.vmap(lambda p, s: model.apply(p, s, jnp.asarray(grid))[0])(result.params, result.state)
        errors = np.mean((np.asarray(outputs) - np.asarray(target_function(grid))) ** 2, axis=(1, 2))  # (seeds,)
        rows.append({"width": width, "params": sum(inspect.count_params(unstack_tree(result.params, 0))),
                     "mse": [float(e) for e in errors], "median_mse": float(np.median(errors))})
        fits[width] = np.asarray(outputs)[0, :, 0]
    return rows, {"grid": grid[:, 0], "fits": fits}


def bump_threshold(x):
    """1[x ∈ [1, 2]] exactly from two hard thresholds: h₁ = 1[x − 1 ≥ 0], h₂ = 1[2 − x ≥ 0], y = h₁ + h₂ − 1."""
    model = nn.Sequential([nn.Dense(2), nn.Activation("step"), nn.Dense(1)])
    params = {"dense1": {"w": jnp.array([[1.0, -1.0]]), "b": jnp.array([-1.0, 2.0])},
              "dense2": {"w": jnp.array([[1.0], [1.0]]), "b": jnp.array([-1.0])}}
    return model.apply(params, {}, x)[0]


def bump_relu(x, slope: float):
    """The bump from four ReLUs with ramps of width 1/slope:
    relu(k(x−1)+1) − relu(k(x−1)) − relu(k(x−2)) + relu(k(x−2)−1), the indicator with sloped sides."""
    model = nn.Sequential([nn.Dense(4), nn.Activation("relu"), nn.Dense(1)])
    k = slope
    params = {"dense1": {"w": jnp.full((1, 4), k), "b": jnp.array([1 - k, -k, -2 * k, -2 * k - 1])},
              "dense2": {"w": jnp.array([[1.0], [-1.0], [-1.0], [1.0]]), "b": jnp.zeros(1)}}
    return model.apply(params, {}, x)[0]


def bump_study() -> dict:
    grid = jnp.linspace(0.0, 3.0, 30001)[:, None]  # includes 1.0 and 2.0
    indicator = ((grid >= 1) & (grid <= 2)).astype(jnp.float32)
    exact = float(jnp.max(jnp.abs(bump_threshold(grid) - indicator)))
    relu = [{"slope": k, "l1_error": float(jnp.mean(jnp.abs(bump_relu(grid, k) - indicator)) * 3.0)}
            for k in (1.0, 10.0, 100.0)]
    return {"threshold_max_error": exact, "relu": relu}


# ------------------------------------------------------------------------------- depth vs width


def equal_parameter_models(budget_width: int = 24) -> tuple[nn.Sequential, nn.Sequential, int, int]:
    """A deep net (3 hidden layers of ``budget_width``) and a wide one (1 hidden layer) with the same
    number of parameters, or the nearest below."""
    deep = mlp(3, budget_width, "relu")
    deep_params = sum(inspect.count_params(deep.init(jax.random.PRNGKey(0), (1, 2))[0]))
    width = (deep_params - 2) // 5  # one hidden layer: 2w + w + 2w + 2 parameters
    wide = mlp(1, width, "relu")
    wide_params = sum(inspect.count_params(wide.init(jax.random.PRNGKey(0), (1, 2))[0]))
    return deep, wide, deep_params, wide_params


def depth_vs_width(config: Config, seeds: list[int], epochs: int) -> tuple[dict, dict]:
    x, y = data.make_synthetic("spirals", 600, key=jax.random.PRNGKey(7), turns=config.spiral_turns)
    xv, yv = data.make_synthetic("spirals", 400, key=jax.random.PRNGKey(8), turns=config.spiral_turns)
    deep, wide, deep_params, wide_params = equal_parameter_models()
    out, histories = {"deep_params": deep_params, "wide_params": wide_params}, {}
    for name, model in (("deep", deep), ("wide", wide)):
        result = train_seeds(model, x, y, loss="cross_entropy", seeds=seeds, epochs=epochs, batch_size=32,
                             learning_rate=0.01, validation=(xv, yv))
        out[name] = {"train_accuracy": accuracies(model, result, x, y), "val_accuracy": accuracies(model, result, xv, yv)}
        histories[name] = result.history
    return out, histories


# ------------------------------------------------------------------------------------------ claims


def judge(summary: dict, quick: bool) -> list[dict]:
    claim = common.claim
    xor, surfaces = summary["xor"], summary["surfaces"]
    claims = [
        claim("A perceptron (no hidden layer) cannot fit XOR: at most 3 of the 4 points right, whatever the seed",
              "S4", "Deep neural networks", max(xor["perceptron"]) <= 0.75,
              f"training accuracy on the 4 XOR points over {len(xor['perceptron'])} seeds: "
              f"{', '.join(f'{a:.2f}' for a in xor['perceptron'])}"),
        claim("An MLP with one hidden layer fits XOR", "S4", "Deep neural networks", min(xor["mlp_1_hidden"]) == 1.0,
              f"one hidden layer of 8 tanh units: {', '.join(f'{a:.2f}' for a in xor['mlp_1_hidden'])}"),
        claim("The hand-built threshold network (h₁ = OR, h₂ = AND, y = h₁ AND NOT h₂) computes XOR", "S3",
              "Designing a network to classify XOR", summary["threshold_xor"] == [0, 1, 1, 0],
              f"outputs on (0,0), (0,1), (1,0), (1,1): {summary['threshold_xor']}"),
    ]
    linear = {name: max(surfaces[name]["1"]) for name in NONLINEAR_SETS}
    claims.append(claim("1 layer: a linear decision surface, so it cannot separate xor, circles or spirals", "S1",
                        "Representational Power", all(v <= 0.8 for v in linear.values()),
                        "best 1-layer training accuracy: " + ", ".join(f"{k} {v:.2f}" for k, v in linear.items())))
    deep = {name: float(np.mean(surfaces[name]["3"])) for name in SURFACE_SETS}
    two = {name: float(np.mean(surfaces[name]["2"])) for name in SURFACE_SETS}
    claims.append(claim("2+ layers can represent any of these decision surfaces", "S1", "Representational Power",
                        all(v >= 0.95 for v in [*two.values(), *deep.values()]),
                        "mean training accuracy, 2 layers: " + ", ".join(f"{k} {v:.3f}" for k, v in two.items())
                        + "; 3 layers: " + ", ".join(f"{k} {v:.3f}" for k, v in deep.items())))
    sweep = summary["width_sweep"]
    errors = [r["median_mse"] for r in sweep]
    ranks = np.argsort(np.argsort(errors))
    monotone = float(np.corrcoef(np.arange(len(errors)), ranks)[0, 1])
    claims.append(claim("One hidden layer approximates a continuous function with any precision, given enough units",
                        "S4", "Deep neural networks: universality", errors[-1] <= 0.01 * errors[0] and monotone <= -0.8,
                        f"median squared error from {sweep[0]['width']} to {sweep[-1]['width']} units: "
                        + ", ".join(f"{e:.1e}" for e in errors) + f" (rank correlation with width {monotone:.2f})"))
    bump = summary["bump"]
    relu = bump["relu"]
    claims.append(claim("1[x ∈ [1, 2]] is exactly two hard thresholds (h₁ = 1[x ≥ 1], h₂ = 1[x ≤ 2], y = h₁ + h₂ − 1)",
                        "S3", "Expressive Power (exercise, hard threshold)", bump["threshold_max_error"] == 0.0,
                        f"largest error on 30 001 points of [0, 3], endpoints included: {bump['threshold_max_error']}"))
    claims.append(claim("… and approximately four ReLUs, the error shrinking as their ramps steepen", "S3",
                        "Expressive Power (exercise, ReLU)",
                        all(a["l1_error"] > 5 * b["l1_error"] for a, b in zip(relu, relu[1:])),
                        "∫|error| over [0, 3] at slopes " + ", ".join(f"{r['slope']:g}: {r['l1_error']:.4f}" for r in relu)
                        + " (theory: 1/slope)"))
    linear_xor = summary["xor"]["deep_linear"]
    claims.append(claim("Deep linear networks are no more expressive than one linear layer (the product of their "
                        "weight matrices) and cannot fit XOR", "S3", "Expressive Power",
                        summary["deep_linear"] <= 1e-5 and max(linear_xor) <= 0.75,
                        f"|deep(x) − x·W₁W₂W₃ − b| ≤ {summary['deep_linear']:.1e}; XOR accuracy of a 3-layer linear "
                        f"net: {', '.join(f'{a:.2f}' for a in linear_xor)}"))
    dvw = summary["depth_vs_width"]
    deep_val, wide_val = np.asarray(dvw["deep"]["val_accuracy"]), np.asarray(dvw["wide"]["val_accuracy"])
    difference = float(deep_val.mean() - wide_val.mean())
    noise = float(np.sqrt((deep_val.var() + wide_val.var()) / len(deep_val)))
    clear = abs(difference) > 2 * noise + 0.01
    held = (difference > 0) if clear else (None if quick else False)
    claims.append(claim("At an equal number of parameters a deeper net generalises better than a wide one "
                        "(spirals)", "S4", "Deep neural networks: universality", held,
                        f"{dvw['deep_params']} parameters in 3 hidden layers vs {dvw['wide_params']} in 1: validation "
                        f"accuracy {deep_val.mean():.3f} ± {deep_val.std():.3f} vs {wide_val.mean():.3f} ± "
                        f"{wide_val.std():.3f} (difference {difference:+.3f}, noise {noise:.3f})"))
    return claims


# --------------------------------------------------------------------------------------- outputs


def write_figures(out: Path, drawn: dict, sweep_fits: dict, summary: dict, histories: dict) -> None:
    fig, axes = plt.subplots(len(SURFACE_SETS), 3, figsize=(10, 12.5))
    for i, name in enumerate(SURFACE_SETS):
        for j, layers in enumerate((1, 2, 3)):
            model, params, state, x, y = drawn[(name, layers)]
            ax = plot.decision_surface(model, params, state, x, y, ax=axes[i][j], resolution=120)
            ax.set_title(f"{name}, {layers} layer{'s' if layers > 1 else ''}: "
                         f"{summary['surfaces'][name][str(layers)][0]:.2f}", fontsize=9)
    fig.suptitle("Decision surfaces (first seed; title: its training accuracy)")
    fig.tight_layout()
    fig.savefig(out / "decision_surfaces.png", dpi=80)
    plt.close(fig)

    fig, (ax_error, ax_fit) = plt.subplots(1, 2, figsize=(10, 3.8))
    rows = summary["width_sweep"]
    widths = [r["width"] for r in rows]
    mse = np.asarray([r["mse"] for r in rows])
    ax_error.loglog(widths, np.median(mse, axis=1), "o-")
    ax_error.fill_between(widths, mse.min(axis=1), mse.max(axis=1), alpha=0.2)
    ax_error.set(xlabel="hidden units", ylabel="squared error", title="one hidden layer (tanh) fitting |x|")
    grid = sweep_fits["grid"]
    ax_fit.plot(grid, np.asarray(target_function(grid)), "k", linewidth=2, label="target")
    for width in (1, 4, 16, max(widths)):
        if width in sweep_fits["fits"]:
            ax_fit.plot(grid, sweep_fits["fits"][width], label=f"{width} units")
    ax_fit.set(xlabel="x", title="fits (first seed)")
    ax_fit.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "width_sweep.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    grid = jnp.linspace(0.0, 3.0, 1201)[:, None]
    ax.plot(grid, bump_threshold(grid), "k", linewidth=2, label="2 hard thresholds (exact)")
    for slope in (1.0, 10.0):
        ax.plot(grid, bump_relu(grid, slope), label=f"4 ReLUs, slope {slope:g}")
    ax.set(xlabel="x", ylabel="y", title="1[x ∈ [1, 2]] from thresholds and from ReLUs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bump.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.8))
    dvw = summary["depth_vs_width"]
    for name in ("deep", "wide"):
        plot.learning_curves(histories[name], ("val_accuracy",), ax=ax,
                             label=f"{name} ({dvw[name + '_params']} params)")
    ax.set(ylabel="validation accuracy", title="spirals: 3 hidden layers vs 1, equal parameters")
    fig.tight_layout()
    fig.savefig(out / "depth_vs_width.png", dpi=90)
    plt.close(fig)


def report(summary: dict) -> str:
    quick = summary["config"]["quick"]
    surfaces = summary["surfaces"]
    table = common.markdown_table(["set", "1 layer", "2 layers", "3 layers"],
                                  [[name] + [f"{np.mean(surfaces[name][d]):.3f}" for d in ("1", "2", "3")]
                                   for name in SURFACE_SETS])
    sweep = common.markdown_table(["hidden units", "parameters", "median squared error"],
                                  [[r["width"], r["params"], f"{r['median_mse']:.2e}"] for r in summary["width_sweep"]])
    return "\n\n".join([
        f"# Expressive power{' (quick mode)' if quick else ''}",
        f"{summary['seeds']} seeds per configuration, trained together (Adam; ReLU layers of 64 units for the "
        "decision surfaces, tanh units for |x|, ReLU for the spirals of depth against width); "
        f"{summary['seconds']:.0f} s on "
        f"{summary['environment']['cpu']} ({summary['environment']['cores']} cores).",
        "## What the numbers say", common.claims_markdown(summary["claims"]),
        "## Decision surfaces", "Mean training accuracy over the seeds:", table,
        "![decision surfaces](decision_surfaces.png)",
        "## Universality", sweep, "![width sweep](width_sweep.png)", "![bump](bump.png)",
        "## Depth against width", "![depth vs width](depth_vs_width.png)"])


def run(config: Config) -> dict:
    """Runs every part, writes the figures, report.md and summary.json (last), and returns the summary."""
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.resolved()
    seeds = list(range(config.seed, config.seed + settings["seeds"]))
    print(f"expressive power: {len(seeds)} seeds per configuration ({'quick' if config.quick else 'full'})", flush=True)
    xor = xor_study(config, seeds)
    _, _, threshold_outputs = threshold_xor()
    print(f"xor: perceptron {xor['perceptron']}, one hidden layer {xor['mlp_1_hidden']}", flush=True)
    surfaces, drawn = surface_study(config, seeds, settings["surface_epochs"])
    print("decision surfaces: " + "; ".join(f"{k} " + "/".join(f"{np.mean(v[d]):.2f}" for d in ("1", "2", "3"))
                                            for k, v in surfaces.items()), flush=True)
    sweep, fits = width_sweep(config, seeds, settings["sweep_epochs"])
    print("width sweep: " + ", ".join(f"{r['width']}: {r['median_mse']:.1e}" for r in sweep), flush=True)
    dvw, histories = depth_vs_width(config, seeds, settings["equal_params_epochs"])
    summary = {"config": common.config_dict(config), "environment": environment(config.seed), "seeds": len(seeds),
               "xor": xor, "threshold_xor": threshold_outputs, "surfaces": surfaces, "width_sweep": sweep,
               "bump": bump_study(), "deep_linear": deep_linear_equals_product(jax.random.PRNGKey(config.seed)),
               "depth_vs_width": dvw}
    summary["claims"] = judge(summary, config.quick)
    summary["seconds"] = time.perf_counter() - started
    write_figures(out, drawn, fits, summary, histories)
    return common.finish_lesson(out, summary, report(summary), SUMMARY_SCHEMA, headline(summary))


def headline(summary: dict) -> str:
    return common.claims_headline(summary["claims"], "expressive power")
