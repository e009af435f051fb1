"""The drbddisk agent: ``drbddisk::RES`` promotes and demotes a DRBD resource.

Safety rule: never promote a replica whose local data is not ``UpToDate`` (Outdated,
Inconsistent, Diskless, ...) unless an administrator says so. ``start()`` checks
``drbdadm dstate RES`` first and refuses with a clear reason. The override is
``promote(force=True)`` (or setting ``force_next`` before ``start()``), which runs
``drbdadm primary --force RES``; it is meant for the CLI, never for automatic decisions.

The resource itself is kept up (attached and connected, Secondary) on both nodes by every
operation, so that replication runs whoever owns the group: ``stop()`` (which the supervisor
also runs at start-up) brings it up with ``drbdadm up`` and, on a disk that has no DRBD
metadata yet, creates it first (``create-md``). A brand-new pair is bootstrapped once: when
both replicas are new (Inconsistent on both sides of a connected resource), the node that
acquires the group (node1, the preferred node, on a new cluster) starts the initial full
sync as its source with ``drbdadm primary --force`` (DRBD 8.4 user's guide, "The initial
device synchronization"); the other node waits as the sync target. It happens once: after
it one replica is UpToDate, so the condition never holds again. The source leaves a note in
``run_dir`` so that the Filesystem agent may put a file system on the new device (DRBD lets
the source be used while the sync runs). A replica that is being resynchronised (or is reconnecting
to its peer) is given ``ctx.drbd_sync_wait`` seconds to become UpToDate before promotion is
refused: a node that comes back after a failover and gets its group back at once (auto
failback) waits for the changed blocks instead of failing the group. Any other Inconsistent
or Outdated state is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from supervisor.core.replica import promotion_verdict
from supervisor.drivers import runner
from supervisor.drivers.agent_base import AgentContext, AgentError
from supervisor.resource_spec import DrbdSpec

log = logging.getLogger("twinbeat.drbd")

#: Connection states in which a local disk that is not UpToDate yet may still become so:
#: a resync is running or about to, or the connection to the peer is being made.
CATCHING_UP = frozenset({
    "Connected", "StartingSyncT", "WFBitMapT", "WFSyncUUID", "SyncTarget", "PausedSyncT",
    "WFConnection", "WFReportParams",
})


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

    async def ensure_up(self) -> None:
        """Attach and connect the resource if it is not configured in the kernel yet."""
        r = await self._drbdadm("role", quiet=True)
        if r.ok and local_states(r.stdout):
            return
        # drbd-utils picks its 8.4 or 9 tools by the loaded module: load it first.
        await runner.run([self.ctx.modprobe, "drbd"], timeout=self.ctx.command_timeout)
        up = await self._drbdadm("up", quiet=True)
        if up.ok:
            log.info("DRBD resource %s is up", self.spec.resource)
            return
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

    async def connection(self) -> str:
        r = await self._drbdadm("cstate", quiet=True)
        return r.stdout.strip().splitlines()[0] if r.ok and r.stdout.strip() else "Unknown"

    async def device(self) -> str:
        r = await self._drbdadm("sh-dev", quiet=True)
        return r.stdout.strip() or f"/dev/drbd-{self.spec.resource}"

    async def _bootstrap_if_new(self) -> bool:
        """Start the initial full sync of a brand-new pair from here (see the docstring);
        True when it did (this node is then Primary)."""
        deadline = time.monotonic() + self.ctx.drbd_connect_wait
        while True:
            r = await self._drbdadm("dstate", quiet=True)
            local, peer = local_states(r.stdout), peer_states(r.stdout)
            if not local or any(s != "Inconsistent" for s in local):
                return False  # not a new pair: the normal UpToDate rule applies
            if any(s not in ("Inconsistent", "DUnknown") for s in peer):
                return False  # the peer has data (UpToDate: a resync to here is due)
            if peer and all(s == "Inconsistent" for s in peer) and (
                await self.connection() == "Connected"
            ):
                break
            if time.monotonic() > deadline:
                return False  # the peer is not here to confirm: refuse below, clearly
            await asyncio.sleep(0.5)
        r = await self._drbdadm("primary", "--force")
        if not r.ok:
            raise AgentError(f"cannot start the initial sync of the new DRBD pair "
                             f"{self.spec.resource}: {r.describe()}")
        device = await self.device()
        marker = fresh_marker(self.ctx.run_dir, device)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{self.spec.resource}\n")
        log.warning(
            "DRBD resource %s: both replicas were new; this node is the source of the initial "
            "full sync (the peer waits as its target) and %s may now be formatted",
            self.spec.resource, device,
        )
        return True

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
        force, self.force_next = self.force_next, False
        await self.ensure_up()
        await self._await_peer_not_primary()
        if not force:
            if await self._bootstrap_if_new():
                return
            await self._await_up_to_date()
        await self.promote(force=force)

    async def _await_peer_not_primary(self) -> None:
        """The supervisor starts a group only once the peer has released it or is dead; but
        after a peer's power loss DRBD still shows it Connected and Primary until its own
        ping notices (ping-int, 10 s by default), far later than the heartbeat deadtime.
        Give DRBD ``ctx.drbd_peer_wait`` seconds to see that; promote() refuses after that."""
        deadline = time.monotonic() + self.ctx.drbd_peer_wait
        told = False
        while True:
            r = await self._drbdadm("role", quiet=True)
            if "Primary" not in peer_states(r.stdout) or time.monotonic() > deadline:
                return
            if not told:
                log.info("DRBD resource %s: DRBD still sees the peer as Primary (it notices a "
                         "dead peer by its own ping); waiting up to %g s", self.spec.resource,
                         self.ctx.drbd_peer_wait)
                told = True
            await asyncio.sleep(0.5)

    async def _await_up_to_date(self) -> None:
        """Give a replica that is catching up ``ctx.drbd_sync_wait`` s to become UpToDate."""
        deadline = time.monotonic() + self.ctx.drbd_sync_wait
        told = False
        while True:
            states = await self.disk_states()
            if all(s == "UpToDate" for s in states):
                return
            cstate = await self.connection()
            if cstate not in CATCHING_UP or time.monotonic() > deadline:
                return  # promote() refuses, and says why
            if not told:
                log.info("DRBD resource %s: local disk %s (%s); waiting up to %g s for it to "
                         "become UpToDate before promoting", self.spec.resource,
                         "/".join(states), cstate, self.ctx.drbd_sync_wait)
                told = True
            await asyncio.sleep(0.5)

    async def promote(self, *, force: bool = False) -> None:
        """Promote by the rules of ``supervisor.core.replica.promotion_verdict``."""
        r = await self._drbdadm("role")
        roles = local_states(r.stdout)
        if not r.ok or not roles:
            raise AgentError(f"cannot read the role of DRBD resource {self.spec.resource}: "
                             f"{r.describe()}")
        peers = peer_states(r.stdout)
        role = "Primary" if all(x == "Primary" for x in roles) else roles[0]
        d = await self._drbdadm("dstate")
        disks, peer_disks = local_states(d.stdout), peer_states(d.stdout)
        if not d.ok or not disks:
            raise AgentError(f"cannot read the disk state of DRBD resource "
                             f"{self.spec.resource}: {d.describe()}")
        verdict = promotion_verdict(
            resource=self.spec.resource,
            role=role,
            # the worst volume decides
            disk=next((x for x in disks if x != "UpToDate"), "UpToDate"),
            peer_role="Primary" if "Primary" in peers else (peers[0] if peers else "Unknown"),
            peer_disk=peer_disks[0] if peer_disks else "DUnknown",
            connection=await self.connection(),
            split_brain=self.ctx.drbd_split_brain(self.spec.resource),
            force=force,
        )
        if not verdict.allowed:
            raise AgentError(verdict.reason)
        if verdict.risk:
            log.warning("%s; %s", verdict.reason, verdict.risk)
        if role == "Primary":
            return
        args = ("primary", "--force") if force else ("primary",)
        r = await self._drbdadm(*args)
        if not r.ok:
            raise AgentError(f"cannot promote DRBD resource {self.spec.resource}: "
                             f"{r.describe()}")

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
