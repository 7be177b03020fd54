"""Optimizers and learning-rate schedules by name, all from Optax, and the one place that reads or
writes an optimizer's hyper-parameters.

Every optimizer is wrapped in ``optax.inject_hyperparams``, so its numeric hyper-parameters (the
learning rate, momentum, b1, b2, eps, weight decay, …) live in the optimizer state:
:func:`get_hyperparams` reads them for logging, and :func:`set_hyperparams` changes them between
epochs (plateau annealing) or gives each of many stacked runs its own value
(:func:`jaxnets.fit_seeds`'s ``hyperparams=``) without recompiling. No other module touches
``opt_state.hyperparams``.

Since those values live in the state, optimizers of one name and the same non-numeric options
(schedules, flags) update alike whatever their numbers: :func:`optimizer` gives them one shared
``update`` function, and ``fit`` reuses its compiled programs across them (a learning-rate sweep of
sequential ``fit`` calls compiles once). Their ``init`` is one compiled program too, given the numbers.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any, Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets._util import unknown

Schedule = Callable[[int], float]

OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": lambda learning_rate, momentum=0.9: optax.sgd(learning_rate, momentum=momentum),
    "nesterov": lambda learning_rate, momentum=0.9: optax.sgd(learning_rate, momentum=momentum, nesterov=True),
    "adagrad": optax.adagrad,
    "adadelta": optax.adadelta,
    "rmsprop": optax.rmsprop,
    "adam": optax.adam,
    "adamw": optax.adamw,
    "lamb": optax.lamb,
}


def optimizer(name: str, learning_rate: float | Schedule, **options) -> optax.GradientTransformation:
    """The Optax optimizer called ``name`` with its learning rate (a float or a schedule) made
    an injectable hyper-parameter. ``options`` go to the Optax constructor (e.g. ``b1``,
    ``momentum``, ``weight_decay``, ``rho``). ``momentum`` and ``nesterov`` are SGD with momentum 0.9;
    ``adadelta`` (Zeiler 2012) keeps Optax's learning-rate factor (1.0 gives the paper's update).
    """
    if name not in OPTIMIZERS:
        raise unknown("optimizer", name, sorted(OPTIMIZERS))
    factory = optax.inject_hyperparams(OPTIMIZERS[name])
    try:
        built = factory(learning_rate=learning_rate, **options)
    except TypeError as e:
        raise TypeError(f"optimizer {name!r}: {e}") from None
    hyperparams = {"learning_rate": learning_rate, **options}
    identity = _update_key(name, hyperparams)
    if identity is None:
        return built
    numbers = {key: value for key, value in hyperparams.items() if _is_number(value)}
    others = {key: value for key, value in hyperparams.items() if key not in numbers}
    init = _shared(_SHARED_INITS, identity,
                   lambda: jax.jit(lambda params, values: factory(**others, **values).init(params)))
    return built._replace(init=functools.partial(_init_with, init, numbers),
                          update=_shared(_SHARED_UPDATES, identity, lambda: built.update))


# Optimizers of one _update_key share their update and a compiled init (least recently used first out).
_SHARED_UPDATES: OrderedDict[Hashable, Callable] = OrderedDict()
_SHARED_INITS: OrderedDict[Hashable, Callable] = OrderedDict()
_MAX_SHARED = 64


def _is_number(value: Any) -> bool:
    """Whether ``optax.inject_hyperparams`` keeps ``value`` in the state (a bool is a flag, not a number)."""
    return not isinstance(value, bool) and isinstance(value, (int, float, jax.Array, np.ndarray))


def _init_with(init: Callable, numbers: dict[str, Any], params: Any) -> Any:
    """``init(params, numbers)``: an optimizer's initial state from the init compiled for its kind."""
    return init(params, numbers)


@functools.lru_cache(maxsize=_MAX_SHARED)
def _vmapped_init(init: Callable) -> Callable:
    return jax.jit(jax.vmap(init, in_axes=(0, None)))


def init_runs(optimizer: optax.GradientTransformation, params: Any) -> Any:
    """``jax.vmap(optimizer.init)(params)`` for stacked params (leaves (runs, …)): each run's initial
    state, leaves (runs, …). For an optimizer from :func:`optimizer` it is one program compiled
    once per kind and params shapes, whatever the numbers; op by op, Optax's init compiles each
    zeros-like of a new shape and each broadcast to the runs on its own (≈ 0.3 s for a small MLP's
    Adam state in a fresh process)."""
    init = optimizer.init
    if isinstance(init, functools.partial) and init.func is _init_with:
        shared, numbers = init.args
        return _vmapped_init(shared)(params, numbers)
    return jax.vmap(init)(params)


def _update_key(name: str, hyperparams: dict[str, Any]) -> Hashable | None:
    """What the ``update`` of ``optimizer(name, **hyperparams)`` depends on: the name, which
    hyper-parameters are numbers (their values live in the state, as ``optax.inject_hyperparams``
    sorts them: a bool is a flag, not a number) and the other values (schedules, flags) themselves;
    None when one is unhashable."""
    parts = []
    for key, value in sorted(hyperparams.items()):
        parts.append((key, "number") if _is_number(value) else (key, value))
    identity = (name, tuple(parts))
    try:
        hash(identity)
    except TypeError:
        return None
    return identity


def _shared(table: OrderedDict, identity: Hashable, make: Callable[[], Callable]) -> Callable:
    """The function kept in ``table`` for ``identity``, made by ``make()`` the first time (the 64
    latest identities are kept)."""
    if identity not in table:
        table[identity] = make()
    table.move_to_end(identity)
    while len(table) > _MAX_SHARED:
        table.popitem(last=False)
    return table[identity]


_INJECTED = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _is_injected(node: Any) -> bool:
    return isinstance(node, _INJECTED)


def _injected_states(opt_state: Any) -> list:
    """The ``inject_hyperparams`` states inside ``opt_state``, also when it is wrapped (e.g. by
    ``optax.multi_transform`` in :func:`jaxnets.transfer.freeze`)."""
    return [node for node in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_injected) if _is_injected(node)]


def _scheduled(injected) -> set[str]:
    return set(getattr(injected, "hyperparams_states", {}) or {})


def hyperparam_names(opt_state: Any) -> list[str]:
    """The names of the hyper-parameters ``opt_state`` exposes (those a schedule drives included)."""
    names: list[str] = []
    for injected in _injected_states(opt_state):
        names += [n for n in injected.hyperparams if n not in names]
    return names


def get_hyperparams(opt_state: Any) -> dict[str, jax.Array]:
    """The optimizer's current hyper-parameters by name: scalars, or (runs,) arrays for stacked
    runs. ``{}`` when the optimizer was not built with ``optax.inject_hyperparams`` (as
    :func:`optimizer` builds every one). A scheduled value is the one used by the last step."""
    values: dict[str, jax.Array] = {}
    for injected in _injected_states(opt_state):
        for name, value in injected.hyperparams.items():
            values.setdefault(name, value)
    return values


def set_hyperparams(opt_state: Any, **values: float | Sequence[float] | jax.Array) -> Any:
    """``opt_state`` with hyper-parameters replaced: a scalar sets every run, a sequence or array
    gives one value per run of a stacked state (its length must equal the run count). Dtypes are
    kept. Raises ValueError naming the hyper-parameters this optimizer exposes for an unknown
    name, and for one driven by a schedule (its value is recomputed from the step count)."""
    injected = _injected_states(opt_state)
    exposed = hyperparam_names(opt_state)
    for name in values:
        if name not in exposed:
            if not injected:
                raise ValueError(f"cannot set {name!r}: this optimizer exposes no hyper-parameters; build it with "
                                 "jaxnets.optim.optimizer or optax.inject_hyperparams")
            raise unknown("hyper-parameter", name, exposed, plural="hyper-parameters of this optimizer")
        if any(name in _scheduled(i) for i in injected):
            raise ValueError(f"cannot set {name!r}: a schedule computes it from the step count; give the "
                             "optimizer a constant to set it per run")

    def replace(node):
        if not _is_injected(node):
            return node
        hyperparams = dict(node.hyperparams)
        for name, value in values.items():
            if name in hyperparams:
                current = jnp.asarray(hyperparams[name])
                new = jnp.asarray(np.asarray(value, np.float64), current.dtype)
                if new.ndim and new.shape != current.shape:
                    runs = "a single run" if current.ndim == 0 else f"{current.shape[0]} runs"
                    raise ValueError(f"{name}: {new.shape[0]} values for {runs}; give one value per run")
                hyperparams[name] = jnp.broadcast_to(new, current.shape)
        return node._replace(hyperparams=hyperparams)

    return jax.tree_util.tree_map(replace, opt_state, is_leaf=_is_injected)


def scale_learning_rate(base_learning_rate: float, batch_size: int, base_batch_size: int = 256) -> float:
    """The linear scaling rule (Goyal et al. 2017): lr = base_lr × batch_size / base_batch_size."""
    if batch_size <= 0 or base_batch_size <= 0:
        raise ValueError(f"batch sizes must be positive, got {batch_size} and {base_batch_size}")
    return base_learning_rate * batch_size / base_batch_size


def _constant(init_value, steps_per_epoch):
    return optax.constant_schedule(init_value)


def _step(init_value, steps_per_epoch, epochs: Sequence[int] = (), factor: float = 0.1):
    """Multiply by ``factor`` at the start of each epoch in ``epochs``."""
    return optax.piecewise_constant_schedule(init_value, {int(e) * steps_per_epoch: factor for e in epochs})


def _exponential(init_value, steps_per_epoch, decay_rate: float = 0.9):
    """Multiply by ``decay_rate`` every epoch, smoothly: lr = lr₀ · decay_rate^(step/steps_per_epoch)."""
    return optax.exponential_decay(init_value, transition_steps=steps_per_epoch, decay_rate=decay_rate)


def _cosine(init_value, steps_per_epoch, epochs: int = 10, final_fraction: float = 0.0):
    """Cosine decay from lr₀ to ``final_fraction``·lr₀ over ``epochs`` epochs."""
    return optax.cosine_decay_schedule(init_value, decay_steps=epochs * steps_per_epoch, alpha=final_fraction)


def _warmup(init_value, steps_per_epoch, warmup_epochs: float = 1, epochs: int | None = None):
    """Linear warm-up from 0 to lr₀ over ``warmup_epochs``; then constant, or cosine decay to 0
    at ``epochs`` when given (Goyal et al.'s gradual warm-up for large batches)."""
    warmup_steps = max(int(warmup_epochs * steps_per_epoch), 1)
    if epochs is None:
        return optax.linear_schedule(0.0, init_value, warmup_steps)
    return optax.warmup_cosine_decay_schedule(0.0, init_value, warmup_steps, max(epochs * steps_per_epoch, warmup_steps + 1))


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": _constant,
    "step": _step,
    "exponential": _exponential,
    "cosine": _cosine,
    "warmup": _warmup,
}


def schedule(name: str, init_value: float, *, steps_per_epoch: int = 1, **options) -> Schedule:
    """A learning-rate schedule by name, counted in epochs (converted to optimizer steps with
    ``steps_per_epoch``). Names: constant; step (``epochs=[…]``, ``factor``); exponential
    (``decay_rate`` per epoch); cosine (``epochs``, ``final_fraction``); warmup
    (``warmup_epochs``, optional ``epochs`` for a cosine tail). Annealing when validation stops
    improving is :class:`jaxnets.monitors.ReduceOnPlateau`, applied by ``fit`` between epochs.
    """
    if name not in SCHEDULES:
        raise unknown("schedule", name, sorted(SCHEDULES))
    try:
        return SCHEDULES[name](init_value, steps_per_epoch, **options)
    except TypeError as e:
        raise TypeError(f"schedule {name!r}: {e}") from None
