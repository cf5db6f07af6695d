"""Who may change a rollout or a flag: a reviewer account (``review.reviewers``) with the ``lead``
or ``operator`` role (issue 8, human gate). One check shared by the API (``gateway.rollout.api``:
bearer token or console session) and the CLI (``gateway.rollout.cli``: ``--token`` or
``ROLLGUARD_REVIEW_TOKEN``), so both refuse the same people with the same words."""

from __future__ import annotations

from gateway.review.auth import ReviewAuth
from gateway.review.config import ReviewerSpec
from rollguard.errors import AuthenticationFailed, PermissionDenied
from rollguard.review_settings import ReviewSettings, Role

WRITE_ROLES = frozenset({Role.LEAD, Role.OPERATOR})
NEEDS_ROLE = "this needs the lead or operator role"
NO_ACCOUNTS = "no operator accounts: configure review.reviewers with role lead or operator"


def operator_name(reviewer: ReviewerSpec) -> str:
    """``<role>:<name>`` of a reviewer who may change rollouts and flags (the audit's ``who``).
    Raises ``PermissionDenied`` (403) for any other role."""
    if reviewer.role not in WRITE_ROLES:
        raise PermissionDenied(NEEDS_ROLE)
    return f"{reviewer.role.value}:{reviewer.name}"


def token_operator(review: ReviewSettings | None, auth: ReviewAuth | None, token: str | None) -> str:
    """``operator_name`` of the reviewer whose bearer ``token`` this is (the CLI's check).
    Raises ``PermissionDenied`` without a review section, ``AuthenticationFailed`` (401) without
    a token or for an unknown one, ``PermissionDenied`` without the role."""
    if review is None or auth is None:
        raise PermissionDenied(NO_ACCOUNTS)
    if not token or not token.strip():
        raise AuthenticationFailed(
            "this needs a reviewer token with the lead or operator role (--token or ROLLGUARD_REVIEW_TOKEN)"
        )
    reviewer = auth.by_token(token.strip())
    if reviewer is None:
        raise AuthenticationFailed("unknown reviewer token")
    return operator_name(reviewer)
