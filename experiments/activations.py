"""The activation study: sigmoid, tanh, ReLU, ELU, leaky ReLU and softplus MLPs at several depths.

It answers the lecture notes' questions with numbers: why is ReLU better than sigmoid, why is ELU
better than ReLU, does ReLU train several times faster than tanh (Krizhevsky et al. 2012: six
times fewer epochs to 25 % training error), do sigmoid units saturate and their gradients vanish
in deep nets, and do ReLU units die?

Command: ``python -m experiments activations`` (full) or ``python -m experiments activations --quick``
(what CI runs); ``--dataset digits``, ``--seeds N``, ``--out DIR`` as for every experiment.
Run time on the 2-core CPU, nothing else running: quick 2.0 min (6 activations × depths 2/5/10,
suited initialiser, 3 seeds, 5 epochs on 4 000 Fashion-MNIST images); full 6.5 min (30 runs: adds a
common Glorot initialiser; 5 seeds, 10 epochs on 12 000 images; 9.1 min on one CPU device, 21.7 min
when other jobs loaded the CPU to a load average of 7–10). Each (activation, depth, initialiser)
trains all its seeds together in one compiled program (:func:`jaxnets.seeds.fit_seeds`), split over
the CPU cores that ``python -m experiments`` exposes as devices.
Expected result on Fashion-MNIST (SGD with momentum 0.9, lr 0.01, width 128; quick-mode numbers):
ReLU, leaky ReLU, ELU and tanh reach ≈ 0.79–0.82 test accuracy at every depth; sigmoid reaches
≈ 0.63 at depth 2 and does not train at depths 5 and 10 (0.10: the first layer's gradient is
≈ 10⁻⁶ of the output layer's at depth 10, since σ' ≤ ¼ per layer); 1.5–4 % of ReLU units are dead;
ReLU is not faster than tanh to 20 % training error here (0.7–0.8×: Krizhevsky's 6× does not
carry over to this MLP); ELU and ReLU are within one standard deviation. Full mode: 0.84–0.86 for
ReLU/ELU/leaky ReLU/tanh at every depth, sigmoid 0.79 at depth 2 and 0.10 at depths 5 and 10,
softplus with the common Glorot initialiser 0.69 at depth 10; 0.7–3.4 % dead ReLU units.
``report.md`` says which claims held.

Outputs in ``results/activations/``: summary.json (schema :data:`SUMMARY_SCHEMA`), history.csv
(per run, seed and epoch), units.csv (per layer), learning_curves.png, grad_norms.png, units.png,
report.md (written by :mod:`experiments.activations_report`). An interrupted study resumes: finished runs are kept in runs/, the unfinished one
continues from its last finished epoch (checkpoints/).
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from experiments.activations_report import SUMMARY_SCHEMA, format_table, headline, write_outputs
from jaxnets import data, models, optim
from jaxnets.activations import get_activation
from jaxnets.initializers import initializer_for
from jaxnets.losses import cross_entropy
from jaxnets.nn import Activation, Dense
from jaxnets.runtime import environment
from jaxnets.seeds import fit_seeds, init_runs, seed_keys
from jaxnets.train import make_evaluate_runs_fn, make_metrics_runs_fn

__all__ = ["Config", "run", "run_short_study", "format_table", "headline", "SUMMARY_SCHEMA"]

ALL_ACTIVATIONS = ("sigmoid", "tanh", "relu", "elu", "leaky_relu", "softplus")
SATURATED_SLOPE = 0.1  # a unit is saturated on an example where f'(z) < 10 % of f's largest slope
DEAD_SLOPE = 1e-3  # and dead where f'(z) < 0.1 % of it on every probe example (no gradient passes)


@dataclasses.dataclass
class Config:
    """See the module docstring for the command, run time and expected result.

    Fields left at None take the value of the mode (full / ``quick``) shown in ``MODES``.
    ``inits``: "suited" (Glorot for sigmoid/tanh, He for the rectifiers, see
    :func:`jaxnets.initializers.initializer_for`) and/or initialiser names used for every
    activation (the "common" initialiser); a common one equal to the suited one is not rerun.
    """

    quick: bool = False
    out: Path = Path("results/activations")
    dataset: str | None = None  # None: Fashion-MNIST if installed, else digits
    seeds: int | None = None
    epochs: int | None = None
    train_size: int | None = None  # training examples used (None in MODES: all)
    activations: tuple[str, ...] = ALL_ACTIVATIONS
    depths: tuple[int, ...] = (2, 5, 10)
    inits: tuple[str, ...] | None = None
    width: int = 128
    optimizer: str = "momentum"
    learning_rate: float = 0.01
    batch_size: int = 64
    validation_size: int = 2000
    probe_size: int = 1000  # training examples for gradient norms and unit statistics
    target_train_error: float = 0.2  # the "epochs to target" threshold (Krizhevsky: 0.25 on CIFAR-10)
    seed: int = 0  # run seeds are seed, seed + 1, …


MODES = {
    False: {"seeds": 5, "epochs": 10, "train_size": 12000, "inits": ("suited", "glorot_uniform")},
    True: {"seeds": 3, "epochs": 5, "train_size": 4000, "inits": ("suited",)},
}


def resolve(config: Config) -> Config:
    """The config with every None field set from ``MODES[config.quick]``."""
    return dataclasses.replace(config, **{k: v for k, v in MODES[config.quick].items() if getattr(config, k) is None})


def run_name(activation: str, depth: int, init: str) -> str:
    return f"{activation}-d{depth}-{init}"


def plan(config: Config) -> list[dict]:
    """The runs of a resolved config: one per (depth, initialiser, activation)."""
    runs = []
    for depth in config.depths:
        for init in config.inits:
            for activation in config.activations:
                w_init = initializer_for(activation) if init == "suited" else init
                if init != "suited" and "suited" in config.inits and w_init == initializer_for(activation):
                    continue  # the common initialiser is this activation's suited one: already run
                runs.append({"name": run_name(activation, depth, init), "activation": activation, "depth": depth,
                             "init": init, "w_init": w_init})
    return runs


def load_data(config: Config) -> tuple[dict, str]:
    """Train/validation/probe/test arrays: a fixed shuffle of the training set is cut into
    ``train_size`` training and ``validation_size`` validation images; the probe batch is the
    first ``probe_size`` training images; the test set is used whole."""
    if config.dataset:
        dataset = data.load_dataset(config.dataset)
    else:
        dataset, message = data.load_default()
        print(message)
    order = np.asarray(jax.random.permutation(jax.random.PRNGKey(12345), len(dataset.x_train)))
    n_val = min(config.validation_size, len(order) // 5)
    n_train = min(config.train_size or len(order), len(order) - n_val)
    train, val = order[:n_train], order[len(order) - n_val:]
    arrays = {"x_train": dataset.x_train[train], "y_train": dataset.y_train[train],
              "x_val": dataset.x_train[val], "y_val": dataset.y_train[val],
              "x_probe": dataset.x_train[train[:config.probe_size]], "y_probe": dataset.y_train[train[:config.probe_size]],
              "x_test": dataset.x_test, "y_test": dataset.y_test, "num_classes": dataset.num_classes}
    return arrays, dataset.name


def max_slope(activation: str) -> float:
    """The largest derivative of ``activation`` on [-10, 10] (sigmoid ¼, the others ≈ 1)."""
    grid = jnp.linspace(-10.0, 10.0, 4001)
    return float(jnp.max(jax.vmap(jax.grad(get_activation(activation)))(grid)))


def make_unit_stats_fn(model, activation: str):
    """``stats(params, state, x, t) -> dict`` for one run on a probe batch x: (P, …), t: (P,):

    * ``grad_norm`` (dense layers,): ‖∂loss/∂W‖ of each Dense layer, first to output;
    * ``saturated_fraction`` (hidden layers,): share of (unit, example) pairs with f'(z) < 10 %
      of f's largest slope (sigmoid |z| > 3.6, tanh |z| > 1.8; ReLU z < 0);
    * ``dead_fraction`` (hidden layers,): share of units with f'(z) < 0.1 % of the largest slope
      on every probe example (ReLU units that never fire).
    """
    fn, top = get_activation(activation), max_slope(activation)
    dense_names = [name for name, layer in model.layers if isinstance(layer, Dense)]

    def stats(params, state, x, t):
        grads = jax.grad(lambda p: jnp.mean(cross_entropy(model.apply(p, state, x)[0], t)))(params)
        slopes, h = [], x
        for name, layer in model.layers:  # walk the layers to see the pre-activations z
            if isinstance(layer, Activation):
                slopes.append(jax.jvp(fn, (h,), (jnp.ones_like(h),))[1] / top)  # f'(z): (P, width)
            h, _ = layer.apply(params.get(name, {}), state.get(name, {}), h)
        return {"grad_norm": jnp.stack([jnp.linalg.norm(grads[n]["w"]) for n in dense_names]),
                "saturated_fraction": jnp.stack([jnp.mean(s < SATURATED_SLOPE) for s in slopes]),
                "dead_fraction": jnp.stack([jnp.mean(jnp.all(s < DEAD_SLOPE, axis=0)) for s in slopes])}

    return stats


def train_run(spec: dict, config: Config, arrays: dict, store: common.RunStore, *, progress: bool,
              description: str) -> dict:
    """Trains all seeds of one (activation, depth, initialiser) together and returns its record
    (histories as lists: train_loss (epochs, seeds), grad_norm (epochs + 1, seeds, layers), …)."""
    model = models.mlp([config.width] * spec["depth"] + [arrays["num_classes"]], activation=spec["activation"],
                       w_init=spec["w_init"])
    seeds = list(range(config.seed, config.seed + config.seeds))
    init_keys, fit_keys = jnp.unstack(jax.vmap(lambda k: jax.random.split(k))(seed_keys(seeds)), axis=1)
    params, state = init_runs(model, init_keys, arrays["x_train"][:1])
    stats_fn = make_unit_stats_fn(model, spec["activation"])
    probe = (arrays["x_probe"], arrays["y_probe"])
    at_init = make_metrics_runs_fn(stats_fn, 2)(params, state, *probe)
    started = time.perf_counter()
    result = fit_seeds(model, params, state, (arrays["x_train"], arrays["y_train"]), loss="cross_entropy",
                       optimizer=optim.optimizer(config.optimizer, config.learning_rate), epochs=config.epochs,
                       batch_size=config.batch_size, keys=fit_keys, validation_data=(arrays["x_val"], arrays["y_val"]),
                       metrics_fn=stats_fn, metrics_data=probe, checkpoint_dir=store.checkpoint_dir(spec["name"]),
                       on_non_finite="record", progress=progress, description=description)
    test_loss, test_accuracy = make_evaluate_runs_fn(model, "cross_entropy")(
        result.params, result.state, arrays["x_test"], arrays["y_test"])
    h = result.history
    record = {**spec, "seeds": seeds, "test_accuracy": test_accuracy, "test_loss": test_loss,
              "diverged_epoch": result.diverged_epoch, "seconds": h["seconds"], "wall_seconds": time.perf_counter() - started}
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        record[name] = h[name]
    for name in ("grad_norm", "saturated_fraction", "dead_fraction"):  # (epochs + 1, seeds, layers)
        record[name] = np.concatenate([np.asarray(at_init[name])[None], h[name]])
    return common.to_json(record)


def _mean(values) -> float | None:
    values = np.asarray([np.nan if v is None else v for v in values], np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def epochs_to(error: np.ndarray, target: float) -> float | None:
    """Epochs until the training error (epochs,) first reaches ``target``, interpolated linearly
    between the epochs around the crossing (1.0 when the first epoch already reaches it)."""
    below = np.flatnonzero(error <= target)
    if below.size == 0:
        return None
    e = int(below[0])
    if e == 0:
        return 1.0
    return float(e + (error[e - 1] - target) / (error[e - 1] - error[e]))


def summarize_run(record: dict, config: Config) -> dict:
    """The summary entry of one run (means and standard deviations over its finite seeds)."""
    diverged = np.asarray(record["diverged_epoch"]) >= 0
    ok = ~diverged
    accuracy = np.asarray([np.nan if a is None else a for a in record["test_accuracy"]], np.float64)
    train_error = 1.0 - np.asarray([[np.nan if a is None else a for a in row] for row in record["train_accuracy"]])
    reached = [epochs_to(col, config.target_train_error) for col in train_error.T]  # per seed
    seconds = np.asarray(record["seconds"], np.float64)
    per_epoch = float(np.median(seconds[1:] if len(seconds) > 1 else seconds)) / len(record["seeds"])
    epochs_to_target = _mean([r for r, good in zip(reached, ok) if good and r is not None])
    final = {name: np.asarray(record[name], np.float64) for name in ("grad_norm", "saturated_fraction", "dead_fraction")}
    layer_mean = lambda name, epoch: [float(v) for v in np.nanmean(final[name][epoch][ok], axis=0)] if ok.any() else []
    return {
        "name": record["name"], "activation": record["activation"], "depth": record["depth"], "init": record["init"],
        "w_init": record["w_init"], "seeds": record["seeds"], "diverged_seeds": int(diverged.sum()),
        "test_accuracy_mean": float(np.nanmean(accuracy[ok])) if ok.any() else None,
        "test_accuracy_std": float(np.nanstd(accuracy[ok])) if ok.any() else None,
        "test_accuracy_per_seed": [None if not np.isfinite(a) else float(a) for a in accuracy],
        "final_train_error_mean": _mean(train_error[-1][ok]),
        "epochs_to_target": epochs_to_target, "epochs_to_target_per_seed": reached,
        "seeds_reaching_target": int(sum(r is not None for r, good in zip(reached, ok) if good)),
        "seconds_per_epoch": per_epoch,
        "seconds_to_target": None if epochs_to_target is None else epochs_to_target * per_epoch,
        "grad_norm_per_layer_init": layer_mean("grad_norm", 0), "grad_norm_per_layer_final": layer_mean("grad_norm", -1),
        "saturated_fraction_per_layer_init": layer_mean("saturated_fraction", 0),
        "saturated_fraction_per_layer_final": layer_mean("saturated_fraction", -1),
        "dead_fraction_per_layer_init": layer_mean("dead_fraction", 0),
        "dead_fraction_per_layer_final": layer_mean("dead_fraction", -1),
    }


def run(config: Config, *, progress: bool = True) -> dict:
    """Runs (or resumes) the study, writes its outputs under ``config.out`` and returns the summary."""
    started = time.perf_counter()
    config = resolve(config)
    out = Path(config.out)
    arrays, dataset_name = load_data(config)
    specs = plan(config)
    fields = common.config_dict(config)
    store = common.RunStore(out, common.fingerprint({**fields, "dataset": dataset_name}))
    print(f"activation study on {dataset_name}: {len(specs)} runs × {config.seeds} seeds, {config.epochs} epochs on "
          f"{len(arrays['x_train'])} images ({'quick' if config.quick else 'full'}); outputs in {out}/")
    records, failed = [], []
    for i, spec in enumerate(specs, 1):
        description = f"[{i}/{len(specs)}] {spec['name']}"
        record = store.load(spec["name"])
        if record is not None:
            print(f"{description}: finished earlier, kept")
        else:
            try:
                record = train_run(spec, config, arrays, store, progress=progress, description=description)
            except Exception as error:  # a failing run is reported; the others go on
                traceback.print_exc()
                print(f"{description}: FAILED: {type(error).__name__}: {error}")
                failed.append({**spec, "error": f"{type(error).__name__}: {error}"})
                continue
            store.save(spec["name"], record)
        records.append(record)
    summary = {"experiment": "activations", "dataset": dataset_name, "quick": config.quick, "config": fields,
               "environment": environment(), "target_train_error": config.target_train_error,
               "runs": [summarize_run(r, config) for r in records], "failed_runs": failed,
               "seconds": time.perf_counter() - started}
    write_outputs(out, summary, records, config)
    print(format_table(summary))
    print(f"report: {out / 'report.md'}")
    return common.read_summary(out)


def run_short_study(out: Path, *, progress: bool = True) -> dict:
    """A compact study for the README's main job (1.7 min measured on the 2 CPU cores): sigmoid, tanh, ReLU
    and ELU at depths 2 and 5, 2 seeds, 5 epochs on 10 000 images; returns the summary."""
    config = Config(out=Path(out), seeds=2, epochs=5, train_size=10000, activations=("sigmoid", "tanh", "relu", "elu"),
                    depths=(2, 5), inits=("suited",))
    return run(config, progress=progress)
