"""The overhead benchmark's own parts: the traffic it sends, the stage mapping of its profile, and
(slow) a ``--quick`` run end to end against real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import stages  # noqa: E402
import workload  # noqa: E402

PREFIX = (
    "_run_module_as_main (<frozen runpy>:198);run (uvicorn/main.py:643);Runner.run (asyncio/runners.py:118)"
)
HANDLER = (
    PREFIX + ";RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:420)"
    ";FastPath.__call__ (gateway/app.py:67);chat_completions (gateway/routes/openai.py:85)"
)
POLICY = (
    ";Pipeline.run (policies/pipeline.py:136)"
    ";PromptInjectionPolicy.check (policies/builtin/prompt_injection.py:135)"
)


@pytest.fixture(scope="module")
def wl() -> workload.Workload:
    return workload.Workload(turns=4)


def test_every_new_user_turn_is_unique_and_the_history_repeats_earlier_turns(wl: workload.Workload) -> None:
    p = len(wl.users)
    indices = sorted({*range(0, 3000), *range(p - 50, p + 2000), *range(5 * p, 5 * p + 100)})
    news = [wl.messages(i)[-1]["content"] for i in indices]
    assert len(set(news)) == len(news)
    assert p > 1000 and len(workload.SYSTEM_PROMPT) >= 700
    msgs = wl.messages(4 * 10 + 3)  # turn 3 of conversation 10
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert msgs[0]["content"] == workload.SYSTEM_PROMPT
    assert [msgs[1]["content"], msgs[3]["content"], msgs[5]["content"]] == [
        wl.user_text(40),
        wl.user_text(41),
        wl.user_text(42),
    ]
    assert wl.messages(40) == msgs[:1] + msgs[1:2]  # the first turn of that conversation
    body = json.loads(wl.body(43, "m", True))
    assert body["model"] == "m" and body["stream"] is True and body["messages"] == msgs


@pytest.mark.parametrize(
    ("stack", "stage"),
    [
        (HANDLER + ";ChatService.chat_completion (gateway/service.py:303)" + POLICY, "pre_call policies"),
        (HANDLER + ";ChatService._complete (gateway/service.py:350)" + POLICY, "post_call/stream policies"),
        (
            HANDLER
            + ";ChatService._relay (gateway/service.py:470);StreamGuard.feed (gateway/streaming.py:600)"
            ";SecretsPolicy.check (policies/builtin/secrets.py:50)",
            "post_call/stream policies",
        ),
        (
            HANDLER + ";ChatService._finish (gateway/service.py:230);AuditTrail.record (gateway/audit.py:250)"
            ";PrivacyRedactor.redact (gateway/audit.py:210);rewrite_text (policies/builtin/locations.py:111)",
            "audit record",
        ),
        (HANDLER + ";ChatService.evaluate_flags (gateway/service.py:118)", "flags"),
        (HANDLER + ";read_json_body (gateway/chat_request.py:60)", "request parsing+validation"),
        (PREFIX + ";ClientRequest.write_bytes (aiohttp/client_reqrep.py:1594)", "upstream relay"),
        (
            PREFIX + ";AbstractConnection._send_packed_command (redis/asyncio/connection.py:1506)",
            "audit record",
        ),
        (HANDLER + ";Response.__call__ (starlette/responses.py:171)", "response"),
        (HANDLER + ";ChatService.chat_completion (gateway/service.py:270)", "handler (other)"),
        (
            PREFIX + ";RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:522)",
            "server + event loop",
        ),
        ("<module> (somewhere/else.py:1)", "other"),
    ],
)
def test_a_profile_stack_is_charged_to_its_stage(stack: str, stage: str) -> None:
    assert stages.stage_of(stack) == stage


def test_aggregate_and_breakdown_share_the_measured_cpu() -> None:
    flags = f"{HANDLER};ChatService.evaluate_flags (gateway/service.py:118)"
    raw = f"{flags} 30\n{HANDLER}{POLICY} 70\nbroken line\n"
    counts = stages.aggregate(raw)
    assert counts["flags"] == 30 and counts["pre_call policies"] == 70 and sum(counts.values()) == 100
    rows = {r["stage"]: r for r in stages.breakdown(counts, 2.0)}
    assert rows["pre_call policies"]["cpu_ms"] == 1.4 and rows["flags"]["share"] == 0.3
    assert set(rows) == set(stages.STAGE_NAMES)


def test_percentile_is_nearest_rank() -> None:
    values = [float(x) for x in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50 and loadgen.percentile(values, 99) == 99
    assert loadgen.percentile([], 50) is None and loadgen.percentile([7.0], 99) == 7.0


@pytest.mark.slow
@pytest.mark.integration
def test_quick_run_measures_direct_and_the_gateway(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH / "overhead.py"), "--quick", "--modes", "direct,policies_on"]
    cmd += ["--concurrency", "1", "--duration", "1", "--warmup", "0.2", "--out", str(tmp_path), "--tag", "t"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "overhead-t.json").read_text())
    cells = {(c["mode"], c["stream"]): c for c in report["cells"]}
    assert set(cells) == {(m, s) for m in ("direct", "policies_on") for s in (False, True)}
    for c in cells.values():
        assert c["ok"] > 5 and c["errors"] == 0 and c["server_cpu_ms"] > 0
    on = cells[("policies_on", True)]
    assert on["ttfb_p50_ms"] is not None and on["added_p50_ms"] is not None
    assert report["machine"]["nproc"] and report["workload"]["system_prompt_chars"] >= 700
    assert "| policies_on | 0 | yes | 1 |" in (tmp_path / "overhead-t.md").read_text()


def test_quick_sets_defaults_but_an_explicit_option_wins() -> None:
    import overhead

    quick = overhead.parse(overhead.parser(), ["--quick"])
    assert (quick.duration, quick.delays, quick.concurrency, quick.profile) == (1.0, "0", "1,16", False)
    # regression: an explicit value equal to the normal default was replaced by the quick one
    explicit = overhead.parse(overhead.parser(), ["--quick", "--duration", "5", "--concurrency", "16"])
    assert (explicit.duration, explicit.concurrency) == (5.0, "16")
    full = overhead.parse(overhead.parser(), [])
    assert (full.duration, full.delays, full.concurrency, full.profile) == (5.0, "0,50", "1,16,64", True)
