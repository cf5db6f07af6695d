"""The browser tests' shared parts (Debian's chromium, headless, driven by Playwright): where the
browser is, its flags, and the marks every browser test module sets. The ``browser`` and
``shots`` fixtures built on them are in ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium (``.ci/browser.sh`` installs it); Playwright's own browser download is not used."""

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
"""Headless in a container: no sandbox (no user namespaces), no GPU, no network of its own."""

BROWSER_TEST = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/browser.sh)"),
]
"""``pytestmark`` of a browser test module."""
