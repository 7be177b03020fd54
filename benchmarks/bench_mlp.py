"""One training epoch of an MLP in jaxnets, Flax, Equinox and PyTorch, side by side.

The task: MLP 784-256-256-10, ReLU, Adam(1e-3), batch 128, float32, one epoch
over the Fashion-MNIST training set (60000 images → 468 full batches, shuffled every epoch).
Every implementation returns the epoch's mean training loss and its number of correct
predictions, so their loops do the same work.

* ``jaxnets-scan``: the epoch as ``jaxnets.fit`` runs it (``common.jaxnets_epoch_fn``: the plan from
  ``train.plan_epoch``, then one compiled call per epoch, ``lax.scan`` over the shuffled minibatches).
* ``jaxnets-step``: the engine ``fit(engine="step")`` uses (one jitted step per batch).
* ``flax``: linen ``nn.Dense`` MLP with ``flax.training.train_state``, one ``jax.jit`` train step
  per batch, batches sliced on the host from a NumPy permutation (the Flax examples' loop).
* ``equinox``: ``eqx.nn.MLP`` with ``eqx.filter_jit`` per step.
* ``torch``: ``nn.Sequential`` + ``torch.optim.Adam``, index slicing of pre-made tensors, 2 threads.

Timings: the first epoch (compilation included) of each, then ``--repeats`` steady-state epochs
interleaved round-robin across the implementations (other processes share the CPU), reported as
min/median. With ``--first-epoch-runs N`` the first epoch is also measured N times per
implementation in fresh processes (cold caches, round-robin). The fp32 matmul peak is measured in
the same run. The last line is ``jaxnets_vs_flax=<x> jaxnets_vs_torch=<y> fraction_of_matmul_peak=<z>``
(speed-ups from the steady-state minima; the fraction uses :func:`epoch_flops`).

Run: ``.venv/bin/python benchmarks/bench_mlp.py`` (a few minutes), ``--quick`` for a smoke run
(< 60 s, a few hundred examples per epoch: its numbers mean nothing), ``--variants`` to add the
engine prototypes of :mod:`benchmarks.mlp_variants`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402

SIZES = (784, 256, 256, 10)
BATCH = 128
LEARNING_RATE = 1e-3
IMPLEMENTATIONS = ("jaxnets-scan", "jaxnets-step", "flax", "equinox", "torch")


def epoch_flops(steps: int, batch: int = BATCH, sizes=SIZES) -> int:
    """FLOPs of one training epoch of a dense MLP, counting the matmuls only (biases, ReLU,
    softmax and Adam are O(params + activations), < 1% here).

    Per example, a layer n_in → n_out does n_in·n_out multiply-adds (MACs):
      forward                     2·MACs           (y = x W)
      backward, weight gradient   2·MACs           (dW = xᵀ dy)
      backward, input gradient    2·MACs           (dx = dy Wᵀ) — not needed for layer 1,
                                                    whose input is the data.
    So epoch FLOPs = steps·batch·(6·Σ MACs − 2·MACs₁). For 784-256-256-10: Σ MACs = 268,800,
    MACs₁ = 200,704 → 1,211,392 FLOPs per example, 72.6 GFLOP for 468 × 128 examples
    (the cruder "3 × forward" count gives 96.8 GFLOP over 60,000 examples).
    """
    macs = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return steps * batch * (6 * sum(macs) - 2 * macs[0])


# ---------------------------------------------------------------- implementations
# Each factory takes the training data (NumPy x: (N, 28, 28, 1) float32, y: (N,) int32) and returns
# run_epoch() -> (mean loss, accuracy), which blocks until the epoch is done.


def make_jaxnets(x, y, engine: str = "scan", seed: int = 0) -> Callable[[], tuple[float, float]]:
    from jaxnets import models

    return common.jaxnets_epoch_fn(models.mlp(list(SIZES[1:])), x, y, engine=engine, batch_size=BATCH,
                                   learning_rate=LEARNING_RATE, seed=seed)


def make_flax(x, y, seed: int = 0) -> Callable[[], tuple[float, float]]:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = x.reshape((x.shape[0], -1))
            for features in SIZES[1:-1]:
                x = nn.relu(nn.Dense(features)(x))
            return nn.Dense(SIZES[-1])(x)

    model = MLP()
    params = model.init(jax.random.PRNGKey(seed), jnp.ones((1, 28, 28, 1)))["params"]
    state = {"ts": train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(LEARNING_RATE))}

    @jax.jit
    def train_step(ts, images, labels):
        def loss_fn(params):
            logits = ts.apply_fn({"params": params}, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts.params)
        return ts.apply_gradients(grads=grads), loss, jnp.sum(jnp.argmax(logits, -1) == labels)

    rng = np.random.default_rng(seed)
    steps = x.shape[0] // BATCH

    def run_epoch():
        perms = rng.permutation(x.shape[0])[: steps * BATCH].reshape(steps, BATCH)
        losses, corrects = [], []
        ts = state["ts"]
        for perm in perms:
            ts, loss, correct = train_step(ts, x[perm], y[perm])
            losses.append(loss)
            corrects.append(correct)
        state["ts"] = ts
        return float(np.mean(jnp.stack(losses))), float(np.sum(jnp.stack(corrects))) / (steps * BATCH)

    return run_epoch


def make_equinox(x, y, seed: int = 0) -> Callable[[], tuple[float, float]]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    model = eqx.nn.MLP(SIZES[0], SIZES[-1], SIZES[1], len(SIZES) - 2, activation=jax.nn.relu,
                       key=jax.random.PRNGKey(seed))
    optimizer = optax.adam(LEARNING_RATE)
    state = {"model": model, "opt_state": optimizer.init(eqx.filter(model, eqx.is_array))}

    @eqx.filter_jit
    def make_step(model, opt_state, images, labels):
        def loss_fn(model):
            logits = jax.vmap(model)(images.reshape(images.shape[0], -1))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

        (loss, logits), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss, jnp.sum(jnp.argmax(logits, -1) == labels)

    rng = np.random.default_rng(seed)
    steps = x.shape[0] // BATCH

    def run_epoch():
        perms = rng.permutation(x.shape[0])[: steps * BATCH].reshape(steps, BATCH)
        model, opt_state = state["model"], state["opt_state"]
        losses, corrects = [], []
        for perm in perms:
            model, opt_state, loss, correct = make_step(model, opt_state, x[perm], y[perm])
            losses.append(loss)
            corrects.append(correct)
        state.update(model=model, opt_state=opt_state)
        return float(np.mean(jnp.stack(losses))), float(np.sum(jnp.stack(corrects))) / (steps * BATCH)

    return run_epoch


def make_torch(x, y, seed: int = 0) -> Callable[[], tuple[float, float]]:
    import torch
    from torch import nn

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    layers: list = [nn.Flatten()]
    for n_in, n_out in zip(SIZES[:-2], SIZES[1:-1]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(SIZES[-2], SIZES[-1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    images, labels = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))
    return common.torch_epoch_fn(model, optimizer, images, labels, BATCH)


FACTORIES = {
    "jaxnets-scan": lambda x, y: make_jaxnets(x, y, "scan"),
    "jaxnets-step": lambda x, y: make_jaxnets(x, y, "step"),
    "flax": make_flax,
    "equinox": make_equinox,
    "torch": make_torch,
}
NEEDS = {"flax": "flax", "equinox": "equinox", "torch": "torch"}


def available(names) -> tuple[list[str], list[str]]:
    """(implementations whose framework is installed, those skipped)."""
    ok, skipped = [], []
    for name in names:
        (skipped if name in NEEDS and common.version_of(NEEDS[name]) is None else ok).append(name)
    return ok, skipped


# ---------------------------------------------------------------- first epochs in fresh processes


def child(name: str, examples: int | None, cache_dir: str | None) -> None:
    """Measures one cold first epoch of ``name`` in this (fresh) process and prints it as JSON."""
    x, y, _ = common.fashion_mnist_train(examples)
    common.first_epoch_child(FACTORIES[name], x, y, uses_jax=name.startswith(("jaxnets", "flax", "equinox")),
                             cache_dir=cache_dir)


# ---------------------------------------------------------------- main


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few examples, 1 repeat, < 60 s")
    parser.add_argument("--repeats", type=int, default=None, help="steady-state epochs per implementation (default 7)")
    parser.add_argument("--examples", type=int, default=None, help="train on the first N examples (default all)")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS), help="comma-separated subset")
    parser.add_argument("--first-epoch-runs", type=int, default=None,
                        help="cold first epochs per implementation in fresh processes (default 3, 0 in --quick)")
    parser.add_argument("--variants", action="store_true", help="also time the engine prototypes (mlp_variants.py)")
    parser.add_argument("--quiet", type=float, default=0.3,
                        help="before each round wait (≤ 60 s) until other processes use < this CPU fraction; <0: never")
    parser.add_argument("--quiet-timeout", type=float, default=60.0, help="longest wait for quiet before a round (s)")
    parser.add_argument("--json", default=None, help="write all results to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.examples, args.cache_dir)
        return {}
    quick = args.quick
    examples = args.examples or (BATCH * 4 if quick else None)
    repeats = args.repeats or (1 if quick else 7)
    cold_runs = args.first_epoch_runs if args.first_epoch_runs is not None else (0 if quick else 3)
    quiet = None if args.quiet < 0 or quick else args.quiet
    names, skipped = available([n for n in args.impls.split(",") if n])
    for name in skipped:
        print(f"skipping {name}: {NEEDS[name]} is not installed (pip install -e '.[bench]')")

    import jax.numpy as jnp

    x, y, source = common.fashion_mnist_train(examples)
    steps = x.shape[0] // BATCH
    info = common.environment()
    print(f"data: {source}, {x.shape[0]} examples, {steps} steps of {BATCH}; {info['cpu']}, {info['cores']} cores "
          f"({info['simd']}), jax {info['versions']['jax']}, XLA_FLAGS={info['xla_flags']!r}")
    (jnp.zeros(()) + 1).block_until_ready()

    factories = dict(FACTORIES)
    if args.variants or any(n.startswith("v-") for n in names):
        from benchmarks import mlp_variants

        factories.update(mlp_variants.FACTORIES)
        names += [n for n in mlp_variants.FACTORIES if args.variants and n not in names]
    runners, first, last = {}, {}, {}
    for name in names:  # first epoch, compilation included, in this process
        if quiet is not None:
            common.wait_for_quiet(quiet, args.quiet_timeout)
        started = time.perf_counter()
        runners[name] = factories[name](x, y)
        setup = time.perf_counter() - started
        first[name] = common.timed(lambda: last.__setitem__(name, runners[name]()))
        print(f"  first epoch {name:<22} {first[name]:7.3f} s  (setup {setup:.2f} s)", flush=True)

    def show(r, seconds):
        print(f"  round {r + 1}/{repeats}: " + "  ".join(f"{n} {s:.3f}" for n, s in seconds.items()), flush=True)

    def remember(name):
        def run():
            last[name] = runners[name]()
        return run

    steady = common.interleaved({n: remember(n) for n in names}, repeats, on_round=show, quiet=quiet,
                                 quiet_timeout=args.quiet_timeout, quiet_each_call=True)
    peak = 0.0
    for _ in range(1 if quick else 2):
        if quiet is not None:
            common.wait_for_quiet(quiet, args.quiet_timeout)
        peak = max(peak, common.matmul_peak(1024 if quick else 4096, 3 if quick else 5))
    cold_names = [n for n in names if n in FACTORIES] + [n + "+cache" for n in ("jaxnets-scan", "flax") if n in names]
    cold = common.cold_first_epochs(__file__, cold_names, cold_runs, ["--examples", str(examples)] if examples else [],
                                    quiet, args.quiet_timeout) if cold_runs else {}

    rows = common.epoch_rows(names, first, steady, cold, last)
    print()
    print(common.format_table(rows, list(rows[0])))
    flops = epoch_flops(steps)
    best = {r["implementation"]: r["steady_min_s"] for r in rows}
    jaxnets = best.get("jaxnets-scan")
    ratio = lambda other: best[other] / jaxnets if jaxnets and best.get(other) else math.nan
    fraction = flops / jaxnets / 1e9 / peak if jaxnets else math.nan
    print(f"\nepoch FLOPs {flops / 1e9:.2f} GFLOP (formula in epoch_flops); matmul peak {peak:.1f} GFLOP/s "
          f"(best {1024 if quick else 4096}² fp32 matmul); jaxnets-scan steady min {jaxnets or math.nan:.3f} s = "
          f"{flops / (jaxnets or math.nan) / 1e9:.1f} GFLOP/s; speed-ups from steady-state minima")
    result = {"machine": info, "examples": int(x.shape[0]), "steps": steps, "epoch_gflop": flops / 1e9,
              "matmul_peak_gflops": peak, "rows": rows, "steady_seconds": steady, "cold_first_seconds": cold,
              "jaxnets_vs_flax": ratio("flax"), "jaxnets_vs_torch": ratio("torch"), "fraction_of_matmul_peak": fraction}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"jaxnets_vs_flax={result['jaxnets_vs_flax']:.2f} jaxnets_vs_torch={result['jaxnets_vs_torch']:.2f} "
          f"fraction_of_matmul_peak={fraction:.2f}")
    return result


if __name__ == "__main__":
    main()
