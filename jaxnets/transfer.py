"""Transfer learning: freeze parameters by path or pattern, replace a model's head, fine-tune.

Paths are the ``/``-joined keys of the params tree (``conv1/w``, ``stage1_block1/body/conv1/w``).
A pattern is an ``fnmatch`` glob (``conv*``, ``*/w``, ``stage1_*``); a pattern that names a
subtree (``conv1``) freezes everything under it. Freezing goes through
``optax.multi_transform``: frozen leaves get ``optax.set_to_zero()`` (their updates are exactly
zero, so they stay bit-identical, and the optimizer keeps no moments for them), the others the
given optimizer. Batch-norm running statistics live in ``state`` and keep updating in training
mode; evaluate with ``train=False`` or keep the frozen part out of training mode to fix them.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Sequence

import jax
import optax

from jaxnets._util import path_str
from jaxnets.fit import FitResult, fit
from jaxnets.nn import Layer, Sequential


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p.rstrip("/") + "/*") for p in patterns)


def frozen_mask(params: Any, patterns: str | Sequence[str]) -> Any:
    """A tree like ``params`` with True where a leaf's path matches one of ``patterns``.
    Raises ValueError when a pattern matches nothing (a typo would otherwise freeze nothing)."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    paths = [path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    for pattern in patterns:
        if not any(_matches(path, [pattern]) for path in paths):
            raise ValueError(f"freeze pattern {pattern!r} matches no parameter; parameter paths: {', '.join(paths)}")
    return jax.tree_util.tree_map_with_path(lambda p, _: _matches(path_str(p), patterns), params)


def freeze(optimizer: optax.GradientTransformation, params: Any,
           patterns: str | Sequence[str]) -> optax.GradientTransformation:
    """``optimizer`` for the params not matching ``patterns``, zero updates for those that do:
    ``optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)``."""
    labels = jax.tree_util.tree_map(lambda frozen: "frozen" if frozen else "train", frozen_mask(params, patterns))
    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def replace_head(model: Sequential, params: dict, state: dict, head: Sequence[Layer] | Sequence[tuple[str, Layer]],
                 *, key: jax.Array, input_shape: Sequence[int], drop: int = 1) -> tuple[Sequential, dict, dict]:
    """A new model: ``model``'s layers without its last ``drop`` layers, followed by ``head``.

    Kept layers keep their params and state; the head's are initialised with ``key`` for inputs of
    ``input_shape`` (the full model input shape, batch axis included, e.g. ``(1, 28, 28, 1)``).
    Unnamed head layers are named ``head1, head2, …``. Returns ``(new_model, params, state)``.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"replace_head needs a Sequential model, got {type(model).__name__}")
    if not 0 <= drop <= len(model.layers):
        raise ValueError(f"replace_head: drop must be in [0, {len(model.layers)}], got {drop}")
    kept = list(model.layers[: len(model.layers) - drop])
    kept_names = {n for n, _ in kept}
    named_head = [item if isinstance(item, tuple) else (f"head{i}", item) for i, item in enumerate(head, start=1)]
    clash = sorted(kept_names & {n for n, _ in named_head})
    if clash:
        raise ValueError(f"replace_head: head layer names {clash} are already used by the kept layers")
    new_model = Sequential(kept + named_head, name=model.name)
    shape = tuple(input_shape)
    for _, layer in kept:
        shape = tuple(layer.output_shape(shape))
    head_params, head_state = Sequential(named_head).init(key, shape)
    new_params = {n: params[n] for n in kept_names if n in params} | head_params
    new_state = {n: state[n] for n in kept_names if n in state} | head_state
    return new_model, new_params, new_state


def fine_tune(model, params, state, train_data, *, frozen: str | Sequence[str],
              optimizer: optax.GradientTransformation, **fit_options) -> FitResult:
    """``jaxnets.fit`` with the params matching ``frozen`` held fixed (see :func:`freeze`); all
    other keyword arguments go to ``fit`` (``loss``, ``epochs``, ``batch_size``, ``key``, …)."""
    return fit(model, params, state, train_data, optimizer=freeze(optimizer, params, frozen), **fit_options)
