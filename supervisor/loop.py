"""The supervisor's one asyncio loop: it only pumps.

On every wake-up it reads the clock once, feeds the event to the core
(``supervisor.core.step``), logs the step's reasons, carries out its actions through the
drivers, asks the core for its next deadline and feeds the watchdog. Everything that watches
the world is a source that posts events (``supervisor.sources``: carriers, ping nodes,
configuration reload, the control socket; the link transports in ``supervisor.drivers.links``,
opened by ``supervisor.linkset``). Resource operations (``supervisor.resources``) and DRBD
commands (``supervisor.replication``, also the drbddisk agents' view of DRBD and of the peer)
run as tasks with a timeout and come back as events, so heartbeats and watchdog feeding never
wait for them; ``supervisor.loopstatus`` keeps the loop's figures and assembles the status.
The watchdog is fed only from here, after a step completed: a loop that stalls stops feeding
it, and the node is reset. While the core says nothing is in flight (``supervisor.core.
quiet``) the links are paused and read at the loop's own wake-ups, before anything is stepped.

About 700 lines on purpose: the wake-up's own work stays in one class (the step, the actions,
the watchdog feed, the carrier readings that ride on the same wake-up, the quiet reading of
the links, the rescheduling and the configuration reload that swaps what they use), because
splitting it would put a second object between every event and the core on the idle path
that issue 12 measures.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.config import Config, load_authkeys, without_links_to
from supervisor.core import historywire
from supervisor.core.actions import (
    Action,
    AdminAnswer,
    CheckResource,
    Emit,
    FenceAnswer,
    Log,
    OutdateReplica,
    Reboot,
    RunDrbdadm,
    SaveMaintenance,
    SendFrame,
    ShutdownComplete,
    StartResource,
    StopResource,
)
from supervisor.core.events import (
    AdminCommand,
    ConfigChanged,
    ConfigRejected,
    Event,
    FrameReceived,
    FramesReceived,
    ShutdownRequested,
    Tick,
    WatchdogState,
    shared_arrivals,
)
from supervisor.core.promotion import PeerLiveness
from supervisor.core.quiet import busy
from supervisor.core.riding import rides
from supervisor.core.state import CoreState, initial_state
from supervisor.core.states import PeerStatus
from supervisor.core.step import Step, next_deadline, step
from supervisor.core.view import link_views
from supervisor.core.watchdog_window import startup_timeout
from supervisor.drivers.agents import AgentContext, ResourceAgent, make_agent
from supervisor.drivers.drbdmon import Events2Monitor, drbd_resources
from supervisor.drivers.links import Taken
from supervisor.drivers.reboot import Rebooter, SysrqRebooter
from supervisor.drivers.sdnotify import SystemdNotifier
from supervisor.drivers.watchdog import Watchdog, make_watchdog
from supervisor.linkset import LinkSet, local_addresses
from supervisor.loopstatus import LoopStats, assemble_status
from supervisor.operations import EXCHANGE_EVERY, Operations
from supervisor.replication import Outdater, Replication, default_outdater
from supervisor.resource_spec import ResourceSpec
from supervisor.resources import AgentFactory, ResourceRunner
from supervisor.sources.carrier import CARRIER_POLL, CarrierSource
from supervisor.sources.control import Answer, ControlSource
from supervisor.sources.ping import PingSource
from supervisor.sources.reload import ReloadSource
from supervisor.statefiles import (
    CONTROL_SOCKET,
    load_maintenance,
    next_generation,
    prepare_state_dir,
    read_release,
    save_maintenance,
)

log = logging.getLogger("twinbeat")

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
#: the frames one link may hold at a quiet wake-up (the peer's beat, a second one when the
#: two nodes' wake-ups cross, a history frame); more: the links are read at arrival again for
#: NOISY_HOLD seconds (a flood waits for no wake-up, nor fills a socket meanwhile)
NOISY_FRAMES = 3
NOISY_HOLD = 5.0



def log_step(result: Step) -> list[tuple[int, str]]:
    """Each sentence of a step once, at its level: a reason is info unless a Log action of
    the step says the same sentence at another level; a Log action that is not a reason
    (a stale result ignored) is logged at its own level. Returns (level, sentence) pairs."""
    if not result.reasons and Log not in map(type, result.actions):
        # most steps of an idle pair: nothing to say (a beat sent at most). (The types
        # compared in C: a generator expression here cost an idle keepalive about 10 us,
        # timed right after a 100 ms sleep; no action type derives from Log.)
        return []
    levels = {a.message: LEVELS.get(a.level, logging.WARNING)
              for a in result.actions if isinstance(a, Log)}
    said = [(levels.pop(r, logging.INFO), r) for r in result.reasons]
    said += [(level, message) for message, level in levels.items()]
    for level, sentence in said:
        log.log(level, "%s", sentence)
    return said


class Supervisor:
    def __init__(
        self,
        config: Config,
        me: str,
        state_dir: Path,
        *,
        agent_factory: AgentFactory | None = None,
        watchdog: Watchdog | None = None,
        rebooter: Rebooter | None = None,
        notifier: SystemdNotifier | None = None,
        sys_root: str = "/sys",
        drbd_monitor: Events2Monitor | None = None,
        outdater: Outdater = default_outdater,
        release: str | None = None,
    ) -> None:
        self.config = config
        #: this node's twinbeat release, said in every beat (the image's VERSION file)
        self.release = read_release() if release is None else release
        self.me = me
        self.state_dir = state_dir
        self.resources = ResourceRunner(agent_factory or self._default_agent, self.feed)
        self.watchdog = watchdog or make_watchdog(config.watchdog)
        self.rebooter = rebooter or SysrqRebooter()
        self.notifier = notifier or SystemdNotifier.from_environment()
        self.links = LinkSet(self._on_frame, self._take_frames)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.state: CoreState | None = None
        self.generation = 0
        self.started = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._feeding = False
        self._pending: list[Event] = []
        self._frames: list[FrameReceived] = []
        self._done: asyncio.Future[int] | None = None
        self._last_feed = 0.0
        #: the configured watchdog timeout, while the device is armed with the longer startup
        #: one (core.watchdog_window.startup_timeout); None once it is the configured one
        self._watchdog_target: float | None = None
        self._request_ids = itertools.count(1)
        #: requests waiting for the core's answer (AdminAnswer, FenceAnswer), by request id
        self._waiters: dict[int, asyncio.Future[Answer]] = {}
        self.carrier = CarrierSource(self.feed, sys_root)
        self.reloader = ReloadSource(lambda: self.config, me, self._apply_config,
                                     rejected=self._config_rejected)
        self.control = ControlSource(state_dir / CONTROL_SOCKET, self)
        self._expected_wake: float | None = None
        #: the core's own next deadline (the timer may be set earlier, for the watchdog's
        #: feed or the carrier's reading)
        self._core_deadline: float | None = None
        #: the links are paused and read at the loop's own wake-ups (supervisor.core.quiet)
        self._quiet = False
        #: ``busy(state)`` as last asked, and whether a step with news came since (ask again)
        self._busy: str | None = None
        self._busy_stale = True
        #: until when the links are read at arrival whatever the core says: a link held more
        #: than the peer's beats at a wake-up (a flood, hostile or not)
        self._noisy_until = -float("inf")
        #: when the carriers were last read (see _read_carriers); -inf: at the first step
        self._last_carrier = -float("inf")
        #: when the history exchange last ticked (see _exchange_due); -inf: at the first step
        self._last_exchange = -float("inf")
        #: the watchdog's feed interval and the (configuration, notifier) it was made of
        self._interval_of: tuple[Config, SystemdNotifier] | None = None
        self._interval = 0.5
        #: steps, lag, frames the core failed on, gaps per link, recent decisions
        self.stats = LoopStats()
        #: memory locking and scheduling, as `twinbeat run` set them up (for the status)
        self.realtime: dict[str, Any] = {}
        drbd_names = drbd_resources(config)
        #: the DRBD monitor (drbdsetup events2), when a group holds a drbddisk resource
        self.drbd_monitor = drbd_monitor or (Events2Monitor(drbd_names) if drbd_names else None)
        self.replication = Replication(self.drbd_monitor, state_dir, state=lambda: self.state,
                                       feed=self.feed, spawn=self._spawn, outdater=outdater)
        #: events, hooks, mail, metrics and the status page (started by run())
        self.ops: Operations | None = None
        self._now = 0.0  # the clock of the step being carried out
        self._tick_context = contextvars.copy_context()
        #: the running loop while run() runs (asked once: on Python 3.11 each
        #: asyncio.get_running_loop() is a getpid() system call; the wake-up asked it thrice)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop or asyncio.get_running_loop()

    # -- set-up ------------------------------------------------------------------------------

    def _default_agent(self, spec: ResourceSpec) -> ResourceAgent:
        return make_agent(
            spec,
            AgentContext(
                takeover=self.config.takeover,
                resource_dirs=tuple(Path(d) for d in self.config.resource_dirs),
                **self.drbd_hooks(),
            ),
        )

    # what tests read or set here (supervisor.replication has them)
    def drbd_hooks(self) -> dict[str, Any]:
        return self.replication.hooks()

    def peer_liveness(self) -> PeerLiveness:
        return self.replication.peer_liveness()

    @property
    def history(self) -> list[tuple[float, str]]:
        return self.stats.history

    @property
    def drbdadm(self) -> str:
        return self.replication.drbdadm

    @drbdadm.setter
    def drbdadm(self, path: str) -> None:
        self.replication.drbdadm = path

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        prepare_state_dir(self.state_dir)
        self.generation = next_generation(self.state_dir)
        self.replication.restore_split_brains()
        key = load_authkeys(self.config.authkeys_path).secret
        self.config, skipped = without_links_to(self.config,
                                                await local_addresses(self.config.links))
        for sentence in skipped:
            log.info("%s", sentence)
        now = loop.time()
        maintenance, problem = load_maintenance(self.state_dir)
        if problem:
            log.error("%s", problem)
        self.state = initial_state(self.config, self.me, key, self.generation, now,
                                   maintenance=maintenance, release=self.release)
        log.info(
            "twinbeat starting on %s (cluster %s, generation %d, peer %s)",
            self.me, self.config.cluster_name, self.generation, self.state.peer,
        )
        self.ops = Operations(
            self.config, self.me, self.state_dir, status=self.status,
            drbd_ids=lambda: dict(self.drbd_monitor.ids) if self.drbd_monitor else {},
            key=self._key, send_frame=self._send_aside, peer_alive=self._peer_alive,
            exchange_by_loop=True, link_rows=self._link_rows)
        await self.ops.start()
        started = self.ops.boot()
        self.feed(started)
        self.links.open(self.config.links)
        self._watch_carriers()
        await self.control.start()
        self.reloader.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self.feed(ShutdownRequested()))
        loop.add_signal_handler(signal.SIGHUP, self.reloader.schedule)
        configured = self.config.watchdog.timeout
        first, why = startup_timeout(configured, started.previous)
        self._arm_watchdog(first, why)
        if self.watchdog.armed and first > configured:
            self._watchdog_target = configured
        if self.drbd_monitor is not None:
            self.drbd_monitor.start()
        if self.config.ping_nodes:
            self._spawn(PingSource(lambda: self.config, self.feed).run())
        self.feed(Tick())
        self.replication.sync()  # a split brain restored from the state directory
        self.notifier.ready(f"{self.me}: running, generation {self.generation}")
        try:
            return await self._done
        finally:
            await self._teardown()
            self._loop = None

    def _watch_carriers(self) -> None:
        self.carrier.watch(self.links.interfaces(), self.config.public_interface)

    def _on_frame(self, link: str, data: bytes, arrived: float | None = None) -> None:
        """Frames are gathered, then stepped together: the copies of one beat that arrive on
        several links at once cost one decision, not one each. From the links, the frames
        of one read and what the other links hold at that moment, stepped in the same
        iteration of the loop (LinkSet's ``on_batch``); a frame handed here otherwise, once
        the callbacks of this iteration have run (``call_soon``). A history frame is not a
        beat: it goes to the operations side at once, never into the core. The gap since the
        link's previous beat frame is measured here, at arrival, not when the batch is
        stepped. (The frames a quiet wake-up collects go to ``_take_collected`` instead: a
        frame read at arrival has no ``arrived`` of its own; tests hand some.)"""
        if historywire.is_history(data):  # the history exchange's
            if self.ops is not None:
                self.ops.on_history_frame(data)
            return
        self.stats.frame(link, time.monotonic() if arrived is None else arrived)
        self._frames.append(FrameReceived(link, data, False, arrived))
        if len(self._frames) == 1 and not self.links.reading:
            self._running_loop().call_soon(self._take_frames)

    def _take_frames(self) -> None:
        frames, self._frames = self._frames, []
        if len(frames) > 1:
            self.feed(FramesReceived(tuple(frames)))
        elif frames:
            self.feed(frames[0])

    def _take_collected(self, taken: list[Taken]) -> None:
        """The frames a quiet wake-up read (LinkSet.collect), stepped together as
        ``_on_frame`` and ``_take_frames`` step the frames of a read: each waited in its link
        (FrameReceived.waited), stripped, and the copies of a beat share its arrival
        (``shared_arrivals``: the serial line's has none of its own). A history frame goes to
        the operations side (a failure there is logged; the beats are stepped all the
        same)."""
        links, lines, arrivals = [], [], []
        for link, data, arrived in taken:
            if historywire.is_history(data):
                self._history_frame(link, data)
                continue
            links.append(link)
            # stripped here, once (a datagram ends with the serial line's newline): the
            # core strips each frame where it reads one, about seven times a keepalive,
            # and bytes.strip() of a stripped line is that line, not a copy
            lines.append(data.strip())
            arrivals.append(arrived)
        if not links:
            return
        self.stats.frames(links, arrivals, time.monotonic())
        if len(links) == 1:
            self.feed(FrameReceived(links[0], lines[0], True, arrivals[0]))
            return
        frames = []
        for link, line, arrived in zip(links, lines, shared_arrivals(lines, arrivals),
                                       strict=True):
            frames.append(FrameReceived(link, line, True, arrived))
        self.feed(FramesReceived(tuple(frames)))

    def _history_frame(self, link: str, data: bytes) -> None:
        """A history frame a quiet wake-up read: to the operations side; a failure there is
        logged and counted with the link's receive errors, as links.deliver does."""
        if self.ops is None:
            return
        try:
            self.ops.on_history_frame(data)
        except Exception:  # as links.deliver: one bad frame must not cost the wake-up
            log.exception("link %s: handling a history frame failed; dropped (%d bytes: %s)",
                          link, len(data), data[:512].hex())
            transport = self.links.transports.get(link)
            if transport is not None:
                transport.rx_errors += 1

    def _key(self) -> bytes:
        assert self.state is not None
        return self.state.settings.key

    def _peer_alive(self) -> bool:
        return self.state is not None and self.state.peer_status is PeerStatus.ALIVE

    def _send_aside(self, data: bytes) -> None:
        """A frame that is not a beat (history), see LinkSet.send_aside."""
        assert self.state is not None
        links = self.state.links
        self.links.send_aside(data, lambda name: name in links and links[name].status.delivers)

    def _apply_config(self, new: Config, key: bytes) -> None:
        """A reloaded, validated configuration (from the reload source)."""
        if new.replicated != self.config.replicated:
            from supervisor.drbdconf import regenerate_command

            log.warning("[[replicated]] changed: rewrite the DRBD resource files with `%s` "
                        "(twinbeat checks them at its next start)",
                        regenerate_command(new.path))
        old_links = self.config.links
        self.config = new
        if new.links != old_links:
            self.links.reopen(new.links)
        self._watch_carriers()
        log.info("configuration %s reloaded", new.path)
        if self.ops is not None:
            self._spawn(self.ops.reconfigure(new))
        self.feed(ConfigChanged(new, key))

    def _config_rejected(self, path: str, problems: list[str]) -> None:
        self.feed(ConfigRejected(path, tuple(problems)))

    async def _save_maintenance(self, flags: tuple[tuple[str, bool, int], ...]) -> None:
        """Persist the maintenance flags (off the loop: the write fsyncs)."""
        try:
            await asyncio.to_thread(save_maintenance, self.state_dir, flags)
        except OSError as exc:
            log.error("cannot save the maintenance flags in %s: %s (they hold until the "
                      "supervisor stops)", self.state_dir, exc)

    def reload(self) -> None:
        self.reloader.reload()

    async def _teardown(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self.tasks):
            task.cancel()
        self.links.close()
        self.reloader.close()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(FenceAnswer(0, 5, "twinbeat is stopping; the peer was not "
                                                    "asked"))
        self._waiters.clear()
        await self.control.close()
        if self.drbd_monitor is not None:
            await self.drbd_monitor.stop()
        if self.ops is not None:
            await self.ops.stop()
        self.watchdog.disable()
        self.notifier.stopping()
        log.info("twinbeat stopped")

    def _spawn(self, coro: Any) -> None:
        task = self._running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the pump: one event at a time ---------------------------------------------------------

    def feed(self, event: Event) -> list[str]:
        """Step the core with one event and carry out its actions; returns the reasons.
        An event posted while a step's actions run is queued and stepped right after."""
        if self._feeding:
            self._pending.append(event)
            return []
        assert self.state is not None
        self._feeding = True
        try:
            loop = self._running_loop()
            now = loop.time()  # read once per wake-up
            if self._expected_wake is not None and isinstance(event, Tick):
                self.stats.lag_max = max(self.stats.lag_max, now - self._expected_wake)
            reasons = self._step(event, now)
            while self._pending:
                self._step(self._pending.pop(0), loop.time())
            deadline = next_deadline(self.state, now)
            if self._carrier_due(now, deadline):
                self._read_carriers(now)
                if self._pending:
                    while self._pending:
                        self._step(self._pending.pop(0), loop.time())
                    deadline = next_deadline(self.state, now)
            if self._exchange_due(now, deadline):
                self._tick_exchange(now)
            self._core_deadline = deadline
            self._set_quiet()
            self._feed_watchdog(now, deadline)
            self._reschedule(loop, deadline)
            self.replication.stepped()
        finally:
            self._feeding = False
        return reasons

    def _set_quiet(self) -> None:
        """Pause the links while the core says nothing is in flight (they are then read at
        the loop's own wake-ups, see _tick), watch them again when it is."""
        assert self.state is not None
        if self._busy_stale:  # a step with news since it was asked
            self._busy, self._busy_stale = busy(self.state), False
        why = self._busy
        if why is None and self._now < self._noisy_until:
            why = f"a link held more than {NOISY_FRAMES} frames at a wake-up"
        if (why is None) != self._quiet:
            self._quiet = why is None
            self.links.set_paused(self._quiet)
            log.debug("links read %s (%s)", "at this node's own wake-ups" if self._quiet
                      else "at arrival", why or "nothing in flight")

    def _step(self, event: Event, now: float) -> list[str]:
        assert self.state is not None
        self._now = now
        t0 = time.perf_counter()
        try:
            result = step(self.state, event, now)
        except Exception:
            if isinstance(event, FramesReceived):
                # one of them trips the core: step them one by one, only that one is dropped
                return [r for frame in event.frames for r in self._step(frame, now)]
            if not isinstance(event, FrameReceived):
                raise
            # a core bug on one frame: drop that frame (the state is unchanged), keep going
            self.stats.frame_errors += 1
            log.exception("link %s: the core failed on a frame; dropped (%d bytes: %s)",
                          event.link, len(event.data), event.data[:512].hex())
            return []
        self.stats.stepped(now, time.perf_counter() - t0, result.reasons)
        self.state = result.state
        if result.news:
            self._busy_stale = True
        log_step(result)
        for action in result.actions:
            self._execute(action)
        return result.reasons

    def ask(self, make: Callable[[int], Event]) -> asyncio.Future[Answer]:
        """Post the event ``make(request_id)``; the future resolves with the core's answer
        (an AdminAnswer or FenceAnswer with that id), at once or steps later."""
        request_id = next(self._request_ids)
        waiter: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        event = make(request_id)
        if isinstance(event, AdminCommand):
            self.replication.sync()
        self.feed(event)
        return waiter

    def _arm_watchdog(self, timeout: float, why: str) -> None:
        """Arm (or re-arm) the device and tell the core what it got."""
        armed, reason = self.watchdog.activate(timeout, why)
        ok = armed or self.config.watchdog.mode != "required"
        # the timeout the device is really armed with: the peer waits for it (the wt field)
        actual = self.watchdog.timeout if armed and self.watchdog.timeout else None
        self.feed(WatchdogState(ok, reason, armed or self.config.watchdog.mode == "off",
                                None if actual is None else float(actual)))

    def _leave_startup_timeout(self) -> None:
        """Before this node starts its first resource: the configured watchdog timeout."""
        target, self._watchdog_target = self._watchdog_target, None
        if target is not None:
            self._arm_watchdog(target, f"shortened to the configured {target:g} s before "
                                       "this node starts its first resource")

    def _feed_interval(self) -> float:
        """From the configuration's watchdog timeout and systemd's WatchdogSec (worked out
        again only when one of them is another object: asked twice on every wake-up)."""
        of = self._interval_of
        if of is None or of[0] is not self.config or of[1] is not self.notifier:
            interval = self.config.watchdog.timeout / 3
            systemd = self.notifier.watchdog_interval()
            if systemd:
                interval = min(interval, systemd)
            self._interval_of = (self.config, self.notifier)
            self._interval = max(0.05, min(interval, 0.5))
        return self._interval

    def _feed_watchdog(self, now: float, deadline: float) -> None:
        """Feed when a feed is due, or when the core's next wake-up (``deadline``) would
        come after it is due and half the interval has passed: fed a little early on this
        wake-up rather than woken up for it alone (at a keepalive below the feed interval,
        the beats' wake-ups feed it)."""
        if rides(self._last_feed, self._feed_interval(), now, deadline)[0]:
            self._last_feed = now
            self.watchdog.feed(now)
            self.notifier.watchdog()

    def _carrier_due(self, now: float, deadline: float) -> bool:
        """Whether the carriers are read on this wake-up: their reading is due (every
        CARRIER_POLL), or the next wake-up (``deadline``) would come after it is due and half
        the interval has passed: read a little early on a wake-up the loop has anyway (a
        beat, a frame) rather than on one of its own, as the watchdog is fed."""
        return rides(self._last_carrier, CARRIER_POLL, now, deadline)[0]

    def _exchanging(self) -> bool:
        return self.ops is not None and self.ops.sync is not None

    def _exchange_due(self, now: float, deadline: float) -> bool:
        """Whether the history exchange ticks on this wake-up (every EXCHANGE_EVERY, riding
        on the loop's wake-ups as the carriers' reading does)."""
        return self._exchanging() and rides(self._last_exchange, EXCHANGE_EVERY, now,
                                            deadline)[0]

    def _tick_exchange(self, now: float) -> None:
        """The history exchange's tick (it may send a history frame; it posts no event)."""
        assert self.ops is not None
        self._last_exchange = now
        self.ops.exchange_tick()

    def _read_carriers(self, now: float) -> None:
        """Read the carriers (the source posts what changed: stepped as any event)."""
        self._last_carrier = now
        self.carrier.poll()

    def _reschedule(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Wake up at the core's next deadline, or when the watchdog must be fed or the
        carriers read first."""
        deadline = min(deadline, self._last_feed + self._feed_interval(),
                       self._last_carrier + CARRIER_POLL)
        if self._exchanging():
            deadline = min(deadline, self._last_exchange + EXCHANGE_EVERY)
        if self._timer is not None:
            if deadline == self._expected_wake:
                return  # the timer is set for it already (most frames move no deadline)
            self._timer.cancel()
        self._expected_wake = deadline
        # (one context for every wake-up: the tick reads no context variable, and asyncio
        # would copy the current context for each timer otherwise)
        self._timer = loop.call_at(deadline, self._tick, context=self._tick_context)

    def _armed(self) -> asyncio.TimerHandle | None:
        return self._timer

    def _tick(self) -> None:
        self._timer = None
        loop = self._running_loop()
        now = loop.time()
        if self._quiet:
            # the links are paused: what they hold is read (and stepped) first, so that no
            # deadline is taken on frames that wait in a socket; a beat due now goes out
            # with them (state.EARLY)
            if self._frames:  # handed to _on_frame and not stepped yet: first, as before
                self._take_frames()
            taken, most = self.links.collect()
            if taken:
                self._take_collected(taken)
            if most > NOISY_FRAMES:
                self._noisy_until = now + NOISY_HOLD
                self._set_quiet()
            timer = self._armed()
            if timer is not None:  # frames were stepped: the loop's next wake-up is set
                core = self._core_deadline
                if core is not None and now < core:
                    return
                timer.cancel()
                self._timer = None
        core, feed_due = self._core_deadline, self._last_feed + self._feed_interval()
        carriers = now >= self._last_carrier + CARRIER_POLL
        exchange = self._exchanging() and now >= self._last_exchange + EXCHANGE_EVERY
        if (core is not None and now < core and now < feed_due and not self._feeding
                and (carriers or exchange)):
            # a wake-up for the carriers or the history exchange alone (a keepalive longer
            # than CARRIER_POLL): read them, tick it; a carrier's change is posted and
            # stepped as any event, nothing else is due
            if exchange:
                self._tick_exchange(now)
            if carriers:
                self._read_carriers(now)
            if self._timer is None:
                self._reschedule(loop, core)
            return
        self.feed(Tick())

    def _execute(self, action: Action) -> None:
        match action:
            case SendFrame(data=data):
                self.links.send(data)
            case StartResource():
                self._leave_startup_timeout()
                self._spawn(self.resources.run(action))
            case CheckResource():
                known = self.resources.known(action)
                if known is None:
                    self._spawn(self.resources.run(action))
                else:  # (stepped right after this step, see feed)
                    self.feed(known)
            case StopResource():
                self._spawn(self.resources.run(action))
            case Reboot(reason=reason):
                log.critical("rebooting: %s", reason)
                self.rebooter.reboot(reason)
            case Log():
                pass  # logged with the step's reasons (log_step), once, at its level
            case ShutdownComplete():
                if self._done is not None and not self._done.done():
                    self._done.set_result(0)
            case OutdateReplica():
                self._spawn(self.replication.outdate(action))
            case RunDrbdadm():
                self._spawn(self.replication.run_drbdadm(action))
            case Emit(notice=notice):
                if self.ops is not None:
                    self.ops.emit(notice, self._now)
            case SaveMaintenance(flags=flags):
                self._spawn(self._save_maintenance(flags))
            case FenceAnswer(request_id=request_id) | AdminAnswer(request_id=request_id):
                waiter = self._waiters.pop(request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(action)

    # -- status ------------------------------------------------------------------------------

    def _link_rows(self) -> list[dict[str, Any]]:
        """The links' rows of the status for the status page's samples (the core's view of
        the links alone: the whole status is not assembled every statuspage.SAMPLE_EVERY)."""
        assert self.state is not None
        return [vars(v) for v in link_views(self.state, time.monotonic())]

    def status(self) -> dict[str, Any]:
        assert self.state is not None
        mon = self.drbd_monitor
        return assemble_status(
            self.state, time.monotonic(), self.stats, transports=self.links.transports,
            watchdog=self.watchdog, realtime=self.realtime,
            replication=None if mon is None else mon.status(), config_path=self.config.path)
