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
    UNKNOWN --initdead--> DEAD
    ALIVE --"leaving" heartbeat--> DEAD (graceful shutdown: no need to wait deadtime)

Links (per medium)::

    UNKNOWN --frame--> UP --warntime--> LATE --deadtime--> DOWN --frame--> UP
    (carrier lost: any -> DOWN; carrier back with a heartbeat older than warntime: -> LATE)

This node::

    INIT --peer heard or initdead--> ACTIVE --every group stopped at shutdown--> LEAVING
    INIT --shutdown before the peer was judged--> LEAVING

Each table below is enforced where the state changes: the only way to change a state is
``checked(TABLE, old, new, what)``, which raises ``IllegalTransition`` for a change the table
does not list (pyroute2's ``dhcp/fsm.py`` is the model). A failing check is a bug in the core,
and the tests drive every table through the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar


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


class IllegalTransition(RuntimeError):
    """A state change that its transition table does not allow (a bug in the core)."""


_S = TypeVar("_S", Activity, PeerStatus, LinkStatus, NodeStatus)


def checked(table: Mapping[_S, frozenset[_S]], old: _S, new: _S, what: str) -> _S:
    """``new`` if ``old -> new`` is in ``table`` (or nothing changes); raise otherwise."""
    if new is not old and new not in table[old]:
        raise IllegalTransition(f"{what}: {old.value} -> {new.value} is not allowed")
    return new


#: what a group's activity may change to (GroupState.to is the only place it changes)
ACTIVITY_TRANSITIONS: dict[Activity, frozenset[Activity]] = {
    Activity.IDLE: frozenset({Activity.STARTING, Activity.STOPPING}),
    Activity.STARTING: frozenset({Activity.RUNNING, Activity.STOPPING}),
    Activity.RUNNING: frozenset({Activity.STOPPING}),
    Activity.STOPPING: frozenset({Activity.IDLE, Activity.STOP_FAILED}),
    Activity.STOP_FAILED: frozenset({Activity.STOPPING}),
}

#: what the peer's liveness may change to (PeerState.to)
PEER_TRANSITIONS: dict[PeerStatus, frozenset[PeerStatus]] = {
    PeerStatus.UNKNOWN: frozenset({PeerStatus.ALIVE, PeerStatus.DEAD}),
    PeerStatus.ALIVE: frozenset({PeerStatus.DEAD}),
    PeerStatus.DEAD: frozenset({PeerStatus.ALIVE}),
}

#: what a link's status may change to (LinkState.to); nothing goes back to UNKNOWN
LINK_TRANSITIONS: dict[LinkStatus, frozenset[LinkStatus]] = {
    LinkStatus.UNKNOWN: frozenset({LinkStatus.UP, LinkStatus.LATE, LinkStatus.DOWN}),
    LinkStatus.UP: frozenset({LinkStatus.LATE, LinkStatus.DOWN}),
    LinkStatus.LATE: frozenset({LinkStatus.UP, LinkStatus.DOWN}),
    LinkStatus.DOWN: frozenset({LinkStatus.UP, LinkStatus.LATE}),
}

#: what this node's own status may change to
NODE_TRANSITIONS: dict[NodeStatus, frozenset[NodeStatus]] = {
    NodeStatus.INIT: frozenset({NodeStatus.ACTIVE, NodeStatus.LEAVING}),
    NodeStatus.ACTIVE: frozenset({NodeStatus.LEAVING}),
    NodeStatus.LEAVING: frozenset(),
}
