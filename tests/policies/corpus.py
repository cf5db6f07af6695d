"""Reading texts out of the shipped JSON-lines data sets, shared by the equivalence tests."""

from __future__ import annotations

import json
from pathlib import Path


def rows(path: Path, *keys: str) -> list[str]:
    """The non-empty string values under ``keys`` of every row of the JSON-lines file ``path``."""
    out = []
    for line in path.open(encoding="utf-8"):
        if line.strip():
            row = json.loads(line)
            out += [str(row[k]) for k in keys if isinstance(row.get(k), str) and row[k]]
    return out
