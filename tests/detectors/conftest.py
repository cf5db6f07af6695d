"""Shared fixtures: the shipped detector models and a scored replay pool, loaded once per session."""

from __future__ import annotations

import pytest

from detectors.reference_model import ReferenceModel
from detectors.shortcuts import ShortcutDetectors
from gateway.tools import eval as E
from gateway.tools import shipped


@pytest.fixture(scope="session")
def detectors() -> ShortcutDetectors:
    return ShortcutDetectors()


@pytest.fixture(scope="session")
def reference() -> ReferenceModel:
    return ReferenceModel()


@pytest.fixture(scope="session")
def small_pool(detectors: ShortcutDetectors, reference: ReferenceModel) -> list[E.PoolItem]:
    """The arena-hard and OpenAssistant replies (about 1,800), scored once per session."""
    return E.score_pool(shipped.arena_answers() + shipped.oasst_outputs(), detectors, reference)
