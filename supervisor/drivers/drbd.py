"""The drbddisk agent: ``drbddisk::RES`` promotes and demotes a DRBD resource.

Safety rule: never promote a replica whose local data is not ``UpToDate`` (Outdated,
Inconsistent, Diskless, ...) unless an administrator says so. ``start()`` checks
``drbdadm dstate RES`` first and refuses with a clear reason. The override is
``promote(force=True)`` (or setting ``force_next_start`` before ``start()``), which runs
``drbdadm primary --force RES``; it is meant for the CLI, never for automatic decisions.
"""

from __future__ import annotations

import logging

from supervisor.drivers import runner
from supervisor.drivers.agent_base import AgentContext, AgentError
from supervisor.resource_spec import DrbdSpec

log = logging.getLogger("twinbeat.drbd")


def local_states(output: str) -> list[str]:
    """Local parts of ``drbdadm role``/``dstate`` output: ``Primary/Secondary`` -> Primary;
    one line per volume."""
    return [line.split("/")[0].strip() for line in output.splitlines() if line.strip()]


class DrbdAgent:
    def __init__(self, spec: DrbdSpec, ctx: AgentContext) -> None:
        self.spec = spec
        self.ctx = ctx
        #: set by an administrator's command: the next start() promotes even without UpToDate
        self.force_next_start = False

    def describe(self) -> str:
        return self.spec.describe()

    async def _drbdadm(self, *args: str) -> runner.RunResult:
        return await runner.run(
            [self.ctx.drbdadm, *args, self.spec.resource], timeout=self.ctx.command_timeout
        )

    async def role(self) -> str:
        r = await self._drbdadm("role")
        states = local_states(r.stdout)
        if not r.ok or not states:
            raise AgentError(f"cannot read the role of DRBD resource {self.spec.resource}: "
                             f"{r.describe()}")
        return "Primary" if all(s == "Primary" for s in states) else states[0]

    async def disk_states(self) -> list[str]:
        r = await self._drbdadm("dstate")
        states = local_states(r.stdout)
        if not r.ok or not states:
            raise AgentError(f"cannot read the disk state of DRBD resource "
                             f"{self.spec.resource}: {r.describe()}")
        return states

    async def status(self) -> bool:
        return await self.role() == "Primary"

    async def start(self, *, check_duplicates: bool = False) -> None:
        force, self.force_next_start = self.force_next_start, False
        await self.promote(force=force)

    async def promote(self, *, force: bool = False) -> None:
        if await self.role() == "Primary":
            return
        states = await self.disk_states()
        if any(s != "UpToDate" for s in states):
            if not force:
                raise AgentError(
                    f"refusing to promote DRBD resource {self.spec.resource}: the local disk is "
                    f"{'/'.join(states)}, not UpToDate; promoting it could serve stale data "
                    "(an administrator can force it)"
                )
            log.warning(
                "forcing promotion of DRBD resource %s with local disk %s (administrator)",
                self.spec.resource,
                "/".join(states),
            )
        args = ("primary", "--force") if force else ("primary",)
        r = await self._drbdadm(*args)
        if not r.ok:
            raise AgentError(f"cannot promote DRBD resource {self.spec.resource}: "
                             f"{r.describe()}")

    async def stop(self) -> None:
        if await self.role() != "Primary":
            return
        r = await self._drbdadm("secondary")
        if not r.ok:
            raise AgentError(f"cannot demote DRBD resource {self.spec.resource}: "
                             f"{r.describe()}")
