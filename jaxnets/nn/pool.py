"""Pooling: MaxPool1D/2D, AvgPool1D/2D and GlobalAvgPool.

Inputs are channels-last with a leading batch axis, (batch, width, channels) or
(batch, height, width, channels); pooling acts on each channel separately and has no
parameters. ``window`` and ``strides`` are an int or one int per spatial axis; ``strides``
defaults to ``window`` (non-overlapping windows, the lecture notes' subsampling). ``padding``
takes the same forms as in :mod:`jaxnets.nn.conv`; the output size per axis is
``(n + lo + hi - window) // stride + 1``. Max pooling pads with −∞; average pooling pads with
zeros and by default divides by the full window size (``count_include_pad=True``, as PyTorch and
Flax do); with ``count_include_pad=False`` it divides by the number of real input values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnets.nn import conv_impl
from jaxnets.nn._util import as_tuple, check_rank
from jaxnets.nn.conv import Padding, Windowed, normalize_padding
from jaxnets.nn.core import Layer


@dataclasses.dataclass(frozen=True)
class _Pool(Windowed):
    window: int | Sequence[int]
    strides: int | Sequence[int] | None = None
    padding: Padding = "VALID"
    impl: str = "auto"

    def __post_init__(self):
        name = type(self).__name__
        object.__setattr__(self, "window", as_tuple(self.window, self.ndim, "window", name))
        strides = self.window if self.strides is None else self.strides
        object.__setattr__(self, "strides", as_tuple(strides, self.ndim, "strides", name))
        object.__setattr__(self, "padding", normalize_padding(self.padding, self.ndim, name))
        conv_impl.check_impl(name, self.impl, conv_impl.POOL_IMPLS)

    def resolved_impl(self, input_shape, backend: str | None = None) -> str:
        """``"reshape"`` or ``"reduce_window"``: ``impl``, or for ``"auto"`` the reshape where it
        applies (non-overlapping, unpadded windows) on CPU, ``reduce_window`` otherwise. Asking for
        ``"reshape"`` where it does not apply is a LayerError."""
        reshapes = conv_impl.pool_reshapes(self.window, self.strides, self.pads(input_shape))
        if self.impl == "reshape" and not reshapes:
            raise self.error(f"impl='reshape' needs non-overlapping, unpadded windows (strides = window "
                             f"{self.window}, no padding); got strides {self.strides}, padding {self.padding!r}")
        if self.impl != "auto":
            return self.impl
        return "reshape" if reshapes and (backend or jax.default_backend()) == "cpu" else "reduce_window"

    @property
    def _window(self) -> tuple[int, ...]:
        return self.window

    def output_shape(self, input_shape):
        self._check_input(input_shape, None)
        spatial = self._spatial_out(input_shape)
        self.resolved_impl(input_shape)  # an impl that cannot pool this input is an error here too
        return (input_shape[0], *spatial, input_shape[-1])

    def _reduce(self, x, init, op):
        """``op``-reduction of each window: (batch, *spatial, channels) → (batch, *out_spatial, channels).
        ``init`` must be a concrete NumPy scalar so that JAX picks its differentiable max/add reducer."""
        return lax.reduce_window(
            x, init, op, window_dimensions=(1, *self.window, 1), window_strides=(1, *self.strides, 1),
            padding=((0, 0), *self.pads(x.shape), (0, 0)),
        )


@dataclasses.dataclass(frozen=True)
class _MaxPool(_Pool):
    @property
    def default_name(self) -> str:
        return "maxpool"

    def apply(self, params, state, x, *, key=None, train=False):
        self.output_shape(x.shape)
        if self.resolved_impl(x.shape) == "reshape":  # at ties the gradient is split among the maxima
            return conv_impl.reshape_pool(x, self.window, jnp.max), state
        lowest = -np.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
        return self._reduce(x, np.asarray(lowest, x.dtype), lax.max), state


@dataclasses.dataclass(frozen=True)
class _AvgPool(_Pool):
    count_include_pad: bool = True

    @property
    def default_name(self) -> str:
        return "avgpool"

    def apply(self, params, state, x, *, key=None, train=False):
        self.output_shape(x.shape)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        if self.resolved_impl(x.shape) == "reshape":
            return conv_impl.reshape_pool(x, self.window, jnp.mean), state
        total = self._reduce(x, np.zeros((), x.dtype), lax.add)
        padded = any(p != (0, 0) for p in self.pads(x.shape))
        if self.count_include_pad or not padded:
            return total / math.prod(self.window), state
        ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
        count = self._reduce(ones, np.zeros((), x.dtype), lax.add)  # (1, *out_spatial, 1) real values per window
        return total / count, state


@dataclasses.dataclass(frozen=True)
class MaxPool1D(_MaxPool):
    """Maximum over windows of a sequence. x: (batch, width, channels) → (batch, out_width, channels)."""

    ndim = 1


@dataclasses.dataclass(frozen=True)
class MaxPool2D(_MaxPool):
    """Maximum over windows of an image.
    x: (batch, height, width, channels) → (batch, out_height, out_width, channels).
    ``MaxPool2D(2)`` halves height and width (window 2×2, stride 2)."""

    ndim = 2


@dataclasses.dataclass(frozen=True)
class AvgPool1D(_AvgPool):
    """Mean over windows of a sequence. x: (batch, width, channels) → (batch, out_width, channels)."""

    ndim = 1


@dataclasses.dataclass(frozen=True)
class AvgPool2D(_AvgPool):
    """Mean over windows of an image (the 1998 LeNet's subsampling, without its trained gain).
    x: (batch, height, width, channels) → (batch, out_height, out_width, channels)."""

    ndim = 2


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """Mean over all spatial (or token) axes: (batch, *spatial, channels) → (batch, channels)."""

    @property
    def default_name(self) -> str:
        return "globalavgpool"

    def apply(self, params, state, x, *, key=None, train=False):
        self.output_shape(x.shape)
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1))), state

    def output_shape(self, input_shape):
        check_rank(self, input_shape, 3, "(batch, *spatial, channels) with at least one spatial axis")
        return (input_shape[0], input_shape[-1])
