"""Many training runs in one compiled program: seeds × any numeric hyper-parameter, trained together.

:func:`fit_seeds` is :func:`jaxnets.fit` for R runs at once, in the same loop (:mod:`jaxnets._loop`)
with every option of ``fit``. Every leaf of ``params``, ``state`` and the optimizer state gets a
leading run axis (R, …); one epoch of all runs is the compiled epoch of ``fit`` vmapped over the
train states and keys, so R runs cost one compilation and one call per epoch. Run r uses
``fold_in(keys[r], epoch)`` for epoch ``epoch``, exactly as ``fit(..., key=keys[r])`` does, so run r
trains the same weights as that ``fit`` call (up to float rounding of batched matrix products; with
one run the program is the same and so are the weights).

Each run can have its own value of every hyper-parameter the optimizer exposes through
``optax.inject_hyperparams`` (learning rate, momentum, b1, b2, eps, weight decay, …) and of the
``l1``/``l2`` penalties: ``hyperparams={"learning_rate": [...], "l2": [...]}``; :func:`seed_grid`
builds the product of seeds and named values. Early stopping and plateau annealing decide per run:
a run that stops keeps its best params and stops changing while the others go on.

When JAX has several devices (several CPU devices after :func:`jaxnets.runtime.use_cpu_devices`, or
several GPUs), the runs are split over them (:mod:`jaxnets.parallel`): each device trains its share
in parallel. XLA:CPU runs a small network's step mostly on one thread, so on a 2-core CPU this is how
the second core helps.

>>> import jax
>>> from jaxnets import data, models, optim
>>> from jaxnets.seeds import fit_seeds, init_runs, seed_grid, seed_keys
>>> x, y = data.make_synthetic("xor", 64, key=jax.random.key(0))
>>> seeds, hyperparams = seed_grid([0, 1], learning_rate=[0.01, 0.1])
>>> keys = seed_keys(seeds)
>>> model = models.mlp([8, 2], activation="tanh")
>>> params, state = init_runs(model, keys, x[:1])
>>> result = fit_seeds(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 0.01),
...                    epochs=2, batch_size=16, keys=keys, hyperparams=hyperparams, progress=False)
>>> result.history["train_loss"][-1].shape
(4,)
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jaxnets._loop import train_runs
from jaxnets._programs import CACHED_SETTINGS
from jaxnets._util import memoize_hashable
from jaxnets.initializers import INIT_COMPILER_OPTIONS
from jaxnets.monitors import EarlyStopping, ReduceOnPlateau
from jaxnets.nn.core import as_shape_dtype

Array = jax.Array
# (params, state, *metrics_data) of one run → named statistics (arrays of fixed shapes).
MetricsFn = Callable[..., dict[str, Array]]


class SeedsResult(NamedTuple):
    """What :func:`fit_seeds` returns. Leaves of params/state/opt_state have a leading run axis
    (on the first device); params/state are each run's best epoch's when early stopping is on.

    ``history``: a dict of lists, one entry per epoch under each key of :mod:`jaxnets._loop`; each
    entry is a (runs,) array (``epoch`` and ``seconds`` are shared numbers), NaN where a number does
    not exist (for instance every number of a run after it stopped). ``np.asarray(history[k])``
    gives (epochs, runs). ``best_epoch``, ``stopped_early``, ``diverged_epoch``: (runs,) arrays, -1
    (False) where a run has none.
    """

    params: Any
    state: Any
    opt_state: Any
    history: dict[str, list]
    best_epoch: np.ndarray
    stopped_early: np.ndarray
    diverged_epoch: np.ndarray


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stacks pytrees of the same structure along a new leading axis (runs, …), as one compiled
    program per list of trees of shapes (op by op, each leaf's stack compiles for its shape)."""
    return _stack(list(trees))


def unstack_tree(tree: Any, index: int) -> Any:
    """Run ``index`` of a stacked pytree (the leading axis removed); negative indices count from the
    end. One compiled program per tree of shapes serves every index (op by op, each leaf's indexing
    compiles for its shape). Raises ``IndexError`` for an index outside the runs."""
    runs = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
    if not runs:  # no leaves (a model without state)
        return tree
    if None in runs or len(runs) > 1:
        raise ValueError(f"unstack_tree: every leaf needs the same leading run axis, got leading sizes {runs}")
    (count,) = runs
    if not -count <= index < count:
        raise IndexError(f"unstack_tree: run {index} of a tree of {count} runs")
    return _take_run(tree, index % count)


_stack = jax.jit(lambda trees: jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees))
_take_run = jax.jit(lambda tree, index: jax.tree.map(lambda leaf: leaf[index], tree))


def seed_keys(seeds: Sequence[int]) -> Array:
    """``PRNGKey(seed)`` for each seed, stacked: (runs, 2)."""
    return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])


def seed_grid(seeds: Sequence[int], **values: Sequence[float]) -> tuple[list[int], dict[str, list[float]]]:
    """Every combination of a seed and one value of each named hyper-parameter, as ``(seeds,
    {name: values})`` with one entry per run for :func:`fit_seeds` (``keys=seed_keys(seeds),
    hyperparams=...``). The first name varies slowest, the seed fastest:
    ``seed_grid([0, 1], learning_rate=[a, b])`` → ``([0, 1, 0, 1], {"learning_rate": [a, a, b, b]})``."""
    names = list(values)
    combos = list(itertools.product(*(list(values[n]) for n in names), list(seeds)))
    return [int(c[-1]) for c in combos], {n: [float(c[i]) for c in combos] for i, n in enumerate(names)}


@memoize_hashable(CACHED_SETTINGS)
def _stacked_init(model) -> Callable:
    """``(keys (runs,), x) -> stacked (params, state)``: ``model.init`` vmapped over the keys, compiled
    once per model, key batch and input shape (kept for the 32 latest models). As one program at XLA's
    level 1, the 32 inits of the 2-64-64-2 MLP took 0.55 s in a fresh process instead of 1.13 s op by op
    (LeNet-5: 0.97 s instead of 2.70 s; benchmarks/RESULTS.md)."""
    return jax.jit(jax.vmap(model.init, in_axes=(0, None)), compiler_options=INIT_COMPILER_OPTIONS)


def init_runs(model, keys: Array, x) -> tuple[Any, Any]:
    """``model.init(keys[r], x)`` for each of the (runs,) keys, stacked: ``(params, state)``.
    ``keys``: typed (runs,) or raw (runs, 2) (:func:`seed_keys`), or a list of keys. ``x``: a batch,
    ShapeDtypeStruct or shape of one run's input (only its shape and dtype are used). All runs are
    initialised by one compiled program, reused for the same model; its values equal ``model.init``'s,
    at most the last bit apart (see INIT_COMPILER_OPTIONS). Call it outside ``jax.jit``: that program
    carries its own compiler options, which JAX accepts only at the top level (inside a trace, use
    ``jax.vmap(model.init, in_axes=(0, None))``)."""
    if isinstance(keys, (list, tuple)):
        keys = jnp.stack(keys)
    if isinstance(x, (tuple, list, jax.ShapeDtypeStruct)):  # a stand-in batch of that shape, made on the host
        spec = as_shape_dtype(x)
        x = np.zeros(spec.shape, spec.dtype)
    return _stacked_init(model)(keys, x)


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
    hyperparams: dict[str, Sequence[float]] | None = None,
    validation_data: tuple[Any, Any] | None = None,
    early_stopping: EarlyStopping | int | None = None,
    l1: float | Sequence[float] = 0.0,
    l2: float | Sequence[float] = 0.0,
    regularize_from_epoch: int = 0,
    penalty_mask=None,
    reduce_on_plateau: ReduceOnPlateau | None = None,
    checkpoint_dir: str | Path | None = None,
    augment: Callable[[Array, Array], Array] | None = None,
    metrics_fn: MetricsFn | None = None,
    metrics_data: tuple[Any, ...] = (),
    on_epoch_end: Callable[[dict], None] | None = None,
    on_non_finite: str = "raise",
    engine: str = "auto",
    devices: Sequence[jax.Device] | None = None,
    mesh: Mesh | None = None,
    shard_params: bool = False,
    compute_dtype: str | None = None,
    progress: bool = True,
    description: str = "runs",
) -> SeedsResult:
    """Trains R runs of ``model`` together; run r starts from ``params[r]``/``state[r]``. Every
    option is :func:`jaxnets.fit`'s, applied per run; the differences:

    Args:
      params, state: stacked, leaves (runs, …) (see :func:`init_runs`, :func:`stack_trees`).
      keys: one PRNG key per run: typed (runs,) (``jax.random.split``) or raw (runs, 2)
        (:func:`seed_keys`); epoch e of run r uses ``fold_in(keys[r], e)`` as ``fit`` does.
      hyperparams: ``{name: one value per run}`` (or one value for all) for the hyper-parameters the
        optimizer exposes (:func:`jaxnets.optim.hyperparam_names`) and ``l1``/``l2``; an unknown
        name raises ValueError listing the known ones. ``l1``/``l2`` may also be given directly.
      early_stopping, reduce_on_plateau: decide per run; a stopped run keeps its best params and
        stops changing while the others go on, and the call ends when every run has stopped.
      augment: each run gets its own augmented copy of the inputs per epoch (R copies in memory).
      metrics_fn: ``f(params, state, *metrics_data) -> {name: array}`` for one run, vmapped over the
        runs after each epoch; history entries (runs, …).
      on_epoch_end: called with each epoch's record, whose numbers have a run axis.
      on_non_finite: ``"raise"`` (NonFiniteError naming the runs, steps and leaves) or ``"record"``
        (the others go on; ``diverged_epoch`` says which runs diverged and when).
      devices: devices to split the runs over (default: ``jax.local_devices()``). When the runs
        do not divide evenly, copies of the last run fill the last shard (trained and dropped):
        5 runs on 2 devices train as 6.
      mesh: instead of ``devices``, a :class:`jax.sharding.Mesh` with axes ``"runs"`` and/or
        ``"data"``: the runs split over ``"runs"`` (padded as above) and each batch over ``"data"``
        (data parallelism within a run, see :func:`jaxnets.fit`). With fewer runs than devices,
        :func:`jaxnets.parallel.runs_data_mesh` builds the 2-D mesh that uses every device.
      shard_params: params and optimizer state split over the ``"data"`` axis, as in :func:`jaxnets.fit`.
      train_data: also streamed, as in :func:`jaxnets.fit`; every run then reads the batches in the
        order run 0's key gives (the data is read once for all runs).
      compute_dtype: mixed precision, as in :func:`jaxnets.fit`.

    Returns a :class:`SeedsResult`.
    """
    outcome = train_runs(
        model, params, state, train_data, stacked=True, caller="fit_seeds", loss=loss, optimizer=optimizer,
        epochs=epochs, batch_size=batch_size, keys=keys, hyperparams=hyperparams, validation_data=validation_data,
        early_stopping=early_stopping, l1=l1, l2=l2, regularize_from_epoch=regularize_from_epoch,
        penalty_mask=penalty_mask, reduce_on_plateau=reduce_on_plateau, checkpoint_dir=checkpoint_dir,
        augment=augment, metrics_fn=metrics_fn, metrics_data=metrics_data, on_epoch_end=on_epoch_end,
        on_non_finite=on_non_finite, engine=engine, devices=devices, mesh=mesh, shard_params=shard_params,
        compute_dtype=compute_dtype,
        progress=progress, description=description)
    ts = outcome.train_state
    return SeedsResult(ts.params, ts.state, ts.opt_state, outcome.history, outcome.best_epoch, outcome.stopped,
                       outcome.diverged_epoch)
