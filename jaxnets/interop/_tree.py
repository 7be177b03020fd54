"""Conversions the adapters share: a library's parameter tree ↔ jaxnets' nested dicts keyed by
readable names, and summary rows built from those dicts."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jaxnets._util import key_name


def nested(items) -> dict:
    """``[(("l1", "weight"), w), …]`` → ``{"l1": {"weight": w}, …}``."""
    root: dict = {}
    for path, value in items:
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return root


def lookup(tree: dict, path: tuple[str, ...], owner: str) -> Any:
    """The value at ``path`` of nested dicts; a KeyError names the missing path."""
    node = tree
    for i, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{owner}: params/state lack {'/'.join(path[:i + 1])!r} (expected by the module)")
        node = node[part]
    return node


class LeafLayout:
    """Where the array leaves of a library's pytree go in nested dicts: their readable paths (from
    the key path, e.g. ``.layers[0].weight`` → ``("layers", "0", "weight")``) and the treedef."""

    def __init__(self, tree: Any, names: Callable[[tuple], tuple[str, ...]] | None = None):
        leaves, self.treedef = jax.tree_util.tree_flatten_with_path(tree)
        to_names = names or (lambda path: tuple(key_name(k) for k in path))
        self.paths = [to_names(path) for path, _ in leaves]
        if len(set(self.paths)) != len(self.paths):
            raise ValueError(f"two leaves share one name among {self.paths}")

    def to_dict(self, tree: Any) -> dict:
        return nested(zip(self.paths, jax.tree_util.tree_leaves(tree)))

    def from_dict(self, values: dict, owner: str) -> Any:
        return self.treedef.unflatten([lookup(values, path, owner) for path in self.paths])


def param_rows(params: dict, type_names: dict[str, str], output_shapes: dict[str, tuple] | None = None) -> list:
    """One :class:`jaxnets.inspect.SummaryRow` per top-level entry of ``params`` (a submodule): its
    weights and biases, its type, and its output shape per example where known."""
    from jaxnets.inspect import SummaryRow, count_params

    rows = []
    for name, sub in params.items():
        weights, biases = count_params(sub)
        shape = (output_shapes or {}).get(name)
        rows.append(SummaryRow(name, type_names.get(name, "?"), shape, math.prod(shape) if shape else None, None,
                               weights, biases, None))
    return rows


class Adapter:
    """What every adapter derives from ``init``/``apply``: the output shape, traced on shapes alone,
    and summary rows (one per top-level entry of params; a subclass sets ``type_names``)."""

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        spec = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
        params, state = jax.eval_shape(lambda: self.init(jax.random.key(0), spec))
        return tuple(jax.eval_shape(lambda p, s, v: self.apply(p, s, v)[0], params, state, spec).shape)

    def type_names(self) -> dict[str, str]:
        return {}

    def summary_rows(self, input_shape: Sequence[int]) -> list:
        """Rows for :func:`jaxnets.inspect.summary`: one per submodule holding parameters."""
        spec = jax.ShapeDtypeStruct((1, *tuple(input_shape)), jnp.float32)
        params, _ = jax.eval_shape(lambda: self.init(jax.random.key(0), spec))
        return param_rows(params, self.type_names())
