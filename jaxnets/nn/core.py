"""The layer protocol and the core layers: Dense, Activation, Flatten, Lambda, Sequential.

A layer is a frozen dataclass of hyper-parameters (hashable, so it is static under ``jit``)
with three pure methods:

* ``init(key, x) -> (params, state)`` — ``x`` is a batch, a ``jax.ShapeDtypeStruct`` or a
  shape tuple; only its shape and dtype are used, nothing is run.
* ``apply(params, state, x, *, key=None, train=False) -> (y, state)``.
* ``output_shape(input_shape) -> shape`` — the shape ``apply`` will return, computed
  from the input shape alone.

``params`` (trained) and ``state`` (carried, not trained) are nested dicts of arrays
keyed by readable names, e.g. ``params["dense1"]["w"]``. Layers take a leading batch axis.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable, Iterable, Sequence, Union

import jax
import jax.numpy as jnp

from jaxnets.activations import get_activation
from jaxnets.initializers import get_initializer
from jaxnets.nn._util import broadcast_last, check_rank

Array = jax.Array
Params = dict
State = dict
Shape = tuple[int, ...]
InputLike = Union[Array, jax.ShapeDtypeStruct, Sequence[int]]


class LayerError(ValueError):
    """Bad input to a layer. The message names the layer's path (``block1/dense2``), its type,
    what was expected and what was given."""

    def __init__(self, path: Sequence[str], layer_type: str, detail: str):
        self.path, self.layer_type, self.detail = tuple(path), layer_type, detail
        where = "/".join(self.path) or "<top>"
        super().__init__(f"layer {where!r} ({layer_type}): {detail}")

    def within(self, name: str) -> "LayerError":
        """The same error with ``name`` prepended to the layer path."""
        return LayerError((name, *self.path), self.layer_type, self.detail)


def as_shape_dtype(x: InputLike) -> jax.ShapeDtypeStruct:
    """A ShapeDtypeStruct for a batch, a ShapeDtypeStruct, or a shape tuple (float32)."""
    if isinstance(x, (tuple, list)):
        return jax.ShapeDtypeStruct(tuple(int(d) for d in x), jnp.float32)
    return jax.ShapeDtypeStruct(tuple(x.shape), x.dtype)


def param_dtype(x: jax.ShapeDtypeStruct):
    """Parameters take the input's floating dtype (float64 inputs give float64 params)."""
    return x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32


class Layer:
    """Base class: a stateless, parameter-free layer unless a subclass says otherwise."""

    def init(self, key: Array, x: InputLike) -> tuple[Params, State]:
        """Creates ``(params, state)`` for inputs shaped like ``x``: none for a parameter-free layer,
        whose ``apply`` is traced on the shape alone so that a bad input fails here as it would there."""
        del key
        spec = as_shape_dtype(x)
        jax.eval_shape(lambda v: self.apply({}, {}, v), spec)
        return {}, {}

    def apply(self, params: Params, state: State, x: Array, *, key: Array | None = None,
              train: bool = False) -> tuple[Array, State]:
        raise NotImplementedError

    def output_shape(self, input_shape: Shape) -> Shape:
        """Output shape for ``input_shape``, by default traced with ``jax.eval_shape``."""
        spec = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
        params, state = jax.eval_shape(lambda: self.init(jax.random.PRNGKey(0), spec))
        out = jax.eval_shape(lambda p, s, x: self.apply(p, s, x)[0], params, state, spec)
        return tuple(out.shape)

    @property
    def default_name(self) -> str:
        """Stem of the name a container gives this layer (``dense`` → ``dense1``)."""
        return type(self).__name__.lower()

    def error(self, detail: str) -> LayerError:
        return LayerError((), type(self).__name__, detail)


@dataclasses.dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer y = x W + b.

    x: (..., in_features) → y: (..., features). params: ``w`` (in_features, features),
    ``b`` (features,). ``in_features`` is optional; when given, init checks it.
    """

    features: int
    use_bias: bool = True
    w_init: str | Callable = "glorot_uniform"
    b_init: str | Callable = "zeros"
    in_features: int | None = None

    def __post_init__(self):
        if not isinstance(self.features, int) or self.features <= 0:
            raise ValueError(f"Dense: features must be a positive int, got {self.features!r}")
        get_initializer(self.w_init)
        get_initializer(self.b_init)

    def _check(self, shape: Shape, in_features: int | None) -> None:
        check_rank(self, shape, 1, f"(..., {in_features or 'in_features'})")
        if in_features is not None and shape[-1] != in_features:
            raise self.error(f"expected input of shape (..., {in_features}), got {tuple(shape)}")

    def init(self, key, x):
        spec = as_shape_dtype(x)
        self._check(spec.shape, self.in_features)
        dtype = param_dtype(spec)
        w_key, b_key = jax.random.split(key)
        params = {"w": get_initializer(self.w_init)(w_key, (spec.shape[-1], self.features), dtype)}
        if self.use_bias:
            params["b"] = get_initializer(self.b_init)(b_key, (self.features,), dtype)
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        self._check(x.shape, params["w"].shape[0])
        y = x @ params["w"]
        if self.use_bias:
            y = y + broadcast_last(params["b"], y.ndim)
        return y, state

    def output_shape(self, input_shape):
        self._check(input_shape, self.in_features)
        return (*input_shape[:-1], self.features)


@dataclasses.dataclass(frozen=True, init=False)
class Activation(Layer):
    """An elementwise activation by name: ``Activation("relu")``, ``Activation("elu", alpha=0.5)``.

    x: (...) → y: same shape. ``"prelu"`` learns one slope per feature (last axis), held
    in ``params["slope"]`` with shape (features,), initialised to ``slope_init`` (0.25).
    """

    name: str
    options: tuple[tuple[str, Any], ...]

    def __init__(self, name: str, **options: Any):
        fn = get_activation(name)
        accepted = [p for p in list(inspect.signature(fn).parameters)[1:] if p != "slope"]
        if name == "prelu":
            accepted.append("slope_init")
        for option in options:
            if option not in accepted:
                raise TypeError(
                    f"Activation({name!r}) got unknown option {option!r}; "
                    f"accepted options: {', '.join(accepted) or 'none'}"
                )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", tuple(sorted(options.items())))

    @property
    def default_name(self) -> str:
        return self.name

    def init(self, key, x):
        if self.name != "prelu":
            return {}, {}
        spec = as_shape_dtype(x)
        check_rank(self, spec.shape, 1, "(..., features)")
        slope = dict(self.options).get("slope_init", 0.25)
        return {"slope": jnp.full((spec.shape[-1],), slope, param_dtype(spec))}, {}

    def apply(self, params, state, x, *, key=None, train=False):
        fn = get_activation(self.name)
        if self.name == "prelu":
            if x.shape[-1:] != params["slope"].shape:
                raise self.error(
                    f"expected input of shape (..., {params['slope'].shape[0]}), got {tuple(x.shape)}"
                )
            return fn(x, broadcast_last(params["slope"], x.ndim)), state
        return fn(x, **dict(self.options)), state

    def output_shape(self, input_shape):
        return tuple(input_shape)


@dataclasses.dataclass(frozen=True)
class Flatten(Layer):
    """Flattens all axes after the batch axis: (batch, d1, d2, ...) → (batch, d1·d2·…)."""

    def apply(self, params, state, x, *, key=None, train=False):
        check_rank(self, x.shape, 1, "(batch, ...)")
        return x.reshape(x.shape[0], -1), state

    def output_shape(self, input_shape):
        check_rank(self, input_shape, 1, "(batch, ...)")
        return (input_shape[0], math.prod(input_shape[1:]))


@dataclasses.dataclass(frozen=True)
class Lambda(Layer):
    """Wraps a parameter-free function ``fn(x) -> y`` (it must be hashable: a def, not a closure
    over arrays). The output shape is traced with ``jax.eval_shape``."""

    fn: Callable[[Array], Array]
    name: str = "lambda"

    @property
    def default_name(self) -> str:
        return self.name

    def apply(self, params, state, x, *, key=None, train=False):
        return self.fn(x), state


def iter_layers(layer: Layer):
    """``layer`` and every layer inside it, depth first: the fields of a layer that hold layers
    (``Sequential``'s ``(name, layer)`` pairs, a residual block's body and shortcut, …)."""
    yield layer
    if not dataclasses.is_dataclass(layer):
        return
    for field in dataclasses.fields(layer):
        value = getattr(layer, field.name)
        items = value if isinstance(value, (tuple, list)) else (value,)
        for item in items:
            inner = item[1] if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Layer) else item
            if isinstance(inner, Layer):
                yield from iter_layers(inner)


LayerSpec = Union[Layer, tuple[str, Layer]]


def name_layers(layers: Iterable[LayerSpec] | dict[str, Layer]) -> tuple[tuple[str, Layer], ...]:
    """``(name, layer)`` pairs: given names kept, others its type's stem and a counter; duplicates refused."""
    items = list(layers.items()) if isinstance(layers, dict) else list(layers)
    named, counts = [], {}
    for item in items:
        if isinstance(item, Layer):
            stem = item.default_name
            counts[stem] = counts.get(stem, 0) + 1
            item = (f"{stem}{counts[stem]}", item)
        name, layer = item
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential: {name!r} is {type(layer).__name__}, not a jaxnets Layer")
        named.append((name, layer))
    names = [n for n, _ in named]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Sequential: duplicate layer names {duplicates}")
    return tuple(named)


@dataclasses.dataclass(frozen=True, init=False)
class Sequential(Layer):
    """Layers applied in order. Each gets a name (given, or its type + a counter: ``dense1``,
    ``relu1``, ``dense2``, …) that keys its entry in ``params`` and ``state``; layers without
    parameters or state have no entry.

    ``Sequential([Dense(256), Activation("relu"), Dense(10)])`` or
    ``Sequential([("hidden", Dense(256)), ("relu", Activation("relu"))])`` or a dict.
    """

    layers: tuple[tuple[str, Layer], ...]
    name: str

    def __init__(self, layers: Iterable[LayerSpec] | dict[str, Layer], name: str = "sequential"):
        object.__setattr__(self, "layers", name_layers(layers))
        object.__setattr__(self, "name", name)

    @property
    def default_name(self) -> str:
        return self.name

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, name: str) -> Layer:
        return dict(self.layers)[name]

    def init(self, key, x):
        spec = as_shape_dtype(x)
        params, state = {}, {}
        keys = jax.random.split(key, max(len(self.layers), 1))
        for layer_key, (name, layer) in zip(keys, self.layers):
            try:
                p, s = layer.init(layer_key, spec)
                spec = jax.ShapeDtypeStruct(layer.output_shape(spec.shape), spec.dtype)
            except LayerError as e:
                raise e.within(name) from None
            if p:
                params[name] = p
            if s:
                state[name] = s
        return params, state

    def apply(self, params, state, x, *, key=None, train=False):
        new_state = dict(state)
        keys = jax.random.split(key, len(self.layers)) if key is not None else [None] * len(self.layers)
        for layer_key, (name, layer) in zip(keys, self.layers):
            try:
                x, s = layer.apply(params.get(name, {}), state.get(name, {}), x, key=layer_key, train=train)
            except LayerError as e:
                raise e.within(name) from None
            if s:
                new_state[name] = s
        return x, new_state

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for name, layer in self.layers:
            try:
                shape = tuple(layer.output_shape(shape))
            except LayerError as e:
                raise e.within(name) from None
        return shape
