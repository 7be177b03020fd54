"""The models: output shapes (hand-computed), parameter counts of the classic networks, the LeNet
variants' layers, batch-norm state, dropout, the engine ``fit`` picks for them, and bad input. (The
convolutions' formulations are tested in test_nn_conv.py, the pools' in test_nn_pool.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import models, nn, train


def count(model, shape):
    params, _ = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), shape))
    return sum(int(np.prod(l.shape)) for l in jax.tree_util.tree_leaves(params))


MODELS = [  # (model, input shape, output shape, parameter count)
    (models.lenet5("1998"), (2, 32, 32, 1), (2, 10), 61_706),
    (models.lenet5("modern"), (2, 28, 28, 1), (2, 10), 61_706),
    (models.lenet5("modern", impl="xla"), (2, 28, 28, 1), (2, 10), 61_706),
    (models.lenet5("modern", impl="im2col"), (2, 28, 28, 1), (2, 10), 61_706),
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
    assert type(old["C1"]) is nn.Conv2D and old["C1"].impl == "auto"  # plain layers, as a user writes them
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


def test_fit_uses_the_scanned_epoch_for_every_model_and_bad_arguments():
    # the scanned epoch is as fast as the step engine with every convolution impl (see conv_impl.eigen_conv)
    assert train.choose_engine("auto") == "scan"
    assert train.choose_engine("step") == "step"
    with pytest.raises(ValueError, match="unknown engine 'loop'; known engines: auto, scan, step"):
        train.choose_engine("loop")
    with pytest.raises(ValueError, match="variant"):
        models.lenet5("1989")
    with pytest.raises(ValueError, match="unknown impl 'fft'; known impls: auto, xla, im2col, toeplitz"):
        models.lenet5(impl="fft")
    with pytest.raises(ValueError, match="depth"):
        models.vgg(17)
    with pytest.raises(nn.LayerError, match="C1.*channel|C1.*larger"):
        models.lenet5("1998").init(jax.random.PRNGKey(0), (1, 4, 4, 1))
