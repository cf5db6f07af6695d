"""Exemplar records carried in anomaly bundles, so the review service never has to search the
interactions stream for them.

The worker remembers the records it scores (``ExemplarCache``: the newest ``max_records``, each
cut to ``text_chars`` characters per message and completion). When an incident opens, the bundle
gets ``exemplar_records``: the cached records of its ``exemplar_ids`` (current side first), at most
``max_exemplars`` of them and at most ``max_bundle_bytes`` bytes of JSON in all; ids not cached
(scored by another worker, or older than the cache) stay in ``exemplar_ids`` only. The key is
present (possibly empty) in every bundle this worker writes; the review service searches the
interactions stream only for older bundles without it.

The records are audit records as the store wrote them: already redacted by the gateway's
privacy redactor (``audit.PrivacyRedactor``) before they reached the interactions stream, so no
unredacted text enters the anomalies stream.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

_KEEP = (
    "id",
    "created_ms",
    "tenant",
    "model",
    "upstream_model",
    "metadata",
    "flags",
    "messages",
    "completion",
    "tool_calls",
    "finish_reason",
    "decisions",
    "signals",
    "verdict",
)


@dataclass(frozen=True, slots=True)
class ExemplarLimits:
    """Bounds of the exemplars in one bundle and of the worker's cache."""

    max_records: int = 2_000
    """Records the cache holds (newest kept)."""
    text_chars: int = 2_000
    """Characters kept of each message content and of the completion."""
    max_exemplars: int = 20
    """Records per bundle (the detectors name up to 10 per side)."""
    max_bundle_bytes: int = 64 * 1024
    """JSON bytes of all exemplar records in one bundle."""


def _cut(text: Any, limit: int) -> Any:
    return text[:limit] if isinstance(text, str) and len(text) > limit else text


def _cut_message(message: Any, limit: int) -> Any:
    if not isinstance(message, Mapping):
        return message
    out = dict(message)
    content = out.get("content")
    if isinstance(content, list):
        out["content"] = [
            {**p, "text": _cut(p.get("text"), limit)} if isinstance(p, Mapping) and "text" in p else p
            for p in content
        ]
    else:
        out["content"] = _cut(content, limit)
    return out


def compact_record(record: Mapping[str, Any], text_chars: int) -> dict[str, Any]:
    """The fields a reviewer sees of ``record`` (``Interaction.to_record()``), texts cut to
    ``text_chars`` characters."""
    out = {k: record[k] for k in _KEEP if k in record}
    out["messages"] = [_cut_message(m, text_chars) for m in record.get("messages") or []]
    out["completion"] = _cut(record.get("completion"), text_chars)
    return out


class ExemplarCache:
    """The newest scored records by interaction id (an LRU of ``limits.max_records``)."""

    def __init__(self, limits: ExemplarLimits | None = None) -> None:
        self.limits = limits or ExemplarLimits()
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def remember(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Keep ``records`` (compacted), evicting the oldest beyond ``max_records``."""
        for rec in records:
            rid = str(rec.get("id") or "")
            if not rid:
                continue
            self._records[rid] = compact_record(rec, self.limits.text_chars)
            self._records.move_to_end(rid)
        while len(self._records) > self.limits.max_records:
            self._records.popitem(last=False)

    def with_exemplars(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """``bundle`` plus ``exemplar_records``: the cached records of its ``exemplar_ids``, in order,
        within ``max_exemplars`` and ``max_bundle_bytes``."""
        out = dict(bundle)
        records: list[dict[str, Any]] = []
        size = 0
        for iid in bundle.get("exemplar_ids") or []:
            rec = self._records.get(str(iid))
            if rec is None:
                continue
            n = len(orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY))
            if len(records) >= self.limits.max_exemplars or size + n > self.limits.max_bundle_bytes:
                break
            records.append(rec)
            size += n
        out["exemplar_records"] = records
        return out
