"""A per-tenant entry nothing would read is refused at load (``config check`` and ``serve`` share
``gateway.config_check.check_config``): an entry for a tenant no API key maps to (a typo such as
``acmee``), in ``tenants``, ``rate_limits.tenants`` or a ``limits`` policy's ``params.tenants``; and
a tenant cap whose only ``limits`` policy is in shadow mode (it never blocks)."""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config_check import check_config, served_tenants
from rollguard.errors import ConfigError
from rollguard.settings import load_settings

KEYS = [{"key": "sk-acme", "tenant": "acme"}, {"key": "sk-beta", "tenant": "beta"}]
LIMITS = [{"id": "limits", "type": "limits"}]


def _check(tmp_path: Path, cfg: dict[str, Any]) -> None:
    path = tmp_path / "rollguard.yaml"
    path.write_text(yaml.safe_dump({"policies": LIMITS, **cfg}))
    check_config(load_settings(path), str(path))


def _where(tenant: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("tenants", {"tenants": {tenant: {"max_messages": 1}}}),
        ("rate_limits.tenants", {"rate_limits": {"tenants": {tenant: {"rpm": 1}}}}),
        (
            "policies.0.params.tenants",
            {"policies": [{"id": "limits", "type": "limits", "params": {"tenants": {tenant: {}}}}]},
        ),
    ]


def _names(n: int) -> list[str]:
    rng = random.Random(12)
    alphabet = string.ascii_lowercase + string.digits + "-_."
    out = ["acmee", "acme ", "Acme", "defaults", "beta2"]
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(n)]
    return [name for name in out if name not in ("acme", "beta", "default")]


@pytest.mark.parametrize("tenant", _names(20))
def test_an_entry_for_a_tenant_no_key_maps_to_is_refused_naming_the_field(
    tmp_path: Path, tenant: str
) -> None:
    for section, cfg in _where(tenant):
        with pytest.raises(ConfigError) as info:
            _check(tmp_path, {"gateway": {"api_keys": KEYS}, **cfg})
        message = str(info.value)
        assert f"{section}.{tenant}: no gateway.api_keys entry maps to tenant {tenant!r}" in message
        assert "rollguard.yaml" in message and "'acme', 'beta'" in message


@pytest.mark.parametrize("tenant", ["acme", "beta", "default"])
def test_entries_for_served_tenants_and_default_load(tmp_path: Path, tenant: str) -> None:
    for _, cfg in _where(tenant):
        _check(tmp_path, {"gateway": {"api_keys": KEYS}, **cfg})


def test_without_api_keys_every_request_is_tenant_default(tmp_path: Path) -> None:
    for _, cfg in _where("default"):
        _check(tmp_path, cfg)
    for section, cfg in _where("acme"):
        with pytest.raises(ConfigError, match=f"{section}.acme: .*no API keys are configured"):
            _check(tmp_path, cfg)
    assert served_tenants(load_settings(None)) == frozenset({"default"})


@pytest.mark.parametrize("field", ["max_messages", "max_chars", "max_tokens"])
def test_a_tenant_cap_with_only_a_shadow_mode_limits_policy_is_refused(tmp_path: Path, field: str) -> None:
    cfg = {
        "policies": [{"id": "limits", "type": "limits", "mode": "shadow"}],
        "tenants": {"default": {field: 2}},
    }
    shadow = f"tenants.default.{field}: every 'limits' policy is in mode shadow"
    with pytest.raises(ConfigError, match=shadow):
        _check(tmp_path, cfg)
    both = [{"id": "limits", "type": "limits"}, {"id": "limits_trial", "type": "limits", "mode": "shadow"}]
    _check(tmp_path, {**cfg, "policies": both})  # one enforcing limits policy: the cap is enforced
