"""The ``review`` config section's names for the review package, and ``parse_review_settings`` for a
section given as a mapping (tests, the demo's ``gateway.review.demo.demo_review_config``).

The section itself is typed in ``rollguard.review_settings`` and parsed once, when the settings
load (``RollguardSettings.review``); this module re-exports its classes so the review package
imports them from one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from rollguard.errors import ConfigError
from rollguard.review_settings import (
    NAME_PATTERN,
    LabelSpec,
    Priority,
    QueueSpec,
    ReviewerSpec,
    ReviewSettings,
    Role,
    RouteRule,
    SlaSpec,
    default_sla,
    default_taxonomy,
)

__all__ = [
    "NAME_PATTERN",
    "LabelSpec",
    "Priority",
    "QueueSpec",
    "ReviewSettings",
    "ReviewerSpec",
    "Role",
    "RouteRule",
    "SlaSpec",
    "default_sla",
    "default_taxonomy",
    "parse_review_settings",
]


def parse_review_settings(data: ReviewSettings | Mapping[str, Any] | None) -> ReviewSettings:
    """``RollguardSettings.review`` as ``ReviewSettings``: returned as is when already parsed (at
    load), else validated from a mapping (None or empty: the defaults). Raises ``ConfigError``
    (field ``review.<path>``)."""
    if isinstance(data, ReviewSettings):
        return data
    try:
        return ReviewSettings.model_validate(dict(data or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(str(first.get("msg")), field=f"review.{loc}" if loc else "review") from exc
