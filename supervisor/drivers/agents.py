"""Resource agents: the entry point (``make_agent``) and the noop agent.

Every agent follows ``ResourceAgent``: ``start(check_duplicates=False)``, ``stop()``,
``status()``, all idempotent, raising ``AgentError`` with a sentence for the log and status.

================  =========================================  =================================
resource          agent                                      module
================  =========================================  =================================
IPaddr::...       address + alias label + GARP/NA            ``ipaddr``, ``arp``
NAME[::args]      resource.d script, systemd unit, init.d    ``services``
Filesystem::...   mount / kill holders + umount              ``filesystem``
drbddisk::RES     promote (UpToDate only) / demote           ``drbd``
noop::LABEL       in-memory state                            here
================  =========================================  =================================
"""

from __future__ import annotations

from supervisor.drivers.agent_base import AgentContext, AgentError, ResourceAgent
from supervisor.drivers.drbd import DrbdAgent
from supervisor.drivers.filesystem import FilesystemAgent
from supervisor.drivers.ipaddr import IPaddrAgent
from supervisor.drivers.services import ServiceAgent
from supervisor.resource_spec import (
    DrbdSpec,
    FilesystemSpec,
    IPaddrSpec,
    NoopSpec,
    ResourceSpec,
    ServiceSpec,
)

__all__ = [
    "AgentContext",
    "AgentError",
    "DrbdAgent",
    "FilesystemAgent",
    "IPaddrAgent",
    "NoopAgent",
    "ResourceAgent",
    "ServiceAgent",
    "make_agent",
]


class NoopAgent:
    """Does nothing but remember whether it was started (tests and demos)."""

    def __init__(self, spec: NoopSpec) -> None:
        self.spec = spec
        self.running = False

    def describe(self) -> str:
        return self.spec.describe()

    async def start(self, *, check_duplicates: bool = False) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    async def status(self) -> bool:
        return self.running


def make_agent(spec: ResourceSpec, ctx: AgentContext) -> ResourceAgent:
    if isinstance(spec, IPaddrSpec):
        return IPaddrAgent(spec, ctx)
    if isinstance(spec, FilesystemSpec):
        return FilesystemAgent(spec, ctx)
    if isinstance(spec, DrbdSpec):
        return DrbdAgent(spec, ctx)
    if isinstance(spec, NoopSpec):
        return NoopAgent(spec)
    if isinstance(spec, ServiceSpec):
        return ServiceAgent(spec, ctx)
    raise TypeError(f"no agent for {spec!r}")
