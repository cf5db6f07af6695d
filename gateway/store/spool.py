"""The write-ahead spool of the audit writer: while the store is unreachable every accepted record
is appended to a local file before the response completes, and the files are written back to the
interactions stream, oldest first, when the store answers again.

Files (in ``<data_dir>/spill/``, beside the spill files of ``gateway.store.spill``, same line
format: one stream entry's fields as a JSON object per line):

- ``spool-<ms>-<pid>.open``: the file this process appends to now. Never claimed by a restorer
  while its writer lives; a ``.open`` file whose pid is dead (the gateway was SIGKILLed) is sealed
  by the next process that starts or recovers (``adopt_orphans``);
- ``interactions-<ms>-<pid>.jsonl``: a sealed file, written back in name order (the creation time
  in ms first, so files replay in the order they were written) by ``gateway.store.spill``'s claim.

Durability (the fsync policy): each record is one ``write(2)`` on an unbuffered file, done before
the response completes, so once written it survives a kill of the process (SIGKILL, OOM kill,
crash): the kernel holds it. ``fsync(2)`` runs at most every ``fsync_interval_s`` seconds (by the
writer's flusher, ``sync()``) and when a file is sealed, so a power loss or kernel crash can lose
the records of the last interval (100 ms by default). A torn last line (power loss mid-write) is
quarantined on replay, never dropped silently (``gateway.store.spill.read_spill``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from gateway.store import spill
from gateway.store.embedded import pid_alive

__all__ = ["Spool", "spill_queue", "write_back"]

Write = Callable[[list[dict[Any, Any]], Path], Awaitable[None]]
"""``write(rows, path)``: XADD ``rows`` read from ``path``; raises ``StoreError``."""

log = logging.getLogger("rollguard.store")


class Spool:
    """Appends records to this process's open spool file (created on the first record), seals it
    for replay, and counts what waits on disk. Not thread-safe: call from the event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fh: BinaryIO | None = None
        self._path: Path | None = None
        self._dirty = False
        self.records = 0
        """Records this process wrote to spool files not yet written back (an estimate across
        processes: orphans adopted add theirs when replayed)."""

    @property
    def active(self) -> Path | None:
        """The open file (None until the first record since the last seal)."""
        return self._path

    def append(self, fields: Mapping[str, str]) -> None:
        """Write one record (one ``write(2)``: it survives a process kill once this returns).
        Raises ``OSError`` (disk full, directory not writable): the caller keeps the record."""
        line = orjson.dumps(fields) + b"\n"
        fh = self._open()
        fh.write(line)
        self._dirty = True
        self.records += 1

    def extend(self, rows: Iterable[Mapping[str, str]]) -> int:
        """Write ``rows`` with one ``write(2)``; returns how many. Raises ``OSError``."""
        data = [orjson.dumps(fields) + b"\n" for fields in rows]
        if not data:
            return 0
        self._open().write(b"".join(data))
        self._dirty = True
        self.records += len(data)
        return len(data)

    def sync(self) -> None:
        """``fsync`` the open file if anything was written since the last sync (the flusher calls
        this every ``fsync_interval_s``). Errors are logged, not raised."""
        if self._fh is None or not self._dirty:
            return
        self._dirty = False  # before the fsync: a record written meanwhile marks the file again
        try:
            os.fsync(self._fh.fileno())
        except (OSError, ValueError) as exc:  # ValueError: closed by seal() meanwhile
            log.error("store: cannot fsync the spool file %s: %s", self._path, exc)

    def seal(self) -> Path | None:
        """Close the open file (fsynced) and rename it to a sealed ``interactions-*.jsonl`` spill
        file the restorer claims; returns its new path (None when nothing was open)."""
        if self._fh is None or self._path is None:
            return None
        self.sync()
        self._fh.close()
        path = self._path
        self._fh, self._path = None, None
        return _seal(path)

    def adopt_orphans(self) -> int:
        """Seal the ``.open`` files of dead processes (a gateway killed while spooling); returns
        how many. Files of live processes are left to them."""
        if not self.directory.is_dir():
            return 0
        count = 0
        for path in self.directory.glob("spool-*.open"):
            pid = path.stem.rsplit("-", 1)[-1]
            if path == self._path or (pid.isdigit() and pid_alive(int(pid))):
                continue
            with contextlib.suppress(OSError):
                _seal(path)
                count += 1
        return count

    def pending_files(self) -> list[Path]:
        """Every spool and spill file waiting in the directory (open, sealed or being restored)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p for pattern in ("spool-*.open", "interactions-*") for p in self.directory.glob(pattern)
        )

    def pending_bytes(self) -> int:
        """Bytes in ``pending_files()`` (readiness reports it)."""
        total = 0
        for path in self.pending_files():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def close(self) -> Path | None:
        """Seal the open file (shutdown); returns its path."""
        return self.seal()

    def _open(self) -> BinaryIO:
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"spool-{int(time.time() * 1000)}-{os.getpid()}.open"
            self._fh = open(path, "ab", buffering=0)  # noqa: SIM115 -- lives until seal()
            self._path = path
            log.warning("store: spooling audit records to %s", path)
        return self._fh


def _seal(path: Path) -> Path:
    """Rename ``spool-<ms>-<pid>.open`` to ``interactions-<ms>-<pid>.jsonl``."""
    target = path.with_name("interactions-" + path.stem.removeprefix("spool-") + ".jsonl")
    path.rename(target)
    return target


async def write_back(directory: Path, write: Write, stream: str) -> AsyncIterator[tuple[int, int]]:
    """Claim every sealed file in ``directory`` oldest first (``spill.claim_spill_files``), pass
    its rows to ``write`` in chunks of 1,000 and delete it; yields ``(rows written, unreadable
    lines quarantined)`` per file. An exception (or a cancellation) gives the file back: a file
    written back in part is written again whole later (delivery is at least once)."""
    for path, claimed in spill.claim_spill_files(directory):
        try:
            rows, corrupt = spill.read_spill(claimed)
            if corrupt:
                kept = spill.quarantine(path, corrupt)
                log.error(
                    "store: %d unreadable line(s) in %s kept in %s (not written to %s)",
                    len(corrupt),
                    path,
                    kept,
                    stream,
                )
            for i in range(0, len(rows), 1000):
                await write(rows[i : i + 1000], path)
        except BaseException:
            claimed.rename(path)
            raise
        claimed.unlink()
        log.warning("store: %d spilled interactions from %s written to %s", len(rows), path, stream)
        yield len(rows), len(corrupt)


def spill_queue(data_dir: Path, rows: Iterable[Mapping[str, str]]) -> bool:
    """Write the memory queue ``rows`` to a spill file (``spill.write_spill``); False (logged as
    lost) when the disk refuses."""
    rows = list(rows)
    try:
        path = spill.write_spill(spill.spill_dir(data_dir), rows)
    except OSError as exc:
        log.error("store: %d interactions LOST: cannot spill to %s: %s", len(rows), exc.filename, exc)
        return False
    log.error("store: %d interactions spilled to %s (written back at the next start)", len(rows), path)
    return True
