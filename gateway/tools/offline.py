"""Offline scoring of exported records (what ``rollguard detect FILE.jsonl [--out FILE]`` runs).

Input: one JSON object per line, ``{"messages": [...], "completion": "..."}`` (the OpenAI message
shape; extra keys are ignored). ``detect_records`` yields one result per record, in order:
``{"<detector>": {"score", "flagged", "evidence"}, ...}`` for every per-interaction detector, or
``{"error": "line N: ..."}`` for a line that cannot be scored (bad JSON, wrong types). Blank lines
are skipped. ``run_detect`` writes the scored records as JSON lines and hands each error to its
``on_error`` callback instead (the command line prints ``error: FILE: line N: ...`` on standard
error and exits 2, as ``rollguard rollout replay`` does). A bad line never stops the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from detectors.shortcuts import ShortcutDetectors

BATCH = 256


def _validate(line_no: int, rec: Any) -> tuple[list[dict[str, Any]], str] | str:
    if not isinstance(rec, dict):
        return f"line {line_no}: expected a JSON object, got {type(rec).__name__}"
    messages = rec.get("messages", [])
    completion = rec.get("completion")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return f"line {line_no}: 'messages' must be a list of message objects"
    if not isinstance(completion, str):
        return f"line {line_no}: 'completion' must be a string"
    return messages, completion


def detect_records(
    lines: Iterable[dict[str, Any] | str], detectors: ShortcutDetectors | None = None
) -> Iterator[dict[str, Any]]:
    """Score records in order. Each item is a parsed record (``dict``) or a raw JSON line
    (``str``; blank strings are skipped). Yields one result per record: the detector results or
    ``{"error": "line N: ..."}`` (N counts input items from 1)."""
    det = detectors or ShortcutDetectors()
    pending: list[tuple[int, list[dict[str, Any]], str] | dict[str, Any]] = []
    for line_no, item in enumerate(lines, start=1):
        rec: Any = item
        if isinstance(item, str):
            if not item.strip():
                continue
            try:
                rec = json.loads(item)
            except json.JSONDecodeError as exc:
                pending.append({"error": f"line {line_no}: invalid JSON ({exc.msg} at column {exc.colno})"})
                continue
        checked = _validate(line_no, rec)
        if isinstance(checked, str):
            pending.append({"error": checked})
        else:
            pending.append((line_no, checked[0], checked[1]))
        if len(pending) >= BATCH:
            yield from _flush(det, pending)
            pending = []
    yield from _flush(det, pending)


def _flush(
    det: ShortcutDetectors, pending: list[tuple[int, list[dict[str, Any]], str] | dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    jobs = [p for p in pending if isinstance(p, tuple)]
    try:
        scored = det.score_batch([j[1] for j in jobs], [j[2] for j in jobs])
        results: dict[int, dict[str, Any] | None] = {
            j[0]: {name: s.to_dict() for name, s in sig.items()} for j, sig in zip(jobs, scored, strict=True)
        }
    except (ValueError, TypeError):
        results = {j[0]: None for j in jobs}
    for p in pending:
        if isinstance(p, dict):
            yield p
            continue
        res = results[p[0]]
        if res is None:
            try:
                res = {name: s.to_dict() for name, s in det.score(p[1], p[2]).items()}
            except (ValueError, TypeError) as exc:
                res = {"error": f"line {p[0]}: cannot score ({type(exc).__name__})"}
        yield res


def run_detect(
    in_path: str | Path,
    out_path: str | Path | None = None,
    on_error: Callable[[str], None] | None = None,
) -> int:
    """Score ``in_path`` and write one JSON line per scored record to ``out_path`` (standard output
    when None). A line that cannot be scored writes nothing: its message (``line N: ...``) goes to
    ``on_error`` (dropped when None). Returns the number of such lines (0 = every line scored).
    Raises ``OSError`` when the input cannot be opened or the output cannot be written
    (``BrokenPipeError`` when standard output was closed by the reader)."""
    errors = 0
    out: TextIO
    with open(in_path, encoding="utf-8", errors="replace") as src:
        out = open(out_path, "w", encoding="utf-8") if out_path is not None else sys.stdout  # noqa: SIM115
        try:
            for res in detect_records(src):
                if "error" in res:
                    errors += 1
                    if on_error is not None:
                        on_error(str(res["error"]))
                    continue
                out.write(json.dumps(res, ensure_ascii=False) + "\n")
        finally:
            if out_path is not None:
                out.close()
            else:
                out.flush()
    return errors
