"""Plots of the lecture notes' pictures, for notebooks and experiments (matplotlib).

Every function draws on ``ax`` (a new figure's axes when it is None) and returns it; the library
never chooses a matplotlib backend (only command-line entry points do). In a notebook::

    from jaxnets import plot
    plot.learning_curves(result.history)                      # a band over runs under fit_seeds
    plot.decision_surface(model, params, state, x, y)         # 2-D inputs
    plot.weight_images(params["dense1"]["w"], (28, 28))       # first-layer weights as images

* :func:`learning_curves` — loss (or any history keys) per epoch; mean and min–max band over runs.
* :func:`decision_surface` — class regions of a 2-D classifier, its boundary and the points.
* :func:`weight_images` — each unit's incoming weights (columns of a (inputs, units) matrix) as an image.
* :func:`filters` — convolution kernels (kh, kw, in, out) as small images.
* :func:`hidden_units` — the unit × example matrix of activations ("inspect hidden units").
* :func:`grad_norms` — gradient norm per layer (one curve per row of several).
* :func:`eps_sweep` — finite-difference error against ε (the truncation / round-off U).
* :func:`trajectories` — optimizer paths on the contours of a 2-D loss surface.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = Any


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5, 3.6))[1]


def _band(ax, x, values: np.ndarray, label: str | None, **style):
    """A line at the mean over the last axis of ``values`` (len(x), runs) and a min–max band."""
    mean = np.nanmean(values, axis=1)
    line, = ax.plot(x, mean, label=label, **style)
    if values.shape[1] > 1:
        ax.fill_between(x, np.nanmin(values, axis=1), np.nanmax(values, axis=1), alpha=0.2, color=line.get_color(),
                        linewidth=0)
    return line


def learning_curves(history: Mapping[str, Sequence], keys: Sequence[str] = ("train_loss", "val_loss"), *,
                    ax=None, label: str | None = None, **style):
    """Each history key (that holds numbers) against the epoch. With a run axis (``fit_seeds``), the
    line is the mean over runs and the band spans their minimum and maximum; NaN entries (a run that
    stopped, a missing number) are left out. Returns ax."""
    ax = _axes(ax)
    epochs = np.asarray(history["epoch"]) + 1
    for key in keys:
        values = np.asarray(history[key], np.float64)
        if values.size == 0 or np.all(np.isnan(values)):
            continue
        values = values.reshape(len(epochs), -1)
        name = key if label is None else f"{label} {key}"
        with np.errstate(all="ignore"), _quiet_nan_warnings():
            _band(ax, epochs, values, name.replace("_", " "), **style)
    ax.set(xlabel="epoch", ylabel=", ".join(k.replace("_", " ") for k in keys))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


class _quiet_nan_warnings:
    """nanmean/nanmin of an epoch where every run is NaN warns; the plot just leaves a gap."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def predict_classes(model, params, state, x: Array) -> np.ndarray:
    """Class predictions of a classifier on x: argmax of K > 1 outputs, ``output >= 0`` for one."""
    from jaxnets.losses import predicted_classes

    outputs, _ = model.apply(params, state, jnp.asarray(x))
    return np.asarray(predicted_classes(outputs))


def decision_surface(model, params, state, x: Array, y: Array, *, ax=None, resolution: int = 200,
                     margin: float = 0.5, cmap: str = "coolwarm"):
    """The class regions a classifier with 2-D inputs assigns over the box around the points x (N, 2),
    the boundary between them (black) and the points coloured by their labels y (N,). Returns ax."""
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    x, y = np.asarray(x, np.float64), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"decision_surface needs 2-D inputs of shape (N, 2), got {x.shape}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1).astype(np.float32)
    classes = predict_classes(model, params, state, grid).reshape(g0.shape)
    num_classes = int(max(classes.max(), y.max())) + 1
    colors = plt.get_cmap(cmap, max(num_classes, 2))
    levels = np.arange(num_classes + 1) - 0.5
    ax.contourf(g0, g1, classes, levels=levels, cmap=colors, alpha=0.35)
    if num_classes > 1:
        ax.contour(g0, g1, classes, levels=levels[1:-1], colors="k", linewidths=1.0)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap=colors, vmin=-0.5, vmax=num_classes - 0.5, s=12, edgecolors="k",
               linewidths=0.3)
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="$x_1$", ylabel="$x_2$")
    return ax


def _mosaic(images: np.ndarray, columns: int | None, pad: int = 1) -> np.ndarray:
    """Images (n, h, w) tiled into one (rows·(h+pad)−pad, cols·(w+pad)−pad) array, NaN between tiles;
    each image scaled to [-1, 1] by its largest absolute value."""
    n, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        scale = np.max(np.abs(image)) or 1.0
        canvas[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = image / scale
    return canvas


def weight_images(w: Array, shape: Sequence[int], *, ax=None, units: int | None = None, columns: int | None = None,
                  cmap: str = "RdBu_r"):
    """The incoming weights of each unit of a first dense layer, w: (prod(shape), units), as an image
    of ``shape`` (e.g. (28, 28)): what pattern of the input excites the unit (red) or inhibits it
    (blue). ``units``: draw the first that many. Returns ax (its image is ``ax.images[0]``)."""
    w = np.asarray(w, np.float64)
    if w.ndim != 2 or w.shape[0] != math.prod(shape):
        raise ValueError(f"weight_images: w must be (inputs, units) with inputs = {math.prod(shape)} for images of "
                         f"shape {tuple(shape)}, got {w.shape}")
    images = w.T[:units].reshape(-1, *shape)  # (units, h, w)
    return _show_mosaic(_mosaic(images, columns), ax, cmap, f"{len(images)} units' input weights")


def filters(conv_w: Array, *, ax=None, columns: int | None = None, cmap: str = "RdBu_r"):
    """Convolution kernels conv_w: (kh, kw, in_channels, features) as one small image per feature
    (summed over the input channels). Returns ax."""
    conv_w = np.asarray(conv_w, np.float64)
    if conv_w.ndim != 4:
        raise ValueError(f"filters: expected a 2-D convolution kernel (kh, kw, in, out), got shape {conv_w.shape}")
    images = np.moveaxis(conv_w.sum(axis=2), -1, 0)  # (features, kh, kw)
    return _show_mosaic(_mosaic(images, columns), ax, cmap, f"{len(images)} filters {conv_w.shape[0]}×{conv_w.shape[1]}")


def _show_mosaic(canvas, ax, cmap, title):
    ax = _axes(ax)
    ax.imshow(canvas, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set(title=title, xticks=[], yticks=[])
    return ax


def hidden_units(activations: Array, *, ax=None, cmap: str = "viridis"):
    """The activations of a hidden layer, (examples, units), as a unit × example image: a unit that
    is always the same colour never responds (dead), one that is always at an extreme is saturated.
    Returns ax."""
    a = np.asarray(activations, np.float64)
    if a.ndim != 2:
        raise ValueError(f"hidden_units: expected activations of shape (examples, units), got {a.shape}")
    ax = _axes(ax)
    image = ax.imshow(a.T, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, fraction=0.05)
    ax.set(xlabel="example", ylabel="unit")
    return ax


def grad_norms(per_layer: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, ax=None,
               labels: Sequence[str] | None = None):
    """Gradient norm per layer, first layer on the left, on a log scale: one dict ``{layer: norm}``
    (``jaxnets.inspect.gradient_norms`` gives one) or several (at initialisation and after training,
    one per activation, …), one curve each. A norm that is an array of runs (seeds) is drawn as its
    mean with a min–max band. Returns ax."""
    rows = [per_layer] if isinstance(per_layer, Mapping) else list(per_layer)
    ax = _axes(ax)
    longest = max(rows, key=len)
    for i, row in enumerate(rows):
        values = np.asarray([np.ravel(np.asarray(v, np.float64)) for v in row.values()])  # (layers, runs)
        _band(ax, np.arange(len(row)), values, None if labels is None else labels[i], marker="o")
    ax.set(yscale="log", ylabel="gradient norm", xticks=range(len(longest)))
    ax.set_xticklabels(list(longest), rotation=45, ha="right", fontsize=8)
    if labels is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def eps_sweep(rows: Sequence[Mapping[str, Any]], *, ax=None):
    """Relative error of finite differences against ε (rows of ``{"dtype", "eps", "rel_error"}``,
    as the gradient-check experiment records them), one curve per dtype, ε decreasing to the right:
    truncation error falls, then round-off error grows. Returns ax."""
    ax = _axes(ax)
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        mine = [r for r in rows if r["dtype"] == dtype and r["rel_error"]]
        ax.loglog([r["eps"] for r in mine], [r["rel_error"] for r in mine], "o-", label=dtype)
    ax.set(xlabel="ε", ylabel="relative error")
    ax.invert_xaxis()
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def trajectories(loss_2d: Callable[[Array, Array], Array] | np.ndarray, paths: Mapping[str, Array], *, ax=None,
                 extent: Sequence[float] | None = None, levels: int = 20, resolution: int = 150):
    """Optimizer paths, ``{name: (steps, 2) points}``, on the contours of a 2-D loss: a function
    ``f(w1, w2)`` of two arrays (evaluated on a grid over ``extent`` = (x0, x1, y0, y1), by default
    the box around the paths) or a precomputed grid array with ``extent``. Returns ax."""
    ax = _axes(ax)
    points = np.concatenate([np.asarray(p, np.float64) for p in paths.values()])
    if extent is None:
        lo, hi = points.min(axis=0), points.max(axis=0)
        pad = 0.15 * (hi - lo + 1e-9)
        extent = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    if callable(loss_2d):
        w1, w2 = np.meshgrid(np.linspace(extent[0], extent[1], resolution), np.linspace(extent[2], extent[3], resolution))
        surface = np.asarray(jax.vmap(jax.vmap(loss_2d))(jnp.asarray(w1), jnp.asarray(w2)))
    else:
        surface = np.asarray(loss_2d)
        w1, w2 = np.meshgrid(np.linspace(extent[0], extent[1], surface.shape[1]),
                             np.linspace(extent[2], extent[3], surface.shape[0]))
    ax.contour(w1, w2, surface, levels=levels, cmap="Greys", linewidths=0.7)
    for name, path in paths.items():
        path = np.asarray(path, np.float64)
        line, = ax.plot(path[:, 0], path[:, 1], ".-", label=name, markersize=3)
        ax.plot(path[:1, 0], path[:1, 1], "o", color=line.get_color())
    ax.set(xlim=extent[:2], ylim=extent[2:], xlabel="$w_1$", ylabel="$w_2$")
    ax.legend(fontsize=8)
    return ax
