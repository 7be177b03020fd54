"""Inspecting models: the summary table of the lecture notes, per-layer gradient norms and
activation statistics.

``summary(model, input_shape)`` gives one row per layer with

* **output shape** (per example, without the batch axis) and **units** (its number of values);
* **connections** — input-to-unit links, each counted once: the sum over the layer's units of
  their fan-in from *real* inputs (links to zero padding are not connections; biases are not
  connections). Conv: each unit sees kh·kw·in_channels inputs (fewer at a padded border);
  pooling: each unit sees its window in one channel; dense: every input;
* **weights** and **biases** — distinct trainable values (a convolution shares its kernel over all
  positions, a locally connected layer does not): leaves named ``b``/``bias``/``offset`` are
  biases, other params weights;
* **FLOPs** per example: 2 per connection for weighted layers (multiply + add) plus one per unit
  for a bias add; 1 per connection for pooling; 1 per unit for activations, 2 for dropout and
  batch norm (inference), 4·units for layer norm; attention adds 4·tokens²·dim for its two
  products with the attention matrix;
* **receptive field** — the input pixels (per spatial axis) one unit of the layer depends on:
  a sliding window of kernel k, dilation d and stride s grows the field by (k − 1)·d times the
  spacing of its input's units, and multiplies that spacing by s; a dense layer after a flatten,
  global pooling and attention see the whole input ("all").

The rules live in ``RULES``, keyed by layer class (subclasses use their parent's rule).
Parameter-free layers that keep the number of units (activations, dropout, flatten) are folded
into the row before them (``Conv2D+tanh``) unless ``fold=False``. Nothing is computed on arrays:
shapes come from ``jax.eval_shape``. ``python -m jaxnets.inspect lenet5-1998`` prints a table.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import nn
from jaxnets._util import is_bias, path_str
from jaxnets.nn.core import Layer

class SummaryRow(NamedTuple):
    """One layer: output_shape excludes the batch axis; counts are per example (None = unknown,
    e.g. the output shape of a submodule of an NNX or Equinox model)."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    units: int | None
    connections: int | None
    weights: int
    biases: int
    flops: int | None
    receptive_field: tuple[int, ...] | None = None  # input pixels per spatial axis; None: the whole input


class Summary(list):
    """A list of :class:`SummaryRow` that prints as a table; ``summary["C1"]`` finds a row by name."""

    def __getitem__(self, item):
        if isinstance(item, str):
            for row in self:
                if row.name == item:
                    return row
            raise KeyError(f"no layer named {item!r}; layers: {', '.join(r.name for r in self)}")
        return super().__getitem__(item)

    @property
    def total(self) -> SummaryRow:
        known = lambda f: None if any(getattr(r, f) is None for r in self) else sum(getattr(r, f) for r in self)
        last = self[-1].output_shape if len(self) else ()
        return SummaryRow("total", "", last, known("units"), known("connections"),
                          sum(r.weights for r in self), sum(r.biases for r in self), known("flops"),
                          self[-1].receptive_field if len(self) else None)

    def table(self) -> str:
        """The rows and a total as a Markdown-compatible text table."""
        head = ("layer", "type", "output shape", "units", "connections", "weights", "biases", "FLOPs",
                "receptive field")
        fmt = lambda v: "-" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))
        shape = lambda s: "-" if s is None else "×".join(map(str, s)) if s else "scalar"
        field = lambda f: "all" if f is None else "×".join(map(str, f))
        body = [(r.name, r.type, shape(r.output_shape), *map(fmt, r[3:8]), field(r.receptive_field))
                for r in [*self, self.total]]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        line = lambda vals: "| " + " | ".join(v.rjust(w) if i >= 3 else v.ljust(w)
                                              for i, (v, w) in enumerate(zip(vals, widths))) + " |"
        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(head), rule, *map(line, body[:-1]), rule, line(body[-1])])

    def __str__(self) -> str:
        return self.table()


# ------------------------------------------------------------------------------ counting rules


def _axis_links(n: int, k: int, s: int, d: int, pads: tuple[int, int]) -> tuple[int, int]:
    """(output size, Σ over outputs of kernel taps that land on real input) along one axis."""
    lo, hi = pads
    out = (n + lo + hi - (k - 1) * d - 1) // s + 1
    starts = np.arange(out)[:, None] * s - lo + np.arange(k)[None, :] * d  # (out, k) input index of each tap
    return out, int(np.sum((starts >= 0) & (starts < n)))


def _window_links(layer, in_shape, window, dilation=None) -> int:
    """Σ over output positions of the window taps on real input (one channel)."""
    dilation = dilation or (1,) * len(window)
    pads = layer.pads((1, *in_shape))
    return math.prod(_axis_links(n, k, s, d, p)[1]
                     for n, k, s, d, p in zip(in_shape[:-1], window, layer.strides, dilation, pads))


def _conv(layer, in_shape, out_shape, params):
    links = _window_links(layer, in_shape, layer.kernel_size, layer.dilation) * in_shape[-1] * layer.features
    return links, 2 * links + (math.prod(out_shape) if layer.use_bias else 0)


def _pool(layer, in_shape, out_shape, params):
    links = _window_links(layer, in_shape, layer.window) * in_shape[-1]
    return links, links


def _dense(layer, in_shape, out_shape, params):
    links = math.prod(out_shape) * in_shape[-1]
    return links, 2 * links + (math.prod(out_shape) if layer.use_bias else 0)


def _global_pool(layer, in_shape, out_shape, params):
    links = math.prod(in_shape)
    return links, links


def _elementwise(cost: int) -> Callable:
    return lambda layer, in_shape, out_shape, params: (math.prod(out_shape), cost * math.prod(out_shape))


def _layer_norm(layer, in_shape, out_shape, params):
    units = math.prod(out_shape)
    return units * in_shape[-1], 4 * units


def _attention(layer, in_shape, out_shape, params):
    """Query/key/value/out projections once per token (like dense layers) plus the two
    token×token products of attention (4·tokens²·qkv FLOPs, no weights)."""
    tokens = math.prod(out_shape[:-1])
    links = sum(tokens * int(np.prod(p["w"].shape)) for p in params.values())
    biases = sum(tokens * int(np.prod(p["b"].shape)) for p in params.values() if "b" in p)
    return links, 2 * links + biases + 4 * tokens * tokens * params["query"]["w"].shape[-1]


def _patch_embedding(layer, in_shape, out_shape, params):
    """Each patch token is a dense unit over its ph·pw·channels pixels; FLOPs add the bias and
    the position embedding (the class token is copied)."""
    patches, dim = out_shape[0] - 1, out_shape[-1]
    links = patches * dim * math.prod(params["w"].shape[:-1])
    return links, 2 * links + patches * dim + math.prod(out_shape)


def _optional(name: str) -> type | None:
    return getattr(nn, name, None)


RULES: dict[type, Callable] = {
    cls: rule for cls, rule in [
        (nn.Dense, _dense), (_optional("Conv1D"), _conv), (_optional("Conv2D"), _conv),
        (_optional("LocallyConnected2D"), _conv),
        (_optional("MaxPool1D"), _pool), (_optional("MaxPool2D"), _pool),
        (_optional("AvgPool1D"), _pool), (_optional("AvgPool2D"), _pool),
        (_optional("GlobalAvgPool"), _global_pool),
        (nn.Activation, _elementwise(1)), (_optional("Dropout"), _elementwise(2)),
        (nn.Flatten, _elementwise(0)), (nn.Lambda, _elementwise(1)),
        (_optional("BatchNorm"), _elementwise(2)), (_optional("LayerNorm"), _layer_norm),
        (_optional("MultiHeadAttention"), _attention), (_optional("PatchEmbedding"), _patch_embedding),
    ] if cls is not None
}
FOLDED = tuple(c for c in (nn.Activation, nn.Flatten, _optional("Dropout")) if c is not None)


def _rule(layer) -> Callable | None:
    for cls in type(layer).__mro__:
        if cls in RULES:
            return RULES[cls]
    return None


def count_params(params) -> tuple[int, int]:
    """(weights, biases): the number of trainable values, biases (leaves named b/bias/offset, the
    rule of :func:`jaxnets._util.is_bias`, which the penalties use too) apart."""
    weights = biases = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if is_bias(path):
            biases += int(np.prod(leaf.shape))
        else:
            weights += int(np.prod(leaf.shape))
    return weights, biases


def _children(layer) -> list[tuple[str, Layer]] | None:
    """Sub-layers of a container, keyed as in its params (Sequential-like containers only)."""
    if isinstance(layer, nn.Sequential):
        return list(layer.layers)
    sub = getattr(layer, "sublayers", None)
    return list(sub()) if callable(sub) else None


# A receptive field: per spatial axis (size in input pixels, spacing of the units in input pixels);
# None once a unit sees the whole input.
Field = tuple[tuple[int, int], ...] | None


def _next_field(layer, field: Field, in_shape: tuple) -> Field:
    """The receptive field of ``layer``'s units given that of its inputs' (in_shape with batch axis)."""
    if field is None:
        return None
    if isinstance(layer, (nn.Flatten, nn.GlobalAvgPool, nn.MultiHeadAttention)):
        return None
    if isinstance(layer, nn.Dense):
        return None if len(in_shape) == 2 else field
    if isinstance(layer, nn.PatchEmbedding):
        return tuple((p, p) for p in layer.patch_size)
    window = getattr(layer, "kernel_size", None) or getattr(layer, "window", None)
    if window is not None and len(window) == len(field):
        dilation = getattr(layer, "dilation", (1,) * len(window))
        return tuple((size + (k - 1) * d * jump, jump * s)
                     for (size, jump), k, d, s in zip(field, window, dilation, layer.strides))
    return field


def _sizes(field: Field) -> tuple[int, ...] | None:
    return None if field is None else tuple(size for size, _ in field)


def _residual_rows(layer, name: str, in_shape: tuple, params, fold: bool, field: Field):
    """A residual block: its body's rows, its shortcut's (a projection), and the sum (+ activation),
    whose units each have two inputs (body and shortcut)."""
    rows, body_field = _rows(layer.body, f"{name}/body", in_shape, params.get("body", {}), fold, field)
    shortcut = layer.shortcut_layer(in_shape)
    if shortcut is not None:
        rows += _rows(shortcut, f"{name}/shortcut", in_shape, params.get("shortcut", {}), fold, field)[0]
    out = tuple(layer.output_shape(in_shape))[1:]
    units = math.prod(out)
    label = "add" + (f"+{layer.activation}" if layer.activation else "")
    return rows + [SummaryRow(f"{name}/add", label, out, units, 2 * units, 0, 0, units * (2 if layer.activation else 1),
                              _sizes(body_field))], body_field


def _concatenate_rows(layer, name: str, in_shape: tuple, params, fold: bool, field: Field):
    """Branches over the same input: each branch's rows, then the concatenation (no arithmetic)."""
    rows, fields = [], []
    for branch_name, branch in layer.branches:
        branch_rows, branch_field = _rows(branch, f"{name}/{branch_name}" if name else branch_name, in_shape,
                                          params.get(branch_name, {}), fold, field)
        rows += branch_rows
        fields.append(branch_field)
    widest = None if any(f is None for f in fields) else max(fields, key=lambda f: math.prod(_sizes(f)))
    out = tuple(layer.output_shape(in_shape))[1:]
    units = math.prod(out)  # each a copy of one branch output: one connection, no arithmetic
    return rows + [SummaryRow(f"{name}/concat" if name else "concat", "concatenate", out, units, units, 0, 0, 0,
                              _sizes(widest))], widest


def _rows(layer, name: str, in_shape: tuple, params, fold: bool, field: Field):
    """``(rows, receptive field of the layer's outputs)`` for ``layer`` on inputs of ``in_shape``."""
    if isinstance(layer, nn.ResidualBlock):
        return _residual_rows(layer, name, in_shape, params, fold, field)
    if isinstance(layer, nn.Concatenate):
        return _concatenate_rows(layer, name, in_shape, params, fold, field)
    children = _children(layer)
    if children is not None and _rule(layer) is None:
        rows, shape = [], in_shape
        for child_name, child in children:
            path = f"{name}/{child_name}" if name else child_name
            child_rows, field = _rows(child, path, shape, params.get(child_name, {}), fold, field)
            rows += child_rows
            shape = tuple(child.output_shape(shape))
        return rows, field
    out_shape = tuple(layer.output_shape(in_shape))
    rule = _rule(layer)
    connections, flops = rule(layer, in_shape[1:], out_shape[1:], params) if rule else (None, None)
    weights, biases = count_params(params)
    field = _next_field(layer, field, in_shape)
    return [SummaryRow(name or type(layer).__name__, type(layer).__name__, out_shape[1:], math.prod(out_shape[1:]),
                       connections, weights, biases, flops, _sizes(field))], field


def _fold(rows: list[SummaryRow], layers_by_name: dict[str, Any]) -> list[SummaryRow]:
    folded: list[SummaryRow] = []
    for row in rows:
        layer = layers_by_name.get(row.name)
        if folded and isinstance(layer, FOLDED) and row.weights == 0 and row.units == folded[-1].units:
            prev = folded[-1]
            label = layer.name if isinstance(layer, nn.Activation) else type(layer).__name__.lower()
            flops = None if prev.flops is None or row.flops is None else prev.flops + row.flops
            folded[-1] = prev._replace(type=f"{prev.type}+{label}", output_shape=row.output_shape, flops=flops)
        else:
            folded.append(row)
    return folded


def _all_layers(layer, name: str = "") -> dict[str, Any]:
    found = {name or type(layer).__name__: layer}
    if isinstance(layer, nn.ResidualBlock):
        found.update(_all_layers(layer.body, f"{name}/body"))
    if isinstance(layer, nn.Concatenate):
        for branch_name, branch in layer.branches:
            found.update(_all_layers(branch, f"{name}/{branch_name}" if name else branch_name))
    for child_name, child in _children(layer) or []:
        found.update(_all_layers(child, f"{name}/{child_name}" if name else child_name))
    return found


def summary(model, input_shape: Sequence[int], *, fold: bool = True, print_table: bool = True) -> Summary:
    """One :class:`SummaryRow` per layer for inputs of ``input_shape`` (one example, no batch axis,
    e.g. ``(32, 32, 1)``); prints the table unless ``print_table=False``. Containers
    (``Sequential``, residual blocks) are expanded into their layers with paths ``block1/conv1``.
    A model that is not made of jaxnets layers may provide ``summary_rows(input_shape)``
    (the Flax adapter does). Params shapes come from ``jax.eval_shape`` (nothing is computed)."""
    shape = (1, *tuple(int(d) for d in input_shape))
    if callable(getattr(model, "summary_rows", None)):
        result = Summary(model.summary_rows(tuple(input_shape)))
    else:
        params, _ = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), shape))
        field = tuple((1, 1) for _ in shape[1:-1]) if len(shape) > 2 else None
        rows, _ = _rows(model, "", shape, params, fold, field)
        result = Summary(_fold(rows, _all_layers(model)) if fold else rows)
    if print_table:
        print(result.table())
    return result


# ------------------------------------------------------------------- gradients and activations


def gradient_norms(grads) -> dict[str, float]:
    """The L2 norm of each leaf of a gradient tree, keyed by its path (``conv1/w``)."""
    return {path_str(p): float(jnp.linalg.norm(jnp.ravel(g))) for p, g in jax.tree_util.tree_leaves_with_path(grads)}


def activation_statistics(model, params, state, x, *, train: bool = False, key=None) -> dict[str, dict[str, float]]:
    """Per top-level layer of a Sequential: mean, std, fraction of exact zeros (dead ReLUs) and
    fraction saturated (|y| > 0.99 of the max for tanh/sigmoid-range outputs) of its output on x:
    (batch, …). Returns ``{layer name: {"mean", "std", "zeros", "shape"}}``."""
    stats, keys = {}, (jax.random.split(key, len(model.layers)) if key is not None else [None] * len(model.layers))
    for layer_key, (name, layer) in zip(keys, model.layers):
        x, _ = layer.apply(params.get(name, {}), state.get(name, {}), x, key=layer_key, train=train)
        stats[name] = {"mean": float(jnp.mean(x)), "std": float(jnp.std(x)),
                       "zeros": float(jnp.mean(x == 0)), "shape": tuple(x.shape[1:])}
    return stats


# ------------------------------------------------------------------------------ command line


def _registry() -> dict[str, tuple[Callable[[], Any], tuple[int, ...]]]:
    from jaxnets import models

    reg = {
        "lenet5-1998": (lambda: models.lenet5("1998"), (32, 32, 1)),
        "lenet5": (lambda: models.lenet5("modern"), (28, 28, 1)),
        "alexnet": (models.alexnet, (227, 227, 3)),
        "vgg16": (lambda: models.vgg(16), (224, 224, 3)),
        "vgg11": (lambda: models.vgg(11), (224, 224, 3)),
        "mlp": (lambda: models.mlp([256, 256, 10]), (28, 28, 1)),
    }
    if hasattr(models, "resnet"):
        reg["resnet"] = (models.resnet, (28, 28, 1))
    if hasattr(models, "vit"):
        reg["vit"] = (models.vit, (28, 28, 1))
    return reg


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jaxnets.inspect MODEL [--input H,W,C] [--no-fold]``: prints the summary table."""
    registry = _registry()
    parser = argparse.ArgumentParser(prog="python -m jaxnets.inspect", description="Print a model's summary table.")
    parser.add_argument("model", help=f"one of: {', '.join(registry)}")
    parser.add_argument("--input", default=None, help="input shape of one example, e.g. 32,32,1")
    parser.add_argument("--no-fold", action="store_true", help="one row for every layer, activations included")
    args = parser.parse_args(argv)
    if args.model not in registry:
        parser.error(f"unknown model {args.model!r}; known models: {', '.join(registry)}")
    build, shape = registry[args.model]
    if args.input:
        shape = tuple(int(v) for v in args.input.split(","))
    print(f"{args.model}, input {'×'.join(map(str, shape))}")
    summary(build(), shape, fold=not args.no_fold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
