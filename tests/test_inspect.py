"""The summary table: the lecture notes' LeNet-5 table exactly, hand-computed counts for padded and
strided layers, residual blocks, the CLI, gradient norms and activation statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import inspect, models, nn

NOTES_TABLE = {  # name: (units, connections, weights) — the lecture notes' LeNet-5 (1998) table
    "C1": (4704, 117_600, 150), "S2": (1176, 4704, 0), "C3": (1600, 240_000, 2400), "S4": (400, 1600, 0),
    "F5": (120, 48_000, 48_000), "F6": (84, 10_080, 10_080), "output": (10, 840, 840),
}


def test_lenet5_1998_reproduces_the_notes_table(capsys):
    rows = inspect.summary(models.lenet5("1998"), (32, 32, 1))
    assert [r.name for r in rows] == list(NOTES_TABLE)
    for name, (units, connections, weights) in NOTES_TABLE.items():
        assert (rows[name].units, rows[name].connections, rows[name].weights) == (units, connections, weights), name
    assert rows["C1"].output_shape == (28, 28, 6) and rows["C1"].biases == 6 and rows["S4"].output_shape == (400,)
    printed = capsys.readouterr().out
    assert "117,600" in printed and "C1" in printed and "total" in printed


def test_counts_for_padding_stride_and_unfolded_rows():
    model = nn.Sequential([nn.Conv2D(2, 3, padding=1), nn.Activation("relu"), nn.MaxPool2D(2),
                           nn.Conv2D(1, 2, strides=2), nn.Flatten(), nn.Dense(3)])
    rows = inspect.summary(model, (4, 4, 1), fold=False, print_table=False)
    assert len(rows) == 6
    conv = rows["conv1"]
    # 3×3 kernel, padding 1 on a 4×4 input: per axis the taps landing on real pixels are 2+3+3+2 = 10.
    assert conv.connections == 10 * 10 * 1 * 2 and conv.units == 32 and conv.weights == 18 and conv.biases == 2
    assert conv.flops == 2 * 200 + 32
    assert rows["maxpool1"].connections == 32 and rows["maxpool1"].output_shape == (2, 2, 2)
    assert rows["conv2"].connections == 1 * 8 and rows["conv2"].output_shape == (1, 1, 1)
    assert rows["dense1"].connections == 3 and rows["dense1"].weights == 3 and rows["dense1"].biases == 3
    assert rows.total.weights == 18 + 8 + 3


def test_locally_connected_has_conv_wiring_but_unshared_weights():
    conv = inspect.summary(nn.Conv2D(4, 3), (8, 8, 2), print_table=False)[0]
    local = inspect.summary(nn.LocallyConnected2D(4, 3), (8, 8, 2), print_table=False)[0]
    assert local.connections == conv.connections == 36 * 18 * 4
    assert conv.weights == 3 * 3 * 2 * 4 and local.weights == 36 * conv.weights and local.biases == 36 * 4


def test_residual_blocks_and_totals_match_the_params():
    model = models.resnet()
    rows = inspect.summary(model, (28, 28, 1), print_table=False)
    params, _ = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), (1, 28, 28, 1)))
    assert rows.total.weights + rows.total.biases == sum(int(np.prod(l.shape)) for l in jax.tree_util.tree_leaves(params))
    assert rows["stage2_block1/shortcut/conv1"].output_shape == (14, 14, 32)
    assert rows["stage2_block1/add"].type == "add+relu"
    vit = inspect.summary(models.vit(), (28, 28, 1), print_table=False)
    assert vit["patches"].output_shape == (17, 64) and vit["patches"].connections == 16 * 64 * 49


def test_cli_prints_a_model_and_rejects_unknown_names(capsys):
    assert inspect.main(["lenet5-1998"]) == 0
    assert "240,000" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        inspect.main(["lenet6"])
    assert "known models" in capsys.readouterr().err


def test_gradient_norms_and_activation_statistics(key):
    model = models.mlp([4, 2])
    x = jax.random.normal(key, (8, 3))
    params, state = model.init(key, x)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, state, x)[0] ** 2))(params)
    norms = inspect.gradient_norms(grads)
    assert set(norms) == {"dense1/w", "dense1/b", "dense2/w", "dense2/b"}
    np.testing.assert_allclose(norms["dense1/w"], np.linalg.norm(np.asarray(grads["dense1"]["w"])), rtol=1e-6)
    stats = inspect.activation_statistics(model, params, state, x)
    hidden = np.maximum(np.asarray(x) @ np.asarray(params["dense1"]["w"]) + np.asarray(params["dense1"]["b"]), 0)
    np.testing.assert_allclose(stats["relu1"]["zeros"], np.mean(hidden == 0))
    np.testing.assert_allclose(stats["relu1"]["mean"], hidden.mean(), rtol=1e-5)


def test_receptive_fields_of_lenet_by_hand():
    """C1 5×5; S2 adds (2 − 1)·1 → 6×6 and spaces units 2 apart; C3 adds (5 − 1)·2 → 14×14; S4 adds
    (2 − 1)·2 → 16×16; the dense layers after the flatten see the whole 32×32 input."""
    rows = inspect.summary(models.lenet5("1998"), (32, 32, 1), print_table=False)
    assert [rows[n].receptive_field for n in ("C1", "S2", "C3", "S4")] == [(5, 5), (6, 6), (14, 14), (16, 16)]
    assert rows["F5"].receptive_field is None and "receptive field" in rows.table() and " all |" in rows.table()
    strided = inspect.summary(nn.Sequential([nn.Conv1D(2, 3, strides=2, dilation=2), nn.Conv1D(2, 3)]), (20, 1),
                              print_table=False)
    # (3 − 1)·2 + 1 = 5, then + (3 − 1)·2 (units now 2 apart) = 9
    assert [r.receptive_field for r in strided] == [(5,), (9,)]


def test_concatenated_branches_each_start_from_the_same_input():
    model = nn.Sequential([nn.Conv2D(4, 3), nn.inception(2, 2, 3, 1, 2, 2)])
    rows = inspect.summary(model, (9, 9, 1), print_table=False)
    assert rows["inception1/branch3x3/conv2"].output_shape == (7, 7, 3)
    assert rows["inception1/branch5x5/conv2"].receptive_field == (7, 7)  # 3 + (5 − 1)
    assert rows["inception1/concat"].output_shape == (7, 7, 2 + 3 + 2 + 2) and rows["inception1/concat"].weights == 0
    params, _ = model.init(jax.random.PRNGKey(0), (1, 9, 9, 1))
    assert rows.total.weights == inspect.count_params(params)[0]
