"""The supervisor's one asyncio loop: events in, core step, actions out.

Everything that touches the world is here or in ``supervisor.drivers``; every decision is in
``supervisor.core.decide``. The loop reads the clock once per wake-up, feeds the event to the
core, carries out the actions it returns, and sleeps until the core's next deadline or the
next event. Resource operations run as tasks with a timeout and come back as events, so
heartbeats and watchdog feeding never wait for them. The watchdog is fed only from here,
after a step completed: a loop that stalls stops feeding it, and the node is reset.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from supervisor.config import (
    Config,
    ConfigError,
    WatchdogConfig,
    load_authkeys,
    load_config,
    without_links_to,
)
from supervisor.control import ControlServer
from supervisor.core import decide
from supervisor.core.actions import (
    Action,
    CheckResource,
    FenceAnswer,
    Log,
    OutdateReplica,
    Reboot,
    ResourceAction,
    SendFrame,
    ShutdownComplete,
    StartResource,
    StopResource,
)
from supervisor.core.events import (
    AdminCommand,
    ConfigChanged,
    Event,
    FenceRequested,
    FrameReceived,
    LinkCarrier,
    OutdateResult,
    PingReply,
    PublicCarrier,
    ResourceResult,
    ShutdownRequested,
    Tick,
    WatchdogState,
)
from supervisor.core.promotion import PeerLiveness, ReplicaSnapshot, peer_liveness
from supervisor.core.replica import promotion_verdict
from supervisor.core.states import PeerStatus
from supervisor.drivers import links as linkdrv
from supervisor.drivers.agent_base import ChangeSignal
from supervisor.drivers.agents import AgentContext, AgentError, ResourceAgent, make_agent
from supervisor.drivers.drbd import DrbdAgent, outdate_replica
from supervisor.drivers.drbdmon import Events2Monitor, drbd_resources
from supervisor.drivers.ipaddr import Netlink
from supervisor.drivers.reboot import Rebooter, SysrqRebooter
from supervisor.drivers.runner import run as run_command
from supervisor.drivers.sdnotify import SystemdNotifier
from supervisor.drivers.watchdog import (
    FifoWatchdog,
    LinuxWatchdog,
    NullWatchdog,
    Watchdog,
    WatchdogDevice,
)
from supervisor.resource_spec import DrbdSpec, ResourceSpec
from supervisor.statefiles import CONTROL_SOCKET, next_generation, prepare_state_dir

log = logging.getLogger("twinbeat")

CARRIER_POLL = 0.25
RELOAD_DEBOUNCE = 0.3
#: seconds a `takeover --force-data` keeps a forced promotion armed for the group's start
FORCE_WINDOW = 300.0
HISTORY = 100  # recent decisions kept for `twinbeat status` (monotonic time, reason)

AgentFactory = Callable[[ResourceSpec], ResourceAgent]
#: outdates the local replica of a DRBD resource: (resource, timeout) -> result
Outdater = Callable[[str, float], Awaitable[str]]


async def default_outdater(resource: str, timeout: float) -> str:
    return await outdate_replica(resource, "drbdadm", timeout)


def make_watchdog(cfg: WatchdogConfig) -> Watchdog:
    """The watchdog facade for the configuration (``fifo:PATH`` is the test driver)."""
    device: WatchdogDevice
    if cfg.mode == "off":
        device = NullWatchdog()
    elif cfg.device.startswith("fifo:"):
        device = FifoWatchdog(cfg.device.removeprefix("fifo:"))
    else:
        device = LinuxWatchdog(cfg.device)
    return Watchdog(cfg.mode, device)


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
    ) -> None:
        self.config = config
        self.me = me
        self.state_dir = state_dir
        self.sys_root = sys_root
        self.outdater = outdater
        self._fence_ids = itertools.count(1)
        self._fence_waiters: dict[int, asyncio.Future[tuple[int, str]]] = {}
        self.agent_factory = agent_factory or self._default_agent
        self.watchdog = watchdog or make_watchdog(config.watchdog)
        self.rebooter = rebooter or SysrqRebooter()
        self.notifier = notifier or SystemdNotifier.from_environment()
        self.transports: dict[str, linkdrv.Transport] = {}
        self.agents: dict[tuple[str, ResourceSpec], ResourceAgent] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.state: decide.CoreState | None = None
        self.generation = 0
        self.started = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._feeding = False
        self._pending: list[Event] = []
        self._done: asyncio.Future[int] | None = None
        self._last_feed = 0.0
        self._carriers: dict[str, bool | None] = {}
        self._public: bool | None = None
        self._reload: asyncio.TimerHandle | None = None
        self._inotify: Any = None
        self._control: ControlServer | None = None
        self.loop_lag_max = 0.0
        self._expected_wake: float | None = None
        self.steps = 0
        self.step_time = 0.0
        self.history: list[tuple[float, str]] = []
        #: memory locking and scheduling, as `twinbeat run` set them up (for the status)
        self.realtime: dict[str, Any] = {}
        #: per link: (monotonic time of the last frame, worst gap between two frames)
        self._frame_gaps: dict[str, tuple[float, float]] = {}
        #: drbdadm for resolve-split-brain (tests use a fake)
        self.drbdadm = "drbdadm"
        resources = drbd_resources(config)
        #: the DRBD monitor (drbdsetup events2), when a group holds a drbddisk resource
        self.drbd_monitor = drbd_monitor or (Events2Monitor(resources) if resources else None)
        #: wakes a drbddisk promotion when DRBD or the core's view of the peer changed
        self.drbd_changes = ChangeSignal()
        self._liveness: PeerLiveness | None = None
        if self.drbd_monitor is not None:
            chained = self.drbd_monitor.on_change

            def on_change(resource: str, said: list[str]) -> None:
                if chained is not None:
                    chained(resource, said)
                self.drbd_changes.notify()

            self.drbd_monitor.on_change = on_change

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
        return peer_liveness(st.peer, st.peer_status is PeerStatus.DEAD, st.peer_dead_reason,
                             hearing)

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
        key = load_authkeys(self.config.authkeys_path).secret
        self.config, skipped = without_links_to(self.config, await self._local_addresses())
        for sentence in skipped:
            log.info("%s", sentence)
        now = loop.time()
        self.state = decide.initial_state(self.config, self.me, key, self.generation, now)
        log.info(
            "twinbeat starting on %s (cluster %s, generation %d, peer %s)",
            self.me, self.config.cluster_name, self.generation, self.state.peer,
        )
        self._start_transports()
        self._control = ControlServer(self.state_dir / CONTROL_SOCKET, self._on_control)
        await self._control.start()
        self._watch_config()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self.feed(ShutdownRequested()))
        loop.add_signal_handler(signal.SIGHUP, self._schedule_reload)
        armed, reason = self.watchdog.activate(self.config.watchdog.timeout)
        ok = armed or self.config.watchdog.mode != "required"
        self.feed(WatchdogState(ok, reason))
        self._spawn(self._poll_carriers())
        if self.drbd_monitor is not None:
            self.drbd_monitor.start()
        if self.config.ping_nodes:
            self._spawn(self._ping_loop())
        self.feed(Tick())
        self.notifier.ready(f"{self.me}: running, generation {self.generation}")
        try:
            return await self._done
        finally:
            await self._teardown()

    async def _local_addresses(self) -> set[object]:
        try:
            entries = await asyncio.to_thread(
                lambda: Netlink().addresses(socket.AF_INET) + Netlink().addresses(socket.AF_INET6)
            )
        except OSError as exc:
            log.warning("cannot list this host's addresses: %s", exc)
            return set()
        return {e.address for e in entries}

    def _start_transports(self) -> None:
        for link in self.config.links:
            transport = linkdrv.make_transport(link, self._on_frame)
            self.transports[link.name] = transport
            transport.start()

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
        if self._inotify is not None:
            wm, _notifier = self._inotify
            loop.remove_reader(wm.get_fd())
            wm.close()
        for waiter in self._fence_waiters.values():
            if not waiter.done():
                waiter.set_result((5, "twinbeat is stopping; the peer was not asked"))
        self._fence_waiters.clear()
        if self._control is not None:
            await self._control.close()
        if self.drbd_monitor is not None:
            await self.drbd_monitor.stop()
        self.watchdog.disable()
        self.notifier.stopping()
        log.info("twinbeat stopped")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the heart: one event at a time --------------------------------------------------------

    def feed(self, event: Event) -> list[str]:
        """Step the core with one event and carry out its actions; returns the reasons."""
        if self._feeding:
            self._pending.append(event)
            return []
        assert self.state is not None
        self._feeding = True
        reasons: list[str] = []
        try:
            loop = asyncio.get_running_loop()
            now = loop.time()  # read once per wake-up
            if self._expected_wake is not None and isinstance(event, Tick):
                self.loop_lag_max = max(self.loop_lag_max, now - self._expected_wake)
            t0 = time.perf_counter()
            result = decide.step(self.state, event, now)
            self.step_time += time.perf_counter() - t0
            self.steps += 1
            self.state = result.state
            reasons.extend(result.reasons)
            self._remember(now, result.reasons)
            for action in result.actions:
                self._execute(action)
            while self._pending:
                queued = self._pending.pop(0)
                queued_now = loop.time()
                result = decide.step(self.state, queued, queued_now)
                self.state = result.state
                self._remember(queued_now, result.reasons)
                for action in result.actions:
                    self._execute(action)
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

    def _remember(self, now: float, reasons: list[str]) -> None:
        for reason in reasons:
            log.info("%s", reason)
            self.history.append((now, reason))
        if len(self.history) > HISTORY:
            del self.history[: len(self.history) - HISTORY]

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
        deadline = decide.next_deadline(self.state, now)
        deadline = min(deadline, self._last_feed + self._feed_interval())
        if self._timer is not None:
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
            case Log(level=level, message=message):
                if level == "error":
                    log.error("%s", message)
                # warnings are also in the reasons, which are logged already
            case ShutdownComplete():
                if self._done is not None and not self._done.done():
                    self._done.set_result(0)
            case OutdateReplica():
                self._spawn(self._outdate(action))
            case FenceAnswer(request_id=request_id, code=code, message=message):
                waiter = self._fence_waiters.pop(request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result((code, message))

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
                case StartResource(check_duplicates=dad):
                    log.info("group %s: starting %s", action.group, agent.describe())
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

    # -- fencing (DRBD fence-peer) ---------------------------------------------------------------

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

    async def _fence_peer(self, resource: str) -> dict[str, Any]:
        """``twinbeat fence-peer``: wait for the core's FenceAnswer (other requests go on)."""
        request_id = next(self._fence_ids)
        waiter: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._fence_waiters[request_id] = waiter
        try:
            self.feed(FenceRequested(resource, request_id))
            code, message = await waiter
        finally:
            self._fence_waiters.pop(request_id, None)
        return {"ok": True, "code": code, "message": message}

    # -- links, carrier, ping ------------------------------------------------------------------

    def _on_frame(self, link: str, data: bytes) -> None:
        now = time.monotonic()
        last, worst = self._frame_gaps.get(link, (now, 0.0))
        self._frame_gaps[link] = (now, max(worst, now - last))
        self.feed(FrameReceived(link, data))

    async def _poll_carriers(self) -> None:
        while True:
            for name, transport in self.transports.items():
                if isinstance(transport, linkdrv.UdpTransport):
                    up = linkdrv.read_carrier(transport.link.interface, self.sys_root)
                    if up is not None and up != self._carriers.get(name):
                        self._carriers[name] = up
                        self.feed(LinkCarrier(name, up))
            iface = self.config.public_interface
            if iface:
                public = bool(linkdrv.read_carrier(iface, self.sys_root))
                if public != self._public:
                    self._public = public
                    self.feed(PublicCarrier(public))
            await asyncio.sleep(CARRIER_POLL)

    async def _ping_loop(self) -> None:
        """One ping per ping node every ping_interval, each waiting up to ping_timeout for its
        answer and not holding up the next: an answer that comes late (a loaded node, a slow
        path) still counts, it is not taken for a lost one (see the world check's damping)."""
        while True:
            wait = max(1, math.ceil(self.config.ping_timeout))
            for addr in self.config.ping_nodes:
                self._spawn(self._ping_once(str(addr), wait))
            await asyncio.sleep(self.config.ping_interval)

    async def _ping_once(self, addr: str, wait: int) -> None:
        res = await run_command(["ping", "-n", "-q", "-c", "1", "-W", str(wait), addr],
                                timeout=wait + 2, log_failure=False)
        if res.ok:
            self.feed(PingReply(addr))

    # -- configuration reload ------------------------------------------------------------------

    def _watch_config(self) -> None:
        try:
            import pyinotify
        except ImportError as exc:  # the image has it; say so if it is missing
            log.warning("configuration changes are not watched: %s", exc)
            return
        paths = {Path(self.config.path).resolve().parent,
                 Path(self.config.authkeys_path).resolve().parent}
        wm = pyinotify.WatchManager()
        mask = pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MOVED_TO | pyinotify.IN_DELETE
        names = {Path(self.config.path).name, Path(self.config.authkeys_path).name}

        def on_event(event: Any) -> None:
            if getattr(event, "name", None) in names:
                self._schedule_reload()

        notifier = pyinotify.Notifier(wm, default_proc_fun=on_event, timeout=0)
        for p in paths:
            wm.add_watch(str(p), mask)

        def readable() -> None:
            notifier.read_events()
            notifier.process_events()

        asyncio.get_running_loop().add_reader(wm.get_fd(), readable)
        self._inotify = (wm, notifier)

    def _schedule_reload(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reload is not None:
            self._reload.cancel()
        self._reload = loop.call_later(RELOAD_DEBOUNCE,
                                       lambda: self._spawn(self._do_reload()))

    async def _do_reload(self) -> None:
        """Read the files in a thread (a disk that is slow under I/O load must not stall the
        loop that beats), then switch over in the loop."""
        self._reload = None
        path = self.config.path
        try:
            new = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            log.error("configuration change rejected; the running configuration stays:")
            for problem in exc.problems:
                log.error("  %s", problem)
            return
        if self.me not in [n.name for n in new.nodes]:
            log.error("configuration change rejected: it does not list this node (%s)", self.me)
            return
        try:
            key = (await asyncio.to_thread(load_authkeys, new.authkeys_path)).secret
        except ValueError as exc:
            log.error("configuration change rejected: %s", exc)
            return
        for warning in new.warnings:
            log.warning("%s", warning)
        assert self.state is not None
        self.state = decide.set_key(self.state, key)
        if new.replicated != self.config.replicated:
            from supervisor.drbdconf import regenerate_command

            log.warning("[[replicated]] changed: rewrite the DRBD resource files with `%s` "
                        "(twinbeat checks them at its next start)", regenerate_command(path))
        old_links = self.config.links
        self.config = new
        if new.links != old_links:
            for transport in self.transports.values():
                transport.close()
            self.transports = {}
            self._carriers = {}
            self._start_transports()
        log.info("configuration %s reloaded", path)
        self.feed(ConfigChanged(new))

    # -- control socket ------------------------------------------------------------------------

    async def _on_control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command == "status":
            return {"ok": True, "status": self.status()}
        if command == "takeover" and request.get("force_data"):
            return self._force_data_takeover(request.get("group"))
        if command == "resolve-split-brain":
            return await self._resolve_split_brain(request.get("discard"),
                                                   request.get("resource"))
        if command in ("standby", "takeover", "cleanup"):
            group = request.get("group")
            if group is not None and not isinstance(group, str):
                return {"ok": False, "error": "group must be a name"}
            reasons = self.feed(AdminCommand(command, group))
            refused = [r for r in reasons if " refused: " in r]
            return {"ok": not refused, "reasons": reasons, "error": "; ".join(refused) or None}
        if command == "fence-peer":
            resource = request.get("resource")
            if not isinstance(resource, str) or not resource:
                return {"ok": False, "error": "resource must be a DRBD resource name"}
            return await self._fence_peer(resource)
        if command == "reload":
            await self._do_reload()
            return {"ok": True, "reasons": ["reload requested (see the log)"]}
        return {"ok": False, "error": f"unknown command {command!r}"}

    def _drbd_agents(self, group: str) -> list[DrbdAgent]:
        cfg = next((g for g in self.config.groups if g.name == group), None)
        if cfg is None:
            return []
        agents = [self._agent(group, spec) for spec in cfg.resources
                  if isinstance(spec, DrbdSpec)]
        return [a for a in agents if isinstance(a, DrbdAgent)]

    def _force_data_takeover(self, group: object) -> dict[str, Any]:
        """``twinbeat takeover --force-data GROUP``: arm a forced promotion of the group's
        DRBD resources for FORCE_WINDOW seconds, forget the group's failures here (a refused
        promotion failed it) and take the group over."""
        if not isinstance(group, str):
            return {"ok": False, "error": "takeover --force-data needs a group name"}
        agents = self._drbd_agents(group)
        if not agents:
            return {"ok": False, "error": f"group {group!r} has no drbddisk resource; use a "
                                          "plain takeover"}
        risks = []
        for agent in agents:
            view = (self.drbd_monitor.views.get(agent.spec.resource)
                    if self.drbd_monitor is not None else None)
            if view is not None:
                verdict = promotion_verdict(
                    resource=agent.spec.resource, role=view.role, disk=view.disk,
                    peer_role=view.peer_role, peer_disk=view.peer_disk,
                    connection=view.connection, split_brain=view.split_brain, force=True)
                risks.append(verdict.risk or verdict.reason)
            agent.force_until = time.monotonic() + FORCE_WINDOW
        reasons = self.feed(AdminCommand("cleanup", group))
        reasons += self.feed(AdminCommand("takeover", group))
        refused = [r for r in reasons if " refused: " in r]
        if refused:
            for agent in agents:
                agent.force_until = None
        else:
            log.warning("admin: takeover of group %s with FORCED data promotion: %s", group,
                        "; ".join(risks) or "disk states unknown")
        return {"ok": not refused, "reasons": risks + reasons,
                "error": "; ".join(refused) or None}

    async def _resolve_split_brain(self, discard: object, resource: object) -> dict[str, Any]:
        """``twinbeat resolve-split-brain --discard NODE``, this node's half of DRBD's manual
        recovery (user's guide 8.4, "Manual split brain recovery"): on the node whose data
        is discarded, ``secondary`` + ``connect --discard-my-data``; on the survivor,
        ``connect``. Run on both nodes with the same NODE."""
        assert self.state is not None
        nodes = [self.state.me, self.state.peer]
        if discard not in nodes:
            return {"ok": False, "error": f"--discard must name a node: {' or '.join(nodes)}"}
        names = [r for r in (self.drbd_monitor.views if self.drbd_monitor else {})
                 if resource in (None, r)]
        if not names:
            return {"ok": False, "error": "no such replicated resource here"
                                          if resource else "this node replicates nothing"}
        assert self.drbd_monitor is not None
        said: list[str] = []
        ok = True
        for name in names:
            view = self.drbd_monitor.views[name]
            if view.connection == "Connected" and not view.split_brain:
                said.append(f"{name}: connected and replicating, no split brain to resolve")
                continue
            if discard == self.state.me:
                if view.role == "Primary":
                    ok = False
                    said.append(f"{name}: refused: this node ({self.state.me}) is Primary and "
                                "serves this data; move the group to the other node first "
                                "(twinbeat standby), or discard the other node")
                    continue
                lost = ("" if view.out_of_sync_kib is None else
                        f" (DRBD counts {view.out_of_sync_kib} KiB changed here since the "
                        "nodes parted)")
                said.append(f"{name}: DISCARDING this node's ({self.state.me}) changes since "
                            f"the split{lost}; it will resync from {self.state.peer}")
                steps = [("disconnect",), ("secondary",), ("connect", "--discard-my-data")]
            else:
                said.append(f"{name}: keeping this node's ({self.state.me}) data; "
                            f"{discard}'s changes since the split will be overwritten")
                steps = [("disconnect",), ("connect",)]
            for step in steps:
                r = await run_command([self.drbdadm, *step, name], timeout=60)
                # disconnect fails on a StandAlone resource ("unknown connection"): fine
                if not r.ok and step[0] != "disconnect":
                    ok = False
                    said.append(f"{name}: drbdadm {' '.join(step)} failed: {r.describe()}")
                    break
            else:
                said.append(f"{name}: done here; run the same command on {self.state.peer} "
                            "if you have not yet")
        for sentence in said:
            log.warning("resolve-split-brain: %s", sentence)
        return {"ok": ok, "reasons": said, "error": None if ok else "; ".join(said)}

    def status(self) -> dict[str, Any]:
        assert self.state is not None
        now = time.monotonic()  # the clock asyncio's loop.time() reads
        st = decide.status(self.state, now)
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
