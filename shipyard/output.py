"""Printing for people and for machines: aligned tables (kubectl-style) and JSON."""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h).upper() for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def info(message: str) -> None:
    """Progress goes to stderr so stdout stays clean for `-o json` and pipes."""
    print(message, file=sys.stderr, flush=True)
