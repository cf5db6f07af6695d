"""Review configuration for ``rollguard demo``: two queues, routing for the built-in policies and
the demo's anomalies, and two reviewer accounts with well-known tokens. Demo only: the tokens are
printed and the gateway listens on loopback."""

from __future__ import annotations

from typing import Any

DEMO_TOKENS = {"reviewer": "demo-reviewer-token", "lead": "demo-lead-token"}
"""Login tokens of the demo's reviewer (``demo-reviewer``) and lead (``demo-lead``)."""


def demo_review_config() -> dict[str, Any]:
    """The ``review`` section for the demo (pass as ``RollguardSettings.review``)."""
    return {
        "k_overlap": 1,
        "lease_s": 300,
        "queues": [
            {"name": "safety", "description": "flagged policy decisions"},
            {"name": "rollout", "k": 2, "description": "canary vs control findings"},
        ],
        "routes": [
            {"queue": "safety", "priority": "P1", "policy": ["pii", "secrets", "system_prompt_leak"]},
            {"queue": "safety", "priority": "P2", "source": ["interaction"]},
            {"queue": "rollout", "priority": "P1", "source": ["anomaly"], "severity": ["high", "critical"]},
            {"queue": "rollout", "priority": "P2", "source": ["anomaly"]},
        ],
        "reviewers": [
            {"name": "demo-reviewer", "token": DEMO_TOKENS["reviewer"], "role": "reviewer"},
            {"name": "demo-lead", "token": DEMO_TOKENS["lead"], "role": "lead"},
        ],
    }


def console_banner(base_url: str) -> str:
    """The lines ``rollguard demo`` prints at the end: the console URL and the tokens."""
    return (
        f"Review console: {base_url.rstrip('/')}/review\n"
        f"  reviewer token: {DEMO_TOKENS['reviewer']}\n"
        f"  lead token:     {DEMO_TOKENS['lead']}"
    )
