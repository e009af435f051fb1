"""Events fed into the decision core. Each is a plain value; the time comes separately."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervisor.core.replica import Replica

if TYPE_CHECKING:
    from collections.abc import Sequence

    from supervisor.config import Config


@dataclass(frozen=True)
class Tick:
    """Time has passed (the loop woke up at a deadline the core asked for)."""


@dataclass(frozen=True)
class FrameReceived:
    """Raw bytes of one frame line (serial) or datagram (UDP) arrived on ``link`` (stripped,
    when a quiet wake-up collected it: the core strips every frame it reads anyway).
    ``waited``: read at a quiet wake-up of the loop (supervisor.core.quiet), it may have
    waited in its socket up to a keepalive: no round trip is measured from it, and it is not
    echoed (the peer would count the wait in its round trip). ``arrived``: when it arrived,
    on the loop's clock, if the loop knows it (a datagram that waited: the kernel's receive
    time); the link and the peer are heard then (intake.heard_time), not when it was read."""

    link: str
    data: bytes
    waited: bool = False
    arrived: float | None = None


@dataclass(frozen=True)
class FramesReceived:
    """Frames that arrived in one wake-up of the loop (usually the same beat on several
    links): each is taken in as its FrameReceived would be, then the node decides once."""

    frames: tuple[FrameReceived, ...]


def shared_arrivals(lines: Sequence[bytes], arrivals: Sequence[float | None]
                    ) -> list[float | None]:
    """The arrival of each frame of one wake-up (``lines``, stripped, in the order read,
    each with its own receive time in ``arrivals`` or None): the latest known among the
    copies of its line (the peer sent the beat on every link at once; a serial line has no
    receive timestamp, and its copy is heard with the datagrams that carried the same
    beat); None where no copy of its line was timestamped (heard when read). Once a
    keepalive on a quiet node the lines are one beat's copies: the first loop answers."""
    first, latest = lines[0], None
    for line, arrived in zip(lines, arrivals, strict=True):
        if line != first:
            break
        if arrived is not None and (latest is None or arrived > latest):
            latest = arrived
    else:
        return [latest] * len(lines)
    by_line: dict[bytes, float] = {}
    for line, arrived in zip(lines, arrivals, strict=True):
        if arrived is not None and arrived > by_line.get(line, -math.inf):
            by_line[line] = arrived
    shared: list[float | None] = []  # (a loop: a comprehension makes a function object)
    for line in lines:
        shared.append(by_line.get(line))
    return shared


@dataclass(frozen=True)
class LinkCarrier:
    """The carrier of the interface under a UDP link changed (netlink/sysfs)."""

    link: str
    up: bool


@dataclass(frozen=True)
class PublicCarrier:
    """The carrier of the public interface changed."""

    up: bool


@dataclass(frozen=True)
class PingReply:
    """A ping node answered."""

    address: str


@dataclass(frozen=True)
class WatchdogState:
    """Whether this node may own groups as far as the watchdog is concerned, whether a
    watchdog is armed at all (``automatic`` mode without a device: ok, but not armed) and
    ``timeout``: the timeout the device is armed with (None: no watchdog armed)."""

    ok: bool
    reason: str
    armed: bool = True
    timeout: float | None = None


@dataclass(frozen=True)
class ResourceResult:
    """The outcome of a StartResource, StopResource or CheckResource action."""

    group: str
    op_id: int
    ok: bool
    running: bool | None = None  # for checks: is it running?
    detail: str = ""


@dataclass(frozen=True)
class AdminCommand:
    """``twinbeat standby|takeover|cleanup [GROUP]``: the core answers with an AdminAnswer
    action carrying ``request_id`` and its typed decision (Accepted or Refused)."""

    command: str  # standby | takeover | cleanup | unpin | maintenance | resolve-split-brain
    group: str | None = None
    request_id: int = 0
    #: takeover --force-data: promote the group's DRBD replicas whatever their data
    force_data: bool = False
    #: resolve-split-brain: the node whose changes are discarded, and one resource or all
    discard: str | None = None
    resource: str | None = None
    #: maintenance: on or off, for ``node`` (None: this node)
    on: bool | None = None
    node: str | None = None


@dataclass(frozen=True)
class ReplicaChanged:
    """The DRBD monitor's view of a resource changed (events2)."""

    replica: Replica


@dataclass(frozen=True)
class DrbdadmDone:
    """The outcome of a RunDrbdadm action: ``ok``, or ``detail`` says which command failed."""

    request_id: int
    resource: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class ShutdownRequested:
    """Stop every group, tell the peer we are leaving, then exit."""


@dataclass(frozen=True)
class ConfigChanged:
    """A new, already validated configuration replaces the running one; ``key``: the secret
    of the (re)loaded authkeys file (None keeps the current one)."""

    config: Config
    key: bytes | None = None


@dataclass(frozen=True)
class ConfigRejected:
    """A changed configuration did not load; the running one stays. ``problems``: why."""

    path: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class NodeStarted:
    """How the previous run of the supervisor ended, as found at start (the edge reads its
    marker file and the watchdog's boot status): ``clean`` | ``crashed`` (the supervisor died,
    the machine did not) | ``reset`` (the machine restarted without a clean stop) |
    ``watchdog`` (the watchdog's boot status says it reset the machine); ``detail`` names
    the watchdog."""

    previous: str
    detail: str = ""


@dataclass(frozen=True)
class FenceRequested:
    """DRBD ran its fence-peer handler (``twinbeat fence-peer``) for ``resource``: the local
    node lost its replication connection and asks the peer, over the heartbeat links, to mark
    its replica Outdated. ``request_id`` is the loop's id for the waiting handler; it comes
    back in the FenceAnswer action."""

    resource: str
    request_id: int


@dataclass(frozen=True)
class OutdateResult:
    """The outcome of an OutdateReplica action: one of ``codec.OUTDATE_RESULTS``
    (outdated | inconsistent | primary | failed)."""

    resource: str
    request_id: int
    result: str
    detail: str = ""


Event = (
    Tick
    | FrameReceived
    | FramesReceived
    | LinkCarrier
    | PublicCarrier
    | PingReply
    | WatchdogState
    | ResourceResult
    | AdminCommand
    | ShutdownRequested
    | ConfigChanged
    | FenceRequested
    | OutdateResult
    | ReplicaChanged
    | DrbdadmDone
    | ConfigRejected
    | NodeStarted
)
