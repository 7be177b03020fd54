"""The lessons' claims with the quick and the full run's verdicts side by side (what the README's lessons
section lists): ``python -m experiments.verdicts QUICK_ROOT FULL_ROOT [NAME …]`` prints one Markdown table per
experiment from ``QUICK_ROOT/NAME/summary.json`` (``experiments all --quick --out QUICK_ROOT``) and
``FULL_ROOT/NAME/summary.json``; a claim missing from one of them shows "–"."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from experiments import common
from experiments.runner import EXPERIMENTS

MARK = {True: "held", False: "**did not hold**", None: "not judged"}


def rows(quick: dict | None, full: dict | None) -> list[list[str]]:
    """``[claim, source deck, quick verdict, full verdict]`` per claim, matched by the claim's text."""
    def by_text(summary):
        return {c["claim"]: c for c in (summary or {}).get("claims", [])}

    q, f = by_text(quick), by_text(full)
    texts = list(f) + [t for t in q if t not in f]
    out = []
    for text in texts:
        source = (f.get(text) or q.get(text))["source"]
        deck = next((key for key, name in common.DECKS.items() if source.startswith(name)), "")
        out.append([text.replace("|", "/"), deck, MARK[q[text]["held"]] if text in q else "–",
                    MARK[f[text]["held"]] if text in f else "–"])
    return out


def table(name: str, quick: dict | None, full: dict | None) -> str:
    """The Markdown table of experiment ``name``'s claims, with the two runs' wall times in its heading."""
    def seconds(summary):
        return f"{summary['seconds'] / 60:.1f} min" if summary and "seconds" in summary else "not run"

    heading = f"**{name}** (quick {seconds(quick)}, full {seconds(full)})"
    return heading + "\n\n" + common.markdown_table(["claim", "deck", "quick", "full"], rows(quick, full))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    quick_root, full_root, names = Path(args[0]), Path(args[1]), args[2:] or list(EXPERIMENTS)
    for name in names:
        quick, full = common.read_summary(quick_root / name), common.read_summary(full_root / name)
        if any("claims" in (s or {}) for s in (quick, full)):
            print(table(name, quick, full) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
