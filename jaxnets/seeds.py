"""Many training runs in one compiled program: seeds (and learning rates) trained together.

:func:`fit_seeds` is :func:`jaxnets.fit` for R runs at once. Every leaf of ``params``, ``state``
and the optimizer state gets a leading run axis (R, …); one epoch of all runs is
``jax.jit(jax.vmap(make_epoch_fn(...)))`` — the same scanned epoch that ``fit`` compiles, vmapped
over train states and keys — so R seeds cost one compilation and one call per epoch. Run r uses
``fold_in(keys[r], epoch)`` for epoch ``epoch``, exactly as ``fit(..., key=keys[r])`` does, so
run r of ``fit_seeds`` trains the same weights as a ``fit`` call with that key (up to float
rounding of batched matrix products).

When JAX has several devices (several CPU devices after :func:`jaxnets.runtime.use_cpu_devices`,
or several GPUs), the runs are split over them: the run axis is sharded (``jax.sharding``), the
data replicated, and each device trains its share of the runs in parallel. XLA:CPU runs a small
network's step mostly on one thread, so on a 2-core CPU this is how the second core helps.

Learning rates can differ between runs (``learning_rates=``, one per run) when the optimizer's
learning rate is injectable (:func:`jaxnets.optim.optimizer`): it lives in the stacked optimizer
state, so a grid of seeds × learning rates is still one program.

``python -c "import jaxnets.seeds"``; see ``benchmarks/bench_seeds.py`` for speed against
sequential ``fit`` calls and a Flax jit-per-step loop.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from jaxnets import checkpoint as ckpt
from jaxnets.train import NonFiniteError, TrainState, is_classification, make_epoch_fn, make_evaluate_fn

Array = jax.Array
# (params, state, *metrics_data) of one run → named statistics (arrays of fixed shapes).
MetricsFn = Callable[..., dict[str, Array]]


class SeedsResult(NamedTuple):
    """What :func:`fit_seeds` returns. Leaves of params/state/opt_state have a leading run axis.

    ``history`` maps names to NumPy arrays: ``epoch`` (epochs,), ``seconds`` (epochs,) — the
    wall time of the epoch for all runs together — and ``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy``, ``learning_rate`` (epochs, runs), plus one entry per
    statistic of ``metrics_fn`` with shape (epochs, runs, …). ``diverged_epoch`` (runs,) is the
    first epoch whose training loss was not finite, or -1.
    """

    params: Any
    state: Any
    opt_state: Any
    history: dict[str, np.ndarray]
    diverged_epoch: np.ndarray


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stacks pytrees of the same structure along a new leading axis (runs, …)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack_tree(tree: Any, index: int) -> Any:
    """Run ``index`` of a stacked pytree (the leading axis removed)."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def seed_keys(seeds: Sequence[int]) -> Array:
    """``PRNGKey(seed)`` for each seed, stacked: (runs, 2)."""
    return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])


def seed_grid(seeds: Sequence[int], learning_rates: Sequence[float]) -> tuple[list[int], list[float]]:
    """Every (seed, learning rate) pair, learning rate slowest: ``([s0, s1, s0, s1], [a, a, b, b])``."""
    return [s for _ in learning_rates for s in seeds], [float(lr) for lr in learning_rates for _ in seeds]


def init_runs(model, keys: Array, x) -> tuple[Any, Any]:
    """``model.init(keys[r], x)`` for each of the (runs, 2) keys, stacked: ``(params, state)``.
    ``x`` is a batch, ShapeDtypeStruct or shape of one run's input (only its shape is used).
    (A loop, not a vmap: the eager initialisers are compiled once per shape and reused by every
    model, where a jitted vmap would compile each model's whole init again.)"""
    inits = [model.init(key, x) for key in keys]
    return stack_trees([p for p, _ in inits]), stack_trees([s for _, s in inits])


def make_evaluate_runs_fn(model, loss, *, batch_size: int = 1000) -> Callable:
    """Jitted ``evaluate(params, state, x, t) -> (loss (runs,), accuracy (runs,))`` for stacked
    params/state and shared data x: (N, …), t: (N, …)."""
    return jax.jit(jax.vmap(make_evaluate_fn(model, loss, batch_size=batch_size), in_axes=(0, 0, None, None)))


@functools.lru_cache(maxsize=16)
def make_metrics_runs_fn(metrics_fn: MetricsFn, num_data: int = 0) -> Callable:
    """Jitted ``f(params, state, *data) -> {name: (runs, …)}``: ``metrics_fn`` vmapped over stacked
    params/state, with ``num_data`` shared (not vmapped) data arguments. The same ``metrics_fn``
    gives the same jitted function, so metrics taken before ``fit_seeds`` (at initialisation)
    and during it share one compilation."""
    return jax.jit(jax.vmap(metrics_fn, in_axes=(0, 0) + (None,) * num_data))


def _set_learning_rates(opt_state, learning_rates) -> Any:
    hyperparams = getattr(opt_state, "hyperparams", None)
    if hyperparams is None or "learning_rate" not in hyperparams:
        raise ValueError("fit_seeds: learning_rates needs an optimizer from jaxnets.optim.optimizer "
                         "(injectable learning rate)")
    current = jnp.asarray(hyperparams["learning_rate"])
    rates = jnp.asarray(learning_rates, current.dtype)
    if rates.shape != current.shape:
        raise ValueError(f"fit_seeds: {rates.shape[0] if rates.ndim else 'a scalar'} learning rates "
                         f"for {current.shape[0]} runs; give one per run")
    return opt_state._replace(hyperparams={**hyperparams, "learning_rate": rates})


def _learning_rates(opt_state, runs: int) -> np.ndarray:
    hyperparams = getattr(opt_state, "hyperparams", None)
    if hyperparams is None or "learning_rate" not in hyperparams:
        return np.full((runs,), np.nan)
    return np.asarray(hyperparams["learning_rate"], np.float64).reshape(runs)


def _to_json(history: dict[str, list]) -> dict[str, list]:
    return {k: [np.asarray(v).tolist() for v in values] for k, values in history.items()}


def _num_runs(keys: Array) -> int:
    if keys.ndim != 2:
        raise ValueError(f"fit_seeds: keys must be stacked PRNG keys of shape (runs, 2), got {keys.shape}")
    return int(keys.shape[0])


def _shardings(runs: int, devices: Sequence[jax.Device] | None) -> tuple[NamedSharding, NamedSharding, int]:
    """(run axis split over devices, replicated) shardings on the first min(runs, len(devices))
    devices, and the number of runs padded up to a multiple of that many devices."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("fit_seeds: devices is empty")
    used = min(runs, len(devices))
    mesh = Mesh(np.array(devices[:used]), ("runs",))
    return NamedSharding(mesh, PartitionSpec("runs")), NamedSharding(mesh, PartitionSpec()), -(-runs // used) * used


def _pad_runs(tree: Any, padded: int) -> Any:
    """Leaves (runs, …) → (padded, …), the extra runs copies of the last one (trained, then dropped)."""
    def pad(leaf):
        extra = padded - leaf.shape[0]
        return leaf if extra == 0 else jnp.concatenate([leaf, jnp.repeat(leaf[-1:], extra, axis=0)])
    return jax.tree.map(pad, tree)


def _first_runs(tree: Any, runs: int) -> Any:
    """The first ``runs`` runs of every leaf (the tree itself when there is no padding)."""
    return jax.tree.map(lambda leaf: leaf if leaf.shape[0] == runs else leaf[:runs], tree)


def fit_seeds(
    model,
    params,
    state,
    train_data: tuple[Any, Any],
    *,
    loss: str | Callable,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    keys: Array,
    learning_rates: Sequence[float] | Array | None = None,
    validation_data: tuple[Any, Any] | None = None,
    metrics_fn: MetricsFn | None = None,
    metrics_data: tuple[Any, ...] = (),
    checkpoint_dir: str | Path | None = None,
    on_non_finite: str = "raise",
    progress: bool = True,
    description: str = "runs",
    callback: Callable[[int, dict], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> SeedsResult:
    """Trains R runs of ``model`` together; run r starts from ``params[r]``/``state[r]``.

    Args:
      params, state: stacked, leaves (runs, …) (see :func:`init_runs`, :func:`stack_trees`).
      train_data: shared x (N, …) and targets t (N, …); put on the device once.
      keys: (runs, 2) PRNG keys; epoch e of run r uses ``fold_in(keys[r], e)`` as ``fit`` does.
      learning_rates: optional (runs,) learning rate of each run (injectable optimizers only).
      validation_data: (x, t) evaluated for every run after each epoch.
      metrics_fn: ``f(params, state, *metrics_data) -> {name: array}`` for one run, vmapped over
        runs after each epoch (gradient norms, unit statistics…); results go to ``history[name]``
        with shape (epochs, runs, …). ``metrics_data`` (e.g. a probe batch) is shared by all runs.
      checkpoint_dir: save train states, keys and history after each epoch; a checkpoint there
        (made with the same keys) is resumed from its last finished epoch.
      on_non_finite: ``"raise"`` (NonFiniteError naming the runs) or ``"record"`` (keep training
        the others; ``diverged_epoch`` says which runs diverged and when).
      callback: called as ``callback(epoch, record)`` after each finished (and saved) epoch.
      devices: devices to split the runs over (default: ``jax.local_devices()``). When the runs
        do not divide evenly, copies of the last run fill the last shard (trained and dropped):
        5 runs on 2 devices train as 6.

    Returns a :class:`SeedsResult` (its arrays on the first device). All runs train for ``epochs``
    epochs (no early stopping).
    """
    if on_non_finite not in ("raise", "record"):
        raise ValueError(f"fit_seeds: unknown on_non_finite {on_non_finite!r}; known: raise, record")
    runs = _num_runs(keys)
    x, t = (jnp.asarray(a) for a in train_data)
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"fit_seeds: train_data has {x.shape[0]} inputs but {t.shape[0]} targets")
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if leaf.shape[:1] != (runs,):
            raise ValueError(f"fit_seeds: params leaf {jax.tree_util.keystr(path)} has shape {leaf.shape}; "
                             f"expected a leading run axis of {runs} (one per key)")
    run_sharding, replicated, padded = _shardings(runs, devices)
    x, t = jax.device_put((x, t), replicated)
    classification = is_classification(loss)
    steps = x.shape[0] // batch_size
    run_epoch = jax.jit(jax.vmap(make_epoch_fn(model, loss, optimizer, batch_size=batch_size),
                                 in_axes=(0, None, None, 0, None, None)))
    epoch_keys = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
    evaluate = make_evaluate_runs_fn(model, loss) if validation_data is not None else None
    if validation_data is not None:
        x_val, t_val = (jax.device_put(jnp.asarray(a), replicated) for a in validation_data)
    metrics = make_metrics_runs_fn(metrics_fn, len(metrics_data)) if metrics_fn is not None else None
    metrics_data = tuple(jax.device_put(jnp.asarray(a), replicated) for a in metrics_data)

    ts = TrainState(params, state, jax.vmap(optimizer.init)(params))
    if learning_rates is not None:
        ts = ts._replace(opt_state=_set_learning_rates(ts.opt_state, learning_rates))
    history: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "train_accuracy", "val_loss",
                                              "val_accuracy", "learning_rate", "seconds")}
    diverged = np.full((runs,), -1)
    start_epoch = 0
    if checkpoint_dir is not None and ckpt.latest_step(checkpoint_dir) is not None:
        tree, meta = ckpt.restore_checkpoint(checkpoint_dir, {"train": ts, "keys": keys})
        if not np.array_equal(np.asarray(tree["keys"]), np.asarray(keys)):
            raise ValueError(f"fit_seeds: the checkpoint in {checkpoint_dir} was made with other keys; "
                             "remove it or use another checkpoint_dir")
        ts = TrainState(*tree["train"])
        history = {k: [np.asarray(v) for v in values] for k, values in meta["history"].items()}
        diverged = np.asarray(meta["diverged_epoch"])
        start_epoch = int(meta["epoch"]) + 1
    # a number of runs that does not divide among the devices is padded with copies of the last run
    padded_ts, padded_keys = jax.device_put(_pad_runs((ts, jnp.asarray(keys)), padded), run_sharding)

    bar = tqdm(range(start_epoch, epochs), desc=description, disable=not progress, leave=True,
               initial=start_epoch, total=epochs, unit="epoch")
    for epoch in bar:
        started = time.perf_counter()
        padded_ts, (losses, corrects) = run_epoch(padded_ts, x, t, epoch_keys(padded_keys, epoch), 0.0, 0.0)
        losses = np.asarray(losses)[:runs]  # (runs, steps)
        record = {"epoch": epoch, "train_loss": losses.mean(axis=1),
                  "train_accuracy": (np.asarray(corrects)[:runs].sum(axis=1) / (steps * batch_size)
                                     if classification else np.full((runs,), np.nan)),
                  "learning_rate": _learning_rates(padded_ts.opt_state, padded)[:runs],
                  "val_loss": np.full((runs,), np.nan), "val_accuracy": np.full((runs,), np.nan)}
        bad = ~np.all(np.isfinite(losses), axis=1)
        newly = bad & (diverged < 0)
        diverged[newly] = epoch
        if newly.any() and on_non_finite == "raise":
            raise NonFiniteError(f"non-finite training loss at epoch {epoch} in runs {np.flatnonzero(newly).tolist()} "
                                 f"(of {runs}); lower the learning rate, or pass on_non_finite='record'")
        if evaluate is not None:
            val_loss, val_accuracy = evaluate(padded_ts.params, padded_ts.state, x_val, t_val)
            record["val_loss"] = np.asarray(val_loss)[:runs]
            record["val_accuracy"] = np.asarray(val_accuracy)[:runs] if classification else np.full((runs,), np.nan)
        if metrics is not None:
            stats = metrics(padded_ts.params, padded_ts.state, *metrics_data)
            record.update({k: np.asarray(v)[:runs] for k, v in stats.items()})
        record["seconds"] = time.perf_counter() - started
        for name, value in record.items():
            history.setdefault(name, []).append(value)
        ok = diverged < 0
        postfix = {"loss": np.mean(record["train_loss"][ok]) if ok.any() else np.nan}
        if classification:
            postfix["acc"] = np.mean(record["train_accuracy"][ok]) if ok.any() else np.nan
            if evaluate is not None:
                postfix["val_acc"] = np.mean(record["val_accuracy"][ok]) if ok.any() else np.nan
        bar.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()} | {"runs": runs})
        if checkpoint_dir is not None:
            ckpt.save_checkpoint(checkpoint_dir, epoch, {"train": _first_runs(padded_ts, runs), "keys": keys},
                                 metadata={"epoch": epoch, "history": _to_json(history),
                                           "diverged_epoch": diverged.tolist()})
        if callback is not None:
            callback(epoch, record)
    bar.close()
    # the real runs, on one device: usable with any other array
    ts = jax.device_put(_first_runs(padded_ts, runs), replicated.mesh.devices.flat[0])
    return SeedsResult(ts.params, ts.state, ts.opt_state,
                       {k: np.asarray(v) for k, v in history.items()}, diverged)
