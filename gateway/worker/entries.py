"""Stream entries of the interactions stream as the detector worker reads them: the parsed record,
or why it cannot be scored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.store.streams import text


@dataclass(slots=True)
class Entry:
    """One entry: ``record`` is None (and ``error`` says why) when it cannot be scored."""

    entry_id: str
    interaction_id: str
    record: dict[str, Any] | None
    error: str | None = None


def dumps(obj: Any) -> bytes:
    """JSON bytes; numpy scalars (from the detectors' statistics) serialised as numbers."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def parse_entry(entry_id: Any, fields: Mapping[Any, Any]) -> Entry:
    """The ``Entry`` of one stream entry (its ``record`` field: ``Interaction.to_record()`` JSON)."""
    eid = text(entry_id)
    f = {text(k): v for k, v in (fields or {}).items()}
    raw = f.get("record")
    if raw is None:
        return Entry(eid, text(f.get("id", eid)), None, "entry has no 'record' field")
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Entry(eid, text(f.get("id", eid)), None, f"record is not JSON ({exc.msg})")
    if not isinstance(rec, dict):
        return Entry(eid, text(f.get("id", eid)), None, "record is not a JSON object")
    iid = str(rec.get("id") or f.get("id") or eid)
    problem = shape_problem(rec)
    if problem is not None:
        return Entry(eid, iid, None, problem)
    return Entry(eid, iid, rec)


def shape_problem(rec: Mapping[str, Any]) -> str | None:
    """Why ``rec`` cannot be scored (wrong types in the fields the detectors read), or None."""
    msgs = rec.get("messages")
    if msgs is not None and (not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs)):
        return "record.messages is not a list of message objects"
    if rec.get("completion") is not None and not isinstance(rec["completion"], str):
        return "record.completion is not a string"
    for key in ("metadata", "flags", "usage"):
        if rec.get(key) is not None and not isinstance(rec[key], dict):
            return f"record.{key} is not an object"
    for key in ("decisions", "tool_calls"):
        if rec.get(key) is not None and not isinstance(rec[key], list):
            return f"record.{key} is not a list"
    return None
