"""A full central-difference gradient: jaxnets.gradcheck against torch.autograd.gradcheck, side by side.

The task: a tanh MLP 64-128-128-10 (26,122 parameters), float64, cross-entropy on a batch
of ``--batch`` examples (default 16); every parameter perturbed by ±ε (2P loss evaluations).

* ``jaxnets-generic``: :func:`jaxnets.gradcheck.finite_difference_fn` on ``loss(params)`` (per-leaf
  chunks of coordinates under ``vmap``, ``lax.map`` over chunks, one ``jit``).
* ``jaxnets-sequential``: :func:`jaxnets.gradcheck.sequential_finite_difference_fn` on the model and
  the loss of its output: the same 2P evaluations, with the layers below the perturbed one cached
  and a perturbed Dense weight applied as a rank-one change of its layer's output.
  Compilation is timed separately for both.
* ``torch``: ``torch.autograd.gradcheck(loss, params)`` on the same network, weights and data
  (its numerical Jacobian is the same 2P evaluations; its analytical one is one backward pass).
  Threads: 1 (measured faster than 2 on this shared 2-core machine).
* ``naive-vmap``: ``vmap`` over all rows of a P × P identity at once (the obvious JAX code), run in
  a subprocess at smaller P to measure its peak memory (``ru_maxrss``) and time honestly.
* memory: the sequential function's peak RSS in a fresh process at P ≈ 2·10³, 2.6·10⁴ and 8.5·10⁴,
  against the P² floats a P × P matrix would take.

Also measured: the chunk size's effect, and the backward/forward time ratio (``jax.value_and_grad``
vs the loss alone). Timings interleave the implementations round-robin (other processes share the
CPU) and report min/median. Last line: ``jaxnets_fd_vs_torch_gradcheck=<x> fd_seconds=<s>``
(torch's min time / the fastest jaxnets variant's min time, and that time); the line before it gives
the same for the generic function.

Run: ``.venv/bin/python benchmarks/bench_gradcheck.py`` (a few minutes: torch's gradcheck alone takes
10–30 s a call here), ``--quick`` for a smoke run (a smaller network; its numbers mean little).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402


def make_problem(sizes, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0]))
    t = np.arange(batch) % sizes[-1]
    weights = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        weights.append((rng.standard_normal((a, b)) * np.sqrt(2.0 / (a + b)), 0.1 * rng.standard_normal(b)))
    return x, t, weights


def jax_model(sizes):
    from jaxnets import models

    return models.mlp(list(sizes[1:]), activation="tanh", flatten=False)


def jax_head(t):
    """The loss of the model's output: mean cross-entropy against labels ``t``."""
    import jax.numpy as jnp

    from jaxnets.losses import cross_entropy

    tj = jnp.asarray(t)
    return lambda y: jnp.mean(cross_entropy(y, tj))


def jax_loss(sizes, x, t):
    import jax.numpy as jnp

    model, head, xj = jax_model(sizes), jax_head(t), jnp.asarray(x)
    return lambda p: head(model.apply(p, {}, xj)[0])


def jax_params(weights):
    import jax.numpy as jnp

    return {f"dense{i + 1}": {"w": jnp.asarray(w), "b": jnp.asarray(b)} for i, (w, b) in enumerate(weights)}


def naive_child(sizes, batch) -> None:
    """vmap over a P × P identity (all directions at once); prints JSON with seconds and peak RSS."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    jax.config.update("jax_enable_x64", True)
    x, t, weights = make_problem(sizes, batch)
    loss = jax_loss(sizes, x, t)
    flat, unravel = ravel_pytree(jax_params(weights))
    eps = 6e-6

    @jax.jit
    def naive(flat):
        eye = jnp.eye(flat.shape[0], dtype=flat.dtype)  # (P, P)
        f = jax.vmap(lambda e: loss(unravel(flat + eps * e)) - loss(unravel(flat - eps * e)))
        return f(eye) / (2 * eps)

    jax.block_until_ready(naive(flat))
    started = time.perf_counter()
    jax.block_until_ready(naive(flat))
    seconds = time.perf_counter() - started
    print(json.dumps({"P": int(flat.shape[0]), "seconds": seconds,
                      "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def jaxnets_child(sizes, batch) -> None:
    """The sequential finite-difference gradient in a fresh process; prints JSON with P, seconds
    (after compilation) and peak RSS, to show its memory does not grow as P²."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxnets import gradcheck

    x, t, weights = make_problem(sizes, batch)
    params = jax_params(weights)
    fd = gradcheck.sequential_finite_difference_fn(jax_model(sizes), jax_head(t))
    xj = jax.numpy.asarray(x)
    jax.block_until_ready(fd(params, xj))
    started = time.perf_counter()
    jax.block_until_ready(fd(params, xj))
    print(json.dumps({"P": sum(int(v.size) for v in jax.tree_util.tree_leaves(params)),
                      "seconds": time.perf_counter() - started,
                      "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def child_row(flag: str, sizes, batch) -> dict:
    """Runs this file with ``flag`` (a child mode) in a subprocess and returns its JSON line."""
    run = subprocess.run([sys.executable, __file__, flag, ",".join(map(str, sizes)), "--batch", str(batch)],
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        return {"P": None, "error": (run.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small network, 1 repeat")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunks", default="32,128", help="chunk sizes to time")
    parser.add_argument("--naive-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--jaxnets-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_child or args.jaxnets_child:
        child = naive_child if args.naive_child else jaxnets_child
        child(tuple(int(v) for v in (args.naive_child or args.jaxnets_child).split(",")), args.batch)
        return {}

    import jax
    import torch

    jax.config.update("jax_enable_x64", True)
    torch.set_num_threads(1)
    from jaxnets import gradcheck

    sizes = (16, 32, 32, 10) if args.quick else (64, 128, 128, 10)
    repeats = 1 if args.quick else args.repeats
    x, t, weights = make_problem(sizes, args.batch)
    loss, params = jax_loss(sizes, x, t), jax_params(weights)
    P = sum(int(v.size) for v in jax.tree_util.tree_leaves(params))
    print(f"tanh MLP {'-'.join(map(str, sizes))}, P = {P}, batch {args.batch}, float64; {common.environment()}")

    chunks = [int(c) for c in args.chunks.split(",")] if not args.quick else [64]
    model, head = jax_model(sizes), jax_head(t)
    xj = jax.numpy.asarray(x)
    fd_fns, compile_seconds, errors = {}, {}, {}
    reference = jax.grad(loss)(params)
    for chunk in chunks:
        generic = gradcheck.finite_difference_fn(loss, chunk_size=chunk)
        sequential = gradcheck.sequential_finite_difference_fn(model, head, chunk_size=chunk)
        for name, fn in ((f"jaxnets-generic-chunk{chunk}", lambda fn=generic: fn(params)),
                         (f"jaxnets-sequential-chunk{chunk}", lambda fn=sequential: fn(params, xj))):
            compile_seconds[name] = common.timed(lambda: jax.block_until_ready(fn()))
            errors[name] = gradcheck.relative_error(reference, fn())
            fd_fns[name] = fn

    xt, tt = torch.tensor(x), torch.tensor(t)
    tparams = [torch.tensor(a).requires_grad_() for w in weights for a in w]

    def torch_loss(*ps):
        h = xt
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1]
            if i < len(ps) - 2:
                h = torch.tanh(h)
        return torch.nn.functional.cross_entropy(h, tt)

    runners = {name: (lambda fn=fn: jax.block_until_ready(fn())) for name, fn in fd_fns.items()}
    runners["torch.autograd.gradcheck"] = lambda: torch.autograd.gradcheck(torch_loss, tparams, eps=1e-6, atol=1e-5)
    times = common.interleaved(runners, repeats, on_round=lambda r, s: print(
        f"round {r}: " + ", ".join(f"{k} {v:.2f} s" for k, v in s.items()), flush=True))
    rows = [{"implementation": k, **common.summarize(v)} for k, v in times.items()]
    for row in rows:
        row["compile_s"] = compile_seconds.get(row["implementation"])
        row["rel_error_vs_grad"] = errors.get(row["implementation"])
    print(common.format_table(rows, ["implementation", "min", "median", "max", "n", "compile_s", "rel_error_vs_grad"]))

    # backward / forward ratio, same network, batch 16 and a larger batch
    ratios = []
    for batch in (args.batch, 1024):
        xb, tb, _ = make_problem(sizes, batch)
        lb = jax_loss(sizes, xb, tb)
        fwd, vg = jax.jit(lb), jax.jit(jax.value_and_grad(lb))
        jax.block_until_ready(fwd(params)), jax.block_until_ready(vg(params))
        tt_ = common.interleaved({"forward": lambda: jax.block_until_ready(fwd(params)),
                                  "value_and_grad": lambda: jax.block_until_ready(vg(params))}, 200 if not args.quick else 20)
        f, g = min(tt_["forward"]), min(tt_["value_and_grad"])
        ratios.append({"batch": batch, "forward_ms": f * 1e3, "value_and_grad_ms": g * 1e3, "backward_over_forward": g / f - 1})
    print(common.format_table(ratios, ["batch", "forward_ms", "value_and_grad_ms", "backward_over_forward"]))

    naive = []
    for naive_sizes in ([(8, 16, 16, 10)] if args.quick else [(16, 32, 32, 10), (32, 64, 64, 10)]):
        row = child_row("--naive-child", naive_sizes, args.batch)
        if row["P"] is None:
            naive.append(row)
            continue
        xs, ts, ws = make_problem(naive_sizes, args.batch)  # jaxnets at the same size, in this process
        fn, ps = gradcheck.finite_difference_fn(jax_loss(naive_sizes, xs, ts)), jax_params(ws)
        jax.block_until_ready(fn(ps))
        row["jaxnets_seconds"] = min(common.timed(lambda: jax.block_until_ready(fn(ps))) for _ in range(3))
        row["P2_float64_gb"] = row["P"] ** 2 * 8 / 2**30
        naive.append(row)
    print("naive vmap over a P×P identity (subprocess, peak RSS):")
    print(common.format_table(naive, ["P", "seconds", "maxrss_gb", "P2_float64_gb", "jaxnets_seconds"]))
    memory = [child_row("--jaxnets-child", sizes_, args.batch) for sizes_ in
              ([(8, 16, 16, 10), (16, 32, 32, 10)] if args.quick else [(16, 32, 32, 10), sizes, (64, 256, 256, 10)])]
    print("jaxnets sequential_finite_difference_fn (subprocess, peak RSS; a P×P float64 matrix would need P2_gb):")
    for row in memory:
        row["P2_gb"] = row["P"] ** 2 * 8 / 2**30 if row.get("P") else None
    print(common.format_table(memory, ["P", "seconds", "maxrss_gb", "P2_gb"]))

    torch_seconds = min(times["torch.autograd.gradcheck"])
    best_generic = min((k for k in times if k.startswith("jaxnets-generic")), key=lambda k: min(times[k]))
    best = min((k for k in times if k.startswith("jaxnets")), key=lambda k: min(times[k]))
    result = {"P": P, "batch": args.batch, "rows": rows, "ratios": ratios, "naive": naive, "memory": memory, "best": best}
    print(json.dumps(common.environment()))
    print(f"generic ({best_generic}): jaxnets_fd_vs_torch_gradcheck={torch_seconds / min(times[best_generic]):.2f} "
          f"fd_seconds={min(times[best_generic]):.3f}")
    print(f"best: {best}")
    print(f"jaxnets_fd_vs_torch_gradcheck={torch_seconds / min(times[best]):.2f} fd_seconds={min(times[best]):.3f}")
    return result


if __name__ == "__main__":
    main()
