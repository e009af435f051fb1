"""What every resource agent shares: the error type, the protocol and the context.

Kept apart from ``agents.py`` (the entry point, which imports every agent) so that the agent
modules can import it without a cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from supervisor.config import TakeoverConfig
from supervisor.core.promotion import UNKNOWN_PEER, PeerLiveness, ReplicaSnapshot
from supervisor.drivers.probes import Probe, probe_for
from supervisor.resource_spec import ResourceSpec


class AgentError(Exception):
    """A resource operation failed; the message is meant for the log and the status."""


class ResourceAgent(Protocol):
    """start/stop/status of one resource.

    All three are idempotent (start when running is a success, stop when stopped too), raise
    ``AgentError`` on failure, and never block the event loop; the caller wraps each call in its
    own ``asyncio`` timeout (cancellation is safe: subprocesses are killed).
    """

    @property
    def spec(self) -> ResourceSpec: ...

    def describe(self) -> str: ...

    async def start(self, *, check_duplicates: bool = False) -> None: ...

    async def stop(self) -> None: ...

    async def status(self) -> bool:
        """True = running; raise AgentError when it cannot tell."""
        ...


@runtime_checkable
class KnowsStatus(Protocol):
    """An agent that can sometimes answer ``status()`` at once, without asking (IPaddr's
    monitor while no address changed): ``known_status()`` is that answer, or None (ask)."""

    def known_status(self) -> bool | None: ...


class ChangeSignal:
    """Wakes every waiter when something changed (the DRBD monitor saw a change, the core's
    view of the peer changed). Waiters look at the state themselves: no payload, no queue."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, timeout: float) -> None:
        """Until the next notify() or ``timeout`` seconds, whichever comes first."""
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def _default_resource_dirs() -> tuple[Path, ...]:
    return (Path("/etc/twinbeat/resource.d"), Path("/etc/init.d"))


@dataclass
class AgentContext:
    """Settings and tool names the agents use; tests override paths and programs."""

    takeover: TakeoverConfig
    #: script directories; the first ``units_after`` are searched before systemd units, the
    #: rest after them (heartbeat order adapted to systemd: resource.d, unit, init.d)
    resource_dirs: tuple[Path, ...] = field(default_factory=_default_resource_dirs)
    systemctl: str = "systemctl"
    units_after: int = 1
    drbdadm: str = "drbdadm"
    mount: str = "mount"
    umount: str = "umount"
    blkid: str = "blkid"
    modprobe: str = "modprobe"
    mkfs: str = "mkfs"
    #: where agents leave notes for each other that must not survive a reboot (a DRBD
    #: device that twinbeat has just initialised and that may therefore be formatted)
    run_dir: Path = Path("/run/twinbeat")
    #: DRBD: how long start() waits for the peer to connect before judging the data
    drbd_connect_wait: float = 15.0
    #: DRBD: how long start() waits for a resync (or a reconnection) to make the local disk
    #: UpToDate before refusing to promote (well within the default start_timeout, 60 s)
    drbd_sync_wait: float = 40.0
    #: DRBD: how long start() waits for DRBD to notice that a peer it still shows as Primary
    #: is gone (DRBD's own ping: ping-int 10 s + ping-timeout by default)
    drbd_peer_wait: float = 20.0
    #: DRBD: whether the monitor (drbdsetup events2) saw an unresolved split brain of a
    #: resource; drbddisk refuses to promote such a replica unless forced
    drbd_split_brain: Callable[[str], bool] = lambda _resource: False
    #: DRBD: the events2 monitor's view of a resource (None: no monitor, or not running)
    drbd_replica: Callable[[str], ReplicaSnapshot | None] = lambda _resource: None
    #: DRBD: what the heartbeat core knows of the peer (dead on every link, or heard)
    peer_liveness: Callable[[], PeerLiveness] = lambda: UNKNOWN_PEER
    #: DRBD: notified when the monitor's view or the peer's liveness changed
    drbd_changes: ChangeSignal | None = None
    #: DRBD: how often a waiting promotion looks again without a change signal, and with
    #: one (a safety net: the signal is what normally wakes it)
    drbd_poll: float = 0.5
    drbd_poll_monitored: float = 2.0
    #: a safety limit on every command an agent runs (the caller's own timeout is shorter)
    command_timeout: float = 300.0
    #: Filesystem stop: seconds between SIGTERM and SIGKILL to processes holding the mount
    kill_grace: float = 5.0
    proc_root: Path = Path("/proc")
    #: IPv4 duplicate address detection: probes, the interval between them, the wait after
    dad_probes: int = 3
    dad_interval: float = 0.2
    dad_wait: float = 0.6
    #: IPv6 duplicate address detection is the kernel's; how long to wait for it
    dad6_timeout: float = 5.0
    #: services: the health probe of a resource name (None: the unit's state only)
    probes: Callable[[str], Probe | None] = probe_for
    #: services: the time limit of one probe command
    probe_timeout: float = 20.0
    #: services: how long start() waits for a started service's first probe answer, and
    #: how often it asks meanwhile
    probe_ready_wait: float = 60.0
    probe_interval: float = 0.5
