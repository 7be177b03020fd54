"""Property-based tests (hypothesis) over every layer's hyper-parameters and input shapes: for any
layer that can be built and any input shape, either ``init``, ``output_shape`` and ``apply`` all
work — and agree on the output shape, with ``jit`` equal to eager — or all three raise a
``LayerError`` that names the layer. Never another exception type, never a disagreement.

Examples are drawn with a fixed seed (``derandomize``), so CI runs the same cases every time."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxnets import nn
from jaxnets.nn import LayerError

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

small = st.integers(1, 4)
dims = st.integers(1, 7)


def shapes(min_rank=1, max_rank=5):
    return st.lists(dims, min_size=min_rank, max_size=max_rank).map(tuple)


def paddings(ndim):
    pair = st.tuples(st.integers(0, 2), st.integers(0, 2))
    return st.one_of(st.sampled_from(["SAME", "VALID"]), st.integers(0, 2),
                     st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim).map(tuple),
                     st.lists(pair, min_size=ndim, max_size=ndim).map(tuple))


def conv_layers(cls, ndim):
    return st.builds(cls, features=small, kernel_size=st.integers(1, 4), strides=st.integers(1, 3),
                     padding=paddings(ndim), dilation=st.integers(1, 2), use_bias=st.booleans(),
                     impl=st.sampled_from(["auto", "xla", "im2col", "toeplitz"]), flip_kernel=st.booleans())


def pool_layers(cls, ndim):
    return st.builds(cls, window=st.integers(1, 3), strides=st.one_of(st.none(), st.integers(1, 3)),
                     padding=paddings(ndim), impl=st.sampled_from(["auto", "reduce_window", "reshape"]))


LAYERS = {
    "Dense": st.builds(nn.Dense, features=small, use_bias=st.booleans()),
    "Activation": st.sampled_from([nn.Activation("relu"), nn.Activation("elu", alpha=0.5), nn.Activation("prelu"),
                                   nn.Activation("softmax"), nn.Activation("step")]),
    "Flatten": st.just(nn.Flatten()),
    "Conv1D": conv_layers(nn.Conv1D, 1),
    "Conv2D": conv_layers(nn.Conv2D, 2),
    "LocallyConnected2D": st.builds(nn.LocallyConnected2D, features=small, kernel_size=st.integers(1, 3),
                                    strides=st.integers(1, 2), padding=paddings(2)),
    "MaxPool1D": pool_layers(nn.MaxPool1D, 1),
    "MaxPool2D": pool_layers(nn.MaxPool2D, 2),
    "AvgPool1D": pool_layers(nn.AvgPool1D, 1),
    "AvgPool2D": pool_layers(nn.AvgPool2D, 2),
    "GlobalAvgPool": st.just(nn.GlobalAvgPool()),
    "BatchNorm": st.builds(nn.BatchNorm, momentum=st.floats(0.0, 0.99)),
    "LayerNorm": st.just(nn.LayerNorm()),
    "Dropout": st.builds(nn.Dropout, rate=st.floats(0.0, 0.9)),
    "MultiHeadAttention": st.builds(nn.MultiHeadAttention, num_heads=st.integers(1, 3),
                                    qkv_features=st.one_of(st.none(), st.sampled_from([2, 4, 6])),
                                    causal=st.booleans()),
    "PatchEmbedding": st.builds(nn.PatchEmbedding, patch_size=st.integers(1, 3), dim=small),
    "ResidualBlock": st.builds(lambda f, k: nn.ResidualBlock(nn.Sequential([nn.Conv2D(f, k, padding="SAME"),
                                                                             nn.Activation("relu")])),
                               small, st.integers(1, 3)),
    "Sequential": st.builds(lambda f, k: nn.Sequential([nn.Conv2D(f, k), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(3)]),
                            small, st.integers(1, 3)),
}


def outcome(fn):
    """``("ok", value)`` or ``("LayerError", message)``; any other exception propagates (a failure)."""
    try:
        return "ok", fn()
    except LayerError as error:
        return "LayerError", str(error)


def check_layer(layer, shape):
    key = jax.random.PRNGKey(0)
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
    train = isinstance(layer, (nn.BatchNorm, nn.Dropout))
    init = outcome(lambda: layer.init(key, shape))
    inferred = outcome(lambda: tuple(layer.output_shape(shape)))
    if init[0] == "ok":
        params, state = init[1]
        applied = outcome(lambda: layer.apply(params, state, x, key=key, train=train))
    else:
        applied = init
    kinds = {init[0], inferred[0], applied[0]}
    assert len(kinds) == 1, f"{layer} on {shape}: init {init[0]}, output_shape {inferred[0]}, apply {applied[0]}"
    if kinds == {"LayerError"}:
        for message in (init[1], inferred[1]):
            assert f"({type(layer).__name__})" in message or "layer '" in message, message
        return
    y, _ = applied[1]
    assert y.shape == inferred[1], (layer, shape, y.shape, inferred[1])
    compiled, _ = jax.jit(lambda p, s, v: layer.apply(p, s, v, key=key, train=train))(params, state, x)
    np.testing.assert_allclose(compiled, y, rtol=1e-4, atol=1e-5)


def make_test(name):
    @SETTINGS
    @given(layer=LAYERS[name], shape=shapes())
    def test(layer, shape):
        check_layer(layer, shape)

    test.__name__ = f"test_{name}_agrees_with_its_output_shape_or_raises_a_layer_error"
    return test


for _name in LAYERS:
    globals()[f"test_{_name}"] = make_test(_name)
