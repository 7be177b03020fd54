"""How a convolution or a pooling is computed: the formulations a layer's ``impl`` field selects, and
the rule behind ``impl="auto"``.

Every formulation computes the same cross-correlation from the same params (so a layer's ``impl``
never changes its params or its results beyond float rounding); only the arithmetic differs:

* ``"xla"`` — ``lax.conv_general_dilated``: the platform's native convolution (cuDNN on NVIDIA GPUs).
* ``"im2col"`` — one matmul of the input's patches (``kh·kw`` strided slices concatenated on the
  channel axis) with the kernel reshaped to (kh·kw·in, features).
* ``"toeplitz"`` — one matmul of strips of ``kh`` input rows with a banded (Toeplitz) weight matrix:
  more multiply-adds than the direct convolution, in a matmul of a far better shape when there are
  few input channels (LeNet's first layers).

1-D convolutions run the 2-D formulations on an image of height 1.

XLA's convolution inside the training loop: JAX takes a convolution's gradients as convolutions
with permuted dimension labels, and XLA:CPU rewrites those into the form its fast (Eigen) kernel
takes only at a program's top level, not inside a loop body such as the ``lax.scan`` that compiles a
whole epoch. There they ran as a generic loop nest, 30–90× slower (20 weight gradients of a 3×3,
16→32 convolution on 100 images of 28×28: 0.2 s straight-line, 17.7 s in a scan). Keras 3 on JAX
does not meet this because its compiled multi-step loop is a Python loop, unrolled at the top level.
So inside :func:`training_loop` on CPU, ``"xla"`` computes its gradients by :func:`eigen_conv`,
which writes them out in that form, and is then as fast in the scanned epoch as in a step of its own.

``"auto"``: on GPU and TPU ``"xla"``; on CPU inside the training loop the formulation the rule of
:func:`auto_conv_impl` picks for the layer's kernel, channels and input size (measured on whole
networks with ``benchmarks/bench_conv_impls.py``: mostly a matmul, XLA's convolution only for small
kernels over many channels on large inputs, and never over stacked runs, :func:`stacked_runs`),
outside it ``"xla"``. Pooling: ``"reshape"`` (non-overlapping, unpadded windows as a reshape, then a
mean or a tree of elementwise maxima; faster than ``reduce_window`` on CPU) where it applies, else
``"reduce_window"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnets._util import unknown

CONV_IMPLS = ("auto", "xla", "im2col", "toeplitz")
POOL_IMPLS = ("auto", "reduce_window", "reshape")
# "auto" in a CPU training loop: XLA's convolution for small 2-D kernels over at least this many input
# channels and input positions (28×28 and more; benchmarks/RESULTS.md, 2026-12-08)
XLA_MIN_CHANNELS = 16
XLA_MIN_POSITIONS = 28 * 28
Pads = Sequence[tuple[int, int]]


def check_impl(owner: str, impl: str, known: Sequence[str]) -> None:
    if impl not in known:
        raise ValueError(f"{owner}: {unknown('impl', impl, known)}")


def xla_conv(x: jax.Array, w: jax.Array, strides: Sequence[int], pads: Pads, dilation: Sequence[int]) -> jax.Array:
    """Cross-correlation by ``lax.conv_general_dilated``. x: (batch, *spatial, in); w: (*window, in,
    features) → (batch, *out_spatial, features), for 1 or 2 spatial axes."""
    return lax.conv_general_dilated(x, w, window_strides=tuple(strides), padding=tuple(pads), rhs_dilation=tuple(dilation),
                                    dimension_numbers=_dimension_numbers(x.ndim))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def eigen_conv(x: jax.Array, w: jax.Array, strides: tuple[int, ...], pads: tuple[tuple[int, int], ...],
               dilation: tuple[int, ...]) -> jax.Array:
    """:func:`xla_conv` whose two gradients are convolutions in XLA:CPU's canonical form.

    Same value and same gradients as :func:`xla_conv` (the same convolutions, written out). JAX
    transposes a convolution into convolutions with permuted dimension labels (the weight gradient
    treats the batch as features, the input gradient swaps the kernel's in and out); XLA:CPU rewrites
    those into the (batch, *spatial, features) × (*window, in, out) form its fast (Eigen) kernel takes
    only in a program's top level, so inside a loop body (the scanned epoch) they fall to a generic
    loop nest that is 30–90× slower. Here the backward pass moves the axes itself (cheap transposes)
    and calls only canonical convolutions. Reverse mode only (a ``custom_vjp``): it is used where
    the scanned epoch takes gradients, never for ``jax.jvp``.
    """
    return xla_conv(x, w, strides, pads, dilation)


def _eigen_conv_forward(x, w, strides, pads, dilation):
    return xla_conv(x, w, strides, pads, dilation), (x, w)


def _eigen_conv_backward(strides, pads, dilation, residuals, dy):
    """dy: (batch, *out_spatial, out) → (dx like x, dw like w), each by one canonical convolution."""
    x, w = residuals
    in_sizes, out_sizes, window = x.shape[1:-1], dy.shape[1:-1], w.shape[:-2]
    spread = [(k - 1) * d + 1 for k, d in zip(window, dilation)]  # the dilated window
    # dx: dy spread out by the strides (lhs dilation), correlated with the flipped kernel, in ↔ out.
    dx_pads = []
    for n_in, n_out, s, stride, (lo, _) in zip(in_sizes, out_sizes, spread, strides, pads):
        before = s - 1 - lo
        dx_pads.append((before, n_in + s - 1 - ((n_out - 1) * stride + 1) - before))
    flipped = jnp.flip(w, axis=tuple(range(len(window)))).swapaxes(-1, -2)  # (*window, out, in)
    dx = lax.conv_general_dilated(dy, flipped, (1,) * len(window), dx_pads, lhs_dilation=strides,
                                  rhs_dilation=dilation, dimension_numbers=_dimension_numbers(x.ndim))
    # dw: the input's channels as the batch, its batch as the features; dy's batch as the kernel's in.
    xt = jnp.moveaxis(x, (0, x.ndim - 1), (x.ndim - 1, 0))  # (in, *spatial, batch)
    dyt = jnp.moveaxis(dy, 0, -2)  # (*out_spatial, batch, out)
    dw_pads = [(lo, s + (n_out - 1) * stride - n_in - lo)
               for n_in, n_out, s, stride, (lo, _) in zip(in_sizes, out_sizes, spread, strides, pads)]
    dwt = lax.conv_general_dilated(xt, dyt, dilation, dw_pads, rhs_dilation=strides,
                                   dimension_numbers=_dimension_numbers(x.ndim))  # (in, *window, out)
    return dx, jnp.moveaxis(dwt, 0, -2)


eigen_conv.defvjp(_eigen_conv_forward, _eigen_conv_backward)


def _dimension_numbers(ndim: int) -> tuple[str, str, str]:
    spatial = "HW"[2 - (ndim - 2):]
    return f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"


def im2col_conv2d(x: jax.Array, w: jax.Array, strides: Sequence[int], pads: Pads,
                  dilation: Sequence[int]) -> jax.Array:
    """2-D cross-correlation as one matmul over patches.

    x: (batch, height, width, in_channels); w: (kh, kw, in_channels, features) →
    (batch, out_h, out_w, features). The patches are ``kh·kw`` strided slices of the padded input
    concatenated on the channel axis, in (i, j, channel) order, which is ``w.reshape(-1, features)``'s
    row order. Its gradients are slices, pads and matmuls too (no convolution anywhere).
    """
    (sh, sw), (dh, dw) = strides, dilation
    kh, kw, c, f = w.shape
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    n, h, wd, _ = x.shape
    oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (wd - (kw - 1) * dw - 1) // sw + 1
    cols = [lax.slice(x, (0, i * dh, j * dw, 0), (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, c),
                      (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
    patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)  # (n, oh, ow, kh·kw·c)
    y = patches.reshape(n * oh * ow, kh * kw * c) @ w.reshape(kh * kw * c, f)  # (n·oh·ow, f)
    return y.reshape(n, oh, ow, f)


def default_tile(out_width: int, kernel_width: int) -> int:
    """The output-column tile :func:`toeplitz_conv2d` uses unless told: the largest divisor of
    ``out_width`` that is at most ``kernel_width`` (measured best for LeNet's 5×5 layers, where it is
    4 of 28 and 5 of 10; see benchmarks/RESULTS.md)."""
    return max(t for t in range(1, min(out_width, kernel_width) + 1) if out_width % t == 0)


def toeplitz_conv2d(x: jax.Array, w: jax.Array, strides: Sequence[int], pads: Pads,
                    dilation: Sequence[int], tile: int | None = None) -> jax.Array:
    """2-D cross-correlation as one matmul of input strips with a banded (Toeplitz) weight matrix.

    x: (batch, height, width, in_channels); w: (kh, kw, in_channels, features) →
    (batch, out_h, out_w, features). The output is cut into strips of ``tile`` adjacent positions of
    one row (``tile`` must divide out_w; default :func:`default_tile`). A strip's outputs, all
    features, are the ``kh`` input rows under it, ``win = (tile − 1)·stride + (kw − 1)·dilation + 1``
    columns wide, (kh · win · in_channels) values, times one matrix of shape
    (kh · win · in_channels, tile · features) whose entry for input column ``a`` and output column ``b``
    holds ``w[i, j]`` where ``a = b·stride + j·dilation``, and 0 elsewhere: banded, Toeplitz per
    kernel row. That is ``win / kw`` times the multiply-adds of the direct convolution, but a matmul
    of a far better shape than im2col's skinny (kh·kw·in_channels) × features one when channels are
    few. ``tile = 1`` is im2col; ``tile = out_w`` a single Toeplitz matrix per row. The weight matrix
    is an einsum of ``w`` with a constant 0/1 tensor, so its gradient is a matmul too.
    """
    (sh, sw), (dh, dw) = strides, dilation
    kh, kw, c, f = w.shape
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    n, h, wd, _ = x.shape
    oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (wd - (kw - 1) * dw - 1) // sw + 1
    tile = default_tile(ow, kw) if tile is None else tile
    if tile < 1 or ow % tile:
        raise ValueError(f"toeplitz_conv2d: tile must be a positive divisor of the output width {ow}, got {tile}")
    win = (tile - 1) * sw + (kw - 1) * dw + 1
    rows = jnp.stack([lax.slice(x, (0, i * dh, 0, 0), (n, i * dh + (oh - 1) * sh + 1, wd, c), (1, sh, 1, 1))
                      for i in range(kh)], axis=2)  # (n, oh, kh, wd, c)
    strips = jnp.stack([rows[:, :, :, s * tile * sw:s * tile * sw + win] for s in range(ow // tile)],
                       axis=2)  # (n, oh, ow / tile, kh, win, c)
    # taps[j, a, b] = 1 where a strip's input column a feeds its output column b through kernel column j.
    taps = np.arange(win)[None, :, None] == np.arange(tile)[None, None, :] * sw + np.arange(kw)[:, None, None] * dw
    toeplitz = jnp.einsum("jab,ijcf->iacbf", taps.astype(w.dtype), w).reshape(kh * win * c, tile * f)
    y = strips.reshape(n * oh * (ow // tile), kh * win * c) @ toeplitz  # (n·oh·strips, tile·f)
    return y.reshape(n, oh, ow, f)


MATMUL_FORMULATIONS = {"im2col": im2col_conv2d, "toeplitz": toeplitz_conv2d}


def _eigen_conv2d(x, w, strides, pads, dilation):  # conv()'s calling convention (lists are not hashable)
    return eigen_conv(x, w, tuple(strides), tuple(map(tuple, pads)), tuple(dilation))


def conv(impl: str, x: jax.Array, w: jax.Array, strides: Sequence[int], pads: Pads,
         dilation: Sequence[int]) -> jax.Array:
    """The cross-correlation of x: (batch, *spatial, in) with w: (*window, in, features) by the
    resolved ``impl`` ("xla", "im2col", "toeplitz"), for 1 or 2 spatial axes."""
    if impl == "xla":
        if not (in_training_loop() and jax.default_backend() == "cpu"):
            return xla_conv(x, w, strides, pads, dilation)
        formulation = _eigen_conv2d
    else:
        formulation = MATMUL_FORMULATIONS[impl]
    if x.ndim == 3:  # 1-D: an image of height 1
        y = formulation(x[:, None], w[None], (1, *strides), ((0, 0), *pads), (1, *dilation))
        return y[:, 0]
    return formulation(x, w, strides, pads, dilation)


_TRAINING_LOOP = contextvars.ContextVar("jaxnets_training_loop", default=False)


@contextlib.contextmanager
def _raised(flag: contextvars.ContextVar) -> Iterator[None]:
    """``flag`` is True inside the ``with`` block, and as before after it."""
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def training_loop() -> contextlib.AbstractContextManager[None]:
    """Marks the code traced inside it as the body of a compiled training loop (the scanned epoch of
    :func:`jaxnets.train.make_epoch_fn` sets it while tracing its steps; set it around a
    ``lax.scan`` of your own). There, on CPU, ``impl="auto"`` follows the rule of
    :func:`auto_conv_impl` and ``"xla"`` takes its gradients by :func:`eigen_conv`. It changes how a
    convolution is computed, never what it computes."""
    return _raised(_TRAINING_LOOP)


def in_training_loop() -> bool:
    return _TRAINING_LOOP.get()


_STACKED_RUNS = contextvars.ContextVar("jaxnets_stacked_runs", default=False)


def stacked_runs() -> contextlib.AbstractContextManager[None]:
    """Marks the code traced inside it as ``jax.vmap``-ped over independent runs with their own params
    (``fit_seeds`` sets it around its epoch; set it around a ``jax.vmap`` of your own). There a
    convolution's batched weights make XLA's convolution a grouped one, 1.6–24× slower on CPU than the
    best matmul (benchmarks/RESULTS.md, 2026-12-02), so ``impl="auto"`` keeps to the matmuls in a
    training loop."""
    return _raised(_STACKED_RUNS)


def in_stacked_runs() -> bool:
    return _STACKED_RUNS.get()


def auto_conv_impl(kernel_size: Sequence[int], in_channels: int, features: int, backend: str,
                   in_loop: bool | None = None, in_spatial: Sequence[int] = ()) -> str:
    """The formulation ``impl="auto"`` computes a convolution with on ``backend``; ``in_spatial``: the
    input's spatial size, (height, width) or (width,).

    GPU/TPU, and CPU outside a training loop (inference, evaluation in batches of 1,000, where
    im2col's patches would hold kh·kw copies of the input): ``"xla"``, the native convolution. On
    CPU inside a training loop (``in_loop``, default :func:`in_training_loop`) the rule measured on
    whole networks with ``benchmarks/bench_conv_impls.py`` (tables in benchmarks/RESULTS.md):

    * ``"toeplitz"`` for 2-D kernels over at most 3 input channels (im2col's matmul is then too
      skinny: kh·kw·in rows) and for 2-D kernels of 5×5 or more (LeNet's: 1.4–2× faster than im2col
      with the input gradient computed, as in a network);
    * ``"xla"`` (with the fast gradients of :func:`eigen_conv`) for other 2-D kernels larger than 1×1
      over at least ``XLA_MIN_CHANNELS`` (16) input channels on inputs of at least
      ``XLA_MIN_POSITIONS`` (28×28) positions, except over stacked runs (:func:`stacked_runs`).
      Here im2col's patches are large (45 MB for a 3×3, 16-channel layer on 100 images of 28×28):
      on an AMD EPYC with AVX-512 the small ResNet trained 1.2–1.3× and the VGG-like nets 1.1–1.2×
      faster than with im2col there (not yet timed on an Intel Xeon);
    * ``"im2col"`` otherwise (1-D kernels, 1×1 kernels, and 3×3 ones over more channels on smaller
      inputs, such as the 2-D user CNN's 16→32 layer on 14×14: although XLA's convolution is faster
      timed alone, the network is faster with im2col: in its profile XLA's weight gradient of that
      layer, a convolution whose window is as large as the output, takes 3.8 ms of a 10 ms step).
    """
    in_loop = in_training_loop() if in_loop is None else in_loop
    if backend != "cpu" or not in_loop:
        return "xla"
    if len(kernel_size) == 2 and (in_channels <= 3 or min(kernel_size) >= 5):
        return "toeplitz"
    if (len(kernel_size) == 2 and max(kernel_size) > 1 and in_channels >= XLA_MIN_CHANNELS
            and math.prod(in_spatial) >= XLA_MIN_POSITIONS and not in_stacked_runs()):
        return "xla"
    return "im2col"


def pool_reshapes(window: Sequence[int], strides: Sequence[int], pads: Pads) -> bool:
    """Whether a pooling can be a reshape: non-overlapping windows (strides = window), no padding."""
    return tuple(strides) == tuple(window) and all(p == (0, 0) for p in pads)


def reshape_pool(x: jax.Array, window: Sequence[int], reduce) -> jax.Array:
    """Non-overlapping, unpadded pooling as a reshape and ``reduce`` (jnp.max or jnp.mean) over the
    window axes; a remainder that fills no window is dropped, as VALID pooling does.
    x: (batch, *spatial, channels) → (batch, *(spatial // window), channels).

    The max is a balanced tree of elementwise maxima over the window's offsets: its gradient is
    elementwise selects, where ``jnp.max`` over the window axes would count the tied maxima with a
    reduction (the 2-D user CNN's epoch: 0.36 → 0.30 s on CPU, benchmarks/RESULTS.md). At ties the
    gradient is split among the tied values: equally for a 2×2 window of four equal values, in
    halves down the tree in general."""
    n, *spatial, c = x.shape
    out = [s // k for s, k in zip(spatial, window)]
    x = x[(slice(None), *(slice(0, o * k) for o, k in zip(out, window)), slice(None))]
    x = x.reshape([n] + [d for o, k in zip(out, window) for d in (o, k)] + [c])  # (n, o1, k1, o2, k2, c)
    axes = tuple(2 + 2 * i for i in range(len(window)))
    if reduce is not jnp.max:
        return reduce(x, axis=axes)
    for axis in reversed(axes):  # the last window axis first, so the earlier axes keep their index
        values = [lax.index_in_dim(x, j, axis, keepdims=False) for j in range(x.shape[axis])]
        while len(values) > 1:
            values = [jnp.maximum(*values[i:i + 2]) if i + 1 < len(values) else values[i]
                      for i in range(0, len(values), 2)]
        x = values[0]
    return x
