"""The convolutional model zoo of the lecture notes: LeNet-5 (1998 and modern), a small ResNet for
28×28 images, a small vision transformer, and AlexNet-/VGG-like definitions whose sizes can be
inspected (``jaxnets.inspect.summary``) without training. Re-exported by :mod:`jaxnets.models`.

Speed on CPU. XLA:CPU's own convolution is slow for these small layers, and about 4× slower
again inside ``lax.scan`` (see benchmarks/RESULTS.md). Two layers compute the same convolution as
:class:`jaxnets.nn.Conv2D` (same params, same result) as one matmul instead, and are as fast
inside ``scan`` as outside: :class:`Im2ColConv2D` over patches gathered with ``kh·kw`` strided
slices, and :class:`ToeplitzConv2D` over strips of ``kh`` input rows against a banded (Toeplitz)
weight matrix, which does more multiply-adds but in a matmul of a far better shape when there are
few channels. :class:`ReshapeMaxPool2D` does non-overlapping max pooling with a reshape and a max
instead of ``reduce_window``. LeNet-5 uses ``conv="toeplitz"`` by default, the ResNet
``conv="im2col"``; ``conv="xla"`` gives the plain layers.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnets import nn
from jaxnets.nn._util import broadcast_last


def im2col_conv2d(x: jax.Array, w: jax.Array, strides: Sequence[int], pads: Sequence[tuple[int, int]],
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


def toeplitz_conv2d(x: jax.Array, w: jax.Array, strides: Sequence[int], pads: Sequence[tuple[int, int]],
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
    few (LeNet's layers); for many channels (ResNet's 3×3 layers) im2col is faster (see
    benchmarks/RESULTS.md). ``tile = 1`` is im2col; ``tile = out_w`` a single Toeplitz matrix per
    row. The weight matrix is an einsum of ``w`` with a constant 0/1 tensor, so its gradient is a
    matmul too.
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


@dataclasses.dataclass(frozen=True)
class _MatmulConv2D(nn.Conv2D):
    """:class:`jaxnets.nn.Conv2D` (same fields, params, output and checks) computed by
    ``formulation`` as one matmul; only the arithmetic's formulation differs.
    x: (batch, h, w, c) → (batch, oh, ow, features)."""

    formulation: ClassVar[Callable[..., jax.Array]]

    def apply(self, params, state, x, *, key=None, train=False):
        self._check_input(x.shape, params["w"].shape[-2])
        self._spatial_out(x.shape)
        dtype = jnp.result_type(x, params["w"])
        y = self.formulation(x.astype(dtype), params["w"].astype(dtype), self.strides, self.pads(x.shape),
                             self.dilation)
        if self.use_bias:
            y = y + broadcast_last(params["b"].astype(y.dtype), y.ndim)
        return y, state


@dataclasses.dataclass(frozen=True)
class Im2ColConv2D(_MatmulConv2D):
    """:class:`jaxnets.nn.Conv2D` computed by :func:`im2col_conv2d`."""

    formulation = staticmethod(im2col_conv2d)


@dataclasses.dataclass(frozen=True)
class ToeplitzConv2D(_MatmulConv2D):
    """:class:`jaxnets.nn.Conv2D` computed by :func:`toeplitz_conv2d`."""

    formulation = staticmethod(toeplitz_conv2d)


@dataclasses.dataclass(frozen=True)
class ReshapeMaxPool2D(nn.MaxPool2D):
    """:class:`jaxnets.nn.MaxPool2D` that computes non-overlapping, unpadded windows (``strides ==
    window``, VALID) as a reshape and a max, which XLA:CPU runs faster than ``reduce_window``; other
    settings fall back to the parent. Gradient at ties: shared equally among the tied maxima (the
    parent gives it all to one). x: (batch, h, w, c) → (batch, h // wh, w // ww, c)."""

    def apply(self, params, state, x, *, key=None, train=False):
        if self.strides != self.window or any(p != (0, 0) for p in self.pads(x.shape)):
            return super().apply(params, state, x, key=key, train=train)
        n, h, w, c = self.output_shape(x.shape)
        wh, ww = self.window
        x = x[:, : h * wh, : w * ww, :].reshape(n, h, wh, w, ww, c)  # (n, h, wh, w, ww, c)
        return jnp.max(x, axis=(2, 4)), state


@dataclasses.dataclass(frozen=True, init=False)
class ConvNet(nn.Sequential):
    """A :class:`jaxnets.nn.Sequential` that also says which training engine is fastest for it on
    each backend (``jaxnets.fit(engine="auto")`` asks ``preferred_engine``)."""

    engines: tuple[tuple[str, str], ...]

    def __init__(self, layers, name: str = "convnet", engines: dict[str, str] | None = None):
        super().__init__(layers, name=name)
        object.__setattr__(self, "engines", tuple(sorted((engines or {}).items())))

    def preferred_engine(self, backend: str) -> str:
        """``"scan"`` or ``"step"`` for ``backend`` (``"cpu"``, ``"gpu"``, ``"tpu"``); scan by default."""
        return dict(self.engines).get(backend, "scan")


# Measured in benchmarks/bench_lenet.py: with matmul convolutions (im2col or Toeplitz) the scan engine
# is at least as fast as the per-step one on CPU (and saves the per-step Python dispatch); with XLA's
# convolution the scan epoch is ~4× slower than per-step calls on CPU.
ENGINES = {"im2col": {"cpu": "scan", "gpu": "scan"}, "toeplitz": {"cpu": "scan", "gpu": "scan"},
           "xla": {"cpu": "step", "gpu": "scan"}}
# conv= name → (convolution layer, max-pool layer).
CONV_IMPLEMENTATIONS = {"im2col": (Im2ColConv2D, ReshapeMaxPool2D), "toeplitz": (ToeplitzConv2D, ReshapeMaxPool2D),
                        "xla": (nn.Conv2D, nn.MaxPool2D)}


def _conv_layers(conv: str):
    if conv not in CONV_IMPLEMENTATIONS:
        raise ValueError(f"unknown conv implementation {conv!r}; known: {', '.join(CONV_IMPLEMENTATIONS)}")
    return CONV_IMPLEMENTATIONS[conv]


def lenet5(variant: str = "modern", num_classes: int = 10, conv: str = "toeplitz", dropout: float = 0.0) -> ConvNet:
    """LeNet-5.

    ``variant="1998"`` — the notes' table: input (batch, 32, 32, 1); C1 conv 6@5×5, tanh; S2 2×2
    average pooling; C3 conv 16@5×5 (every C3 map sees all six S2 maps), tanh; S4 2×2 average
    pooling; F5 dense 120, tanh; F6 dense 84, tanh; ``output`` dense ``num_classes`` (logits;
    LeCun's RBF output and trainable subsampling gains are left out). Layers are named C1, S2, …
    ``variant="modern"`` — input (batch, 28, 28, 1); conv 6@5×5 padding 2, ReLU, 2×2 max-pool,
    conv 16@5×5, ReLU, 2×2 max-pool, dense 120-84-``num_classes`` with ReLU (He init); with
    ``dropout > 0`` a :class:`~jaxnets.nn.Dropout` of that rate follows each hidden dense layer's ReLU.
    ``conv`` picks how the convolutions are computed — ``"toeplitz"`` (fastest for these few-channel
    5×5 layers on CPU, see benchmarks/RESULTS.md), ``"im2col"`` or ``"xla"`` —, with the same params
    and outputs. Output: (batch, num_classes) logits.
    """
    Conv, MaxPool = _conv_layers(conv)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"lenet5: dropout must be in [0, 1), got {dropout}")
    if variant == "1998":
        if dropout:
            raise ValueError("lenet5: the 1998 variant has no dropout (it is the notes' table); use variant='modern'")
        t = lambda: nn.Activation("tanh")
        layers = [("C1", Conv(6, 5)), ("C1_tanh", t()), ("S2", nn.AvgPool2D(2)),
                  ("C3", Conv(16, 5)), ("C3_tanh", t()), ("S4", nn.AvgPool2D(2)), ("flatten", nn.Flatten()),
                  ("F5", nn.Dense(120)), ("F5_tanh", t()), ("F6", nn.Dense(84)), ("F6_tanh", t()),
                  ("output", nn.Dense(num_classes))]
        return ConvNet(layers, name="lenet5_1998", engines=ENGINES[conv])
    if variant != "modern":
        raise ValueError(f"lenet5: unknown variant {variant!r}; known: '1998', 'modern'")
    he = "he_normal"
    drop = [nn.Dropout(dropout)] if dropout else []
    layers = [Conv(6, 5, padding=2, w_init=he), nn.Activation("relu"), MaxPool(2),
              Conv(16, 5, w_init=he), nn.Activation("relu"), MaxPool(2), nn.Flatten(),
              nn.Dense(120, w_init=he), nn.Activation("relu"), *drop, nn.Dense(84, w_init=he), nn.Activation("relu"),
              *drop, nn.Dense(num_classes)]
    return ConvNet(layers, name="lenet5", engines=ENGINES[conv])


def alexnet(num_classes: int = 1000, conv: str = "xla") -> ConvNet:
    """AlexNet-like (Krizhevsky et al. 2012, one tower, no local response normalisation) for
    (batch, 227, 227, 3) inputs: conv 96@11×11/4, max-pool 3/2, conv 256@5×5 pad 2, max-pool 3/2,
    conv 384, 384, 256 @3×3 pad 1, max-pool 3/2 → 6×6×256, dense 4096, 4096 with dropout 0.5,
    dense ``num_classes``. 62,378,344 params for 1000 classes. → (batch, num_classes) logits."""
    Conv, _ = _conv_layers(conv)
    relu = lambda: nn.Activation("relu")
    layers = [Conv(96, 11, strides=4), relu(), nn.MaxPool2D(3, 2),
              Conv(256, 5, padding=2), relu(), nn.MaxPool2D(3, 2),
              Conv(384, 3, padding=1), relu(), Conv(384, 3, padding=1), relu(), Conv(256, 3, padding=1), relu(),
              nn.MaxPool2D(3, 2), nn.Flatten(),
              nn.Dense(4096), relu(), nn.Dropout(0.5), nn.Dense(4096), relu(), nn.Dropout(0.5), nn.Dense(num_classes)]
    return ConvNet(layers, name="alexnet", engines=ENGINES[conv])


VGG_CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg(depth: int = 16, num_classes: int = 1000, widths: Sequence[int] = (64, 128, 256, 512, 512),
        dense: int = 4096, conv: str = "xla") -> ConvNet:
    """VGG-like (Simonyan & Zisserman 2014) for (batch, 224, 224, 3) inputs: five stages of 3×3
    convolutions (padding 1, ReLU; ``VGG_CONFIGS[depth]`` per stage, ``widths`` channels) each ended
    by a 2×2 max-pool, then dense ``dense``, ``dense`` (dropout 0.5) and ``num_classes``.
    VGG-16 with 1000 classes has 138,357,544 params. → (batch, num_classes) logits."""
    if depth not in VGG_CONFIGS:
        raise ValueError(f"vgg: unknown depth {depth!r}; known: {', '.join(map(str, VGG_CONFIGS))}")
    Conv, MaxPool = _conv_layers(conv)
    relu = lambda: nn.Activation("relu")
    layers: list = []
    for stage, (repeats, width) in enumerate(zip(VGG_CONFIGS[depth], widths), start=1):
        for i in range(1, repeats + 1):
            layers += [(f"conv{stage}_{i}", Conv(width, 3, padding=1)), (f"relu{stage}_{i}", relu())]
        layers.append((f"pool{stage}", MaxPool(2)))
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Dense(dense)), ("relu_fc1", relu()), ("drop1", nn.Dropout(0.5)),
               ("fc2", nn.Dense(dense)), ("relu_fc2", relu()), ("drop2", nn.Dropout(0.5)), ("output", nn.Dense(num_classes))]
    return ConvNet(layers, name=f"vgg{depth}", engines=ENGINES[conv])


def _conv_bn(Conv, features: int, strides: int = 1, relu: bool = True) -> list:
    layers = [Conv(features, 3, strides=strides, padding=1, use_bias=False, w_init="he_normal"), nn.BatchNorm()]
    return layers + [nn.Activation("relu")] if relu else layers


def resnet(num_classes: int = 10, widths: Sequence[int] = (16, 32, 64), blocks: Sequence[int] = (1, 1, 1),
           conv: str = "im2col") -> ConvNet:
    """A small ResNet for (batch, 28, 28, channels) images (He et al. 2016, CIFAR-style).

    Stem conv 3×3 ``widths[0]`` + batch norm + ReLU; then one stage per width with ``blocks[i]``
    basic blocks (conv-BN-ReLU-conv-BN plus shortcut, then ReLU); each stage after the first starts
    with stride 2 (28 → 14 → 7) and a projection shortcut (1×1 conv + BN); global average pooling;
    dense ``num_classes``. Blocks are named ``stage{s}_block{b}``. → (batch, num_classes) logits.
    """
    if len(widths) != len(blocks):
        raise ValueError(f"resnet: widths {tuple(widths)} and blocks {tuple(blocks)} need the same length")
    Conv, _ = _conv_layers(conv)
    layers: list = [("stem", nn.Sequential(_conv_bn(Conv, widths[0]), name="stem"))]
    previous = widths[0]
    for s, (width, count) in enumerate(zip(widths, blocks), start=1):
        for b in range(1, count + 1):
            stride = 2 if s > 1 and b == 1 else 1
            body = nn.Sequential(_conv_bn(Conv, width, stride) + _conv_bn(Conv, width, relu=False), name="body")
            shortcut = "identity"
            if stride != 1 or width != previous:
                shortcut = nn.Sequential([Conv(width, 1, strides=stride, use_bias=False, w_init="he_normal"),
                                          nn.BatchNorm()], name="projection")
            layers.append((f"stage{s}_block{b}", nn.ResidualBlock(body, shortcut=shortcut)))
            previous = width
    layers += [("pool", nn.GlobalAvgPool()), ("output", nn.Dense(num_classes))]
    return ConvNet(layers, name="resnet", engines=ENGINES[conv])


def class_token(x: jax.Array) -> jax.Array:
    """The first token of each sequence: (batch, tokens, dim) → (batch, dim)."""
    return x[:, 0]


def vit(num_classes: int = 10, patch_size: int = 7, dim: int = 64, depth: int = 4, num_heads: int = 4,
        mlp_dim: int = 128) -> ConvNet:
    """A small vision transformer (Dosovitskiy et al. 2020) for (batch, 28, 28, channels) images:
    patch embedding (``patch_size``² patches → ``dim``, class token, position embeddings), ``depth``
    pre-norm encoder blocks — x + MHA(LN(x)), then x + MLP(LN(x)) with a GELU MLP of ``mlp_dim`` —,
    a final layer norm, the class token, dense ``num_classes``. → (batch, num_classes) logits."""
    layers: list = [("patches", nn.PatchEmbedding(patch_size, dim))]
    for i in range(1, depth + 1):
        attention = nn.Sequential([nn.LayerNorm(), nn.MultiHeadAttention(num_heads)], name="attention")
        mlp = nn.Sequential([nn.LayerNorm(), nn.Dense(mlp_dim), nn.Activation("gelu"), nn.Dense(dim)], name="mlp")
        layers += [(f"block{i}_attention", nn.ResidualBlock(attention, shortcut="identity", activation=None)),
                   (f"block{i}_mlp", nn.ResidualBlock(mlp, shortcut="identity", activation=None))]
    layers += [("norm", nn.LayerNorm()), ("class_token", nn.Lambda(class_token, name="class_token")),
               ("output", nn.Dense(num_classes))]
    return ConvNet(layers, name="vit", engines={"cpu": "scan", "gpu": "scan"})
