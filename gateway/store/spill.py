"""Spill files of the audit writer: what ``Store.aclose()`` could not write to Redis is kept in
``<data_dir>/spill/interactions-<ms>-<pid>.jsonl`` (one stream entry's fields as a JSON object per
line, fsynced) and written back by the next ``Store.start()``.

Restoring is safe between processes: a file is claimed by renaming it to
``*.<pid>.restoring`` (atomic), and a claim left by a dead process is given back. An unreadable
line (torn by a crash mid-write, or edited by hand) is never dropped: it goes to a ``.corrupt``
file beside the spill for an operator to inspect.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from gateway.store.embedded import pid_alive
from rollguard.errors import StoreError


def spill_dir(data_dir: Path | str) -> Path:
    """``<data_dir>/spill``."""
    return Path(data_dir) / "spill"


def write_spill(directory: Path, rows: Iterable[Mapping[str, str]]) -> Path:
    """Append ``rows`` to a new spill file (fsynced) and return its path. Raises ``OSError``."""
    path = directory / f"interactions-{int(time.time() * 1000)}-{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        for fields in rows:
            fh.write(orjson.dumps(fields) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


def claim_spill_files(directory: Path) -> Iterator[tuple[Path, Path]]:
    """``(original path, claimed path)`` of every spill file this process claimed, oldest first;
    claims of dead restorers are given back first. The caller deletes the claimed file once
    written, or renames it back to the original path."""
    if not directory.is_dir():
        return
    for stale in directory.glob("interactions-*.restoring"):  # a restorer died mid-way
        pid = stale.suffixes[-2].lstrip(".") if len(stale.suffixes) >= 2 else ""
        if not (pid.isdigit() and pid_alive(int(pid))):
            with contextlib.suppress(OSError):
                stale.rename(directory / (stale.name.split(".")[0] + ".jsonl"))
    for path in sorted(directory.glob("interactions-*.jsonl")):
        claimed = path.with_suffix(f".{os.getpid()}.restoring")
        try:
            path.rename(claimed)  # atomic: one process restores each file
        except OSError:
            continue
        yield path, claimed


def quarantine(path: Path, corrupt: Iterable[bytes]) -> Path:
    """Append the unreadable lines of spill file ``path`` to ``<path>.corrupt``; returns it."""
    target = path.with_suffix(".corrupt")
    with target.open("ab") as fh:
        fh.writelines(line + b"\n" for line in corrupt)
    return target


def read_spill(path: Path) -> tuple[list[dict[Any, Any]], list[bytes]]:
    """``(rows, corrupt)`` of a spill file: each non-blank line that is a JSON object of
    string/number values (a stream entry's fields) is a row; every other line is returned raw in
    ``corrupt``. Raises ``StoreError`` when the file cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read spilled interactions from {path}: {exc}") from exc
    rows: list[dict[Any, Any]] = []
    corrupt: list[bytes] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            fields = orjson.loads(line)
        except orjson.JSONDecodeError:
            corrupt.append(line)
            continue
        ok = isinstance(fields, dict) and bool(fields)
        if ok and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in fields.values()):
            rows.append(fields)
        else:
            corrupt.append(line)
    return rows, corrupt
