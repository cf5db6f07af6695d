"""The command line as an operator uses it: detect (offline scoring), keys hash, --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rollguard.settings import hash_api_key

pytestmark = pytest.mark.integration


def rollguard(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_detect_scores_records_in_order_and_survives_bad_lines(tmp_path: Path) -> None:
    src = tmp_path / "records.jsonl"
    rows = [
        {
            "messages": [{"role": "user", "content": "How do I kill a Python process?"}],
            "completion": "I can't help with that request.",
        },
        "this line is not json",
        {"messages": [{"role": "user", "content": "Name three primes."}], "completion": "2, 3 and 5."},
    ]
    src.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "scores.jsonl"
    proc = rollguard("detect", str(src), "--out", str(out))
    assert "Traceback" not in proc.stderr
    # The bad line is one error line on standard error naming the file and line (exit 2, as
    # `rollout replay`); the other lines are still scored.
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: {src}: line 2: invalid JSON (Expecting value at column 1)"]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2
    assert lines[0]["refusal"]["flagged"] is True
    assert lines[1]["refusal"]["flagged"] is False
    assert {"score", "flagged", "evidence"} <= set(lines[1]["hedging"])


def test_detect_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    src = tmp_path / "records.jsonl"
    row = json.dumps({"messages": [{"role": "user", "content": "hi"}], "completion": "Hello there."})
    src.write_text((row + "\n") * 3000)
    # `rollguard detect FILE | head -1`: the reader closes the pipe after one line.
    cmd = f"{sys.executable} -m gateway.cli detect {src} | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)


def test_keys_hash_matches_the_config_hash() -> None:
    proc = rollguard("keys", "hash", "sk-abc")
    assert proc.returncode == 0
    assert proc.stdout.strip() == hash_api_key("sk-abc")


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["serve"],
        ["demo"],
        ["config", "check"],
        ["detect"],
        ["worker"],
        ["train", "prompt-injection"],
        ["eval", "detectors"],
        ["review", "export"],
    ],
)
def test_help_for_every_command(cmd: list[str]) -> None:
    proc = rollguard(*cmd, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
    assert "<bool>" not in proc.stdout  # flags take no value; Typer's rich help printed one


def test_train_prompt_injection_without_data_is_a_one_line_error(tmp_path: Path) -> None:
    """A missing data folder is the operator's mistake: exit code 2 and one ``error:`` line, no
    traceback, and nothing written."""
    proc = rollguard(
        "train",
        "prompt-injection",
        "--data-dir",
        str(tmp_path / "missing"),
        "--out-dir",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
