"""``fit``: train one network; the epochs run in the loop that :func:`jaxnets.fit_seeds` shares
(:mod:`jaxnets._loop`), with one run.

>>> import jax, jaxnets as jn
>>> from jaxnets import data, models, optim
>>> x, y = data.make_synthetic("xor", 64, key=jax.random.key(0))
>>> model = models.mlp([8, 2], activation="tanh")
>>> params, state = model.init(jax.random.key(1), x[:1])
>>> result = jn.fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 0.05),
...                 epochs=3, batch_size=16, key=jax.random.key(2), progress=False)
>>> len(result.history["train_loss"])
3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import optax
from jax.sharding import Mesh

from jaxnets._loop import train_runs
from jaxnets._util import first_run
from jaxnets.monitors import EarlyStopping, ReduceOnPlateau
from jaxnets.parallel import data_mesh


class FitResult(NamedTuple):
    """What :func:`fit` returns. ``params``/``state`` are the best epoch's when early stopping is on.

    ``history``: a dict of lists, one number per epoch under each key of :mod:`jaxnets._loop`
    (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``,
    ``learning_rate``, ``stopped``, ``seconds``, and the statistics of ``metrics_fn``); NaN where a
    number does not exist. ``best_epoch``: the epoch whose params are returned (None without early
    stopping); ``stopped_early``; ``diverged_epoch``: the first epoch with a non-finite loss under
    ``on_non_finite="record"`` (None if none).
    """

    params: Any
    state: Any
    opt_state: Any
    history: dict[str, list]
    best_epoch: int | None
    stopped_early: bool
    diverged_epoch: int | None


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
    hyperparams: dict[str, float] | None = None,
    validation_data: tuple[Any, Any] | None = None,
    early_stopping: EarlyStopping | int | None = None,
    l1: float = 0.0,
    l2: float = 0.0,
    regularize_from_epoch: int = 0,
    penalty_mask=None,
    reduce_on_plateau: ReduceOnPlateau | None = None,
    checkpoint_dir: str | Path | None = None,
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    metrics_fn: Callable[..., dict] | None = None,
    metrics_data: tuple[Any, ...] = (),
    on_epoch_end: Callable[[dict], None] | None = None,
    on_non_finite: str = "raise",
    engine: str = "auto",
    devices: Sequence[jax.Device] | None = None,
    mesh: Mesh | None = None,
    shard_params: bool = False,
    compute_dtype: str | None = None,
    progress: bool = True,
    description: str = "training",
) -> FitResult:
    """Trains ``model`` from ``params``/``state`` on ``train_data = (x, t)``.

    Args:
      train_data: x (N, …) and targets t (N, …); put on the device once. Checked before training:
        finite inputs, and targets the loss can use for the model's output (class indices in
        ``[0, K)``, one-hot rows of width K, …); a ValueError names the bad values and examples.
        Or data that stays on the host (:mod:`jaxnets.streaming`): a :class:`~jaxnets.streaming.HostArrays`
        (a pair of NumPy memmaps becomes one), trained on the in-memory path's batches, or a
        :class:`~jaxnets.streaming.HostBatches` of host batches in its own order; the epoch then runs
        in compiled chunks of K steps, and the checks look at the first batch.
      loss: per-example loss name or function (see :mod:`jaxnets.losses`).
      optimizer: an Optax optimizer (e.g. ``jaxnets.optim.optimizer("adam", 1e-3)``).
      epochs, batch_size: each epoch shuffles and uses N // batch_size full batches.
      key: PRNG key (``jax.random.key`` or ``PRNGKey``); epoch e uses ``fold_in(key, e)`` for
        shuffling and dropout.
      hyperparams: values for the optimizer's injectable hyper-parameters (``{"momentum": 0.5}``,
        see :func:`jaxnets.optim.hyperparam_names`) and for ``l1``/``l2``.
      validation_data: (x, t) evaluated after each epoch (needed to monitor ``val_*``).
      early_stopping: an :class:`EarlyStopping` or a patience in epochs (monitoring val_loss).
      l1, l2: penalty strengths (L1 Σ|w|, L2 ½Σw² over ``penalty_mask``, default every param that is
        not a bias), switched on from epoch ``regularize_from_epoch``.
      reduce_on_plateau: a :class:`ReduceOnPlateau` annealing the (injectable) learning rate.
      checkpoint_dir: save after each epoch; an existing checkpoint there is resumed (it must have
        been made with the same key and settings).
      augment: ``augment(key, x) -> x'`` (same shape), e.g. ``functools.partial(jaxnets.augment.augment,
        shift=1, flip=True)``; applied, jitted, to the whole training input once per epoch. Epoch e then
        splits ``fold_in(key, e)`` into the augmentation key and the shuffling/dropout key.
      metrics_fn: ``f(params, state, *metrics_data) -> {name: array}``, jitted, after each epoch
        (gradient norms, unit statistics…); each statistic becomes a history key.
      on_epoch_end: called with each epoch's record (the history keys, one value each) after the
        epoch is finished and saved; epochs restored from a checkpoint are not repeated.
      on_non_finite: ``"raise"`` (:class:`NonFiniteError` naming epoch, step and leaves) or
        ``"record"`` (stop training and return, with ``diverged_epoch`` set).
      engine: "auto" (the scan, for every model), "scan" (one compiled call per epoch) or "step" (one per batch).
      devices, mesh: data parallelism (default: one device). ``devices=[...]`` splits each batch over
        these devices (:func:`jaxnets.parallel.data_mesh`); ``mesh=`` a :class:`jax.sharding.Mesh` with a
        ``"data"`` axis (and a ``"runs"`` axis of size 1, if any). Params and optimizer state are
        replicated, the gradient is averaged over the devices inside the compiled step, batch-norm
        statistics are the whole batch's; the result equals the one-device run up to float rounding.
        ``batch_size`` must divide by the number of devices.
      shard_params: FSDP-style (needs several devices on ``"data"``): params and optimizer state are
        split over the devices instead of replicated, each leaf along its largest axis that divides by
        the device count (:func:`jaxnets.parallel.fsdp_spec`); same results, 1/n of the state per device.
      compute_dtype: mixed precision, e.g. ``"bfloat16"`` (default None: the params' dtype). The forward
        and backward pass of each step run in it; params, optimizer state, the loss and the evaluation
        stay float32 (bfloat16 has float32's exponent range: no loss scaling is needed).
    """
    if devices is not None and mesh is not None:
        raise ValueError("fit: give devices or mesh, not both")
    if devices is not None:
        mesh = data_mesh(devices)
    if mesh is not None and dict(mesh.shape).get("runs", 1) != 1:
        raise ValueError(f"fit: trains one run; its mesh's 'runs' axis must have size 1, got {dict(mesh.shape)} "
                         "(fit_seeds trains several runs over a 'runs' axis)")
    outcome = train_runs(
        model, params, state, train_data, stacked=False, caller="fit", loss=loss, optimizer=optimizer,
        epochs=epochs, batch_size=batch_size, keys=key, hyperparams=hyperparams, validation_data=validation_data,
        early_stopping=early_stopping, l1=l1, l2=l2, regularize_from_epoch=regularize_from_epoch,
        penalty_mask=penalty_mask, reduce_on_plateau=reduce_on_plateau, checkpoint_dir=checkpoint_dir,
        augment=augment, metrics_fn=metrics_fn, metrics_data=metrics_data, on_epoch_end=on_epoch_end,
        on_non_finite=on_non_finite, engine=engine, devices=None, mesh=mesh, shard_params=shard_params,
        compute_dtype=compute_dtype,
        progress=progress, description=description)
    ts = first_run(outcome.train_state)
    best, diverged = int(outcome.best_epoch[0]), int(outcome.diverged_epoch[0])
    return FitResult(ts.params, ts.state, ts.opt_state, outcome.history, best if best >= 0 else None,
                     bool(outcome.stopped[0]), diverged if diverged >= 0 else None)
