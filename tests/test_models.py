"""The model zoo: output shapes (hand-computed), parameter counts of the classic networks, the
im2col and Toeplitz convolutions and reshape max-pool against lax/NumPy references, engines, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import central_difference_grad
from jaxnets import models, nn, zoo


def count(model, shape):
    params, _ = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), shape))
    return sum(int(np.prod(l.shape)) for l in jax.tree_util.tree_leaves(params))


MODELS = [  # (model, input shape, output shape, parameter count)
    (models.lenet5("1998"), (2, 32, 32, 1), (2, 10), 61_706),
    (models.lenet5("modern"), (2, 28, 28, 1), (2, 10), 61_706),
    (models.lenet5("modern", conv="xla"), (2, 28, 28, 1), (2, 10), 61_706),
    (models.lenet5("modern", conv="im2col"), (2, 28, 28, 1), (2, 10), 61_706),
    (models.resnet(widths=(4, 8), blocks=(1, 2)), (2, 28, 28, 1), (2, 10), None),
    (models.vit(dim=16, depth=1, num_heads=2, mlp_dim=16), (2, 28, 28, 1), (2, 10), None),
]


@pytest.mark.parametrize("model,in_shape,out_shape,n_params", MODELS, ids=lambda v: getattr(v, "name", None))
def test_forward_shapes_and_counts(model, in_shape, out_shape, n_params, key):
    # Shapes are traced without compiling (eval_shape); numerics are tested below and in test_nn_*.
    x = jax.ShapeDtypeStruct(in_shape, jnp.float32)
    params, state = jax.eval_shape(lambda: model.init(key, x))
    y, new_state = jax.eval_shape(lambda p, s, v: model.apply(p, s, v, key=key, train=True), params, state, x)
    assert y.shape == out_shape == model.output_shape(in_shape)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    if n_params is not None:
        assert count(model, in_shape) == n_params


def test_classic_parameter_counts():
    assert count(models.alexnet(), (1, 227, 227, 3)) == 62_378_344  # Krizhevsky et al., one tower
    assert count(models.vgg(16), (1, 224, 224, 3)) == 138_357_544  # Simonyan & Zisserman, VGG-16
    assert count(models.vgg(11), (1, 224, 224, 3)) == 132_863_336
    assert models.alexnet().output_shape((1, 227, 227, 3)) == (1, 1000)


def test_lenet_variants_use_the_notes_layers():
    old = models.lenet5("1998")
    assert [n for n, _ in old.layers if not n.endswith(("_tanh", "flatten"))] == ["C1", "S2", "C3", "S4", "F5", "F6", "output"]
    assert isinstance(old["S2"], nn.AvgPool2D) and old["C1_tanh"].name == "tanh"
    assert isinstance(old["C1"], zoo.ToeplitzConv2D) and isinstance(old["C1"], nn.Conv2D)  # the default conv=
    modern = models.lenet5("modern")
    assert isinstance(modern["maxpool1"], nn.MaxPool2D) and modern["relu1"].name == "relu"


def test_resnet_has_batch_norm_state_that_updates_in_training(key):
    model = models.resnet(widths=(4, 8), blocks=(1, 1))
    x = jax.random.normal(key, (4, 28, 28, 1))
    params, state = model.init(key, x)
    assert state["stage2_block1"]["shortcut"]["batchnorm1"]["mean"].shape == (8,)
    apply = jax.jit(model.apply, static_argnames="train")
    _, new_state = apply(params, state, x, train=True)
    _, eval_state = apply(params, state, x, train=False)
    assert not np.allclose(new_state["stem"]["batchnorm1"]["mean"], state["stem"]["batchnorm1"]["mean"])
    np.testing.assert_array_equal(eval_state["stem"]["batchnorm1"]["mean"], state["stem"]["batchnorm1"]["mean"])


CONV_CASES = [  # (input shape, kernel (kh, kw, c, f), strides, padding, dilation)
    ((2, 9, 8, 3), (3, 3, 3, 4), 1, "SAME", 1),
    ((2, 9, 8, 3), (3, 2, 3, 4), (2, 1), "VALID", 1),
    ((1, 10, 11, 2), (3, 3, 2, 5), 2, ((1, 2), (0, 1)), (2, 1)),
    ((3, 7, 7, 1), (5, 5, 1, 6), 1, 2, 1),
    ((2, 6, 6, 4), (1, 1, 4, 3), 2, "SAME", 1),
    ((2, 9, 10, 2), (2, 3, 2, 3), (1, 3), ((0, 1), (2, 0)), (3, 2)),
]
MATMUL_CONVS = [zoo.Im2ColConv2D, zoo.ToeplitzConv2D]


@pytest.mark.parametrize("Conv", MATMUL_CONVS)
@pytest.mark.parametrize("in_shape,kernel,strides,padding,dilation", CONV_CASES)
def test_matmul_conv_equals_lax_conv(Conv, in_shape, kernel, strides, padding, dilation, key):
    fast = Conv(kernel[-1], kernel[:2], strides=strides, padding=padding, dilation=dilation)
    plain = nn.Conv2D(kernel[-1], kernel[:2], strides=strides, padding=padding, dilation=dilation)
    x = jax.random.normal(key, in_shape)
    params, state = plain.init(key, x)
    expected, _ = plain.apply(params, state, x)
    got, _ = fast.apply(params, state, x)
    assert got.shape == fast.output_shape(in_shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_toeplitz_tiles_all_give_the_convolution(key):
    x = jax.random.normal(key, (2, 7, 12, 3))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
    conv = lambda **kw: zoo.toeplitz_conv2d(x, w, (1, 2), ((1, 1), (1, 1)), (1, 1), **kw)  # out width 6
    expected = jax.lax.conv_general_dilated(x, w, (1, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    for tile in (1, 2, 3, 6):
        np.testing.assert_allclose(conv(tile=tile), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="positive divisor of the output width 6, got 4"):
        conv(tile=4)
    # largest divisor of the output width up to the kernel width: LeNet's C1 (28 wide), C3 (10 wide)
    assert (zoo.default_tile(28, 5), zoo.default_tile(10, 5), zoo.default_tile(7, 3), zoo.default_tile(2, 5)) == (4, 5, 1, 2)


@pytest.mark.parametrize("Conv", MATMUL_CONVS)
@pytest.mark.parametrize("strides,dilation", [(2, 1), ((1, 2), (2, 1))])
def test_matmul_conv_gradient_matches_central_differences(Conv, strides, dilation, key):
    with jax.enable_x64(True):
        layer = Conv(2, 3, strides=strides, padding="SAME", dilation=dilation)
        x = np.asarray(jax.random.normal(key, (1, 5, 4, 2), jnp.float64))
        params, _ = layer.init(key, x)
        w = np.asarray(params["w"])
        f = lambda w_: jnp.sum(jnp.sin(layer.apply({"w": w_, "b": params["b"]}, {}, x)[0]))
        g = jax.grad(f)(jnp.asarray(w))
        np.testing.assert_allclose(g, central_difference_grad(f, w), rtol=1e-6, atol=1e-8)
        fx = lambda x_: jnp.sum(jnp.sin(layer.apply(params, {}, x_)[0]))
        np.testing.assert_allclose(jax.grad(fx)(jnp.asarray(x)), central_difference_grad(fx, x), rtol=1e-6, atol=1e-8)


def test_reshape_max_pool_equals_numpy(key):
    x = np.asarray(jax.random.normal(key, (2, 7, 6, 3)))
    y, _ = zoo.ReshapeMaxPool2D(2).apply({}, {}, x)
    expected = np.array([[[[x[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c].max() for c in range(3)] for j in range(3)]
                          for i in range(3)] for n in range(2)])
    np.testing.assert_array_equal(y, expected)
    overlapping, _ = zoo.ReshapeMaxPool2D(3, strides=2).apply({}, {}, x)  # falls back to reduce_window
    reference, _ = nn.MaxPool2D(3, strides=2).apply({}, {}, x)
    np.testing.assert_array_equal(overlapping, reference)


def test_modern_lenet_dropout_follows_each_hidden_dense_layer(key):
    model = models.lenet5("modern", dropout=0.3)
    kinds = [type(layer).__name__ for _, layer in model.layers]
    assert kinds[-7:] == ["Dense", "Activation", "Dropout", "Dense", "Activation", "Dropout", "Dense"]
    params, state = model.init(key, (4, 28, 28, 1))
    assert sum(v.size for v in jax.tree_util.tree_leaves(params)) == 61_706  # dropout adds no parameters
    x = jax.random.normal(key, (4, 28, 28, 1))
    evaluation = model.apply(params, state, x)[0]
    np.testing.assert_array_equal(evaluation, models.lenet5("modern").apply(params, state, x)[0])
    trained = model.apply(params, state, x, key=jax.random.PRNGKey(1), train=True)[0]
    assert not np.allclose(trained, evaluation)
    with pytest.raises(ValueError, match="1998 variant has no dropout"):
        models.lenet5("1998", dropout=0.5)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        models.lenet5(dropout=1.0)


def test_preferred_engine_and_bad_arguments():
    assert models.lenet5().preferred_engine("cpu") == "scan"
    assert models.lenet5(conv="xla").preferred_engine("cpu") == "step"
    with pytest.raises(ValueError, match="variant"):
        models.lenet5("1989")
    with pytest.raises(ValueError, match="conv implementation"):
        models.lenet5(conv="fft")
    with pytest.raises(ValueError, match="depth"):
        models.vgg(17)
    with pytest.raises(nn.LayerError, match="C1.*channel|C1.*larger"):
        models.lenet5("1998").init(jax.random.PRNGKey(0), (1, 4, 4, 1))
