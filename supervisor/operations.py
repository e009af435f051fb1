"""Operations at the edge: events stamped, stored, sent to hooks and mail; metrics and the
status page served. The supervisor's loop calls ``emit`` with the notices the core (and the
loop itself) produce; everything slow happens in this module's tasks, never in a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor import statuspage
from supervisor.atomicfile import atomic_write
from supervisor.core.events import NodeStarted
from supervisor.core.notify import ClusterEvent, Kind, Notice, Severity
from supervisor.drivers.hooks import HookRunner
from supervisor.drivers.http import HttpServer
from supervisor.drivers.mailer import MailQueue
from supervisor.history import History
from supervisor.historysync import HistorySync

if TYPE_CHECKING:
    from supervisor.config import Config

log = logging.getLogger("twinbeat.events")

RUNNING_MARKER = "running"
HISTORY_WRITE_DELAY = 0.2
#: how often the history exchange ticks (historysync.HistorySync.tick: asks when it is time)
EXCHANGE_EVERY = 1.0
#: WDIOF_CARDRESET in /sys/class/watchdog/*/bootstatus: "the last reboot was the watchdog's"
WDIOF_CARDRESET = 0x20

StatusFn = Callable[[], dict[str, Any]]


def read_boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def watchdog_reset_seen(sys_root: str = "/sys") -> str:
    """The identity of a watchdog whose boot status says it reset this machine, or ""."""
    base = Path(sys_root) / "class" / "watchdog"
    try:
        devices = sorted(base.iterdir())
    except OSError:
        return ""
    for dev in devices:
        try:
            status = int((dev / "bootstatus").read_text().strip() or "0", 0)
        except (OSError, ValueError):
            continue
        if status & WDIOF_CARDRESET:
            try:
                identity = (dev / "identity").read_text().strip()
            except OSError:
                identity = dev.name
            return identity or dev.name
    return ""


def previous_run(state_dir: Path, *, boot_id: str, watchdog_reset: str) -> NodeStarted:
    """How the last run of the supervisor ended (the core turns it into an event).

    The marker file ``running`` holds the boot id while the supervisor runs and is removed
    at a clean stop. Found at start: the last run did not stop cleanly - on another boot,
    the machine was reset (by the watchdog, when its boot status says so; else power loss,
    a panic or a reset) - on this boot, the supervisor itself died."""
    marker = state_dir / RUNNING_MARKER
    try:
        old: str | None = marker.read_text().strip()
    except OSError:
        old = None
    atomic_write(marker, f"{boot_id}\n", mode=0o600)
    if old is None:
        return NodeStarted("clean")
    if old == boot_id:
        return NodeStarted("crashed")
    if watchdog_reset:
        return NodeStarted("watchdog", watchdog_reset)
    return NodeStarted("reset")


class Operations:
    def __init__(
        self,
        config: Config,
        me: str,
        state_dir: Path,
        *,
        status: StatusFn,
        drbd_ids: Callable[[], dict[str, dict[str, str]]] | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        hooks: HookRunner | None = None,
        mail: MailQueue | None = None,
        sample_every: float = statuspage.SAMPLE_EVERY,
        key: Callable[[], bytes] | None = None,
        send_frame: Callable[[bytes], None] | None = None,
        peer_alive: Callable[[], bool] | None = None,
        exchange_by_loop: bool = False,
        link_rows: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        notify = config.notify
        self.config = config
        self.me = me
        self.peer = config.peer_of(me).name
        self.state_dir = state_dir
        self.status = status
        #: the links' rows of the status (name, state, loss, rtt) for the samples of the
        #: status page: by default from the whole status
        self.link_rows = link_rows or (lambda: self.status()["links"])
        self.drbd_ids = drbd_ids or dict
        self.wall = wall
        self.mono = mono
        self.history = History(state_dir, me, keep=notify.history)
        self.hooks = hooks or HookRunner(
            Path(notify.hooks_dir) if notify.hooks_dir else None,
            cluster=config.cluster_name, peer=self.peer, timeout=notify.hook_timeout,
            retries=notify.hook_retries)
        self.mail = mail or MailQueue(notify, state_dir, node=me,
                                      cluster=config.cluster_name,
                                      status_lines=self._status_lines)
        self.samples = statuspage.LinkSamples()
        self.sample_every = sample_every
        self.counts: Counter[tuple[str, str]] = Counter()
        self.servers: list[HttpServer] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._mail_task: asyncio.Task[Any] | None = None
        self._history_dirty = asyncio.Event()
        #: the history exchange with the peer (when the loop gives a key and a way to send)
        self.sync: HistorySync | None = None
        self.peer_alive = peer_alive or (lambda: False)
        #: the loop calls exchange_tick on its own wake-ups (every EXCHANGE_EVERY): no task
        #: of ours wakes it up for the exchange
        self.exchange_by_loop = exchange_by_loop
        if key is not None and send_frame is not None:
            self.sync = HistorySync(self.history, cluster=config.cluster_name, me=me,
                                    peer=self.peer, key=key, send=send_frame,
                                    store=self.add_remote)

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.history.load()
        if self.history.problem:
            log.error("%s", self.history.problem)
        self.mail.load()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.hooks.run_forever()),
                       loop.create_task(self._write_history()),
                       loop.create_task(self._sample())]
        if self.mail.enabled:
            self._mail_task = loop.create_task(self.mail.run_forever())
        if self.sync is not None and not self.exchange_by_loop:
            self._tasks.append(loop.create_task(self._exchange()))
        await self._serve()

    async def _serve(self) -> None:
        """Listen where [metrics] and [status_page] say (nothing when they are off)."""
        if self.config.metrics.listen is not None:
            host, port = self.config.metrics.listen
            self.servers.append(HttpServer(host, port, {"/metrics": self.metrics_page},
                                           name="metrics"))
        if self.config.status_page.listen is not None:
            host, port = self.config.status_page.listen
            self.servers.append(HttpServer(host, port, {"/": self.status_page,
                                                        "/index.html": self.status_page},
                                           name="status page"))
        for server in self.servers:
            try:
                await server.start()
            except OSError as exc:
                log.error("%s cannot listen on %s:%d: %s", server.name, server.host,
                          server.port, exc)

    async def reconfigure(self, config: Config) -> None:
        """A reloaded configuration: hooks, mail, history size and the two listeners follow
        it (a listener that moved is closed and opened again)."""
        old, self.config = self.config, config
        notify = config.notify
        self.hooks.directory = Path(notify.hooks_dir) if notify.hooks_dir else None
        self.hooks.timeout, self.hooks.retries = notify.hook_timeout, notify.hook_retries
        self.history.keep = notify.history
        self.mail.reconfigure(notify)
        if self.mail.enabled and (self._mail_task is None or self._mail_task.done()):
            self._mail_task = asyncio.get_running_loop().create_task(self.mail.run_forever())
        if (old.metrics, old.status_page) != (config.metrics, config.status_page):
            for server in self.servers:
                await server.close()
            self.servers = []
            await self._serve()

    def boot(self, boot_id: str | None = None, sys_root: str = "/sys") -> NodeStarted:
        """How the last run ended (the loop posts it to the core)."""
        return previous_run(self.state_dir,
                            boot_id=read_boot_id() if boot_id is None else boot_id,
                            watchdog_reset=watchdog_reset_seen(sys_root))

    async def stop(self, *, clean: bool = True) -> None:
        for server in self.servers:
            await server.close()
        # give the hooks of the last events a moment, then stop
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.hooks.queue.join(), timeout=2.0)
        if self._mail_task is not None:
            self._tasks.append(self._mail_task)
            self._mail_task = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.history.dirty:
            await asyncio.to_thread(self.history.save, self.history.serialise())
        if clean:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.state_dir / RUNNING_MARKER)

    # -- events --------------------------------------------------------------------------------

    def emit(self, notice: Notice, mono: float | None = None) -> ClusterEvent:
        event = self.history.record(notice, mono=self.mono() if mono is None else mono,
                                    wall=self.wall())
        level = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING,
                 Severity.CRITICAL: logging.ERROR}[event.severity]
        log.log(level, "event %s#%d %s %s: %s", event.node, event.seq, event.severity.label,
                event.kind.value, event.reason)
        self.counts[(event.kind.value, event.severity.label)] += 1
        self._dispatch(event)
        self._history_dirty.set()
        return event

    def add_remote(self, events: list[ClusterEvent]) -> list[ClusterEvent]:
        """The peer's events, received over the links: stored (not hooked, not mailed:
        the peer does that for its own)."""
        new = self.history.add_remote(events)
        if new:
            self._history_dirty.set()
        return new

    def _dispatch(self, event: ClusterEvent) -> None:
        self.hooks.submit(event)
        if self.mail.enabled:
            task = asyncio.get_running_loop().create_task(self.mail.submit(event))
            self._tasks.append(task)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("mail queue: %r", task.exception())

    async def _write_history(self) -> None:
        while True:
            await self._history_dirty.wait()
            await asyncio.sleep(HISTORY_WRITE_DELAY)  # one write for a burst of events
            self._history_dirty.clear()
            self.history.dirty = False
            data = self.history.serialise()
            try:
                await asyncio.to_thread(self.history.save, data)
            except OSError as exc:
                log.error("cannot write %s: %s", self.history.path, exc)

    async def _exchange(self) -> None:
        while True:
            self.exchange_tick()
            await asyncio.sleep(EXCHANGE_EVERY)

    def exchange_tick(self) -> None:
        """The history exchange's tick, about every EXCHANGE_EVERY (its task's, or the
        loop's on a wake-up it has anyway: ``exchange_by_loop``)."""
        if self.sync is None:
            return
        try:
            self.sync.tick(self.peer_alive())
        except Exception:  # a bug here must not end the exchange
            log.exception("history exchange failed")

    def on_history_frame(self, line: bytes) -> None:
        """A history frame arrived on a heartbeat link."""
        if self.sync is not None:
            self.sync.on_frame(line)

    async def _sample(self) -> None:
        while True:
            try:
                self.samples.add(self.wall(), self.link_rows())
            except Exception:  # a status bug must not end the sampling
                log.exception("link sampling failed")
            await asyncio.sleep(self.sample_every)

    # -- pages ---------------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        return {
            "events": dict(self.counts),
            "failovers": sum(n for (k, _), n in self.counts.items() if k == Kind.FAILOVER),
            "takeovers": sum(n for (k, _), n in self.counts.items()
                             if k in (Kind.FAILOVER, Kind.TAKEOVER)),
            "hook_failures": self.hooks.failures,
            "mail_failures": self.mail.failures,
            "mail_queue": len(self.mail.pending),
        }

    def metrics_page(self) -> tuple[str, bytes]:
        from supervisor import metrics  # prometheus_client: only where metrics are served

        return metrics.CONTENT_TYPE, metrics.render(self.status(), self.counters(),
                                                    self.drbd_ids())

    def status_page(self) -> tuple[str, bytes]:
        page = statuspage.render(self.status(), events=self.history.events,
                                 samples=self.samples, now_wall=self.wall())
        return "text/html; charset=utf-8", page.encode()

    def _status_lines(self) -> list[str]:
        try:
            st = self.status()
        except Exception:
            return []
        lines = [f"peer {st['peer']['name']}: {st['peer']['state']}"]
        lines += [f"link {link['name']}: {link['state']}" for link in st["links"]]
        lines += [f"group {g['name']}: owner {g['owner'] or 'nobody'}" for g in st["groups"]]
        return lines
