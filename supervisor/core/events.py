"""Events fed into the decision core. Each is a plain value; the time comes separately."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from operator import attrgetter, is_not
from typing import TYPE_CHECKING

from supervisor.core.replica import Replica

if TYPE_CHECKING:
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


_ARRIVED, _DATA = attrgetter("arrived"), attrgetter("data")
_KNOWN = partial(is_not, None)


def one_arrival(lines: list[bytes], arrivals: list[float | None]) -> float | None:
    """The arrival that ``shared_arrivals`` gives every frame of one wake-up when their
    ``lines`` (stripped) are the copies of one line and one of ``arrivals`` is known (the
    latest of them); else None: ``shared_arrivals`` works the frames out line by line, or
    none was timestamped. (The loop's quiet wake-up, once a keepalive, then makes each
    frame once, with its arrival.)"""
    latest: float | None = None
    first = lines[0]
    for line, arrived in zip(lines, arrivals, strict=True):
        if line != first:
            return None
        if arrived is not None and (latest is None or arrived > latest):
            latest = arrived
    return latest


def shared_arrivals(frames: tuple[FrameReceived, ...]) -> tuple[FrameReceived, ...]:
    """The frames of one wake-up, the copies of one line given one arrival: the latest
    known among them (the peer sent the beat on every link at once; a serial line has no
    receive timestamp, and its copy is heard with the datagrams that carried the same
    beat). Frames whose line no copy timestamped keep None (heard when read). (Once a
    keepalive on a quiet node: the common case, one line, takes the first branch.)"""
    known = list(filter(_KNOWN, map(_ARRIVED, frames)))
    if not known:
        return frames
    lines = list(map(bytes.strip, map(_DATA, frames)))
    if lines.count(lines[0]) == len(lines):  # one beat and its copies
        latest = max(known)
        if len(known) == len(frames) and min(known) == latest:
            return frames
        shared = []  # (a loop: a generator expression makes a function object each time)
        for f in frames:
            shared.append(f if f.arrived == latest
                          else FrameReceived(f.link, f.data, f.waited, latest))
        return tuple(shared)
    by_line: dict[bytes, float] = {}
    for frame, line in zip(frames, lines, strict=True):
        if frame.arrived is not None and frame.arrived > by_line.get(line, -math.inf):
            by_line[line] = frame.arrived
    return tuple(
        f if by_line.get(line, f.arrived) == f.arrived
        else FrameReceived(f.link, f.data, f.waited, by_line[line])
        for f, line in zip(frames, lines, strict=True))


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
