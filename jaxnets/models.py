"""Models of the lecture notes, built from :mod:`jaxnets.nn` layers: the perceptron and MLPs;
LeNet-5 (1998 and modern), a small ResNet for 28×28 images, a small vision transformer, and AlexNet-
and VGG-like definitions whose sizes can be inspected (``jaxnets.inspect.summary``) without training.

Every model is a :class:`~jaxnets.nn.Sequential` of plain layers; how their convolutions are computed
is the layers' ``impl`` (``"auto"`` by default: see :mod:`jaxnets.nn.conv_impl`), the same for a model
built here and one a user writes.

>>> import jax
>>> model = lenet5("1998")
>>> params, _ = model.init(jax.random.key(0), (1, 32, 32, 1))
>>> params["C1"]["w"].shape
(5, 5, 1, 6)
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax

from jaxnets import nn
from jaxnets._util import unknown
from jaxnets.initializers import initializer_for
from jaxnets.nn import Activation, Dense, Flatten, Sequential

OUTPUTS = {
    "logits": None,  # raw scores; pair with cross_entropy / binary_cross_entropy
    "linear": None,  # regression; pair with squared_error
    "sigmoid": "sigmoid",
    "softmax": "softmax",
    "tanh": "tanh",
    "step": "step",
}


def perceptron(num_outputs: int = 1, activation: str = "step", w_init: str = "small_uniform") -> Sequential:
    """Rosenblatt's perceptron: one Dense layer and a threshold (or any named activation).

    x: (batch, features) → (batch, num_outputs). With ``activation="identity"`` it gives the
    logits that a loss can train (the hard threshold has zero gradient).
    """
    return Sequential([("dense", Dense(num_outputs, w_init=w_init)), ("output", Activation(activation))],
                      name="perceptron")


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    output: str = "logits",
    w_init: str | None = None,
    flatten: bool = True,
    **activation_options,
) -> Sequential:
    """A multi-layer perceptron.

    Args:
      sizes: hidden layer sizes followed by the output size, e.g. ``[256, 256, 10]``
        (the input size comes from the data at ``init``).
      activation: hidden activation name (see :mod:`jaxnets.activations`).
      output: ``"logits"``/``"linear"`` (no output activation — regression, or logits for
        cross-entropy: 1 unit for binary, K for K classes), or ``"sigmoid"``, ``"softmax"``,
        ``"tanh"``, ``"step"``.
      w_init: initialiser name; default: the one suited to ``activation`` (He for rectifiers,
        Glorot for sigmoid/tanh).
      flatten: start with a Flatten layer so images (batch, h, w, c) can be fed directly.

    Layers are named ``dense1 … denseL`` with activations ``<activation>1 …``; the output
    layer is ``dense<L>``. x: (batch, …) → (batch, sizes[-1]).
    """
    if len(sizes) < 1:
        raise ValueError("mlp: sizes must name at least the output size")
    if output not in OUTPUTS:
        raise ValueError(f"mlp: {unknown('output', output, OUTPUTS)}")
    w_init = w_init or initializer_for(activation)
    layers = [Flatten()] if flatten else []
    for size in sizes[:-1]:
        layers += [Dense(size, w_init=w_init), Activation(activation, **activation_options)]
    layers.append(Dense(sizes[-1], w_init=w_init if OUTPUTS[output] is None else initializer_for(output)))
    if OUTPUTS[output] is not None:
        layers.append(Activation(OUTPUTS[output]))
    return Sequential(layers, name="mlp")


def lenet5(variant: str = "modern", num_classes: int = 10, impl: str = "auto", dropout: float = 0.0) -> Sequential:
    """LeNet-5.

    ``variant="1998"`` — the notes' table: input (batch, 32, 32, 1); C1 conv 6@5×5, tanh; S2 2×2
    average pooling; C3 conv 16@5×5 (every C3 map sees all six S2 maps), tanh; S4 2×2 average
    pooling; F5 dense 120, tanh; F6 dense 84, tanh; ``output`` dense ``num_classes`` (logits;
    LeCun's RBF output and trainable subsampling gains are left out). Layers are named C1, S2, …
    ``variant="modern"`` — input (batch, 28, 28, 1); conv 6@5×5 padding 2, ReLU, 2×2 max-pool,
    conv 16@5×5, ReLU, 2×2 max-pool, dense 120-84-``num_classes`` with ReLU (He init); with
    ``dropout > 0`` a :class:`~jaxnets.nn.Dropout` of that rate follows each hidden dense layer's ReLU.
    ``impl`` is the convolutions' :class:`~jaxnets.nn.Conv2D` ``impl`` (``"auto"``: Toeplitz for these
    few-channel 5×5 layers on CPU, the native convolution on GPU). Output: (batch, num_classes) logits.
    """
    Conv = functools.partial(nn.Conv2D, impl=impl)
    MaxPool = nn.MaxPool2D
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
        return Sequential(layers, name="lenet5_1998")
    if variant != "modern":
        raise ValueError(f"lenet5: {unknown('variant', variant, ('1998', 'modern'))}")
    he = "he_normal"
    drop = [nn.Dropout(dropout)] if dropout else []
    layers = [Conv(6, 5, padding=2, w_init=he), nn.Activation("relu"), MaxPool(2),
              Conv(16, 5, w_init=he), nn.Activation("relu"), MaxPool(2), nn.Flatten(),
              nn.Dense(120, w_init=he), nn.Activation("relu"), *drop, nn.Dense(84, w_init=he), nn.Activation("relu"),
              *drop, nn.Dense(num_classes)]
    return Sequential(layers, name="lenet5")


def alexnet(num_classes: int = 1000, impl: str = "auto") -> Sequential:
    """AlexNet-like (Krizhevsky et al. 2012, one tower, no local response normalisation) for
    (batch, 227, 227, 3) inputs: conv 96@11×11/4, max-pool 3/2, conv 256@5×5 pad 2, max-pool 3/2,
    conv 384, 384, 256 @3×3 pad 1, max-pool 3/2 → 6×6×256, dense 4096, 4096 with dropout 0.5,
    dense ``num_classes``. 62,378,344 params for 1000 classes. → (batch, num_classes) logits."""
    Conv = functools.partial(nn.Conv2D, impl=impl)
    relu = lambda: nn.Activation("relu")
    layers = [Conv(96, 11, strides=4), relu(), nn.MaxPool2D(3, 2),
              Conv(256, 5, padding=2), relu(), nn.MaxPool2D(3, 2),
              Conv(384, 3, padding=1), relu(), Conv(384, 3, padding=1), relu(), Conv(256, 3, padding=1), relu(),
              nn.MaxPool2D(3, 2), nn.Flatten(),
              nn.Dense(4096), relu(), nn.Dropout(0.5), nn.Dense(4096), relu(), nn.Dropout(0.5), nn.Dense(num_classes)]
    return Sequential(layers, name="alexnet")


VGG_CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg(depth: int = 16, num_classes: int = 1000, widths: Sequence[int] = (64, 128, 256, 512, 512),
        dense: int = 4096, impl: str = "auto") -> Sequential:
    """VGG-like (Simonyan & Zisserman 2014) for (batch, 224, 224, 3) inputs: five stages of 3×3
    convolutions (padding 1, ReLU; ``VGG_CONFIGS[depth]`` per stage, ``widths`` channels) each ended
    by a 2×2 max-pool, then dense ``dense``, ``dense`` (dropout 0.5) and ``num_classes``.
    VGG-16 with 1000 classes has 138,357,544 params. → (batch, num_classes) logits."""
    if depth not in VGG_CONFIGS:
        raise ValueError(f"vgg: {unknown('depth', depth, VGG_CONFIGS, plural='depths')}")
    Conv = functools.partial(nn.Conv2D, impl=impl)
    MaxPool = nn.MaxPool2D
    relu = lambda: nn.Activation("relu")
    layers: list = []
    for stage, (repeats, width) in enumerate(zip(VGG_CONFIGS[depth], widths), start=1):
        for i in range(1, repeats + 1):
            layers += [(f"conv{stage}_{i}", Conv(width, 3, padding=1)), (f"relu{stage}_{i}", relu())]
        layers.append((f"pool{stage}", MaxPool(2)))
    layers += [("flatten", nn.Flatten()), ("fc1", nn.Dense(dense)), ("relu_fc1", relu()), ("drop1", nn.Dropout(0.5)),
               ("fc2", nn.Dense(dense)), ("relu_fc2", relu()), ("drop2", nn.Dropout(0.5)), ("output", nn.Dense(num_classes))]
    return Sequential(layers, name=f"vgg{depth}")


def _conv_bn(Conv, features: int, strides: int = 1, relu: bool = True) -> list:
    layers = [Conv(features, 3, strides=strides, padding=1, use_bias=False, w_init="he_normal"), nn.BatchNorm()]
    return layers + [nn.Activation("relu")] if relu else layers


def resnet(num_classes: int = 10, widths: Sequence[int] = (16, 32, 64), blocks: Sequence[int] = (1, 1, 1),
           impl: str = "auto") -> Sequential:
    """A small ResNet for (batch, 28, 28, channels) images (He et al. 2016, CIFAR-style).

    Stem conv 3×3 ``widths[0]`` + batch norm + ReLU; then one stage per width with ``blocks[i]``
    basic blocks (conv-BN-ReLU-conv-BN plus shortcut, then ReLU); each stage after the first starts
    with stride 2 (28 → 14 → 7) and a projection shortcut (1×1 conv + BN); global average pooling;
    dense ``num_classes``. Blocks are named ``stage{s}_block{b}``. → (batch, num_classes) logits.
    """
    if len(widths) != len(blocks):
        raise ValueError(f"resnet: widths {tuple(widths)} and blocks {tuple(blocks)} need the same length")
    Conv = functools.partial(nn.Conv2D, impl=impl)
    layers: list = [("stem", Sequential(_conv_bn(Conv, widths[0]), name="stem"))]
    previous = widths[0]
    for s, (width, count) in enumerate(zip(widths, blocks), start=1):
        for b in range(1, count + 1):
            stride = 2 if s > 1 and b == 1 else 1
            body = Sequential(_conv_bn(Conv, width, stride) + _conv_bn(Conv, width, relu=False), name="body")
            shortcut = "identity"
            if stride != 1 or width != previous:
                shortcut = Sequential([Conv(width, 1, strides=stride, use_bias=False, w_init="he_normal"),
                                          nn.BatchNorm()], name="projection")
            layers.append((f"stage{s}_block{b}", nn.ResidualBlock(body, shortcut=shortcut)))
            previous = width
    layers += [("pool", nn.GlobalAvgPool()), ("output", nn.Dense(num_classes))]
    return Sequential(layers, name="resnet")


def inception_net(num_classes: int = 10, widths: Sequence[int] = (32, 64, 96), impl: str = "auto") -> Sequential:
    """A small GoogLeNet-style network for (batch, 28, 28, channels) images, "no fully connected layers,
    convolutions broken down into smaller ones" (Szegedy et al. 2014): a 3×3 stem of ``widths[0]`` with
    ReLU and a 2×2 max-pool (→ 14×14); two Inception modules (:func:`jaxnets.nn.inception`, 1×1
    reductions before the 3×3 and 5×5 branches); a 2×2 max-pool (→ 7×7); one more module; global
    average pooling; dense ``num_classes``. → (batch, num_classes) logits."""
    stem, mid, top = widths

    def module(out: int, name: str):  # out channels split 1×1 : 3×3 : 5×5 : pool ≈ 1/4 : 1/2 : 1/8 : 1/8
        return nn.inception(out // 4, out // 4, out // 2, out // 16, out // 8, out // 8, impl=impl, name=name)

    layers = [("stem", nn.Conv2D(stem, 3, padding="SAME", w_init="he_normal", impl=impl)), ("stem_relu", Activation("relu")),
              ("pool1", nn.MaxPool2D(2)), ("inception1", module(mid, "inception1")),
              ("inception2", module(mid, "inception2")), ("pool2", nn.MaxPool2D(2)),
              ("inception3", module(top, "inception3")), ("pool", nn.GlobalAvgPool()), ("output", Dense(num_classes))]
    return Sequential(layers, name="inception_net")


def class_token(x: jax.Array) -> jax.Array:
    """The first token of each sequence: (batch, tokens, dim) → (batch, dim)."""
    return x[:, 0]


def vit(num_classes: int = 10, patch_size: int = 7, dim: int = 64, depth: int = 4, num_heads: int = 4,
        mlp_dim: int = 128) -> Sequential:
    """A small vision transformer (Dosovitskiy et al. 2020) for (batch, 28, 28, channels) images:
    patch embedding (``patch_size``² patches → ``dim``, class token, position embeddings), ``depth``
    pre-norm encoder blocks — x + MHA(LN(x)), then x + MLP(LN(x)) with a GELU MLP of ``mlp_dim`` —,
    a final layer norm, the class token, dense ``num_classes``. → (batch, num_classes) logits."""
    layers: list = [("patches", nn.PatchEmbedding(patch_size, dim))]
    for i in range(1, depth + 1):
        attention = Sequential([nn.LayerNorm(), nn.MultiHeadAttention(num_heads)], name="attention")
        mlp = Sequential([nn.LayerNorm(), nn.Dense(mlp_dim), nn.Activation("gelu"), nn.Dense(dim)], name="mlp")
        layers += [(f"block{i}_attention", nn.ResidualBlock(attention, shortcut="identity", activation=None)),
                   (f"block{i}_mlp", nn.ResidualBlock(mlp, shortcut="identity", activation=None))]
    layers += [("norm", nn.LayerNorm()), ("class_token", nn.Lambda(class_token, name="class_token")),
               ("output", nn.Dense(num_classes))]
    return Sequential(layers, name="vit")
