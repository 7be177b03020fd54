"""Which convolution formulation is fastest for a layer's shape, inside the compiled training epoch.

For each convolution shape of the project's networks (LeNet-5's, a user's 2-D and 1-D CNNs', the small
ResNet's), a tiny network — a dense layer over the channels, the convolution, ReLU, flatten, dense 10 —
trains one epoch of 2,000 random examples (batch 100, Adam) with each ``impl`` of :class:`jaxnets.nn.Conv2D` /
:class:`~jaxnets.nn.Conv1D` in the scanned epoch (``"im2col"``, ``"toeplitz"``, ``"xla"``), and with
``"xla"`` in the per-step engine. The dense layer in front makes the convolution's input gradient part of
the step, as it is for every convolution but a network's first (without it the first measurements here
favoured im2col for LeNet's C3, which is 1.4× slower than Toeplitz in the whole LeNet). The table gives
the steady epoch (min of ``--repeats``) and marks the fastest; the last column is what ``impl="auto"`` picks (:func:`jaxnets.nn.conv_impl.auto_conv_impl`),
whose rule these numbers set.

A second table trains whole networks the same way — the two user CNNs of ``bench_conv1d.py``, the
modern LeNet-5 and the small ResNet of ``jaxnets.models``, and four more networks a user might write
(VGG-like 3×3 stages on grey and on colour images, 5×5 kernels over colour images, a wider 1-D net with
pooling) — with every ``impl`` of all their convolutions (``auto`` mixes them layer by layer): that is what
``fit`` with default options meets, and where the rule is judged. The
last line is ``auto_within_10_percent=<shapes where auto is within 10 % of the fastest>/<shapes>
networks_auto_within_10_percent=<networks …>/<networks>``.

Command: ``python benchmarks/bench_conv_impls.py`` (≈ 10 min on 2 CPU cores; ``--quick``: 2 shapes, the
1-D network, 1 repeat, 400 examples).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402

# name → (input shape of one example, Conv arguments)
SHAPES = {
    "lenet C1 28x28x1 →6 k5 pad2": ((28, 28, 1), dict(features=6, kernel_size=5, padding=2)),
    "lenet C3 14x14x6 →16 k5": ((14, 14, 6), dict(features=16, kernel_size=5)),
    "user conv1 28x28x1 →16 k3": ((28, 28, 1), dict(features=16, kernel_size=3, padding="SAME")),
    "user conv2 14x14x16 →32 k3": ((14, 14, 16), dict(features=32, kernel_size=3, padding="SAME")),
    "resnet 28x28x16 →16 k3": ((28, 28, 16), dict(features=16, kernel_size=3, padding=1)),
    "resnet 28x28x16 →32 k3 s2": ((28, 28, 16), dict(features=32, kernel_size=3, strides=2, padding=1)),
    "resnet 14x14x32 →32 k3": ((14, 14, 32), dict(features=32, kernel_size=3, padding=1)),
    "1-D 40x1 →32 k5": ((40, 1), dict(features=32, kernel_size=5, padding="SAME")),
    "1-D 40x32 →32 k3 s2": ((40, 32), dict(features=32, kernel_size=3, strides=2)),
    "1-D 19x32 →32 k3 s2": ((19, 32), dict(features=32, kernel_size=3, strides=2)),
}
CANDIDATES = (("im2col", "scan"), ("toeplitz", "scan"), ("xla", "scan"), ("xla", "step"))
NET_CANDIDATES = (("auto", "scan"),) + CANDIDATES


def networks() -> dict:
    """name → (input shape of one example, ``build(impl)`` of the network): the benchmarks' user CNNs and
    the models' LeNet-5 and ResNet, then four more user networks of other shapes, written as a user would."""
    from benchmarks.bench_conv1d import user_model
    from jaxnets import models, nn

    def vgg_like(impl):  # two 3×3 convolutions per stage, 32 then 64 channels
        conv = lambda features: nn.Conv2D(features, 3, padding="SAME", impl=impl)  # noqa: E731
        return nn.Sequential([conv(32), nn.Activation("relu"), conv(32), nn.Activation("relu"), nn.MaxPool2D(2),
                              conv(64), nn.Activation("relu"), conv(64), nn.Activation("relu"), nn.MaxPool2D(2),
                              nn.Flatten(), nn.Dense(10)])

    def colour_5x5(impl):  # 5×5 kernels over RGB input
        return nn.Sequential([nn.Conv2D(32, 5, padding="SAME", impl=impl), nn.Activation("relu"), nn.MaxPool2D(2),
                              nn.Conv2D(64, 5, padding="SAME", impl=impl), nn.Activation("relu"), nn.MaxPool2D(2),
                              nn.Flatten(), nn.Dense(10)])

    def wide_1d(impl):  # longer sequences, wider kernels and channels, pooling
        return nn.Sequential([nn.Conv1D(64, 7, padding="SAME", impl=impl), nn.Activation("relu"), nn.MaxPool1D(2),
                              nn.Conv1D(64, 5, padding="SAME", impl=impl), nn.Activation("relu"), nn.MaxPool1D(2),
                              nn.Conv1D(128, 3, padding="SAME", impl=impl), nn.Activation("relu"),
                              nn.Flatten(), nn.Dense(10)])

    return {"user 2-D CNN (bench_conv1d --net 2d)": ((28, 28, 1), lambda impl: user_model("2d", impl)),
            "user 1-D CNN (bench_conv1d)": ((40, 1), lambda impl: user_model("1d", impl)),
            "LeNet-5 modern": ((28, 28, 1), lambda impl: models.lenet5("modern", impl=impl)),
            "ResNet (small)": ((28, 28, 1), lambda impl: models.resnet(impl=impl)),
            "VGG-like 28x28x1 32,32,64,64 k3": ((28, 28, 1), vgg_like),
            "VGG-like colour 32x32x3 32,32,64,64 k3": ((32, 32, 3), vgg_like),
            "colour 32x32x3 32,64 k5": ((32, 32, 3), colour_5x5),
            "wide 1-D 128x1 64,64,128 k7,5,3": ((128, 1), wide_1d)}


def shape_network(shape, conv_args, impl: str):
    """The tiny network around one convolution shape."""
    from jaxnets import nn

    Conv = nn.Conv2D if len(shape) == 3 else nn.Conv1D
    return nn.Sequential([nn.Dense(shape[-1]), Conv(**conv_args, impl=impl), nn.Activation("relu"), nn.Flatten(),
                          nn.Dense(10)])


def epoch_runner(model, shape, engine: str, examples: int):
    import jax
    import jax.numpy as jnp

    from jaxnets import optim
    from jaxnets.train import TrainState, make_epoch_fn, make_step_epoch_fn

    x = jax.random.normal(jax.random.PRNGKey(0), (examples, *shape))
    y = jnp.arange(examples) % 10
    optimizer = optim.optimizer("adam", 1e-3)
    params, state = model.init(jax.random.PRNGKey(1), x[:1])
    make = make_epoch_fn if engine == "scan" else make_step_epoch_fn
    epoch = make(model, "cross_entropy", optimizer, batch_size=100)
    epoch = jax.jit(epoch) if engine == "scan" else epoch
    carry = {"ts": TrainState(params, state, optimizer.init(params)), "epoch": 0}

    def run():
        carry["ts"], out = epoch(carry["ts"], x, y, jax.random.PRNGKey(carry["epoch"]))
        carry["epoch"] += 1
        jax.block_until_ready(out)

    return run


def steady_times(runners: dict, repeats: int) -> tuple[dict, str]:
    """Each runner's steady epoch (s, min of ``repeats`` interleaved, after one compiling call) and the fastest's name."""
    for run in runners.values():
        run()  # compile
    times = {k: min(v) for k, v in common.interleaved(runners, repeats).items()}
    return times, min(times, key=times.get)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 shapes, 1 network, 1 repeat, 400 examples")
    parser.add_argument("--repeats", type=int, default=None, help="steady epochs per candidate (default 3)")
    args = parser.parse_args(argv)
    import jax

    from jaxnets.nn import conv_impl

    repeats = args.repeats or (1 if args.quick else 3)
    examples = 400 if args.quick else 2000
    shapes = dict(list(SHAPES.items())[:2]) if args.quick else SHAPES
    info = common.environment()
    print(f"{info['cpu']}, {info['cores']} cores ({info['simd']}), jax {info['versions']['jax']}, backend "
          f"{jax.default_backend()}; {examples} examples, batch 100, {repeats} repeats")
    rows, good = [], 0
    for name, (shape, conv_args) in shapes.items():
        runners = {f"{impl}/{engine}": epoch_runner(shape_network(shape, conv_args, impl), shape, engine, examples)
                   for impl, engine in CANDIDATES}
        times, fastest = steady_times(runners, repeats)
        kernel = (conv_args["kernel_size"],) * (len(shape) - 1)
        # what "auto" computes inside the training epoch (outside it, on CPU too, it is XLA's convolution)
        auto = conv_impl.auto_conv_impl(kernel, shape[-1], conv_args["features"], jax.default_backend(),
                                        in_loop=True, in_spatial=shape[:-1]) + "/scan"
        within = times[auto] <= 1.10 * times[fastest]
        good += within
        rows.append({"shape": name, **{k: round(t * 1e3, 1) for k, t in times.items()}, "fastest": fastest,
                     "auto": auto, "auto/fastest": round(times[auto] / times[fastest], 2)})
        print(f"  {name:<30} " + "  ".join(f"{k} {t * 1e3:7.1f} ms" for k, t in times.items())
              + f"  fastest {fastest}, auto {auto} ({times[auto] / times[fastest]:.2f}×)", flush=True)
    print(common.format_table(rows, ["shape", *[f"{i}/{e}" for i, e in CANDIDATES], "fastest", "auto", "auto/fastest"]))
    net_rows, net_good = [], 0
    nets = networks()
    nets = {name: nets[name] for name in list(nets)[1:2]} if args.quick else nets  # quick: the 1-D CNN
    for name, (shape, build) in nets.items():
        runners = {f"{impl}/{engine}": epoch_runner(build(impl), shape, engine, examples)
                   for impl, engine in NET_CANDIDATES}
        times, fastest = steady_times(runners, repeats)
        ratio = times["auto/scan"] / times[fastest]
        net_good += ratio <= 1.10
        net_rows.append({"network": name, **{k: round(t * 1e3, 1) for k, t in times.items()}, "fastest": fastest,
                         "auto/fastest": round(ratio, 2)})
        print(f"  {name:<38} " + "  ".join(f"{k} {t * 1e3:7.1f} ms" for k, t in times.items())
              + f"  fastest {fastest} (auto {ratio:.2f}×)", flush=True)
    if net_rows:
        print(common.format_table(net_rows, ["network", *[f"{i}/{e}" for i, e in NET_CANDIDATES], "fastest",
                                             "auto/fastest"]))
    print(f"auto_within_10_percent={good}/{len(rows)} networks_auto_within_10_percent={net_good}/{len(net_rows)}")


if __name__ == "__main__":
    main()
