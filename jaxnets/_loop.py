"""The one epoch driver under :func:`jaxnets.fit` (one run) and :func:`jaxnets.fit_seeds` (many).

Every run lives on a leading run axis: R runs are stacked (``fit`` is one run, R = 1), padded to a
multiple of the mesh's ``"runs"`` axis (:mod:`jaxnets.parallel`; each batch split over its ``"data"``
axis) and trained by one compiled epoch per call — vmapped over the runs when there are several, the
plain epoch when there is one; the same in every process of a multi-process run (the compiled pieces
come from :mod:`jaxnets._programs`, which reuses them across calls with equal settings). Python runs once
per epoch: it checks the losses, evaluates, asks the monitors (early stopping and plateau annealing,
per run), appends to the history, saves a checkpoint and calls ``on_epoch_end``.

The history has one entry per epoch under each of these keys (one number, or under ``fit_seeds`` a
(runs,) array; NaN where a number does not exist — accuracy for a regression loss, validation
numbers without validation data, and every number of a run in the epochs after it stopped):

* ``epoch`` (shared by the runs) and ``seconds``, the wall time of the epoch for all runs together;
* ``train_loss`` (mean data loss of the epoch's batches), ``train_accuracy`` (fraction right in
  those batches, counted as they were trained), ``val_loss``, ``val_accuracy``;
* ``learning_rate`` (the optimizer's after the epoch, NaN when it is not injectable);
* ``stopped``: whether the run had stopped early by the end of the epoch;
* one entry per statistic of ``metrics_fn``.

Checkpoints hold the train states, the keys and the loop state (monitor states, best params,
divergence), with the history, the settings and the data position in their metadata; a run resumed
from one continues exactly as if it had not stopped. One process writes the flax-msgpack format;
the processes of a multi-process run write one Orbax checkpoint together, each its own shards
(:mod:`jaxnets.checkpoint`), and every process restores the whole of it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from jaxnets import checkpoint as ckpt
from jaxnets import optim
from jaxnets._checks import check_pair, checked_augment, key_data, resolve_hyperparams, stack_keys
from jaxnets._programs import programs_for
from jaxnets._util import as_one_run, drop_run_axis, path_str, to_json, unknown
from jaxnets.monitors import EarlyStopping, EarlyStoppingState, PlateauState, ReduceOnPlateau
from jaxnets.parallel import (first_runs, fsdp_constraint, fsdp_shardings, pad_runs, put, run_layout, to_device,
                              to_host)
from jaxnets.streaming import HostArrays, HostBatches, StreamedEpoch, as_source
from jaxnets.train import NonFiniteError, TrainState, choose_engine, is_classification

HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "stopped",
                "seconds")
NON_FINITE = ("raise", "record")


class LoopState(NamedTuple):
    """What the loop carries between epochs besides the train states (leaves (runs, …))."""

    early: EarlyStoppingState | None
    plateau: PlateauState | None
    best_params: Any
    best_state: Any
    diverged_epoch: np.ndarray


class Outcome(NamedTuple):
    """What the driver hands back, for R real runs: stacked final train state (best params where early
    stopping found one), history, and per-run best epoch, stopped flag and divergence epoch."""

    train_state: TrainState
    history: dict[str, list]
    best_epoch: np.ndarray
    stopped: np.ndarray
    diverged_epoch: np.ndarray


@jax.jit
def _where_runs(mask, new, old):
    """Per run: ``new`` where mask (runs,) is True, else ``old`` (trees with a leading run axis)."""
    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)
    return jax.tree.map(pick, new, old)


def _where_host(mask, new, old):
    return jax.tree.map(lambda a, b: np.where(mask, a, b), new, old)


def _non_finite_leaves(tree) -> list[str]:
    return [path_str(path) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
            if jnp.issubdtype(leaf.dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(leaf)))]


def _divergence_message(epoch: int, losses: np.ndarray, newly: np.ndarray, params, runs: int,
                        stacked: bool) -> str:
    steps = losses.shape[1]
    parts = []
    for r in np.flatnonzero(newly):
        step = int(np.flatnonzero(~np.isfinite(losses[r]))[0])
        leaves = _non_finite_leaves(jax.tree.map(lambda leaf: leaf[r], params))
        where = f"run {r}: " if stacked else ""
        parts.append(f"{where}loss {losses[r, step]} at step {step} (of {steps} steps); non-finite params after "
                     f"the epoch: {', '.join(leaves) or 'none'}")
    runs_text = f" in runs {np.flatnonzero(newly).tolist()} (of {runs})" if stacked else ""
    return (f"non-finite training loss at epoch {epoch}{runs_text}: " + "; ".join(parts) +
            ". Lower the learning rate, or pass on_non_finite='record' to record the diverged runs and go on.")


def _history_from_json(history: dict, stacked: bool) -> dict[str, list]:
    def entry(name, value):
        if name == "epoch":
            return int(value)
        if name == "stopped":
            return np.asarray(value, bool) if stacked else bool(value)
        if stacked or isinstance(value, list):
            return np.asarray(value, np.float64)
        return float("nan") if value is None else float(value)
    return {name: [entry(name, v) for v in values] for name, values in history.items()}


def _settings(runs, batch_size, hyperparams, l1, l2, regularize_from_epoch, early_stopping, reduce_on_plateau,
              augment, compute_dtype) -> dict:
    """What a resumed run must share with the run that wrote the checkpoint (JSON)."""
    settings = {"runs": runs, "batch_size": batch_size, "hyperparams": hyperparams, "l1": l1, "l2": l2,
                "regularize_from_epoch": regularize_from_epoch, "early_stopping": early_stopping,
                "reduce_on_plateau": reduce_on_plateau, "augment": augment is not None}
    if compute_dtype is not None:  # absent from the checkpoints of full-precision runs, as before it existed
        settings["compute_dtype"] = str(jnp.dtype(compute_dtype))
    return to_json(settings)


def train_runs(
    model, params, state, train_data, *, stacked: bool, caller: str, loss, optimizer: optax.GradientTransformation,
    epochs: int, batch_size: int, keys, hyperparams: dict | None, validation_data, early_stopping,
    l1, l2, regularize_from_epoch: int, penalty_mask, reduce_on_plateau: ReduceOnPlateau | None,
    checkpoint_dir: str | Path | None, augment: Callable | None, metrics_fn: Callable | None,
    metrics_data: tuple, on_epoch_end: Callable[[dict], None] | None, on_non_finite: str, engine: str,
    devices: Sequence[jax.Device] | None, mesh: Mesh | None, shard_params: bool, compute_dtype, progress: bool,
    description: str,
) -> Outcome:
    """Trains ``params``/``state`` (leaves (runs, …) when ``stacked``, else one run) as documented
    by :func:`jaxnets.fit_seeds`; ``caller`` names the public function in error messages."""
    # ----------------------------------------------------------------------------- arguments
    if isinstance(early_stopping, int) and not isinstance(early_stopping, bool):
        early_stopping = EarlyStopping(patience=early_stopping)
    for name, monitor in (("early_stopping", early_stopping), ("reduce_on_plateau", reduce_on_plateau)):
        if monitor is not None and monitor.monitor.startswith("val_") and validation_data is None:
            raise ValueError(f"{caller}: {name} monitoring {monitor.monitor} needs validation_data")
    if on_non_finite not in NON_FINITE:
        raise unknown("on_non_finite value", on_non_finite, NON_FINITE)
    if not isinstance(epochs, int) or epochs < 0 or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{caller}: epochs must be an int >= 0 and batch_size an int >= 1, got {epochs!r} and "
                         f"{batch_size!r}")
    keys = stack_keys(caller, keys, stacked)
    runs = int(keys.shape[0])
    if not stacked:
        params, state = as_one_run((params, state))
    for path, leaf in jax.tree_util.tree_leaves_with_path((params, state)):
        if leaf.shape[:1] != (runs,):
            raise ValueError(f"{caller}: {('params', 'state')[path[0].idx]} leaf {path_str(path[1:])} has shape "
                             f"{leaf.shape}; expected a leading run axis of {runs} (one per key)")
    source = as_source(train_data)
    if source is None:
        x, t = (jnp.asarray(a) for a in train_data)
        num_examples = x.shape[0]
    else:  # streamed: the checks look at the first batch, the training reads chunk by chunk
        x, t = (jnp.asarray(a) for a in source.sample(batch_size))
        num_examples = source.num_examples if isinstance(source, HostArrays) else batch_size
        if augment is not None:
            raise ValueError(f"{caller}: augment= works on training data in memory; with a streamed source, "
                             "augment the batches as the source makes them")
        if checkpoint_dir is not None and isinstance(source, HostBatches) and not source.resumable:
            raise ValueError(f"{caller}: a checkpoint must hold the data position, and this iterator has no "
                             "get_state()/set_state(); give a re-iterable source or one with them")
    check_pair(f"{caller}: train_data", model, params, state, x, t, loss, stacked=True)
    if num_examples < batch_size:
        raise ValueError(f"{caller}: batch_size {batch_size} is larger than the {num_examples} training examples")
    if validation_data is not None:
        x_val, t_val = (jnp.asarray(a) for a in validation_data)
        check_pair(f"{caller}: validation_data", model, params, state, x_val, t_val, loss, stacked=True)
    opt_shapes = jax.eval_shape(lambda stacked_params: optimizer.init(drop_run_axis(stacked_params)), params)
    optimizer_values, l1, l2 = resolve_hyperparams(caller, hyperparams, l1, l2, opt_shapes, runs, stacked)
    if reduce_on_plateau is not None and "learning_rate" not in optim.get_hyperparams(opt_shapes):
        raise ValueError(f"{caller}: reduce_on_plateau needs an injectable learning rate (an optimizer from "
                         "jaxnets.optim.optimizer)")
    settings = _settings(runs, batch_size, optimizer_values, l1, l2,
                         regularize_from_epoch, early_stopping, reduce_on_plateau, augment, compute_dtype)
    augment = checked_augment(caller, augment, jax.ShapeDtypeStruct(keys.shape[1:], keys.dtype), x)  # one run's key

    # --------------------------------------------------------------------- compiled pieces
    layout = run_layout(runs, devices, mesh)
    if batch_size % layout.data_devices:
        raise ValueError(f"{caller}: batch_size {batch_size} does not split evenly over the {layout.data_devices} "
                         f"devices of the mesh's 'data' axis; use a multiple of {layout.data_devices}")
    if shard_params and layout.data_devices == 1:
        raise ValueError(f"{caller}: shard_params=True splits params over the mesh's 'data' axis, which has one device "
                         "here; give devices= (fit) or a mesh with a 'data' axis of several devices")
    padded = layout.padded
    classification = is_classification(loss)
    use_l1, use_l2 = bool(np.any(l1 != 0)), bool(np.any(l2 != 0))
    programs = programs_for(model, loss, optimizer, batch_size=batch_size, penalty_mask=penalty_mask,
                            engine=choose_engine(engine), vmapped=padded > 1, augment=augment,
                            metrics_fn=metrics_fn, num_metrics_data=len(metrics_data), batch_sharding=layout.batch,
                            compute_dtype=compute_dtype, streamed=source is not None,
                            constrain_params=fsdp_constraint(layout.mesh) if shard_params else None)
    streamed = (None if source is None else
                StreamedEpoch(source, programs.epoch, batch_size=batch_size, layout=layout))

    # ------------------------------------------------------------------------ state, resume
    opt_state = optim.set_hyperparams(optim.init_runs(optimizer, params), **optimizer_values)
    ts = TrainState(params, state, opt_state)
    initial_rate = (np.asarray(optim.get_hyperparams(opt_state)["learning_rate"], np.float64)
                    if reduce_on_plateau is not None else None)
    loop = LoopState(early_stopping.init((runs,)) if early_stopping is not None else None,
                     reduce_on_plateau.init((runs,)) if reduce_on_plateau is not None else None,
                     params if early_stopping is not None else None, state if early_stopping is not None else None,
                     np.full((runs,), -1))
    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    start_epoch = 0
    if checkpoint_dir is not None and ckpt.latest_step(checkpoint_dir) is not None:
        saved = ckpt.read_metadata(checkpoint_dir).get("settings") or {}
        differ = [name for name in {**saved, **settings} if saved.get(name) != settings.get(name)]
        if differ:
            raise ValueError(f"{caller}: the checkpoint in {str(checkpoint_dir)!r} was made with other settings: "
                             + "; ".join(f"{n} {saved.get(n)} there, {settings.get(n)} now" for n in differ)
                             + ". Remove it or use another checkpoint_dir")
        tree, meta = ckpt.restore_checkpoint(checkpoint_dir, {"train": ts, "keys": keys, "loop": loop})
        if not np.array_equal(key_data(tree["keys"]), key_data(keys)):
            raise ValueError(f"{caller}: the checkpoint in {str(checkpoint_dir)!r} was made with other keys; "
                             "remove it or use another checkpoint_dir")
        ts = TrainState(*tree["train"])
        restored = tree["loop"]
        host = lambda s: None if s is None else type(s)(*(np.asarray(v) for v in s))  # noqa: E731
        loop = restored._replace(early=host(restored.early), plateau=host(restored.plateau),
                                 diverged_epoch=np.asarray(restored.diverged_epoch))
        history = _history_from_json(meta["history"], stacked)
        start_epoch = int(meta["epoch"]) + 1
        if source is not None:
            source.restore(meta.get("data_position"))
    # everything on its devices, the run count padded to a multiple of them
    ts, keys_dev, best = put(pad_runs((ts, keys, (loop.best_params, loop.best_state)), padded), layout.split)
    if shard_params:  # FSDP-style: each device keeps its slice of params and optimizer state
        ts = ts._replace(params=put(ts.params, fsdp_shardings(ts.params, layout.mesh)),
                         opt_state=put(ts.opt_state, fsdp_shardings(ts.opt_state, layout.mesh)))
    early, plateau = pad_runs((loop.early, loop.plateau), padded)
    diverged = pad_runs(loop.diverged_epoch, padded)
    if source is None:
        x, t = put((x, t), layout.replicated)
    if validation_data is not None:
        x_val, t_val = put((x_val, t_val), layout.replicated)
    metrics_data = tuple(put(jnp.asarray(a), layout.replicated) for a in metrics_data)
    l1, l2, initial_rate = pad_runs((l1, l2, initial_rate), padded)

    def finished() -> bool:
        stopped = early.stopped if early is not None else np.zeros(padded, bool)
        return bool(np.all(stopped | (diverged >= 0)))

    # ------------------------------------------------------------------------------ epochs
    if finished():
        start_epoch = max(start_epoch, epochs)
    bar = tqdm(range(start_epoch, epochs), desc=description, disable=not progress or jax.process_index() != 0, leave=True,
               initial=start_epoch, total=epochs, unit="epoch")
    for epoch in bar:
        started = time.perf_counter()
        live = ~early.stopped if early is not None else np.ones(padded, bool)
        on = epoch >= regularize_from_epoch
        l1_now = put(np.asarray(l1 * on), layout.split) if use_l1 else None  # (padded,); None: no penalty term
        l2_now = put(np.asarray(l2 * on), layout.split) if use_l2 else None
        key_now = programs.epoch_keys(keys_dev, epoch)
        x_now = x
        if augment is not None:
            augment_key, key_now = programs.split_keys(key_now)
            x_now = programs.augment(augment_key, x)
        if streamed is None:
            new_ts, (losses, corrects) = programs.epoch(ts, x_now, t, key_now, l1_now, l2_now)
        else:  # every run reads the batches in the order run 0's key gives (fit's own order)
            new_ts, (losses, corrects) = streamed(ts, key_now, l1_now, l2_now, epoch, keys[0])
        ts = new_ts if live.all() else _where_runs(put(live, layout.split), new_ts, ts)
        losses = to_host(losses).astype(np.float64)  # (padded, steps)
        newly = ~np.all(np.isfinite(losses), axis=1) & (diverged < 0) & live
        if newly[:runs].any() and on_non_finite == "raise":
            raise NonFiniteError(_divergence_message(epoch, losses[:runs], newly[:runs], ts.params, runs, stacked))
        diverged = np.where(newly, epoch, diverged)
        nan = np.full(padded, np.nan)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": np.where(live, losses.mean(axis=1), nan)}
        record["train_accuracy"] = (np.where(live, to_host(corrects).astype(np.float64).sum(axis=1) / (losses.shape[1] * batch_size),
                                             nan) if classification else nan)
        record["val_loss"], record["val_accuracy"] = nan, nan
        if validation_data is not None:
            val_loss, val_accuracy = programs.evaluate(ts.params, ts.state, x_val, t_val)
            record["val_loss"] = np.where(live, to_host(val_loss).astype(np.float64), nan)
            if classification:
                record["val_accuracy"] = np.where(live, to_host(val_accuracy).astype(np.float64), nan)
        rate = optim.get_hyperparams(ts.opt_state).get("learning_rate")
        record["learning_rate"] = nan if rate is None else to_host(rate).astype(np.float64)
        if metrics_fn is not None:
            stats = programs.metrics(ts.params, ts.state, *metrics_data)
            record.update({name: to_host(value) for name, value in stats.items()})
        record["seconds"] = time.perf_counter() - started

        if reduce_on_plateau is not None:
            plateau = _where_host(live, reduce_on_plateau.update(plateau, record[reduce_on_plateau.monitor]), plateau)
            new_rate = np.where(live, reduce_on_plateau.learning_rate(plateau, initial_rate), record["learning_rate"])
            if np.any(new_rate != record["learning_rate"]):
                ts = ts._replace(opt_state=optim.set_hyperparams(ts.opt_state, learning_rate=new_rate))
        if early_stopping is not None:
            early = early_stopping.update(early, record[early_stopping.monitor], epoch)
            improved = early.best_epoch == epoch
            if improved.any():
                best = _where_runs(put(improved, layout.split), (ts.params, ts.state), best)
        record["stopped"] = early.stopped.copy() if early is not None else np.zeros(padded, bool)

        record = {name: (value if name in ("epoch", "seconds") else value[:runs]) for name, value in record.items()}
        if not stacked:
            record = {name: (value if name in ("epoch", "seconds") else value[0].item() if value[0].ndim == 0
                             else value[0]) for name, value in record.items()}
        for name, value in record.items():
            history.setdefault(name, []).append(value)
        if checkpoint_dir is not None:
            loop = LoopState(*first_runs((early, plateau, *best), runs), diverged[:runs])
            ckpt.save_checkpoint(checkpoint_dir, epoch, {"train": first_runs(ts, runs), "keys": keys, "loop": loop},
                                 metadata={"epoch": epoch, "history": history, "settings": settings,
                                           "data_position": None if source is None else source.position()},
                                 format=ckpt.default_format())  # Orbax, written by every process, in several
        if on_epoch_end is not None:
            on_epoch_end(dict(record))
        bar.set_postfix(_postfix(record, live[:runs], stacked, classification, validation_data is not None))
        if finished():
            break
    bar.close()

    # ------------------------------------------------------------------------------ result
    best_epoch = early.best_epoch if early is not None else np.full(padded, -1)
    if early_stopping is not None:
        found = best_epoch >= 0
        params_out, state_out = _where_runs(put(found, layout.split), best, (ts.params, ts.state))
        ts = ts._replace(params=params_out, state=state_out)
    ts = to_device(first_runs(ts, runs), layout.first_device)
    stopped = early.stopped if early is not None else np.zeros(padded, bool)
    return Outcome(ts, history, best_epoch[:runs], stopped[:runs], diverged[:runs])


def _postfix(record: dict, live: np.ndarray, stacked: bool, classification: bool, validation: bool) -> dict:
    names = ["train_loss"] + (["train_accuracy"] if classification else []) + (["val_loss"] if validation else [])
    names += ["val_accuracy"] if classification and validation else []
    if not stacked:
        return {name: f"{record[name]:.4f}" for name in names if np.isfinite(record[name])}
    shown = {name: f"{np.nanmean(record[name][live]):.4f}" for name in names if np.isfinite(record[name][live]).any()}
    return shown | {"runs": f"{int(live.sum())}/{live.size}"}
