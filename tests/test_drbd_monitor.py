"""The events2 monitor against a fake drbdsetup, and the supervisor's DRBD admin commands
(status, takeover --force-data, resolve-split-brain) against a fake drbdadm."""

from __future__ import annotations

import asyncio
import json
import os
import pty
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.cli import format_replica
from supervisor.config import load_config
from supervisor.drivers.agents import AgentContext, make_agent
from supervisor.drivers.drbdmon import Events2Monitor, drbd_resources
from supervisor.loop import Supervisor
from supervisor.resource_spec import ResourceSpec

from .test_drbd_noop import DRBDADM
from .test_runner import _dies
from .test_supervisor_loop import drive, group, until

EXISTS = """exists resource name:r0 role:Secondary suspended:no
exists connection name:r0 peer-node-id:0 conn-name:peer connection:Connected role:Primary
exists device name:r0 volume:0 minor:0 disk:Inconsistent
exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 replication:SyncTarget \
peer-disk:UpToDate out-of-sync:10000
exists -
"""

# A fake drbdsetup: `events2 --statistics all` prints the state once, then a change, then
# dies (the monitor must restart it); `events2 --now --statistics all` prints a snapshot
# whose out-of-sync figure drops by 1000 KiB per call.
DRBDSETUP = """#!/bin/sh
d="{dir}"
echo "$*" >> "$d/setup-calls"
if [ "$2" = "--now" ]; then
  n=$(cat "$d/oos" 2>/dev/null || echo 10000); n=$((n - 1000)); echo $n > "$d/oos"
  echo "exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 \
replication:SyncTarget peer-disk:UpToDate out-of-sync:$n"
  echo "exists -"
  exit 0
fi
cat "$d/exists"
echo "change connection name:r0 peer-node-id:0 conn-name:peer connection:Connected"
[ -e "$d/die" ] && {{ echo "drbdsetup: something broke" >&2; exit 20; }}
exec sleep 30
"""


def fake_drbdsetup(tmp: Path, *, die: bool, exists: str = EXISTS) -> str:
    (tmp / "exists").write_text(exists)
    if die:
        (tmp / "die").touch()
    script = tmp / "drbdsetup"
    script.write_text(DRBDSETUP.format(dir=tmp))
    script.chmod(0o755)
    return str(script)


def test_monitor_restarts_a_dying_child_and_keeps_the_state(tmp_path: Path):
    mon = Events2Monitor(["r0"], drbdsetup=fake_drbdsetup(tmp_path, die=True),
                         restart_delay=0.1, poll_sync=60)

    async def main() -> None:
        mon.start()
        try:
            await until("two restarts", lambda: mon.restarts >= 2)
        finally:
            await mon.stop()

    asyncio.run(main())
    view = mon.views["r0"]
    assert (view.role, view.peer_role, view.disk, view.replication) == (
        "Secondary", "Primary", "Inconsistent", "SyncTarget")
    assert "exit status 20" in mon.last_error and "something broke" in mon.last_error
    calls = (tmp_path / "setup-calls").read_text().splitlines()
    assert calls.count("events2 --statistics all") >= 2  # the first child and a restart


@pytest.mark.slow  # a real monitor polling every 0.3 s
def test_monitor_polls_statistics_during_a_resync(tmp_path: Path):
    mon = Events2Monitor(["r0"], drbdsetup=fake_drbdsetup(tmp_path, die=False),
                         restart_delay=0.1, poll_sync=0.3)

    async def main() -> None:
        mon.start()
        try:
            await until("three snapshots", lambda: (mon.views["r0"].out_of_sync_kib or 1e9)
                        <= 7000, timeout=15)
            await asyncio.sleep(0.1)
        finally:
            await mon.stop()

    asyncio.run(main())
    (st,) = mon.status()
    assert st["syncing"] is True
    assert st["out_of_sync_kib"] is not None and st["out_of_sync_kib"] <= 7000
    assert st["sync_done_percent"] is not None and st["sync_done_percent"] >= 30.0
    assert st["sync_rate_kib_s"] is not None and st["sync_rate_kib_s"] > 0
    assert st["sync_eta_s"] is not None and st["sync_eta_s"] > 0
    text = format_replica(st)
    assert "SyncTarget" in text and "KiB/s" in text and "done in ~" in text


def _written(path: Path) -> bool:
    """``path`` holds a whole line (a shell's ``echo $$ > path`` creates the file first)."""
    try:
        return path.read_text().endswith("\n")
    except FileNotFoundError:
        return False


def test_stopping_the_monitor_kills_and_reaps_its_child(tmp_path: Path):
    """The events2 child ignores SIGTERM: stop() kills its group after the grace and reaps
    it (it used to be killed alone, outside the runner)."""
    script = tmp_path / "drbdsetup"
    script.write_text(f"#!/bin/sh\ntrap '' TERM\necho $$ > {tmp_path}/pid\n"
                      f"sh -c 'trap \"\" TERM; echo $$ > {tmp_path}/grandchild; "
                      "exec sleep 60' &\ncat \"$0.exists\"\nwait\n")
    script.chmod(0o755)
    (tmp_path / "drbdsetup.exists").write_text(EXISTS)
    mon = Events2Monitor(["r0"], drbdsetup=str(script), poll_sync=60, kill_grace=0.2)

    async def main() -> None:
        mon.start()
        try:
            # the grandchild's pid written whole (the file exists before its line does)
            await until("the state", lambda: mon.views["r0"].role is not None
                        and _written(tmp_path / "grandchild"))
        finally:
            await mon.stop()

    asyncio.run(main())
    pid = int((tmp_path / "pid").read_text())
    # killed and reaped: not even a zombie, not a child of this process any more (asked of
    # the kernel by pid and parent, not /proc/PID, which a new process may have taken)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    # the grandchild (not ours to reap) was killed with the group: SIGKILL is delivered
    # asynchronously, so it may run for a moment longer
    assert _dies(int((tmp_path / "grandchild").read_text()))


def test_monitor_reports_a_missing_tool(tmp_path: Path):
    mon = Events2Monitor(["r0"], drbdsetup=str(tmp_path / "nope"), restart_delay=0.05)

    async def main() -> None:
        mon.start()
        try:
            await until("a restart", lambda: mon.restarts >= 1)
        finally:
            await mon.stop()

    asyncio.run(main())
    assert "cannot run" in mon.last_error
    assert "restarting" in format_replica(mon.status()[0])


# -- the supervisor's commands ------------------------------------------------------------------

_keep: list[int] = []


def drbd_node(tmp: Path) -> tuple[Path, Path]:
    """A one-node configuration whose group is drbddisk::r0, and a fake drbdadm."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    _keep.extend([master, slave])
    keys = tmp / "authkeys"
    keys.write_text("auth 1\n1 sha256 drbd-test-secret\n")
    keys.chmod(0o600)
    cfg = tmp / "cluster.toml"
    cfg.write_text(f"""
[cluster]
name = "drbdtest"
[timing]
keepalive = "50ms"
deadtime = "200ms"
initdead = "200ms"
[watchdog]
mode = "off"
[[node]]
name = "node1"
[[node]]
name = "node2"
[[link]]
type = "serial"
device = "{os.ttyname(slave)}"
[[group]]
name = "app"
preferred = "node1"
resources = ["drbddisk::r0"]
monitor_interval = "200ms"
""")
    script = tmp / "drbdadm"
    script.write_text(DRBDADM.format(root=tmp))
    script.chmod(0o755)
    (tmp / "role").write_text("Secondary/Unknown\n")
    (tmp / "dstate").write_text("Outdated/DUnknown\n")
    (tmp / "cstate").write_text("WFConnection\n")
    return cfg, script


def run_drbd_node(tmp: Path, scenario: Callable[[Supervisor], Awaitable[None]], *,
                  state: tuple[str, str, str] | None = None, exists: str | None = None,
                  hooks: bool = False) -> Supervisor:
    """One node whose group is drbddisk::r0; ``state`` (role, dstate, cstate) and ``exists``
    (the monitor's first lines) replace the Outdated replica; ``hooks``: the agent gets the
    loop's view of DRBD and of the peer, as in production."""
    cfg_path, drbdadm = drbd_node(tmp)
    if state is not None:
        for name, text in zip(("role", "dstate", "cstate"), state, strict=True):
            (tmp / name).write_text(text + "\n")
    cfg = load_config(cfg_path)
    assert drbd_resources(cfg) == ["r0"]

    def factory(spec: ResourceSpec) -> Any:
        extra = sup.drbd_hooks() if hooks else {
            "drbd_split_brain": lambda r: sup.drbd_monitor is not None
            and sup.drbd_monitor.views[r].split_brain}
        return make_agent(spec, AgentContext(
            takeover=cfg.takeover, drbdadm=str(drbdadm), modprobe="true", command_timeout=10,
            run_dir=tmp / "run", drbd_connect_wait=0.2, drbd_sync_wait=0.2,
            drbd_peer_wait=0.5, **extra))

    # the monitor's child is a fake that prints the Outdated state and waits
    exists = exists or ("exists resource name:r0 role:Secondary\n"
                        "exists connection name:r0 connection:Connecting role:Unknown\n"
                        "exists device name:r0 volume:0 minor:0 disk:Outdated\n"
                        "exists peer-device name:r0 volume:0 replication:Off "
                        "peer-disk:DUnknown\n"
                        "exists -\n")
    mon = Events2Monitor(["r0"], drbdsetup=fake_drbdsetup(tmp, die=False, exists=exists),
                         poll_sync=60)
    sup = Supervisor(cfg, "node1", tmp / "state", agent_factory=factory, drbd_monitor=mon)
    sup.drbdadm = str(drbdadm)
    return drive(sup, scenario)


def drbd_calls(tmp: Path) -> list[str]:
    """drbdadm calls, without the state queries of the group's monitoring."""
    return [c for c in (tmp / "calls").read_text().splitlines()
            if c.split()[0] not in ("role", "dstate", "cstate", "sh-dev")]


@pytest.mark.slow  # a real supervisor loop
def test_outdated_replica_is_refused_then_force_data_takes_over(tmp_path: Path):
    answers: dict[str, Any] = {}

    async def scenario(sup: Supervisor) -> None:
        # the peer never answers: node1 tries to start the group, drbddisk refuses
        await until("the refusal", lambda: any(
            "refusing to promote DRBD resource r0: the local disk is Outdated" in r
            for _t, r in sup.history))
        await until("the group to be marked failed", lambda: group(sup)["failed"])
        await until("the monitor's view", lambda: sup.status()["replication"][0]["disk"]
                    == "Outdated")
        answers["status"] = sup.status()
        answers["plain"] = await sup.control.handle({"command": "takeover", "group": "app",
                                                  "force_data": False})
        answers["force"] = await sup.control.handle({"command": "takeover", "group": "app",
                                                  "force_data": True})
        await until("the group to run", lambda: group(sup)["local"] == "running")

    run_drbd_node(tmp_path, scenario)
    st = answers["status"]["replication"][0]
    # (the fake's stream ends with a change to Connected)
    assert (st["disk"], st["connection"], st["monitor"]) == ("Outdated", "Connected",
                                                            "running")
    assert answers["status"]["groups"][0]["failed"]
    force = answers["force"]
    assert force["ok"] is True
    assert any("Outdated" in r and "missing here" in r for r in force["reasons"])
    calls = drbd_calls(tmp_path)
    assert "primary --force r0" in calls
    assert calls.count("primary --force r0") == 1 and "primary r0" not in calls


@pytest.mark.slow  # a real supervisor loop
def test_a_dead_peer_still_connected_in_drbd_is_dropped_through_the_loop(tmp_path: Path):
    """The whole path: the core declares the peer dead (never heard within initdead), starts
    the group; the promotion machine, fed by the loop's hooks, drops DRBD's connection to the
    dead Primary peer at once, promotes and listens again."""
    exists = ("exists resource name:r0 role:Secondary\n"
              "exists connection name:r0 connection:Connected role:Primary\n"
              "exists device name:r0 volume:0 minor:0 disk:UpToDate\n"
              "exists peer-device name:r0 volume:0 replication:Established "
              "peer-disk:UpToDate\n"
              "exists -\n")
    seen: dict[str, Any] = {}

    async def scenario(sup: Supervisor) -> None:
        await until("the group to run", lambda: group(sup)["local"] == "running")
        seen["liveness"] = sup.peer_liveness()
        seen["history"] = [r for _t, r in sup.history]

    run_drbd_node(tmp_path, scenario, hooks=True, exists=exists,
                  state=("Secondary/Primary", "UpToDate/UpToDate", "Connected"))
    calls = drbd_calls(tmp_path)
    assert [c for c in calls if c.split()[0] in ("disconnect", "primary", "connect")] == [
        "disconnect --force r0", "primary r0", "connect r0"]
    assert seen["liveness"].dead and seen["liveness"].hearing == ()
    assert "not heard within initdead" in seen["liveness"].reason


@pytest.mark.slow  # a real supervisor loop
def test_without_the_core_saying_dead_the_loop_never_disconnects(tmp_path: Path):
    """Same DRBD state, but the agent has no view of the peer (a live peer is never
    dropped): it waits for DRBD to show the peer demoted, and refuses when it does not."""
    exists = ("exists resource name:r0 role:Secondary\n"
              "exists connection name:r0 connection:Connected role:Primary\n"
              "exists device name:r0 volume:0 minor:0 disk:UpToDate\n"
              "exists peer-device name:r0 volume:0 replication:Established "
              "peer-disk:UpToDate\n"
              "exists -\n")

    async def scenario(sup: Supervisor) -> None:
        await until("the refusal", lambda: any("the peer is Primary" in r
                                               for _t, r in sup.history), timeout=40)

    run_drbd_node(tmp_path, scenario, hooks=False, exists=exists,
                  state=("Secondary/Primary", "UpToDate/UpToDate", "Connected"))
    assert not any(c.startswith(("disconnect", "primary")) for c in drbd_calls(tmp_path))


def test_force_data_needs_a_drbd_group(tmp_path: Path):
    answers: dict[str, Any] = {}

    async def scenario(sup: Supervisor) -> None:
        answers["none"] = await sup.control.handle({"command": "takeover", "force_data": True})
        answers["bad"] = await sup.control.handle({"command": "takeover", "group": "nope",
                                                "force_data": True})

    run_drbd_node(tmp_path, scenario)
    assert answers["none"]["ok"] is False and "group name" in answers["none"]["error"]
    assert answers["bad"]["ok"] is False and "no drbddisk" in answers["bad"]["error"]


def test_resolve_split_brain_on_the_victim_and_on_the_survivor(tmp_path: Path):
    answers: dict[str, Any] = {}

    async def scenario(sup: Supervisor) -> None:
        mon = sup.drbd_monitor
        assert mon is not None
        await until("the monitor", lambda: mon.views["r0"].disk == "Outdated")
        answers["nothing"] = await sup.control.handle({"command": "resolve-split-brain",
                                                    "discard": "node3"})
        mon.feed_line("call helper name:r0 volume:0 minor:0 helper:split-brain")
        mon.feed_line("destroy connection name:r0")
        answers["status"] = sup.status()["replication"][0]
        (tmp_path / "calls").write_text("")
        answers["victim"] = await sup.control.handle({"command": "resolve-split-brain",
                                                   "discard": "node1"})
        answers["victim_calls"] = drbd_calls(tmp_path)
        (tmp_path / "calls").write_text("")
        answers["survivor"] = await sup.control.handle({"command": "resolve-split-brain",
                                                     "discard": "node2"})
        answers["survivor_calls"] = drbd_calls(tmp_path)
        mon.views["r0"].role = "Primary"
        answers["primary"] = await sup.control.handle({"command": "resolve-split-brain",
                                                    "discard": "node1"})

    run_drbd_node(tmp_path, scenario)
    assert answers["nothing"]["ok"] is False and "node1 or node2" in answers["nothing"]["error"]
    assert answers["status"]["split_brain"] is True
    assert "SPLIT BRAIN" in format_replica(answers["status"])
    assert answers["victim"]["ok"] is True
    assert any("DISCARDING this node's (node1) changes" in r for r in answers["victim"]["reasons"])
    assert answers["victim_calls"] == ["disconnect r0", "secondary r0",
                                       "connect --discard-my-data r0"]
    assert answers["survivor"]["ok"] is True
    assert any("node2's changes since the split will be overwritten" in r
               for r in answers["survivor"]["reasons"])
    assert answers["survivor_calls"] == ["disconnect r0", "connect r0"]
    assert answers["primary"]["ok"] is False
    assert "this node (node1) is Primary" in answers["primary"]["error"]


@pytest.mark.slow  # a real supervisor loop
def test_a_split_brain_survives_a_restart_until_it_is_resolved(tmp_path: Path):
    state = tmp_path / "state" / "split-brain.json"
    seen: dict[str, Any] = {}

    async def first(sup: Supervisor) -> None:
        mon = sup.drbd_monitor
        assert mon is not None
        await until("the monitor", lambda: mon.running)
        mon.feed_line("call helper name:r0 volume:0 minor:0 helper:split-brain")
        await until("the split brain on disk", state.exists)

    run_drbd_node(tmp_path, first)
    assert "r0" in json.loads(state.read_text())

    async def second(sup: Supervisor) -> None:
        mon = sup.drbd_monitor
        assert mon is not None
        await until("the monitor", lambda: mon.running)
        seen["status"] = sup.status()["replication"][0]
        seen["core"] = sup.state.replicas["r0"].split_brain if sup.state else None
        mon.feed_line("change connection name:r0 connection:Connected role:Primary")
        mon.feed_line("change peer-device name:r0 volume:0 replication:Established "
                      "peer-disk:UpToDate")
        await until("the file to go", lambda: not state.exists())

    run_drbd_node(tmp_path, second)
    assert seen["status"]["split_brain"] is True  # restarted: DRBD says nothing more
    assert seen["core"] is True
    assert not state.exists()


def test_a_snapshot_is_due_while_resyncing_or_while_a_primary_writes_alone():
    """8.4's events2 reports no event while a Primary writes without its peer: without a
    snapshot the status kept the out-of-sync figure of the last event (0) while 48 MiB
    waited for the peer (a QEMU scenario saw it)."""
    mon = Events2Monitor(["r0"], drbdsetup="/nonexistent", poll_sync=1.0, poll_diverging=5.0)
    view = mon.views["r0"]
    view.role, view.connection = "Primary", "Connected"
    assert mon.snapshot_due(100.0) == ""  # in sync, connected: events say it all
    view.connection = "Connecting"
    why = mon.snapshot_due(100.0)
    assert "Primary without its peer (Connecting)" in why
    mon._last_snapshot = 100.0
    assert mon.snapshot_due(103.0) == ""  # within poll_diverging
    assert mon.snapshot_due(105.0) != ""
    view.role = "Secondary"
    assert mon.snapshot_due(200.0) == ""  # a Secondary alone writes nothing
    view.connection, view.replication = "Connected", "SyncTarget"
    assert mon.snapshot_due(101.0) == "r0 is resynchronising (SyncTarget)"
    assert mon.snapshot_due(100.5) == ""  # within poll_sync


@pytest.mark.slow  # a real monitor polling a fake drbdsetup
def test_monitor_counts_what_a_lone_primary_writes(tmp_path: Path):
    exists = ("exists resource name:r0 role:Primary suspended:no\n"
              "exists connection name:r0 peer-node-id:0 conn-name:peer connection:Connecting "
              "role:Unknown\n"
              "exists device name:r0 volume:0 minor:0 disk:UpToDate\n"
              "exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 "
              "replication:Off peer-disk:Outdated received:0 sent:0\n"
              "exists -\n")
    (tmp_path / "exists").write_text(exists)
    script = tmp_path / "drbdsetup"
    script.write_text(f"""#!/bin/sh
if [ "$2" = "--now" ]; then
  echo "exists peer-device name:r0 peer-node-id:0 conn-name:peer volume:0 \\
replication:Off peer-disk:Outdated received:0 sent:0 out-of-sync:49232"
  echo "exists -"
  exit 0
fi
cat {tmp_path}/exists
exec sleep 30
""")
    script.chmod(0o755)
    mon = Events2Monitor(["r0"], drbdsetup=str(script), poll_sync=0.1, poll_diverging=0.2)

    async def main() -> None:
        mon.start()
        try:
            await until("the snapshot's figure", lambda: mon.views["r0"].out_of_sync_kib
                        == 49232, timeout=10)
        finally:
            await mon.stop()

    asyncio.run(main())
    (st,) = mon.status()
    assert st["out_of_sync_kib"] == 49232 and st["syncing"] is False
