"""One training epoch of the modern LeNet-5 in jaxnets, Flax, Equinox and PyTorch, side by side.

The task: conv 6@5×5 padding 2, ReLU, 2×2 max-pool, conv 16@5×5, ReLU, 2×2 max-pool,
dense 120-84-10 (ReLU), Adam(1e-3), batch 128, float32, one epoch over the Fashion-MNIST training
set (468 full batches, reshuffled each epoch). Every implementation returns the epoch's mean loss
and accuracy, so their loops do the same work.

* ``jaxnets-scan``: ``models.lenet5("modern")`` (its layers' ``impl="auto"``: in the CPU training
  loop Toeplitz convolutions and reshape max-pools) in the scanned epoch, one compiled call per epoch
  after the epoch's plan — what ``jaxnets.fit`` runs (``common.jaxnets_epoch_fn``).
* ``jaxnets-user``: the same network written by hand from ``nn.Conv2D``/``nn.MaxPool2D``/``nn.Dense``
  with default options, as a user (or a notebook) writes it, in the same engine.
* ``jaxnets-step``: the model in the per-step engine (``fit(engine="step")``; ``"auto"`` is then XLA's
  convolution, outside any loop).
* ``jaxnets-im2col-scan`` (``--variants``): ``lenet5(impl="im2col")`` in the scanned epoch.
* ``jaxnets-xla-scan`` / ``jaxnets-xla-step`` (``--variants``): ``lenet5(impl="xla")``:
  ``lax.conv_general_dilated`` in the scanned epoch (slow on CPU) or per step.
* ``flax``: linen ``nn.Conv``/``nn.max_pool``, one ``jax.jit`` train step per batch (the Flax
  examples' loop); ``flax-scan``: the same step inside one ``jax.jit(lax.scan)`` epoch.
* ``equinox``: ``eqx.nn.Conv2d``/``MaxPool2d`` with ``eqx.filter_jit`` per step.
* ``torch``: ``nn.Sequential`` + ``torch.optim.Adam``, 2 threads.

Timings: first epoch (compilation included) in this process, then ``--repeats`` epochs interleaved
round-robin (other processes share the CPU; min and median), then ``--first-epoch-runs`` first epochs of
each in fresh processes, round-robin, and of ``jaxnets-scan+cache`` / ``flax+cache``: a fresh process on a
persistent compilation cache an earlier run filled. The last line is
``jaxnets_vs_torch=<x> jaxnets_vs_flax=<y>`` (steady-state minima; flax = its per-step loop,
the faster Flax variant here). Run: ``.venv/bin/python benchmarks/bench_lenet.py`` (several
minutes), ``--quick`` (< 60 s, 512 examples: its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402

BATCH = 128
LEARNING_RATE = 1e-3
IMPLEMENTATIONS = ("jaxnets-scan", "jaxnets-user", "jaxnets-step", "flax", "flax-scan", "equinox", "torch")
VARIANTS = ("jaxnets-im2col-scan", "jaxnets-xla-scan", "jaxnets-xla-step")


def make_jaxnets(x, y, engine: str = "scan", impl: str = "auto", seed: int = 0) -> Callable:
    from jaxnets import models

    return common.jaxnets_epoch_fn(models.lenet5("modern", impl=impl), x, y, engine=engine, batch_size=BATCH,
                                   learning_rate=LEARNING_RATE, seed=seed)


def user_lenet():
    """The modern LeNet-5 as a user writes it from jaxnets.nn, every option at its default."""
    from jaxnets import nn

    return nn.Sequential([nn.Conv2D(6, 5, padding=2), nn.Activation("relu"), nn.MaxPool2D(2),
                          nn.Conv2D(16, 5), nn.Activation("relu"), nn.MaxPool2D(2), nn.Flatten(),
                          nn.Dense(120), nn.Activation("relu"), nn.Dense(84), nn.Activation("relu"), nn.Dense(10)])


def make_user(x, y, seed: int = 0) -> Callable:
    return common.jaxnets_epoch_fn(user_lenet(), x, y, engine="scan", batch_size=BATCH, learning_rate=LEARNING_RATE,
                                   seed=seed)


def _flax_model():
    import flax.linen as nn

    class LeNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding=2)(x)), (2, 2), (2, 2))
            x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
            x = x.reshape((x.shape[0], -1))
            x = nn.relu(nn.Dense(84)(nn.relu(nn.Dense(120)(x))))
            return nn.Dense(10)(x)

    return LeNet()


def make_flax(x, y, scan: bool = False, seed: int = 0) -> Callable:
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    model = _flax_model()
    params = model.init(jax.random.PRNGKey(seed), jnp.ones((1, 28, 28, 1)))["params"]
    state = {"ts": train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(LEARNING_RATE))}

    def train_step(ts, images, labels):
        def loss_fn(params):
            logits = ts.apply_fn({"params": params}, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        return ts.apply_gradients(grads=grads), loss, jnp.sum(jnp.argmax(logits, -1) == labels)

    rng = np.random.default_rng(seed)
    steps = x.shape[0] // BATCH
    if scan:
        x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)

        @jax.jit
        def epoch(ts, perms):
            def body(ts, idx):
                ts, loss, correct = train_step(ts, x_dev[idx], y_dev[idx])
                return ts, (loss, correct)
            return jax.lax.scan(body, ts, perms)

        def run_epoch():
            perms = jnp.asarray(rng.permutation(x.shape[0])[: steps * BATCH].reshape(steps, BATCH))
            state["ts"], (losses, corrects) = epoch(state["ts"], perms)
            return float(np.mean(losses)), float(np.sum(corrects)) / (steps * BATCH)

        return run_epoch
    step = jax.jit(train_step)

    def run_epoch():
        perms = rng.permutation(x.shape[0])[: steps * BATCH].reshape(steps, BATCH)
        losses, corrects, ts = [], [], state["ts"]
        for perm in perms:
            ts, loss, correct = step(ts, x[perm], y[perm])
            losses.append(loss)
            corrects.append(correct)
        state["ts"] = ts
        return float(np.mean(jnp.stack(losses))), float(np.sum(jnp.stack(corrects))) / (steps * BATCH)

    return run_epoch


def make_equinox(x, y, seed: int = 0) -> Callable:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    model = eqx.nn.Sequential([
        eqx.nn.Conv2d(1, 6, 5, padding=2, key=k[0]), eqx.nn.Lambda(jax.nn.relu), eqx.nn.MaxPool2d(2, 2),
        eqx.nn.Conv2d(6, 16, 5, key=k[1]), eqx.nn.Lambda(jax.nn.relu), eqx.nn.MaxPool2d(2, 2),
        eqx.nn.Lambda(jnp.ravel), eqx.nn.Linear(400, 120, key=k[2]), eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Linear(120, 84, key=k[3]), eqx.nn.Lambda(jax.nn.relu), eqx.nn.Linear(84, 10, key=k[4])])
    optimizer = optax.adam(LEARNING_RATE)
    state = {"model": model, "opt_state": optimizer.init(eqx.filter(model, eqx.is_array))}
    x_chw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # Equinox convolutions take (C, H, W)

    @eqx.filter_jit
    def make_step(model, opt_state, images, labels):
        def loss_fn(model):
            logits = jax.vmap(model)(images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

        (loss, logits), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss, jnp.sum(jnp.argmax(logits, -1) == labels)

    rng = np.random.default_rng(seed)
    steps = x.shape[0] // BATCH

    def run_epoch():
        perms = rng.permutation(x.shape[0])[: steps * BATCH].reshape(steps, BATCH)
        model, opt_state, losses, corrects = state["model"], state["opt_state"], [], []
        for perm in perms:
            model, opt_state, loss, correct = make_step(model, opt_state, x_chw[perm], y[perm])
            losses.append(loss)
            corrects.append(correct)
        state.update(model=model, opt_state=opt_state)
        return float(np.mean(jnp.stack(losses))), float(np.sum(jnp.stack(corrects))) / (steps * BATCH)

    return run_epoch


def make_torch(x, y, seed: int = 0) -> Callable:
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(y.astype(np.int64))
    return common.torch_epoch_fn(model, optimizer, images, labels, BATCH)


FACTORIES = {
    "jaxnets-scan": lambda x, y: make_jaxnets(x, y, "scan"),
    "jaxnets-user": make_user,
    "jaxnets-step": lambda x, y: make_jaxnets(x, y, "step"),
    "jaxnets-im2col-scan": lambda x, y: make_jaxnets(x, y, "scan", impl="im2col"),
    "jaxnets-xla-scan": lambda x, y: make_jaxnets(x, y, "scan", impl="xla"),
    "jaxnets-xla-step": lambda x, y: make_jaxnets(x, y, "step", impl="xla"),
    "flax": make_flax,
    "flax-scan": lambda x, y: make_flax(x, y, scan=True),
    "equinox": make_equinox,
    "torch": make_torch,
}
NEEDS = {"flax": "flax", "flax-scan": "flax", "equinox": "equinox", "torch": "torch"}


def epoch_flops(steps: int, batch: int = BATCH) -> int:
    """Multiply-add FLOPs of one training epoch (convolutions and dense layers; forward 2·MACs,
    weight gradient 2·MACs, input gradient 2·MACs except for the first layer). MACs per example:
    conv1 28·28·6·25 = 117,600, conv2 10·10·16·150 = 240,000, dense 48,000 + 10,080 + 840."""
    macs = [117_600, 240_000, 48_000, 10_080, 840]
    return steps * batch * (6 * sum(macs) - 2 * macs[0])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 512 examples, 1 repeat, < 60 s")
    parser.add_argument("--repeats", type=int, default=None, help="steady-state epochs each (default 5)")
    parser.add_argument("--examples", type=int, default=None, help="train on the first N examples")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS), help="comma-separated subset")
    parser.add_argument("--variants", action="store_true", help=f"also time {', '.join(VARIANTS)}")
    parser.add_argument("--quiet", type=float, default=0.3,
                        help="before each round wait (≤ 60 s) until other processes use < this CPU fraction; <0: never")
    parser.add_argument("--json", default=None, help="write all results to this JSON file")
    parser.add_argument("--first-epoch-runs", type=int, default=None,
                        help="first epochs per implementation in fresh processes (default 3, 0 with --quick)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    examples = args.examples or (BATCH * 4 if args.quick else None)
    if args.child:
        x, y, _ = common.fashion_mnist_train(examples)
        common.first_epoch_child(FACTORIES[args.child], x, y, uses_jax=args.child != "torch", cache_dir=args.cache_dir)
        return {}
    repeats = args.repeats or (1 if args.quick else 5)
    cold_runs = args.first_epoch_runs if args.first_epoch_runs is not None else (0 if args.quick else 3)
    quiet = None if args.quiet < 0 or args.quick else args.quiet
    names = [n for n in args.impls.split(",") if n] + (list(VARIANTS) if args.variants else [])
    unknown = [n for n in names if n not in FACTORIES]
    if unknown:
        parser.error(f"unknown implementations {unknown}; known: {', '.join(FACTORIES)}")
    skipped = [n for n in names if n in NEEDS and common.version_of(NEEDS[n]) is None]
    for name in skipped:
        print(f"skipping {name}: {NEEDS[name]} is not installed")
    names = [n for n in names if n not in skipped]

    import jax.numpy as jnp

    x, y, source = common.fashion_mnist_train(examples)
    steps = x.shape[0] // BATCH
    info = common.environment()
    print(f"data: {source}, {x.shape[0]} examples, {steps} steps of {BATCH}; {info['cpu']}, {info['cores']} cores "
          f"({info['simd']}), jax {info['versions']['jax']}, torch {info['versions']['torch']}, "
          f"XLA_FLAGS={info['xla_flags']!r}")
    (jnp.zeros(()) + 1).block_until_ready()
    runners, first, last = {}, {}, {}
    for name in names:
        runners[name] = FACTORIES[name](x, y)
        first[name] = common.timed(lambda: last.__setitem__(name, runners[name]()))
        print(f"  first epoch {name:<18} {first[name]:7.3f} s", flush=True)

    def remember(name):
        def run():
            last[name] = runners[name]()
        return run

    show = lambda r, s: print(f"  round {r + 1}/{repeats}: " + "  ".join(f"{n} {v:.3f}" for n, v in s.items()), flush=True)
    steady = common.interleaved({n: remember(n) for n in names}, repeats, on_round=show, quiet=quiet)
    cold_names = names + [n + "+cache" for n in ("jaxnets-scan", "flax") if n in names]
    child_args = ["--examples", str(examples)] if examples else []
    cold = common.cold_first_epochs(__file__, cold_names, cold_runs, child_args, quiet) if cold_runs else {}
    rows = common.epoch_rows(names, first, steady, cold, last)
    print()
    print(common.format_table(rows, list(rows[0])))
    best = {r["implementation"]: r["steady_min_s"] for r in rows}
    jaxnets = best.get("jaxnets-scan")
    ratio = lambda other: best[other] / jaxnets if jaxnets and best.get(other) else math.nan
    flops = epoch_flops(steps)
    print(f"\nepoch {flops / 1e9:.1f} GFLOP (conv + dense multiply-adds); jaxnets-scan "
          f"{flops / (jaxnets or math.nan) / 1e9:.1f} GFLOP/s; ratios = other's steady min / jaxnets-scan's")
    result = {"machine": info, "examples": int(x.shape[0]), "steps": steps, "rows": rows, "steady_seconds": steady,
              "jaxnets_vs_torch": ratio("torch"), "jaxnets_vs_flax": ratio("flax"),
              "jaxnets_vs_flax_scan": ratio("flax-scan"), "jaxnets_vs_equinox": ratio("equinox"),
              "user_vs_models_lenet": (best["jaxnets-user"] / jaxnets if jaxnets and best.get("jaxnets-user")
                                       else math.nan)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"jaxnets_vs_torch={result['jaxnets_vs_torch']:.2f} jaxnets_vs_flax={result['jaxnets_vs_flax']:.2f} "
          f"user_vs_models_lenet={result['user_vs_models_lenet']:.2f}")
    return result


if __name__ == "__main__":
    main()
