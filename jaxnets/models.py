"""Models of the lecture notes, built from :mod:`jaxnets.nn` layers."""

from __future__ import annotations

from typing import Sequence

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
        raise ValueError(f"mlp: unknown output {output!r}; known outputs: {', '.join(OUTPUTS)}")
    w_init = w_init or initializer_for(activation)
    layers = [Flatten()] if flatten else []
    for size in sizes[:-1]:
        layers += [Dense(size, w_init=w_init), Activation(activation, **activation_options)]
    layers.append(Dense(sizes[-1], w_init=w_init if OUTPUTS[output] is None else initializer_for(output)))
    if OUTPUTS[output] is not None:
        layers.append(Activation(OUTPUTS[output]))
    return Sequential(layers, name="mlp")


# The convolutional zoo lives in jaxnets/zoo.py (kept apart so each module stays short).
from jaxnets.zoo import ConvNet as ConvNet  # noqa: E402
from jaxnets.zoo import alexnet as alexnet  # noqa: E402
from jaxnets.zoo import lenet5 as lenet5  # noqa: E402
from jaxnets.zoo import vgg as vgg  # noqa: E402
from jaxnets.zoo import resnet as resnet  # noqa: E402
from jaxnets.zoo import vit as vit  # noqa: E402
