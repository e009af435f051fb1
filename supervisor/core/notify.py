"""Cluster events: what the pair tells people (hooks, e-mail, history, status page).

Pure code. The core describes what happened as a ``Notice`` (kind, severity, the reason
sentence, and the group, link or resource it is about); the edge stamps it into a
``ClusterEvent`` with this node's name, a sequence number that only grows (persisted across
restarts), the monotonic time and the wall-clock time, then stores and dispatches it.

The core emits a notice where it decides (an ``Emit`` action beside the decision's reason
sentence): liveness (peer dead/back, link down/up, watchdog, outside world), ownership and
plan (takeover, failover, release, group started/stopped/failed/recovered), admin
(maintenance on/off), the configuration (reloaded/rejected), the start (booted after a reset)
and the DRBD replicas (``replica_changes``: Outdated, Inconsistent, UpToDate again, split
brain and resolved, resync started/finished).

Severities are ``info`` < ``warning`` < ``critical``; each kind has one (``KIND_SEVERITY``),
which e-mail filters on (``[notify] min_severity``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import IntEnum, StrEnum
from typing import Any

from supervisor.core.replica import Replica


class Severity(IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {text!r} (one of {', '.join(s.label for s in cls)})"
            ) from None


class Kind(StrEnum):
    PEER_DEAD = "peer_dead"
    PEER_BACK = "peer_back"
    LINK_DOWN = "link_down"
    LINK_UP = "link_up"
    TAKEOVER = "takeover"  # a handover agreed with a live peer (or at start-up)
    FAILOVER = "failover"  # taking over from a dead peer
    RELEASE = "release"
    GROUP_STARTED = "group_started"
    GROUP_STOPPED = "group_stopped"
    GROUP_FAILED = "group_failed"
    GROUP_RECOVERED = "group_recovered"
    WATCHDOG_NOT_ARMED = "watchdog_not_armed"
    WATCHDOG_ARMED = "watchdog_armed"
    WORLD_LOST = "world_lost"
    WORLD_REGAINED = "world_regained"
    REPLICA_OUTDATED = "replica_outdated"
    REPLICA_INCONSISTENT = "replica_inconsistent"
    REPLICA_UPTODATE = "replica_uptodate"
    SPLIT_BRAIN = "split_brain"
    SPLIT_BRAIN_RESOLVED = "split_brain_resolved"
    RESYNC_STARTED = "resync_started"
    RESYNC_FINISHED = "resync_finished"
    CONFIG_RELOADED = "config_reloaded"
    CONFIG_REJECTED = "config_rejected"
    MAINTENANCE_ON = "maintenance_on"
    MAINTENANCE_OFF = "maintenance_off"
    NODE_STARTED = "node_started"
    NODE_STOPPING = "node_stopping"
    BOOTED_AFTER_RESET = "booted_after_reset"


KIND_SEVERITY: dict[Kind, Severity] = {
    Kind.PEER_DEAD: Severity.CRITICAL,
    Kind.PEER_BACK: Severity.INFO,
    Kind.LINK_DOWN: Severity.WARNING,
    Kind.LINK_UP: Severity.INFO,
    Kind.TAKEOVER: Severity.WARNING,
    Kind.FAILOVER: Severity.CRITICAL,
    Kind.RELEASE: Severity.WARNING,
    Kind.GROUP_STARTED: Severity.INFO,
    Kind.GROUP_STOPPED: Severity.INFO,
    Kind.GROUP_FAILED: Severity.CRITICAL,
    Kind.GROUP_RECOVERED: Severity.INFO,
    Kind.WATCHDOG_NOT_ARMED: Severity.CRITICAL,
    Kind.WATCHDOG_ARMED: Severity.INFO,
    Kind.WORLD_LOST: Severity.CRITICAL,
    Kind.WORLD_REGAINED: Severity.INFO,
    Kind.REPLICA_OUTDATED: Severity.WARNING,
    Kind.REPLICA_INCONSISTENT: Severity.WARNING,
    Kind.REPLICA_UPTODATE: Severity.INFO,
    Kind.SPLIT_BRAIN: Severity.CRITICAL,
    Kind.SPLIT_BRAIN_RESOLVED: Severity.INFO,
    Kind.RESYNC_STARTED: Severity.INFO,
    Kind.RESYNC_FINISHED: Severity.INFO,
    Kind.CONFIG_RELOADED: Severity.INFO,
    Kind.CONFIG_REJECTED: Severity.WARNING,
    Kind.MAINTENANCE_ON: Severity.WARNING,
    Kind.MAINTENANCE_OFF: Severity.INFO,
    Kind.NODE_STARTED: Severity.INFO,
    Kind.NODE_STOPPING: Severity.INFO,
    Kind.BOOTED_AFTER_RESET: Severity.CRITICAL,
}


@dataclass(frozen=True)
class Notice:
    """What the core (or an edge) says happened; the edge stamps it into a ClusterEvent.
    ``subject`` is the node the event is about (the peer for peer_dead); empty = this node."""

    kind: Kind
    reason: str
    group: str = ""
    link: str = ""
    resource: str = ""
    subject: str = ""
    severity: Severity | None = None  # None: the kind's severity

    @property
    def level(self) -> Severity:
        return KIND_SEVERITY[self.kind] if self.severity is None else self.severity


@dataclass(frozen=True)
class ClusterEvent:
    """One event as it is stored, shown, sent to hooks and mailed.

    ``node`` recorded it; ``seq`` orders one node's events (it never goes back, also across
    restarts); ``mono`` is that node's CLOCK_MONOTONIC (meaningless on the other node) and
    ``wall`` its UNIX time (comparable across nodes when both synchronise their clocks)."""

    node: str
    seq: int
    mono: float
    wall: float
    kind: Kind
    severity: Severity
    reason: str
    subject: str = ""
    group: str = ""
    link: str = ""
    resource: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.node, self.seq)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["severity"] = self.severity.label
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClusterEvent:
        """Raise ValueError on anything that is not a well-formed event."""
        try:
            ev = cls(
                node=_text(d["node"], 64),
                seq=_int(d["seq"]),
                mono=float(d["mono"]),
                wall=float(d["wall"]),
                kind=Kind(d["kind"]),
                severity=Severity.parse(str(d["severity"])),
                reason=_text(d["reason"], 2000),
                subject=_text(d.get("subject", ""), 64),
                group=_text(d.get("group", ""), 64),
                link=_text(d.get("link", ""), 64),
                resource=_text(d.get("resource", ""), 64),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an event: {exc!r}") from None
        if not ev.node:
            raise ValueError("not an event: no node")
        return ev


def _text(value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value[:limit]


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a sequence number, got {value!r}")
    return value


def stamp(notice: Notice, *, node: str, seq: int, mono: float, wall: float) -> ClusterEvent:
    return ClusterEvent(
        node=node, seq=seq, mono=mono, wall=wall, kind=notice.kind, severity=notice.level,
        reason=notice.reason, subject=notice.subject or node, group=notice.group,
        link=notice.link, resource=notice.resource,
    )


def encode_events(events: list[ClusterEvent]) -> str:
    return json.dumps([e.to_dict() for e in events], separators=(",", ":"))


def merge(*streams: list[ClusterEvent], keep: int) -> list[ClusterEvent]:
    """One timeline from several nodes' events: each (node, seq) once, ordered by wall-clock
    time then node and sequence, the last ``keep`` of each node kept."""
    seen: dict[tuple[str, int], ClusterEvent] = {}
    for stream in streams:
        for ev in stream:
            seen.setdefault(ev.key, ev)
    by_node: dict[str, list[ClusterEvent]] = {}
    for ev in seen.values():
        by_node.setdefault(ev.node, []).append(ev)
    kept: list[ClusterEvent] = []
    for evs in by_node.values():
        evs.sort(key=lambda e: e.seq)
        kept.extend(evs[-keep:] if keep > 0 else [])
    kept.sort(key=lambda e: (e.wall, e.node, e.seq))
    return kept


# --------------------------------------------------------------------------------------------
# Replica events: what changed between two reports of the DRBD monitor


def replica_changes(before: Replica, after: Replica) -> list[Notice]:
    """The notices for what changed between two reports of one DRBD resource."""
    out: list[Notice] = []
    name = after.name
    if after.disk != before.disk:
        if after.disk == "Outdated":
            out.append(Notice(Kind.REPLICA_OUTDATED,
                              f"DRBD {name}: the local replica is Outdated (it misses writes "
                              "made on the peer); it is not promoted without "
                              "`twinbeat takeover --force-data`", resource=name))
        elif after.disk == "Inconsistent" and not after.syncing:
            out.append(Notice(Kind.REPLICA_INCONSISTENT,
                              f"DRBD {name}: the local replica is Inconsistent (a resync to "
                              "it has not finished)", resource=name))
        elif after.disk == "UpToDate" and before.disk in ("Outdated", "Inconsistent",
                                                          "Consistent"):
            out.append(Notice(Kind.REPLICA_UPTODATE,
                              f"DRBD {name}: the local replica is UpToDate again",
                              resource=name))
    if after.syncing and not before.syncing:
        size = ("" if after.out_of_sync_kib is None
                else f", {after.out_of_sync_kib} KiB out of sync")
        out.append(Notice(Kind.RESYNC_STARTED,
                          f"DRBD {name}: resync started (disks {after.disk}/{after.peer_disk}"
                          f"{size})", resource=name))
    elif before.syncing and not after.syncing:
        out.append(Notice(Kind.RESYNC_FINISHED,
                          f"DRBD {name}: resync ended, disks {after.disk}/{after.peer_disk} "
                          f"({after.connection})", resource=name))
    if after.split_brain and not before.split_brain:
        out.append(Notice(Kind.SPLIT_BRAIN,
                          f"DRBD {name}: SPLIT BRAIN, the replicas diverged and will not "
                          "reconnect on their own: see `twinbeat resolve-split-brain --help`",
                          resource=name))
    elif before.split_brain and not after.split_brain:
        out.append(Notice(Kind.SPLIT_BRAIN_RESOLVED,
                          f"DRBD {name}: split brain resolved, the replicas are connected "
                          "again", resource=name))
    return out
