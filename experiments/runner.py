"""The experiment runner: ``python -m experiments NAME [--quick] [--dataset D] [--seeds N] [--out DIR]``.

Each experiment is a module ``experiments/<module>.py`` with a ``Config`` dataclass (its docstring
gives the command, the expected run time and the expected result) and ``run(config) -> dict``,
which writes its outputs under ``config.out`` (default ``results/<name>/``) and returns its summary.
``Config`` has at least the fields ``quick: bool`` and ``out: Path``; the fields ``dataset`` and
``seeds``, where an experiment has them, are set from the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path

from jaxnets.runtime import enable_compilation_cache

# name → module in this package. An explicit table: unknown names get the list.
EXPERIMENTS: dict[str, str] = {
    "main": "experiments.main_job",
    "gradcheck": "experiments.gradcheck",
    "activations": "experiments.activations",
}


def load_experiment(name: str):
    """The module of experiment ``name``; ValueError listing the known names."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known experiments: {', '.join(sorted(EXPERIMENTS))}")
    return importlib.import_module(EXPERIMENTS[name])


def make_config(module, name: str, args: argparse.Namespace):
    fields = {f.name for f in dataclasses.fields(module.Config)}
    values = {"quick": args.quick, "out": Path(args.out) / name if args.out else Path("results") / name}
    for option in ("dataset", "seeds"):
        value = getattr(args, option)
        if value is not None:
            if option not in fields:
                raise ValueError(f"experiment {name!r} has no --{option} option")
            values[option] = value
    return module.Config(**{k: v for k, v in values.items() if k in fields})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"experiment: {', '.join(sorted(EXPERIMENTS))}")
    parser.add_argument("--quick", action="store_true", help="the small, fast version (what CI runs)")
    parser.add_argument("--dataset", default=None, help="dataset name (e.g. fashion_mnist, digits)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds")
    parser.add_argument("--out", default=None, help="output root (default: results/)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        module = load_experiment(args.name)
        config = make_config(module, args.name, args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    enable_compilation_cache()
    module.run(config)
    return 0
