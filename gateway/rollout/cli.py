"""``rollguard rollout list|show|start|approve|pause|resume|rollback`` and ``rollguard flags
kill|revive|reload|list``: the same transitions as the API (``gateway.rollout.service``), run
against the configured store (``store.redis_url``, or the embedded Valkey under
``store.data_dir`` that the gateway started).

Roles, as the API (``gateway.rollout.roles``): every command that changes something (``rollout
start|approve|pause|resume|rollback``, ``flags kill|revive|reload``) needs a reviewer token
(``review.reviewers``) with the ``lead`` or ``operator`` role, from ``--token`` or (better: it
stays out of the process list and the shell history) ``ROLLGUARD_REVIEW_TOKEN``; the audit entry
names ``<role>:<name>``. Reading (``rollout list|show``, ``flags list``) needs no token: whoever
can reach the store can read it anyway.

Exit codes: 0 done; 1 refused (409: the rollout is not in a state that allows it; 404: unknown
id); 2 bad input or config, or a missing / unknown token (401) or a token without the role (403:
``error: this needs the lead or operator role``); 3 the store or the Unleash Admin API failed.
Errors are one ``error: ...`` line on standard error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

flags_app = typer.Typer(
    help="Flag kill switch (every process of every replica, < 1 s).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: $ROLLGUARD_CONFIG or built-in)"),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="ROLLGUARD_REVIEW_TOKEN",
        help="reviewer token with the lead or operator role (default: $ROLLGUARD_REVIEW_TOKEN)",
        show_default=False,
    ),
]
StepOpt = Annotated[int | None, typer.Option(help="the step you approve (refused if it moved on)")]
T = TypeVar("T")
Work = Callable[[Any, str], Awaitable[T]]
"""``work(service, who)``: ``who`` is ``<role>:<name>`` of the token's reviewer (``reader`` for a
read-only command)."""


def _read(config: Path | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """``_run`` for a read-only command: no token needed."""
    return _run(config, lambda s, _who: work(s), token=None, write=False)


def _run(config: Path | None, work: Work[T], *, token: str | None, write: bool = True) -> T:
    """Run ``work(service, who)`` against the configured store, after the role check when
    ``write`` (``gateway.rollout.roles.token_operator``); maps errors to exit codes."""
    from gateway.defaults import with_embedded_defaults
    from gateway.review.auth import ReviewAuth
    from gateway.rollout.roles import token_operator
    from gateway.rollout.runtime import build_service
    from gateway.store.client import connect
    from gateway.store.locate import check_embedded_dir, require_rollguard_data
    from rollguard.errors import ClientError, ConfigError, Conflict, NotFound, StoreError
    from rollguard.settings import load_settings

    async def go() -> T:
        settings = with_embedded_defaults(load_settings(config))
        check_embedded_dir(settings.store)  # never a new empty store in the wrong directory
        async with connect(settings.store) as redis:  # no degraded mode, no spool: a tool's client
            who = "reader"
            if not write:  # an empty or foreign store is a wrong pointer, not "no rollouts"
                await require_rollguard_data(redis, settings.store)
            if write:  # before any work: a refused person changes nothing
                review = settings.review
                auth = ReviewAuth(review, redis) if review is not None else None
                who = token_operator(review, auth, token)
            return await work(build_service(settings, redis), who)

    try:
        return asyncio.run(go())
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (Conflict, NotFound) as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except ClientError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except StoreError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(3) from None


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _summary(state: Any) -> str:
    nxt = f", next {state.next_percent:g} %" if state.next_percent is not None else ""
    where = f"step {state.step} ({state.percent:g} %{nxt})"
    return f"{state.id}: {state.status.value}, {where}, revision {state.revision}"


def register(rollout_app: typer.Typer) -> None:
    """Add the controller commands to the ``rollguard rollout`` group."""

    @rollout_app.command("list")
    def list_cmd(config: ConfigOpt = None) -> None:
        """Every rollout's state, one line each."""
        for state in _read(config, lambda s: s.repo.all()):
            typer.echo(_summary(state))

    @rollout_app.command("show")
    def show_cmd(rollout_id: str, config: ConfigOpt = None) -> None:
        """One rollout as JSON: state, the newest judgments and audit entries."""

        async def work(s: Any) -> dict[str, Any]:
            state = await s.repo.get(rollout_id)
            return {
                **state.to_dict(),
                "judgments": await s.repo.judgments(rollout_id, 5),
                "audit": await s.repo.audit(rollout_id, 20),
            }

        _print(_read(config, work))

    @rollout_app.command("start")
    def start_cmd(rollout_id: str, config: ConfigOpt = None, token: TokenOpt = None) -> None:
        """Start a pending rollout at its first step (lead or operator)."""
        typer.echo(_summary(_run(config, lambda s, who: s.start(rollout_id, who), token=token)))

    @rollout_app.command("approve")
    def approve_cmd(
        rollout_id: str,
        step: StepOpt = None,
        config: ConfigOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Promote a rollout awaiting approval to its next step (lead or operator; exit 1 if it
        is not awaiting)."""
        typer.echo(_summary(_run(config, lambda s, who: s.approve(rollout_id, who, step=step), token=token)))

    @rollout_app.command("pause")
    def pause_cmd(
        rollout_id: str, reason: str = "paused by a person", config: ConfigOpt = None, token: TokenOpt = None
    ) -> None:
        """Pause a running or awaiting rollout (the canary keeps its share; lead or operator)."""
        typer.echo(_summary(_run(config, lambda s, who: s.pause(rollout_id, who, reason), token=token)))

    @rollout_app.command("resume")
    def resume_cmd(rollout_id: str, config: ConfigOpt = None, token: TokenOpt = None) -> None:
        """Resume a paused rollout (its step starts again with fresh data; lead or operator)."""
        typer.echo(_summary(_run(config, lambda s, who: s.resume(rollout_id, who), token=token)))

    @rollout_app.command("rollback")
    def rollback_cmd(
        rollout_id: str,
        reason: str = "rolled back by a person",
        config: ConfigOpt = None,
        token: TokenOpt = None,
    ) -> None:
        """Roll back: canary to 0 % at once, in every process of every replica (lead or operator)."""
        typer.echo(_summary(_run(config, lambda s, who: s.rollback(rollout_id, who, reason), token=token)))


@flags_app.command("kill")
def kill_cmd(
    flag: str, reason: str = "kill switch", config: ConfigOpt = None, token: TokenOpt = None
) -> None:
    """Turn FLAG off for everyone (every worker of every replica within 1 s; lead or operator)."""
    version = _run(config, lambda s, who: s.kill(flag, who, reason), token=token)
    typer.echo(f"{flag}: killed (override version {version})")


@flags_app.command("revive")
def revive_cmd(flag: str, reason: str = "revived", config: ConfigOpt = None, token: TokenOpt = None) -> None:
    """Undo ``kill``: FLAG evaluates from its source (and any rollout percentage) again (lead or
    operator)."""
    version = _run(config, lambda s, who: s.revive(flag, who, reason), token=token)
    typer.echo(f"{flag}: revived (override version {version})")


@flags_app.command("list")
def list_flags_cmd(config: ConfigOpt = None) -> None:
    """The store-backed overrides as JSON."""

    async def work(s: Any) -> dict[str, Any]:
        version, entries = await s.overrides.load()
        return {"version": version, "overrides": {k: v.to_dict() for k, v in sorted(entries.items())}}

    _print(_read(config, work))


@flags_app.command("reload")
def reload_cmd(config: ConfigOpt = None, token: TokenOpt = None) -> None:
    """Ask every gateway process on the store to re-read its bootstrap flags file (lead or
    operator)."""
    n = _run(config, lambda s, who: s.overrides.request_reload(who), token=token)
    typer.echo(f"reload requested ({n} process(es) listening)")
