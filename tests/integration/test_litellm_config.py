"""LiteLLM Proxy config compatibility (issue 12, must-hold "a LiteLLM Proxy docs-style config loads
with one warning listing what is ignored"): a config written as LiteLLM's docs write one
(docs.litellm.ai/docs/proxy/configs: ``model_list``, ``litellm_settings``, ``general_settings``,
``router_settings``, ``environment_variables``) passes ``rollguard config check`` (a real
subprocess) and starts a real gateway that answers through the real upstream stub; the keys
rollguard acts on are mapped, every other key is named in ONE warning, by both."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config_check import check_config
from rollguard.errors import ConfigError
from rollguard.settings import load_settings
from tests.integration.conftest import Stub
from tests.servers import serve_app

pytestmark = pytest.mark.integration

DOCS_STYLE = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/echo
      api_base: {base}
      api_key: sk-test
      rpm: 480
      tpm: 100000
      temperature: 0.2
      max_retries: 2
    model_info:
      id: deployment-1
      mode: chat
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/demo
      api_base: {base}
      api_key: sk-test
litellm_settings:
  drop_params: true
  set_verbose: false
  success_callback: ["langfuse"]
  num_retries: 3
  request_timeout: 30
  fallbacks: [{{"gpt-4o": ["gpt-4o-mini"]}}]
  context_window_fallbacks: [{{"gpt-4o": ["gpt-4o-mini"]}}]
general_settings:
  master_key: sk-1234
  database_url: postgresql://user:pass@db:5432/litellm
router_settings:
  routing_strategy: usage-based-routing-v2
  allowed_fails: 3
  cooldown_time: 30
  redis_host: localhost
  timeout: 20
environment_variables:
  REDIS_HOST: localhost
store:
  redis_url: {redis}
"""

EXPECTED = [
    "router_settings.{routing_strategy, redis_host}",
    "litellm_settings.{drop_params, set_verbose, success_callback, context_window_fallbacks}",
    "general_settings.{master_key, database_url}",
    "environment_variables.{REDIS_HOST}",
    "model_list[0].litellm_params.{temperature, max_retries}",
    "model_list[0].model_info.{id, mode}",
]


@pytest.fixture()
def docs_config(tmp_path: Path, stub: Stub, redis_url: str) -> Path:
    path = tmp_path / "litellm_config.yaml"
    path.write_text(DOCS_STYLE.format(base=stub.base_url, redis=redis_url))
    return path


def test_docs_style_config_maps_what_it_acts_on_and_names_the_rest(docs_config: Path) -> None:
    settings = load_settings(docs_config)
    rs = settings.router_settings
    assert rs.num_retries == 3  # litellm_settings.num_retries
    assert rs.timeout == 20  # router_settings.timeout wins over litellm_settings.request_timeout
    assert rs.fallbacks == [{"gpt-4o": ["gpt-4o-mini"]}]  # litellm_settings.fallbacks
    assert (rs.allowed_fails, rs.cooldown_time) == (3, 30)  # router_settings, acted on
    assert list(check_config(settings, str(docs_config)).ignored) == EXPECTED


def test_config_check_prints_one_warning(docs_config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "check", str(docs_config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, proc.stderr
    assert "does not act on" in warnings[0]
    for group in EXPECTED:
        assert group in warnings[0]
    assert "ok" in proc.stdout


def test_gateway_starts_with_one_warning_and_serves(
    docs_config: Path, stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(load_settings(docs_config), source=str(docs_config))
    with caplog.at_level(logging.WARNING, logger="rollguard.gateway"), serve_app(app) as srv:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
        resp = httpx.post(f"{srv.url}/v1/chat/completions", json=body, timeout=10)
        assert resp.status_code == 200, resp.text
        assert "hello there" in resp.json()["choices"][0]["message"]["content"]
    found = [r.getMessage() for r in caplog.records if "does not act on" in r.getMessage()]
    assert len(found) == 1
    assert all(group in found[0] for group in EXPECTED)


def test_bad_litellm_setting_names_its_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("litellm_settings:\n  num_retries: lots\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "litellm_settings.num_retries" in str(err.value)
