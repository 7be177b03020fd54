"""Depth: why deep plain networks are hard to train, and what skip connections and batch norm change.

Tests the lecture notes' claims about depth with numbers:

* "For large networks, gradients can blow up or go to zero. This can be helped by batchnorm or ResNet
  architecture" (the first deck, "Common training issues"): the gradient norm of every weight layer at
  initialisation, for plain, batch-normalised and residual ReLU MLPs of 8, 16 and 32 weight layers (and
  during training for the trained ones);
* "training deeper networks consistently yielded poorer results" (CMU, "Deep Learning History") and
  "Networks are now at 150 layers … skip connections" (Toronto, "150 Layers!"): plain, batch-normalised
  and residual MLPs of 8 and 32 weight layers trained on Fashion-MNIST, each at its best learning rate;
* batch normalisation (Fergus, "Batch Normalization", Ioffe & Szegedy's Figure 2): the 8-layer net with
  and without it at the same learning rates, base × 1, × 5 and × 30 as BN-Baseline, BN-x5 and BN-x30:
  training steps to the accuracy the net without it reaches, and divergence at the highest rate.

The networks: ``depth`` counts weight layers. Plain: ``depth − 1`` hidden Dense–ReLU layers of ``width``
units and a Dense output (Dense–BatchNorm–ReLU with batch norm, as Ioffe & Szegedy place it). Residual:
a Dense stem, ``(depth − 2) / 2`` pre-activation blocks ``x + W₂ relu(W₁ relu(x))`` (He et al. 2016,
"Identity mappings") and a ReLU–Dense output: the same weight layers and parameters as the plain net.
All weights are He-initialised; the second layer of each residual branch has its variance divided by
the number of blocks (as GPT-2 and Fixup scale residual branches), without which the residual sum's
variance triples in every block (the init study shows that net too, and the plain net with Glorot
weights). Every net trains with SGD with momentum 0.9, batch 128, over one grid of learning rates
(0.01 × 1, 5, 30) × seeds in one compiled program per network (``fit_seeds``; diverged runs are
recorded, not raised). Each network's learning rate is the grid's best on a validation split carved
from the training set; the accuracy claims are judged on the training set (the deep-network problem is
one of optimisation), the test set gives numbers only. A difference counts where it exceeds the half-width
of its 95 % confidence interval (Welch's t over the seeds) plus 0.01; quick mode leaves a claim unjudged
where it cannot tell, the full run counts it as not held.

Command: ``python -m experiments depth`` (full, 5 seeds) or ``--quick`` (CI); ``--dataset``, ``--seeds``,
``--out``. Run time on the 2-core CPU (AMD EPYC, 2026-12-01): quick 41 s wall with a warm compilation
cache; full 11 min 52 s wall while other experiments shared the CPU (6 min 32 s of CPU).
Expected result (full run): 6 of the 7 claims held. At initialisation ‖∇W₁‖/‖∇W_L‖ is 5 to 6 for the plain
nets and 606 for the 32-layer batch-normalised one; trained at its best rate the 32-layer plain net reaches
0.675 ± 0.051 training accuracy against 0.883 for 8 layers, while the residual nets reach 0.891 at both
depths. Batch norm reaches the plain 8-layer net's accuracy in 992 steps against 1,217–1,417 and trains at
30× the rate, where 4 of 5 plain runs diverge. Not shown: batch norm does not rescue the 32-layer plain MLP
(0.704 ± 0.015 against 0.675 ± 0.051, within the interval). Quick mode agrees wherever it judges (4 of 7).

Outputs in ``results/depth/``: summary.json, grad_norms_init.png, grad_norms_training.png, training_loss.png,
batchnorm.png, report.md.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from experiments import common
from experiments.activations import epochs_to, load_data
from jaxnets import nn, optim, plot
from jaxnets.losses import cross_entropy
from jaxnets.runtime import environment
from jaxnets.seeds import fit_seeds, init_runs, seed_grid, seed_keys

SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["config", "config_resolved", "environment", "dataset", "init_gradients", "trained", "batchnorm",
                 "claims", "seconds"],
    "properties": {"claims": common.CLAIMS_SCHEMA},
}
AS_WELL = 0.02  # "trains as well": a training accuracy at most this much below (the whole 95 % interval)
TRAINED = ("plain", "batchnorm", "residual")  # the families that are trained; the others are only measured at init
FAMILIES = {
    "plain": "plain, He init",
    "plain_glorot": "plain, Glorot init",
    "batchnorm": "plain + batch norm",
    "residual": "residual, branch scaled",
    "residual_unscaled": "residual, unscaled",
}


@dataclasses.dataclass
class Config:
    """See the module docstring for the command, run time and expected result."""

    quick: bool = False
    out: Path = Path("results/depth")
    dataset: str | None = None  # None: Fashion-MNIST if installed, else digits
    seeds: int | None = None  # default 3 (quick) / 5 (full)
    seed: int = 0
    train_size: int | None = None  # default 5,000 / 20,000 training images
    validation_size: int | None = None  # default 2,000 / 5,000, carved from the training set
    epochs: int | None = None  # default 4 / 10
    depths: tuple[int, ...] = (8, 32)  # weight layers of the trained nets (the claims compare the first and last)
    init_depths: tuple[int, ...] | None = None  # … of the nets whose gradients are measured at init; default
    # the trained depths (quick) / 8, 16, 32 (full)
    width: int = 64
    batch_size: int = 128
    learning_rates: tuple[float, ...] = (0.01, 0.05, 0.3)  # 0.01 × 1, 5, 30 (Ioffe & Szegedy's BN-x5, BN-x30)
    probe_size: int = 256  # training images on which gradient norms are measured
    train_eval_size: int = 5000  # training images on which the trained nets' training accuracy is measured

    def resolved(self) -> dict:
        quick = self.quick
        return {"seeds": self.seeds or (3 if quick else 5), "train_size": self.train_size or (5000 if quick else 20000),
                "validation_size": self.validation_size or (2000 if quick else 5000),
                "epochs": self.epochs or (4 if quick else 10),
                "init_depths": self.init_depths or (self.depths if quick else tuple(sorted({*self.depths, 8, 16, 32})))}


# ---------------------------------------------------------------------------------------- networks


def plain_net(depth: int, width: int, num_classes: int, *, batchnorm: bool = False,
              w_init: str = "he_normal") -> nn.Sequential:
    """``depth`` weight layers: ``depth − 1`` hidden Dense(width)–[BatchNorm]–ReLU layers, then Dense(num_classes).
    x: (batch, …) → (batch, num_classes) logits."""
    layers: list = [("flatten", nn.Flatten())]
    for i in range(1, depth):
        layers.append((f"dense{i}", nn.Dense(width, w_init=w_init)))
        layers += [(f"bn{i}", nn.BatchNorm())] if batchnorm else []
        layers.append((f"relu{i}", nn.Activation("relu")))
    layers.append((f"dense{depth}", nn.Dense(num_classes, w_init=w_init)))
    return nn.Sequential(layers, name="plain")


def residual_block(width: int, branch_scale: float = 1.0) -> nn.ResidualBlock:
    """The pre-activation block ``x + W₂ relu(W₁ relu(x)) (+ biases)``, x: (batch, width) → (batch, width);
    W₁ He-initialised, W₂ with He's variance × ``branch_scale``."""
    last = jax.nn.initializers.variance_scaling(2.0 * branch_scale, "fan_in", "truncated_normal")
    body = nn.Sequential([("relu1", nn.Activation("relu")), ("dense1", nn.Dense(width, w_init="he_normal")),
                          ("relu2", nn.Activation("relu")), ("dense2", nn.Dense(width, w_init=last))], name="body")
    return nn.ResidualBlock(body, shortcut="identity", activation=None)


def residual_net(depth: int, width: int, num_classes: int, *, scaled: bool = True) -> nn.Sequential:
    """``depth`` weight layers: a Dense(width) stem, ``(depth − 2) / 2`` residual blocks (their second
    layers' variance divided by the number of blocks when ``scaled``), ReLU, Dense(num_classes).
    x: (batch, …) → (batch, num_classes) logits."""
    if depth < 4 or depth % 2:
        raise ValueError(f"residual_net: depth must be even and at least 4 (stem, blocks of 2, output), got {depth}")
    blocks = (depth - 2) // 2
    layers: list = [("flatten", nn.Flatten()), ("stem", nn.Dense(width, w_init="he_normal"))]
    layers += [(f"block{b}", residual_block(width, 1.0 / blocks if scaled else 1.0)) for b in range(1, blocks + 1)]
    layers += [("relu", nn.Activation("relu")), ("output", nn.Dense(num_classes, w_init="he_normal"))]
    return nn.Sequential(layers, name="residual")


def build(family: str, depth: int, width: int, num_classes: int) -> nn.Sequential:
    """The network of ``family`` (a key of ``FAMILIES``) with ``depth`` weight layers."""
    if family == "residual" or family == "residual_unscaled":
        return residual_net(depth, width, num_classes, scaled=family == "residual")
    return plain_net(depth, width, num_classes, batchnorm=family == "batchnorm",
                     w_init="glorot_uniform" if family == "plain_glorot" else "he_normal")


# ---------------------------------------------------------------------------------- gradient norms


def weight_layer_paths(layer: nn.Layer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The params path of every Dense layer inside ``layer``, in the order the input meets them (into
    Sequentials and residual bodies; ``inspect.gradient_norms`` sorts paths by name instead, dense10 before dense2)."""
    if isinstance(layer, nn.Dense):
        return [prefix]
    if isinstance(layer, nn.Sequential):
        return [path for name, inner in layer.layers for path in weight_layer_paths(inner, (*prefix, name))]
    if isinstance(layer, nn.ResidualBlock):
        return weight_layer_paths(layer.body, (*prefix, "body"))
    return []


def weight_grad_norms(grads: dict, paths: list[tuple[str, ...]]) -> jax.Array:
    """‖∂loss/∂W‖ (Frobenius) of the weight matrix at each params path: (len(paths),)."""
    norms = []
    for path in paths:
        leaf = grads
        for name in path:
            leaf = leaf[name]
        norms.append(jnp.linalg.norm(leaf["w"]))
    return jnp.stack(norms)


def make_grad_norm_fn(model: nn.Sequential):
    """``f(params, state, x, t) -> {"grad_norm": (weight layers,)}`` for one run: the gradient norm of every
    weight matrix, input side first, of the mean cross-entropy on x: (P, …), t: (P,), in training mode (batch
    norm uses the batch's statistics, as in a training step)."""
    paths = weight_layer_paths(model)

    def grad_norm(params, state, x, t):
        loss = lambda p: jnp.mean(cross_entropy(model.apply(p, state, x, train=True)[0], t))  # noqa: E731
        return {"grad_norm": weight_grad_norms(jax.grad(loss)(params), paths)}

    return grad_norm


def layer_names(model: nn.Sequential) -> list[str]:
    """A short name per weight layer, input side first (``dense1``, ``block3/dense2``, …)."""
    return ["/".join(name for name in path if name != "body") for path in weight_layer_paths(model)]


def seed_keys_split(seeds: list[int]) -> tuple[jax.Array, jax.Array]:
    """(init keys, fit keys) of the seeds, each (len(seeds), 2): one for the initial weights, one for the
    batch order and the rest of training."""
    keys = jax.vmap(lambda k: jax.random.split(k))(seed_keys(seeds))
    return keys[:, 0], keys[:, 1]


def init_seeds(model: nn.Sequential, seeds: list[int], x) -> tuple[dict, dict]:
    """Stacked initial ``(params, state)`` of the seeds (leaves (seeds, …)). x: a batch or shape of one run's input."""
    return init_runs(model, seed_keys_split(seeds)[0], x)


def init_gradients(model: nn.Sequential, params, state, probe: tuple) -> dict:
    """``{"layers": names, "grad_norm": (runs, layers)}`` of stacked params/state on the probe batch (eager: for
    a few runs cheaper than compiling)."""
    norms = jax.vmap(make_grad_norm_fn(model), in_axes=(0, 0, None, None))(params, state, *probe)["grad_norm"]
    return {"layers": layer_names(model), "grad_norm": np.asarray(norms)}


def init_gradient_study(config: Config, arrays: dict, seeds: list[int], depths: tuple[int, ...], measured: dict) -> dict:
    """Gradient norms at initialisation of every family at every depth, on the probe batch:
    ``{family: {depth: {"layers": names, "grad_norm": (seeds, layers)}}}``; those ``measured`` already
    (``{(family, depth): entry}``, from the training runs) are taken from there."""
    out = {}
    probe = (jnp.asarray(arrays["x_probe"]), jnp.asarray(arrays["y_probe"]))
    for family in FAMILIES:
        out[family] = {}
        for depth in depths:
            if (family, depth) not in measured:
                model = build(family, depth, config.width, arrays["num_classes"])
                measured[(family, depth)] = init_gradients(model, *init_seeds(model, seeds, arrays["x_train"][:1]), probe)
            out[family][str(depth)] = measured[(family, depth)]
    return out


def first_last_ratio(norms) -> np.ndarray:
    """‖∇W₁‖ / ‖∇W_L‖ of each run: norms (…, layers) → (…,)."""
    norms = np.asarray(norms, np.float64)
    return norms[..., 0] / norms[..., -1]


# ----------------------------------------------------------------------------------------- training


def accuracies(model: nn.Sequential, params, state, x, t) -> np.ndarray:
    """Each run's accuracy on x: (N, …), t: (N,) in evaluation mode, for stacked params/state: (runs,).
    (Eager: a few runs' forward passes cost less than compiling an evaluation program for each network.)"""
    correct = lambda p, s: jnp.mean(jnp.argmax(model.apply(p, s, x)[0], axis=-1) == t)  # noqa: E731
    return np.asarray(jax.vmap(correct)(params, state), np.float64)


def train_family(family: str, depth: int, config: Config, arrays: dict, seeds: list[int], epochs: int) -> dict:
    """Every (learning rate, seed) of one network trained together; returns its record: per run (lr slowest)
    ``learning_rate``, ``seed``, ``diverged_epoch``; histories ``val_accuracy`` (epochs + 1, runs), initialisation
    first, ``train_loss`` (epochs, runs), ``grad_norm`` (epochs + 1, runs, layers); the best learning rate
    (:func:`best_learning_rate`) and the ``train_accuracy`` (on the first ``train_eval_size`` training images)
    and ``test_accuracy`` of its runs after training, in evaluation mode."""
    model = build(family, depth, config.width, arrays["num_classes"])
    run_seeds, values = seed_grid(seeds, learning_rate=list(config.learning_rates))
    repeats = len(config.learning_rates)
    params, state = init_seeds(model, seeds, arrays["x_train"][:1])  # each seed's weights, the same at every rate
    x_val, y_val = jnp.asarray(arrays["x_val"]), jnp.asarray(arrays["y_val"])
    probe = (jnp.asarray(arrays["x_probe"]), jnp.asarray(arrays["y_probe"]))
    at_init = init_gradients(model, params, state, probe)["grad_norm"]  # (seeds, layers)
    val_at_init = accuracies(model, params, state, x_val, y_val)
    tile = lambda a: np.tile(a, (repeats,) + (1,) * (np.ndim(a) - 1))  # noqa: E731  the seeds' block per rate
    started = time.perf_counter()
    result = fit_seeds(model, *jax.tree.map(tile, (params, state)), (arrays["x_train"], arrays["y_train"]),
                       loss="cross_entropy", optimizer=optim.optimizer("momentum", config.learning_rates[0]),
                       epochs=epochs, batch_size=config.batch_size, keys=seed_keys_split(run_seeds)[1],
                       hyperparams=values, validation_data=(x_val, y_val), metrics_fn=make_grad_norm_fn(model),
                       metrics_data=probe, on_non_finite="record", progress=False)
    h = result.history
    record = {"family": family, "depth": depth, "layers": layer_names(model), "learning_rate": values["learning_rate"],
              "seed": run_seeds, "diverged_epoch": np.asarray(result.diverged_epoch),
              "steps_per_epoch": len(arrays["x_train"]) // config.batch_size,
              "val_accuracy": np.concatenate([tile(val_at_init)[None], np.asarray(h["val_accuracy"])]),
              "train_loss": np.asarray(h["train_loss"]),
              "grad_norm": np.concatenate([tile(at_init)[None], np.asarray(h["grad_norm"])]),
              "seconds": time.perf_counter() - started}
    record["best_learning_rate"] = best_learning_rate(record)
    chosen = jax.tree.map(lambda a: a[runs_at(record, record["best_learning_rate"])], (result.params, result.state))
    n = config.train_eval_size
    record["train_accuracy"] = accuracies(model, *chosen, jnp.asarray(arrays["x_train"][:n]),
                                          jnp.asarray(arrays["y_train"][:n]))
    record["test_accuracy"] = accuracies(model, *chosen, jnp.asarray(arrays["x_test"]), jnp.asarray(arrays["y_test"]))
    return record


def best_learning_rate(record: dict) -> float | None:
    """The learning rate whose runs end with the highest mean validation accuracy, among those with no
    diverged run; None when every rate has one."""
    rates, diverged = np.asarray(record["learning_rate"]), np.asarray(record["diverged_epoch"])
    final = np.asarray(record["val_accuracy"], np.float64)[-1]
    scores = {float(rate): float(np.mean(final[rates == rate])) for rate in dict.fromkeys(rates.tolist())
              if not np.any(diverged[rates == rate] >= 0)}
    return max(scores, key=scores.get) if scores else None


def runs_at(record: dict, rate: float | None) -> np.ndarray:
    """Indices of the runs of ``record`` trained at learning rate ``rate`` (none for None)."""
    return np.flatnonzero(np.asarray(record["learning_rate"]) == rate) if rate is not None else np.array([], int)


def summarize_family(record: dict) -> dict:
    """A trained network's summary entry: per learning rate the final validation accuracy and diverged runs;
    at the best rate each seed's training, validation and test accuracy and the per-layer gradient norms
    (mean over its seeds) at init, after the first epoch and after the last."""
    rates = np.asarray(record["learning_rate"])
    final_val = np.asarray(record["val_accuracy"], np.float64)[-1]
    best = record["best_learning_rate"]
    mine = runs_at(record, best)
    norms = np.asarray(record["grad_norm"], np.float64)
    per_rate = {str(rate): {"val_accuracy": final_val[rates == rate],
                            "diverged": int(np.sum(np.asarray(record["diverged_epoch"])[rates == rate] >= 0))}
                for rate in dict.fromkeys(rates.tolist())}
    return {"family": record["family"], "depth": record["depth"], "best_learning_rate": best, "per_rate": per_rate,
            "train_accuracy": record["train_accuracy"], "val_accuracy": final_val[mine],
            "test_accuracy": record["test_accuracy"], "layers": record["layers"],
            "grad_norm_init": norms[0][mine].mean(axis=0) if mine.size else [],
            "grad_norm_epoch1": norms[1][mine].mean(axis=0) if mine.size else [],
            "grad_norm_final": norms[-1][mine].mean(axis=0) if mine.size else [],
            "seconds": record["seconds"]}


def steps_to(accuracy: np.ndarray, target: float, steps_per_epoch: int) -> float | None:
    """Training steps until the validation accuracy (epochs + 1,), initialisation first, first reaches
    ``target``, interpolated linearly between the evaluations around the crossing; None if it never does."""
    epochs = epochs_to(1.0 - np.asarray(accuracy, np.float64), 1.0 - target)  # counts the initialisation as epoch 1
    return None if epochs is None else (epochs - 1.0) * steps_per_epoch


def batchnorm_study(records: dict, depth: int) -> dict:
    """The net of ``depth`` layers with and without batch norm (Ioffe & Szegedy's Figure 2). Base rate: the
    best rate of the net without it; target: the lowest best-epoch validation accuracy of its seeds at that
    rate (every seed reaches it); per rate, each run's steps to the target and divergence."""
    plain, bn = records[("plain", depth)], records[("batchnorm", depth)]
    base = best_learning_rate(plain)
    val = np.asarray(plain["val_accuracy"], np.float64)
    target = float(np.min(np.nanmax(val[:, runs_at(plain, base)], axis=0))) if base is not None else None
    out = {"depth": depth, "base_learning_rate": base, "target": target, "steps_per_epoch": plain["steps_per_epoch"]}
    for name, record in (("plain", plain), ("batchnorm", bn)):
        out[name] = {}
        for rate in dict.fromkeys(np.asarray(record["learning_rate"]).tolist()):
            runs = runs_at(record, rate)
            accuracy = np.asarray(record["val_accuracy"], np.float64)[:, runs]
            out[name][str(rate)] = {
                "steps_to_target": [None if target is None or d >= 0 else steps_to(accuracy[:, i], target,
                                                                                    record["steps_per_epoch"])
                                    for i, d in enumerate(np.asarray(record["diverged_epoch"])[runs])],
                "diverged": int(np.sum(np.asarray(record["diverged_epoch"])[runs] >= 0)),
                "final_val_accuracy": accuracy[-1]}
    return out


# ------------------------------------------------------------------------------------------- claims


def compare(a, b) -> tuple[float, float, bool]:
    """(mean(a) − mean(b), the half-width of its 95 % confidence interval, whether the difference exceeds that
    half-width plus 0.01). The interval is Welch's t interval: with 3 seeds its half-width is about 4.3 standard
    errors, with 5 about 2.8 (a plain 2 standard errors would call too many differences of 3 seeds clear)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    difference = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return difference, float("inf"), False
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return difference, 0.0, abs(difference) > 0.01
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    noise = float(stats.t.ppf(0.975, dof) * np.sqrt(va + vb))
    return difference, noise, abs(difference) > noise + 0.01


def verdict_of(difference: float, clear: bool, quick: bool) -> bool | None:
    """Held when the difference is clearly positive; unjudged (quick) or not held (full) when unclear."""
    return (difference > 0) if clear else (None if quick else False)


def accuracy_text(entry: dict) -> str:
    acc = np.asarray(entry["train_accuracy"], np.float64)
    return f"{acc.mean():.3f} ± {acc.std():.3f} (lr {entry['best_learning_rate']})" if acc.size else "every rate diverged"


def judge(summary: dict, quick: bool) -> list[dict]:
    claim = common.claim
    grads, trained, bn = summary["init_gradients"], summary["trained"], summary["batchnorm"]
    depths = summary["config_resolved"]["init_depths"]
    shallow, deep = str(min(depths)), str(max(depths))
    ratio = {f: {d: float(np.median(first_last_ratio(grads[f][d]["grad_norm"]))) for d in (shallow, deep)} for f in FAMILIES}
    scale = {f: float(np.median(np.asarray(grads[f][deep]["grad_norm"])) / np.median(np.asarray(grads[f][shallow]["grad_norm"])))
             for f in FAMILIES}
    blow_up = [f for f in FAMILIES if ratio[f][deep] > 10 * max(ratio[f][shallow], 1.0) or scale[f] > 10]
    vanish = [f for f in FAMILIES if scale[f] < 0.1]
    claims = [claim(
        "For large networks, gradients can blow up or go to zero", "S0", "Common training issues",
        bool(blow_up or vanish),
        f"‖∇W₁‖/‖∇W_L‖ at init, {shallow} → {deep} weight layers: "
        + "; ".join(f"{FAMILIES[f]} {ratio[f][shallow]:.3g} → {ratio[f][deep]:.3g}" for f in FAMILIES)
        + f"; median layer gradient at {deep} layers / at {shallow}: "
        + ", ".join(f"{FAMILIES[f]} {scale[f]:.2g}" for f in FAMILIES)
        + f". Blow up: {', '.join(FAMILIES[f] for f in blow_up) or 'none'}; go to zero: "
        + f"{', '.join(FAMILIES[f] for f in vanish) or 'none'}")]
    depths = sorted({entry["depth"] for entry in trained.values()})
    low, high = f"plain/{depths[0]}", f"plain/{depths[-1]}"
    entries = {key: trained[key] for key in trained}

    def pair(a: str, b: str) -> tuple[float, float, bool]:
        return compare(entries[a]["train_accuracy"], entries[b]["train_accuracy"]) \
            if len(entries[a]["train_accuracy"]) and len(entries[b]["train_accuracy"]) else (float("nan"), 0.0, False)

    d, noise, clear = pair(low, high)
    claims.append(claim(
        "Training deeper (plain) networks yields poorer results", "S2", "Deep Learning History",
        verdict_of(d, clear, quick),
        f"training accuracy, {depths[0]} vs {depths[-1]} weight layers, each at its best learning rate: "
        f"{accuracy_text(entries[low])} vs {accuracy_text(entries[high])} (difference {d:+.3f} ± {noise:.3f}); "
        f"test accuracy {np.mean(entries[low]['test_accuracy']):.3f} vs {np.mean(entries[high]['test_accuracy']):.3f}"))
    r_low, r_high = f"residual/{depths[0]}", f"residual/{depths[-1]}"
    d, noise, _ = pair(r_high, r_low)
    margin = d + AS_WELL  # how far the deep net stays above "AS_WELL worse than the shallow one"
    claims.append(claim(
        f"With skip connections the deep network trains as well as the shallow one ({depths[-1]} vs {depths[0]} "
        f"layers, training accuracy within {AS_WELL}; 'networks are now at 150 layers')", "S3", "150 Layers!",
        verdict_of(margin, abs(margin) > noise, quick),  # the interval of the difference lies above −AS_WELL
        f"training accuracy of the residual nets: {accuracy_text(entries[r_low])} vs {accuracy_text(entries[r_high])} "
        f"(difference {d:+.3f} ± {noise:.3f}); test accuracy {np.mean(entries[r_low]['test_accuracy']):.3f} vs "
        f"{np.mean(entries[r_high]['test_accuracy']):.3f}"))
    for family, text in (("residual", "The ResNet architecture"), ("batchnorm", "Batch norm")):
        key = f"{family}/{depths[-1]}"
        d, noise, clear = pair(key, high)
        claims.append(claim(
            f"{text} helps the deep network: at {depths[-1]} layers it trains better than the plain net", "S0",
            "Common training issues", verdict_of(d, clear, quick),
            f"training accuracy {accuracy_text(entries[key])} vs plain {accuracy_text(entries[high])} (difference "
            f"{d:+.3f} ± {noise:.3f}); ‖∇W₁‖/‖∇W_L‖ at init {ratio[family][deep]:.3g} vs plain "
            f"{ratio['plain'][deep]:.3g}"))
    claims += judge_batchnorm(bn, quick)
    return claims


def judge_batchnorm(bn: dict, quick: bool) -> list[dict]:
    """The claims of Ioffe & Szegedy's Figure 2 on the net of ``bn["depth"]`` layers."""
    claim = common.claim
    base, target, steps_per_epoch = bn["base_learning_rate"], bn["target"], bn["steps_per_epoch"]
    slide = "Batch Normalization"
    if base is None:
        text = "every learning rate diverged without batch norm: no baseline"
        return [claim("With batch norm the network reaches the baseline's accuracy in fewer steps", "S1", slide, None, text),
                claim("Batch norm allows a learning rate at which the network without it diverges", "S1", slide, None, text)]
    steps = lambda name, rate: [np.inf if s is None else s for s in bn[name][str(rate)]["steps_to_target"]]  # noqa: E731
    plain, normed = np.asarray(steps("plain", base)), np.asarray(steps("batchnorm", base))
    reached = bool(np.all(np.isfinite(normed)))
    d, noise, clear = compare(plain, normed) if reached else (float("nan"), 0.0, False)
    fastest = min(bn["batchnorm"], key=lambda rate: np.mean(steps("batchnorm", rate)))
    fmt = lambda v: "never" if not np.isfinite(v) else f"{v:.0f}"  # noqa: E731
    claims = [claim(
        "With batch norm the network reaches the accuracy of the network without it in fewer training steps (Figure 2: "
        "BN-Baseline)", "S1", slide, verdict_of(d, clear, quick) if reached else (None if quick else False),
        f"{bn['depth']} layers, same learning rate {base} (the best without batch norm on validation), target "
        f"{target:.3f} validation accuracy ({steps_per_epoch} steps an epoch): without batch norm "
        f"{', '.join(fmt(s) for s in plain)} steps, with it {', '.join(fmt(s) for s in normed)}"
        + (f" ({np.mean(plain) / np.mean(normed):.1f}× fewer; {d:.0f} ± {noise:.0f} fewer)" if reached else "")
        + f"; with batch norm at its fastest rate {fastest}: "
        + ", ".join(fmt(s) for s in steps("batchnorm", fastest)) + " steps")]
    top = str(max(float(rate) for rate in bn["plain"]))
    plain_top, bn_top = bn["plain"][top], bn["batchnorm"][top]
    plain_failed = sum(1 for a in plain_top["final_val_accuracy"] if a is None or not a >= 0.5)
    bn_trained = sum(1 for s in bn_top["steps_to_target"] if s is not None)
    runs = len(plain_top["steps_to_target"])
    claims.append(claim(
        "Batch norm allows a learning rate at which the network without it diverges or fails (Figure 2: BN-x30)", "S1",
        slide,
        plain_failed == runs and bn_trained == runs,
        f"at learning rate {top} ({float(top) / base:g}× the base): without batch norm {plain_top['diverged']} of {runs} "
        f"runs diverged (non-finite loss, recorded) and {plain_failed} of {runs} ended below 0.5 validation accuracy; "
        f"with it {bn_top['diverged']} diverged and {bn_trained} of {runs} reached the target "
        f"(final validation accuracy {', '.join(f'{a:.3f}' for a in bn_top['final_val_accuracy'])})"))
    return claims


# ------------------------------------------------------------------------------------------ outputs


def per_layer(names: list[str], norms) -> dict:
    """``{layer name: its norms over the runs}`` for ``plot.grad_norms``; norms (runs, layers)."""
    norms = np.asarray(norms, np.float64)
    return {name: norms[:, i] for i, name in enumerate(names)}


def write_figures(out: Path, summary: dict, records: dict) -> None:
    grads = summary["init_gradients"]
    fig, axes = plt.subplots(1, len(FAMILIES), figsize=(4 * len(FAMILIES), 3.6))
    for ax, family in zip(axes, FAMILIES):
        rows = [per_layer(entry["layers"], entry["grad_norm"]) for entry in grads[family].values()]
        plot.grad_norms(rows, ax=ax, labels=[f"{depth} layers" for depth in grads[family]])
        ax.set_xticks(ax.get_xticks()[::4])
        ax.set_xticklabels([f"{int(t) + 1}" for t in ax.get_xticks()], rotation=0)
        ax.set(title=FAMILIES[family], xlabel="weight layer (input side first)")
    fig.suptitle("Gradient norm per weight layer at initialisation (mean and range over seeds)")
    fig.tight_layout()
    fig.savefig(out / "grad_norms_init.png", dpi=80)
    plt.close(fig)

    depths = sorted({record["depth"] for record in records.values()})
    fig, axes = plt.subplots(len(depths), len(TRAINED), figsize=(4.5 * len(TRAINED), 3.4 * len(depths)), squeeze=False)
    for row, depth in zip(axes, depths):
        for ax, family in zip(row, TRAINED):
            record = records[(family, depth)]
            runs = runs_at(record, record["best_learning_rate"])
            if runs.size:
                norms = np.asarray(record["grad_norm"], np.float64)[:, runs]  # (epochs + 1, runs, layers)
                epochs = {"init": 0, "after epoch 1": 1, f"after epoch {len(norms) - 1}": len(norms) - 1}
                plot.grad_norms([per_layer(record["layers"], norms[e]) for e in epochs.values()], ax=ax,
                                labels=list(epochs))
                ax.set_xticks([])
            ax.set(title=f"{FAMILIES[family]}, {depth} layers", xlabel="weight layer (input side first)")
    fig.suptitle("Gradient norms during training (each network at its best learning rate)")
    fig.tight_layout()
    fig.savefig(out / "grad_norms_training.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(depths), figsize=(5.5 * len(depths), 3.8), squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for family in TRAINED:
            record = records[(family, depth)]
            runs = runs_at(record, record["best_learning_rate"])
            if runs.size:
                history = {"epoch": np.arange(len(record["train_loss"])), "train_loss": record["train_loss"][:, runs]}
                plot.learning_curves(history, ("train_loss",), ax=ax, label=f"{FAMILIES[family]} (lr {record['learning_rate'][runs[0]]})")
        ax.set(yscale="log", ylabel="training loss", title=f"{depth} weight layers")
    fig.tight_layout()
    fig.savefig(out / "training_loss.png", dpi=90)
    plt.close(fig)

    bn = summary["batchnorm"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name, style in (("plain", "--"), ("batchnorm", "-")):
        record = records[(name, bn["depth"])]
        for color, rate in zip(colors, bn[name]):
            runs = runs_at(record, float(rate))
            accuracy = np.asarray(record["val_accuracy"], np.float64)[:, runs]
            history = {"epoch": np.arange(len(accuracy)) - 1, "val_accuracy": accuracy}  # initialisation at epoch 0
            diverged = bn[name][rate]["diverged"]
            plot.learning_curves(history, ("val_accuracy",), ax=ax, linestyle=style, color=color,
                                 label=f"{'BN' if name == 'batchnorm' else 'no BN'}, lr {rate}"
                                 + (f" ({diverged} diverged)" if diverged else ""))
    if bn["target"] is not None:
        ax.axhline(bn["target"], color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlabel=f"epoch ({bn['steps_per_epoch']} steps each)", ylabel="validation accuracy", ylim=(0, 1),
           title=f"{bn['depth']} layers with and without batch norm (dotted: target)")
    fig.tight_layout()
    fig.savefig(out / "batchnorm.png", dpi=90)
    plt.close(fig)


def report(summary: dict) -> str:
    quick, resolved = summary["config"]["quick"], summary["config_resolved"]
    grads = summary["init_gradients"]
    depths = list(next(iter(grads.values())))
    init_table = common.markdown_table(
        ["network"] + [f"‖∇W₁‖/‖∇W_L‖, {d} layers" for d in depths] + [f"median ‖∇W‖, {d} layers" for d in depths],
        [[FAMILIES[f]] + [f"{np.median(first_last_ratio(grads[f][d]['grad_norm'])):.3g}" for d in depths]
         + [f"{np.median(np.asarray(grads[f][d]['grad_norm'])):.2e}" for d in depths] for f in FAMILIES])
    rows = []
    for entry in summary["trained"].values():
        rates = ", ".join(f"{rate}: {np.mean(np.asarray(v['val_accuracy'], np.float64)):.3f}"
                          + (f" ({v['diverged']} diverged)" if v["diverged"] else "") for rate, v in entry["per_rate"].items())
        mean = lambda k: f"{np.mean(entry[k]):.3f}" if len(entry[k]) else None  # noqa: E731
        rows.append([FAMILIES[entry["family"]], entry["depth"], rates, entry["best_learning_rate"],
                     mean("train_accuracy"), mean("val_accuracy"), mean("test_accuracy")])
    trained_table = common.markdown_table(["network", "layers", "validation accuracy by learning rate", "best rate",
                                           "train acc.", "val. acc.", "test acc."], rows)
    bn = summary["batchnorm"]
    bn_rows = [[name, rate, ", ".join("never" if s is None else f"{s:.0f}" for s in v["steps_to_target"]), v["diverged"]]
               for name in ("plain", "batchnorm") for rate, v in bn[name].items()]
    return "\n\n".join([
        f"# Depth, skip connections and batch norm{' (quick mode)' if quick else ''}",
        f"ReLU MLPs of width {summary['config']['width']} on {resolved['train_size']:,} {summary['dataset']} training "
        f"images ({resolved['validation_size']:,} more for validation), {resolved['epochs']} epochs of SGD with momentum "
        f"0.9 (batch {summary['config']['batch_size']}), {resolved['seeds']} seeds × learning rates "
        f"{summary['config']['learning_rates']}; {summary['seconds']:.0f} s on {summary['environment']['cpu']} "
        f"({summary['environment']['cores']} cores).",
        "## What the numbers say", common.claims_markdown(summary["claims"]),
        "## Gradients at initialisation", init_table, "![gradient norms at init](grad_norms_init.png)",
        "## Training plain, batch-normalised and residual nets",
        "Each network's learning rate is the one with the best final validation accuracy; the accuracies are at it.",
        trained_table, "![training loss](training_loss.png)", "![gradient norms during training](grad_norms_training.png)",
        f"## Batch norm: steps to {bn['target'] if bn['target'] is None else round(bn['target'], 3)} validation "
        f"accuracy ({bn['depth']} layers)",
        common.markdown_table(["network", "learning rate", "steps to the target (per seed)", "diverged"], bn_rows),
        "![batch norm](batchnorm.png)",
        "## Why a claim may not hold here",
        "Ioffe & Szegedy measured batch norm on an Inception CNN, and He et al. the residual nets on ImageNet; "
        "these are fully connected ReLU nets on Fashion-MNIST, trained for a few epochs at a grid of three learning "
        "rates. A deep plain MLP with batch norm is a known hard case: at initialisation its gradients grow "
        "towards the input layer (the ‖∇W₁‖/‖∇W_L‖ column above; Yang et al. 2019, \"A mean field theory of batch "
        "normalization\"), so batch norm alone does not make the 32-layer plain net train as the 8-layer one "
        "does, while the skip connections do. With a grid of three rates the best rate of each net is coarse, "
        "and a claim is judged only when the difference clears its 95 % interval."])


def run(config: Config) -> dict:
    """Runs every part, writes the figures, report.md and summary.json (last), and returns the summary."""
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config.resolved()
    seeds = list(range(config.seed, config.seed + settings["seeds"]))
    arrays, dataset_name = load_data(dataclasses.replace(config, train_size=settings["train_size"],
                                                         validation_size=settings["validation_size"]))
    print(f"depth on {dataset_name} ({'quick' if config.quick else 'full'}): {len(seeds)} seeds × "
          f"{len(config.learning_rates)} learning rates, {settings['epochs']} epochs on {len(arrays['x_train'])} images",
          flush=True)
    records = {}
    for depth in config.depths:
        for family in TRAINED:
            records[(family, depth)] = train_family(family, depth, config, arrays, seeds, settings["epochs"])
            entry = summarize_family(records[(family, depth)])
            print(f"  {family}/{depth}: best lr {entry['best_learning_rate']}, training accuracy "
                  f"{accuracy_text(entry)} ({records[(family, depth)]['seconds']:.0f} s; "
                  f"{time.perf_counter() - started:.0f} s so far)", flush=True)
    measured = {key: {"layers": record["layers"], "grad_norm": record["grad_norm"][0][:len(seeds)]}  # the first rate's runs
                for key, record in records.items()}
    init_gradients = init_gradient_study(config, arrays, seeds, settings["init_depths"], measured)
    print(f"gradients at init ({time.perf_counter() - started:.0f} s so far), ‖∇W₁‖/‖∇W_L‖: " + "; ".join(
        f"{family} " + "/".join(f"{np.median(first_last_ratio(v['grad_norm'])):.3g}" for v in by_depth.values())
        for family, by_depth in init_gradients.items()), flush=True)
    summary = {"config": common.config_dict(config), "config_resolved": settings, "environment": environment(config.seed),
               "dataset": dataset_name, "init_gradients": init_gradients,
               "trained": {f"{family}/{depth}": summarize_family(record) for (family, depth), record in records.items()},
               "batchnorm": batchnorm_study(records, min(config.depths))}
    summary = common.to_json(summary)
    summary["claims"] = judge(summary, config.quick)
    write_figures(out, summary, records)
    summary["seconds"] = time.perf_counter() - started
    return common.finish_lesson(out, summary, report(summary), SUMMARY_SCHEMA, headline(summary))


def headline(summary: dict) -> str:
    return common.claims_headline(summary["claims"], "depth")
