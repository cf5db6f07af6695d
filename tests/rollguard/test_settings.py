"""Config loading: one YAML file, validated with errors naming the file and the field; environment
overrides; a config holding only model_list gets the default policy set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rollguard.errors import ConfigError
from rollguard.settings import default_policies, hash_api_key, load_settings

MODEL_ONLY = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rollguard.yaml"
    p.write_text(text)
    return p


def test_model_list_only_gets_default_policies(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MODEL_ONLY))
    assert [p.id for p in s.policies] == [p.id for p in default_policies()]
    assert s.model_names() == ["gpt-4o"]


def test_existing_litellm_config_with_extra_keys_loads(tmp_path: Path) -> None:
    text = MODEL_ONLY + "    model_info: {id: abc}\n    tpm: 1000\n"
    s = load_settings(write(tmp_path, text))
    assert s.model_list[0].model_info == {"id": "abc"}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("model_list:\n  - model_name: x\n    litellm_params: {api_key: k}\n", "model_list.0.litellm_params"),
        (MODEL_ONLY + "gateway: {port: 99999}\n", "gateway.port"),
        (MODEL_ONLY + "policies: [{id: a, type: pii, mode: loud}]\n", "policies.0.mode"),
        (MODEL_ONLY + "gateway: {prot: 80}\n", "gateway.prot"),
        (MODEL_ONLY + "gateway: {api_keys: [{key_hash: nope, tenant: t}]}\n", "gateway.api_keys.0"),
        (MODEL_ONLY + "flags: {unleash_url: not a url}\n", "flags.unleash_url: not an http(s) URL"),
        (MODEL_ONLY + "flags: {unleash_url: 'ftp://u:21'}\n", "flags.unleash_url: not an http(s) URL"),
        (MODEL_ONLY + "store: {redis_url: 'localhost:6379'}\n", "store.redis_url: not a redis://"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert str(path) in str(exc.value)
    assert field in str(exc.value)


def test_valid_urls_load(tmp_path: Path) -> None:
    s = load_settings(
        write(
            tmp_path,
            MODEL_ONLY + "flags: {unleash_url: 'http://unleash:4242/api'}\n"
            "store: {redis_url: 'rediss://:pw@cache:6380/1'}\n",
        )
    )
    assert s.flags.unleash_url == "http://unleash:4242/api"
    assert s.store.redis_url == "rediss://:pw@cache:6380/1"


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_settings(write(tmp_path, "model_list: [\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MODEL_ONLY + "gateway: {port: 7000, host: 127.0.0.1}\n")
    monkeypatch.setenv("ROLLGUARD_GATEWAY__PORT", "9001")
    monkeypatch.setenv("ROLLGUARD_REDIS_URL", "redis://example:6379/0")
    s = load_settings(path)
    assert s.gateway.port == 9001
    assert s.gateway.host == "127.0.0.1"
    assert s.store.redis_url == "redis://example:6379/0"


def test_api_keys_are_stored_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_KEY", "sk-live-1")
    s = load_settings(
        write(tmp_path, MODEL_ONLY + "gateway: {api_keys: [{key: os.environ/APP_KEY, tenant: t}]}\n")
    )
    k = s.gateway.api_keys[0]
    assert k.key is None and k.key_hash == hash_api_key("sk-live-1")


def test_fallbacks_must_name_known_models(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        load_settings(write(tmp_path, MODEL_ONLY + "router_settings: {fallbacks: [{gpt-4o: [nope]}]}\n"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_config_check_cli(tmp_path: Path) -> None:
    ok = _cli("config", "check", str(write(tmp_path, MODEL_ONLY)))
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout and "prompt_injection" in ok.stdout
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text(MODEL_ONLY + "policies: [{id: x, type: no_such_policy}]\n")
    bad = _cli("config", "check", str(bad_path))
    assert bad.returncode == 2
    assert str(bad_path) in bad.stderr and "no_such_policy" in bad.stderr
    assert "Traceback" not in bad.stderr


# ------------------------------------------------------------------ one line, naming source + field


def test_invalid_yaml_is_one_line_with_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "model_list:\n  - model_name: a\n   bad: [\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:3:4: invalid YAML: expected <block end>")


def test_several_bad_fields_are_one_line_naming_each_field(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway: {port: -1, workers: 0, bogus: 1}\nstore: {retention_ms: -5}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert str(exc.value) == (
        f"{path}: gateway.port: Input should be greater than or equal to 0"
        " (and 3 more: gateway.workers, gateway.bogus, store.retention_ms)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model_list: [{model_name: m, litellm_params: {model: openai/m}}]\n"
            "flags: {rollouts: {chat: {flag: f, variants: {canary: nope}}}}\n",
            "flags.rollouts.chat.variants.canary: unknown model 'nope'",
        ),
        (
            "policies: [{id: p, type: pii}, {id: p, type: pii}]\n",
            "policies: duplicate policy id(s): ['p']",
        ),
        (
            "model_list: [{model_name: m, litellm_params: {model: openai/m}}]\n"
            "router_settings: {fallbacks: [{m: [x]}]}\n",
            "router_settings.fallbacks: unknown model 'x'",
        ),
    ],
)
def test_cross_field_errors_name_their_field_without_a_top_level_prefix(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert str(exc.value) == f"{path}: {expected}"
    assert exc.value.field == expected.split(": ")[0]


def test_errors_name_the_command_line_or_the_environment_when_the_value_came_from_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "gateway: {port: 8080}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, cli={"gateway": {"workers": 0}})
    assert str(exc.value).startswith("command line (--workers): gateway.workers: ")
    monkeypatch.setenv("ROLLGUARD_GATEWAY__PORT", "99999")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert str(exc.value).startswith("environment (ROLLGUARD_GATEWAY__PORT): gateway.port: ")
    monkeypatch.setenv("ROLLGUARD_REDIS_URL", "localhost:6379")
    monkeypatch.delenv("ROLLGUARD_GATEWAY__PORT")
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    assert str(exc.value).startswith("environment (ROLLGUARD_REDIS_URL): redis_url: not a redis://")
    monkeypatch.delenv("ROLLGUARD_REDIS_URL")
    settings = load_settings(path, cli={"gateway": {"host": "0.0.0.0"}})
    assert settings.source_of("gateway.host") == "command line (--host)"
    assert settings.source_of("gateway.port") is None  # the file
