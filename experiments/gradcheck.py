"""Backprop versus finite differences: agreement, the ε U-curve, and what each costs.

It tests the lecture notes' claims with numbers: hand-written backprop (the delta rule,
:mod:`jaxnets.backprop`), ``jax.grad`` and central differences (:mod:`jaxnets.gradcheck`) give the
same gradient; the finite-difference error falls with ε (truncation) and then rises (round-off);
the backward pass costs about two forward passes; finite differences cost O(P) forward passes;
differentiating layer by layer from scratch costs O(L²) against backprop's O(L).

Command: ``python -m experiments gradcheck`` (full) or ``python -m experiments gradcheck --quick`` (CI).
Run time on the 2-core CPU: quick ≈ 1–1.5 min (mostly compilation; MLPs with sigmoid/tanh/ReLU/ELU with
2 hidden layers in float32 and float64, a small CNN, 12 ε values, P up to ≈ 10⁵ for backprop and
≈ 10⁴ for finite differences, depths 1–8); full ≈ 2.5 min (depths 1/2/4, P up to ≈ 10⁶ and
≈ 4·10⁴, depths up to 24).
Expected result: float64 relative errors ≈ 1e-9–1e-10 between finite differences and autodiff for
the smooth activations (target ≤ 1e-7), ≈ 1e-16 between hand backprop and ``jax.grad``; float32
errors ≈ 1e-3 at its best ε ≈ 1e-2–1e-3; the U-curve's minimum near ε ≈ u^(1/3) (6e-6 in float64);
backward/forward time ratio ≈ 1–3; the naive per-layer differentiation grows about quadratically in
depth while backprop grows linearly. ``report.md`` says which claims the numbers support.

Outputs in ``results/gradcheck/``: summary.json (schema :data:`SUMMARY_SCHEMA`), eps_sweep.png,
time_vs_params.png, time_vs_depth.png, report.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from experiments import common
from jaxnets import backprop, gradcheck, models
from jaxnets import plot as plot_lib
from jaxnets.losses import cross_entropy
from jaxnets.nn import Activation, Dense, Flatten, Sequential
from jaxnets.runtime import environment

__all__ = ["Config", "run", "headline", "SUMMARY_SCHEMA"]

_NUMBER = {"type": ["number", "null"]}
SUMMARY_SCHEMA = {
    "type": "object",
    "required": ["config", "environment", "cases", "eps_sweep", "cost_vs_params", "cost_vs_depth", "claims"],
    "properties": {
        "cases": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["model", "activation", "dtype", "num_params", "max_rel_error", "fd_seconds",
                         "backprop_seconds"],
            "properties": {"model": {"type": "string"}, "activation": {"type": "string"},
                           "dtype": {"enum": ["float32", "float64"]}, "num_params": {"type": "integer", "minimum": 1},
                           "max_rel_error": {"type": "number", "minimum": 0}, "fd_seconds": {"type": "number"},
                           "backprop_seconds": _NUMBER}}},
        "eps_sweep": {"type": "array", "minItems": 2, "items": {
            "type": "object", "required": ["dtype", "eps", "rel_error"],
            "properties": {"eps": {"type": "number"}, "rel_error": _NUMBER}}},
        "claims": common.CLAIMS_SCHEMA,
    },
}
SMOOTH = ("sigmoid", "tanh")
DEPTH_WIDTH = 256


@dataclasses.dataclass
class Config:
    """See the module docstring for the command, run time and expected result."""

    quick: bool = False
    out: Path = Path("results/gradcheck")
    seed: int = 0
    batch: int = 16
    activations: tuple[str, ...] = ("sigmoid", "tanh", "relu", "elu")
    depths: tuple[int, ...] | None = None  # hidden layers of the agreement MLPs
    width: int = 16
    epsilons: tuple[float, ...] = tuple(10.0 ** -k for k in range(1, 13))
    max_backprop_params: int | None = None  # cost vs P: largest P for forward/backward
    max_fd_params: int | None = None  # and for finite differences
    cost_depths: tuple[int, ...] | None = None  # cost vs L
    repeats: int = 3
    cost_batch: int = 64  # batch of the cost-vs-P and cost-vs-L timings

    def resolved(self) -> dict:
        quick = self.quick
        return {"depths": self.depths or ((2,) if quick else (1, 2, 4)),
                "max_backprop_params": self.max_backprop_params or (100_000 if quick else 1_000_000),
                "max_fd_params": self.max_fd_params or (10_000 if quick else 40_000),
                "cost_depths": self.cost_depths or ((1, 2, 4, 8) if quick else (1, 2, 4, 8, 16, 24))}


def best_time(fn, *args, repeats: int = 3) -> float:
    """Minimum wall seconds of ``fn(*args)`` over ``repeats`` calls after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - started)
    return min(times)


def _data(key, batch, in_shape, classes, dtype):
    x = jax.random.normal(key, (batch, *in_shape), dtype)
    return x, jnp.arange(batch) % classes


def _loss_fn(model, x, t):
    return lambda p: jnp.mean(cross_entropy(model.apply(p, {}, x)[0], t))


def _fd_fn(model, x, t):
    """Central differences of the mean cross-entropy, ``fd(params, eps=None)``: the Sequential
    specialisation (cached lower layers, rank-one Dense updates), the same 2P evaluations."""
    fd = gradcheck.sequential_finite_difference_fn(model, lambda y: jnp.mean(cross_entropy(y, t)))
    return lambda p, eps=None: fd(p, x, eps)


def _num_params(params) -> int:
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))


def small_cnn():
    """conv 3×3×4, tanh, conv 3×3×4 stride 2, tanh, dense 3 on (batch, 8, 8, 1) images."""
    from jaxnets.nn import Conv2D

    return Sequential([Conv2D(4, 3), Activation("tanh"), Conv2D(4, 3, strides=2), Activation("tanh"), Flatten(),
                       Dense(3)], name="cnn")


def agreement_case(name, model, activation, dtype, key, batch, in_shape, classes, repeats, hand=True) -> dict:
    """Hand backprop (MLPs), jax.grad and central differences on one model in one dtype."""
    x, t = _data(key, batch, in_shape, classes, dtype)
    params, _ = model.init(key, x)
    loss = _loss_fn(model, x, t)
    grad_fn = jax.jit(jax.grad(loss))
    fd_fn = _fd_fn(model, x, t)
    auto = grad_fn(params)
    numeric = fd_fn(params)
    fd_report = gradcheck.compare_gradients(auto, numeric, names=("jax.grad", "central diff."))
    case = {"model": name, "activation": activation, "dtype": jnp.dtype(dtype).name, "num_params": _num_params(params),
            "eps": gradcheck.default_epsilon(dtype), "tolerance": fd_report.tolerance,
            "rel_error_grad_vs_fd": fd_report.rel_error, "worst_leaf": max(fd_report.leaves, key=lambda l: l.rel_error).path,
            "fd_seconds": best_time(fd_fn, params, repeats=1), "grad_seconds": best_time(grad_fn, params, repeats=repeats),
            "backprop_seconds": None, "rel_error_backprop_vs_grad": None, "rel_error_backprop_vs_fd": None}
    if hand:
        bp_fn = jax.jit(lambda p: backprop.backprop(model, p, x, t, "cross_entropy")[1])
        hand_grads = bp_fn(params)
        case["rel_error_backprop_vs_grad"] = gradcheck.relative_error(hand_grads, auto)
        case["rel_error_backprop_vs_fd"] = gradcheck.relative_error(hand_grads, numeric)
        case["backprop_seconds"] = best_time(bp_fn, params, repeats=repeats)
    if jnp.dtype(dtype) == jnp.float32:  # float32 reported at the ε that minimises its error too
        errors = {eps: gradcheck.relative_error(auto, fd_fn(params, eps)) for eps in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4)}
        case["best_eps"] = min(errors, key=lambda e: errors[e] if math.isfinite(errors[e]) else math.inf)
        case["best_rel_error"] = errors[case["best_eps"]]
    case["max_rel_error"] = max(v for k, v in case.items() if k.startswith("rel_error") and v is not None)
    case["passed"] = case["max_rel_error"] <= case["tolerance"]
    print(f"{name:<12} {activation:<10} {case['dtype']:<8} {case['num_params']:>7} {case['max_rel_error']:>15.2e} "
          f"{case['fd_seconds']:>8.3f}s", flush=True)
    return case


def eps_sweep(config, key) -> list[dict]:
    """Relative error of central differences against jax.grad for ε = 1e-1 … 1e-12, tanh MLP."""
    rows = []
    model = models.mlp([config.width, config.width, 4], activation="tanh")
    for dtype in (jnp.float32, jnp.float64):
        x, t = _data(key, config.batch, (8,), 4, dtype)
        params, _ = model.init(key, x)
        loss = _loss_fn(model, x, t)
        auto, fd_fn = jax.grad(loss)(params), _fd_fn(model, x, t)
        for eps in config.epsilons:
            error = gradcheck.relative_error(auto, fd_fn(params, eps))
            rows.append({"dtype": jnp.dtype(dtype).name, "eps": eps, "rel_error": error if math.isfinite(error) else None})
    return rows


def format_sweep(rows: list[dict]) -> str:
    """One line per dtype: the central-difference error at the largest and smallest ε and at the best one."""
    lines = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        mine = [r for r in rows if r["dtype"] == dtype and r["rel_error"] is not None]
        if not mine:
            continue
        best = min(mine, key=lambda r: r["rel_error"])
        lines.append(f"ε sweep ({dtype}): relative error {mine[0]['rel_error']:.1e} at ε={mine[0]['eps']:.0e}, "
                     f"least {best['rel_error']:.1e} at ε={best['eps']:.0e}, {mine[-1]['rel_error']:.1e} at "
                     f"ε={mine[-1]['eps']:.0e}")
    return "\n".join(lines)


def cost_vs_params(config, key, limits) -> list[dict]:
    """Forward, backward (jax.grad and hand backprop) and FD times of a one-hidden-layer tanh MLP
    on (batch, 64) inputs as the hidden width (so P) grows."""
    rows = []
    widths = [w for w in (2, 8, 32, 128, 512, 2048, 8192) if 64 * w + w + 10 * w + 10 <= limits["max_backprop_params"]]
    for width in widths:
        model = models.mlp([width, 10], activation="tanh")
        x, t = _data(key, config.cost_batch, (64,), 10, jnp.float64)
        params, _ = model.init(key, x)
        loss = _loss_fn(model, x, t)
        P = _num_params(params)
        row = {"num_params": P, "width": width,
               "forward_seconds": best_time(jax.jit(loss), params, repeats=config.repeats),
               "grad_seconds": best_time(jax.jit(jax.value_and_grad(loss)), params, repeats=config.repeats),
               "backprop_seconds": best_time(jax.jit(lambda p: backprop.backprop(model, p, x, t)), params,
                                             repeats=config.repeats),
               "fd_seconds": None}
        if P <= limits["max_fd_params"]:
            row["fd_seconds"] = best_time(_fd_fn(model, x, t), params, repeats=1)
        row["backward_forward_ratio"] = row["grad_seconds"] / row["forward_seconds"] - 1
        rows.append(row)
        fd = "not run (too many parameters)" if row["fd_seconds"] is None else f"{row['fd_seconds']:.3f} s"
        print(f"  P={P:<8} forward {row['forward_seconds']*1e3:8.3f} ms  value+grad {row['grad_seconds']*1e3:8.3f} ms"
              f"  FD {fd}", flush=True)
    return rows


def cost_vs_depth(config, key, depths) -> list[dict]:
    """Hand backprop (O(L)) against per-layer differentiation from scratch (O(L²), each layer's
    gradient its own compiled call: a fresh forward pass and deltas down to that layer)."""
    rows = []
    for depth in depths:
        model = models.mlp([DEPTH_WIDTH] * depth + [10], activation="tanh")
        x, t = _data(key, config.cost_batch, (DEPTH_WIDTH,), 10, jnp.float64)
        params, _ = model.init(key, x)
        bp = jax.jit(lambda p, model=model, x=x, t=t: backprop.backprop(model, p, x, t))
        per_layer = [jax.jit(lambda p, name=name, model=model, x=x, t=t: backprop.layer_gradient(model, p, x, t, name))
                     for name in params]
        naive = lambda p, per_layer=per_layer: [f(p) for f in per_layer]  # noqa: E731
        row = {"depth": depth, "num_params": _num_params(params),
               "backprop_seconds": best_time(bp, params, repeats=config.repeats),
               "naive_seconds": best_time(naive, params, repeats=config.repeats)}
        rows.append(row)
        print(f"  L={depth:<3} backprop {row['backprop_seconds']*1e3:8.2f} ms  naive {row['naive_seconds']*1e3:8.2f} ms",
              flush=True)
    return rows


def slope(xs, ys) -> float | None:
    """Least-squares slope of log y against log x (the exponent of a power law)."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(xs, ys) if a and b]
    if len(pts) < 2:
        return None
    return float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])


PROJECT = "jaxnets' own (numerical analysis)"


def judge(summary: dict, quick: bool = False) -> list[dict]:
    """Which of the notes' claims the numbers support. The timing claims need the full run's sizes (more
    parameters, more layers): quick mode reports their numbers but does not judge them."""
    cases, sweep = summary["cases"], summary["eps_sweep"]
    claims = []

    def claim(text, held, evidence, source=("S1", "Debugging Training"), timing=False):
        held = None if timing and quick else held
        deck, slide = source
        claims.append(common.claim(text, deck, slide, held, evidence) if deck != PROJECT else
                      {"claim": text, "source": PROJECT, "held": None if held is None else bool(held), "evidence": evidence})

    hand = [c["rel_error_backprop_vs_grad"] for c in cases if c["rel_error_backprop_vs_grad"] is not None
            and c["dtype"] == "float64"]
    claim("Hand-written backprop (the delta rule) equals jax.grad to float64 precision", max(hand) < 1e-12,
          f"largest relative error {max(hand):.1e} over {len(hand)} float64 MLPs",
          source=("S1", "Backpropagation: summary"))
    smooth = [c["max_rel_error"] for c in cases if c["dtype"] == "float64" and c["activation"] in SMOOTH]
    claim("Central differences agree with backprop to ≤ 1e-7 in float64 for smooth activations", max(smooth) <= 1e-7,
          f"largest relative error {max(smooth):.1e} (sigmoid/tanh MLPs and the tanh CNN)")
    f32 = [c for c in cases if c["dtype"] == "float32"]
    worst = max(f32, key=lambda c: c["best_rel_error"])
    claim("In float32 the check still passes at a suitable ε (tolerance 1e-2)",
          all(c["best_rel_error"] <= 1e-2 for c in f32),
          f"worst float32 case {worst['model']}/{worst['activation']}: {worst['best_rel_error']:.1e} at ε = "
          f"{worst['best_eps']:.0e} ({worst['max_rel_error']:.1e} at the default ε = {worst['eps']:.1e})",
          source=(PROJECT, ""))
    for dtype in ("float32", "float64"):
        rows = [r for r in sweep if r["dtype"] == dtype]
        errs = [r["rel_error"] if r["rel_error"] is not None else math.inf for r in rows]
        i = int(np.argmin(errs))
        u_shape = 0 < i < len(rows) - 1 and errs[0] > 10 * errs[i] and errs[-1] > 10 * errs[i]
        claim(f"{dtype}: the error falls with ε (truncation) then rises (round-off): a U-curve", u_shape,
              f"error {errs[0]:.1e} at ε = {rows[0]['eps']:.0e}, minimum {errs[i]:.1e} at ε = {rows[i]['eps']:.0e}, "
              f"{errs[-1]:.1e} at ε = {rows[-1]['eps']:.0e} (u^(1/3) = {gradcheck.default_epsilon(dtype):.0e})",
              source=(PROJECT, ""))
    ratios = [r["backward_forward_ratio"] for r in summary["cost_vs_params"] if r["num_params"] >= 10_000]
    if ratios:
        median = float(np.median(ratios))
        claim("The backward pass costs about two (2–3) forward passes", 1.0 <= median <= 3.5,
              f"(value_and_grad − forward) / forward = {median:.2f} (median over P ≥ 10⁴; "
              f"range {min(ratios):.2f}–{max(ratios):.2f})", source=("S3", "Computational Cost"), timing=True)
    fd = [r for r in summary["cost_vs_params"] if r["fd_seconds"] and r["fd_seconds"] >= 0.005]  # above call overhead
    fd_exp = slope([r["num_params"] for r in fd], [r["fd_seconds"] for r in fd])
    if fd_exp is not None:
        big = fd[-1]
        claim("A finite-difference gradient costs O(P) forward passes, so its time grows ≈ P² (backprop: one backward "
              "pass)", fd_exp >= 1.5,
              f"FD time ∝ P^{fd_exp:.2f} over P = {', '.join(str(r['num_params']) for r in fd)}; at P = "
              f"{big['num_params']} it took {big['fd_seconds']:.3f} s = {big['fd_seconds'] / big['forward_seconds']:.0f} "
              f"single forward passes (2P = {2 * big['num_params']}; batching evaluations under vmap makes each cheaper) "
              f"against {big['grad_seconds'] * 1e3:.2f} ms for value_and_grad", source=(PROJECT, ""), timing=True)
    depth = summary["cost_vs_depth"]
    layers = [r["depth"] + 1 for r in depth[-3:]]  # weight layers
    naive_exp = slope(layers, [r["naive_seconds"] for r in depth[-3:]])
    bp_exp = slope(layers, [r["backprop_seconds"] for r in depth[-3:]])
    if naive_exp is not None and bp_exp is not None:
        claim("Naive per-layer differentiation costs O(L²), backprop O(L)", naive_exp - bp_exp > 0.5,
              f"time ∝ L^{naive_exp:.2f} (naive) vs L^{bp_exp:.2f} (backprop) over L = "
              f"{', '.join(map(str, layers))} weight layers (theory: 2 vs 1); at {depth[-1]['depth']} hidden layers naive takes "
              f"{depth[-1]['naive_seconds'] / depth[-1]['backprop_seconds']:.1f}× backprop",
              source=("S0", "Forward Propagation"), timing=True)
    return claims


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(summary: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    plot_lib.eps_sweep(summary["eps_sweep"], ax=ax).set(ylabel="relative error vs jax.grad",
                                                        title="Central differences: truncation vs round-off")
    _save(fig, out / "eps_sweep.png")

    rows = summary["cost_vs_params"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    P = [r["num_params"] for r in rows]
    ax.loglog(P, [r["forward_seconds"] for r in rows], "o-", label="forward")
    ax.loglog(P, [r["grad_seconds"] for r in rows], "s-", label="forward + backward (jax.grad)")
    ax.loglog(P, [r["backprop_seconds"] for r in rows], "^--", label="hand backprop")
    fd = [r for r in rows if r["fd_seconds"]]
    ax.loglog([r["num_params"] for r in fd], [r["fd_seconds"] for r in fd], "d-", label="central differences (all P)")
    ax.set(xlabel="parameters P", ylabel="seconds", title="Cost vs number of parameters (float64)")
    ax.legend(fontsize=8)
    _save(fig, out / "time_vs_params.png")

    rows = summary["cost_vs_depth"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    L = [r["depth"] for r in rows]
    ax.loglog(L, [r["backprop_seconds"] for r in rows], "o-", label="backprop (delta rule)")
    ax.loglog(L, [r["naive_seconds"] for r in rows], "s-", label="per-layer from scratch")
    ax.set(xlabel="hidden layers", ylabel="seconds", title=f"Cost vs depth (width {DEPTH_WIDTH}, float64)")
    ax.legend()
    _save(fig, out / "time_vs_depth.png")


def report(summary: dict) -> str:
    fmt = lambda v, f=".1e": "–" if v is None else format(v, f)  # noqa: E731
    cases = common.markdown_table(
        ["model", "activation", "dtype", "P", "backprop vs grad", "grad vs FD", "max rel. error", "float32 best ε",
         "FD s", "backprop s"],
        [[c["model"], c["activation"], c["dtype"], c["num_params"], fmt(c["rel_error_backprop_vs_grad"]),
          fmt(c["rel_error_grad_vs_fd"]), fmt(c["max_rel_error"]),
          f"{c['best_rel_error']:.1e} @ {c['best_eps']:.0e}" if "best_eps" in c else "–",
          fmt(c["fd_seconds"], ".3f"), fmt(c["backprop_seconds"], ".5f")] for c in summary["cases"]])
    cost = common.markdown_table(
        ["P", "forward ms", "value+grad ms", "hand backprop ms", "backward/forward", "FD s"],
        [[r["num_params"], f"{r['forward_seconds']*1e3:.3f}", f"{r['grad_seconds']*1e3:.3f}",
          f"{r['backprop_seconds']*1e3:.3f}", f"{r['backward_forward_ratio']:.2f}", fmt(r["fd_seconds"], ".3f")]
         for r in summary["cost_vs_params"]])
    depth = common.markdown_table(
        ["L", "P", "backprop ms", "naive ms", "naive / backprop"],
        [[r["depth"], r["num_params"], f"{r['backprop_seconds']*1e3:.2f}", f"{r['naive_seconds']*1e3:.2f}",
          f"{r['naive_seconds'] / r['backprop_seconds']:.1f}"] for r in summary["cost_vs_depth"]])
    claims = common.claims_markdown(summary["claims"])
    return "\n\n".join([
        f"# Backprop versus finite differences{' (quick mode)' if summary['config']['quick'] else ''}",
        "Hand-written backprop (delta rule), `jax.grad` and central differences (all 2P evaluations, chunked "
        "and vmapped, `jaxnets.gradcheck.sequential_finite_difference_fn`: lower layers cached, a perturbed "
        f"Dense weight updates its layer's output in rank one) on MLPs and a small CNN; batch {summary['config']['batch']} "
        f"(cost timings: batch {summary['config']['cost_batch']}), cross-entropy loss. "
        "Relative error = ‖g₁ − g₂‖ / max(‖g₁‖, ‖g₂‖); tolerance 1e-7 (float64), 1e-2 (float32). "
        f"Machine: {summary['environment']['cpu']} ({summary['environment']['device_kind']}), {summary['environment']['cores']} cores; "
        "timings are minima of repeated calls after compilation, on a CPU shared with other jobs.",
        "## What the numbers say", claims, "## Agreement", cases,
        "## Error vs ε", "![error vs ε](eps_sweep.png)",
        "Missing float32 points: below ε ≈ 1e-8 the perturbed parameter θ ± ε rounds back to θ in float32, "
        "so the difference quotient is 0/0 (recorded as null).",
        "## Cost vs parameters", cost, "![time vs P](time_vs_params.png)",
        "## Cost vs depth", depth, "![time vs L](time_vs_depth.png)"])


def run(config: Config) -> dict:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    limits = config.resolved()
    key = jax.random.PRNGKey(config.seed)
    started = time.perf_counter()
    with jax.enable_x64(True):
        print("agreement of hand backprop, jax.grad and central differences:", flush=True)
        print(f"{'model':<12} {'activation':<10} {'dtype':<8} {'params':>7} {'max rel. error':>15} {'FD time':>9}")
        cases = []
        for dtype in (jnp.float64, jnp.float32):
            for activation in config.activations:
                for depth in limits["depths"]:
                    model = models.mlp([config.width] * depth + [4], activation=activation)
                    cases.append(agreement_case(f"mlp-{depth}x{config.width}", model, activation, dtype, key,
                                                config.batch, (8,), 4, config.repeats))
            cases.append(agreement_case("cnn", small_cnn(), "tanh", dtype, key, config.batch, (8, 8, 1), 3,
                                        config.repeats, hand=False))
        sweep = eps_sweep(config, key)
        print(format_sweep(sweep), flush=True)
        print("cost vs P:", flush=True)
        by_params = cost_vs_params(config, key, limits)
        print("cost vs L:", flush=True)
        by_depth = cost_vs_depth(config, key, limits["cost_depths"])
    summary = {"config": common.config_dict(config), "environment": environment(), "cases": cases,
               "eps_sweep": sweep, "cost_vs_params": by_params, "cost_vs_depth": by_depth}
    summary["claims"] = judge(summary, config.quick)
    summary["seconds"] = time.perf_counter() - started
    plot(summary, out)
    common.write_report(out, report(summary))
    common.write_summary(out, summary, SUMMARY_SCHEMA)
    return common.read_summary(out)


def headline(summary: dict) -> str:
    held = [c for c in summary["claims"] if c["held"]]
    judged = [c for c in summary["claims"] if c["held"] is not None]
    worst = max(c["max_rel_error"] for c in summary["cases"] if c["dtype"] == "float64" and c["activation"] in SMOOTH)
    return (f"float64 smooth max rel. error {worst:.1e}; {len(held)}/{len(judged)} of the judged claims held"
            + (f" ({len(summary['claims']) - len(judged)} timing claims judged in the full run only)"
               if len(judged) < len(summary["claims"]) else ""))
