"""A generated red-team set for rollguard's guardrails (our own templates and payloads): attack
families (encoded payloads, invisible tag characters, instructions hidden in documents, goal
hijacking) and their benign counterparts, with a dev / held-out split (``generate``)."""

from policies.redteam.generate import ATTACK_FAMILIES, Case, generate

__all__ = ["ATTACK_FAMILIES", "Case", "generate"]
