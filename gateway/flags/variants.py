"""What a request's flag snapshot means for it: which flags to evaluate, whether the public model
alias is open to the caller, which upstream alias a rollout's variant sends it to, and whether
its capabilities (streaming, tools) are on. Pure (no I/O); the chat service calls it once per
request after ``Flags.evaluate``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.upstream.errors import model_not_served
from rollguard.errors import InvalidRequest, NotFound
from rollguard.settings import FlagSettings
from rollguard.types import FlagSnapshot

__all__ = ["CAPABILITY_STREAMING", "CAPABILITY_TOOLS", "ModelChoice", "VariantResolver"]

CAPABILITY_STREAMING = "streaming"
CAPABILITY_TOOLS = "tools"


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The upstream alias to call; ``variant``/``rollout_flag`` when a rollout picked it."""

    target: str
    variant: str | None = None
    rollout_flag: str | None = None


def _not_found() -> NotFound:
    """A model its gate switches off for this caller: the client's value is not echoed and the
    gated alias is not named."""
    return NotFound(
        "the requested model is not served or you do not have access to it",
        param="model",
        code="model_not_found",
    )


class VariantResolver:
    """Model gates, rollouts and capability gates of the ``flags`` config section.

    ``policy_flags`` are the pipeline's policy flags; ``has_model(alias)`` whether the upstream
    serves an alias. ``flag_names`` / ``variant_flags`` are what ``Flags.evaluate`` is asked for.
    """

    def __init__(
        self,
        config: FlagSettings,
        policy_flags: Iterable[str],
        has_model: Callable[[str], bool],
        served: Sequence[str] = (),
    ) -> None:
        self._config = config
        self._has_model = has_model
        self._served = tuple(served)
        """The public aliases, named in the 404 for a model nothing serves."""
        names: dict[str, None] = dict.fromkeys(f for f in policy_flags if f)
        for f in (*config.capabilities.values(), *config.models.values()):
            names[f] = None
        self.flag_names: tuple[str, ...] = tuple(names)
        self.variant_flags: tuple[str, ...] = tuple(dict.fromkeys(ro.flag for ro in config.rollouts.values()))

    def resolve_model(self, alias: str, snapshot: FlagSnapshot) -> ModelChoice:
        """The upstream alias to call for public ``alias``: model flags gate it, a rollout picks
        the variant's target (its variant's mapping, else a payload naming a served alias, else
        ``control``). Raises ``NotFound`` (404 ``model_not_found``)."""
        gate = self._config.models.get(alias)
        if gate is not None and not snapshot.is_enabled(gate):
            raise _not_found()
        ro = self._config.rollouts.get(alias)
        if ro is not None:
            variant = snapshot.variants.get(ro.flag)
            target = ro.variants.get(variant) if variant else None
            if target is None:
                payload = snapshot.payloads.get(ro.flag)
                if payload and self._has_model(payload):
                    target = payload
            if target is None:
                variant = "control"
                target = ro.variants.get("control") or (alias if self._has_model(alias) else None)
            if target is not None:
                return ModelChoice(target, variant or "control", ro.flag)
        if not self._has_model(alias):
            raise model_not_served(self._served)
        return ModelChoice(alias)

    def gate_capabilities(self, body: Mapping[str, Any], snapshot: FlagSnapshot) -> None:
        """Raise ``InvalidRequest`` (400 ``capability_disabled``) for streaming or tools the
        caller's flags switch off."""
        caps = self._config.capabilities
        if body.get("stream") and not snapshot.is_enabled(caps.get(CAPABILITY_STREAMING)):
            raise InvalidRequest(
                "streaming is not enabled for this caller", param="stream", code="capability_disabled"
            )
        if (body.get("tools") or body.get("functions")) and not snapshot.is_enabled(
            caps.get(CAPABILITY_TOOLS)
        ):
            raise InvalidRequest(
                "tools are not enabled for this caller", param="tools", code="capability_disabled"
            )
