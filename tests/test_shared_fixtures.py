"""Test set-up that several tests need exists once: the browser tests' chromium launch, flags,
marks and screenshot directory (``tests/browser.py``, fixtures ``browser`` and ``shots`` in
``tests/conftest.py``), and the ``serve --workers 2`` process tree (``tests.servers.
serve_workers``). A module that starts its own copy again fails here (it did: four browser test
modules each launched chromium and declared ``shots``, two tests each spawned ``serve --workers
2``)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
HOME = {
    "chromium.launch(": TESTS / "conftest.py",
    "def shots(": TESTS / "conftest.py",
    'Path("/usr/bin/chromium")': TESTS / "browser.py",
    '"ROLLGUARD_SCREENSHOTS") or': TESTS / "conftest.py",
    '"--workers", str(workers)': TESTS / "servers.py",
}
"""A line of each shared set-up -> the one file allowed to hold it."""


def _holders(sources: dict[Path, str], needle: str) -> list[Path]:
    return sorted(p for p, text in sources.items() if needle in text)


def test_each_shared_setup_is_written_once() -> None:
    sources = {p: p.read_text() for p in TESTS.rglob("*.py") if p != Path(__file__).resolve()}
    for needle, home in HOME.items():
        assert _holders(sources, needle) == [home], needle
    spawned = [p for p, text in sources.items() if '"--workers", "2"' in text]
    assert spawned == [], "spawn `serve --workers 2` with tests.servers.serve_workers"
    browser_modules = _holders(sources, "pytestmark = BROWSER_TEST")
    assert len(browser_modules) >= 4  # the console, its flow, the demo item and the rollout page


def test_the_check_sees_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "test_copy.py"
    copy.write_text('browser = pw.chromium.launch(executable_path="/usr/bin/chromium")\n')
    sources = {TESTS / "conftest.py": (TESTS / "conftest.py").read_text(), copy: copy.read_text()}
    assert _holders(sources, "chromium.launch(") == sorted([TESTS / "conftest.py", copy])
