"""Optimisation: optimizers, learning rates, annealing and batch size, as the lecture notes teach them.

Tests the notes' claims about training with numbers and pictures:

* seven optimizers (SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam, Adadelta) on the Fashion-MNIST MLP,
  each over a learning-rate grid of seven half-decades × seeds in one ``fit_seeds`` call: loss curves with
  seed bands, the best rate per optimizer (chosen on validation) and its test accuracy; "learning rate
  has a dramatic effect", "training diverges: learning rate may be too large" (diverged runs are
  recorded, not a crash), "start with the largest value for which the training loss decreases", "fancier
  alternatives to SGD can significantly improve training", momentum "helps convergence" (Fergus lecture
  2; the multi-layer NN slides);
* AdaGrad's per-weight learning rate decreases monotonically and it stops making progress, RMSProp's
  moving average does not (Fergus);
* the elliptical quadratic bowl: gradient descent with a small and a too-large step, momentum and
  Nesterov, drawn with ``plot.trajectories`` (oscillation across the valley; no single rate suits every
  direction; momentum converges in fewer steps);
* annealing: constant against step, cosine and reduce-on-plateau ("train until validation error
  flattens out, divide η"); SGD with batch size 1 converges only when its rate decreases (the
  architectures deck);
* batch size: the noise of a mini-batch gradient against the full gradient; GD against SGD against
  mini-batch at equal epochs; the linear scaling rule with warm-up (Goyal et al.).

Learning rates, the best epoch and every choice are made on a validation split of the training set;
test accuracy is reported for the chosen runs only.

Command: ``python -m experiments optimizers`` (full: 18,000 training images, 3 seeds) or ``--quick`` (CI:
4,500 images, 5 epochs). Run time on the 2-core CPU (AMD EPYC, 2026-12-01): quick 2 min 13 s wall, full
5 min 54 s wall (9.5 min of CPU). Expected result (full run): 12 of the 15 claims held. Every optimizer's
failing rates lie above its working ones; AdaGrad, RMSProp and Adam (and momentum) reach a lower training
loss than SGD; AdaGrad's rate decays and its progress stalls; the bowl shows the zig-zag just below 2/b and
momentum's speed-up; annealing and the notes' recipe match or beat the best constant rate; the batch
claims hold. Not held: among the rates that train, validation accuracy spreads over less than 5 points
for SGD, momentum, Nesterov and Adam (1.8–2.4); SGD with batch 1 ends no lower with a decaying rate
(0.3190 vs 0.3136); the linear scaling rule does not beat the unscaled rate at batch 1,024 clearly. Quick
mode gives the full verdict on 11 claims and leaves the four about long training unjudged.

Outputs in ``results/optimizers/``: summary.json, curves.png, lr_sweep.png, bowl.png, adagrad.png,
annealing.png, batch_size.png, scaling.png, report.md.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from experiments import common
from jaxnets import models, optim, plot
from jaxnets.monitors import ReduceOnPlateau
from jaxnets.runtime import environment
from jaxnets.seeds import fit_seeds, init_runs, seed_grid, seed_keys
from jaxnets.train import TrainState, make_epoch_fn, make_evaluate_runs_fn, value_and_grad_fn

claim = common.claim
SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["config", "environment", "grid", "adagrad", "bowl", "annealing", "gradient_noise", "batch_size",
                 "sgd_decay", "scaling", "claims", "seconds"],
    "properties": {"claims": common.CLAIMS_SCHEMA},
}
# Seven half-decades per optimizer, fixed before any run, each reaching rates that fail.
GRIDS: dict[str, tuple[float, ...]] = {
    "sgd": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    "momentum": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
    "nesterov": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
    "adagrad": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    "rmsprop": (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1),
    "adam": (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1),
    "adadelta": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
}
SGD_FAMILY = ("sgd", "momentum", "nesterov")
ADAPTIVE = ("adagrad", "rmsprop", "adam")
PROBE_EPOCHS = 5  # "the training loss decreases": it falls at every one of the first 5 epochs
OUTPUT_LAYER = "dense2"  # the MLP's output layer (models.mlp names its layers dense1 … denseL)
BATCH = 64  # the mini-batch of the grid, annealing and the base of the scaling rule
BOWL_CURVATURES = (1.0, 100.0)  # f(w) = ½(a·w₁² + b·w₂²): condition number 100, axes 10 : 1
BOWL_START = (-5.0, 0.8)
BOWL_STEPS = 100


@dataclasses.dataclass
class Config:
    """See the module docstring for the command and outputs."""

    quick: bool = False
    out: Path = Path("results/optimizers")
    dataset: str | None = None  # default: Fashion-MNIST when installed, else the digits
    seeds: int | None = None  # default 2 (quick) / 3 (full)
    seed: int = 0
    hidden: int = 128  # units of the MLP's one hidden ReLU layer
    train_examples: int | None = None  # subset of the training set (10 % of it for validation); default 5000 / 20000
    epochs: int | None = None  # of the grid and annealing; default 5 / 12
    adagrad_epochs: int | None = None  # default 10 / 30
    batch_epochs: int | None = None  # of GD vs SGD vs mini-batch and of the scaling rule; default 3 / 8
    scaling_batches: tuple[int, ...] | None = None  # default (32, 128, 512) / (32, 64, 128, 256, 512, 1024)

    def resolved(self) -> dict:
        quick = self.quick
        return {"seeds": self.seeds or (2 if quick else 3),
                "train_examples": self.train_examples or (5000 if quick else 20000),
                "epochs": self.epochs or (5 if quick else 12),
                "adagrad_epochs": self.adagrad_epochs or (10 if quick else 30),
                "batch_epochs": self.batch_epochs or (3 if quick else 8),
                "scaling_batches": self.scaling_batches or ((32, 128, 512) if quick else (32, 64, 128, 256, 512, 1024))}


def mlp(config: Config):
    """The Fashion-MNIST MLP of every part: 784 → hidden ReLU → 10 logits."""
    return models.mlp([config.hidden, 10])


class Task:
    """The data of every MLP part: a training subset with its validation split, and the test set."""

    def __init__(self, config: Config, settings: dict):
        dataset = common.load_dataset(config.dataset)
        self.name = dataset.name
        self.x, self.y, self.xv, self.yv = common.subset_split(dataset.x_train, dataset.y_train,
                                                               settings["train_examples"], seed=config.seed)
        self.x_test, self.y_test = dataset.x_test, dataset.y_test
        self.model = mlp(config)
        self.evaluate = make_evaluate_runs_fn(self.model, "cross_entropy")

    def train(self, optimizer, *, seeds: list[int], epochs: int, batch_size: int = BATCH, **options):
        """Runs of the MLP, one per seed in ``seeds`` (the same seed gives the same initial weights),
        trained together; returns ``(SeedsResult, initial training loss per run)``."""
        keys = seed_keys(seeds)
        params, state = init_runs(self.model, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), self.x[:1])
        initial_loss, _ = self.evaluate(params, state, jnp.asarray(self.x), jnp.asarray(self.y))
        result = fit_seeds(self.model, params, state, (self.x, self.y), loss="cross_entropy", optimizer=optimizer,
                           epochs=epochs, batch_size=batch_size, keys=keys, validation_data=(self.xv, self.yv),
                           on_non_finite="record", progress=False, **options)
        return result, np.asarray(initial_loss)

    def test_accuracy(self, result, runs: list[int]) -> list[float]:
        """Test accuracy of the chosen runs (after their last epoch)."""
        params, state = jax.tree.map(lambda a: a[np.asarray(runs)], (result.params, result.state))
        _, accuracy = self.evaluate(params, state, jnp.asarray(self.x_test), jnp.asarray(self.y_test))
        return [float(a) for a in accuracy]


def final(history: dict, key: str) -> np.ndarray:
    """The last epoch's value of ``key`` for each run: (runs,)."""
    return np.asarray(history[key], np.float64)[-1]


def decreased(result, initial_loss: np.ndarray) -> np.ndarray:
    """Per run: whether its training loss decreases — stays finite, falls from each of the first
    PROBE_EPOCHS epochs to the next (the mean over each epoch's batches: a short probe, the same in quick and
    full mode) and ends below the loss of the initial weights. (runs,) bool."""
    losses = np.asarray(result.history["train_loss"], np.float64)  # (epochs, runs)
    probe = losses[:PROBE_EPOCHS]
    falling = np.all(np.diff(probe, axis=0) < 0, axis=0) if len(probe) > 1 else np.ones(losses.shape[1], bool)
    return (np.all(np.isfinite(losses), axis=0) & (np.asarray(result.diverged_epoch) < 0) & falling
            & (losses[-1] < initial_loss))


def mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    return float(np.mean(values)), float(np.std(values))


def noise(a, b) -> float:
    """The standard error of the difference of two seed means."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(a.var() / len(a) + b.var() / len(b)))


def clearly(difference: float, noise_level: float, margin: float = 0.0) -> bool:
    """Whether a difference of seed means exceeds twice its noise (and ``margin``)."""
    return abs(difference) > 2 * noise_level + margin


# ------------------------------------------------------------------------------- the optimizer grid


def grid_study(task: Task, seeds: list[int], epochs: int) -> tuple[dict, dict]:
    """Every optimizer over its learning-rate grid × seeds, one ``fit_seeds`` call each. Returns the
    numbers by optimizer and the histories (for the curves)."""
    out, histories = {}, {}
    for name, rates in GRIDS.items():
        run_seeds, hyper = seed_grid(seeds, learning_rate=rates)
        started = time.perf_counter()
        result, initial = task.train(optim.optimizer(name, rates[0]), seeds=run_seeds, epochs=epochs,
                                     hyperparams=hyper)
        ok = decreased(result, initial)
        val = final(result.history, "val_accuracy")
        rows = []
        for i, rate in enumerate(rates):
            runs = [r for r, lr in enumerate(hyper["learning_rate"]) if lr == rate]
            rows.append({"learning_rate": rate, "runs": runs,
                         "val_accuracy": [float(v) if np.isfinite(v) else 0.0 for v in val[runs]],
                         "train_loss": [float(v) for v in final(result.history, "train_loss")[runs]],
                         "decreased": [bool(v) for v in ok[runs]],
                         "non_finite_epoch": [int(v) for v in np.asarray(result.diverged_epoch)[runs]]})
        best = max(range(len(rates)), key=lambda i: np.mean(rows[i]["val_accuracy"]))
        stable = [i for i, row in enumerate(rows) if all(row["decreased"])]
        out[name] = {"rows": rows, "best_learning_rate": rates[best], "best_index": best,
                     "largest_decreasing_index": max(stable) if stable else None,
                     "largest_decreasing_learning_rate": rates[max(stable)] if stable else None,
                     "test_accuracy": task.test_accuracy(result, rows[best]["runs"]),
                     "seconds": time.perf_counter() - started}
        histories[name] = {k: np.asarray(v) for k, v in result.history.items()}
        failed = [row["learning_rate"] for row in rows if not all(row["decreased"])]
        print(f"  {name:<9} best lr {rates[best]:g}: val {np.mean(rows[best]['val_accuracy']):.3f}, test "
              f"{np.mean(out[name]['test_accuracy']):.3f}; did not decrease the loss at {failed}", flush=True)
    return out, histories


# ------------------------------------------------------------------------------------------ AdaGrad


def effective_rate(name: str, opt_state, learning_rate: float, layer: str) -> float:
    """The median over ``layer``'s weights (a layer every example sends gradient to) of the step AdaGrad or
    RMSProp takes per unit of gradient: lr / √(Σg²) for AdaGrad (its accumulator), lr / (√(EMA g²) + ε)
    for RMSProp."""
    if name == "adagrad":
        accumulated = optax.tree_utils.tree_get(opt_state, "sum_of_squares")[layer]["w"]
        return float(jnp.median(learning_rate / jnp.sqrt(accumulated)))
    averaged = optax.tree_utils.tree_get(opt_state, "nu")[layer]["w"]
    return float(jnp.median(learning_rate / (jnp.sqrt(averaged) + 1e-8)))


def adagrad_study(task: Task, grid: dict, seed: int, epochs: int) -> dict:
    """AdaGrad and RMSProp, each at its best rate of the grid, one run each, epoch by epoch: training
    loss (mean over the epoch's batches) and the median effective learning rate at the end of every epoch."""
    out = {}
    for name in ("adagrad", "rmsprop"):
        rate = grid[name]["best_learning_rate"]
        optimizer = optim.optimizer(name, rate)
        epoch = jax.jit(make_epoch_fn(task.model, "cross_entropy", optimizer, batch_size=BATCH))
        params, state = task.model.init(jax.random.fold_in(jax.random.PRNGKey(seed), 1), task.x[:1])
        ts = TrainState(params, state, optimizer.init(params))
        x, y = jnp.asarray(task.x), jnp.asarray(task.y)
        losses, rates = [], []
        for e in range(epochs):
            ts, (batch_losses, _) = epoch(ts, x, y, jax.random.fold_in(jax.random.PRNGKey(seed), e))
            losses.append(float(jnp.mean(batch_losses)))
            rates.append(effective_rate(name, ts.opt_state, rate, OUTPUT_LAYER))
        out[name] = {"learning_rate": rate, "train_loss": losses, "effective_learning_rate": rates}
    return out


def progress_ratio(losses) -> float:
    """Loss decrease over the second half of training divided by that over the first half."""
    losses = np.asarray(losses)
    half = len(losses) // 2
    return float((losses[half - 1] - losses[-1]) / max(losses[0] - losses[half - 1], 1e-12))


# --------------------------------------------------------------------------------------- the bowl


def bowl(w1, w2):
    """The elliptical quadratic bowl ½(a·w₁² + b·w₂²)."""
    a, b = BOWL_CURVATURES
    return 0.5 * (a * w1 ** 2 + b * w2 ** 2)


def descend(optimizer: optax.GradientTransformation, steps: int = BOWL_STEPS) -> np.ndarray:
    """The path of ``optimizer`` on the bowl from BOWL_START: (steps + 1, 2) points."""
    return np.asarray(descend_path(optimizer, steps))


def descend_path(optimizer: optax.GradientTransformation, steps: int = BOWL_STEPS) -> jax.Array:
    """:func:`descend` as a traceable function (its optimizer's rates may be traced, to ``vmap`` over them)."""
    grad = jax.grad(lambda w: bowl(w[0], w[1]))

    def step(carry, _):
        w, state = carry
        updates, state = optimizer.update(grad(w), state, w)
        w = optax.apply_updates(w, updates)
        return (w, state), w

    w0 = jnp.asarray(BOWL_START, jnp.float32)
    _, path = jax.lax.scan(step, (w0, optimizer.init(w0)), None, length=steps)
    return jnp.concatenate([w0[None], path])


def path_numbers(path: np.ndarray) -> dict:
    """Final loss, the steps after which the loss stays below 10⁻³ of the starting loss (None: not within the
    path), and how often w₂ changes sign (the zig-zag across the valley)."""
    with np.errstate(over="ignore", invalid="ignore"):  # diverging paths (a grid searched for the best rate)
        losses = np.asarray(bowl(np.float64(path[:, 0]), np.float64(path[:, 1])))
    above = np.nonzero(~(losses <= 1e-3 * losses[0]))[0]  # NaN counts as above
    settled = int(above[-1]) + 1 if len(above) else 0
    return {"final_loss": float(losses[-1]), "steps_to_1e-3": settled if settled < len(losses) else None,
            "w2_sign_changes": int(np.sum(np.sign(path[1:, 1]) != np.sign(path[:-1, 1]))),
            "diverged": bool(not np.isfinite(losses[-1]) or losses[-1] > losses[0])}


def bowl_study() -> tuple[dict, dict]:
    """Paths on the bowl: GD with a small step (½ of 1/b), a too-large one (0.975 · 2/b, just stable on the
    steep axis), one beyond 2/b, the best single rate of a fine grid; momentum and Nesterov (0.9) at the
    best rate of the same grid; AdaGrad. Returns the numbers and the paths."""
    a, b = BOWL_CURVATURES
    rates = np.round(np.linspace(0.002, 1.95 / b, 40), 5)

    def best(make):
        """The rate of the grid that gets below 10⁻³ of the starting loss for good in the fewest steps (the
        lowest final loss when none does)."""
        paths = np.asarray(jax.jit(jax.vmap(lambda r: descend_path(make(r))))(jnp.asarray(rates, jnp.float32)))
        numbers = [path_numbers(p) for p in paths]
        costs = [(BOWL_STEPS + 1 if n["steps_to_1e-3"] is None else n["steps_to_1e-3"], np.nan_to_num(
            n["final_loss"], nan=np.inf)) for n in numbers]
        return float(rates[min(range(len(rates)), key=lambda i: costs[i])])

    best_gd, best_momentum = best(optax.sgd), best(lambda r: optax.sgd(r, momentum=0.9))
    best_nesterov = best(lambda r: optax.sgd(r, momentum=0.9, nesterov=True))
    runs = {  # name → (label, optimizer)
        "gd_small": (f"GD, small step {0.5 / b:.3g}", optax.sgd(0.5 / b)),
        "gd_too_large": (f"GD, too large {1.95 / b:.3g}", optax.sgd(1.95 / b)),
        "gd_beyond": (f"GD, beyond 2/b: {2.1 / b:.3g}", optax.sgd(2.1 / b)),
        "gd_best": (f"GD, best single rate {best_gd:.3g}", optax.sgd(best_gd)),
        "momentum": (f"momentum 0.9, rate {best_momentum:.3g}", optax.sgd(best_momentum, momentum=0.9)),
        "nesterov": (f"Nesterov 0.9, rate {best_nesterov:.3g}",
                     optax.sgd(best_nesterov, momentum=0.9, nesterov=True)),
        "adagrad": ("AdaGrad, rate 1", optax.adagrad(1.0)),
    }
    paths = {name: descend(opt) for name, (_, opt) in runs.items()}
    numbers = {name: {"label": runs[name][0], **path_numbers(p)} for name, p in paths.items()}
    return {"curvatures": list(BOWL_CURVATURES), "start": list(BOWL_START), "steps": BOWL_STEPS,
            "rate_grid": [float(rates[0]), float(rates[-1]), len(rates)],
            "best_rates": {"gd": best_gd, "momentum": best_momentum, "nesterov": best_nesterov},
            "paths": numbers}, paths


# ---------------------------------------------------------------------------------------- annealing


def annealing_study(task: Task, grid: dict, seeds: list[int], epochs: int) -> tuple[dict, dict]:
    """SGD with momentum: a constant rate (the grid's best) against schedules that start from the largest
    rate of the grid for which the training loss decreased — constant, step (×0.3 at ½ and ¾ of training),
    cosine to 0, and reduce-on-plateau (×0.3 when the validation loss has not improved for one epoch)."""
    best = grid["momentum"]["best_learning_rate"]
    start = grid["momentum"]["largest_decreasing_learning_rate"] or best
    steps = len(task.x) // BATCH
    schedules = {
        f"constant {best:g} (best of the grid)": (optim.optimizer("momentum", best), {}),
        f"constant {start:g}": (optim.optimizer("momentum", start), {}),
        f"step from {start:g}": (optim.optimizer("momentum", optim.schedule(
            "step", start, steps_per_epoch=steps, epochs=(epochs // 2, (3 * epochs) // 4), factor=0.3)), {}),
        f"cosine from {start:g}": (optim.optimizer("momentum", optim.schedule(
            "cosine", start, steps_per_epoch=steps, epochs=epochs)), {}),
        f"plateau from {start:g}": (optim.optimizer("momentum", start),
                                    {"reduce_on_plateau": ReduceOnPlateau(factor=0.3, patience=1)}),
    }
    out, histories = {"start_learning_rate": start, "best_constant_learning_rate": best, "runs": {}}, {}
    for name, (optimizer, options) in schedules.items():
        result, initial = task.train(optimizer, seeds=seeds, epochs=epochs, **options)
        out["runs"][name] = {"val_accuracy": [float(v) for v in final(result.history, "val_accuracy")],
                             "train_loss": [float(v) for v in final(result.history, "train_loss")],
                             "decreased": [bool(v) for v in decreased(result, initial)],
                             "test_accuracy": task.test_accuracy(result, list(range(len(seeds))))}
        histories[name] = {k: np.asarray(v) for k, v in result.history.items()}
    return out, histories


def sgd_decay_study(task: Task, batch: dict, seeds: list[int], epochs: int) -> dict:
    """SGD with batch size 1 at its best constant rate (from the batch-size study) against the same start
    with a cosine decay to 0: final training loss over the whole training subset."""
    rate = batch["1"]["best_learning_rate"]
    steps = len(task.x)
    out = {"learning_rate": rate}
    for name, lr in (("constant", rate),
                     ("cosine", optim.schedule("cosine", rate, steps_per_epoch=steps, epochs=epochs))):
        result, _ = task.train(optim.optimizer("sgd", lr), seeds=seeds, epochs=epochs, batch_size=1)
        loss, accuracy = task.evaluate(result.params, result.state, jnp.asarray(task.x), jnp.asarray(task.y))
        out[name] = {"train_loss": [float(v) for v in loss], "val_accuracy":
                     [float(v) for v in final(result.history, "val_accuracy")]}
    return out


# --------------------------------------------------------------------------------------- batch size


def gradient_noise_study(task: Task, seed: int, batches=(1, 8, 64, 512), draws: int = 64) -> dict:
    """Cosine similarity between mini-batch gradients and the full training-set gradient at the initial
    weights, ``draws`` random batches per batch size: {batch size: [mean, std]}."""
    model = task.model
    params, state = model.init(jax.random.fold_in(jax.random.PRNGKey(seed), 1), task.x[:1])
    grad_fn = value_and_grad_fn(model, "cross_entropy", train=False)
    flat = lambda g: jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(g)])  # noqa: E731
    x, y = jnp.asarray(task.x), jnp.asarray(task.y)
    full = flat(grad_fn(params, state, x, y)[1])

    @jax.jit
    def cosines(idx):  # idx: (draws, B)
        def one(i):
            g = flat(grad_fn(params, state, x[i], y[i])[1])
            return jnp.dot(g, full) / (jnp.linalg.norm(g) * jnp.linalg.norm(full))
        return jax.lax.map(one, idx)

    rng = np.random.default_rng(seed)
    out = {}
    for b in batches:
        idx = np.stack([rng.choice(len(task.x), b, replace=False) for _ in range(draws)])
        c = np.asarray(cosines(jnp.asarray(idx)))
        out[str(b)] = [float(c.mean()), float(c.std())]
    return out


def batch_size_study(task: Task, seeds: list[int], epochs: int) -> tuple[dict, dict]:
    """SGD (batch 1), mini-batch (64) and full-batch GD for the same number of epochs, each over its own
    grid of four rates (the best chosen on validation)."""
    n = len(task.x)
    grids = {"1": (0.001, 0.003, 0.01, 0.03), str(BATCH): (0.01, 0.03, 0.1, 0.3), "full": (0.1, 0.3, 1.0, 3.0)}
    out, histories = {}, {}
    for name, rates in grids.items():
        size = n if name == "full" else int(name)
        run_seeds, hyper = seed_grid(seeds, learning_rate=rates)
        started = time.perf_counter()
        result, _ = task.train(optim.optimizer("sgd", rates[0]), seeds=run_seeds, epochs=epochs, batch_size=size,
                               hyperparams=hyper)
        epoch_seconds = np.asarray(result.history["seconds"])
        val = np.nan_to_num(final(result.history, "val_accuracy"))
        by_rate = [val[[r for r, lr in enumerate(hyper["learning_rate"]) if lr == rate]] for rate in rates]
        best = int(np.argmax([v.mean() for v in by_rate]))
        runs = [r for r, lr in enumerate(hyper["learning_rate"]) if lr == rates[best]]
        out[name] = {"batch_size": size, "updates_per_epoch": n // size, "rates": list(rates),
                     "best_learning_rate": rates[best], "val_accuracy": [float(v) for v in by_rate[best]],
                     "val_accuracy_by_rate": [float(v.mean()) for v in by_rate],
                     "seconds_per_epoch": float(np.median(epoch_seconds[1:] if epochs > 1 else epoch_seconds)),
                     "seconds": time.perf_counter() - started}
        histories[name] = {k: np.asarray(v)[:, runs] if np.ndim(v) == 2 else np.asarray(v)
                           for k, v in result.history.items()}
    return out, histories


def scaling_study(task: Task, grid: dict, seeds: list[int], epochs: int, batches) -> dict:
    """SGD with momentum and a one-epoch linear warm-up at batch sizes ``batches``, for the same number of
    epochs: the rate scaled linearly with the batch (base: the grid's best rate at batch 64) against the
    base rate unscaled."""
    base = grid["momentum"]["best_learning_rate"]
    out = {"base_learning_rate": base, "base_batch_size": BATCH, "batches": list(batches), "scaled": {},
           "unscaled": {}}
    for b in batches:
        steps = len(task.x) // b
        for name, rate in (("scaled", optim.scale_learning_rate(base, b, BATCH)), ("unscaled", base)):
            lr = optim.schedule("warmup", rate, steps_per_epoch=steps, warmup_epochs=1)
            result, initial = task.train(optim.optimizer("momentum", lr), seeds=seeds, epochs=epochs, batch_size=b)
            out[name][str(b)] = {"learning_rate": rate, "decreased": [bool(v) for v in decreased(result, initial)],
                                 "val_accuracy": [float(v) for v in np.nan_to_num(final(result.history,
                                                                                         "val_accuracy"))]}
    return out


# ------------------------------------------------------------------------------------------ verdicts


def judge(summary: dict, quick: bool) -> list[dict]:
    """The notes' claims with the verdicts of these numbers (None: not judged, only where the difference
    is within the seed noise in quick mode)."""
    claims = []
    grid = summary["grid"]

    def long_run(held: bool | None) -> bool | None:
        """A claim about the effect of training longer or annealing, which quick mode's few epochs cannot judge
        (its verdicts flipped in the full run: README)."""
        return None if quick else held

    def undecided(held_if_clear: bool, clear: bool):
        return held_if_clear if clear else (None if quick else False)

    spreads = {}
    for name, g in grid.items():
        ok = [np.mean(row["val_accuracy"]) for row in g["rows"] if all(row["decreased"])]
        spreads[name] = (max(ok) - min(ok)) if ok else 0.0
    claims.append(claim(
        "The learning rate has a dramatic effect on the resulting model: among the rates that train at all, "
        "validation accuracy still ranges over more than 5 points for every optimizer", "S1",
        "Setting the Learning Rate", long_run(min(spreads.values()) > 0.05),
        "; ".join(f"{n} {s:.3f}" for n, s in spreads.items()) + " (max − min mean validation accuracy over the "
        "grid's rates whose training loss decreased)"))

    ordered, failing = {}, {}
    for name, g in grid.items():
        ok = [all(row["decreased"]) for row in g["rows"]]
        failing[name] = [row["learning_rate"] for row in g["rows"] if not all(row["decreased"])]
        first_fail = ok.index(False) if False in ok else len(ok)
        ordered[name] = not any(ok[first_fail:])
    never = [n for n in grid if not failing[n]]
    claims.append(claim(
        "Training fails when the learning rate is too large: in every optimizer's grid, each rate at which the "
        "training loss does not decrease lies above every rate at which it does", "S1",
        "Debugging Training What to do when its not working", all(ordered.values()) and len(never) < len(grid),
        "; ".join(f"{n}: fails at {failing[n] or 'none'}" for n in grid)
        + (f". No rate of the grid failed for {', '.join(never)} (its step per weight is bounded by the rate)"
           if never else "")
        + ". Failing runs are recorded, not raised: " + ", ".join(
            f"{n} {sum(1 for row in grid[n]['rows'] for e in row['non_finite_epoch'] if e >= 0)}" for n in grid)
        + " runs reached non-finite values"))

    def best_loss(name):
        g = grid[name]
        return np.asarray(g["rows"][g["best_index"]]["train_loss"])

    sgd_loss = best_loss("sgd")
    better = {}
    for name in ADAPTIVE:
        d = float(np.mean(sgd_loss) - np.mean(best_loss(name)))
        better[name] = (d, clearly(d, noise(sgd_loss, best_loss(name))))
    adaptive_held = all(d > 0 for d, _ in better.values())
    claims.append(claim(
        "Fancier alternatives to SGD (AdaGrad, Adam, …) can significantly improve training: at each optimizer's "
        "best rate, AdaGrad, RMSProp and Adam reach a lower training loss than plain SGD in the same epochs", "S0",
        "Common training issues", undecided(adaptive_held, all(c for _, c in better.values()) or not adaptive_held),
        f"final training loss SGD {np.mean(sgd_loss):.4f}; " + "; ".join(
            f"{n} {np.mean(best_loss(n)):.4f} (lower by {d:+.4f}{'' if c else ', within noise'})"
            for n, (d, c) in better.items())))

    m_loss = best_loss("momentum")
    d = float(np.mean(sgd_loss) - np.mean(m_loss))
    claims.append(claim(
        "Momentum (0.9) smooths the updates and helps convergence: at each one's best rate, SGD with momentum "
        "reaches a lower training loss than plain SGD in the same epochs", "S1", "Stochastic Gradient Descent (SGD)",
        undecided(d > 0, clearly(d, noise(sgd_loss, m_loss))),
        f"final training loss {np.mean(m_loss):.4f} (momentum, rate {grid['momentum']['best_learning_rate']}) vs "
        f"{np.mean(sgd_loss):.4f} (SGD, rate {grid['sgd']['best_learning_rate']}); difference {d:+.4f}, noise "
        f"{noise(sgd_loss, m_loss):.4f}"))

    ada = summary["adagrad"]
    rates = np.asarray(ada["adagrad"]["effective_learning_rate"])
    rms_rates = np.asarray(ada["rmsprop"]["effective_learning_rate"])
    ada_ratio, rms_ratio = progress_ratio(ada["adagrad"]["train_loss"]), progress_ratio(ada["rmsprop"]["train_loss"])
    claims.append(claim(
        "AdaGrad's learning rate decreases monotonically (RMSProp's moving average lets it rise again)", "S1",
        "AdaGrad", bool(np.all(np.diff(rates) <= 0) and np.any(np.diff(rms_rates) > 0)),
        f"median effective rate lr/√Σg² over the output layer's weights at the end of each epoch: {rates[0]:.3g} → {rates[-1]:.3g} "
        f"({rates[0] / rates[-1]:.1f}× smaller; rises in {int(np.sum(np.diff(rates) > 0))} of {len(rates) - 1} "
        f"epochs); RMSProp's lr/√EMA(g²): {rms_rates[0]:.3g} → {rms_rates[-1]:.3g} (rises in "
        f"{int(np.sum(np.diff(rms_rates) > 0))} of {len(rms_rates) - 1} epochs)"))
    claims.append(claim(
        "AdaGrad stops making progress after a while: over the second half of training its training loss falls "
        "by a smaller fraction of its first-half decrease than RMSProp's does", "S1", "AdaGrad",
        ada_ratio < rms_ratio,
        f"second-half / first-half loss decrease: AdaGrad {ada_ratio:.3f} (final loss "
        f"{ada['adagrad']['train_loss'][-1]:.4f}) vs RMSProp {rms_ratio:.3f} (final loss "
        f"{ada['rmsprop']['train_loss'][-1]:.4f}), each at its best rate of the grid"))

    paths = summary["bowl"]["paths"]
    small, large, beyond = paths["gd_small"], paths["gd_too_large"], paths["gd_beyond"]
    best_gd, momentum = paths["gd_best"], paths["momentum"]
    steps = summary["bowl"]["steps"]
    claims.append(claim(
        "On a highly elliptical bowl it is easy to have a learning rate too large and oscillate: just below 2/b "
        "gradient descent zig-zags across the valley at every step, beyond it the path diverges, while a small "
        "step does not zig-zag", "S1", "Setting the Learning Rate",
        large["w2_sign_changes"] >= 0.9 * steps and beyond["diverged"] and small["w2_sign_changes"] == 0,
        f"w₂ changes sign {large['w2_sign_changes']} times in {steps} steps at 0.975·2/b, "
        f"{small['w2_sign_changes']} times at ½·1/b; beyond 2/b the loss ends at {beyond['final_loss']:.3g} "
        f"(start {bowl(*BOWL_START):.3g})"))
    claims.append(claim(
        "It is difficult to have a single learning rate that works for all dimensions: the best single rate "
        "(stable on the steep axis) needs many steps along the shallow one", "S1", "Setting the Learning Rate",
        best_gd["steps_to_1e-3"] is None or best_gd["steps_to_1e-3"] >= 10,
        f"best single rate {summary['bowl']['best_rates']['gd']:.3g}: "
        f"{best_gd['steps_to_1e-3'] or f'> {steps}'} steps until the loss stays below 10⁻³ of the start on a bowl with curvatures "
        f"{BOWL_CURVATURES[0]:g} and {BOWL_CURVATURES[1]:g}; a rate 1/curvature per axis would take one step"))
    m_steps, g_steps = momentum["steps_to_1e-3"], best_gd["steps_to_1e-3"]
    claims.append(claim(
        "Momentum damps oscillations in directions of high curvature and builds up speed along a gentle, "
        "consistent gradient: at its best rate it reaches the bottom of the bowl in fewer steps than the best "
        "plain gradient descent", "S1", "Stochastic Gradient Descent (SGD)",
        m_steps is not None and (g_steps is None or m_steps < g_steps),
        f"steps until the loss stays below 10⁻³ of the start: momentum {m_steps or f'> {steps}'} (rate "
        f"{summary['bowl']['best_rates']['momentum']:.3g}), GD {g_steps or f'> {steps}'} (rate "
        f"{summary['bowl']['best_rates']['gd']:.3g}); w₂ sign changes {momentum['w2_sign_changes']} vs "
        f"{large['w2_sign_changes']} for GD at 0.975·2/b"))

    ann = summary["annealing"]["runs"]
    constant = next(v for k, v in ann.items() if "best of the grid" in k)
    annealed = {k: v for k, v in ann.items() if not k.startswith("constant")}
    top_name = max(annealed, key=lambda k: np.mean(annealed[k]["val_accuracy"]))
    d = float(np.mean(annealed[top_name]["val_accuracy"]) - np.mean(constant["val_accuracy"]))
    claims.append(claim(
        "A constant learning rate is typically not optimal: the best annealed schedule (step, cosine or "
        "reduce-on-plateau) beats the best constant rate on validation", "S1", "Annealing of Learning Rate",
        long_run(d > 0 and clearly(d, noise(annealed[top_name]["val_accuracy"], constant["val_accuracy"]))),
        f"validation accuracy: {top_name} {np.mean(annealed[top_name]['val_accuracy']):.4f} vs constant "
        f"{np.mean(constant['val_accuracy']):.4f} (difference {d:+.4f}, noise "
        f"{noise(annealed[top_name]['val_accuracy'], constant['val_accuracy']):.4f}); " + "; ".join(
            f"{k} {np.mean(v['val_accuracy']):.4f}" for k, v in ann.items())))

    plateau = next(v for k, v in ann.items() if k.startswith("plateau"))
    d = float(np.mean(plateau["val_accuracy"]) - np.mean(constant["val_accuracy"]))
    n = noise(plateau["val_accuracy"], constant["val_accuracy"])
    start = summary["annealing"]["start_learning_rate"]
    claims.append(claim(
        "The notes' recipe — start with the largest rate for which the training loss decreases, train until the "
        "validation error flattens out, divide η (×0.3), repeat — does as well as the best constant rate a "
        "seven-rate grid search finds (not worse by more than twice the seed noise)", "S1",
        "Annealing of Learning Rate", d > -2 * n,
        f"momentum's largest rate whose training loss decreased: {start} (the grid's best constant rate: "
        f"{summary['annealing']['best_constant_learning_rate']}); reduce-on-plateau from it: validation accuracy "
        f"{np.mean(plateau['val_accuracy']):.4f} vs {np.mean(constant['val_accuracy']):.4f} (difference {d:+.4f}, "
        f"noise {n:.4f})"))

    decay = summary["sgd_decay"]
    d = float(np.mean(decay["constant"]["train_loss"]) - np.mean(decay["cosine"]["train_loss"]))
    claims.append(claim(
        "SGD (batch size 1) overshoots the exact minimum; decreasing the learning rate during optimisation lets it "
        "converge: the same start with a decaying rate ends at a lower training loss", "S4",
        "Deep neural networks: training",
        long_run(d > 0 and clearly(d, noise(decay["constant"]["train_loss"], decay["cosine"]["train_loss"]))),
        f"training loss after training at rate {decay['learning_rate']}: constant "
        f"{np.mean(decay['constant']['train_loss']):.4f}, cosine decay to 0 {np.mean(decay['cosine']['train_loss']):.4f}"
        f" (difference {d:+.4f})"))

    gn = summary["gradient_noise"]
    sizes = sorted(gn, key=int)
    means = [gn[s][0] for s in sizes]
    claims.append(claim(
        "In stochastic gradient descent the gradient direction is noisy relative to the average over all "
        "examples, the more so the smaller the batch", "S1", "Stochastic Gradient Descent",
        means[0] < 0.5 and all(np.diff(means) > 0),
        "cosine between a mini-batch gradient and the full gradient at the initial weights: " + ", ".join(
            f"batch {s}: {gn[s][0]:.3f} ± {gn[s][1]:.3f}" for s in sizes)))

    bs = summary["batch_size"]
    vals = {k: v["val_accuracy"] for k, v in bs.items()}
    lo, hi = min(vals, key=lambda k: np.mean(vals[k])), max(vals, key=lambda k: np.mean(vals[k]))
    d = float(np.mean(vals[hi]) - np.mean(vals[lo]))
    claims.append(claim(
        "Batch size has a large impact on the training outcome: at an equal number of epochs (each at its best "
        "rate), SGD, mini-batch and full-batch gradient descent differ in validation accuracy by more than 5 "
        "points", "S0", "Common training issues", undecided(d > 0.05, clearly(d, noise(vals[hi], vals[lo]), 0.05)
                                                             or d <= 0.05),
        "; ".join(f"batch {v['batch_size']} ({v['updates_per_epoch']} updates per epoch, rate "
                  f"{v['best_learning_rate']}): {np.mean(v['val_accuracy']):.4f}, {v['seconds_per_epoch']:.2f} s per "
                  f"epoch for its {len(v['rates'])} rates × seeds together" for v in bs.values())))

    sc = summary["scaling"]
    scaled = {b: np.mean(v["val_accuracy"]) for b, v in sc["scaled"].items()}
    unscaled = {b: np.mean(v["val_accuracy"]) for b, v in sc["unscaled"].items()}
    spread_scaled = max(scaled.values()) - min(scaled.values())
    spread_unscaled = max(unscaled.values()) - min(unscaled.values())
    largest = str(max(sc["batches"]))
    gap = unscaled[largest] - scaled[largest]
    per_seed = np.asarray(sc["scaled"][largest]["val_accuracy"]) - np.asarray(sc["unscaled"][largest]["val_accuracy"])
    clear = abs(gap) > 2 * float(per_seed.std() / np.sqrt(len(per_seed))) + 0.005
    claims.append(claim(
        "Scale the learning rate with the batch size (linear scaling with warm-up): after a fixed number of epochs "
        "accuracy stays flatter across batch sizes when the rate is scaled than when it is not, and the scaled "
        "rate does better at the largest batch", "S1", "Batch-size",
        long_run(spread_scaled < spread_unscaled and gap < 0 and clear),
        "validation accuracy by batch size, scaled: " + ", ".join(f"{b}: {v:.4f}" for b, v in scaled.items())
        + "; unscaled: " + ", ".join(f"{b}: {v:.4f}" for b, v in unscaled.items())
        + f" (ranges {spread_scaled:.4f} vs {spread_unscaled:.4f}; base rate {sc['base_learning_rate']} at batch "
          f"{sc['base_batch_size']})"))
    return claims


# --------------------------------------------------------------------------------------- outputs


def runs_of(history: dict, runs: list[int]) -> dict:
    """The history of the chosen runs: (epochs, runs) entries sliced, per-epoch ones kept."""
    return {k: v[:, runs] if np.ndim(v) == 2 else v for k, v in history.items()}


def write_figures(out: Path, summary: dict, histories: dict, bowl_paths: dict) -> None:
    grid = summary["grid"]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharey=True)
    for ax, (name, g) in zip(axes.flat, grid.items()):
        for row in g["rows"]:
            curves = runs_of(histories["grid"][name], row["runs"])
            curves["train_loss"] = np.clip(np.nan_to_num(curves["train_loss"], nan=10.0), 0, 10)
            plot.learning_curves(curves, ("train_loss",), ax=ax, label=f"{row['learning_rate']:g}")
        ax.set(title=f"{name} (best {g['best_learning_rate']:g})", yscale="log", ylim=(0.1, 10))
        ax.legend(fontsize=6, title="rate", title_fontsize=6)
    axes.flat[-1].axis("off")
    fig.suptitle("Training loss per epoch, each rate of each optimizer (band: min–max over seeds)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, g in grid.items():
        rates = [row["learning_rate"] for row in g["rows"]]
        acc = [np.mean(row["val_accuracy"]) for row in g["rows"]]
        line, = ax.semilogx(rates, acc, "o-", label=name)
        bad = [i for i, row in enumerate(g["rows"]) if not all(row["decreased"])]
        ax.semilogx([rates[i] for i in bad], [acc[i] for i in bad], "x", color=line.get_color(), markersize=9)
    ax.set(xlabel="learning rate", ylabel="validation accuracy (last epoch)",
           title="learning-rate sweeps (×: training loss did not decrease)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "lr_sweep.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 5))
    labels = {k: v["label"] for k, v in summary["bowl"]["paths"].items()}
    shown = {labels[k]: v for k, v in bowl_paths.items() if k not in ("gd_beyond", "gd_best")}
    plot.trajectories(bowl, shown, ax=ax, extent=(-5.5, 1.0, -1.0, 1.0), levels=25)
    ax.set(title=f"the elliptical bowl ½({BOWL_CURVATURES[0]:g}·w₁² + {BOWL_CURVATURES[1]:g}·w₂²), "
                 f"{BOWL_STEPS} steps")
    fig.tight_layout()
    fig.savefig(out / "bowl.png", dpi=90)
    plt.close(fig)

    fig, (ax_rate, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, run in summary["adagrad"].items():
        ax_rate.semilogy(run["effective_learning_rate"], "o-", label=name)
        ax_loss.plot(range(1, len(run["train_loss"]) + 1), run["train_loss"], "o-", label=f"{name} ({run['learning_rate']:g})")
    ax_rate.set(xlabel="epoch", ylabel="median effective learning rate", title="per-weight step size")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="progress")
    for ax in (ax_rate, ax_loss):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "adagrad.png", dpi=90)
    plt.close(fig)

    fig, (ax_acc, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories["annealing"].items():
        plot.learning_curves(history, ("val_accuracy",), ax=ax_acc, label=name)
        plot.learning_curves(history, ("learning_rate",), ax=ax_lr, label=name)
    ax_acc.set(ylabel="validation accuracy", title="annealing (SGD with momentum)")
    ax_lr.set(ylabel="learning rate (end of epoch)", yscale="log", title="the rates")
    fig.tight_layout()
    fig.savefig(out / "annealing.png", dpi=90)
    plt.close(fig)

    fig, (ax_noise, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    gn = summary["gradient_noise"]
    sizes = sorted(gn, key=int)
    ax_noise.errorbar([int(s) for s in sizes], [gn[s][0] for s in sizes], yerr=[gn[s][1] for s in sizes], fmt="o-")
    ax_noise.set(xscale="log", xlabel="batch size", ylabel="cos(batch gradient, full gradient)",
                 title="how noisy a mini-batch gradient is")
    for name, history in histories["batch_size"].items():
        plot.learning_curves(history, ("val_accuracy",), ax=ax_acc, label=f"batch {summary['batch_size'][name]['batch_size']}")
    ax_acc.set(ylabel="validation accuracy", title="SGD vs mini-batch vs GD, equal epochs")
    fig.tight_layout()
    fig.savefig(out / "batch_size.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    sc = summary["scaling"]
    for name in ("scaled", "unscaled"):
        sizes = [int(b) for b in sc[name]]
        acc = np.asarray([sc[name][b]["val_accuracy"] for b in sc[name]])
        ax.errorbar(sizes, acc.mean(axis=1), yerr=acc.std(axis=1), fmt="o-", label=f"rate {name}")
    ax.set(xscale="log", xlabel="batch size", ylabel="validation accuracy",
           title=f"linear scaling rule, {summary['settings']['batch_epochs']} epochs with warm-up")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=90)
    plt.close(fig)


def report(summary: dict) -> str:
    quick = summary["config"]["quick"]
    grid = summary["grid"]
    table = common.markdown_table(
        ["optimizer", "rates tried", "best (validation)", "validation accuracy", "test accuracy",
         "largest rate whose loss decreased", "rates that failed"],
        [[n, ", ".join(f"{r:g}" for r in GRIDS[n]), f"{g['best_learning_rate']:g}",
          "%.4f ± %.4f" % mean_std(g["rows"][g["best_index"]]["val_accuracy"]),
          "%.4f ± %.4f" % mean_std(g["test_accuracy"]), g["largest_decreasing_learning_rate"],
          ", ".join(f"{row['learning_rate']:g}" for row in g["rows"] if not all(row["decreased"])) or "none"]
         for n, g in grid.items()])
    bowl_table = common.markdown_table(
        ["path", "final loss", "steps until the loss stays below 10⁻³ of the start", "w₂ sign changes"],
        [[v["label"], f"{v['final_loss']:.3g}", v["steps_to_1e-3"] or f"> {summary['bowl']['steps']}", v["w2_sign_changes"]]
         for k, v in summary["bowl"]["paths"].items()])
    ann_table = common.markdown_table(
        ["schedule", "validation accuracy", "test accuracy", "final training loss"],
        [[k, "%.4f ± %.4f" % mean_std(v["val_accuracy"]), "%.4f ± %.4f" % mean_std(v["test_accuracy"]),
          "%.4f" % np.mean(v["train_loss"])] for k, v in summary["annealing"]["runs"].items()])
    env = summary["environment"]
    settings = summary["settings"]
    return "\n\n".join([
        f"# Optimisation{' (quick mode)' if quick else ''}",
        f"An MLP (784 → {summary['config']['hidden']} ReLU → 10) on {settings['train_examples']} {summary['dataset']} "
        f"training images (10 % of them for validation, which chooses every rate), {settings['seeds']} seeds per "
        f"setting trained together, batch {BATCH}, {settings['epochs']} epochs; {summary['seconds']:.0f} s on "
        f"{env['cpu']} ({env['cores']} cores).",
        "## What the numbers say", common.claims_markdown(summary["claims"]),
        "## Where this setting differs from the notes'",
        "The claims about annealing, the linear scaling rule and the size of the learning rate's effect come from "
        "long ImageNet-scale training (Goyal et al.: 90 epochs, batches up to 8,192, a ResNet-50; the Fergus lecture's "
        "annealing recipe for runs of days). Here an MLP trains for a few epochs on at most 18,000 images: the "
        "differences between schedules, and between scaled and unscaled rates, are at most a few tenths of a point "
        "to 2 points, near the seed noise, so these verdicts say what happens at this scale and no more. Quick mode "
        "(5 epochs on 4,500 images) does not judge them: its verdicts flipped in the full run.",
        "## Optimizers and learning rates", table, "![curves](curves.png)", "![sweeps](lr_sweep.png)",
        "## AdaGrad against RMSProp", "![adagrad](adagrad.png)",
        "## The elliptical bowl", bowl_table, "![bowl](bowl.png)",
        "## Annealing", ann_table, "![annealing](annealing.png)",
        "## Batch size", "![batch size](batch_size.png)", "![scaling](scaling.png)"])


def run(config: Config) -> dict:
    """Runs every part, writes the figures, report.md and summary.json (last), and returns the summary."""
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.resolved()
    seeds = list(range(config.seed, config.seed + settings["seeds"]))
    task = Task(config, settings)
    print(f"optimizers: {len(task.x)} training images of {task.name}, {len(seeds)} seeds "
          f"({'quick' if config.quick else 'full'})", flush=True)
    seconds = {}

    def timed(name, f, *args):
        begun = time.perf_counter()
        value = f(*args)
        seconds[name] = time.perf_counter() - begun
        print(f"{name}: {seconds[name]:.0f} s", flush=True)
        return value

    grid, grid_histories = timed("grid", grid_study, task, seeds, settings["epochs"])
    adagrad = timed("adagrad", adagrad_study, task, grid, config.seed, settings["adagrad_epochs"])
    bowl_numbers, bowl_paths = timed("bowl", bowl_study)
    annealing, annealing_histories = timed("annealing", annealing_study, task, grid, seeds, settings["epochs"])
    gradient_noise = timed("gradient_noise", gradient_noise_study, task, config.seed)
    batch, batch_histories = timed("batch_size", batch_size_study, task, seeds, settings["batch_epochs"])
    sgd_decay = timed("sgd_decay", sgd_decay_study, task, batch, seeds, settings["batch_epochs"])
    scaling = timed("scaling", scaling_study, task, grid, seeds, settings["batch_epochs"], settings["scaling_batches"])
    summary = {"part_seconds": seconds, "config": common.config_dict(config), "settings": settings, "environment": environment(config.seed),
               "dataset": task.name, "grid": grid, "adagrad": adagrad, "bowl": bowl_numbers, "annealing": annealing,
               "gradient_noise": gradient_noise, "batch_size": batch, "sgd_decay": sgd_decay, "scaling": scaling}
    summary["claims"] = judge(summary, config.quick)
    summary["seconds"] = time.perf_counter() - started
    write_figures(out, summary, {"grid": grid_histories, "annealing": annealing_histories,
                                 "batch_size": batch_histories}, bowl_paths)
    return common.finish_lesson(out, summary, report(summary), SUMMARY_SCHEMA, headline(summary))


def headline(summary: dict) -> str:
    return common.claims_headline(summary["claims"], "optimisation")
