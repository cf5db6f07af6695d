"""Shared fixtures: the shipped detector models, loaded once per session."""

from __future__ import annotations

import pytest

from detectors.reference_model import ReferenceModel
from detectors.shortcuts import ShortcutDetectors


@pytest.fixture(scope="session")
def detectors() -> ShortcutDetectors:
    return ShortcutDetectors()


@pytest.fixture(scope="session")
def reference() -> ReferenceModel:
    return ReferenceModel()
