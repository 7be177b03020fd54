"""The residual (skip-connection) block of ResNet: output = activation(body(x) + shortcut(x))."""

from __future__ import annotations

import dataclasses

import jax

from jaxnets.activations import get_activation
from jaxnets.nn.conv import Conv1D, Conv2D
from jaxnets.nn.core import Dense, Layer, LayerError, Shape, as_shape_dtype

SHORTCUTS = ("auto", "identity", "projection")


@dataclasses.dataclass(frozen=True)
class ResidualBlock(Layer):
    """``activation(body(x) + shortcut(x))``.

    x: (batch, ..., channels) → y: ``body``'s output shape.

    ``shortcut`` is ``"identity"`` (x itself; the body must keep the shape), ``"projection"``
    (a learned 1×1 convolution with the stride and channel count that map x onto the body's
    output shape: ``Conv2D`` for images, ``Conv1D`` for sequences, ``Dense`` for (batch, features)),
    ``"auto"`` (identity when the body keeps the shape, else projection) or any ``Layer`` (e.g.
    ``Sequential([Conv2D(64, 1, strides=2), BatchNorm()])``). ``activation`` is a name from
    ``jaxnets.activations`` or ``None`` (no activation after the sum, as in transformer blocks).

    params/state: ``body`` (the body's, when it has any) and ``shortcut`` (the projection's).
    """

    body: Layer
    shortcut: str | Layer = "auto"
    activation: str | None = "relu"

    def __post_init__(self):
        if not isinstance(self.body, Layer):
            raise TypeError(f"ResidualBlock: body must be a jaxnets Layer, got {type(self.body).__name__}")
        if not isinstance(self.shortcut, Layer) and self.shortcut not in SHORTCUTS:
            raise ValueError(f"ResidualBlock: shortcut must be a Layer or one of {SHORTCUTS}, got {self.shortcut!r}")
        if self.activation == "prelu":
            raise ValueError("ResidualBlock: 'prelu' has parameters; put Activation('prelu') after the block instead")
        if self.activation is not None:
            get_activation(self.activation)

    @property
    def default_name(self) -> str:
        return "residual"

    def _body_shape(self, input_shape: Shape) -> Shape:
        try:
            return tuple(self.body.output_shape(tuple(input_shape)))
        except LayerError as e:
            raise e.within("body") from None

    def shortcut_layer(self, input_shape: Shape) -> Layer | None:
        """The shortcut used for inputs of ``input_shape``: ``None`` for the identity, else a Layer."""
        input_shape = tuple(input_shape)
        out = self._body_shape(input_shape)
        if isinstance(self.shortcut, Layer):
            return self.shortcut
        if self.shortcut == "identity" or (self.shortcut == "auto" and out == input_shape):
            if out != input_shape:
                raise self.error(
                    f"identity shortcut needs the body to keep the shape, but it maps {input_shape} to {out}; "
                    "use shortcut='projection' (or 'auto')"
                )
            return None
        return self._projection(input_shape, out)

    def _projection(self, in_shape: Shape, out: Shape) -> Layer:
        cannot = f"no 1×1 projection with a stride maps {in_shape} onto the body's output {out}"
        if len(out) != len(in_shape) or out[0] != in_shape[0] or len(in_shape) not in (2, 3, 4):
            raise self.error(f"{cannot}: it needs the same rank (2, 3 or 4) and batch size; pass a shortcut Layer")
        if len(in_shape) == 2:
            return Dense(out[-1])
        strides = tuple(-(-n // m) for n, m in zip(in_shape[1:-1], out[1:-1]))  # ceil(n / m)
        if any(-(-n // s) != m for n, s, m in zip(in_shape[1:-1], strides, out[1:-1])):
            raise self.error(f"{cannot} (spatial sizes must be ceil(size / stride)); pass a shortcut Layer")
        return (Conv2D if len(in_shape) == 4 else Conv1D)(out[-1], 1, strides=strides)

    def _check_sum(self, shortcut_shape: Shape, body_shape: Shape) -> None:
        if tuple(shortcut_shape) != tuple(body_shape):
            raise self.error(f"the shortcut gives shape {tuple(shortcut_shape)} but the body {tuple(body_shape)}; "
                             "they must agree to be added")

    def init(self, key, x):
        spec = as_shape_dtype(x)
        body_key, shortcut_key = jax.random.split(key)
        try:
            body_params, body_state = self.body.init(body_key, spec)
        except LayerError as e:
            raise e.within("body") from None
        params, state = ({"body": body_params} if body_params else {}), ({"body": body_state} if body_state else {})
        shortcut = self.shortcut_layer(spec.shape)
        if shortcut is not None:
            try:
                p, s = shortcut.init(shortcut_key, spec)
                shortcut_shape = shortcut.output_shape(spec.shape)
            except LayerError as e:
                raise e.within("shortcut") from None
            self._check_sum(shortcut_shape, self._body_shape(spec.shape))
            if p:
                params["shortcut"] = p
            if s:
                state["shortcut"] = s
        return params, state

    def apply(self, params, state, x, *, key=None, train=False):
        body_key, shortcut_key = jax.random.split(key) if key is not None else (None, None)
        new_state = dict(state)
        try:
            y, s = self.body.apply(params.get("body", {}), state.get("body", {}), x, key=body_key, train=train)
        except LayerError as e:
            raise e.within("body") from None
        if s:
            new_state["body"] = s
        shortcut = self.shortcut_layer(x.shape)
        if shortcut is None:
            skip = x
        else:
            try:
                skip, s = shortcut.apply(params.get("shortcut", {}), state.get("shortcut", {}), x,
                                         key=shortcut_key, train=train)
            except LayerError as e:
                raise e.within("shortcut") from None
            if s:
                new_state["shortcut"] = s
        self._check_sum(skip.shape, y.shape)
        z = y + skip
        return (z if self.activation is None else get_activation(self.activation)(z)), new_state

    def output_shape(self, input_shape):
        out = self._body_shape(input_shape)
        shortcut = self.shortcut_layer(input_shape)
        if shortcut is not None:
            try:
                shortcut_shape = shortcut.output_shape(tuple(input_shape))
            except LayerError as e:
                raise e.within("shortcut") from None
            self._check_sum(shortcut_shape, out)
        return out
