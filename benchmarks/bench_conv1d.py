"""A user's own CNN: one training epoch in jaxnets (default options), PyTorch and Flax, side by side.

The network, written by hand as a user writes it (``--net 1d``, the default): Conv1D(32, 5, "SAME") →
ReLU → Conv1D(32, 3, strides=2) → ReLU → Conv1D(32, 3, strides=2) → ReLU → Flatten → Dense(10);
Adam(1e-3), batch 100, on MNIST-1D (4,000 training sequences of length 40, generated offline by the
``mnist1d`` package, the ``bench`` extra; random data of the same shape when it is not installed).
``--net 2d``: Conv2D(16, 3, "SAME") → ReLU → MaxPool2D(2) → Conv2D(32, 3, "SAME") → ReLU → MaxPool2D(2)
→ Flatten → Dense(10) on the first 4,000 Fashion-MNIST images (28×28), batch 100.

* ``jaxnets``: ``jaxnets.nn`` layers with default options in the epoch ``jaxnets.fit`` runs by default
  (``engine="auto"``: the scanned epoch; ``impl="auto"``: matmul convolutions inside it on CPU);
* ``torch``: ``torch.nn.Conv1d`` … with ``torch.optim.Adam``, the idiomatic loop (2 threads);
* ``flax``: linen ``nn.Conv`` … with one ``jax.jit`` train step per batch (the Flax examples' loop).

Timings: the first epoch (compilation included; the model's set-up and init outside the clock) in this
process, then ``--repeats`` epochs round-robin (min and median), then ``--first-epoch-runs`` first epochs of
each in fresh processes, round-robin, and of ``jaxnets+cache`` / ``flax+cache``: a fresh process on a
persistent compilation cache that an earlier run filled (what reopening a notebook meets). The last line
is ``jaxnets_vs_torch=<x> jaxnets_vs_flax=<y>`` (steady-state minima).
Command: ``python benchmarks/bench_conv1d.py [--net 2d]`` (≈ 2 min; ``--quick`` < 30 s, 1,000 examples, no
fresh-process runs).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402

BATCH = 100
LEARNING_RATE = 1e-3


def mnist1d_train(quick: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(x (N, 40, 1) float32, y (N,) int32, source)."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset

        data = make_dataset(get_dataset_args())  # generated offline (no download)
        x, y, source = data["x"], data["y"], "mnist1d (generated)"
    except ImportError:
        rng = np.random.default_rng(0)
        x, y, source = rng.standard_normal((4000, 40)), rng.integers(0, 10, 4000), "random data (mnist1d not installed)"
    x = np.asarray(x, np.float32)[:, :, None]
    x = (x - x.mean()) / x.std()
    n = 1000 if quick else len(x)
    return np.ascontiguousarray(x[:n]), np.asarray(y[:n], np.int32), source


def fashion_train(quick: bool) -> tuple[np.ndarray, np.ndarray, str]:
    return common.fashion_mnist_train(1000 if quick else 4000)


def user_model(net: str, impl: str = "auto"):
    """The network of ``net`` ("1d" or "2d") from jaxnets.nn, its convolutions computed by ``impl``
    (the default is the user's: ``"auto"``)."""
    from jaxnets import nn

    if net == "2d":
        return nn.Sequential([nn.Conv2D(16, 3, padding="SAME", impl=impl), nn.Activation("relu"), nn.MaxPool2D(2),
                              nn.Conv2D(32, 3, padding="SAME", impl=impl), nn.Activation("relu"), nn.MaxPool2D(2),
                              nn.Flatten(), nn.Dense(10)])
    return nn.Sequential([nn.Conv1D(32, 5, padding="SAME", impl=impl), nn.Activation("relu"),
                          nn.Conv1D(32, 3, strides=2, impl=impl), nn.Activation("relu"),
                          nn.Conv1D(32, 3, strides=2, impl=impl), nn.Activation("relu"), nn.Flatten(), nn.Dense(10)])


def make_jaxnets(x, y) -> Callable:
    from jaxnets import train

    model = user_model("2d" if x.ndim == 4 else "1d")
    return common.jaxnets_epoch_fn(model, x, y, engine=train.choose_engine("auto"), batch_size=BATCH,
                                   learning_rate=LEARNING_RATE)


def make_torch(x, y) -> Callable:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    if x.ndim == 4:
        nn = torch.nn
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                              nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
        images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW
    else:
        model = torch.nn.Sequential(
            torch.nn.Conv1d(1, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv1d(32, 32, 3, stride=2),
            torch.nn.ReLU(), torch.nn.Conv1d(32, 32, 3, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
            torch.nn.Linear(32 * 9, 10))
        images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))  # (N, channels, length)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    return common.torch_epoch_fn(model, optimizer, images, torch.from_numpy(y.astype(np.int64)), BATCH)


def make_flax(x, y) -> Callable:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    class Net1D(nn.Module):
        @nn.compact
        def __call__(self, v):
            v = nn.relu(nn.Conv(32, (5,), padding="SAME")(v))
            v = nn.relu(nn.Conv(32, (3,), strides=2, padding="VALID")(v))
            v = nn.relu(nn.Conv(32, (3,), strides=2, padding="VALID")(v))
            return nn.Dense(10)(v.reshape((v.shape[0], -1)))

    class Net2D(nn.Module):
        @nn.compact
        def __call__(self, v):
            v = nn.max_pool(nn.relu(nn.Conv(16, (3, 3), padding="SAME")(v)), (2, 2), (2, 2))
            v = nn.max_pool(nn.relu(nn.Conv(32, (3, 3), padding="SAME")(v)), (2, 2), (2, 2))
            return nn.Dense(10)(v.reshape((v.shape[0], -1)))

    model = Net2D() if x.ndim == 4 else Net1D()
    state = train_state.TrainState.create(apply_fn=model.apply, params=model.init(jax.random.PRNGKey(0), x[:1])["params"],
                                          tx=optax.adam(LEARNING_RATE))

    @jax.jit
    def step(state, xb, yb):
        def loss_fn(params):
            logits = state.apply_fn({"params": params}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads), loss, jnp.sum(jnp.argmax(logits, -1) == yb)

    carry = {"state": state}
    rng = np.random.default_rng(0)
    steps = len(x) // BATCH

    def run_epoch():
        order = rng.permutation(len(x))
        losses, correct = [], []
        for i in range(steps):
            idx = order[i * BATCH:(i + 1) * BATCH]
            carry["state"], loss, right = step(carry["state"], x[idx], y[idx])
            losses.append(loss)
            correct.append(right)
        return float(np.mean(jax.device_get(losses))), float(np.sum(jax.device_get(correct))) / (steps * BATCH)

    return run_epoch


FACTORIES = {"jaxnets": make_jaxnets, "torch": make_torch, "flax": make_flax}
NEEDS = {"torch": "torch", "flax": "flax"}


def load(net: str, quick: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """The training data of ``net``: (x, y, source)."""
    return mnist1d_train(quick) if net == "1d" else fashion_train(quick)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 sequences, 1 repeat, no cold runs")
    parser.add_argument("--repeats", type=int, default=None, help="steady epochs each (default 7)")
    parser.add_argument("--net", choices=("1d", "2d"), default="1d", help="the 1-D network (default) or the 2-D one")
    parser.add_argument("--first-epoch-runs", type=int, default=None,
                        help="first epochs per implementation in fresh processes (default 3, 0 with --quick)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        x, y, _ = load(args.net, args.quick)
        common.first_epoch_child(FACTORIES[args.child], x, y, uses_jax=args.child != "torch", cache_dir=args.cache_dir)
        return {}
    repeats = args.repeats or (1 if args.quick else 7)
    cold_runs = args.first_epoch_runs if args.first_epoch_runs is not None else (0 if args.quick else 3)
    names = [n for n in FACTORIES if n not in NEEDS or common.version_of(NEEDS[n]) is not None]
    x, y, source = load(args.net, args.quick)
    info = common.environment()
    print(f"data: {source}, {x.shape}; {info['cpu']}, {info['cores']} cores ({info['simd']}), jax "
          f"{info['versions']['jax']}, torch {info['versions']['torch']}")
    runners, first, last = {}, {}, {}
    for name in names:
        runners[name] = FACTORIES[name](x, y)
        first[name] = common.timed(lambda: last.__setitem__(name, runners[name]()))
        print(f"  first epoch {name:<8} {first[name]:7.3f} s (in this process)", flush=True)

    def remember(name):
        def run():
            last[name] = runners[name]()
        return run

    steady = common.interleaved({n: remember(n) for n in names}, repeats)
    cold_names = names + [n + "+cache" for n in ("jaxnets", "flax") if n in names]
    child_args = ["--net", args.net] + (["--quick"] if args.quick else [])
    cold = common.cold_first_epochs(__file__, cold_names, cold_runs, child_args) if cold_runs else {}
    rows = common.epoch_rows(names, first, steady, cold, last)
    print(common.format_table(rows, list(rows[0])))
    best = {r["implementation"]: r["steady_min_s"] for r in rows}
    ratio = lambda other: best[other] / best["jaxnets"] if best.get(other) else math.nan  # noqa: E731
    result = {"rows": rows, "jaxnets_vs_torch": ratio("torch"), "jaxnets_vs_flax": ratio("flax"), "machine": info}
    print(f"jaxnets_vs_torch={result['jaxnets_vs_torch']:.2f} jaxnets_vs_flax={result['jaxnets_vs_flax']:.2f}")
    return result


if __name__ == "__main__":
    main()
