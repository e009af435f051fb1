"""The drbddisk agent: ``drbddisk::RES`` promotes and demotes a DRBD resource.

Safety rule: never promote a replica whose local data is not ``UpToDate`` (Outdated,
Inconsistent, Diskless, ...) unless an administrator says so. The override is setting
``force_next`` before ``start()`` (``twinbeat takeover --force-data``: the core arms it and
the loop sets it for the next start), which runs ``drbdadm primary --force RES``; it is
never used by automatic decisions.

When to promote is not decided here: ``start()`` runs the pure state machine of
``supervisor.core.promotion`` and only carries out what it says (drop the connection to a
dead peer, promote, start a new pair's initial sync, listen again, wait, refuse). It feeds
the machine what DRBD shows (the events2 monitor's view through ``ctx.drbd_replica``, or
``drbdadm role/dstate/cstate`` when the monitor is not running) and what the heartbeat
core knows of the peer (``ctx.peer_liveness``), and it wakes up when either changes
(``ctx.drbd_changes``) or when a wait ends; without a change signal it looks again every
``ctx.drbd_poll`` seconds.

The resource itself is kept up (attached and connected, Secondary) on both nodes by every
operation, so that replication runs whoever owns the group: ``stop()`` (which the supervisor
also runs at start-up) brings it up with ``drbdadm up`` and, on a disk that has no DRBD
metadata yet, creates it first (``create-md``). A brand-new pair is bootstrapped once: the
node that acquires the group starts the initial full sync as its source with ``drbdadm
primary --force`` (DRBD 8.4 user's guide, "The initial device synchronization") and leaves
a note in ``run_dir`` so that the Filesystem agent may put a file system on the new device
(DRBD lets the source be used while the sync runs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from supervisor.core import promotion
from supervisor.core.promotion import (
    CommandDone,
    Connect,
    Disconnect,
    Limits,
    Observed,
    Promote,
    Promoted,
    Refuse,
    ReplicaSnapshot,
    Wait,
)
from supervisor.drivers import runner
from supervisor.drivers.agent_base import AgentContext, AgentError
from supervisor.resource_spec import DrbdSpec

log = logging.getLogger("twinbeat.drbd")


def fresh_marker(run_dir: Path, device: str) -> Path:
    """The note drbddisk leaves for the Filesystem agent: ``device`` is new and blank."""
    return run_dir / f"fresh-{Path(device).name}"


def peer_states(output: str) -> list[str]:
    """Peer parts of ``drbdadm role``/``dstate`` output (``UpToDate/Inconsistent`` ->
    Inconsistent); empty when the output has no peer part."""
    return [line.split("/", 1)[1].strip() for line in output.splitlines() if "/" in line]


def local_states(output: str) -> list[str]:
    """Local parts of ``drbdadm role``/``dstate`` output: ``Primary/Secondary`` -> Primary;
    one line per volume."""
    return [line.split("/")[0].strip() for line in output.splitlines() if line.strip()]


class DrbdAgent:
    def __init__(self, spec: DrbdSpec, ctx: AgentContext) -> None:
        self.spec = spec
        self.ctx = ctx
        #: set by the loop just before start() when the core forces this start (an
        #: administrator's ``twinbeat takeover --force-data``, armed for a limited time on the
        #: core's clock): that start() promotes even without UpToDate data, once.
        self.force_next = False

    def describe(self) -> str:
        return self.spec.describe()

    async def _drbdadm(self, *args: str, quiet: bool = False,
                       input: bytes | None = None) -> runner.RunResult:
        return await runner.run(
            [self.ctx.drbdadm, *args, self.spec.resource], timeout=self.ctx.command_timeout,
            log_failure=not quiet, input=input,
        )

    async def ensure_up(self) -> bool:
        """Attach and connect the resource if it is not configured in the kernel yet; True
        when it had to (the monitor's view may then lag behind)."""
        r = await self._drbdadm("role", quiet=True)
        if r.ok and local_states(r.stdout):
            return False
        # drbd-utils picks its 8.4 or 9 tools by the loaded module: load it first.
        await runner.run([self.ctx.modprobe, "drbd"], timeout=self.ctx.command_timeout)
        up = await self._drbdadm("up", quiet=True)
        if up.ok:
            log.info("DRBD resource %s is up", self.spec.resource)
            return True
        text = (up.stderr + up.stdout).lower()
        if "meta data" not in text and "metadata" not in text:
            raise AgentError(f"cannot bring DRBD resource {self.spec.resource} up: "
                             f"{up.describe()}")
        # A disk without DRBD metadata: a new replica. The wizard warned when the disk held a
        # file system or partition table before it was chosen.
        md = await self._drbdadm("create-md", "--force", input=b"yes\nyes\n")
        if not md.ok:
            raise AgentError(f"cannot create DRBD metadata for {self.spec.resource}: "
                             f"{md.describe()}")
        log.info("DRBD resource %s: metadata created on a new disk", self.spec.resource)
        up = await self._drbdadm("up")
        if not up.ok:
            raise AgentError(f"cannot bring DRBD resource {self.spec.resource} up: "
                             f"{up.describe()}")
        return True

    async def connection(self) -> str:
        r = await self._drbdadm("cstate", quiet=True)
        return r.stdout.strip().splitlines()[0] if r.ok and r.stdout.strip() else "Unknown"

    async def device(self) -> str:
        r = await self._drbdadm("sh-dev", quiet=True)
        return r.stdout.strip() or f"/dev/drbd-{self.spec.resource}"

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

    async def snapshot(self, *, prefer_monitor: bool = True) -> ReplicaSnapshot:
        """The resource now: the events2 monitor's view, or drbdadm's when it has none."""
        if prefer_monitor:
            view = self.ctx.drbd_replica(self.spec.resource)
            if view is not None:
                return view
        role = await self._drbdadm("role", quiet=True)
        dstate = await self._drbdadm("dstate", quiet=True)
        if not role.ok or not dstate.ok or not local_states(dstate.stdout):
            failed = role if not role.ok else dstate
            raise AgentError(f"cannot read the state of DRBD resource {self.spec.resource}: "
                             f"{failed.describe()}")
        return ReplicaSnapshot.from_drbdadm(
            role.stdout, dstate.stdout, await self.connection(),
            split_brain=self.ctx.drbd_split_brain(self.spec.resource))

    async def _wake(self, until: float) -> None:
        """Until ``until`` (monotonic), or earlier when DRBD or the peer changed."""
        left = until - time.monotonic()
        if left <= 0:
            return
        if self.ctx.drbd_changes is None:
            await asyncio.sleep(min(left, self.ctx.drbd_poll))
            return
        await self.ctx.drbd_changes.wait(min(left, self.ctx.drbd_poll_monitored))

    async def start(self, *, check_duplicates: bool = False) -> None:
        force, self.force_next = self.force_next, False
        res = self.spec.resource
        came_up = await self.ensure_up()
        limits = Limits(connect_wait=self.ctx.drbd_connect_wait,
                        sync_wait=self.ctx.drbd_sync_wait, peer_wait=self.ctx.drbd_peer_wait)
        replica = await self.snapshot(prefer_monitor=not came_up)
        m, action = promotion.begin(res, time.monotonic(), replica=replica,
                                    peer=self.ctx.peer_liveness(), limits=limits, force=force)
        told = ""
        while True:
            match action:
                case Promoted(reason=reason):
                    log.info("%s", reason)
                    return
                case Refuse(reason=reason):
                    raise AgentError(reason)
                case Wait(until=until, kind=kind, reason=reason):
                    if kind != told:
                        log.info("%s", reason)
                        told = kind
                    await self._wake(until)
                    replica = await self.snapshot()
                    # read together, right before the machine decides: a Disconnect it
                    # returns is carried out at once, with no await in between
                    m, action = promotion.feed(
                        m, Observed(replica, self.ctx.peer_liveness()), time.monotonic())
                case Disconnect(reason=reason):
                    log.warning("%s", reason)
                    r = await self._drbdadm("disconnect", "--force")
                    m, action = promotion.feed(
                        m, CommandDone("disconnect", r.ok, r.describe()), time.monotonic())
                case Promote(reason=reason, force=forced, bootstrap=bootstrap, risk=risk):
                    if risk:
                        log.warning("%s; %s", reason, risk)
                    else:
                        log.info("%s", reason)
                    r = await self._drbdadm(*(("primary", "--force") if forced
                                              else ("primary",)))
                    if r.ok and bootstrap:
                        await self._mark_fresh()
                    m, action = promotion.feed(
                        m, CommandDone("promote", r.ok, r.describe()), time.monotonic())
                case Connect(reason=reason):
                    log.info("%s", reason)
                    r = await self._drbdadm("connect")
                    m, action = promotion.feed(
                        m, CommandDone("connect", r.ok, r.describe()), time.monotonic())

    async def _mark_fresh(self) -> None:
        device = await self.device()
        marker = fresh_marker(self.ctx.run_dir, device)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{self.spec.resource}\n")
        log.warning("DRBD resource %s: this node is the source of the initial full sync and "
                    "%s may now be formatted", self.spec.resource, device)

    async def stop(self) -> None:
        await self.ensure_up()  # also how a node joins replication at start-up
        if await self.role() != "Primary":
            return
        r = await self._drbdadm("secondary")
        if not r.ok:
            raise AgentError(f"cannot demote DRBD resource {self.spec.resource}: "
                             f"{r.describe()}")


# --------------------------------------------------------------------------------------------
# Fencing: the peer lost its replication link and asks us to outdate our replica
# (supervisor.core.fencing). Kept apart from DrbdAgent: it is not a resource
# operation and runs whoever owns the group.

#: seconds between retries of an outdate that DRBD refused "while Connected"
#: disk states of a replica that holds no usable data (fence-peer exit code 3)
NO_DATA = frozenset({"Inconsistent", "Diskless", "Failed", "Negotiating", "Attaching"})


async def outdate_replica(resource: str, drbdadm: str, timeout: float) -> str:
    """Mark the local replica of ``resource`` Outdated (``drbdadm outdate RES``) so that it is
    not promoted with stale data; returns what became of it:

    ``"outdated"``      done, or it was Outdated already (fence-peer exit code 4)
    ``"inconsistent"``  the local disk is Inconsistent or Diskless: not usable anyway (3)
    ``"primary"``       refused: DRBD is Primary here (6)
    ``"failed"``        anything else; the detail is logged (5)

    drbd-utils' scripts/outdate-peer.sh reads the exit status of ``drbdadm outdate`` the same
    way (0 outdated, 5 inconsistent, 17 primary); the states are also checked with
    ``drbdadm role`` and ``drbdadm dstate``, which do not depend on those numbers. DRBD
    refuses to outdate a replica "while Connected": this side may notice the broken
    replication link up to DRBD's ping-int later than the peer did; since the peer says the
    link is broken, this side's end is then dropped (``disconnect``), the replica outdated,
    and the resource set listening again (``connect``).
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    async def outdated() -> bool:
        ds = await runner.run([drbdadm, "dstate", resource], timeout=left(), log_failure=False)
        states = local_states(ds.stdout) if ds.ok else []
        return bool(states) and all(s == "Outdated" for s in states)

    r = await runner.run([drbdadm, "outdate", resource], timeout=left(), log_failure=False)
    if r.ok and await outdated():
        log.warning("DRBD resource %s: the local replica is Outdated now (the peer lost its "
                    "replication link and asked for it)", resource)
        return "outdated"
    if r.ok or "while Connected" in r.stderr + r.stdout:
        # This side still believes the replication link is up: DRBD notices a dead link by
        # its own ping, up to ping-int (10 s) after the peer did, and meanwhile refuses to
        # outdate (8.4.11 in the QEMU pair even exits 0 and leaves the disk UpToDate). The
        # peer has declared the link broken: drop our end, outdate, and listen again.
        log.warning("DRBD resource %s: the peer lost the replication link but this side "
                    "still sees it; dropping it to outdate the local replica", resource)
        await runner.run([drbdadm, "disconnect", resource], timeout=left(), log_failure=False)
        r = await runner.run([drbdadm, "outdate", resource], timeout=left(),
                             log_failure=False)
        ok = r.ok and await outdated()
        c = await runner.run([drbdadm, "connect", resource], timeout=left(), log_failure=False)
        if not c.ok:
            log.error("DRBD resource %s: cannot listen for the peer again: %s", resource,
                      c.describe())
        if ok:
            log.warning("DRBD resource %s: the local replica is Outdated now (the peer lost "
                        "its replication link and asked for it)", resource)
            return "outdated"
    role = await runner.run([drbdadm, "role", resource], timeout=left(), log_failure=False)
    if r.returncode == 17 or (role.ok and "Primary" in local_states(role.stdout)):
        log.warning("DRBD resource %s: not outdating the local replica: it is Primary here",
                    resource)
        return "primary"
    ds = await runner.run([drbdadm, "dstate", resource], timeout=left(), log_failure=False)
    states = local_states(ds.stdout) if ds.ok else []
    if states and all(s == "Outdated" for s in states):
        return "outdated"
    if (states and all(s in NO_DATA or s == "Outdated" for s in states)) or (
        not states and r.returncode == 5
    ):
        log.info("DRBD resource %s: the local replica is %s already; nothing to outdate",
                 resource, "/".join(states) or "Inconsistent")
        return "inconsistent"
    log.error("DRBD resource %s: cannot outdate the local replica (disk %s): %s", resource,
              "/".join(states) or "unknown", r.describe())
    return "failed"
