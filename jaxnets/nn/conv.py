"""Convolutions (Conv1D, Conv2D) and the locally connected 2-D layer.

Inputs are channels-last with a leading batch axis: (batch, width, channels) for 1-D and
(batch, height, width, channels) (NHWC) for 2-D. Kernels are ``w`` of shape
(*window, in_channels, features) and biases ``b`` of shape (features,).

Padding is ``"VALID"`` (none), ``"SAME"`` (output size ``ceil(size / stride)``, the extra
pixel on the high side, as in XLA and TensorFlow), an int (that many zeros on every side), one
int per spatial axis (symmetric), or one ``(low, high)`` pair per spatial axis. For each spatial
axis with input size ``n``, padding ``(lo, hi)``, kernel ``k``, dilation ``d`` and stride ``s``:

    effective kernel  k_eff = (k - 1) * d + 1
    output size       (n + lo + hi - k_eff) // s + 1      (needs n + lo + hi >= k_eff)

How a convolution is computed is its ``impl`` field (:mod:`jaxnets.nn.conv_impl`): ``"xla"``
(``lax.conv_general_dilated``), ``"im2col"`` or ``"toeplitz"`` (one matmul each), or ``"auto"`` (the
default: the native convolution on GPU/TPU, the faster matmul for the layer's shape on CPU). Every
impl has the same params and gives the same outputs. ``flip_kernel=True`` computes the true
convolution of the lecture notes (the kernel flipped in every spatial axis) instead of the
cross-correlation that deep-learning layers compute.

The locally connected layer has the same wiring as a convolution (each output unit sees one
window of the input) but every output position has its own weights, which is the contrast the
lecture notes draw: same connections, ``out_h * out_w`` times as many weights.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.initializers import get_initializer
from jaxnets.nn import conv_impl
from jaxnets.nn._util import as_tuple, broadcast_last
from jaxnets.nn.core import Layer, Shape, as_shape_dtype, param_dtype

Padding = Union[str, int, Sequence[Union[int, Sequence[int]]]]
Pads = tuple[tuple[int, int], ...]


def normalize_padding(padding: Padding, ndim: int, owner: str) -> str | Pads:
    """``"SAME"``/``"VALID"`` (upper-cased) or explicit ``((lo, hi), ...)`` with one pair per axis.

    An int pads every side; ``ndim`` ints pad each axis symmetrically; ``ndim`` pairs are
    explicit. For a 1-D layer a single pair ``(lo, hi)`` is also accepted.
    """
    bad = ValueError(
        f"{owner}: padding must be 'SAME', 'VALID', an int, {ndim} ints or {ndim} (low, high) pairs, "
        f"got {padding!r}"
    )
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise bad
        return padding.upper()
    if isinstance(padding, int):
        padding = (padding,) * ndim
    padding = tuple(padding)
    if ndim == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        padding = (padding,)
    if len(padding) != ndim:
        raise bad
    pads = []
    for p in padding:
        pair = (p, p) if isinstance(p, int) else tuple(p)
        if len(pair) != 2 or not all(isinstance(v, int) and v >= 0 for v in pair):
            raise bad
        pads.append(pair)
    return tuple(pads)


def explicit_pads(padding: str | Pads, sizes: Sequence[int], window: Sequence[int],
                  strides: Sequence[int], dilation: Sequence[int] | None = None) -> Pads:
    """The ``(lo, hi)`` zeros added on each spatial axis for inputs of spatial size ``sizes``."""
    dilation = dilation or (1,) * len(sizes)
    if padding == "VALID":
        return tuple((0, 0) for _ in sizes)
    if padding == "SAME":
        pads = []
        for n, k, s, d in zip(sizes, window, strides, dilation):
            out = -(-n // s)  # ceil(n / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple(padding)


def _fmt(values: Sequence[int]) -> str:
    return "×".join(str(v) for v in values)


def windowed_output_size(layer: Layer, sizes: Sequence[int], window: Sequence[int],
                         strides: Sequence[int], dilation: Sequence[int], pads: Pads,
                         what: str = "kernel") -> tuple[int, ...]:
    """Output spatial sizes of a sliding window; raises ``layer.error`` when the window is larger
    than the padded input."""
    effective = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
    padded = [n + lo + hi for n, (lo, hi) in zip(sizes, pads)]
    if any(p < e for p, e in zip(padded, effective)):
        dilated = f" (dilation {_fmt(dilation)}, effective {_fmt(effective)})" if any(d > 1 for d in dilation) else ""
        raise layer.error(
            f"{what} {_fmt(window)}{dilated} is larger than the padded input {_fmt(padded)} "
            f"(input {_fmt(sizes)}, padding {tuple(pads)}); each spatial size + padding must be >= the "
            f"{what} size"
        )
    return tuple((p - e) // s + 1 for p, e, s in zip(padded, effective, strides))


class Windowed(Layer):
    """Shared checks for layers that slide a window over ``ndim`` spatial axes."""

    ndim = 2  # number of spatial axes (a class constant, not a field)

    @property
    def _layout(self) -> str:
        return "(batch, width, channels)" if self.ndim == 1 else "(batch, height, width, channels)"

    def _check_input(self, shape: Shape, in_channels: int | None) -> None:
        if len(shape) != self.ndim + 2:
            raise self.error(f"expected input of rank {self.ndim + 2} {self._layout}, got shape {tuple(shape)}")
        if in_channels is not None and shape[-1] != in_channels:
            raise self.error(
                f"channel mismatch: expected {in_channels} input channels (last axis), got {shape[-1]} "
                f"in input of shape {tuple(shape)}"
            )

    @property
    def _window(self) -> tuple[int, ...]:
        return self.kernel_size

    def pads(self, input_shape: Shape) -> Pads:
        """The ``(lo, hi)`` padding of each spatial axis for an input of ``input_shape``."""
        return explicit_pads(self.padding, input_shape[1:-1], self._window, self.strides,
                             getattr(self, "dilation", None))

    def _spatial_out(self, input_shape: Shape) -> tuple[int, ...]:
        return windowed_output_size(self, input_shape[1:-1], self._window, self.strides,
                                    getattr(self, "dilation", (1,) * self.ndim), self.pads(input_shape),
                                    what="kernel" if hasattr(self, "kernel_size") else "window")


@dataclasses.dataclass(frozen=True)
class _Kernel(Windowed):
    """The fields and checks of a layer with a ``kernel_size`` window of weights: convolutions and
    the locally connected layer."""

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "VALID"
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    w_init: str | Callable = "glorot_uniform"
    b_init: str | Callable = "zeros"

    def __post_init__(self):
        name = type(self).__name__
        if not isinstance(self.features, int) or self.features <= 0:
            raise ValueError(f"{name}: features must be a positive int, got {self.features!r}")
        for field in ("kernel_size", "strides", "dilation"):
            object.__setattr__(self, field, as_tuple(getattr(self, field), self.ndim, field, name))
        object.__setattr__(self, "padding", normalize_padding(self.padding, self.ndim, name))
        get_initializer(self.w_init)
        get_initializer(self.b_init)


@dataclasses.dataclass(frozen=True)
class _ConvND(_Kernel):
    in_channels: int | None = None
    impl: str = "auto"
    flip_kernel: bool = False

    def __post_init__(self):
        super().__post_init__()
        conv_impl.check_impl(type(self).__name__, self.impl, conv_impl.CONV_IMPLS)

    @property
    def default_name(self) -> str:
        return "conv"

    def resolved_impl(self, input_shape: Sequence[int], backend: str | None = None) -> str:
        """The formulation this layer computes with for inputs of ``input_shape`` (batch, *spatial,
        in_channels) on ``backend`` (default: JAX's default backend): ``impl``, or for ``"auto"`` the
        rule of :func:`jaxnets.nn.conv_impl.auto_conv_impl`."""
        if self.impl != "auto":
            return self.impl
        return conv_impl.auto_conv_impl(self.kernel_size, input_shape[-1], self.features,
                                        backend or jax.default_backend(), in_spatial=input_shape[1:-1])

    def init(self, key, x):
        spec = as_shape_dtype(x)
        self.output_shape(spec.shape)
        dtype = param_dtype(spec)
        w_key, b_key = jax.random.split(key)
        w_shape = (*self.kernel_size, spec.shape[-1], self.features)
        params = {"w": get_initializer(self.w_init)(w_key, w_shape, dtype)}
        if self.use_bias:
            params["b"] = get_initializer(self.b_init)(b_key, (self.features,), dtype)
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        self._check_input(x.shape, params["w"].shape[-2])
        self._spatial_out(x.shape)
        dtype = jnp.result_type(x, params["w"])
        w = params["w"].astype(dtype)
        if self.flip_kernel:  # true convolution: (a * b)_t = Σ_τ a_τ b_{t−τ}
            w = jnp.flip(w, axis=tuple(range(self.ndim)))
        y = conv_impl.conv(self.resolved_impl(x.shape), x.astype(dtype), w, self.strides, self.pads(x.shape),
                           self.dilation)  # (batch, *out_spatial, features)
        if self.use_bias:
            y = y + broadcast_last(params["b"].astype(y.dtype), y.ndim)
        return y, state

    def output_shape(self, input_shape):
        self._check_input(input_shape, self.in_channels)
        return (input_shape[0], *self._spatial_out(input_shape), self.features)


@dataclasses.dataclass(frozen=True)
class Conv1D(_ConvND):
    """1-D convolution (cross-correlation, as in every deep-learning library; ``flip_kernel=True``
    for the notes' true convolution).

    x: (batch, width, in_channels) → y: (batch, out_width, features).
    params: ``w`` (kernel_size, in_channels, features), ``b`` (features,).
    ``Conv1D(8, 3, strides=2, padding="SAME", dilation=1)``; see the module docstring for the
    padding forms, the output-size formula and ``impl``. ``in_channels`` is optional; when given it is
    checked.
    """

    ndim = 1


@dataclasses.dataclass(frozen=True)
class Conv2D(_ConvND):
    """2-D convolution (cross-correlation; ``flip_kernel=True`` for the true convolution) over NHWC images.

    x: (batch, height, width, in_channels) → y: (batch, out_height, out_width, features).
    params: ``w`` (kernel_h, kernel_w, in_channels, features), ``b`` (features,).
    ``Conv2D(6, 5, padding=2)``, ``Conv2D(16, (3, 3), strides=2, padding="SAME", dilation=2)``,
    ``Conv2D(16, 3, impl="xla")``; see the module docstring for the padding forms, the output-size
    formula and ``impl``.
    """

    ndim = 2


@dataclasses.dataclass(frozen=True)
class LocallyConnected2D(_Kernel):
    """Locally connected 2-D layer: a convolution's wiring without weight sharing.

    x: (batch, height, width, in_channels) → y: (batch, out_height, out_width, features), with the
    output size of a ``Conv2D`` of the same ``kernel_size``/``strides``/``padding``/``dilation``.
    params: ``w`` (out_height, out_width, kernel_h, kernel_w, in_channels, features) — one kernel
    per output position — and ``b`` (out_height, out_width, features) — one bias per unit.
    The input's height and width are fixed at ``init``.
    """

    ndim = 2

    @property
    def default_name(self) -> str:
        return "local"

    def init(self, key, x):
        spec = as_shape_dtype(x)
        _, out_h, out_w, _ = self.output_shape(spec.shape)
        dtype = param_dtype(spec)
        w_key, b_key = jax.random.split(key)
        kernel = (*self.kernel_size, spec.shape[-1], self.features)  # (kh, kw, in, features)
        # One conv-shaped kernel per output position, each initialised with the fan-in/fan-out of a conv.
        keys = jax.random.split(w_key, out_h * out_w)
        w = jax.vmap(lambda k: get_initializer(self.w_init)(k, kernel, dtype))(keys)
        params = {"w": w.reshape(out_h, out_w, *kernel)}
        if self.use_bias:
            params["b"] = get_initializer(self.b_init)(b_key, (out_h, out_w, self.features), dtype)
        return params, {}

    def apply(self, params, state, x, *, key=None, train=False):
        w = params["w"]
        self._check_input(x.shape, w.shape[-2])
        out = self._spatial_out(x.shape)
        if out != w.shape[:2]:
            raise self.error(
                f"input of shape {tuple(x.shape)} gives {_fmt(out)} output positions, but the weights were "
                f"built for {_fmt(w.shape[:2])} (a locally connected layer's input size is fixed at init)"
            )
        dtype = jnp.result_type(x, w)
        patches = lax.conv_general_dilated_patches(
            x.astype(dtype), filter_shape=self.kernel_size, window_strides=self.strides, padding=self.pads(x.shape),
            rhs_dilation=self.dilation, dimension_numbers=("NHWC", "OIHW", "NHWC"),
            precision=lax.Precision.HIGHEST,
        )  # (batch, out_h, out_w, in_channels * kh * kw), channel-major
        out_h, out_w, kh, kw, c, f = w.shape
        w = w.astype(dtype).transpose(0, 1, 4, 2, 3, 5).reshape(out_h, out_w, c * kh * kw, f)
        y = jnp.einsum("nhwk,hwkf->nhwf", patches, w)  # (batch, out_h, out_w, features)
        if self.use_bias:
            y = y + params["b"].astype(y.dtype).reshape(1, out_h, out_w, f)
        return y, state

    def output_shape(self, input_shape):
        self._check_input(input_shape, None)
        return (input_shape[0], *self._spatial_out(input_shape), self.features)

