"""Output helpers shared by experiments: summary.json (validated against a schema), per-epoch CSV,
report.md, and run-level bookkeeping so that an interrupted experiment
resumes without redoing finished runs.

Layout of ``results/NAME/`` for an experiment built on these helpers::

    summary.json            the experiment's numbers (written last: its presence means "finished")
    report.md               numbers, plots and a plain-language conclusion
    *.csv, *.png            per-epoch metrics and plots
    runs/<run>.json         one finished run (kept so a restarted experiment skips it)
    checkpoints/<key>/<run> the last finished epoch of an unfinished run (removed when it finishes)
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from jaxnets import data
from jaxnets._util import to_json

SUMMARY = "summary.json"
OWNED = (SUMMARY, "report.md", "runs", "checkpoints")  # what clear_outputs removes


class SchemaError(ValueError):
    """A document does not match its schema; the message names the path, e.g. ``runs[3].depth``."""


def config_dict(config: Any) -> dict:
    """The config as JSON (without ``out``, which says where results go, not what they are)."""
    return {k: v for k, v in to_json(config).items() if k != "out"}


def fingerprint(value: Any) -> str:
    """A short stable hash of a JSON-able value (used to key checkpoints by config)."""
    return hashlib.sha256(json.dumps(to_json(value), sort_keys=True).encode()).hexdigest()[:12]


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
          "integer": int, "number": (int, float)}


def validate(instance: Any, schema: dict, path: str = "$") -> None:
    """Checks ``instance`` against a JSON Schema using the keywords ``type`` (a name or a list),
    ``properties``, ``required``, ``items``, ``enum``, ``minimum``, ``maximum``, ``minItems``;
    raises :class:`SchemaError` naming the first failing path. (The subset our schemas use, so
    that running experiments does not need the ``jsonschema`` package; the tests check the same
    documents with it.)"""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        ok = any(isinstance(instance, _TYPES[n]) and not (n in ("integer", "number") and isinstance(instance, bool))
                 for n in names)
        if not ok:
            raise SchemaError(f"{path}: expected {' or '.join(names)}, got {type(instance).__name__} {instance!r:.60}")
    if "enum" in schema and instance not in schema["enum"]:
        raise SchemaError(f"{path}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            raise SchemaError(f"{path}: {instance} < minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            raise SchemaError(f"{path}: {instance} > maximum {schema['maximum']}")
    if isinstance(instance, dict):
        for name in schema.get("required", ()):
            if name not in instance:
                raise SchemaError(f"{path}: missing required key {name!r}")
        for name, sub in schema.get("properties", {}).items():
            if name in instance:
                validate(instance[name], sub, f"{path}.{name}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            raise SchemaError(f"{path}: {len(instance)} items, expected at least {schema['minItems']}")
        if "items" in schema:
            for i, item in enumerate(instance):
                validate(item, schema["items"], f"{path}[{i}]")


def write_json(path: Path, value: Any) -> None:
    """Writes JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_json(value), indent=2) + "\n")
    os.replace(tmp, path)


def write_summary(out: Path, summary: dict, schema: dict | None = None) -> Path:
    """Validates ``summary`` (when a schema is given) and writes ``out/summary.json``."""
    summary = to_json(summary)
    if schema is not None:
        validate(summary, schema)
    write_json(out / SUMMARY, summary)
    return out / SUMMARY


def read_summary(out: Path) -> dict | None:
    """``out/summary.json``, or None when it is absent or unreadable."""
    try:
        return json.loads((out / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def is_finished(out: Path, config: Any) -> bool:
    """Whether ``out`` holds the summary of a finished run of this very config."""
    summary = read_summary(out)
    if summary is None or "config" not in summary:
        return False
    return {k: v for k, v in summary["config"].items() if k != "out"} == config_dict(config)


def clear_outputs(out: Path) -> None:
    """Removes what these helpers write in ``out`` (summary, report, finished runs, checkpoints),
    so the experiment is recomputed; other files are left alone."""
    for name in OWNED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_csv(path: Path, rows: Iterable[dict]) -> None:
    """Rows of dicts → CSV with the union of their keys as header (in first-seen order)."""
    rows = list(rows)
    header: list[str] = []
    for row in rows:
        header += [k for k in row if k not in header]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("–" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out: Path, text: str) -> Path:
    """Writes ``out/report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text.rstrip() + "\n")
    return out / "report.md"


class RunStore:
    """Finished runs of one experiment config, kept on disk so a restart skips them.

    ``key`` (a fingerprint of the config fields that change results) keeps runs of different
    configs apart: a quick run never stands in for a full one.
    """

    def __init__(self, out: Path, key: str):
        self.out, self.key = Path(out), key

    def _path(self, name: str) -> Path:
        return self.out / "runs" / f"{name}.json"

    def load(self, name: str) -> dict | None:
        """The stored result of run ``name`` for this key, or None."""
        try:
            record = json.loads(self._path(name).read_text())
        except (OSError, ValueError):
            return None
        return record["result"] if record.get("key") == self.key else None

    def save(self, name: str, result: dict) -> None:
        """Stores a finished run and removes its checkpoint."""
        write_json(self._path(name), {"key": self.key, "result": result})
        shutil.rmtree(self.checkpoint_dir(name), ignore_errors=True)

    def checkpoint_dir(self, name: str) -> Path:
        """Where run ``name`` checkpoints its epochs while it is unfinished."""
        return self.out / "checkpoints" / self.key / name


# ------------------------------------------------------------------------------------------ data


def load_dataset(name: str | None) -> data.Dataset:
    """The dataset called ``name``, or the default one (Fashion-MNIST when installed, else the digits,
    saying which) when ``name`` is None."""
    if name is not None:
        return data.load_dataset(name)
    dataset, message = data.load_default()
    print(message)
    return dataset


def subset_split(x, y, n: int | None, validation: float = 0.1, seed: int = 0):
    """A random subset of ``n`` examples (all when ``n`` is None or 0), split into training and validation
    parts: ``(x_train, y_train, x_val, y_val)`` with ``max(int(n·validation), 1)`` validation examples."""
    order = np.random.default_rng(seed).permutation(len(x))[:n or len(x)]
    n_val = max(int(len(order) * validation), 1)
    return x[order[n_val:]], y[order[n_val:]], x[order[:n_val]], y[order[:n_val]]


# --------------------------------------------------------------------------------- the notes' claims

# The five decks of lecture notes (../shared/notes/README.md), as a claim's source names them.
DECKS = {
    "S0": "'Multi-layer neural network' course slides",
    "S1": "Fergus, 'Neural Networks', Lecture 2",
    "S2": "CMU Machine Learning 10-701",
    "S3": "Toronto CSC 2515, Lecture 6: Neural Networks",
    "S4": "'Neural network architectures (part one: deep NNs & CNNs)'",
}
CLAIMS_SCHEMA = {"type": "array", "items": {
    "type": "object", "required": ["claim", "source", "held", "evidence"],
    "properties": {"claim": {"type": "string"}, "source": {"type": "string"},
                   "held": {"type": ["boolean", "null"]}, "evidence": {"type": "string"}}}}


def claim(text: str, deck: str, slide: str, held: bool | None, evidence: str) -> dict:
    """One claim of the notes as a summary records it: the claim in plain words, its source (the deck
    and the slide), whether the numbers support it (None: this run cannot judge it, e.g. in quick mode),
    and the numbers."""
    return {"claim": text, "source": f"{DECKS[deck]}, slide '{slide}'", "held": None if held is None else bool(held),
            "evidence": evidence}


def verdict(held: bool | None) -> str:
    return {True: "held", False: "did not hold", None: "not judged in this run"}[held]


def claims_headline(claims: Sequence[dict], topic: str) -> str:
    """One line: how many of the judged claims on ``topic`` held, and how many were not judged."""
    held = sum(1 for c in claims if c["held"])
    judged = sum(1 for c in claims if c["held"] is not None)
    return f"{held}/{judged} of the judged claims on {topic} held ({len(claims) - judged} not judged)"


def finish_lesson(out: Path, summary: dict, report_text: str, schema: dict, headline: str) -> dict:
    """A lesson's last step: writes report.md, then summary.json (last, so that a summary on disk means a
    finished run), prints each claim's verdict and the headline, and returns the summary as written."""
    write_report(out, report_text)
    write_summary(out, summary, schema)
    for c in summary["claims"]:
        print(f"  {verdict(c['held']):<22} {c['claim']}")
    print(headline)
    return read_summary(out)


def claims_markdown(claims: Sequence[dict]) -> str:
    """The claims as a Markdown list: verdict, claim, source, numbers."""
    return "\n".join(f"- **{verdict(c['held'])}** — {c['claim']} ({c['source']}). {c['evidence']}" for c in claims)
