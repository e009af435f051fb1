"""Notification hooks: every executable in ``[notify] hooks_dir`` runs for every event.

Modelled on Pacemaker's alert agents (``CRM_alert_*`` variables) and keepalived's notify
scripts. Events are queued and handled one at a time, in the order they happened; for each
event the hooks run one after the other in name order (as ``run-parts`` does: dot files,
backups ``*~`` and package leftovers ``*.dpkg-*`` are skipped). A hook gets ``hook_timeout``
seconds (then its process group is killed); a failed run is retried ``hook_retries`` times
with a growing pause, then logged and given up. None of this runs on the decision path: the
supervisor only puts the event in the queue.

The environment (no arguments; nothing else from the daemon's environment but PATH and LANG):

===============================  ===========================================================
``TWINBEAT_ALERT_KIND``          the event: failover, peer_dead, link_down, ... (see
                                 ``supervisor.core.notify.Kind``)
``TWINBEAT_ALERT_SEVERITY``      info | warning | critical
``TWINBEAT_ALERT_DESC``          the reason sentence
``TWINBEAT_ALERT_NODE``          the node the event is about (the peer for peer_dead)
``TWINBEAT_ALERT_RECORDED_BY``   the node that saw it and runs this hook
``TWINBEAT_ALERT_NODE_SEQUENCE`` a number that grows with every event of the recording node
                                 (Pacemaker's ``CRM_alert_node_sequence``)
``TWINBEAT_ALERT_TIMESTAMP``     when it happened, ISO 8601 UTC with milliseconds
``TWINBEAT_ALERT_TIMESTAMP_EPOCH`` / ``_USEC``  the same as UNIX seconds and microseconds
``TWINBEAT_ALERT_GROUP`` / ``_LINK`` / ``_RESOURCE``  what it is about (empty when nothing)
``TWINBEAT_ALERT_CLUSTER``       the cluster name
``TWINBEAT_ALERT_PEER``          the other node of the pair
``TWINBEAT_ALERT_ATTEMPT``       1 for the first run, 2.. for retries
``TWINBEAT_ALERT_VERSION``       the version of this interface (1)
===============================  ===========================================================
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from supervisor.core.notify import ClusterEvent
from supervisor.drivers.runner import RunResult
from supervisor.drivers.runner import run as run_command

log = logging.getLogger("twinbeat.notify")

HOOK_ENV_VERSION = "1"
QUEUE_LIMIT = 1000
RETRY_DELAY = 1.0

Runner = Callable[..., Awaitable[RunResult]]


def hook_environment(event: ClusterEvent, *, cluster: str, peer: str,
                     attempt: int = 1) -> dict[str, str]:
    stamp = datetime.fromtimestamp(event.wall, UTC)
    return {
        "TWINBEAT_ALERT_VERSION": HOOK_ENV_VERSION,
        "TWINBEAT_ALERT_KIND": event.kind.value,
        "TWINBEAT_ALERT_SEVERITY": event.severity.label,
        "TWINBEAT_ALERT_DESC": event.reason,
        "TWINBEAT_ALERT_NODE": event.subject or event.node,
        "TWINBEAT_ALERT_RECORDED_BY": event.node,
        "TWINBEAT_ALERT_NODE_SEQUENCE": str(event.seq),
        "TWINBEAT_ALERT_TIMESTAMP": stamp.strftime("%Y-%m-%dT%H:%M:%S.") +
        f"{stamp.microsecond // 1000:03d}Z",
        "TWINBEAT_ALERT_TIMESTAMP_EPOCH": str(int(event.wall)),
        "TWINBEAT_ALERT_TIMESTAMP_USEC": f"{stamp.microsecond:06d}",
        "TWINBEAT_ALERT_GROUP": event.group,
        "TWINBEAT_ALERT_LINK": event.link,
        "TWINBEAT_ALERT_RESOURCE": event.resource,
        "TWINBEAT_ALERT_CLUSTER": cluster,
        "TWINBEAT_ALERT_PEER": peer,
        "TWINBEAT_ALERT_ATTEMPT": str(attempt),
    }


def list_hooks(directory: Path) -> list[Path]:
    """The executables to run, in name order, as run-parts would pick them."""
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        log.warning("cannot read the hook directory %s: %s", directory, exc)
        return []
    hooks = []
    for p in entries:
        name = p.name
        if name.startswith(".") or name.endswith("~") or ".dpkg-" in name:
            continue
        if p.is_file() and os.access(p, os.X_OK):
            hooks.append(p)
    return hooks


class HookRunner:
    def __init__(
        self,
        directory: Path | None,
        *,
        cluster: str,
        peer: str,
        timeout: float = 30.0,
        retries: int = 2,
        retry_delay: float = RETRY_DELAY,
        runner: Runner = run_command,
    ) -> None:
        self.directory = directory
        self.cluster = cluster
        self.peer = peer
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.runner = runner
        self.queue: asyncio.Queue[ClusterEvent] = asyncio.Queue()
        self.dropped = 0
        self.runs = 0
        self.failures = 0
        self.last_error = ""

    def submit(self, event: ClusterEvent) -> None:
        """Queue the event (never blocks; the oldest waiting events are dropped beyond
        QUEUE_LIMIT, with a log line)."""
        if self.directory is None:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            lost = self.queue.get_nowait()
            self.dropped += 1
            log.error("hook queue full: dropped event %s#%d (%s)", lost.node, lost.seq,
                      lost.kind.value)
        self.queue.put_nowait(event)

    async def run_forever(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.handle(event)
            finally:
                self.queue.task_done()

    async def handle(self, event: ClusterEvent) -> None:
        if self.directory is None:
            return
        for hook in list_hooks(self.directory):
            await self._run_hook(hook, event)

    async def _run_hook(self, hook: Path, event: ClusterEvent) -> bool:
        for attempt in range(1, self.retries + 2):
            env = hook_environment(event, cluster=self.cluster, peer=self.peer,
                                   attempt=attempt)
            result = await self.runner([str(hook)], timeout=self.timeout, env=env,
                                       log_failure=False)
            self.runs += 1
            if result.ok:
                log.info("hook %s ran for event %s#%d (%s) in %.2f s", hook.name, event.node,
                         event.seq, event.kind.value, result.duration)
                return True
            self.failures += 1
            self.last_error = f"{hook.name}: {result.describe()}"
            more = attempt <= self.retries
            log.warning("hook %s failed for event %s#%d (%s), attempt %d of %d: %s%s",
                        hook.name, event.node, event.seq, event.kind.value, attempt,
                        self.retries + 1, result.describe(),
                        "; retrying" if more else "; giving up")
            if more:
                await asyncio.sleep(self.retry_delay * attempt)
        return False


def environment_doc() -> Sequence[str]:
    """The variable names a hook gets (for the README and tests)."""
    from supervisor.core.notify import Kind, Notice, stamp

    sample = stamp(Notice(Kind.NODE_STARTED, "x"), node="n", seq=1, mono=0.0, wall=0.0)
    return sorted(hook_environment(sample, cluster="c", peer="p"))
