"""The experiment runner: ``python -m experiments NAME [--quick] [--dataset D] [--seeds N] [--out DIR] [--force]``.

Each experiment is a module ``experiments/<module>.py`` with a ``Config`` dataclass (its docstring
gives the command, the expected run time and the expected result) and ``run(config) -> dict``,
which writes its outputs under ``config.out`` (default ``results/<name>/``) and returns its summary.
``Config`` has at least the fields ``quick: bool`` and ``out: Path``; the fields ``dataset`` and
``seeds``, where an experiment has them, are set from the command line. A module may define
``headline(summary) -> str``, the line shown for it in ``results/REPORT.md``.

``python -m experiments all [--quick]`` runs every experiment in turn; one that fails is reported
(with its traceback) and the others still run; then ``results/REPORT.md`` links every report.
An experiment whose ``summary.json`` was written by a run of the same config is finished and is
not recomputed unless ``--force`` is given. The exit status is 0 when every experiment succeeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
import traceback
from pathlib import Path

from experiments import common

# name → module in this package. An explicit table: unknown names get the list.
EXPERIMENTS: dict[str, str] = {
    "main": "experiments.main_job",
    "gradcheck": "experiments.gradcheck",
    "activations": "experiments.activations",
    "expressive_power": "experiments.expressive_power",
    "cnn_lessons": "experiments.cnn_lessons",
    "optimizers": "experiments.optimizers",
    "regularization": "experiments.regularization",
    "depth": "experiments.depth",
    "transfer": "experiments.transfer",
}
ALL = "all"


def load_experiment(name: str):
    """The module of experiment ``name``; ValueError listing the known names."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known experiments: {', '.join(sorted(EXPERIMENTS))} "
                         f"(or {ALL!r} for every one)")
    return importlib.import_module(EXPERIMENTS[name])


def output_root(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else Path("results")


def make_config(module, name: str, args: argparse.Namespace, *, strict: bool = True):
    """The experiment's Config from the command line. An option the experiment lacks is an error
    (``strict``, one experiment) or is skipped with a note (``all``)."""
    fields = {f.name for f in dataclasses.fields(module.Config)}
    values = {"quick": args.quick, "out": output_root(args) / name}
    for option in ("dataset", "seeds"):
        value = getattr(args, option)
        if value is not None:
            if option not in fields:
                if strict:
                    raise ValueError(f"experiment {name!r} has no --{option} option")
                print(f"{name}: ignoring --{option} (not an option of this experiment)")
                continue
            values[option] = value
    return module.Config(**{k: v for k, v in values.items() if k in fields})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"experiment: {', '.join(sorted(EXPERIMENTS))}, or {ALL!r}")
    parser.add_argument("--quick", action="store_true", help="the small, fast version (what CI runs)")
    parser.add_argument("--dataset", default=None, help="dataset name (e.g. fashion_mnist, digits)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--out", default=None, help="output root (default: results/)")
    parser.add_argument("--force", action="store_true", help="recompute experiments that already finished")
    return parser.parse_args(argv)


def run_experiment(name: str, args: argparse.Namespace, *, strict: bool = True) -> dict:
    """Runs one experiment (or reports it finished) and returns a status record:
    ``{"name", "status": "ok" | "skipped" | "failed", "seconds", "out", "summary", "error"}``."""
    started = time.perf_counter()
    record = {"name": name, "status": "ok", "out": output_root(args) / name, "summary": None, "error": None,
              "headline": ""}
    try:
        module = load_experiment(name)
        config = make_config(module, name, args, strict=strict)
        record["out"] = out = Path(config.out)
        if args.force:
            common.clear_outputs(out)
        if common.is_finished(out, config):
            print(f"{name}: finished earlier with this config; kept {out}/summary.json (--force recomputes it)")
            record["status"] = "skipped"
            record["summary"] = common.read_summary(out)
        else:
            print(f"=== {name} ===", flush=True)
            record["summary"] = module.run(config)
        if record["summary"] is not None and callable(getattr(module, "headline", None)):
            record["headline"] = module.headline(record["summary"])
            if record["status"] == "skipped":
                print(record["headline"])
    except Exception as error:  # reported, and `all` goes on with the next experiment
        traceback.print_exc()
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
        print(f"{name}: FAILED: {record['error']}", file=sys.stderr)
    record["seconds"] = time.perf_counter() - started
    return record


def write_index(root: Path, records: list[dict], quick: bool) -> Path:
    """``root/REPORT.md``: one line per experiment with its status and a link to its report."""
    rows = []
    for r in records:
        report = Path(r["out"]) / "report.md"
        link = f"[{r['name']}]({report.relative_to(root).as_posix()})" if report.exists() and report.is_relative_to(root) \
            else r["name"]
        detail = r["error"] if r["status"] == "failed" else r["headline"]
        rows.append([link, r["status"], f"{r['seconds']:.0f} s", (detail or "").replace("|", "/")])
    text = "\n".join([f"# Experiments{' (quick mode)' if quick else ''}", "",
                      "Written by `python -m experiments all`; each experiment's report has its numbers, plots and "
                      "conclusion.", "", common.markdown_table(["experiment", "status", "time", "result"], rows)])
    root.mkdir(parents=True, exist_ok=True)
    (root / "REPORT.md").write_text(text + "\n")
    return root / "REPORT.md"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.name != ALL and args.name not in EXPERIMENTS:
        print(f"error: unknown experiment {args.name!r}; known experiments: {', '.join(sorted(EXPERIMENTS))} "
              f"(or {ALL!r})", file=sys.stderr)
        return 2
    if args.name != ALL:
        record = run_experiment(args.name, args)
        return 0 if record["status"] != "failed" else 1
    names = list(EXPERIMENTS)
    records = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}", flush=True)
        records.append(run_experiment(name, args, strict=False))
    index = write_index(output_root(args), records, args.quick)
    for r in records:
        print(f"{r['name']:<14} {r['status']:<8} {r['seconds']:7.0f} s  {r['error'] or r['headline']}")
    print(f"index of reports: {index}")
    return 0 if all(r["status"] != "failed" for r in records) else 1
