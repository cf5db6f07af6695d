"""Every Redis name rollguard uses: streams, keys, consumer groups and consumer names. The one
module that spells them; every reader and writer imports them from here.

::

    rollguard:interactions              stream   audit trail (store.interactions_stream default)
      group "detectors"                          detector workers (gateway.detector_worker)
    rollguard:{detectors}:state         string   JSON of the window engine (worker; GET /v1/detectors)
    rollguard:{detectors}:seen          zset     interaction ids already counted, scored by time
    rollguard:{detectors}:variant_sums  string   JSON per flag variant: latency / TTFT histograms,
                                                 shadow would-block counts (worker; rollout judge)
    rollguard:{detectors}:signals       stream   per-interaction detector results
    rollguard:{detectors}:anomalies     stream   one anomaly bundle per opened incident
      group "review-router"                      the review service's anomaly consumers
    rollguard:{detectors}:anomaly_events stream  alert lifecycle events (open / update / resolve)
    rollguard:review:session:<sid>      string   reviewer console session -> reviewer name (TTL)
    rollguard:review:{<queue>}:...      per review queue, one hash tag (``ReviewQueueKeys``)
      group "reviewers"                          on the queue's priority streams (claim = lease)
    rollguard:{rollout}:index           set      rollout ids (rollout controller, issue 8)
    rollguard:{rollout}:state:<id>      string   JSON of one rollout's state machine (revision-CAS)
    rollguard:{rollout}:judgments:<id>  stream   one rollout's judgments with evidence (newest
                                                 ~JUDGMENTS_KEPT kept, gateway.rollout.repo)
    rollguard:{rollout}:evidence:<id>   stream   the judgments behind transitions, same ids (kept)
    rollguard:{rollout}:audit           stream   every transition: who, when, why, evidence id
    rollguard:{rollout}:lease           string   the controller lease "<holder> <fence>" (SET NX PX)
    rollguard:{rollout}:fence           string   fencing-token counter (INCR per acquisition)
    rollguard:{flags}:overrides         hash     flag -> JSON override (killed / percent / weights)
    rollguard:{flags}:version           string   override map version (INCR per write)
    rollguard:flags:changed             channel  pub/sub push: the override map changed
    rollguard:flags:reload              channel  pub/sub push: reload the bootstrap flags (SIGHUP)
    rollguard:audit:operations          stream   config loads, flag reloads, kill switch, rollout
                                                 rollbacks: who, what, config version (gateway.ops_audit)

Consumer names are unique per process and replica (``consumer_name``): two replicas never share
a pending-entries list, and a restarted process takes over its predecessor's pending entries by
XAUTOCLAIM once they are idle, never by reusing its name.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Protocol

INTERACTIONS_STREAM = "rollguard:interactions"
"""Default of ``store.interactions_stream``."""

DETECTORS_GROUP = "detectors"
DETECTORS_TAG = "rollguard:{detectors}"
"""One hash tag for every key the detector worker writes in its batch transaction (state,
seen-set, sums and the three output streams): one Redis Cluster slot, so the WATCH/MULTI/EXEC is
Cluster-safe. Until 2026-12 these keys had no tag (``LEGACY_DETECTOR_KEYS``)."""
STATE_KEY = f"{DETECTORS_TAG}:state"
SEEN_KEY = f"{DETECTORS_TAG}:seen"
VARIANT_SUMS_KEY = f"{DETECTORS_TAG}:variant_sums"
"""``gateway.worker.variant_sums`` JSON, written with ``STATE_KEY`` in one transaction."""
SIGNALS_STREAM = f"{DETECTORS_TAG}:signals"
ANOMALIES_STREAM = f"{DETECTORS_TAG}:anomalies"
ANOMALY_EVENTS_STREAM = f"{DETECTORS_TAG}:anomaly_events"
"""Lifecycle events (``event`` = open / update / resolve, ``id``, ``data`` = JSON of the event)."""
LEGACY_DETECTOR_KEYS = {
    "rollguard:detectors:state": STATE_KEY,
    "rollguard:detectors:seen": SEEN_KEY,
    "rollguard:detectors:variant_sums": VARIANT_SUMS_KEY,
    "rollguard:signals": SIGNALS_STREAM,
    "rollguard:anomalies": ANOMALIES_STREAM,
    "rollguard:anomaly_events": ANOMALY_EVENTS_STREAM,
}
"""Old name -> new name of the detector keys (``gateway.worker.migrate`` renames them once)."""
ANOMALY_GROUP = "review-router"

REVIEW_PREFIX = "rollguard:review"
REVIEWERS_GROUP = "reviewers"
REVIEW_SESSION_PREFIX = f"{REVIEW_PREFIX}:session:"


def review_session(session_hash: str) -> str:
    """The key of one console session (``session_hash``: the hashed session id)."""
    return REVIEW_SESSION_PREFIX + session_hash


def consumer_name(role: str) -> str:
    """A consumer name unique per process and replica: ``<role>-<host>-<pid>-<6 hex>`` (the random
    suffix tells apart two processes that reuse a pid, e.g. PID 1 in two containers on one
    host)."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


ROLLOUT_TAG = "rollguard:{rollout}"
"""One hash tag for every rollout key: the controller's Lua scripts touch state, audit and lease
together (one cluster slot)."""
ROLLOUT_INDEX = f"{ROLLOUT_TAG}:index"
ROLLOUT_AUDIT = f"{ROLLOUT_TAG}:audit"
ROLLOUT_LEASE = f"{ROLLOUT_TAG}:lease"
ROLLOUT_FENCE = f"{ROLLOUT_TAG}:fence"

FLAG_OVERRIDES = "rollguard:{flags}:overrides"
FLAG_OVERRIDES_VERSION = "rollguard:{flags}:version"
FLAG_OVERRIDES_CHANNEL = "rollguard:flags:changed"
FLAGS_RELOAD_CHANNEL = "rollguard:flags:reload"
OPERATIONS_AUDIT = "rollguard:audit:operations"
"""``gateway.ops_audit``: one entry per config load, flag reload, kill switch use, rollout stop."""


def rollout_state(rollout_id: str) -> str:
    """The key of one rollout's state JSON."""
    return f"{ROLLOUT_TAG}:state:{rollout_id}"


def rollout_judgments(rollout_id: str) -> str:
    """The stream of one rollout's judgments (trimmed to about the newest ``JUDGMENTS_KEPT``)."""
    return f"{ROLLOUT_TAG}:judgments:{rollout_id}"


def rollout_evidence(rollout_id: str) -> str:
    """The stream of one rollout's deciding judgments (action other than ``wait``: the evidence
    behind a transition), under the ids they have in ``rollout_judgments``; never trimmed."""
    return f"{ROLLOUT_TAG}:evidence:{rollout_id}"


REVIEW_DECIDED_MATCH = f"{REVIEW_PREFIX}:{{*}}:decided"
"""SCAN pattern of every review queue's decided-items key (finds the queues that have any)."""


def review_queue_of(key: str) -> str:
    """The queue name in a review queue key (``rollguard:review:{safety}:decided`` -> ``safety``)."""
    return key[len(REVIEW_PREFIX) + 2 : key.index("}")]


class _Ranked(Protocol):
    @property
    def rank(self) -> int: ...


REVIEW_PRIORITY_RANKS = (1, 2, 3)


class ReviewQueueKeys:
    """Key names for one review queue; all share the hash tag ``{queue}`` (one cluster slot, so
    the queue's Lua scripts may touch them together)."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        base = f"{REVIEW_PREFIX}:{{{queue}}}"
        self.base = base
        self.item_prefix = f"{base}:item:"
        self.open = f"{base}:open"
        self.claim_by = f"{base}:claim_by"
        self.decide_by = f"{base}:decide_by"
        self.decided = f"{base}:decided"
        self.audit = f"{base}:audit"
        self.paged = f"{base}:paged"
        self.tenant_open_prefix = f"{base}:open:t:"

    def tenant_open(self, tenant: str) -> str:
        return self.tenant_open_prefix + tenant

    def stream(self, priority: _Ranked) -> str:
        """The stream of one priority (``Priority.P1`` -> ``...:p1``)."""
        return self.stream_of_rank(priority.rank)

    def stream_of_rank(self, rank: int) -> str:
        return f"{self.base}:p{rank}"

    def streams(self) -> list[str]:
        """The priority streams, P1 first."""
        return [self.stream_of_rank(r) for r in REVIEW_PRIORITY_RANKS]

    def item(self, item_id: str) -> str:
        return self.item_prefix + item_id

    def verdicts(self, item_id: str) -> str:
        return self.item_prefix + item_id + ":verdicts"

    def leases(self, item_id: str) -> str:
        return self.item_prefix + item_id + ":leases"
