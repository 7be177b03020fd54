"""Which convolution formulation is fastest for a layer's shape, inside the compiled training epoch.

For each convolution shape of the project's networks (LeNet-5's, a user's 2-D and 1-D CNNs', the small
ResNet's), a tiny network — a dense layer over the channels, the convolution, ReLU, flatten, dense 10 —
trains one epoch of 2,000 random examples (batch 100, Adam) with each ``impl`` of :class:`jaxnets.nn.Conv2D` /
:class:`~jaxnets.nn.Conv1D` in the scanned epoch (``"im2col"``, ``"toeplitz"``, ``"xla"``), and with
``"xla"`` in the per-step engine. The dense layer in front makes the convolution's input gradient part of
the step, as it is for every convolution but a network's first (without it the first measurements here
favoured im2col for LeNet's C3, which is 1.4× slower than Toeplitz in the whole LeNet). The table gives
the steady epoch (min of ``--repeats``) and marks the fastest; the last column is what ``impl="auto"`` picks (:func:`jaxnets.nn.conv_impl.auto_conv_impl`),
whose rule these numbers set. The last line is ``auto_within_10_percent=<shapes where auto is within
10 % of the fastest>/<shapes>``. ``--runs R`` trains R stacked runs at once (``train.vmap_runs``, as
``fit_seeds`` does; no per-step candidate), where ``"auto"`` follows the stacked-runs rule.

Command: ``python benchmarks/bench_conv_impls.py`` (≈ 3 min on 2 CPU cores; ``--quick``: 2 shapes, 1
repeat, 400 examples).
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


def epoch_runner(shape, conv_args, impl: str, engine: str, examples: int, runs: int = 1):
    import jax
    import jax.numpy as jnp

    from jaxnets import nn, optim
    from jaxnets.train import TrainState, make_epoch_fn, make_step_epoch_fn, vmap_runs

    Conv = nn.Conv2D if len(shape) == 3 else nn.Conv1D
    model = nn.Sequential([nn.Dense(shape[-1]), Conv(**conv_args, impl=impl), nn.Activation("relu"), nn.Flatten(),
                           nn.Dense(10)])
    x = jax.random.normal(jax.random.PRNGKey(0), (examples, *shape))
    y = jnp.arange(examples) % 10
    optimizer = optim.optimizer("adam", 1e-3)
    make = make_epoch_fn if engine == "scan" else make_step_epoch_fn
    epoch = make(model, "cross_entropy", optimizer, batch_size=100)
    if runs == 1:
        params, state = model.init(jax.random.PRNGKey(1), x[:1])
        epoch = jax.jit(epoch) if engine == "scan" else epoch
        keys = jax.random.PRNGKey
    else:  # stacked runs, each with its own init and key
        inits = [model.init(jax.random.PRNGKey(1 + r), x[:1]) for r in range(runs)]
        params, state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *inits)
        epoch = jax.jit(vmap_runs(epoch, in_axes=(0, None, None, 0)))
        keys = lambda e: jax.random.split(jax.random.PRNGKey(e), runs)  # noqa: E731
    opt_state = optimizer.init(params) if runs == 1 else jax.vmap(optimizer.init)(params)
    carry = {"ts": TrainState(params, state, opt_state), "epoch": 0}

    def run():
        carry["ts"], out = epoch(carry["ts"], x, y, keys(carry["epoch"]))
        carry["epoch"] += 1
        jax.block_until_ready(out)

    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 shapes, 1 repeat, 400 examples")
    parser.add_argument("--repeats", type=int, default=None, help="steady epochs per candidate (default 3)")
    parser.add_argument("--runs", type=int, default=1, help="stacked runs trained at once (default 1)")
    args = parser.parse_args(argv)
    import jax

    from jaxnets.nn import conv_impl

    repeats = args.repeats or (1 if args.quick else 3)
    examples = 400 if args.quick else 2000
    shapes = dict(list(SHAPES.items())[:2]) if args.quick else SHAPES
    info = common.environment()
    print(f"{info['cpu']}, {info['cores']} cores ({info['simd']}), jax {info['versions']['jax']}, backend "
          f"{jax.default_backend()}; {examples} examples, batch 100, {repeats} repeats, {args.runs} run(s)")
    candidates = CANDIDATES if args.runs == 1 else [c for c in CANDIDATES if c[1] == "scan"]
    rows, good = [], 0
    for name, (shape, conv_args) in shapes.items():
        runners = {f"{impl}/{engine}": epoch_runner(shape, conv_args, impl, engine, examples, args.runs)
                   for impl, engine in candidates}
        for run in runners.values():
            run()  # compile
        times = {k: min(v) for k, v in common.interleaved(runners, repeats).items()}
        fastest = min(times, key=times.get)
        kernel = (conv_args["kernel_size"],) * (len(shape) - 1)
        auto = conv_impl.auto_conv_impl(kernel, shape[-1], conv_args["features"], jax.default_backend(),
                                        stacked=args.runs > 1) + "/scan"  # fit's engine="auto" is the scan
        within = times[auto] <= 1.10 * times[fastest]
        good += within
        rows.append({"shape": name, **{k: round(t * 1e3, 1) for k, t in times.items()}, "fastest": fastest,
                     "auto": auto, "auto/fastest": round(times[auto] / times[fastest], 2)})
        print(f"  {name:<30} " + "  ".join(f"{k} {t * 1e3:7.1f} ms" for k, t in times.items())
              + f"  fastest {fastest}, auto {auto} ({times[auto] / times[fastest]:.2f}×)", flush=True)
    print(common.format_table(rows, ["shape", *[f"{i}/{e}" for i, e in candidates], "fastest", "auto", "auto/fastest"]))
    print(f"auto_within_10_percent={good}/{len(rows)}")


if __name__ == "__main__":
    main()
