"""The supervisor's one asyncio loop: it only pumps.

On every wake-up it reads the clock once, feeds the event to the core
(``supervisor.core.step``), logs the step's reasons, carries out its actions through the
drivers, asks the core for its next deadline and feeds the watchdog. Everything that watches
the world is a source that posts events (``supervisor.sources``: carriers, ping nodes,
configuration reload, the control socket; the link transports in ``supervisor.drivers.links``).
Resource operations run as tasks with a timeout and come back as events, so heartbeats and
watchdog feeding never wait for them. The watchdog is fed only from here, after a step
completed: a loop that stalls stops feeding it, and the node is reset.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from supervisor.config import Config, UdpLink, load_authkeys, without_links_to
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
    ResourceAction,
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
    DrbdadmDone,
    Event,
    FrameReceived,
    FramesReceived,
    OutdateResult,
    ReplicaChanged,
    ResourceResult,
    ShutdownRequested,
    Tick,
    WatchdogState,
)
from supervisor.core.promotion import PeerLiveness, ReplicaSnapshot, peer_liveness
from supervisor.core.state import CoreState, initial_state
from supervisor.core.states import NodeStatus, PeerStatus
from supervisor.core.step import Step, next_deadline, step
from supervisor.core.view import status as core_status
from supervisor.drivers import links as linkdrv
from supervisor.drivers.agent_base import ChangeSignal
from supervisor.drivers.agents import AgentContext, AgentError, ResourceAgent, make_agent
from supervisor.drivers.drbd import DrbdAgent, outdate_replica
from supervisor.drivers.drbdmon import Events2Monitor, drbd_resources
from supervisor.drivers.reboot import Rebooter, SysrqRebooter
from supervisor.drivers.runner import run as run_command
from supervisor.drivers.sdnotify import SystemdNotifier
from supervisor.drivers.watchdog import Watchdog, make_watchdog
from supervisor.operations import Operations
from supervisor.resource_spec import ResourceSpec
from supervisor.sources.carrier import CarrierSource
from supervisor.sources.control import Answer, ControlSource
from supervisor.sources.ping import PingSource
from supervisor.sources.reload import ReloadSource
from supervisor.statefiles import (
    CONTROL_SOCKET,
    load_maintenance,
    load_split_brains,
    next_generation,
    prepare_state_dir,
    read_release,
    save_maintenance,
    save_split_brains,
)

log = logging.getLogger("twinbeat")

HISTORY = 100  # recent decisions kept for `twinbeat status` (monotonic time, reason)
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

AgentFactory = Callable[[ResourceSpec], ResourceAgent]
#: outdates the local replica of a DRBD resource: (resource, timeout) -> result
Outdater = Callable[[str, float], Awaitable[str]]


async def default_outdater(resource: str, timeout: float) -> str:
    return await outdate_replica(resource, "drbdadm", timeout)


def log_step(result: Step) -> list[tuple[int, str]]:
    """Each sentence of a step once, at its level: a reason is info unless a Log action of
    the step says the same sentence at another level; a Log action that is not a reason
    (a stale result ignored) is logged at its own level. Returns (level, sentence) pairs."""
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
        self.outdater = outdater
        self.agent_factory = agent_factory or self._default_agent
        self.watchdog = watchdog or make_watchdog(config.watchdog)
        self.rebooter = rebooter or SysrqRebooter()
        self.notifier = notifier or SystemdNotifier.from_environment()
        self.transports: dict[str, linkdrv.Transport] = {}
        self.agents: dict[tuple[str, ResourceSpec], ResourceAgent] = {}
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
        self._request_ids = itertools.count(1)
        #: requests waiting for the core's answer (AdminAnswer, FenceAnswer), by request id
        self._waiters: dict[int, asyncio.Future[Answer]] = {}
        self.carrier = CarrierSource(self.feed, sys_root)
        self.reloader = ReloadSource(lambda: self.config, me, self._apply_config,
                                     rejected=self._config_rejected)
        self.control = ControlSource(state_dir / CONTROL_SOCKET, self)
        self.loop_lag_max = 0.0
        self._expected_wake: float | None = None
        self.steps = 0
        self.step_time = 0.0
        #: frames dropped because the core raised on them (counted as "core_error")
        self.frame_errors = 0
        self.history: list[tuple[float, str]] = []
        #: memory locking and scheduling, as `twinbeat run` set them up (for the status)
        self.realtime: dict[str, Any] = {}
        #: per link: (monotonic time of the last frame, worst gap between two frames)
        self._frame_gaps: dict[str, tuple[float, float]] = {}
        #: wakes a drbddisk promotion when DRBD or the core's view of the peer changed
        self.drbd_changes = ChangeSignal()
        self._liveness: PeerLiveness | None = None
        #: unresolved DRBD split brains, as persisted in the state directory
        self._split_brains: dict[str, dict[str, object]] = {}
        #: drbdadm for resolve-split-brain (tests use a fake)
        self.drbdadm = "drbdadm"
        resources = drbd_resources(config)
        #: the DRBD monitor (drbdsetup events2), when a group holds a drbddisk resource
        self.drbd_monitor = drbd_monitor or (Events2Monitor(resources) if resources else None)
        if self.drbd_monitor is not None and self.drbd_monitor.on_change is None:
            self.drbd_monitor.on_change = self._replica_changed
        #: events, hooks, mail, metrics and the status page (started by run())
        self.ops: Operations | None = None
        self._now = 0.0  # the clock of the step being carried out

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

    def drbd_hooks(self) -> dict[str, Any]:
        """What a drbddisk agent reads from this loop (AgentContext fields): the monitor's
        view, the core's view of the peer, and the signal that either changed."""
        return {
            "drbd_split_brain": self._split_brain,
            "drbd_replica": self._drbd_replica,
            "peer_liveness": self.peer_liveness,
            "drbd_changes": self.drbd_changes,
        }

    def peer_liveness(self) -> PeerLiveness:
        """The core's view of the peer for a drbddisk promotion (the hook the promotion
        machine of supervisor.core.promotion reads)."""
        st = self.state
        if st is None:
            return peer_liveness("peer", False, "", ())
        hearing = tuple(n for n, ls in st.links.items() if ls.status.delivers)
        # a peer that left cleanly (twinbeat stopped) may still run DRBD: never dropped
        beat = st.peer_state.beat
        left = beat is not None and beat.status is NodeStatus.LEAVING
        return peer_liveness(st.peer, st.peer_status is PeerStatus.DEAD and not left,
                             st.peer_state.dead_reason, hearing)

    def _drbd_replica(self, resource: str) -> ReplicaSnapshot | None:
        mon = self.drbd_monitor
        view = mon.views.get(resource) if mon is not None and mon.running else None
        if view is None or view.connection == "Unconfigured":
            return None
        return ReplicaSnapshot.from_view(view)

    def _split_brain(self, resource: str) -> bool:
        if self.drbd_monitor is None:
            return False
        view = self.drbd_monitor.views.get(resource)
        return view is not None and view.split_brain

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        prepare_state_dir(self.state_dir)
        self.generation = next_generation(self.state_dir)
        self._restore_split_brains()
        key = load_authkeys(self.config.authkeys_path).secret
        self.config, skipped = without_links_to(self.config, await self._local_addresses())
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
            key=self._key, send_frame=self._send_aside, peer_alive=self._peer_alive)
        await self.ops.start()
        self.feed(self.ops.boot())
        self._start_transports()
        await self.control.start()
        self.reloader.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self.feed(ShutdownRequested()))
        loop.add_signal_handler(signal.SIGHUP, self.reloader.schedule)
        armed, reason = self.watchdog.activate(self.config.watchdog.timeout)
        ok = armed or self.config.watchdog.mode != "required"
        # the timeout the device is really armed with: the peer waits for it (the wt field)
        timeout = self.watchdog.timeout if armed and self.watchdog.timeout else None
        self.feed(WatchdogState(ok, reason, armed or self.config.watchdog.mode == "off",
                                None if timeout is None else float(timeout)))
        self._spawn(self.carrier.run())
        if self.drbd_monitor is not None:
            self.drbd_monitor.start()
        if self.config.ping_nodes:
            self._spawn(PingSource(lambda: self.config, self.feed).run())
        self.feed(Tick())
        self._sync_replicas()  # a split brain restored from the state directory
        self.notifier.ready(f"{self.me}: running, generation {self.generation}")
        try:
            return await self._done
        finally:
            await self._teardown()

    async def _local_addresses(self) -> set[object]:
        """The links' peers that are this host's own addresses (see without_links_to)."""
        peers = [lk.peer for lk in self.config.links
                 if isinstance(lk, UdpLink) and lk.peer is not None]
        return set(linkdrv.own_addresses(peers)) if peers else set()

    def _start_transports(self) -> None:
        for link in self.config.links:
            transport = linkdrv.make_transport(link, self._on_frame)
            self.transports[link.name] = transport
            transport.start()
        self._watch_carriers()

    def _watch_carriers(self) -> None:
        self.carrier.watch(
            {name: t.link.interface for name, t in self.transports.items()
             if isinstance(t, linkdrv.UdpTransport) and t.link.interface},
            self.config.public_interface,
        )

    def _on_frame(self, link: str, data: bytes) -> None:
        """Frames are gathered until every callback of this wake-up has run, then stepped
        together: the copies of one beat that arrive on several links at once cost one
        decision, not one each. A history frame is not a beat: it goes to the operations
        side at once, never into the core. The gap since the link's previous beat frame is
        measured here, at arrival, not when the batch is stepped."""
        if historywire.is_history(data):  # the history exchange's
            if self.ops is not None:
                self.ops.on_history_frame(data)
            return
        now = time.monotonic()
        last, worst = self._frame_gaps.get(link, (now, 0.0))
        self._frame_gaps[link] = (now, max(worst, now - last))
        self._frames.append(FrameReceived(link, data))
        if len(self._frames) == 1:
            asyncio.get_running_loop().call_soon(self._take_frames)

    def _take_frames(self) -> None:
        frames, self._frames = self._frames, []
        if frames:
            self.feed(frames[0] if len(frames) == 1 else FramesReceived(tuple(frames)))

    def _key(self) -> bytes:
        assert self.state is not None
        return self.state.settings.key

    def _peer_alive(self) -> bool:
        return self.state is not None and self.state.peer_status is PeerStatus.ALIVE

    def _send_aside(self, data: bytes) -> None:
        """A frame that is not a beat (history): on one UDP link that delivers, so that the
        serial line's 115200 baud stays free for beats; on every link when none does."""
        assert self.state is not None
        links = self.state.links
        udp: list[linkdrv.Transport] = [t for name, t in self.transports.items()
               if isinstance(t, linkdrv.UdpTransport) and name in links
               and links[name].status.delivers]
        for transport in udp[:1] or list(self.transports.values()):
            transport.send(data)

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
            for transport in self.transports.values():
                transport.close()
            self.transports = {}
            self._start_transports()
        else:
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
        for transport in self.transports.values():
            transport.close()
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
        task = asyncio.get_running_loop().create_task(coro)
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
            loop = asyncio.get_running_loop()
            now = loop.time()  # read once per wake-up
            if self._expected_wake is not None and isinstance(event, Tick):
                self.loop_lag_max = max(self.loop_lag_max, now - self._expected_wake)
            reasons = self._step(event, now)
            while self._pending:
                self._step(self._pending.pop(0), loop.time())
            self._feed_watchdog(now)
            self._reschedule(loop, now)
            if self.drbd_monitor is not None:
                liveness = self.peer_liveness()
                if liveness != self._liveness:
                    self._liveness = liveness
                    self.drbd_changes.notify()
        finally:
            self._feeding = False
        return reasons

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
            self.frame_errors += 1
            log.exception("link %s: the core failed on a frame; dropped (%d bytes: %s)",
                          event.link, len(event.data), event.data[:512].hex())
            return []
        self.step_time += time.perf_counter() - t0
        self.steps += 1
        self.state = result.state
        log_step(result)
        if result.reasons:
            self.history.extend((now, r) for r in result.reasons)
            if len(self.history) > HISTORY:
                del self.history[: len(self.history) - HISTORY]
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
            self._sync_replicas()
        self.feed(event)
        return waiter

    def _feed_interval(self) -> float:
        interval = self.config.watchdog.timeout / 3
        systemd = self.notifier.watchdog_interval()
        if systemd:
            interval = min(interval, systemd)
        return max(0.05, min(interval, 1.0))

    def _feed_watchdog(self, now: float) -> None:
        if now - self._last_feed >= self._feed_interval():
            self._last_feed = now
            self.watchdog.feed(now)
            self.notifier.watchdog()

    def _reschedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        assert self.state is not None
        deadline = next_deadline(self.state, now)
        deadline = min(deadline, self._last_feed + self._feed_interval())
        if self._timer is not None:
            if deadline == self._expected_wake:
                return  # the timer is set for it already (most frames move no deadline)
            self._timer.cancel()
        self._expected_wake = deadline
        self._timer = loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.feed(Tick())

    def _execute(self, action: Action) -> None:
        match action:
            case SendFrame(data=data):
                for transport in self.transports.values():
                    transport.send(data)
            case StartResource() | StopResource() | CheckResource():
                self._spawn(self._resource(action))
            case Reboot(reason=reason):
                log.critical("rebooting: %s", reason)
                self.rebooter.reboot(reason)
            case Log():
                pass  # logged with the step's reasons (log_step), once, at its level
            case ShutdownComplete():
                if self._done is not None and not self._done.done():
                    self._done.set_result(0)
            case OutdateReplica():
                self._spawn(self._outdate(action))
            case RunDrbdadm():
                self._spawn(self._drbdadm(action))
            case Emit(notice=notice):
                if self.ops is not None:
                    self.ops.emit(notice, self._now)
            case SaveMaintenance(flags=flags):
                self._spawn(self._save_maintenance(flags))
            case FenceAnswer(request_id=request_id) | AdminAnswer(request_id=request_id):
                waiter = self._waiters.pop(request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(action)

    # -- resources -----------------------------------------------------------------------------

    def _agent(self, group: str, spec: ResourceSpec) -> ResourceAgent:
        key = (group, spec)
        agent = self.agents.get(key)
        if agent is None:
            agent = self.agent_factory(spec)
            self.agents[key] = agent
        return agent

    async def _resource(self, action: ResourceAction) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        running: bool | None = None
        ok, detail = True, ""
        try:
            agent = self._agent(action.group, action.spec)
            match action:
                case StartResource(check_duplicates=dad, force_data=force):
                    log.info("group %s: starting %s", action.group, agent.describe())
                    if force and isinstance(agent, DrbdAgent):
                        agent.force_next = True  # an admin's takeover --force-data
                    await asyncio.wait_for(agent.start(check_duplicates=dad), action.timeout)
                case StopResource():
                    log.info("group %s: stopping %s", action.group, agent.describe())
                    await asyncio.wait_for(agent.stop(), action.timeout)
                case CheckResource():
                    running = await asyncio.wait_for(agent.status(), action.timeout)
                    if not running:
                        detail = "status says it is not running"
        except TimeoutError:
            ok, detail = False, f"timed out after {action.timeout:g} s"
        except AgentError as exc:
            ok, detail = False, str(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an agent bug is a failed operation, not a dead daemon
            log.exception("group %s: agent error", action.group)
            ok, detail = False, f"internal error: {exc!r}"
        elapsed = loop.time() - t0
        if not isinstance(action, CheckResource) or not ok:
            word = "done" if ok else f"FAILED: {detail}"
            log.info("group %s: %s %s %s (%.3f s)", action.group, type(action).__name__,
                     action.spec.describe(), word, elapsed)
        self.feed(ResourceResult(action.group, action.op_id, ok, running, detail))


    async def _outdate(self, action: OutdateReplica) -> None:
        """Outdate the local replica off the decision path; the result comes back as an event."""
        detail = ""
        try:
            result = await self.outdater(action.resource, action.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a driver bug is a failed outdate, not a dead daemon
            log.exception("DRBD resource %s: outdate failed", action.resource)
            result, detail = "failed", f"internal error: {exc!r}"
        self.feed(OutdateResult(action.resource, action.request_id, result, detail))

    # -- DRBD --------------------------------------------------------------------------------

    def _sync_replicas(self) -> None:
        """Post the monitor's current view of every replica (before an admin command, so
        the core judges what DRBD says now)."""
        if self.drbd_monitor is not None:
            for view in self.drbd_monitor.views.values():
                self.feed(ReplicaChanged(view.snapshot()))

    def _replica_changed(self, resource: str, _said: list[str]) -> None:
        if self.drbd_monitor is not None and self.state is not None:
            self.feed(ReplicaChanged(self.drbd_monitor.views[resource].snapshot()))
        self.drbd_changes.notify()
        self._remember_split_brains()

    def _restore_split_brains(self) -> None:
        """A split brain survives a restart: DRBD says nothing more about one it reported
        before (the resource just stays StandAlone), so the last run's word is taken."""
        if self.drbd_monitor is None:
            return
        self._split_brains = load_split_brains(self.state_dir)
        now = time.monotonic()
        for name, info in self._split_brains.items():
            view = self.drbd_monitor.views.get(name)
            if view is None:
                continue
            since = info.get("since")
            when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
                    if isinstance(since, int | float) else "before")
            for sentence in view.mark_split_brain(
                    now, f"detected {when}, before twinbeat restarted: "
                         f"{info.get('detail') or 'the replicas diverged'}"):
                log.error("%s", sentence)

    def _remember_split_brains(self) -> None:
        """Persist the set of unresolved split brains when it changed (in a thread)."""
        if self.drbd_monitor is None:
            return
        current = {name: self._split_brains.get(name) or {
                       "detail": "DRBD found diverged data when the nodes reconnected",
                       "since": time.time()}
                   for name, view in self.drbd_monitor.views.items() if view.split_brain}
        if current == self._split_brains:
            return
        self._split_brains = current
        self._spawn(asyncio.to_thread(save_split_brains, self.state_dir, dict(current)))

    async def _drbdadm(self, action: RunDrbdadm) -> None:
        """The commands of a resolve-split-brain, in order; the outcome comes back as an
        event."""
        ok, detail = True, ""
        for args, required in action.steps:
            r = await run_command([self.drbdadm, *args, action.resource],
                                  timeout=action.timeout)
            if not r.ok and required:
                ok, detail = False, f"drbdadm {' '.join(args)} failed: {r.describe()}"
                break
        self.feed(DrbdadmDone(action.request_id, action.resource, ok, detail))

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        assert self.state is not None
        now = time.monotonic()  # the clock asyncio's loop.time() reads
        st = core_status(self.state, now)
        if self.frame_errors:
            st["dropped"]["core_error"] = self.frame_errors
        for link in st["links"]:
            transport = self.transports.get(link["name"])
            if transport is not None:
                link["transport"] = transport.info()
            gaps = self._frame_gaps.get(link["name"])
            # the longest silence between two frames on this link since start (ms)
            link["worst_gap_ms"] = None if gaps is None else round(gaps[1] * 1000, 1)
        st["realtime"] = self.realtime
        st["watchdog"] = {**st["watchdog"], **self.watchdog.status(now)}
        if self.drbd_monitor is not None:
            st["replication"] = self.drbd_monitor.status()
        st["config"] = self.config.path
        st["pid"] = os.getpid()
        st["now"] = now  # CLOCK_MONOTONIC, the clock of the history below
        st["history"] = [{"t": round(t, 6), "reason": r} for t, r in self.history]
        st["loop"] = {
            "steps": self.steps,
            "mean_step_us": round(self.step_time / self.steps * 1e6, 1) if self.steps else None,
            "max_lag_ms": round(self.loop_lag_max * 1000, 1),
        }
        return st
