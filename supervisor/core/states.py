"""Node, link and resource-group states, and how they may change.

Each node runs one core. For every resource group a node publishes, in every heartbeat, its
*activity* (what its resources are doing) and its *negotiation* flag::

    activity:   IDLE --start--> STARTING --all started--> RUNNING
                  ^                 |  start failed            |  released / failed over
                  |                 v  (stop what started)     v
                  +----stopped---- STOPPING <------------------+
                                    |  a stop failed
                                    v
                               STOP_FAILED  (reboot, or blocked until `twinbeat cleanup`)

    negotiation (only while activity is IDLE):
        NONE  -- nothing asked
        WANT(e)  -- "I should own this group; may I?" (e: a fresh epoch per request)
        GRANT(e) -- "I hold nothing of it and will not start it; take it" (answers WANT(e))

Handover is a protocol, never two nodes deciding alone: a node whose peer is alive starts a
group only when the peer's latest heartbeat shows the group IDLE with GRANT for the node's own
current WANT epoch. A node only grants from IDLE, and never starts a group it has granted
unless the peer is declared dead. So while any link delivers, no group has two owners.

Peer liveness::

    UNKNOWN (never heard; INIT phase until initdead) --> ALIVE <--> DEAD
    ALIVE --"leaving" heartbeat--> DEAD (graceful shutdown: no need to wait deadtime)

Links (per medium)::

    UNKNOWN --frame--> UP --warntime--> LATE --deadtime--> DOWN --frame--> UP
"""

from __future__ import annotations

from enum import StrEnum


class Activity(StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOP_FAILED = "stop_failed"

    @property
    def holds(self) -> bool:
        """Resources may be active on the node (it counts as an owner)."""
        return self is not Activity.IDLE


class Nego(StrEnum):
    NONE = "none"
    WANT = "want"
    GRANT = "grant"


class NodeStatus(StrEnum):
    INIT = "init"  # started, waiting up to initdead for the peer
    ACTIVE = "active"
    LEAVING = "leaving"  # shutting down gracefully


class PeerStatus(StrEnum):
    UNKNOWN = "unknown"
    ALIVE = "alive"
    DEAD = "dead"


class LinkStatus(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    LATE = "late"
    DOWN = "down"

    @property
    def delivers(self) -> bool:
        return self in (LinkStatus.UP, LinkStatus.LATE)


# The allowed activity transitions (a test checks every step against this table).
ACTIVITY_TRANSITIONS: dict[Activity, frozenset[Activity]] = {
    Activity.IDLE: frozenset({Activity.STARTING, Activity.STOPPING}),
    Activity.STARTING: frozenset({Activity.RUNNING, Activity.STOPPING}),
    Activity.RUNNING: frozenset({Activity.STOPPING}),
    Activity.STOPPING: frozenset({Activity.IDLE, Activity.STOP_FAILED}),
    Activity.STOP_FAILED: frozenset({Activity.STOPPING}),
}
