"""The real supervisor loop, in process, on one node whose peer never answers.

Resources are heartbeat-style scripts in a temporary resource.d that record every call, so
the tests see the start order, the reverse stop order, what a failing start leaves behind,
the escalation of a failing stop, monitoring restarts, and the watchdog's feeding.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pty
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import load_config
from supervisor.core.actions import Accepted, AdminAnswer
from supervisor.core.events import (
    AdminCommand,
    FrameReceived,
    FramesReceived,
    ShutdownRequested,
)
from supervisor.drivers.agents import AgentContext, make_agent
from supervisor.drivers.reboot import RecordingRebooter
from supervisor.loop import Supervisor
from supervisor.resource_spec import ResourceSpec

# Real loops, real resource scripts and the real clock: the slow tier (make test-slow).
pytestmark = pytest.mark.slow

SCRIPT = """#!/bin/sh
# A recording resource script: rec NAME start|stop|status
name="$1"; op="$2"; dir="{dir}"
echo "$op $name" >> "$dir/calls"
case "$op" in
  start) [ -e "$dir/$name.failstart" ] && exit 1; touch "$dir/$name.running" ;;
  stop)  [ -e "$dir/$name.failstop" ] && exit 1; rm -f "$dir/$name.running" ;;
  status) [ -e "$dir/$name.running" ] && exit 0; exit 3 ;;
esac
exit 0
"""


def write_config(tmp: Path, resources: list[str], *, watchdog: str = "",
                 group_extra: str = "", cluster_extra: str = "",
                 timing: tuple[str, str] = ("50ms", "200ms")) -> Path:
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    tty_path = os.ttyname(slave)
    keys = tmp / "authkeys"
    keys.write_text("auth 1\n1 sha256 loop-test-secret\n")
    keys.chmod(0o600)
    res = ", ".join(f'"{r}"' for r in resources)
    watchdog = watchdog or '[watchdog]\nmode = "off"'
    cfg = tmp / "cluster.toml"
    cfg.write_text(f"""
[cluster]
name = "looptest"
{cluster_extra}

[timing]
keepalive = "{timing[0]}"
deadtime = "{timing[1]}"
initdead = "{timing[1]}"

{watchdog}

[[node]]
name = "node1"

[[node]]
name = "node2"

[[link]]
type = "serial"
device = "{tty_path}"

[[group]]
name = "app"
preferred = "node1"
resources = [{res}]
monitor_interval = "200ms"
{group_extra}
""")
    # keep both ends open for the test's lifetime (closed when the process exits)
    _keep.extend([master, slave])
    return cfg


_keep: list[int] = []


def resource_dir(tmp: Path) -> Path:
    d = tmp / "resource.d"
    d.mkdir()
    script = d / "rec"
    script.write_text(SCRIPT.format(dir=tmp))
    script.chmod(0o755)
    return d


def calls(tmp: Path) -> list[str]:
    try:
        return (tmp / "calls").read_text().split("\n")[:-1]
    except FileNotFoundError:
        return []


def run_node(
    tmp: Path,
    cfg_path: Path,
    scenario: Callable[[Supervisor], Awaitable[None]],
    **kw: Any,
) -> Supervisor:
    rdir = resource_dir(tmp)
    cfg = load_config(cfg_path)

    def factory(spec: ResourceSpec) -> Any:
        return make_agent(spec, AgentContext(takeover=cfg.takeover, resource_dirs=(rdir,)))

    return drive(Supervisor(cfg, "node1", tmp / "state", agent_factory=factory, **kw),
                 scenario)


def drive(sup: Supervisor, scenario: Callable[[Supervisor], Awaitable[None]]) -> Supervisor:
    """Run `sup` until `scenario(sup)` is done, then shut it down cleanly."""

    async def main() -> None:
        task = asyncio.create_task(sup.run())
        try:
            await until("the supervisor to start", lambda: sup.state is not None)
            await scenario(sup)
        finally:
            if sup.state is not None:
                sup.feed(ShutdownRequested())
            await asyncio.wait_for(task, 30)

    asyncio.run(main())
    return sup


async def until(what: str, predicate: Callable[[], bool], timeout: float = 10) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def group(sup: Supervisor) -> dict[str, Any]:
    return dict(sup.status()["groups"][0])


@contextlib.contextmanager
def spying_feed(sup: Supervisor) -> Iterator[list[object]]:
    """Every event fed to ``sup`` while inside, in order (each still stepped)."""
    fed: list[object] = []
    real_feed = sup.feed

    def spy(event: Any) -> list[str]:
        fed.append(event)
        return real_feed(event)

    sup.feed = spy  # type: ignore[method-assign]
    try:
        yield fed
    finally:
        sup.feed = real_feed  # type: ignore[method-assign]


def test_group_starts_left_to_right_and_stops_right_to_left(tmp_path: Path):
    cfg = write_config(tmp_path, ["rec::a", "rec::b", "rec::c"])

    async def scenario(sup: Supervisor) -> None:
        await until("the group to run", lambda: group(sup)["local"] == "running")

    run_node(tmp_path, cfg, scenario)
    log = [c for c in calls(tmp_path) if not c.startswith("status")]
    # the start-up cleanup stops everything (reverse), then start in order, stop in reverse
    assert log == ["stop c", "stop b", "stop a", "start a", "start b", "start c",
                   "stop c", "stop b", "stop a"]


def test_failing_middle_start_leaves_nothing_running(tmp_path: Path):
    cfg = write_config(tmp_path, ["rec::a", "rec::b", "rec::c"])
    (tmp_path / "b.failstart").touch()

    async def scenario(sup: Supervisor) -> None:
        await until("the group to fail", lambda: group(sup)["failed"])

    sup = run_node(tmp_path, cfg, scenario)
    log = [c for c in calls(tmp_path) if not c.startswith("status")]
    assert log[3:7] == ["start a", "start b", "stop b", "stop a"]
    assert "start c" not in log
    assert not list(tmp_path.glob("*.running"))
    history = [h["reason"] for h in sup.status()["history"]]
    assert any("starting rec a" in r or "starting rec b" in r for r in history), history
    assert any("failed to start" in r for r in history)


def test_failing_stop_reboots_the_node(tmp_path: Path):
    cfg = write_config(tmp_path, ["rec::a", "rec::b"], group_extra='on_stop_failure = "reboot"')
    rebooter = RecordingRebooter()

    async def scenario(sup: Supervisor) -> None:
        await until("the group to run", lambda: group(sup)["local"] == "running")
        (tmp_path / "b.failstop").touch()
        (tmp_path / "a.running").unlink()  # a dies: the restart must first stop b, which fails
        await until("a reboot request", lambda: bool(rebooter.reasons), timeout=10)

    run_node(tmp_path, cfg, scenario, rebooter=rebooter)
    assert "stopping rec b failed" in rebooter.reasons[0]
    assert "rebooting node1" in rebooter.reasons[0]


def test_failing_stop_with_block_policy_blocks_without_reboot(tmp_path: Path):
    cfg = write_config(tmp_path, ["rec::a", "rec::b"], group_extra='on_stop_failure = "block"')
    rebooter = RecordingRebooter()

    async def scenario(sup: Supervisor) -> None:
        await until("the group to run", lambda: group(sup)["local"] == "running")
        (tmp_path / "b.failstop").touch()
        (tmp_path / "a.running").unlink()
        await until("the group to be blocked", lambda: group(sup)["local"] == "stop_failed")
        assert "twinbeat cleanup app" in group(sup)["reason"]
        (tmp_path / "b.failstop").unlink()
        sup.feed(AdminCommand("cleanup", "app"))
        await until("the group to run again", lambda: group(sup)["local"] == "running")

    run_node(tmp_path, cfg, scenario, rebooter=rebooter)
    assert rebooter.reasons == []


def test_monitor_restarts_then_gives_up(tmp_path: Path):
    cfg = write_config(tmp_path, ["rec::a", "rec::b"],
                       group_extra='max_restarts = 2\nrestart_window = "1m"')

    async def scenario(sup: Supervisor) -> None:
        await until("the group to run", lambda: group(sup)["local"] == "running")
        for n in (1, 2):
            (tmp_path / "b.running").unlink()  # killed behind the supervisor's back
            def restarted(n: int = n) -> bool:
                return calls(tmp_path).count("start b") == n + 1

            await until(f"restart {n}", restarted)
            await until("running again", lambda: (tmp_path / "b.running").exists()
                        and group(sup)["local"] == "running")
        (tmp_path / "b.running").unlink()
        await until("the group to be given up", lambda: group(sup)["failed"])

    sup = run_node(tmp_path, cfg, scenario)
    log = [c for c in calls(tmp_path) if not c.startswith("status")]
    assert log.count("start b") == 3
    history = [h["reason"] for h in sup.status()["history"]]
    assert sum("restarting it" in r for r in history) == 2
    assert any("3 times within" in r and "giving the group up" in r for r in history)


def feeds(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.startswith("feed"))


def test_watchdog_is_not_fed_while_the_loop_is_blocked(tmp_path: Path):
    wd = tmp_path / "watchdog"
    wd.touch()
    cfg = write_config(tmp_path, ["rec::a"], watchdog=(
        f'[watchdog]\nmode = "required"\ndevice = "fifo:{wd}"\ntimeout = "1s"'))
    counts: dict[str, int] = {}

    async def scenario(sup: Supervisor) -> None:
        await until("the group to run", lambda: group(sup)["local"] == "running")
        counts["healthy_start"] = feeds(wd)
        await asyncio.sleep(1.5)
        counts["before"] = feeds(wd)
        # A blocking call inside the event loop: nothing else runs on the loop meanwhile, so
        # the counts read right before and right after it are exact.
        time.sleep(2.0)
        counts["after_block"] = feeds(wd)
        await asyncio.sleep(1.5)
        counts["resumed"] = feeds(wd)
        st = sup.status()["watchdog"]
        assert st["armed"] is True and st["timeout"] == 1
        assert st["last_feed_age"] < 1.0
        # the armed timeout goes to the core, which publishes it to the peer (wt)
        assert st["armed_timeout"] == 1.0

    run_node(tmp_path, cfg, scenario)
    # healthy: fed more often than the 1 s timeout (every third of it)
    assert counts["before"] - counts["healthy_start"] >= 3
    assert counts["after_block"] == counts["before"], "fed while the loop was blocked"
    assert counts["resumed"] - counts["after_block"] >= 3, "feeding did not resume"
    assert wd.read_text().splitlines()[-1] == "close V"


def test_required_watchdog_that_cannot_be_armed_refuses_ownership(tmp_path: Path):
    cfg = write_config(tmp_path, ["rec::a"], watchdog=(
        f'[watchdog]\nmode = "required"\ndevice = "fifo:{tmp_path}/missing"'))

    async def scenario(sup: Supervisor) -> None:
        await asyncio.sleep(1.5)  # well past initdead: alone, it would take the group
        st = sup.status()
        assert st["can_own"] is False
        assert "watchdog required but not armed" in st["watchdog"]["reason"]
        assert group(sup)["local"] == "idle"
        assert "watchdog required but not armed" in group(sup)["reason"]
        assert st["watchdog"]["armed_timeout"] is None  # the peer learns: none armed

    run_node(tmp_path, cfg, scenario)
    assert "start a" not in calls(tmp_path)


@pytest.fixture(autouse=True)
def _close_ptys():
    yield
    while _keep:
        try:
            os.close(_keep.pop())
        except OSError:
            pass


def test_maintenance_is_kept_across_a_restart_and_leaves_the_resources_alone(tmp_path: Path):
    """Maintenance on through the control path, the supervisor stops (the group keeps
    running), starts again (still in maintenance: no start-up cleanup stop, no monitor) and
    only `maintenance off` hands the group back (its start-up cleanup runs then)."""
    cfg = write_config(tmp_path, ["rec::a", "rec::b"])

    async def first(sup: Supervisor) -> None:
        await until("the group to run", lambda: group(sup)["local"] == "running")
        answer = await sup.ask(lambda rid: AdminCommand("maintenance", None, rid, on=True))
        assert isinstance(answer, AdminAnswer) and isinstance(answer.decision, Accepted)
        assert answer.decision.reasons[0].startswith("maintenance mode on for node1")
        await until("the flag file", (tmp_path / "state" / "maintenance.json").exists)

    run_node(tmp_path, cfg, first)
    # stopping in maintenance left both resources running
    assert [c for c in calls(tmp_path) if c.startswith(("start", "stop"))][-2:] == [
        "start a", "start b"]
    (tmp_path / "resource.d").rename(tmp_path / "resource.d.old")
    (tmp_path / "calls").unlink()

    async def second(sup: Supervisor) -> None:
        assert sup.status()["maintenance"] == ["node1"]
        await asyncio.sleep(1.0)  # five monitor intervals: no check, no stop
        assert calls(tmp_path) == []
        answer = await sup.ask(lambda rid: AdminCommand("maintenance", None, rid, on=False))
        assert isinstance(answer, AdminAnswer) and isinstance(answer.decision, Accepted)
        assert "maintenance mode off for node1" in answer.decision.reasons[0]
        await until("the group to run again", lambda: group(sup)["local"] == "running")

    sup = run_node(tmp_path, cfg, second)
    log = [c for c in calls(tmp_path) if not c.startswith("status")]
    assert log[:2] == ["stop b", "stop a"]  # the start-up cleanup, once maintenance ended
    events = [e.kind.value for e in sup.ops.history.events] if sup.ops else []
    assert "maintenance_on" in events and "maintenance_off" in events


def test_frames_of_one_wake_up_are_stepped_together(tmp_path: Path) -> None:
    """Frames that arrive in one wake-up (a beat on several links) make one step."""
    async def scenario(sup: Supervisor) -> None:
        link = sup.config.links[0].name
        with spying_feed(sup) as fed:
            dropped = sup.state.dropped.get("garbage", 0) if sup.state else 0
            for n in range(3):
                sup._on_frame(link, b"not a frame %d\n" % n)
            assert fed == []  # nothing stepped before the wake-up's other callbacks ran
            await until("the frames to be stepped", lambda: any(
                isinstance(e, FramesReceived) for e in fed))
            frames = [e for e in fed if isinstance(e, (FrameReceived, FramesReceived))]
            assert frames == [FramesReceived(tuple(
                FrameReceived(link, b"not a frame %d\n" % n) for n in range(3)))]
            assert sup.state is not None and sup.state.dropped["garbage"] == dropped + 3
            sup._on_frame(link, b"alone\n")
            await until("the lone frame", lambda: FrameReceived(link, b"alone\n") in fed)

    run_node(tmp_path, write_config(tmp_path, ["rec::a"]), scenario)


def test_frames_a_quiet_wake_up_collected_are_stepped_together_history_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The frames a quiet wake-up collected (LinkSet.collect) make one step: each waited
    and stripped, the copies of one line share the latest arrival known among them (the
    serial line's has none); a history frame among them goes to the operations side, and
    its failure there is logged and counted with its link's receive errors, without
    costing the beats."""
    from supervisor.core import historywire

    history: list[bytes] = []

    async def scenario(sup: Supervisor) -> None:
        def failing(data: bytes) -> None:
            history.append(data)
            raise RuntimeError("the history side failed")

        assert sup.ops is not None
        sup.ops.on_history_frame = failing  # type: ignore[method-assign,assignment]
        assert sup.state is not None
        dropped = sum(sup.state.dropped.values())
        line, other = b"not a frame\n", b"another\n"
        hist = historywire.MAGIC + b"whatever\n"
        serial = sup.config.links[0].name  # (the history frame's link: its errors count)
        port = sup.links.transports[serial]
        errors = port.rx_errors
        with spying_feed(sup) as fed:
            sup._take_collected([("serial", line, None), ("crossover", line, 5.0),
                                 (serial, hist, 5.5), ("public", line, 6.0),
                                 ("crossover", other, None)])
        assert port.rx_errors == errors + 1
        assert history == [hist]
        line, other = line.strip(), other.strip()  # (stripped once, by the loop)
        assert fed == [FramesReceived((
            FrameReceived("serial", line, True, 6.0), FrameReceived("crossover", line, True, 6.0),
            FrameReceived("public", line, True, 6.0), FrameReceived("crossover", other, True)))]
        assert sum(sup.state.dropped.values()) == dropped + 4  # (garbage, or unknown links)
        with spying_feed(sup) as fed:  # one line's copies (the common case): one arrival
            sup._take_collected([("serial", line + b"\n", None), ("crossover", line, 7.0),
                                 ("public", line, 6.5)])
        assert fed == [FramesReceived((
            FrameReceived("serial", line, True, 7.0), FrameReceived("crossover", line, True, 7.0),
            FrameReceived("public", line, True, 7.0)))]
        assert sup.stats.frame_gaps["public"][0] == 6.5  # (the gap: at its own arrival)

    with caplog.at_level("ERROR", logger="twinbeat"):
        run_node(tmp_path, write_config(tmp_path, ["rec::a"]), scenario)
    assert any("handling a history frame failed" in r.getMessage() for r in caplog.records)


def test_a_quiet_wake_up_steps_frames_left_waiting_before_what_it_collects(
        tmp_path: Path) -> None:
    """Frames handed to _on_frame and not stepped yet (no batch taken them) are stepped by
    the next quiet wake-up, before what it collects, as the collect's on_batch did."""
    async def scenario(sup: Supervisor) -> None:
        left = FrameReceived(sup.config.links[0].name, b"left waiting\n")
        sup._frames.append(left)
        was, sup._quiet = sup._quiet, True
        try:
            with spying_feed(sup) as fed:
                sup._tick()
        finally:
            sup._quiet = was
        assert fed[:1] == [left] and sup._frames == []

    run_node(tmp_path, write_config(tmp_path, ["rec::a"]), scenario)


def _watchdog_and_calls(tmp: Path) -> list[str]:
    """The recording agent's calls and the test watchdog's lines, in the order they happened
    (both append to one file), status checks left out."""
    return [c for c in calls(tmp) if not c.startswith(("status", "feed"))]


def test_fresh_start_arms_the_startup_timeout_and_shortens_it_before_the_first_start(
        tmp_path: Path):
    cfg = write_config(tmp_path, ["rec::a", "rec::b"], watchdog=(
        f'[watchdog]\nmode = "required"\ndevice = "fifo:{tmp_path}/calls"\ntimeout = "1s"'))
    (tmp_path / "calls").touch()
    seen: dict[str, Any] = {}

    async def scenario(sup: Supervisor) -> None:
        seen["first"] = sup.status()["watchdog"]["armed_timeout"]
        await until("the group to run", lambda: group(sup)["local"] == "running")
        seen["running"] = sup.status()["watchdog"]

    run_node(tmp_path, cfg, scenario)
    # nothing held after a clean start: the long timeout, published to the peer as such
    assert seen["first"] == 30.0
    lines = _watchdog_and_calls(tmp_path)
    # the clean-up of what a previous run may have left (stop b, stop a) runs under the long
    # timeout; the short one is set before the first start
    assert lines[:4] == ["open", "timeout 30", "stop b", "stop a"], lines
    assert lines[4:7] == ["timeout 1", "start a", "start b"], lines
    assert seen["running"]["armed_timeout"] == 1.0 and seen["running"]["timeout"] == 1
    assert "before this node starts its first resource" in seen["running"]["reason"]


def test_start_after_a_crash_on_this_boot_arms_the_configured_timeout_at_once(tmp_path: Path):
    from supervisor.operations import RUNNING_MARKER, read_boot_id

    cfg = write_config(tmp_path, ["rec::a"], watchdog=(
        f'[watchdog]\nmode = "required"\ndevice = "fifo:{tmp_path}/calls"\ntimeout = "1s"'))
    (tmp_path / "calls").touch()
    state = tmp_path / "state"
    state.mkdir()
    # the previous supervisor died on this very boot: what it held may still be held
    (state / RUNNING_MARKER).write_text(f"{read_boot_id()}\n")
    seen: dict[str, Any] = {}

    async def scenario(sup: Supervisor) -> None:
        seen["first"] = sup.status()["watchdog"]
        await until("the group to run", lambda: group(sup)["local"] == "running")

    run_node(tmp_path, cfg, scenario)
    assert seen["first"]["armed_timeout"] == 1.0
    assert "died on this boot" in seen["first"]["reason"]
    timeouts = [c for c in _watchdog_and_calls(tmp_path) if c.startswith("timeout")]
    assert timeouts == ["timeout 1"]


@pytest.mark.parametrize("timing", [("50ms", "200ms"), ("1s", "3s")], ids=["50ms", "1s"])
def test_carriers_are_read_on_the_loops_wake_ups_at_least_every_carrier_poll(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timing: tuple[str, str]) -> None:
    """The carriers are read on the loop's own wake-ups (a beat's, a frame's) when a reading
    is due before the next one, not on a timer of their own: never more than CARRIER_POLL
    apart (plus the loop's lag), never less than half of it; with a keepalive longer than
    CARRIER_POLL the loop wakes up for them alone. A carrier that drops is posted (the
    public interface here) within a reading."""
    from supervisor.core.events import PublicCarrier
    from supervisor.drivers.netif import read_carrier
    from supervisor.sources import carrier as carrier_source
    from supervisor.sources.carrier import CARRIER_POLL

    net = tmp_path / "sys" / "class" / "net" / "pub0"
    net.mkdir(parents=True)
    (net / "carrier").write_text("1\n")
    reads: list[float] = []
    on_a_step: list[bool] = []  # read on a wake-up that steps the core anyway
    real = read_carrier

    def counted(interface: str, sys_root: str = "/sys") -> bool | None:
        reads.append(time.monotonic())
        on_a_step.append(sup._feeding)
        return real(interface, sys_root)

    monkeypatch.setattr(carrier_source, "read_carrier", counted)
    cfg = write_config(tmp_path, ["rec::a"], cluster_extra='public_interface = "pub0"',
                       timing=timing)
    posted: list[tuple[float, object]] = []

    async def scenario(sup: Supervisor) -> None:
        post = sup.carrier.post

        def recording(event: Any) -> object:
            posted.append((time.monotonic(), event))
            return post(event)

        sup.carrier.post = recording
        await asyncio.sleep(2.0)
        (net / "carrier").write_text("0\n")
        dropped = time.monotonic()
        await until("the dropped carrier posted", lambda: any(
            e == PublicCarrier(False) for _, e in posted))
        assert next(t for t, e in posted if e == PublicCarrier(False)) - dropped <= (
            CARRIER_POLL + 0.2)

    rdir = resource_dir(tmp_path)
    loaded = load_config(cfg)

    def factory(spec: ResourceSpec) -> Any:
        return make_agent(spec, AgentContext(takeover=loaded.takeover, resource_dirs=(rdir,)))

    sup = Supervisor(loaded, "node1", tmp_path / "state", agent_factory=factory,
                     sys_root=str(tmp_path / "sys"))
    drive(sup, scenario)
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert len(reads) >= 8, reads
    assert max(gaps) <= CARRIER_POLL + 0.15, gaps
    assert min(gaps) >= CARRIER_POLL / 2 - 0.01, gaps
    if timing[0] == "50ms":  # a beat's wake-up comes before every reading is due
        assert all(on_a_step), on_a_step
    else:  # a wake-up for the carriers alone between two beats
        assert not all(on_a_step), on_a_step


@pytest.mark.parametrize("timing", [("50ms", "200ms"), ("1s", "3s")], ids=["50ms", "1s"])
def test_history_exchange_ticks_on_the_loops_wake_ups_about_every_second(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timing: tuple[str, str]) -> None:
    """The history exchange ticks on the loop's own wake-ups, as the carriers are read: never
    more than EXCHANGE_EVERY apart (plus the loop's lag), never less than half of it, and no
    task of its own sleeps (and wakes the loop) for it; with a 50 ms keepalive every tick
    rides on a step the loop makes anyway."""
    from supervisor.historysync import HistorySync
    from supervisor.operations import EXCHANGE_EVERY

    ticks: list[float] = []
    on_a_step: list[bool] = []
    real = HistorySync.tick

    def counted(self: HistorySync, peer_alive: bool) -> None:
        # the loop's clock of the wake-up that ticks (what the rule is stated in: a tick is
        # called after that wake-up's step, whose time varies under load, so the moments of
        # the calls can be closer than half an interval while the rule holds)
        ticks.append(sup._last_exchange)
        on_a_step.append(sup._feeding)
        real(self, peer_alive)

    monkeypatch.setattr(HistorySync, "tick", counted)
    cfg = write_config(tmp_path, ["rec::a"], timing=timing)
    tasks: list[str] = []

    async def scenario(sup: Supervisor) -> None:
        await asyncio.sleep(3.5)
        tasks.extend(getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks())

    rdir = resource_dir(tmp_path)
    loaded = load_config(cfg)

    def factory(spec: ResourceSpec) -> Any:
        return make_agent(spec, AgentContext(takeover=loaded.takeover, resource_dirs=(rdir,)))

    sup = Supervisor(loaded, "node1", tmp_path / "state", agent_factory=factory)
    drive(sup, scenario)
    assert not [t for t in tasks if "_exchange" in t], tasks
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) >= 3, ticks
    assert max(gaps) <= EXCHANGE_EVERY + 0.15, gaps
    assert min(gaps) >= EXCHANGE_EVERY / 2 - 0.01, gaps
    if timing[0] == "50ms":
        assert all(on_a_step), on_a_step


class _KnowingAgent:
    """A resource agent that knows its status without asking (``KnowsStatus``), as IPaddr's
    monitor does while no address changed: ``answer`` is what it knows (None: ask)."""

    def __init__(self, spec: ResourceSpec) -> None:
        self._spec = spec
        self.running = False
        self.answer: bool | None = None
        self.starts = self.asked = self.known_asked = 0

    @property
    def spec(self) -> ResourceSpec:
        return self._spec

    def describe(self) -> str:
        return f"knowing {self._spec}"

    async def start(self, *, check_duplicates: bool = False) -> None:
        self.starts += 1
        self.running = True
        self.answer = True

    async def stop(self) -> None:
        self.running = False

    async def status(self) -> bool:
        self.asked += 1
        return self.running

    def known_status(self) -> bool | None:
        self.known_asked += 1
        return self.answer


def test_a_check_its_agent_knows_is_answered_at_once_and_decided_on(tmp_path: Path) -> None:
    """The group's monitor (every 200 ms) asks an agent that knows its status: every check
    is answered from known_status() without status() being called (no task, no wait), and
    when what it knows is "not running", the group is restarted as for any failed check."""
    from supervisor.drivers.agent_base import KnowsStatus

    cfg_path = write_config(tmp_path, ["rec::a"], group_extra='max_restarts = 3')
    cfg = load_config(cfg_path)
    agents: list[_KnowingAgent] = []

    def factory(spec: ResourceSpec) -> Any:
        agents.append(_KnowingAgent(spec))
        return agents[-1]

    async def scenario(sup: Supervisor) -> None:
        await until("the group to run", lambda: group(sup)["local"] == "running")
        (agent,) = agents
        assert isinstance(agent, KnowsStatus)
        asked, known = agent.asked, agent.known_asked
        await until("five checks answered at once", lambda: agent.known_asked >= known + 5)
        assert agent.asked == asked  # none went to status()
        assert group(sup)["local"] == "running"
        agent.answer = False  # what it knows: the resource stopped
        await until("the group restarted", lambda: agent.starts == 2
                    and group(sup)["local"] == "running")

    sup = drive(Supervisor(cfg, "node1", tmp_path / "state", agent_factory=factory), scenario)
    history = [h["reason"] for h in sup.status()["history"]]
    assert any("restarting it" in r for r in history), history


def test_the_status_pages_link_samples_are_the_status_links_rows(tmp_path: Path) -> None:
    """The status page samples the links every statuspage.SAMPLE_EVERY from the core's
    view of the links alone, not the whole status: the same name, state, loss and round
    trip as the status's rows."""
    keys = ("name", "state", "loss", "rtt")

    async def scenario(sup: Supervisor) -> None:
        assert sup.ops is not None
        rows = [{k: row[k] for k in keys} for row in sup.ops.link_rows()]
        assert rows == [{k: row[k] for k in keys} for row in sup.status()["links"]]
        assert [r["name"] for r in rows] == [lk.name for lk in sup.config.links]

    run_node(tmp_path, write_config(tmp_path, ["rec::a"]), scenario)
