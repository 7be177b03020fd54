"""Regularization: L1 against L2, when to turn a penalty on, dropout, early stopping, data augmentation,
and a big regularised net against small ones.

Tests the lecture notes' claims on a deliberately overfitting setup: one-hidden-layer ReLU MLPs trained on
1,000 Fashion-MNIST images for 20 epochs (a validation split of 1,000 more carved from the training set; the
10,000 test images for the final numbers only):

* L1 against L2 over a sweep of strengths, 128 hidden units (the architectures deck, "Deep neural networks:
  regularization": "The L_1 penalty causes a subset of the weights to become zero", ridge "makes coefficients
  smaller"): the fraction of weights below a tolerance, the median |w|, and accuracy against strength.
  jaxnets adds the L1 penalty to the loss and follows its subgradient (sign(w)), so a weight reaches zero only
  to within the size of the last steps, never exactly (no proximal, soft-thresholding update): "zero" means
  |w| < ``ZERO_TOLERANCE`` = 1e-3. This part trains with SGD with momentum, its learning rate decaying to 0 by
  a cosine (Adam divides each weight's step by its gradient's size, which turns an L2 gradient into a
  fixed-size step for weights the data does not use: a weight decay that acts like L1);
* "turn it on after a couple of epochs" (Fergus, "Practical Tips for Backprop"): the middle L1 and L2
  strengths from epoch 0 against from epoch 2 (``regularize_from_epoch``), same seeds;
* dropout on the fully connected hidden layer of 512 units at p = 0, 0.2, 0.5 (Fergus, "DropOut": "Fully
  connected layers only"; the architectures deck: "usually about 50%"): test accuracy and train–test gap;
* early stopping (``EarlyStopping()``: validation loss, patience 5) on the 512-unit net without other
  regularisation: test numbers at the best validation epoch against the last epoch;
* data augmentation, jittering (±1 pixel shifts) and noise injection (Gaussian, std 0.1), against none, 128
  units (Fergus, "Regularizing the model");
* "Better to have big model and regularize, than unfit with small model" (Fergus, "Regularization The
  Intuition"): widths 8 to 512, with and without dropout.

These parts use Adam at a constant learning rate (so that the unregularised nets overfit: their validation
loss turns up after about 10 epochs). Every grid trains its settings × seeds together (``fit_seeds``); a
dropout rate is a per-run number in the state of :class:`RunDropout`, so one call trains every rate.
Learning rates, epochs and strengths are fixed in advance; what is chosen (the penalty strength, the
narrow net to compare with, the early-stopping epoch) is chosen on the validation split, and test accuracy
is reported separately. A comparison is judged only when its difference (paired by seed) exceeds twice its
standard error plus 0.002 (quick mode, with half the seeds: three times); in quick mode an unclear one is
left unjudged, in the full run it did not hold.

Command: ``python -m experiments regularization`` (full, 8 seeds) or ``--quick`` (CI, 4 seeds). Run time
on the 2-core CPU (AMD EPYC, 2026-12-01), measured while other experiments shared the CPU (load average
7–10): quick 3 min 12 s wall, 65 s of CPU; full 4 min 22 s wall, 129 s of CPU. Expected result (full
run): 5 of the 12 claims held. L1 leaves 49.5 % of the weights below 1e-3 at 1e-3 (none: 1.4 %) for −0.3
points of test accuracy, while L2 at its strongest (0.03) cuts the median |w| to a third and leaves 4.2 % near
zero; dropout narrows the train–test gap from 0.169 (p = 0) to 0.129 (p = 0.5); early stopping lowers
the test loss from 0.634 to 0.584. Not shown here: a bit of penalty gives no better test accuracy (−0.0016),
nor does turning it on at epoch 2 (+0.0001 ± 0.0002); dropout's +0.002, early stopping's +0.002 and the big
regularised net's +0.005 over the best unregularised narrow one are within twice their noise; jittering
costs the MLP 2.2 points and noise injection 0.4 (20 epochs are too few to fit the harder data). Quick mode
judges the L1, L2 and early-stopping-loss claims as the full run does, jittering as not held, and leaves
the rest unjudged.

Outputs in ``results/regularization/``: summary.json, penalties.png, first_layer_weights.png,
penalty_timing.png, dropout.png, early_stopping.png, augmentation.png, width_sweep.png, report.md.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments import common
from jaxnets import augment, data, inspect, nn, optim, plot
from jaxnets._util import weight_mask
from jaxnets.monitors import EarlyStopping
from jaxnets.runtime import environment
from jaxnets.seeds import fit_seeds, init_runs, seed_keys, unstack_tree
from jaxnets.train import make_evaluate_runs_fn

SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["config", "config_resolved", "environment", "dataset", "penalties", "penalty_timing", "dropout",
                 "early_stopping", "augmentation", "width_sweep", "claims", "seconds"],
    "properties": {"claims": common.CLAIMS_SCHEMA},
}
ZERO_TOLERANCE = 1e-3  # |w| below this counts as zero (a subgradient never lands exactly on 0)
FREE_ACCURACY_COST = 0.01  # a penalty strength is "free" when it costs at most this much validation accuracy
MARGIN = 0.002  # a difference must exceed 2 (quick mode: 3) standard errors plus this to be judged


@dataclasses.dataclass
class Config:
    """See the module docstring for the command, run time and expected result."""

    quick: bool = False
    out: Path = Path("results/regularization")
    dataset: str | None = None  # None: Fashion-MNIST if installed, else digits
    seeds: int | None = None  # default 4 (quick) / 8 (full)
    seed: int = 0
    train_examples: int = 1000
    validation_examples: int = 1000
    hidden: int = 128  # width of the MLP of every part but the width sweep
    epochs: int = 20
    batch_size: int = 50
    sgd_learning_rate: float = 0.02  # SGD with momentum 0.9, cosine decay to 0 (the penalty parts)
    adam_learning_rate: float = 1e-3  # Adam, constant (dropout, early stopping, augmentation, widths)
    l1_strengths: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    l2_strengths: tuple[float, ...] = (1e-3, 1e-2, 3e-2)
    regularize_from: int = 2
    dropout_rates: tuple[float, ...] = (0.0, 0.2, 0.5)
    widths: tuple[int, ...] = (8, 32, 128, 512)
    sweep_dropout: float = 0.5  # the regularised nets of the width sweep
    shift: int = 1
    noise: float = 0.1

    def resolved(self) -> dict:
        return {"seeds": self.seeds or (4 if self.quick else 8)}


# ------------------------------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True)
class RunDropout(nn.Layer):
    """:class:`jaxnets.nn.Dropout` (inverted: kept values divided by 1 − p; the identity in evaluation)
    whose rate p is not part of the model but a number in the layer's state, ``{"rate": ()}``: the
    states of :func:`fit_seeds` runs are stacked, so each run of one call drops at its own rate
    (:func:`with_dropout_rates`). With the same key it draws the same mask as ``nn.Dropout(p)``.
    x: (...) → same shape."""

    rate: float = 0.0

    def init(self, key, x):
        del key
        return {}, {"rate": jnp.asarray(self.rate, nn.core.as_shape_dtype(x).dtype)}

    def apply(self, params, state, x, *, key=None, train=False):
        if not train:
            return x, state
        if key is None:
            raise self.error("needs a PRNG key in training: call apply(..., key=key, train=True)")
        rate = state["rate"]
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)), state

    def output_shape(self, input_shape):
        return tuple(input_shape)


def mlp(width: int, num_classes: int = 10) -> nn.Sequential:
    """The MLP of every part: flatten → dense ``width`` (He init) → ReLU → dropout → dense ``num_classes``
    (logits). Dropout acts on the fully connected hidden layer only, not on the input pixels or the logits.
    x: (N, H, W, C) → (N, num_classes)."""
    return nn.Sequential([("flatten", nn.Flatten()), ("hidden", nn.Dense(width, w_init="he_normal")),
                          ("relu", nn.Activation("relu")), ("dropout", RunDropout()),
                          ("output", nn.Dense(num_classes, w_init="he_normal"))], name="mlp")


def with_dropout_rates(state: dict, rates) -> dict:
    """The stacked state of :func:`mlp` runs with run r's dropout rate set to ``rates[r]`` (each in [0, 1))."""
    rates = np.asarray(rates, np.float32)
    if rates.shape != state["dropout"]["rate"].shape or not np.all((rates >= 0) & (rates < 1)):
        raise ValueError(f"with_dropout_rates: expected {state['dropout']['rate'].shape[0]} rates in [0, 1), "
                         f"got {rates.tolist()}")
    return {**state, "dropout": {"rate": jnp.asarray(rates)}}


# --------------------------------------------------------------------------------------- the data


def split(dataset: data.Dataset, config: Config) -> dict:
    """The training subset and the validation split, disjoint and drawn from the shuffled training set
    (fewer when the set is small, keeping their ratio), and the whole test set:
    ``{"train": (x, y), "val": (x, y), "test": (x, y)}``, x (N, H, W, C)."""
    n = len(dataset.x_train)
    wanted = config.train_examples + config.validation_examples
    scale = min(1.0, n / wanted)
    n_train, n_val = int(config.train_examples * scale), int(config.validation_examples * scale)
    order = np.random.default_rng(config.seed).permutation(n)
    train, val = order[:n_train], order[n_train:n_train + n_val]
    return {"train": (dataset.x_train[train], dataset.y_train[train]),
            "val": (dataset.x_train[val], dataset.y_train[val]), "test": (dataset.x_test, dataset.y_test)}


# -------------------------------------------------------------------------------------- training


def train_grid(model, splits: dict, settings: list[dict], seeds: list[int], config: Config, *, optimizer: str,
               monitor: bool = False, **options):
    """Every (setting, seed) pair as one run of one ``fit_seeds`` call, settings slowest (run r is
    setting r // len(seeds), seed r % len(seeds)); a run's init depends on its seed only. A setting
    may give ``l1``, ``l2`` and ``dropout`` (its rate). ``optimizer``: "momentum" (SGD with momentum
    0.9, its learning rate decaying to 0 by a cosine) or "adam" (a constant learning rate). ``monitor``:
    evaluate on the validation split after every epoch (history ``val_loss``, ``val_accuracy``);
    ``options`` go to ``fit_seeds``. Returns the SeedsResult."""
    x, y = splits["train"]
    run_seeds = [s for _ in settings for s in seeds]
    keys = seed_keys(run_seeds)
    params, state = init_runs(model, jnp.stack([jax.random.fold_in(k, 1) for k in keys]), x[:1])
    state = with_dropout_rates(state, [st.get("dropout", 0.0) for st in settings for _ in seeds])
    penalties = {name: [float(st.get(name, 0.0)) for st in settings for _ in seeds]
                 for name in ("l1", "l2") if any(name in st for st in settings)}
    if optimizer == "momentum":
        rate = optim.schedule("cosine", config.sgd_learning_rate, steps_per_epoch=len(x) // config.batch_size,
                              epochs=config.epochs)
    else:
        rate = config.adam_learning_rate
    return fit_seeds(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer(optimizer, rate),
                     epochs=config.epochs, batch_size=config.batch_size, keys=keys, hyperparams=penalties or None,
                     validation_data=splits["val"] if monitor else None, progress=False, **options)


def evaluate_runs(model, result, splits: dict) -> dict:
    """Each run's accuracy and loss on the training subset, the validation split and the test set, in
    evaluation mode (no dropout), with its final params: ``{"train_accuracy": [...], ...}``, lists of
    (runs,) numbers."""
    evaluate = make_evaluate_runs_fn(model, "cross_entropy")
    out = {}
    for name in ("train", "val", "test"):
        loss, accuracy = evaluate(result.params, result.state, *(jnp.asarray(a) for a in splits[name]))
        out[f"{name}_accuracy"], out[f"{name}_loss"] = np.asarray(accuracy).tolist(), np.asarray(loss).tolist()
    return out


def per_setting(numbers: dict, index: int, seeds: int) -> dict:
    """The runs of setting ``index`` (``seeds`` consecutive runs) of every list in ``numbers``."""
    return {k: v[index * seeds:(index + 1) * seeds] for k, v in numbers.items()}


def history_of(history: dict, index: int, seeds: int) -> dict:
    """The history entries of setting ``index``'s runs: each (runs,) entry → (seeds,)."""
    return {k: (v if k in ("epoch", "seconds") else [np.asarray(e)[index * seeds:(index + 1) * seeds] for e in v])
            for k, v in history.items()}


# -------------------------------------------------------------------------------------- penalties


def weight_magnitudes(params) -> np.ndarray:
    """|w| of every weight (not the biases, which the penalties leave alone) of each run of stacked
    params: leaves (runs, …) → (runs, weights)."""
    masks = jax.tree_util.tree_leaves(weight_mask(params))
    leaves = [leaf for leaf, keep in zip(jax.tree_util.tree_leaves(params), masks) if keep]
    return np.abs(np.concatenate([np.asarray(leaf).reshape(leaf.shape[0], -1) for leaf in leaves], axis=1))


def weight_statistics(magnitudes: np.ndarray, tolerance: float = ZERO_TOLERANCE) -> dict:
    """Per run, from |w| (runs, weights): the fraction below ``tolerance``, the median and the 90th
    percentile: lists of (runs,) numbers."""
    return {"zero_fraction": np.mean(magnitudes < tolerance, axis=1).tolist(),
            "median_abs": np.median(magnitudes, axis=1).tolist(),
            "q90_abs": np.quantile(magnitudes, 0.9, axis=1).tolist()}


def penalty_settings(config: Config) -> list[dict]:
    """None, then each L1 strength, then each L2 strength."""
    return [{}] + [{"l1": v} for v in config.l1_strengths] + [{"l2": v} for v in config.l2_strengths]


def middle_settings(config: Config) -> list[dict]:
    """The middle L1 and the middle L2 strength ("a bit of" each): the ones turned on late, and drawn."""
    return [{"l1": config.l1_strengths[len(config.l1_strengths) // 2]},
            {"l2": config.l2_strengths[len(config.l2_strengths) // 2]}]


def setting_name(setting: dict) -> str:
    return next((f"{k} {v:g}" for k, v in setting.items() if k in ("l1", "l2")), "none")


def penalty_study(config: Config, splits: dict, seeds: list[int], model) -> tuple[dict, dict]:
    """The L1 and L2 sweep (SGD with momentum), all strengths × seeds in one call. Returns the summary
    part and, for the figures, the first seed's |w| and first-layer weights and every seed's history
    per setting name."""
    settings = penalty_settings(config)
    result = train_grid(model, splits, settings, seeds, config, optimizer="momentum")
    numbers = evaluate_runs(model, result, splits) | weight_statistics(weight_magnitudes(result.params))
    rows, drawn = [], {}
    magnitudes = weight_magnitudes(result.params)
    for i, setting in enumerate(settings):
        penalty, strength = next(iter(setting.items()), ("none", 0.0))
        rows.append({"penalty": penalty, "strength": strength, **per_setting(numbers, i, len(seeds))})
        drawn[setting_name(setting)] = {"magnitudes": magnitudes[i * len(seeds)],
                                        "hidden_w": np.asarray(result.params["hidden"]["w"][i * len(seeds)]),
                                        "history": history_of(result.history, i, len(seeds))}
    return {"tolerance": ZERO_TOLERANCE, "optimizer": "momentum", "settings": rows}, drawn


def timing_study(config: Config, splits: dict, seeds: list[int], model) -> tuple[dict, dict]:
    """The middle L1 and the middle L2 strength turned on at epoch ``regularize_from`` instead of 0 (the
    epoch-0 runs are the penalty sweep's, with the same seeds)."""
    settings = middle_settings(config)
    result = train_grid(model, splits, settings, seeds, config, optimizer="momentum",
                        regularize_from_epoch=config.regularize_from)
    numbers = evaluate_runs(model, result, splits)
    rows = [{"penalty": next(iter(s)), "strength": next(iter(s.values())), **per_setting(numbers, i, len(seeds))}
            for i, s in enumerate(settings)]
    return ({"from_epoch": config.regularize_from, "settings": rows},
            {setting_name(s): history_of(result.history, i, len(seeds)) for i, s in enumerate(settings)})


# ------------------------------------------------------------------------- dropout and the widths


def width_study(config: Config, splits: dict, seeds: list[int], num_classes: int) -> tuple[list[dict], dict]:
    """Each width trained with and without dropout (``sweep_dropout``), the widest at every rate of
    ``dropout_rates`` too: one call per width (Adam, validation after every epoch). Returns the rows (one
    per width and rate) and the histories by (width, rate)."""
    rows, histories = [], {}
    for width in config.widths:
        rates = {0.0, config.sweep_dropout} | (set(config.dropout_rates) if width == max(config.widths) else set())
        rates = sorted(rates)
        model = mlp(width, num_classes)
        result = train_grid(model, splits, [{"dropout": p} for p in rates], seeds, config, optimizer="adam",
                            monitor=True)
        numbers = evaluate_runs(model, result, splits)
        params = sum(inspect.count_params(unstack_tree(result.params, 0)))
        for i, p in enumerate(rates):
            rows.append({"width": width, "params": params, "dropout": p, **per_setting(numbers, i, len(seeds))})
            histories[(width, p)] = history_of(result.history, i, len(seeds))
        print(f"  width {width}: test accuracy by dropout rate "
              + ", ".join(f"{p:g}: {np.mean(r['test_accuracy']):.4f}" for p, r in zip(rates, rows[-len(rates):])),
              flush=True)
    return rows, histories


def early_stopping_study(config: Config, splits: dict, seeds: list[int], sweep: list[dict], num_classes: int) -> dict:
    """The widest unregularised net trained again with ``EarlyStopping()`` (validation loss, patience 5):
    test numbers of its best epoch against those after the last epoch of the width sweep's same runs."""
    width = max(config.widths)
    model = mlp(width, num_classes)
    last = next(r for r in sweep if r["width"] == width and r["dropout"] == 0.0)
    stopping = EarlyStopping()
    result = train_grid(model, splits, [{}], seeds, config, optimizer="adam", monitor=True, early_stopping=stopping)
    best = evaluate_runs(model, result, splits)
    stopped = np.asarray(result.history["stopped"])  # (epochs, runs)
    trained = [int(np.argmax(s)) + 1 if s.any() else len(stopped) for s in stopped.T]
    return {"width": width, "monitor": stopping.monitor, "patience": stopping.patience,
            "best_epoch": (result.best_epoch + 1).tolist(), "epochs_trained": trained, "epochs": config.epochs,
            "best": {k: best[k] for k in ("test_accuracy", "test_loss")},
            "last": {k: last[k] for k in ("test_accuracy", "test_loss")}}


# ---------------------------------------------------------------------------------- augmentation


def augmentation_study(config: Config, splits: dict, seeds: list[int], model, baseline: dict) -> tuple[dict, dict]:
    """The main net (no dropout) trained on jittered (±``shift`` pixels) and on noisy (std ``noise``)
    copies of the images, a fresh copy each epoch, one call each; ``baseline``: the same net without
    augmentation (the width sweep's runs)."""
    out, histories = {"none": baseline["numbers"]}, {"none": baseline["history"]}
    for name, transform in (("shift", functools.partial(augment.augment, shift=config.shift)),
                            ("noise", functools.partial(augment.augment, noise=config.noise))):
        result = train_grid(model, splits, [{}], seeds, config, optimizer="adam", augment=transform)
        out[name] = evaluate_runs(model, result, splits)
        histories[name] = result.history
        print(f"  {name}: test accuracy {np.mean(out[name]['test_accuracy']):.4f}", flush=True)
    return out, histories


# ------------------------------------------------------------------------------------------ claims


def paired_difference(a, b) -> tuple[float, float]:
    """Mean of a − b over the seeds (a and b: one number per seed, same seeds) and its standard error."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def clear(difference: float, noise: float, quick: bool) -> bool:
    """Whether |difference| exceeds k·noise + MARGIN: k = 2 in the full run, 3 in quick mode (fewer seeds, so
    quick mode judges only what the full run will not overturn)."""
    return abs(difference) > (3 if quick else 2) * noise + MARGIN


def judged(difference: float, noise: float, quick: bool) -> bool | None:
    """Whether "a beats b" held, given difference = a − b: True or False when the difference is clear;
    otherwise unjudged in quick mode and not held in the full run."""
    if clear(difference, noise, quick):
        return difference > 0
    return None if quick else False


def judged_at_least(difference: float, noise: float, quick: bool) -> bool | None:
    """Whether "a does at least as well as b" held: False when a is clearly worse, True when clearly better
    or (in the full run) within the noise; unjudged in quick mode when within the noise."""
    if clear(difference, noise, quick):
        return difference > 0
    return None if quick else True


def mean(values) -> float:
    return float(np.mean(values))


def free_strength(rows: list[dict], penalty: str, baseline_val: float) -> dict | None:
    """The strongest ``penalty`` setting whose mean validation accuracy is at most FREE_ACCURACY_COST below
    the unpenalised net's (None if none is)."""
    ok = [r for r in rows if r["penalty"] == penalty and mean(r["val_accuracy"]) >= baseline_val - FREE_ACCURACY_COST]
    return max(ok, key=lambda r: r["strength"]) if ok else None


def penalty_claims(summary: dict, quick: bool) -> list[dict]:
    claim = common.claim
    rows = summary["penalties"]["settings"]
    none = rows[0]
    sweep = {p: [r for r in rows if r["penalty"] == p] for p in ("l1", "l2")}
    l1, l2 = (free_strength(rows, p, mean(none["val_accuracy"])) for p in ("l1", "l2"))
    zeros = {p: [mean(r["zero_fraction"]) for r in sweep[p]] for p in sweep}
    medians = {p: [mean(r["median_abs"]) for r in sweep[p]] for p in sweep}
    tol = summary["penalties"]["tolerance"]

    def describe(p):
        return ", ".join(f"{r['strength']:g}: {z:.1%} zero, median {m:.1e}"
                         for r, z, m in zip(sweep[p], zeros[p], medians[p]))

    base = f"none: {mean(none['zero_fraction']):.1%} zero, median {mean(none['median_abs']):.1e}"
    l1_held = (l1 is not None and bool(np.all(np.diff(zeros["l1"]) > 0)) and mean(l1["zero_fraction"]) >= 0.2
               and mean(l1["zero_fraction"]) >= 5 * mean(none["zero_fraction"]))
    claims = [claim("The L1 penalty sets a subset of the weights to zero (|w| < 1e-3), more of them the stronger it "
                    "is, at little cost in accuracy", "S4", "Deep neural networks: regularization", l1_held,
                    f"fraction of weights below {tol:g} and median |w| (mean over seeds) by L1 strength: {base}; "
                    f"{describe('l1')}. Strongest L1 costing ≤ {FREE_ACCURACY_COST} validation accuracy: "
                    + (f"{l1['strength']:g} ({mean(l1['zero_fraction']):.1%} zero)" if l1 else "none")
                    + ". Subgradient steps with a tolerance, not a proximal update: no weight is exactly 0")]
    l2_held = (l1 is not None and l2 is not None and bool(np.all(np.diff(medians["l2"]) < 0))
               and mean(l2["median_abs"]) <= 0.8 * mean(none["median_abs"])
               and mean(l2["zero_fraction"]) <= mean(l1["zero_fraction"]) / 3)
    claims.append(claim("The L2 penalty makes the weights smaller instead: the median |w| falls, few reach zero", "S4",
                        "Deep neural networks: regularization", l2_held,
                        f"by L2 strength: {base}; {describe('l2')}. At the strongest strength costing ≤ "
                        f"{FREE_ACCURACY_COST} validation accuracy, "
                        + (f"L2 {l2['strength']:g}: median {mean(l2['median_abs']):.1e}, "
                           f"{mean(l2['zero_fraction']):.1%} zero" if l2 else "L2: none")
                        + (f"; L1 {l1['strength']:g}: {mean(l1['zero_fraction']):.1%} zero" if l1 else "")))
    chosen = max(rows[1:], key=lambda r: mean(r["val_accuracy"]))
    diff, noise = paired_difference(chosen["test_accuracy"], none["test_accuracy"])
    claims.append(claim("A bit of L1 or L2 on the weights improves test accuracy", "S1", "Practical Tips for Backprop",
                        judged(diff, noise, quick),
                        f"the penalty with the best validation accuracy, {chosen['penalty']} {chosen['strength']:g}: "
                        f"test accuracy {mean(chosen['test_accuracy']):.4f} against {mean(none['test_accuracy']):.4f} "
                        f"without ({diff:+.4f} ± {noise:.4f})"))
    timing = summary["penalty_timing"]
    diffs, parts = [], []
    for row in timing["settings"]:
        early = next(r for r in rows if r["penalty"] == row["penalty"] and r["strength"] == row["strength"])
        diffs += list(np.subtract(row["test_accuracy"], early["test_accuracy"]))
        parts.append(f"{row['penalty']} {row['strength']:g}: {mean(row['test_accuracy']):.4f} from epoch "
                     f"{timing['from_epoch']} against {mean(early['test_accuracy']):.4f} from epoch 0")
    diff, noise = paired_difference(diffs, np.zeros(len(diffs)))
    claims.append(claim("It is best to turn the L1 or L2 penalty on after a couple of epochs", "S1",
                        "Practical Tips for Backprop", judged(diff, noise, quick),
                        "test accuracy, " + "; ".join(parts) + f" (mean paired difference {diff:+.4f} ± {noise:.4f})"))
    return claims


def dropout_claims(summary: dict, quick: bool) -> list[dict]:
    claim = common.claim
    main = summary["dropout"]["width"]
    rows = {r["dropout"]: r for r in summary["dropout"]["rates"]}
    rates = sorted(rows)
    gaps = {p: np.subtract(rows[p]["train_accuracy"], rows[p]["test_accuracy"]) for p in rates}
    diff, noise = paired_difference(rows[0.5]["test_accuracy"], rows[0.0]["test_accuracy"])
    text = "; ".join(f"p = {p:g}: test {mean(rows[p]['test_accuracy']):.4f}, train "
                     f"{mean(rows[p]['train_accuracy']):.4f}, test loss {mean(rows[p]['test_loss']):.3f}"
                     for p in rates)
    claims = [claim("Dropout on the fully connected layer improves generalisation: p = 0.5 beats no dropout on test",
                    "S4", "Deep neural networks: regularization", judged(diff, noise, quick),
                    f"hidden layer of {main}: {text} (0.5 − 0: {diff:+.4f} ± {noise:.4f})")]
    steps = [paired_difference(gaps[a], gaps[b]) for a, b in zip(rates, rates[1:])]  # gap(p) − gap(next p)
    shrinks = [judged(d, n, quick) for d, n in steps]
    held = False if False in shrinks else (None if None in shrinks else True)
    claims.append(claim("The train–test gap shrinks as the dropout rate grows", "S1", "DropOut", held,
                        "train − test accuracy: " + ", ".join(f"p = {p:g}: {mean(gaps[p]):.4f}" for p in rates)))
    diff, noise = paired_difference(rows[0.5]["test_accuracy"], rows[0.2]["test_accuracy"])
    claims.append(claim("p = 0.5, the usual rate (\"usually about 50%\"), does at least as well as p = 0.2", "S4",
                        "Deep neural networks: regularization", judged_at_least(diff, noise, quick),
                        f"test accuracy {mean(rows[0.5]['test_accuracy']):.4f} against "
                        f"{mean(rows[0.2]['test_accuracy']):.4f} (0.5 − 0.2: {diff:+.4f} ± {noise:.4f}; held unless "
                        "clearly worse)"))
    return claims


def other_claims(summary: dict, quick: bool) -> list[dict]:
    claim = common.claim
    es = summary["early_stopping"]
    diff, noise = paired_difference(es["best"]["test_accuracy"], es["last"]["test_accuracy"])
    loss_diff, loss_noise = paired_difference(es["last"]["test_loss"], es["best"]["test_loss"])
    claims = [claim("Early stopping (on the validation loss) prevents overfitting: lower test loss than training on",
                    "S4", "Deep neural networks: regularization", judged(loss_diff, loss_noise, quick),
                    f"width {es['width']}, no other regularisation: test loss {mean(es['best']['test_loss']):.3f} at "
                    f"the best validation epoch (epochs {es['best_epoch']}, stopped after {es['epochs_trained']}) "
                    f"against {mean(es['last']['test_loss']):.3f} after all {es['epochs']} epochs"),
              claim("… and better test accuracy", "S4", "Deep neural networks: regularization",
                    judged(diff, noise, quick),
                    f"test accuracy {mean(es['best']['test_accuracy']):.4f} at the best epoch against "
                    f"{mean(es['last']['test_accuracy']):.4f} after the last ({diff:+.4f} ± {noise:.4f})")]
    aug = summary["augmentation"]
    for name, text in (("shift", f"Data augmentation by jittering (±{summary['config']['shift']} pixel shifts) "
                                 "improves test accuracy"),
                       ("noise", f"Noise injection (Gaussian, std {summary['config']['noise']:g}) improves test "
                                 "accuracy")):
        diff, noise = paired_difference(aug[name]["test_accuracy"], aug["none"]["test_accuracy"])
        claims.append(claim(text, "S1", "Regularizing the model", judged(diff, noise, quick),
                            f"test accuracy {mean(aug[name]['test_accuracy']):.4f} against "
                            f"{mean(aug['none']['test_accuracy']):.4f} without ({diff:+.4f} ± {noise:.4f}); train "
                            f"accuracy {mean(aug[name]['train_accuracy']):.4f} against "
                            f"{mean(aug['none']['train_accuracy']):.4f}"))
    sweep = summary["width_sweep"]
    widest = max(r["width"] for r in sweep)
    p = summary["config"]["sweep_dropout"]
    big = next(r for r in sweep if r["width"] == widest and r["dropout"] == p)
    small = [r for r in sweep if r["width"] < widest and r["dropout"] == 0.0]
    best_small = max(small, key=lambda r: mean(r["val_accuracy"]))
    diff, noise = paired_difference(big["test_accuracy"], best_small["test_accuracy"])
    plain = next(r for r in sweep if r["width"] == widest and r["dropout"] == 0.0)
    claims.append(claim("Better to have a big model and regularise than a small one without", "S1",
                        "Regularization The Intuition", judged(diff, noise, quick),
                        f"{widest} hidden units with dropout {p:g}: test accuracy {mean(big['test_accuracy']):.4f}; "
                        f"the best unregularised narrower net on validation ({best_small['width']} units): "
                        f"{mean(best_small['test_accuracy']):.4f} ({diff:+.4f} ± {noise:.4f}); {widest} units without "
                        f"dropout: {mean(plain['test_accuracy']):.4f}"))
    return claims


def judge(summary: dict, quick: bool) -> list[dict]:
    return penalty_claims(summary, quick) + dropout_claims(summary, quick) + other_claims(summary, quick)


# --------------------------------------------------------------------------------------- outputs


def write_figures(out: Path, config: Config, summary: dict, drawn: dict, image_shape: tuple, histories: dict) -> None:
    """The figures of every part (drawn with jaxnets.plot where it has the plot). ``drawn``: the penalty
    sweep's weights and histories by setting name; ``histories``: the other parts' histories."""
    rows = summary["penalties"]["settings"]
    shown = ["none", f"l1 {max(config.l1_strengths):g}", f"l2 {max(config.l2_strengths):g}"]  # the strongest
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    bins = np.linspace(-7, 0, 71)
    for name in shown:
        axes[0].hist(np.log10(np.maximum(drawn[name]["magnitudes"], 1e-7)), bins=bins, histtype="step", label=name,
                     linewidth=1.5)
    axes[0].axvline(np.log10(summary["penalties"]["tolerance"]), color="grey", linestyle="--", linewidth=0.8)
    axes[0].set(xlabel="log10 |w|", ylabel="weights", title="weight magnitudes (first seed)")
    axes[0].legend(fontsize=8)
    for penalty, marker in (("l1", "o-"), ("l2", "s-")):
        mine = [r for r in rows if r["penalty"] == penalty]
        strengths = [r["strength"] for r in mine]
        axes[1].semilogx(strengths, [mean(r["zero_fraction"]) for r in mine], marker, label=f"{penalty}: zero fraction")
        axes[1].semilogx(strengths, [mean(r["median_abs"]) / mean(rows[0]["median_abs"]) for r in mine], marker,
                         alpha=0.5, label=f"{penalty}: median |w| / unpenalised")
        axes[2].semilogx(strengths, [mean(r["test_accuracy"]) for r in mine], marker, label=f"{penalty} test")
    axes[1].set(xlabel="strength", title=f"|w| < {summary['penalties']['tolerance']:g}, median |w|")
    axes[1].legend(fontsize=7)
    axes[2].axhline(mean(rows[0]["test_accuracy"]), color="k", linestyle="--", linewidth=0.8, label="none")
    axes[2].set(xlabel="strength", ylabel="test accuracy", title="accuracy against strength")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "penalties.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for ax, name in zip(axes, shown):
        plot.weight_images(drawn[name]["hidden_w"], image_shape[:2], ax=ax, units=36, columns=6)
        ax.set_title(f"{name}: first 36 hidden units' weights")
    fig.tight_layout()
    fig.savefig(out / "first_layer_weights.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, history in histories["timing"].items():
        plot.learning_curves(history, ("train_loss",), ax=ax, label=f"{name} from epoch {config.regularize_from}")
    for name in (setting_name(s) for s in middle_settings(config)):
        plot.learning_curves(drawn[name]["history"], ("train_loss",), ax=ax, label=f"{name} from epoch 0",
                             linestyle="--")
    ax.set(title="turning the penalty on later (data loss of the training batches)")
    fig.tight_layout()
    fig.savefig(out / "penalty_timing.png", dpi=90)
    plt.close(fig)

    fig, (ax_loss, ax_gap) = plt.subplots(1, 2, figsize=(11, 3.8))
    for p, history in histories["dropout"].items():
        plot.learning_curves(history, ("val_loss",), ax=ax_loss, label=f"p = {p:g}")
    ax_loss.set(title=f"dropout on the hidden layer ({summary['dropout']['width']} units)")
    main = summary["dropout"]["rates"]
    x = np.arange(len(main))
    ax_gap.bar(x - 0.2, [mean(r["train_accuracy"]) for r in main], 0.4, label="train")
    ax_gap.bar(x + 0.2, [mean(r["test_accuracy"]) for r in main], 0.4, label="test")
    ax_gap.set(xticks=x, xticklabels=[f"p = {r['dropout']:g}" for r in main], ylabel="accuracy",
               ylim=(min(mean(r["test_accuracy"]) for r in main) - 0.1, 1.0),
               title="train and test accuracy")
    ax_gap.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "dropout.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    es = summary["early_stopping"]
    for ax, key in zip(axes, ("val_loss", "val_accuracy")):
        plot.learning_curves(histories["widest"], ("train_loss", key) if key == "val_loss" else (key,), ax=ax)
        for epoch in es["best_epoch"]:
            ax.axvline(epoch, color="grey", linestyle=":", linewidth=0.8)
    axes[0].set(title=f"{es['width']} hidden units, no regularisation (dotted: best validation epochs)")
    fig.tight_layout()
    fig.savefig(out / "early_stopping.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), gridspec_kw={"width_ratios": [3, 1, 1, 1]})
    for name, history in histories["augmentation"].items():
        plot.learning_curves(history, ("train_loss",), ax=axes[0], label=name)
    axes[0].set(title="augmented batches are harder to fit")
    for ax, (name, image) in zip(axes[1:], augmented_examples(config, histories["example"]).items()):
        ax.imshow(image[:, :, 0], cmap="gray_r")
        ax.set(title=name, xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(out / "augmentation.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.8))
    sweep = summary["width_sweep"]
    for p, style in ((0.0, "o-"), (summary["config"]["sweep_dropout"], "s-")):
        mine = [r for r in sweep if r["dropout"] == p]
        widths = [r["width"] for r in mine]
        line, = ax.semilogx(widths, [mean(r["test_accuracy"]) for r in mine], style, label=f"test, dropout {p:g}")
        ax.semilogx(widths, [mean(r["train_accuracy"]) for r in mine], style, color=line.get_color(), alpha=0.4,
                    label=f"train, dropout {p:g}")
    ax.set(xlabel="hidden units", ylabel="accuracy", title="width with and without dropout")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "width_sweep.png", dpi=90)
    plt.close(fig)


def augmented_examples(config: Config, image: np.ndarray) -> dict:
    """One training image (H, W, C) as it is, jittered and with noise, as the augmentation part draws them."""
    key = jax.random.PRNGKey(config.seed)
    batch = jnp.asarray(image)[None]
    return {"image": image, f"shift ±{config.shift}": np.asarray(augment.augment(key, batch, shift=config.shift))[0],
            f"noise {config.noise:g}": np.asarray(augment.augment(key, batch, noise=config.noise))[0]}


def report(summary: dict) -> str:
    quick = summary["config"]["quick"]
    rows = summary["penalties"]["settings"]
    penalties = common.markdown_table(
        ["penalty", "strength", f"fraction below {summary['penalties']['tolerance']:g}", "median abs(w)", "train",
         "test"],
        [[r["penalty"], f"{r['strength']:g}", f"{mean(r['zero_fraction']):.1%}", f"{mean(r['median_abs']):.2e}",
          f"{mean(r['train_accuracy']):.4f}", f"{mean(r['test_accuracy']):.4f}"] for r in rows])
    sweep = common.markdown_table(
        ["hidden units", "parameters", "dropout", "train", "validation", "test"],
        [[r["width"], r["params"], f"{r['dropout']:g}", f"{mean(r['train_accuracy']):.4f}",
          f"{mean(r['val_accuracy']):.4f}", f"{mean(r['test_accuracy']):.4f}"] for r in summary["width_sweep"]])
    c, aug = summary["config"], summary["augmentation"]
    return "\n\n".join([
        f"# Regularization{' (quick mode)' if quick else ''}",
        f"A ReLU MLP with one hidden layer on {summary['train_examples']:,} {summary['dataset']} training images "
        f"(validation: {summary['validation_examples']:,} more from the training set; test: the "
        f"{summary['test_examples']:,} test images), {c['epochs']} epochs, batches of {c['batch_size']}; "
        f"{summary['config_resolved']['seeds']} seeds per setting, trained together; "
        f"{summary['seconds']:.0f} s on {summary['environment']['cpu']} ({summary['environment']['cores']} cores). "
        "Numbers are means over the seeds (± the standard error of a difference, paired by seed); a difference is "
        f"judged when it exceeds {'three times' if quick else 'twice'} its standard error plus {MARGIN}.",
        "## What the numbers say", common.claims_markdown(summary["claims"]),
        "## L1 against L2",
        f"SGD with momentum 0.9 (learning rate {c['sgd_learning_rate']} decaying to 0 by a cosine), {c['hidden']} "
        "hidden units; Adam would blur the contrast, as it scales each weight's step by its gradient's size, so "
        "that an L2 gradient moves a weight the data does not use by a fixed step, as L1 does. jaxnets adds "
        "λ·Σ|w| (L1) or λ·½Σw² (L2, biases excluded) to the loss and follows its (sub)gradient: an L1-penalised "
        "weight that the data does not hold up walks to zero and then flips around it by the size of the last "
        f"steps, so 'zero' here means |w| < {summary['penalties']['tolerance']:g} (a proximal, soft-thresholding "
        "update would give exact zeros). The weights that go first are those of the border pixels, which are "
        "almost always 0 in Fashion-MNIST and give them no gradient.", penalties,
        "![penalties](penalties.png)", "![first-layer weights](first_layer_weights.png)",
        "## Turning the penalty on after a couple of epochs", "![timing](penalty_timing.png)",
        "## Dropout, and width with and without it",
        f"Adam at a constant learning rate of {c['adam_learning_rate']} (so that the unregularised nets overfit as "
        "early stopping expects); test accuracy after the last epoch. Dropout at 0.5 on a layer of 8 or 32 units "
        "leaves too few to fit with.", sweep,
        "![dropout](dropout.png)", "![width sweep](width_sweep.png)",
        "## Early stopping", "![early stopping](early_stopping.png)",
        "## Augmentation", "![augmentation](augmentation.png)",
        "## Why a claim may not hold here",
        f"The setting is small so that it runs in minutes on two CPU cores: {summary['train_examples']:,} training "
        f"images, {c['epochs']} epochs, one hidden layer of at most {max(c['widths'])} units, an MLP. The "
        "regularisers do what they should to the overfitting (the train–test gap narrows, the early-stopped nets "
        "have a lower test loss) but their effect on test accuracy is a few tenths of a point here, about the "
        "size of the seed noise. Hinton et al.'s dropout nets had thousands of units per layer and trained for "
        "thousands of epochs. Jittering and noise make the training data harder to fit, which "
        f"{c['epochs']} epochs do not finish (training accuracy {mean(aug['shift']['train_accuracy']):.3f} with "
        f"jittering, {mean(aug['none']['train_accuracy']):.3f} without), and a one-pixel shift helps a "
        "convolutional net, which shares its weights across positions, more than an MLP, which has to learn "
        f"every shifted copy anew. Turning a penalty on {c['regularize_from']} epochs late leaves no trace after "
        f"{c['epochs']} epochs of a learning rate decaying to 0."])


def run(config: Config) -> dict:
    """Runs every part, writes the figures, report.md and summary.json (last), and returns the summary."""
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.resolved()
    seeds = list(range(config.seed, config.seed + settings["seeds"]))
    dataset = common.load_dataset(config.dataset)
    splits = split(dataset, config)
    model = mlp(config.hidden, dataset.num_classes)
    print(f"regularization on {dataset.name}: {len(splits['train'][0])} training images, {len(seeds)} seeds "
          f"({'quick' if config.quick else 'full'})", flush=True)
    penalties, drawn = penalty_study(config, splits, seeds, model)
    print("penalties: " + ", ".join(f"{r['penalty']} {r['strength']:g}: {mean(r['zero_fraction']):.1%} zero, test "
                                    f"{mean(r['test_accuracy']):.4f}" for r in penalties["settings"]), flush=True)
    timing, timing_histories = timing_study(config, splits, seeds, model)
    print("width sweep and dropout:", flush=True)
    sweep, sweep_histories = width_study(config, splits, seeds, dataset.num_classes)
    widest = max(config.widths)
    early = early_stopping_study(config, splits, seeds, sweep, dataset.num_classes)
    print(f"early stopping: best epochs {early['best_epoch']}", flush=True)
    baseline = next(r for r in sweep if r["width"] == config.hidden and r["dropout"] == 0.0)
    numbers = {k: baseline[k] for k in baseline if k.endswith(("_accuracy", "_loss"))}
    augmentation, augmentation_histories = augmentation_study(
        config, splits, seeds, model, {"numbers": numbers, "history": sweep_histories[(config.hidden, 0.0)]})
    summary = {"config": common.config_dict(config), "config_resolved": settings,
               "environment": environment(config.seed), "dataset": dataset.name,
               "train_examples": len(splits["train"][0]), "validation_examples": len(splits["val"][0]),
               "test_examples": len(splits["test"][0]), "penalties": penalties, "penalty_timing": timing,
               "dropout": {"width": widest, "rates": [r for r in sweep if r["width"] == widest]},
               "early_stopping": early, "augmentation": augmentation, "width_sweep": sweep}
    summary["claims"] = judge(summary, config.quick)
    histories = {"timing": timing_histories, "widest": sweep_histories[(widest, 0.0)],
                 "dropout": {p: sweep_histories[(widest, p)] for p in sorted({0.0, *config.dropout_rates})},
                 "augmentation": augmentation_histories, "example": splits["train"][0][0]}
    write_figures(out, config, summary, drawn, dataset.x_train.shape[1:], histories)
    summary["seconds"] = time.perf_counter() - started
    return common.finish_lesson(out, summary, report(summary), SUMMARY_SCHEMA, headline(summary))


def headline(summary: dict) -> str:
    return common.claims_headline(summary["claims"], "regularization")
