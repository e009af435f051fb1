"""Actions the decision core asks the loop to carry out."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.core.notify import Notice
from supervisor.resource_spec import ResourceSpec


@dataclass(frozen=True)
class SendFrame:
    """Send this frame on every link."""

    data: bytes


@dataclass(frozen=True)
class StartResource:
    group: str
    index: int
    spec: ResourceSpec
    op_id: int
    timeout: float
    check_duplicates: bool = False
    #: an administrator armed `takeover --force-data` for the group: a drbddisk start
    #: promotes data that is not UpToDate (the risk was told and logged when it was armed)
    force_data: bool = False


@dataclass(frozen=True)
class StopResource:
    group: str
    index: int
    spec: ResourceSpec
    op_id: int
    timeout: float


@dataclass(frozen=True)
class CheckResource:
    group: str
    index: int
    spec: ResourceSpec
    op_id: int
    timeout: float


@dataclass(frozen=True)
class Reboot:
    """Escalation: a group could not be stopped; reset the node so the peer can take over."""

    reason: str


@dataclass(frozen=True)
class Log:
    level: str  # info | warning | error
    message: str


@dataclass(frozen=True)
class ShutdownComplete:
    """Every group is stopped and the peer was told; the daemon may exit."""


@dataclass(frozen=True)
class OutdateReplica:
    """The peer asked (fence-peer): mark the local replica of ``resource`` Outdated
    (``drbdadm outdate``), then feed back an OutdateResult with the same ids. ``timeout``
    leaves the answer time to reach the peer before its request times out."""

    resource: str
    request_id: int
    timeout: float = 5.0


@dataclass(frozen=True)
class FenceAnswer:
    """Tell the fence-peer handler waiting under ``request_id`` its exit code for DRBD."""

    request_id: int
    code: int
    message: str


@dataclass(frozen=True)
class Accepted:
    """An admin command the core carried out; ``reasons`` say what it decided."""

    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refused:
    """An admin command the core refused, and why (one sentence, also logged); ``said``:
    the lines to show the administrator (what was checked, what was not done)."""

    reason: str
    said: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunDrbdadm:
    """Run ``drbdadm ARGS... RESOURCE`` for each step in order; a failing step whose
    ``required`` flag is set ends the run. Answered by a DrbdadmDone with the same ids."""

    request_id: int
    resource: str
    steps: tuple[tuple[tuple[str, ...], bool], ...]
    timeout: float = 60.0


Decision = Accepted | Refused


@dataclass(frozen=True)
class Emit:
    """A cluster event the core decided (history, hooks, mail): stamped by the loop."""

    notice: Notice


@dataclass(frozen=True)
class SaveMaintenance:
    """Persist the maintenance flags (node -> (on, stamp)) in the state directory, so that
    a restart or a reboot keeps them."""

    flags: tuple[tuple[str, bool, int], ...]


@dataclass(frozen=True)
class AdminAnswer:
    """The core's decision on the AdminCommand with ``request_id``."""

    request_id: int
    decision: Decision


ResourceAction = StartResource | StopResource | CheckResource
Action = (
    SendFrame
    | StartResource
    | StopResource
    | CheckResource
    | Reboot
    | Log
    | ShutdownComplete
    | OutdateReplica
    | FenceAnswer
    | AdminAnswer
    | RunDrbdadm
    | Emit
    | SaveMaintenance
)
