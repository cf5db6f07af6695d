"""The ``secrets`` policy: each credential kind, locations, look-alikes, and no hits on the shipped
benign prompt sets. Test tokens are assembled at run time (never real credentials)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from policies.base import CheckContext
from policies.builtin.redaction import resolve_overlaps
from policies.builtin.secret_patterns import KINDS, SecretFinder
from policies.builtin.secrets import SecretsPolicy
from rollguard.types import Stage, Verdict

DATA = Path(__file__).resolve().parents[2] / "data"

AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS documentation example
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"  # AWS documentation example


def _b64url(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


JWT = ".".join(
    [
        _b64url({"alg": "HS256", "typ": "JWT"}),
        _b64url({"sub": "1234567890", "name": "Ana"}),
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ]
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
    "aFDrBz9vFqU4yQ==\n"
    "-----END RSA PRIVATE KEY-----"
)

TOKENS = {
    "AWS_ACCESS_KEY": AWS_KEY_ID,
    "GCP_API_KEY": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "GCP_OAUTH_SECRET": "GOCSPX-" + "1a2B3c4D5e6F7g8H9i0J1k2L3m4N",
    "AZURE_CLIENT_SECRET": "abc8Q~" + "Zx1Yw2Vu3Ts4Rq5Po6Nm7Lk8Ji9Hg0Fe1D",
    "OPENAI_API_KEY": "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_AbCdEfGh",
    "ANTHROPIC_API_KEY": "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBaZyXwVuTsRq",
    "GITHUB_TOKEN": "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "GITLAB_TOKEN": "glpat-" + "xY1zA2bC3dE4fG5hI6jK",
    "SLACK_TOKEN": "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "SLACK_WEBHOOK": "https://hooks.slack.com/services/" + "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "STRIPE_KEY": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "HUGGINGFACE_TOKEN": "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "JWT": JWT,
    "PRIVATE_KEY": PEM,
}


def found(text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in resolve_overlaps(SecretFinder()(text))]


def pre(messages: list[dict[str, Any]], **params: Any) -> Any:
    return SecretsPolicy(**params).check(CheckContext(stage=Stage.PRE_CALL, messages=messages))


@pytest.mark.parametrize(("kind", "token"), sorted(TOKENS.items()))
def test_each_kind_is_found_and_redacted(kind: str, token: str) -> None:
    text = f"here it is: {token} -- keep it safe"
    assert found(text) == [(kind, token)]
    result = pre([{"role": "user", "content": text}])
    assert result.verdict is Verdict.REDACT
    assert result.messages[0]["content"] == f"here it is: <{kind}_1> -- keep it safe"
    assert token not in result.reason and result.reason == f"redacted 1 {kind}"


def test_aws_secret_key_in_context() -> None:
    assert ("AWS_SECRET_KEY", AWS_SECRET) in found(f"aws_secret_access_key = {AWS_SECRET}")
    pair = f"AccessKeyId {AWS_KEY_ID}\nSecretAccessKey {AWS_SECRET}\n"
    assert found(pair) == [("AWS_ACCESS_KEY", AWS_KEY_ID), ("AWS_SECRET_KEY", AWS_SECRET)]
    assert found(f"the hash is {AWS_SECRET}") == []  # a lone 40-char string is not a secret


def test_azure_connection_string_and_key() -> None:
    account_key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    conn = (
        f"DefaultEndpointsProtocol=https;AccountName=devstore;AccountKey={account_key};"
        "EndpointSuffix=core.windows.net"
    )
    assert found(conn) == [("AZURE_STORAGE_KEY", account_key)]
    assert found('AZURE_OPENAI_API_KEY="0123456789abcdef0123456789abcdef"') == [
        ("AZURE_API_KEY", "0123456789abcdef0123456789abcdef")
    ]
    sas = "https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&se=2025-01-01&sig=AbCdEf0123456789AbCdEf0123456789abcd%3D"
    assert [k for k, _ in found(sas)] == ["AZURE_SAS_TOKEN"]


def test_url_credentials_redact_only_the_password() -> None:
    text = "connect with postgres://admin:s3cr3tP4ss@db.internal:5432/app please"
    result = pre([{"role": "user", "content": text}])
    assert (
        result.messages[0]["content"]
        == "connect with postgres://admin:<URL_CREDENTIALS_1>@db.internal:5432/app please"
    )


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://user:password@localhost/db",
        "mongodb://admin:<password>@cluster0.example.net",
        "redis://:${REDIS_PASSWORD}@cache:6379",
        "amqp://guest:****@rabbit",
        "https://user:your_password@example.com",
        "ftp://anonymous:{pass}@ftp.example.org",
        "eyJzdWIiOiIxMjM0NTY3ODkwIn0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijkl",  # header without alg
        "eyJhbGciOiJIUzI1NiJ9",  # one part only
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0B\n-----END CERTIFICATE-----",
        "sk-learn is a library; risk-free; task-123; the key point is clarity",
        "pk_live_" + "4eC39HqLyjWDarjtT1zdp7dc is a publishable key",
        "commit 3f2a9c1b7d8e4f60a1b2c3d4e5f6a7b8c9d0e1f2 and"
        " sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert found(text) == []


def test_secret_in_tool_call_arguments_keeps_valid_json() -> None:
    args = json.dumps({"token": TOKENS["GITHUB_TOKEN"], "repo": "acme/app"})
    messages = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "clone", "arguments": args}}],
        }
    ]
    result = pre(messages)
    parsed = json.loads(result.messages[0]["tool_calls"][0]["function"]["arguments"])
    assert parsed == {"token": "<GITHUB_TOKEN_1>", "repo": "acme/app"}
    assert result.evidence[0].location == "messages[0].tool_calls[0].function.arguments"
    assert result.evidence[0].detail == "json $.token"


def test_system_prompt_is_scanned_by_default() -> None:
    result = pre([{"role": "system", "content": f"Use key {TOKENS['STRIPE_KEY']} for refunds."}])
    assert result.verdict is Verdict.REDACT


def test_stream_window_with_cut_private_key_is_redacted() -> None:
    window = (
        "Here is the key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
    )
    ctx = CheckContext(stage=Stage.STREAM, messages=[], completion=window)
    result = SecretsPolicy().check(ctx)
    assert result.completion == "Here is the key:\n<PRIVATE_KEY_1>"


def test_block_action_and_bad_params() -> None:
    result = pre([{"role": "user", "content": TOKENS["OPENAI_API_KEY"]}], action="block")
    assert result.verdict is Verdict.BLOCK and result.messages is None
    assert result.reason == "found 1 OPENAI_API_KEY"
    for bad in ({"action": "nope"}, {"kinds": ["PASSWORD"]}, {"roles": ["bot"]}, {"kinds": "JWT"}):
        with pytest.raises(ValueError):
            SecretsPolicy(**bad)
    assert set(SecretsPolicy().describe()["kinds"]) == set(KINDS)


def _prompts() -> list[str]:
    out: list[str] = []
    for path in [
        DATA / "arena-hard-prompts" / "arena_hard_v0.1_questions.jsonl",
        DATA / "arena-hard-prompts" / "arena_hard_v2.0_questions.jsonl",
        DATA / "oasst-prompt-lottery" / "prompts.jsonl",
    ]:
        with path.open(encoding="utf-8") as fh:
            out.extend(json.loads(line)["prompt"] for line in fh if line.strip())
    return out


def test_no_hits_on_shipped_benign_prompt_sets() -> None:
    prompts = _prompts()
    assert len(prompts) > 1500
    finder = SecretFinder()
    hits = [(i, s.kind) for i, p in enumerate(prompts) for s in finder(p)]
    assert hits == []
