"""``fit``: the Python loop over epochs around the compiled epoch of :mod:`jaxnets.train`.

Python runs once per epoch: it calls the compiled epoch, evaluates on validation data, updates
the progress bar and history, applies early stopping and plateau annealing, checks for
non-finite losses and writes a checkpoint. A run given a ``checkpoint_dir`` resumes from its last
finished epoch and continues exactly as if it had not been interrupted (epoch keys are
``fold_in(key, epoch)``, so nothing depends on how many epochs ran in this process). An
``augment`` function gives each epoch its own augmented copy of the training inputs, keyed the
same way, so augmented runs resume exactly too.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxnets import checkpoint as ckpt
from jaxnets.optim import ReduceOnPlateau, current_learning_rate
from jaxnets.train import NonFiniteError, TrainState, epoch_batches, is_classification, make_epoch_fn, make_evaluate_fn, make_train_step

ENGINES = ("auto", "scan", "step")


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop when ``monitor`` (``val_loss``, lower is better, or ``val_accuracy``, higher is
    better) has not improved by more than ``min_delta`` for ``patience`` epochs; ``fit`` then
    returns the params of the best epoch."""

    patience: int = 5
    monitor: str = "val_loss"
    min_delta: float = 0.0

    def __post_init__(self):
        if self.monitor not in ("val_loss", "val_accuracy"):
            raise ValueError(f"EarlyStopping: unknown monitor {self.monitor!r}; known: val_loss, val_accuracy")

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.monitor == "val_loss":
            return value < best - self.min_delta
        return value > best + self.min_delta


class FitResult(NamedTuple):
    """What ``fit`` returns. ``params``/``state`` are the best epoch's when early stopping is on."""

    params: Any
    state: Any
    opt_state: Any
    history: dict[str, list]
    best_epoch: int | None
    stopped_early: bool


def choose_engine(engine: str, model) -> str:
    """``"scan"`` (one compiled call per epoch) or ``"step"`` (one compiled call per batch).
    ``"auto"`` picks scan; a model may declare ``preferred_engine`` where measurements show
    per-step calls are faster on a backend (see benchmarks/RESULTS.md)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known engines: {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    preferred = getattr(model, "preferred_engine", None)
    return preferred(jax.default_backend()) if callable(preferred) else "scan"


def _step_engine(model, loss, optimizer, batch_size, penalty_mask):
    """One compiled call per batch. The call gathers its own batch from the device-resident x, t;
    the batch indices and step keys come from one compiled ``plan`` per epoch, read back to the host
    once, and losses stay on the device until the epoch ends (2.2–2.7× faster than slicing with
    separate device calls per step; benchmarks/RESULTS.md)."""
    step = make_train_step(model, loss, optimizer, penalty_mask)

    @functools.partial(jax.jit, static_argnums=(7,))
    def gathered_step(ts, x, t, idx, key, l1, l2, typed_key):  # idx: (batch_size,) indices
        return step(ts, x[idx], t[idx], jax.random.wrap_key_data(key) if typed_key else key, l1, l2)

    @functools.partial(jax.jit, static_argnums=(1,))
    def plan(key, num_examples):
        perm_key, step_key = jax.random.split(key)
        batches = epoch_batches(perm_key, num_examples, batch_size)  # (steps, batch_size)
        return batches, jax.random.split(step_key, batches.shape[0])

    def epoch(ts, x, t, key, l1, l2):
        batches, step_keys = plan(key, x.shape[0])
        typed_key = jnp.issubdtype(step_keys.dtype, jax.dtypes.prng_key)
        step_keys = np.asarray(jax.random.key_data(step_keys) if typed_key else step_keys)
        losses, corrects = [], []
        for idx, step_key in zip(np.asarray(batches), step_keys):
            ts, (batch_loss, batch_correct) = gathered_step(ts, x, t, idx, step_key, l1, l2, typed_key)
            losses.append(batch_loss)
            corrects.append(batch_correct)
        return ts, (jnp.stack(losses), jnp.stack(corrects))

    return epoch


def _augmenter(augment, key, x):
    """``augment`` jitted, after checking on shapes alone that it keeps x's shape and dtype."""
    if augment is None:
        return None
    if not callable(augment):
        raise TypeError(f"fit: augment must be a function augment(key, x) -> x, got {augment!r}")
    out = jax.eval_shape(augment, key, x)
    if not (isinstance(out, jax.ShapeDtypeStruct) and out.shape == x.shape and out.dtype == x.dtype):
        raise ValueError(f"fit: augment(key, x) must return an array shaped like the training inputs, "
                         f"{x.dtype}{list(x.shape)}; got {out}")
    return jax.jit(augment)


def _non_finite_leaves(tree) -> list[str]:
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(leaf))):
            bad.append("/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path))
    return bad


def _check_finite(epoch: int, losses: np.ndarray, params) -> None:
    bad_steps = np.flatnonzero(~np.isfinite(losses))
    if bad_steps.size:
        step = int(bad_steps[0])
        leaves = _non_finite_leaves(params)
        raise NonFiniteError(
            f"non-finite training loss {losses[step]} at epoch {epoch} step {step} "
            f"(of {losses.size} steps); non-finite params after the epoch: {', '.join(leaves) or 'none'}. "
            "Lower the learning rate, check the inputs for NaN/inf, or use a loss computed from logits."
        )


def _set_learning_rate(opt_state, learning_rate: float):
    hyperparams = dict(opt_state.hyperparams)
    hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.asarray(hyperparams["learning_rate"]).dtype)
    return opt_state._replace(hyperparams=hyperparams)


def fit(
    model,
    params,
    state,
    train_data: tuple[Any, Any],
    *,
    loss: str | Callable,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    validation_data: tuple[Any, Any] | None = None,
    early_stopping: EarlyStopping | int | None = None,
    l1: float = 0.0,
    l2: float = 0.0,
    regularize_from_epoch: int = 0,
    penalty_mask=None,
    reduce_on_plateau: ReduceOnPlateau | None = None,
    checkpoint_dir: str | Path | None = None,
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    engine: str = "auto",
    progress: bool = True,
    description: str = "training",
) -> FitResult:
    """Trains ``model`` from ``params``/``state`` on ``train_data = (x, t)``.

    Args:
      train_data: x (N, …) and targets t (N, …); put on the device once.
      loss: per-example loss name or function (see :mod:`jaxnets.losses`).
      optimizer: an Optax optimizer (e.g. ``jaxnets.optim.optimizer("adam", 1e-3)``).
      epochs, batch_size: each epoch shuffles and uses N // batch_size full batches.
      key: PRNG key; epoch e uses ``fold_in(key, e)`` for shuffling and dropout.
      validation_data: (x, t) evaluated after each epoch (needed for early stopping/plateau).
      early_stopping: an :class:`EarlyStopping` or a patience in epochs (monitoring val_loss).
      l1, l2: penalty strengths (L1 Σ|w|, L2 ½Σw² over ``penalty_mask``, default the weights),
        switched on from epoch ``regularize_from_epoch``.
      reduce_on_plateau: anneal the learning rate when validation loss stalls (the optimizer must
        come from :func:`jaxnets.optim.optimizer`, whose learning rate is injectable).
      checkpoint_dir: save after each epoch; an existing checkpoint there is resumed.
      augment: ``augment(key, x) -> x'`` (same shape), e.g. ``functools.partial(jaxnets.augment.augment,
        shift=1, flip=True)``; applied, jitted, to the whole training input once per epoch. Epoch e then
        splits ``fold_in(key, e)`` into the augmentation key and the shuffling/dropout key.
      on_epoch_end: called after each epoch run in this call with that epoch's history record (a
        dict of the keys below), e.g. to log it; epochs restored from a checkpoint are not repeated.
      engine: "auto", "scan" (one compiled call per epoch) or "step" (one per batch).

    Returns a :class:`FitResult`; ``history`` has one entry per epoch for ``epoch``,
    ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``,
    ``seconds``. Raises :class:`NonFiniteError` naming epoch, step and leaves on a NaN/inf loss.
    """
    if isinstance(early_stopping, int):
        early_stopping = EarlyStopping(patience=early_stopping)
    if (early_stopping or reduce_on_plateau) and validation_data is None:
        raise ValueError("fit: early_stopping and reduce_on_plateau need validation_data")
    if reduce_on_plateau and current_learning_rate(optimizer.init(params)) is None:
        raise ValueError("fit: reduce_on_plateau needs an optimizer from jaxnets.optim.optimizer (injectable learning rate)")
    x, t = (jax.device_put(jnp.asarray(a)) for a in train_data)
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"fit: train_data has {x.shape[0]} inputs but {t.shape[0]} targets")
    classification = is_classification(loss)
    engine = choose_engine(engine, model)
    if engine == "scan":
        run_epoch = jax.jit(make_epoch_fn(model, loss, optimizer, batch_size=batch_size, penalty_mask=penalty_mask))
    else:
        run_epoch = _step_engine(model, loss, optimizer, batch_size, penalty_mask)
    evaluate = make_evaluate_fn(model, loss) if validation_data is not None else None
    augment_inputs = _augmenter(augment, key, x)
    if validation_data is not None:
        x_val, t_val = (jax.device_put(jnp.asarray(a)) for a in validation_data)

    ts = TrainState(params, state, optimizer.init(params))
    history: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "train_accuracy", "val_loss",
                                                  "val_accuracy", "learning_rate", "seconds")}
    best = {"epoch": None, "value": None, "params": params, "state": state, "bad_epochs": 0}
    start_epoch, stopped_early = 0, False
    if checkpoint_dir is not None and ckpt.latest_step(checkpoint_dir) is not None:
        tree, meta = ckpt.restore_checkpoint(checkpoint_dir, {"train": ts, "best_params": params, "best_state": state})
        ts = TrainState(*tree["train"])
        history, start_epoch = meta["history"], meta["epoch"] + 1
        best.update(meta["best"], params=tree["best_params"], state=tree["best_state"])
        if reduce_on_plateau is not None:
            reduce_on_plateau.best, reduce_on_plateau.bad_epochs = meta["plateau"]
        stopped_early = bool(meta.get("stopped_early"))
        if stopped_early:
            start_epoch = epochs

    bar = tqdm(range(start_epoch, epochs), desc=description, disable=not progress, leave=True,
               initial=start_epoch, total=epochs, unit="epoch")
    for epoch in bar:
        started = time.perf_counter()
        active = epoch >= regularize_from_epoch
        epoch_key = jax.random.fold_in(key, epoch)
        x_epoch = x
        if augment_inputs is not None:
            augment_key, epoch_key = jax.random.split(epoch_key)
            x_epoch = augment_inputs(augment_key, x)
        ts, (losses, corrects) = run_epoch(ts, x_epoch, t, epoch_key, l1 if active else 0.0, l2 if active else 0.0)
        losses = np.asarray(losses)
        _check_finite(epoch, losses, ts.params)
        record = {"epoch": epoch, "train_loss": float(losses.mean()),
                  "train_accuracy": float(np.sum(corrects)) / (losses.size * batch_size) if classification else None,
                  "learning_rate": current_learning_rate(ts.opt_state), "val_loss": None, "val_accuracy": None}
        if evaluate is not None:
            val_loss, val_accuracy = evaluate(ts.params, ts.state, x_val, t_val)
            record["val_loss"] = float(val_loss)
            record["val_accuracy"] = float(val_accuracy) if classification else None
        record["seconds"] = time.perf_counter() - started
        for name, value in record.items():
            history[name].append(value)
        if on_epoch_end is not None:
            on_epoch_end(dict(record))
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items()
                         if k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy") and v is not None})

        if reduce_on_plateau is not None:
            new_lr = reduce_on_plateau.update(record["val_loss"], record["learning_rate"])
            if new_lr != record["learning_rate"]:
                ts = ts._replace(opt_state=_set_learning_rate(ts.opt_state, new_lr))
        if early_stopping is not None:
            value = record[early_stopping.monitor]
            if early_stopping.improved(value, best["value"]):
                best.update(epoch=epoch, value=value, params=ts.params, state=ts.state, bad_epochs=0)
            else:
                best["bad_epochs"] += 1
                stopped_early = best["bad_epochs"] >= early_stopping.patience
        if checkpoint_dir is not None:
            ckpt.save_checkpoint(
                checkpoint_dir, epoch, {"train": ts, "best_params": best["params"], "best_state": best["state"]},
                metadata={"epoch": epoch, "history": history, "stopped_early": stopped_early,
                          "best": {k: best[k] for k in ("epoch", "value", "bad_epochs")},
                          "plateau": [reduce_on_plateau.best, reduce_on_plateau.bad_epochs] if reduce_on_plateau else None})
        if stopped_early:
            break
    bar.close()

    if early_stopping is not None and best["epoch"] is not None:
        return FitResult(best["params"], best["state"], ts.opt_state, history, best["epoch"], stopped_early)
    return FitResult(ts.params, ts.state, ts.opt_state, history, None, stopped_early)
