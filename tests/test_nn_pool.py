"""Pooling against a direct NumPy loop (every padding/stride case, 1-D and 2-D, several channels, and
both ``impl`` of non-overlapping windows: reduce_window and reshape), float64 gradients against central
differences, the gradient at ties, shapes, jit, and bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_jit_equals_eager, assert_output_shape_agrees, central_difference_grad
from jaxnets.nn import (AvgPool1D, AvgPool2D, Conv2D, GlobalAvgPool, LayerError, MaxPool1D, MaxPool2D,
                        Sequential)

def numpy_pool(x, window, strides, pads, kind, count_include_pad=True):
    """Direct loop over output positions; padded cells are −∞ for max and 0 for the average."""
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    real = np.pad(np.ones(x.shape[1:-1]), pads)
    out = [(n - k) // s + 1 for n, k, s in zip(xp.shape[1:-1], window, strides)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for o in np.ndindex(*out):
        region = tuple(slice(oi * s, oi * s + k) for oi, s, k in zip(o, strides, window))
        block = xp[(slice(None), *region)].reshape(x.shape[0], -1, x.shape[-1])  # (batch, window cells, channels)
        if kind == "max":
            y[(slice(None), *o)] = block.max(axis=1)
        else:
            count = np.prod(window) if count_include_pad else real[region].sum()
            y[(slice(None), *o)] = block.sum(axis=1) / count
    return y


def check_against_numpy(layer, x_shape, kind, count_include_pad=True):
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    y, _ = layer.apply({}, {}, x)
    expected = numpy_pool(x.astype(np.float64), layer.window, layer.strides, layer.pads(x.shape), kind,
                          count_include_pad)
    assert y.shape == expected.shape == layer.output_shape(x.shape)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


POOL_CASES = list(itertools.product(["VALID", "SAME", ((1, 0), (1, 2))], [None, 1, (1, 2)]))


@pytest.mark.parametrize("padding,strides", POOL_CASES)
def test_maxpool2d_matches_numpy_loop(padding, strides):
    check_against_numpy(MaxPool2D((2, 3), strides=strides, padding=padding), (2, 7, 8, 3), "max")


@pytest.mark.parametrize("impl", ["reduce_window", "reshape", "auto"])
@pytest.mark.parametrize("cls,kind,shape", [(MaxPool2D, "max", (2, 7, 8, 3)), (AvgPool2D, "avg", (2, 7, 8, 3)),
                                            (MaxPool1D, "max", (2, 9, 4)), (AvgPool1D, "avg", (2, 9, 4))])
def test_non_overlapping_pools_match_numpy_with_every_impl(cls, kind, shape, impl):
    """Windows that tile the input (strides = window, no padding; the remainder dropped, as VALID does)."""
    check_against_numpy(cls(2, impl=impl), shape, kind)


def test_reshape_impl_needs_non_overlapping_unpadded_windows():
    with pytest.raises(LayerError, match=r"impl='reshape' needs non-overlapping, unpadded windows"):
        MaxPool2D(3, strides=2, impl="reshape").apply({}, {}, np.zeros((1, 7, 7, 1), np.float32))
    assert MaxPool2D(2).resolved_impl((1, 8, 8, 1), "cpu") == "reshape"
    assert MaxPool2D(2).resolved_impl((1, 8, 8, 1), "gpu") == "reduce_window"
    assert MaxPool2D(3, strides=2).resolved_impl((1, 8, 8, 1), "cpu") == "reduce_window"
    with pytest.raises(ValueError, match="unknown impl 'pad'"):
        MaxPool2D(2, impl="pad")


def test_gradient_at_ties_reshape_shares_it_reduce_window_gives_it_to_one():
    """The documented difference between the max-pool impls: a window whose four values are equal."""
    x = jnp.ones((1, 2, 2, 1))
    shared = jax.grad(lambda v: MaxPool2D(2, impl="reshape").apply({}, {}, v)[0].sum())(x)
    one = jax.grad(lambda v: MaxPool2D(2, impl="reduce_window").apply({}, {}, v)[0].sum())(x)
    np.testing.assert_allclose(np.asarray(shared).ravel(), [0.25] * 4)
    assert sorted(np.asarray(one).ravel().tolist()) == [0.0, 0.0, 0.0, 1.0]
    # three tied maxima: split down the tree of pairwise maxima (rows first, then the two rows), all of it
    # to the tied values; what is not a maximum gets nothing
    three = jax.grad(lambda v: MaxPool2D(2, impl="reshape").apply({}, {}, v)[0].sum())(
        jnp.array([1.0, 1.0, 1.0, 0.0]).reshape(1, 2, 2, 1))
    np.testing.assert_allclose(np.asarray(three).ravel(), [0.25, 0.25, 0.5, 0.0])


@pytest.mark.parametrize("padding,strides", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool2d_matches_numpy_loop(padding, strides, count_include_pad):
    layer = AvgPool2D((2, 3), strides=strides, padding=padding, count_include_pad=count_include_pad)
    check_against_numpy(layer, (2, 7, 8, 3), "avg", count_include_pad)


@pytest.mark.parametrize("padding,strides", list(itertools.product(["VALID", "SAME", (2, 1)], [None, 1, 2])))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool1d_matches_numpy_loop(padding, strides, kind):
    cls = MaxPool1D if kind == "max" else AvgPool1D
    check_against_numpy(cls(3, strides=strides, padding=padding), (2, 10, 4), kind)


def test_lenet_subsampling_by_hand():
    """2×2 average pooling of a 4×4 ramp: each output is the mean of its block."""
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    y, _ = AvgPool2D(2).apply({}, {}, x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    y, _ = MaxPool2D(2).apply({}, {}, x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 7], [13, 15]])


def test_global_avg_pool_is_the_mean_over_space(key):
    x = jax.random.normal(key, (3, 4, 5, 6))
    y, _ = GlobalAvgPool().apply({}, {}, x)
    np.testing.assert_allclose(y, np.asarray(x).mean(axis=(1, 2)), rtol=1e-6, atol=1e-7)
    tokens = jax.random.normal(key, (2, 7, 4))
    np.testing.assert_allclose(GlobalAvgPool().apply({}, {}, tokens)[0], np.asarray(tokens).mean(axis=1), rtol=1e-6)


LAYERS = [
    (MaxPool2D(2), (2, 28, 28, 6), (2, 14, 14, 6)),
    (MaxPool2D(3, strides=2, padding="SAME"), (1, 7, 7, 2), (1, 4, 4, 2)),
    (AvgPool2D(2), (2, 28, 28, 6), (2, 14, 14, 6)),
    (AvgPool2D((2, 1), strides=1, padding=1, count_include_pad=False), (1, 5, 5, 3), (1, 6, 7, 3)),
    (MaxPool1D(2), (2, 9, 3), (2, 4, 3)),
    (AvgPool1D(3, strides=1, padding="SAME"), (2, 9, 3), (2, 9, 3)),
    (GlobalAvgPool(), (2, 5, 5, 8), (2, 8)),
    (GlobalAvgPool(), (2, 5, 8), (2, 8)),
    (Sequential([Conv2D(4, 3), MaxPool2D(2), GlobalAvgPool()]), (2, 10, 10, 1), (2, 4)),
]
IDS = [f"{type(layer).__name__}-{i}" for i, (layer, _, _) in enumerate(LAYERS)]


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_output_shape_agrees_with_apply(layer, in_shape, out_shape, key):
    assert_output_shape_agrees(layer, in_shape, out_shape, key)


@pytest.mark.parametrize("layer,in_shape,out_shape", LAYERS, ids=IDS)
def test_jit_equals_no_jit(layer, in_shape, out_shape, key):
    assert_jit_equals_eager(layer, in_shape, rtol=1e-6, atol=1e-6)


GRAD_LAYERS = [
    (MaxPool2D(2, strides=1, padding="SAME"), (1, 3, 4, 2)),
    (MaxPool2D(2, impl="reshape"), (1, 4, 4, 2)),
    (MaxPool2D(2, impl="reshape"), (1, 5, 4, 2)),  # a remainder row that fills no window: no gradient
    (AvgPool2D(2, impl="reshape"), (1, 4, 5, 2)),
    (AvgPool2D(2, strides=1, padding=1, count_include_pad=False), (1, 3, 3, 2)),
    (MaxPool1D(2), (2, 5, 2)),
    (AvgPool1D(3, strides=2, padding="SAME"), (2, 5, 2)),
    (GlobalAvgPool(), (2, 3, 3, 2)),
]


@pytest.mark.parametrize("layer,in_shape", GRAD_LAYERS, ids=[type(l).__name__ for l, _ in GRAD_LAYERS])
def test_gradients_match_central_differences_float64(layer, in_shape, key):
    with jax.enable_x64(True):
        x = np.asarray(jax.random.normal(key, in_shape, jnp.float64))  # distinct values: max is differentiable
        target = np.asarray(jax.random.normal(jax.random.PRNGKey(1), layer.output_shape(in_shape), jnp.float64))
        loss = jax.jit(lambda v: jnp.sum(layer.apply({}, {}, v)[0] * target))
        numeric = central_difference_grad(loss, x)
        np.testing.assert_allclose(jax.grad(loss)(x), numeric, rtol=1e-6, atol=1e-8)


def test_window_larger_than_padded_input_names_shapes_and_constraint():
    model = Sequential([("conv", Conv2D(2, 3)), ("pool", MaxPool2D(3))])
    with pytest.raises(LayerError, match=r"layer 'pool' \(MaxPool2D\): window 3×3 is larger than the padded input "
                                         r"2×2 \(input 2×2, padding .*\); each spatial size \+ padding must be >= the window"):
        model.output_shape((1, 4, 4, 1))
    assert AvgPool2D(3, padding=1).output_shape((1, 2, 2, 1)) == (1, 1, 1, 1)


@pytest.mark.parametrize("layer,shape,match", [
    (MaxPool2D(2), (4, 4, 1), r"\(MaxPool2D\): expected input of rank 4 \(batch, height, width, channels\), got shape \(4, 4, 1\)"),
    (AvgPool1D(2), (1, 4, 4, 1), r"expected input of rank 3 \(batch, width, channels\)"),
    (GlobalAvgPool(), (4, 3), r"expected input of shape \(batch, \*spatial, channels\).*got \(4, 3\)"),
])
def test_wrong_rank_names_the_expected_layout(layer, shape, match):
    with pytest.raises(LayerError, match=match):
        layer.output_shape(shape)
    with pytest.raises(LayerError, match=match):
        layer.apply({}, {}, jnp.ones(shape))


def test_bad_hyperparameters_are_rejected_when_built():
    with pytest.raises(ValueError, match="window must be a positive int or 2 positive ints"):
        MaxPool2D((2, 2, 2))
    with pytest.raises(ValueError, match="strides must be"):
        AvgPool1D(2, strides=0)
    with pytest.raises(ValueError, match="padding must be"):
        MaxPool2D(2, padding="FULL")
