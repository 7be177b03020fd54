"""jaxnets.plot on Agg figures: each function draws what it is given (checked in the drawn data, or in
the rendered pixels for the decision surface), returns its axes, and the library never picks a backend."""

import pathlib

import matplotlib

matplotlib.use("Agg")  # the tests choose the backend; the library must not
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from jaxnets import nn, plot  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_learning_curves_draw_the_mean_and_a_min_max_band_over_runs():
    history = {"epoch": [0, 1, 2], "train_loss": [np.array([1.0, 3.0]), np.array([0.5, 1.5]), np.array([0.2, np.nan])],
               "val_loss": [np.array([np.nan, np.nan])] * 3}
    ax = plot.learning_curves(history)
    lines = ax.get_lines()
    assert len(lines) == 1  # val_loss is all NaN: not drawn
    np.testing.assert_allclose(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines[0].get_ydata(), [2.0, 1.0, 0.2])  # NaN (a stopped run) left out of the mean
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(band) == 1
    ys = band[0].get_paths()[0].vertices[:, 1]
    assert ys.max() == pytest.approx(3.0) and ys.min() == pytest.approx(0.2)


def test_learning_curves_of_one_run_have_no_band():
    history = {"epoch": [0, 1], "train_loss": [0.9, 0.4], "val_loss": [1.0, 0.6]}
    ax = plot.learning_curves(history)
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[0.9, 0.4], [1.0, 0.6]]
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]


def _pixel(ax, x, y):
    """RGB of the rendered figure at data point (x, y)."""
    fig = ax.figure
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    px, py = ax.transData.transform((x, y))
    return image[int(round(image.shape[0] - py)), int(round(px))]


def test_decision_surface_of_a_linear_model_colours_each_side_of_its_line():
    # class 1 where x₁ + x₂ > 0: logits (0, x₁ + x₂)
    model = nn.Sequential([nn.Dense(2)])
    params = {"dense1": {"w": jnp.array([[0.0, 1.0], [0.0, 1.0]]), "b": jnp.zeros(2)}}
    x = np.array([[-2.0, -1.0], [-1.0, -2.0], [2.0, 1.0], [1.0, 2.0]])
    y = np.array([0, 0, 1, 1])
    ax = plot.decision_surface(model, params, {}, x, y, resolution=100)
    below, above = _pixel(ax, -1.5, 0.5), _pixel(ax, 1.5, -0.5)  # off the points, either side of x₂ = −x₁
    assert below[2] > below[0] + 20  # coolwarm: class 0 blue
    assert above[0] > above[2] + 20  # class 1 red
    np.testing.assert_array_equal(plot.predict_classes(model, params, {}, np.array([[-1.5, 0.5], [1.5, -0.5]])), [0, 1])
    with pytest.raises(ValueError, match=r"2-D inputs of shape \(N, 2\)"):
        plot.decision_surface(model, params, {}, np.zeros((4, 3)), y)


def test_weight_images_show_each_units_weights_as_an_image():
    w = np.random.default_rng(0).standard_normal((6 * 5, 4))
    ax = plot.weight_images(w, (6, 5), columns=2)
    canvas = np.asarray(ax.images[0].get_array())
    assert canvas.shape == (2 * 6 + 1, 2 * 5 + 1)  # 2 × 2 tiles with a 1-pixel gap
    np.testing.assert_allclose(canvas[:6, :5], w[:, 0].reshape(6, 5) / np.abs(w[:, 0]).max())
    np.testing.assert_allclose(canvas[7:, 6:], w[:, 3].reshape(6, 5) / np.abs(w[:, 3]).max())
    with pytest.raises(ValueError, match="inputs = 30"):
        plot.weight_images(w[:29], (6, 5))


def test_filters_sum_over_input_channels():
    w = np.random.default_rng(1).standard_normal((3, 3, 2, 5))
    canvas = np.asarray(plot.filters(w).images[0].get_array())
    first = w[..., 0].sum(axis=2)
    np.testing.assert_allclose(canvas[:3, :3], first / np.abs(first).max())
    with pytest.raises(ValueError, match=r"\(kh, kw, in, out\)"):
        plot.filters(w[0])


def test_hidden_units_draw_the_unit_by_example_matrix():
    activations = np.arange(12.0).reshape(4, 3)  # 4 examples, 3 units
    ax = plot.hidden_units(activations)
    np.testing.assert_array_equal(ax.images[0].get_array(), activations.T)
    assert ax.get_xlabel() == "example" and ax.get_ylabel() == "unit"


def test_grad_norms_one_curve_per_row_on_a_log_scale():
    rows = [{"dense1/w": 1e-3, "dense2/w": 1e-1}, {"dense1/w": 1e-2, "dense2/w": 1.0}]
    ax = plot.grad_norms(rows, labels=["init", "trained"])
    assert ax.get_yscale() == "log"
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[1e-3, 1e-1], [1e-2, 1.0]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["dense1/w", "dense2/w"]


def test_eps_sweep_one_curve_per_dtype_without_missing_points():
    rows = [{"dtype": "float32", "eps": 1e-1, "rel_error": 1e-2}, {"dtype": "float32", "eps": 1e-3, "rel_error": 1e-4},
            {"dtype": "float64", "eps": 1e-1, "rel_error": 1e-2}, {"dtype": "float64", "eps": 1e-12, "rel_error": None}]
    ax = plot.eps_sweep(rows)
    lines = ax.get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[1e-1, 1e-3], [1e-1]]
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()


def test_trajectories_draw_each_path_on_the_loss_contours():
    def bowl(w1, w2):
        return w1 ** 2 + 10 * w2 ** 2

    paths = {"sgd": np.array([[1.0, 1.0], [0.5, -0.8], [0.2, 0.5]]), "momentum": np.array([[1.0, 1.0], [0.0, 0.0]])}
    ax = plot.trajectories(bowl, paths)
    drawn = [line for line in ax.get_lines() if line.get_label() in paths]
    assert [line.get_label() for line in drawn] == ["sgd", "momentum"]
    np.testing.assert_allclose(drawn[0].get_xydata(), paths["sgd"])
    assert ax.collections  # the contour lines
    grid = np.add.outer(np.linspace(0, 1, 5) ** 2, 10 * np.linspace(0, 1, 4) ** 2).T
    plot.trajectories(grid, paths, extent=(0, 1, 0, 1))


def test_every_function_takes_an_axes_and_returns_it():
    fig, ax = plt.subplots()
    assert plot.hidden_units(np.ones((2, 2)), ax=ax) is ax
    assert plot.learning_curves({"epoch": [0], "train_loss": [1.0], "val_loss": [1.0]}, ax=ax) is ax


def test_the_library_never_chooses_a_backend():
    root = pathlib.Path(plot.__file__).parent
    offenders = [str(p) for p in root.rglob("*.py") if "matplotlib.use(" in p.read_text()]
    assert offenders == []


def test_decision_surface_works_on_a_trained_network():
    from jaxnets import data, fit, models, optim

    x, y = data.make_synthetic("xor", 200, key=jax.random.PRNGKey(0))
    model = models.mlp([8, 2], activation="tanh")
    params, state = model.init(jax.random.PRNGKey(1), x[:1])
    result = fit(model, params, state, (x, y), loss="cross_entropy", optimizer=optim.optimizer("adam", 0.05),
                 epochs=30, batch_size=20, key=jax.random.PRNGKey(2), progress=False)
    ax = plot.decision_surface(model, result.params, result.state, x, y)
    assert len(ax.collections) >= 2
