"""Cluster events: every event class emitted by real core steps (the two-node simulator and
single steps), the replica rules, stamping and merging."""

from __future__ import annotations

from dataclasses import replace

import pytest

from supervisor.core import notify
from supervisor.core.actions import Emit
from supervisor.core.events import (
    AdminCommand,
    ConfigChanged,
    ConfigRejected,
    Event,
    NodeStarted,
    ReplicaChanged,
    WatchdogState,
)
from supervisor.core.notify import (
    ClusterEvent,
    Kind,
    Notice,
    Severity,
    merge,
    replica_changes,
    stamp,
)
from supervisor.core.replica import Replica
from supervisor.core.state import CoreState, initial_state
from supervisor.core.step import step
from tests.sim import KEY, Sim, make_config


def kinds(notices: list[Notice]) -> list[Kind]:
    return [n.kind for n in notices]


def emitted(sim: Sim, node: str, since: float = 0.0) -> list[Notice]:
    """The events a node's core emitted (Emit actions) since ``since``."""
    return [a.notice for t, a in sim.nodes[node].actions if t >= since and isinstance(a, Emit)]


def of(notices: list[Notice], kind: Kind) -> list[Notice]:
    return [n for n in notices if n.kind is kind]


def stepped(state: CoreState, event: Event, now: float) -> tuple[CoreState, list[Notice]]:
    result = step(state, event, now)
    return result.state, [a.notice for a in result.actions if isinstance(a, Emit)]


def started_pair(**config: object) -> Sim:
    sim = Sim(make_config(**config))  # type: ignore[arg-type]
    sim.run(5.0)
    assert sim.owner("web") == "node1"
    return sim


# --------------------------------------------------------------------------------------------
# Each event class from core steps


def test_takeover_at_start_then_failover_with_reason_when_the_owner_dies():
    sim = started_pair()
    first = emitted(sim, "node1")
    takeover = of(first, Kind.TAKEOVER)
    assert len(takeover) == 1 and takeover[0].group == "web"
    assert takeover[0].reason.startswith("acquiring group web: node2 released it to us")
    assert of(first, Kind.GROUP_STARTED)[0].reason == "group web is running on node1"
    t0 = sim.now
    sim.kill("node1")
    sim.run(3.0)
    assert sim.owner("web") == "node2"
    got = emitted(sim, "node2", t0)
    order = kinds(got)
    assert order.index(Kind.PEER_DEAD) < order.index(Kind.FAILOVER) < order.index(
        Kind.GROUP_STARTED)
    failover = of(got, Kind.FAILOVER)[0]
    assert failover.group == "web" and failover.level is Severity.CRITICAL
    assert failover.reason.startswith("taking over group web: peer node1 silent on all links "
                                      "for 0.5 s")
    dead = of(got, Kind.PEER_DEAD)[0]
    # the failover's reason is the peer's death, and what the watchdog window said of it
    assert dead.subject == "node1" and failover.reason.split(": ", 1)[1].startswith(dead.reason)
    assert all(n.link for n in of(got, Kind.LINK_DOWN))


def test_peer_back_release_and_group_stopped():
    sim = started_pair()
    sim.kill("node1")
    sim.run(3.0)
    t0 = sim.now
    sim.restart("node1")
    sim.run(5.0)
    assert sim.owner("web") == "node1"  # auto_failback
    got = emitted(sim, "node2", t0)
    back = of(got, Kind.PEER_BACK)
    assert len(back) == 1 and back[0].subject == "node1"
    assert back[0].reason.startswith("peer node1 is alive (heard on ")
    release = of(got, Kind.RELEASE)
    assert len(release) == 1 and release[0].group == "web"
    assert release[0].reason.startswith("group web: releasing it to node1:")
    assert of(got, Kind.GROUP_STOPPED)[0].reason == "group web stopped on node2"
    # node1 heard node2 within initdead: getting the group back is a takeover, no failover
    again = emitted(sim, "node1", t0)
    assert of(again, Kind.TAKEOVER) and not of(again, Kind.FAILOVER)


def test_link_down_and_up_with_the_link():
    sim = started_pair()
    t0 = sim.now
    sim.cut("serial")
    sim.run(1.0)
    down = of(emitted(sim, "node2", t0), Kind.LINK_DOWN)
    assert [n.link for n in down] == ["serial"]
    assert down[0].reason.startswith("link serial down: no heartbeat for 0.5 s")
    assert down[0].level is Severity.WARNING
    assert not of(emitted(sim, "node2", t0), Kind.PEER_DEAD)
    t1 = sim.now
    sim.heal("serial")
    sim.run(1.0)
    up = of(emitted(sim, "node2", t1), Kind.LINK_UP)
    assert [(n.link, n.reason) for n in up] == [("serial", "link serial up again")]


def test_group_failed_and_recovered():
    sim = started_pair(max_restarts=0)
    t0 = sim.now
    sim.nodes["node1"].running[("web", 2)] = False  # httpd dies; no restarts allowed
    sim.run(3.0)
    got = emitted(sim, "node1", t0)
    release = of(got, Kind.RELEASE)[0]
    assert "giving the group up" in release.reason
    failed = of(got, Kind.GROUP_FAILED)
    assert len(failed) == 1 and failed[0].level is Severity.CRITICAL
    assert failed[0].reason == ("group web failed on node1 (httpd kept failing); not eligible "
                                "for 30.0 s")
    assert sim.owner("web") == "node2"
    t1 = sim.now
    sim.admin("node1", "cleanup", "web")
    recovered = of(emitted(sim, "node1", t1), Kind.GROUP_RECOVERED)
    assert [n.reason for n in recovered] == ["cleanup of group web: failures forgotten"]


def test_a_blocked_stop_is_a_failed_group():
    sim = started_pair(on_stop_failure="block")
    sim.nodes["node1"].fail_stop.add(("web", 2))
    t0 = sim.now
    sim.admin("node1", "standby", "web")
    sim.run(1.0)
    failed = of(emitted(sim, "node1", t0), Kind.GROUP_FAILED)
    assert len(failed) == 1 and "group web is blocked on node1" in failed[0].reason


def test_failure_expiry_is_a_recovery():
    sim = started_pair(max_restarts=0, failure_timeout="2s")
    sim.nodes["node1"].running[("web", 2)] = False
    sim.run(5.0)
    recovered = of(emitted(sim, "node1"), Kind.GROUP_RECOVERED)
    assert [n.reason for n in recovered] == [
        "failure of group web on node1 expired; eligible again"]


def test_watchdog_not_armed():
    state = initial_state(make_config(watchdog="required"), "node1", KEY, 1, 0.0)
    _, got = stepped(state, WatchdogState(False, "no watchdog device found", armed=False), 0.1)
    assert kinds(got) == [Kind.WATCHDOG_NOT_ARMED] and got[0].level is Severity.CRITICAL
    assert got[0].reason == ("watchdog: no watchdog device found; this node may not own "
                             "groups")
    # automatic mode without a device: it may own groups, the event is a warning
    state = initial_state(make_config(watchdog="automatic"), "node1", KEY, 1, 0.0)
    _, got = stepped(state, WatchdogState(True, "no watchdog device found", armed=False), 0.1)
    assert kinds(got) == [Kind.WATCHDOG_NOT_ARMED] and got[0].level is Severity.WARNING
    state = initial_state(make_config(watchdog="required"), "node1", KEY, 1, 0.0)
    _, got = stepped(state, WatchdogState(True, "armed /dev/watchdog0"), 0.1)
    assert kinds(got) == [Kind.WATCHDOG_ARMED]


def test_world_lost_and_regained():
    sim = started_pair(extra_cluster='public_interface = "eth0"')
    t0 = sim.now
    sim.set_world("node1", False)
    sim.run(0.5)
    lost = of(emitted(sim, "node1", t0), Kind.WORLD_LOST)
    assert [n.reason for n in lost] == [
        "this node is cut off: public interface eth0 has no carrier"]
    assert lost[0].level is Severity.CRITICAL
    t1 = sim.now
    sim.set_world("node1", True)
    sim.run(0.5)
    assert kinds(emitted(sim, "node1", t1)).count(Kind.WORLD_REGAINED) == 1


DATA = """
[[group]]
name = "data"
preferred = "node1"
resources = ["drbddisk::r0", "noop::fs"]
"""


def test_replica_events_from_the_monitors_reports():
    state = initial_state(make_config(extra_groups=DATA), "node1", KEY, 1, 0.0)
    up = Replica("r0", "Secondary", "Secondary", "Connected", "UpToDate", "UpToDate")
    seen: list[Notice] = []
    for t, r in enumerate([
        up,
        replace(up, disk="Outdated", connection="Connecting", peer_disk="DUnknown"),
        replace(up, disk="Inconsistent", replication="SyncTarget", out_of_sync_kib=4096),
        up,
        replace(up, disk="Inconsistent", connection="StandAlone"),
        replace(up, connection="StandAlone", split_brain=True),
        up,
    ]):
        state, got = stepped(state, ReplicaChanged(r), 0.1 + t / 10)  # before initdead
        seen += got
        assert state.replicas["r0"] == r
    assert kinds(seen) == [Kind.REPLICA_OUTDATED, Kind.RESYNC_STARTED, Kind.REPLICA_UPTODATE,
                           Kind.RESYNC_FINISHED, Kind.REPLICA_INCONSISTENT, Kind.REPLICA_UPTODATE,
                           Kind.SPLIT_BRAIN, Kind.SPLIT_BRAIN_RESOLVED]
    assert all(n.resource == "r0" for n in seen)
    assert "4096 KiB out of sync" in seen[1].reason
    assert of(seen, Kind.SPLIT_BRAIN)[0].level is Severity.CRITICAL
    # the same report again says nothing
    assert stepped(state, ReplicaChanged(up), 0.9)[1] == []


def test_config_reloaded_and_rejected():
    state = initial_state(make_config(), "node1", KEY, 1, 0.0)
    _, got = stepped(state, ConfigChanged(make_config(max_restarts=5)), 1.0)
    assert got == [Notice(Kind.CONFIG_RELOADED, "configuration sim.toml reloaded")]
    problem = "/etc/twinbeat/cluster.toml:7: timing.deadtime: must be more than twice keepalive"
    _, got = stepped(state, ConfigRejected("/etc/twinbeat/cluster.toml", (problem,)), 1.0)
    assert kinds(got) == [Kind.CONFIG_REJECTED] and got[0].level is Severity.WARNING
    assert got[0].reason == ("configuration change in /etc/twinbeat/cluster.toml rejected, "
                             f"the running configuration stays: {problem}")


def test_how_the_last_run_ended():
    state = initial_state(make_config(), "node2", KEY, 4, 0.0)
    _, got = stepped(state, NodeStarted("watchdog", "i6300ESB timer"), 0.0)
    assert kinds(got) == [Kind.BOOTED_AFTER_RESET] and got[0].level is Severity.CRITICAL
    assert got[0].reason == ("node2 was reset by its watchdog (i6300ESB timer) while "
                             "twinbeat ran: the supervisor or the kernel hung")
    _, got = stepped(state, NodeStarted("reset"), 0.0)
    assert kinds(got) == [Kind.BOOTED_AFTER_RESET] and "power loss" in got[0].reason
    _, got = stepped(state, NodeStarted("crashed"), 0.0)
    assert kinds(got) == [Kind.NODE_STARTED] and got[0].level is Severity.WARNING
    _, got = stepped(state, NodeStarted("clean"), 0.0)
    assert got == [Notice(Kind.NODE_STARTED, "twinbeat started on node2 (generation 4)")]


def test_maintenance_on_and_off_are_events():
    sim = started_pair()
    t0 = sim.now
    sim.deliver("node1", AdminCommand("maintenance", None, 1, on=True))
    sim.run(1.0)
    on = of(emitted(sim, "node1", t0), Kind.MAINTENANCE_ON)
    assert len(on) == 1 and on[0].subject == "node1"
    assert on[0].reason == ("maintenance mode on for node1 (asked on node1): its resources "
                            "are left as they are, not monitored, not moved")
    sim.deliver("node1", AdminCommand("maintenance", None, 2, on=False))
    off = of(emitted(sim, "node1", t0), Kind.MAINTENANCE_OFF)
    assert len(off) == 1 and off[0].subject == "node1"


def test_stopping_is_an_event():
    sim = started_pair()
    t0 = sim.now
    sim.shutdown("node2")
    stopping = of(emitted(sim, "node2", t0), Kind.NODE_STOPPING)
    assert len(stopping) == 1 and "stopping every group" in stopping[0].reason


# --------------------------------------------------------------------------------------------
# The replica rules, stamping and merging


def test_replica_rules():
    up = Replica("r0", disk="UpToDate", peer_disk="UpToDate", connection="Connected")
    out = replica_changes(up, replace(up, disk="Outdated", connection="Connecting"))
    assert kinds(out) == [Kind.REPLICA_OUTDATED] and out[0].resource == "r0"
    out = replica_changes(up, replace(up, disk="Inconsistent"))
    assert kinds(out) == [Kind.REPLICA_INCONSISTENT]
    syncing = replace(up, disk="Inconsistent", replication="SyncTarget", out_of_sync_kib=4096)
    out = replica_changes(up, syncing)
    assert kinds(out) == [Kind.RESYNC_STARTED] and "4096 KiB" in out[0].reason
    out = replica_changes(syncing, up)
    assert kinds(out) == [Kind.REPLICA_UPTODATE, Kind.RESYNC_FINISHED]
    split = replace(up, connection="StandAlone", split_brain=True)
    out = replica_changes(up, split)
    assert kinds(out) == [Kind.SPLIT_BRAIN] and out[0].level is Severity.CRITICAL
    assert kinds(replica_changes(split, up)) == [Kind.SPLIT_BRAIN_RESOLVED]
    assert replica_changes(up, up) == []


def test_every_kind_has_a_severity():
    assert set(notify.KIND_SEVERITY) == set(Kind)


def test_stamp_round_trip_and_validation():
    ev = stamp(Notice(Kind.FAILOVER, "taking over group web", group="web"), node="node2",
               seq=7, mono=12.5, wall=1_800_000_000.25)
    assert ev.subject == "node2" and ev.severity is Severity.CRITICAL
    assert ClusterEvent.from_dict(ev.to_dict()) == ev
    for bad in ({}, {**ev.to_dict(), "kind": "nonsense"}, {**ev.to_dict(), "seq": -1},
                {**ev.to_dict(), "seq": True}, {**ev.to_dict(), "reason": 5},
                {**ev.to_dict(), "node": ""}):
        with pytest.raises(ValueError):
            ClusterEvent.from_dict(bad)


def test_merge_dedups_orders_and_bounds_per_node():
    def ev(node: str, seq: int, wall: float) -> ClusterEvent:
        return stamp(Notice(Kind.LINK_UP, "x"), node=node, seq=seq, mono=0.0, wall=wall)

    mine = [ev("node2", 1, 10.0), ev("node2", 2, 30.0), ev("node2", 3, 50.0)]
    theirs = [ev("node1", 5, 20.0), ev("node1", 6, 40.0), ev("node2", 2, 30.0)]
    out = merge(mine, theirs, keep=10)
    assert [e.key for e in out] == [("node2", 1), ("node1", 5), ("node2", 2), ("node1", 6),
                                    ("node2", 3)]
    out = merge(mine, theirs, keep=1)
    assert [e.key for e in out] == [("node1", 6), ("node2", 3)]
