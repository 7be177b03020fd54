"""The convolution lessons: the operator, the notes' worked examples, receptive fields, LeNet-5 as in
1998, ReLU against tanh as Krizhevsky et al. measured it, and Inception's parameter economy.

Tests the lecture notes' claims with numbers:

* true convolution (the kernel flipped) as the Toronto deck defines it: (2, −1, 1) ∗ (1, 1, 2) =
  (2, 1, 4, −1, 2); commutative and distributive — CNN layers compute the cross-correlation instead;
* the worked examples, exactly: the [−1 0 1] kernel on the CMU deck's vertical-bar image, its 2×2
  average pooling, the Toronto deck's 2×2 max-pool, a 6×6×3 filter on 32×32×3 (→ 27×27), the first
  deck's 200×200 image with 400,000 hidden units (16 billion weights fully connected, 40 million locally
  connected 10×10, 1,000 shared), the CMU deck's blur and edge kernels;
* receptive fields of LeNet-5, checked by hand;
* LeNet-5 trained as the CMU deck describes it (32×32 input, tanh, average pooling, white = −0.1,
  black = 1.175) on Fashion-MNIST padded to 32×32 (MNIST itself is not available offline), next to the
  modern LeNet;
* ReLU against tanh in the same 4-layer CNN, each at its fastest learning rate from one grid of runs:
  epochs to 25 % training error (Fergus: "6x speedup vs tanh in Krizhevsky et al.");
* an Inception network (no dense layers, 1×1 reductions) against a plain CNN with a big dense layer: far
  fewer parameters (the Toronto deck: "only 2 million parameters, compared with 60 million for AlexNet")
  and test accuracy.

Learning rates are chosen by the training speed they give (the Krizhevsky claim's own criterion) and
epochs are fixed in advance; test sets are used for the final numbers only.

Command: ``python -m experiments cnn_lessons`` (full) or ``--quick`` (CI). Run time on the 2-core CPU:
quick 2.4 min, full 8.5 min (measured 2026-12-01, AMD EPYC; other processes shared the CPU during part
of the full run). Full-run verdicts: 12 of 14 judged, 10 held; ReLU reached 25 % training error at the
speed of tanh (1.00×, not 6×) and the 17k-parameter Inception net generalised worse than the 1.6 M-parameter
plain CNN after 4 epochs (0.790 vs 0.884); quick mode gives the same verdicts, leaving the Inception
generalisation unjudged. Outputs in ``results/cnn_lessons/``: summary.json, worked_examples.png,
relu_vs_tanh.png, filters.png, report.md.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxnets as jn
from experiments import common
from jaxnets import data, inspect, models, nn, optim, plot
from jaxnets.runtime import environment
from jaxnets.seeds import fit_seeds, init_runs, seed_grid, seed_keys

SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["config", "environment", "convolution", "examples", "receptive_fields", "lenet", "relu_vs_tanh",
                 "inception", "claims", "seconds"],
    "properties": {"claims": common.CLAIMS_SCHEMA},
}
# The CMU deck's image: 1s in columns 3–6 of a 10-wide image (a vertical bar), and its kernels.
BAR_ROW = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], np.float32)
EDGE_KERNEL = np.array([[-1, 0, 1]] * 3, np.float32)
MAX_POOL_EXAMPLE = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32)
BLUR_KERNEL = np.full((5, 5), 0.04, np.float32)
LAPLACE_KERNEL = np.zeros((5, 5), np.float32)
LAPLACE_KERNEL[2, 2], LAPLACE_KERNEL[1, 2], LAPLACE_KERNEL[3, 2], LAPLACE_KERNEL[2, 1], LAPLACE_KERNEL[2, 3] = 8, -2, -2, -2, -2
WHITE, BLACK = -0.1, 1.175  # LeNet's input scaling (CMU deck)


@dataclasses.dataclass
class Config:
    """See the module docstring for the command, run time and expected result."""

    quick: bool = False
    out: Path = Path("results/cnn_lessons")
    dataset: str | None = None  # None: Fashion-MNIST if installed, else digits (shapes then adapt)
    seed: int = 0
    lenet_train: int | None = None  # default 6,000 (quick) / all
    lenet_epochs: int | None = None  # default 3 / 10
    relu_train: int = 2000  # one "epoch" of the ReLU/tanh runs: this many images (fine time resolution)
    relu_epochs: int | None = None  # default 10 / 20
    relu_seeds: int | None = None  # default 1 / 2
    learning_rates: tuple[float, ...] = (0.01, 0.03, 0.1)
    inception_train: int | None = None  # default 3,000 / 20,000
    inception_epochs: int | None = None  # default 2 / 4

    def resolved(self) -> dict:
        quick = self.quick
        return {"lenet_train": self.lenet_train or (6000 if quick else None),
                "lenet_epochs": self.lenet_epochs or (3 if quick else 10),
                "relu_epochs": self.relu_epochs or (10 if quick else 20),
                "relu_seeds": self.relu_seeds or (1 if quick else 2),
                "inception_train": self.inception_train or (3000 if quick else 20000),
                "inception_epochs": self.inception_epochs or (2 if quick else 4)}


# ------------------------------------------------------------------------- the operator, examples


def convolve(a, b) -> np.ndarray:
    """The full true convolution of 1-D arrays a and b, by ``Conv1D(flip_kernel=True)``."""
    layer = nn.Conv1D(1, len(b), padding=len(b) - 1, use_bias=False, flip_kernel=True)
    y, _ = layer.apply({"w": jnp.asarray(b, jnp.float32).reshape(-1, 1, 1)}, {}, jnp.asarray(a, jnp.float32).reshape(1, -1, 1))
    return np.asarray(y).ravel()


def convolution_study() -> dict:
    a, b = [2.0, -1.0, 1.0], [1.0, 1.0, 2.0]
    correlation = nn.Conv1D(1, 3, padding=2, use_bias=False)
    crossed, _ = correlation.apply({"w": jnp.asarray(b).reshape(3, 1, 1)}, {}, jnp.asarray(a).reshape(1, 3, 1))
    rng = np.random.default_rng(0)
    f, g, h = (rng.standard_normal(6) for _ in range(3))
    return {"a_conv_b": convolve(a, b).round(6).tolist(), "cross_correlation": np.asarray(crossed).ravel().round(6).tolist(),
            "commutativity_error": float(np.max(np.abs(convolve(f, g) - convolve(g, f)))),
            "distributivity_error": float(np.max(np.abs(convolve(f, 2 * g - 3 * h) - (2 * convolve(f, g) - 3 * convolve(f, h))))),
            "numpy_error": float(np.max(np.abs(convolve(f, g) - np.convolve(f, g))))}


def conv2d_apply(kernel: np.ndarray, image: np.ndarray, **options) -> np.ndarray:
    """One 2-D kernel (kh, kw) over one image (h, w) with a bias-free Conv2D (cross-correlation)."""
    layer = nn.Conv2D(1, kernel.shape, use_bias=False, **options)
    y, _ = layer.apply({"w": jnp.asarray(kernel)[:, :, None, None]}, {}, jnp.asarray(image)[None, :, :, None])
    return np.asarray(y)[0, :, :, 0]


def examples_study() -> dict:
    bar = np.tile(BAR_ROW, (9, 1))  # the CMU deck's 9×10 image
    edges = conv2d_apply(EDGE_KERNEL, bar)
    pooled, _ = nn.AvgPool2D(2).apply({}, {}, jnp.tile(BAR_ROW, (10, 1))[None, :, :, None])
    maxed, _ = nn.MaxPool2D(2).apply({}, {}, jnp.asarray(MAX_POOL_EXAMPLE)[None, :, :, None])
    filt = nn.Conv2D(1, 6).output_shape((1, 32, 32, 3))
    dense = inspect.summary(nn.Sequential([nn.Flatten(), nn.Dense(400_000)]), (200, 200, 1), print_table=False)
    local = inspect.summary(nn.LocallyConnected2D(10, 10, padding="SAME"), (200, 200, 1), print_table=False)
    shared = inspect.summary(nn.Conv2D(10, 10, padding="SAME"), (200, 200, 1), print_table=False)
    rng = np.random.default_rng(1)
    flat = np.full((12, 12), 0.7, np.float32)
    noisy = flat + rng.standard_normal(flat.shape).astype(np.float32) * 0.1
    step = np.zeros((12, 12), np.float32)
    step[:, 6:] = 1.0
    return {
        "bar_edges": edges[0].round(6).tolist(), "bar_edges_all_rows_equal": bool(np.all(edges == edges[0])),
        "bar_average_pool": np.asarray(pooled)[0, 0, :, 0].round(6).tolist(),
        "max_pool": np.asarray(maxed)[0, :, :, 0].tolist(),
        "filter_6x6x3_output": list(filt[1:]),
        "fully_connected_weights": dense.total.weights, "locally_connected_weights": local.total.weights,
        "shared_weights": shared.total.weights, "hidden_units": shared.total.units,
        "blur_sum": float(BLUR_KERNEL.sum()), "blur_flat": float(np.max(np.abs(conv2d_apply(BLUR_KERNEL, flat) - 0.7))),
        "blur_noise_ratio": float(np.std(conv2d_apply(BLUR_KERNEL, noisy)) / np.std(noisy - flat)),
        "edge_sum": float(LAPLACE_KERNEL.sum()),
        "edge_flat": float(np.max(np.abs(conv2d_apply(LAPLACE_KERNEL, flat)))),
        "edge_step_columns": np.flatnonzero(np.abs(conv2d_apply(LAPLACE_KERNEL, step)[0]) > 1e-6).tolist(),
    }


# ------------------------------------------------------------------------------------------ data


def lenet_inputs(images: np.ndarray) -> np.ndarray:
    """LeNet's 1998 input: padded to 32×32 with background, pixels scaled so that the background
    (white paper, 0 here) is −0.1 and full ink (black, 1) is 1.175. (N, 28, 28, 1) → (N, 32, 32, 1)."""
    h, w = images.shape[1:3]
    pad_h, pad_w = (32 - h) // 2, (32 - w) // 2
    padded = np.pad(images, ((0, 0), (pad_h, 32 - h - pad_h), (pad_w, 32 - w - pad_w), (0, 0)))
    return (WHITE + padded * (BLACK - WHITE)).astype(np.float32)


# ------------------------------------------------------------------------------------------- LeNet


def lenet_study(config: Config, dataset: data.Dataset, settings: dict) -> dict:
    """The 1998 LeNet on padded, scaled inputs and the modern one on the plain images: same optimiser,
    epochs and split; best epoch by validation loss; test accuracy of that epoch."""
    out = {}
    scaled = lenet_inputs(dataset.x_train)
    out["input_mean"], out["input_std"] = float(scaled.mean()), float(scaled.std())
    for name, model, x_all, x_test in (
            ("lenet1998", models.lenet5("1998"), scaled, lenet_inputs(dataset.x_test)),
            ("modern", models.lenet5("modern"), dataset.x_train, dataset.x_test)):
        x, y, xv, yv = common.subset_split(x_all, dataset.y_train, settings["lenet_train"], seed=config.seed)
        params, state = model.init(jax.random.PRNGKey(config.seed), x[:1])
        started = time.perf_counter()
        result = jn.fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-3),
                        epochs=settings["lenet_epochs"], batch_size=128, key=jax.random.PRNGKey(config.seed + 1),
                        validation_data=(xv, yv), early_stopping=jn.EarlyStopping(patience=settings["lenet_epochs"]),
                        progress=False)
        _, accuracy = jn.evaluate(model, result.params, result.state, (x_test, dataset.y_test), loss="cross_entropy")
        out[name] = {"test_accuracy": accuracy, "best_epoch": result.best_epoch, "train_examples": len(x),
                     "seconds": time.perf_counter() - started,
                     "params": sum(inspect.count_params(result.params))}
        print(f"  {name}: test accuracy {accuracy:.4f} (best epoch {result.best_epoch})", flush=True)
    return out


# ------------------------------------------------------------------------------------ ReLU vs tanh


def krizhevsky_cnn(activation: str) -> nn.Sequential:
    """The 4-layer CNN of the ReLU-vs-tanh comparison: conv 16@5×5, act, 2×2 max-pool, conv 32@5×5, act,
    2×2 max-pool, dense 64, act, dense 10 (weights drawn for the activation: He for ReLU, Glorot for tanh)."""
    init = "he_normal" if activation == "relu" else "glorot_uniform"
    act = lambda: nn.Activation(activation)  # noqa: E731
    return nn.Sequential([nn.Conv2D(16, 5, padding=2, w_init=init), act(), nn.MaxPool2D(2),
                          nn.Conv2D(32, 5, padding=2, w_init=init), act(), nn.MaxPool2D(2), nn.Flatten(),
                          nn.Dense(64, w_init=init), act(), nn.Dense(10)])


def epochs_to(error: np.ndarray, target: float) -> float | None:
    """Epochs until the training error (epochs,) first reaches ``target``, interpolated linearly between
    the epochs around the crossing (1 when the first epoch reaches it); None if it never does."""
    below = np.flatnonzero(error <= target)
    if below.size == 0:
        return None
    e = int(below[0])
    return 1.0 if e == 0 else float(e + (error[e - 1] - target) / (error[e - 1] - error[e]))


def relu_vs_tanh(config: Config, dataset: data.Dataset, settings: dict) -> tuple[dict, dict]:
    """One grid (learning rates × seeds) per activation, SGD with momentum 0.9 (as Krizhevsky et al.);
    an epoch is ``relu_train`` images. Each activation's learning rate: the one reaching 25 % training
    error fastest (mean over seeds)."""
    x, y = dataset.x_train[:config.relu_train], dataset.y_train[:config.relu_train]
    seeds = list(range(config.seed, config.seed + settings["relu_seeds"]))
    out, histories = {}, {}
    for activation in ("relu", "tanh"):
        run_seeds, values = seed_grid(seeds, learning_rate=list(config.learning_rates))
        keys = seed_keys(run_seeds)
        model = krizhevsky_cnn(activation)
        params, state = init_runs(model, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), x[:1])
        result = fit_seeds(model, params, state, (x, y), loss="cross_entropy",
                           optimizer=optim.optimizer("momentum", 0.01, momentum=0.9), epochs=settings["relu_epochs"],
                           batch_size=100, keys=keys, hyperparams=values, on_non_finite="record", progress=False)
        error = 1 - np.asarray(result.history["train_accuracy"], np.float64)  # (epochs, runs)
        reached = [epochs_to(error[:, r], 0.25) if result.diverged_epoch[r] < 0 else None for r in range(len(run_seeds))]
        per_rate = {}
        for rate in config.learning_rates:
            mine = [reached[r] for r in range(len(run_seeds)) if values["learning_rate"][r] == rate]
            per_rate[str(rate)] = None if any(v is None for v in mine) else float(np.mean(mine))
        finite = {k: v for k, v in per_rate.items() if v is not None}
        best = min(finite, key=finite.get) if finite else None
        out[activation] = {"epochs_to_25_percent": per_rate, "best_learning_rate": best,
                           "best_epochs": finite.get(best), "final_train_error": error[-1].tolist()}
        best_runs = [r for r in range(len(run_seeds)) if best is not None and values["learning_rate"][r] == float(best)]
        histories[activation] = {"epoch": result.history["epoch"],
                                 "train_error": [row[best_runs] for row in error] if best_runs else []}
        print(f"  {activation}: epochs to 25% training error by learning rate {per_rate}", flush=True)
    relu, tanh = out["relu"]["best_epochs"], out["tanh"]["best_epochs"]
    out["speedup"] = tanh / relu if relu and tanh else None
    return out, histories


# --------------------------------------------------------------------------------------- Inception


def plain_cnn() -> nn.Sequential:
    """A plain CNN whose weights sit in a big dense layer: conv 32@3×3, ReLU, 2×2 max-pool, conv 64@3×3,
    ReLU, 2×2 max-pool, dense 512, ReLU, dense 10 (1.6 M parameters)."""
    return nn.Sequential([nn.Conv2D(32, 3, padding="SAME"), nn.Activation("relu"), nn.MaxPool2D(2),
                          nn.Conv2D(64, 3, padding="SAME"), nn.Activation("relu"), nn.MaxPool2D(2), nn.Flatten(),
                          nn.Dense(512), nn.Activation("relu"), nn.Dense(10)])


def inception_study(config: Config, dataset: data.Dataset, settings: dict) -> tuple[dict, np.ndarray]:
    """The Inception network and the plain CNN, same optimiser, epochs and split; returns their numbers
    and the plain CNN's first-layer filters."""
    x, y, xv, yv = common.subset_split(dataset.x_train, dataset.y_train, settings["inception_train"], seed=config.seed)
    out = {}
    for name, model in (("inception", models.inception_net(widths=(24, 48, 64))), ("plain", plain_cnn())):
        params, state = model.init(jax.random.PRNGKey(config.seed), x[:1])
        started = time.perf_counter()
        result = jn.fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 1e-3),
                        epochs=settings["inception_epochs"], batch_size=64, key=jax.random.PRNGKey(config.seed + 2),
                        validation_data=(xv, yv), early_stopping=jn.EarlyStopping(patience=settings["inception_epochs"]),
                        progress=False)
        _, accuracy = jn.evaluate(model, result.params, result.state, (dataset.x_test, dataset.y_test),
                                  loss="cross_entropy")
        out[name] = {"params": sum(inspect.count_params(result.params)), "test_accuracy": accuracy,
                     "val_accuracy": float(np.nanmax(result.history["val_accuracy"])), "seconds": time.perf_counter() - started}
        if name == "plain":
            filters = np.asarray(result.params["conv1"]["w"])
        print(f"  {name}: {out[name]['params']:,} parameters, test accuracy {accuracy:.4f}", flush=True)
    return out, filters


# ------------------------------------------------------------------------------------------ claims


def judge(summary: dict, quick: bool) -> list[dict]:
    claim = common.claim
    conv, ex, rf = summary["convolution"], summary["examples"], summary["receptive_fields"]
    claims = [
        claim("Convolution flips the kernel: (2, −1, 1) ∗ (1, 1, 2) = (2, 1, 4, −1, 2)", "S3", "Convolution Operator",
              np.allclose(conv["a_conv_b"], [2, 1, 4, -1, 2]),
              f"Conv1D(flip_kernel=True) gives {conv['a_conv_b']}; the cross-correlation CNN layers compute gives "
              f"{conv['cross_correlation']}"),
        claim("Convolution is commutative and distributive", "S3", "Convolution Operator",
              conv["commutativity_error"] < 1e-5 and conv["distributivity_error"] < 1e-5,
              f"|f∗g − g∗f| ≤ {conv['commutativity_error']:.1e}; |f∗(2g − 3h) − (2f∗g − 3f∗h)| ≤ "
              f"{conv['distributivity_error']:.1e} (random length-6 signals); equal to numpy.convolve to "
              f"{conv['numpy_error']:.1e}"),
        claim("The [−1 0 1] kernel on the vertical-bar image gives 0 3 3 0 0 −3 −3 0 on every row", "S2", "Convolution",
              ex["bar_edges"] == [0, 3, 3, 0, 0, -3, -3, 0] and ex["bar_edges_all_rows_equal"],
              f"row: {ex['bar_edges']}; its 2×2 average pooling (stride 2) gives rows {ex['bar_average_pool']}"),
        claim("2×2 max pooling with stride 2 of [[1,1,2,4],[5,6,7,8],[3,2,1,0],[1,2,3,4]] is [[6,8],[3,4]]", "S3",
              "Pooling", ex["max_pool"] == [[6, 8], [3, 4]], f"MaxPool2D(2) gives {ex['max_pool']}"),
        claim("One 6×6×3 filter over a 32×32×3 image gives a 27×27 output", "S0", "Convolution of images",
              ex["filter_6x6x3_output"] == [27, 27, 1], f"Conv2D(1, 6) on (32, 32, 3) → {tuple(ex['filter_6x6x3_output'])}"),
        claim("A 200×200 image with 400,000 hidden units: 16 billion weights fully connected, 40 million locally "
              "connected with 10×10 fields", "S0", "2d Convolution Layer",
              ex["fully_connected_weights"] == 16_000_000_000 and ex["locally_connected_weights"] == 40_000_000,
              f"inspect.summary: dense {ex['fully_connected_weights']:,}; locally connected 10×10 "
              f"{ex['locally_connected_weights']:,}; a convolution sharing ten 10×10 kernels over the "
              f"{ex['hidden_units']:,} units {ex['shared_weights']:,}"),
        claim("The 5×5 box kernel (0.04 everywhere) blurs: it keeps flat regions and averages noise away", "S2",
              "2-Dimensional Convolution", abs(ex["blur_sum"] - 1) < 1e-6 and ex["blur_flat"] < 1e-5 and ex["blur_noise_ratio"] < 0.3,
              f"weights sum to {ex['blur_sum']:.2f}; a flat image changes by {ex['blur_flat']:.1e}; noise std × "
              f"{ex['blur_noise_ratio']:.2f} (1/5 expected)"),
        claim("The 8/−2 kernel responds to edges only: zero on flat regions", "S2", "2-Dimensional Convolution",
              abs(ex["edge_sum"]) < 1e-6 and ex["edge_flat"] < 1e-5 and len(ex["edge_step_columns"]) == 2,
              f"weights sum to {ex['edge_sum']:.0f}; largest response on a flat image {ex['edge_flat']:.1e}; on a "
              f"vertical step it responds in output columns {ex['edge_step_columns']} (either side of the step)"),
        claim("LeNet-5's receptive fields: C1 5×5, S2 6×6, C3 14×14, S4 16×16, then the whole 32×32 image", "S3",
              "LeNet", rf == {"C1": [5, 5], "S2": [6, 6], "C3": [14, 14], "S4": [16, 16], "F5": None},
              f"inspect.summary: {rf}"),
    ]
    lenet = summary["lenet"]
    claims.append(claim("LeNet-5 (1998) reaches 98.9 % test accuracy on MNIST", "S3", "LeNet", None,
                        f"MNIST is not available offline; on Fashion-MNIST padded to 32×32 with the CMU deck's scaling "
                        f"the 1998 LeNet reaches {lenet['lenet1998']['test_accuracy']:.4f}, the modern one "
                        f"{lenet['modern']['test_accuracy']:.4f} ({lenet['lenet1998']['train_examples']:,} training "
                        "images each)"))
    claims.append(claim("Scaling white to −0.1 and black to 1.175 gives inputs of mean 0 and standard deviation 1", "S2",
                        "LeNet 5, LeCun et al 1998", None,
                        f"a property of MNIST's pixels (not available offline); on padded Fashion-MNIST the scaled "
                        f"inputs have mean {lenet['input_mean']:.3f} and standard deviation {lenet['input_std']:.3f}"))
    rvt = summary["relu_vs_tanh"]
    speedup = rvt["speedup"]

    def epochs(name):
        return "never" if rvt[name]["best_epochs"] is None else f"{rvt[name]['best_epochs']:.2f}"

    claims.append(claim("ReLU reaches 25 % training error several times faster than tanh (Krizhevsky et al.: 6×)", "S1",
                        "Non-linearities: Rectified Linear (ReLU)", None if speedup is None else speedup >= 3,
                        f"the same 4-layer CNN, each at its fastest learning rate: ReLU {epochs('relu')} "
                        f"epochs (lr {rvt['relu']['best_learning_rate']}), tanh {epochs('tanh')} "
                        f"(lr {rvt['tanh']['best_learning_rate']}) of {summary['config']['relu_train']:,} images; "
                        + ("speed-up " + (f"{speedup:.2f}×" if speedup is not None else "not measured: a run never "
                                                                                       "reached 25 %"))))
    inc = summary["inception"]
    fewer = inc["plain"]["params"] / inc["inception"]["params"]
    gap = inc["inception"]["test_accuracy"] - inc["plain"]["test_accuracy"]
    claims.append(claim("Inception has far fewer parameters than a net with big dense layers (2 M vs 60 M)", "S3",
                        "Inception", fewer >= 10,
                        f"{inc['inception']['params']:,} parameters against {inc['plain']['params']:,}: {fewer:.0f}× fewer"))
    claims.append(claim("… and generalises as well", "S3", "Inception", None if quick else gap >= -0.01,
                        f"test accuracy {inc['inception']['test_accuracy']:.4f} against {inc['plain']['test_accuracy']:.4f} "
                        f"({gap:+.4f}) after {summary['config_resolved']['inception_epochs']} epochs on "
                        f"{summary['config_resolved']['inception_train']:,} images"
                        + ("; quick mode trains too little to judge generalisation" if quick else "")))
    return claims


# ---------------------------------------------------------------------------------------- outputs


def write_figures(out: Path, histories: dict, filters: np.ndarray) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(13, 3))
    bar = np.tile(BAR_ROW, (9, 1))
    axes[0].imshow(bar, cmap="gray_r")
    axes[0].set_title("vertical bar")
    axes[1].imshow(conv2d_apply(EDGE_KERNEL, bar), cmap="RdBu_r", vmin=-3, vmax=3)
    axes[1].set_title("[−1 0 1] kernel: 0 3 3 0 0 −3 −3 0")
    rng = np.random.default_rng(1)
    noisy = np.clip(np.tile(BAR_ROW, (12, 1))[:, :10] + 0.3 * rng.standard_normal((12, 10)), -1, 2).astype(np.float32)
    axes[2].imshow(conv2d_apply(BLUR_KERNEL, noisy, padding="SAME"), cmap="gray_r")
    axes[2].set_title("box blur of a noisy bar")
    axes[3].imshow(conv2d_apply(LAPLACE_KERNEL, noisy, padding="SAME"), cmap="RdBu_r")
    axes[3].set_title("8/−2 kernel: edges")
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(out / "worked_examples.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for activation, history in histories.items():
        if history["train_error"]:
            plot.learning_curves({"epoch": history["epoch"], "train_error": history["train_error"]}, ("train_error",),
                                 ax=ax, label=activation)
    ax.axhline(0.25, color="grey", linestyle="--", linewidth=0.8)
    ax.set(ylabel="training error", title="ReLU vs tanh, each at its fastest learning rate")
    fig.tight_layout()
    fig.savefig(out / "relu_vs_tanh.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    plot.filters(filters, ax=ax, columns=16)
    ax.set_title("the plain CNN's 32 learned 3×3 filters")
    fig.tight_layout()
    fig.savefig(out / "filters.png", dpi=90)
    plt.close(fig)


def report(summary: dict) -> str:
    quick = summary["config"]["quick"]
    rows = inspect.summary(models.lenet5("1998"), (32, 32, 1), print_table=False).table()
    return "\n\n".join([
        f"# The convolution lessons{' (quick mode)' if quick else ''}",
        f"{summary['seconds']:.0f} s on {summary['environment']['cpu']} ({summary['environment']['cores']} cores), "
        f"data: {summary['dataset']}.",
        "## What the numbers say", common.claims_markdown(summary["claims"]),
        "## The worked examples", "![worked examples](worked_examples.png)",
        "## LeNet-5's table, with receptive fields", "```\n" + rows + "\n```",
        "## ReLU against tanh", "![ReLU vs tanh](relu_vs_tanh.png)",
        "## What a plain CNN learns in its first layer", "![filters](filters.png)"])


def run(config: Config) -> dict:
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.resolved()
    dataset = common.load_dataset(config.dataset)
    print(f"cnn lessons on {dataset.name} ({'quick' if config.quick else 'full'})", flush=True)
    rows = inspect.summary(models.lenet5("1998"), (32, 32, 1), print_table=False)
    fields = {name: (None if rows[name].receptive_field is None else list(rows[name].receptive_field))
              for name in ("C1", "S2", "C3", "S4", "F5")}
    summary = {"config": common.config_dict(config), "config_resolved": settings, "environment": environment(config.seed),
               "dataset": dataset.name, "convolution": convolution_study(), "examples": examples_study(),
               "receptive_fields": fields}
    print("LeNet-5, 1998 and modern:", flush=True)
    summary["lenet"] = lenet_study(config, dataset, settings)
    print("ReLU vs tanh:", flush=True)
    summary["relu_vs_tanh"], histories = relu_vs_tanh(config, dataset, settings)
    print("Inception vs a plain CNN:", flush=True)
    summary["inception"], filters = inception_study(config, dataset, settings)
    summary["claims"] = judge(summary, config.quick)
    write_figures(out, histories, filters)
    summary["seconds"] = time.perf_counter() - started
    return common.finish_lesson(out, summary, report(summary), SUMMARY_SCHEMA, headline(summary))


def headline(summary: dict) -> str:
    return common.claims_headline(summary["claims"], "convolutions")
