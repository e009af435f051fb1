"""The DRBD promotion machine (supervisor.core.promotion): its rules one by one with a fake
clock, a property (a peer heard on any link is never disconnected), and the two-node
simulator with a fake DRBD pair (tests.drbdsim)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core import promotion
from supervisor.core.promotion import (
    CommandDone,
    Connect,
    Disconnect,
    Limits,
    Observed,
    PeerChanged,
    PeerLiveness,
    Phase,
    Promote,
    Promoted,
    Refuse,
    ReplicaChanged,
    ReplicaSnapshot,
    TimePassed,
    Wait,
    peer_liveness,
)
from tests.drbdsim import DrbdSim, FakeDrbd, drbd_config

DEAD = peer_liveness("node1", True, "peer node1 silent on all links for 0.5 s "
                                    "(deadtime 0.5 s)", ())
ALIVE = peer_liveness("node1", False, "", ("serial",))
LIMITS = Limits(connect_wait=15.0, sync_wait=40.0, peer_wait=20.0)

CONNECTED_TO_PRIMARY = ReplicaSnapshot("Secondary", "Primary", "Connected", "UpToDate",
                                       "UpToDate", "Established")
STANDALONE = ReplicaSnapshot("Secondary", "Unknown", "StandAlone", "UpToDate", "DUnknown")
SYNC_TARGET = ReplicaSnapshot("Secondary", "Secondary", "Connected", "Inconsistent",
                              "UpToDate", "SyncTarget", done=40.0, eta_s=12.0)


def begin(replica: ReplicaSnapshot, peer: PeerLiveness, *, force: bool = False, now=100.0):
    return promotion.begin("r0", now, replica=replica, peer=peer, limits=LIMITS, force=force)


def test_peer_dead_on_all_links_disconnect_promote_connect():
    m, a = begin(CONNECTED_TO_PRIMARY, DEAD)
    assert isinstance(a, Disconnect)
    assert "silent on all links" in a.reason
    assert "instead of waiting for DRBD's own ping" in a.reason
    # the events2 line saying StandAlone may come after the command's result: no matter
    m, a = promotion.feed(m, CommandDone("disconnect", True), 100.1)
    assert isinstance(a, Promote) and not a.force
    assert "fence-peer handler answers 'peer unreachable'" in a.reason
    m, a = promotion.feed(m, CommandDone("promote", True), 100.2)
    assert isinstance(a, Connect) and "resynchronises from here" in a.reason
    m, a = promotion.feed(m, CommandDone("connect", True), 100.3)
    assert isinstance(a, Promoted) and m.phase is Phase.DONE


def test_peer_dead_and_drbd_already_noticed_no_disconnect():
    m, a = begin(STANDALONE, DEAD)
    assert isinstance(a, Promote)
    m, a = promotion.feed(m, CommandDone("promote", True), 100.1)
    assert isinstance(a, Promoted)  # it did not disconnect, so it does not connect either


def test_peer_alive_on_a_link_never_disconnects_waits_then_refuses():
    m, a = begin(CONNECTED_TO_PRIMARY, ALIVE)
    assert isinstance(a, Wait) and a.kind == "peer-primary" and a.until == 120.0
    assert "the peer is heard on serial" in a.reason
    m, a = promotion.feed(m, TimePassed(), 110.0)
    assert isinstance(a, Wait)
    m, a = promotion.feed(m, TimePassed(), 120.0)
    assert isinstance(a, Refuse)
    assert "the peer is Primary" in a.reason and "still so after 20.0 s" in a.reason


def test_peer_demotes_during_the_wait():
    m, a = begin(CONNECTED_TO_PRIMARY, ALIVE)
    secondary = ReplicaSnapshot("Secondary", "Secondary", "Connected", "UpToDate", "UpToDate",
                                "Established")
    m, a = promotion.feed(m, ReplicaChanged(secondary), 101.0)
    assert isinstance(a, Promote)


def test_peer_declared_dead_during_the_wait_is_disconnected_then():
    m, a = begin(CONNECTED_TO_PRIMARY, ALIVE)
    assert isinstance(a, Wait)
    m, a = promotion.feed(m, PeerChanged(DEAD), 101.0)
    assert isinstance(a, Disconnect)


def test_resync_running_waits_then_promotes():
    m, a = begin(SYNC_TARGET, ALIVE)
    assert isinstance(a, Wait) and a.kind == "resync"
    assert "40 % done, about 12 s to go" in a.reason and "up to 40.0 s" in a.reason
    done = ReplicaSnapshot("Secondary", "Secondary", "Connected", "UpToDate", "UpToDate",
                           "Established")
    m, a = promotion.feed(m, ReplicaChanged(done), 112.0)
    assert isinstance(a, Promote) and not a.force


def test_resync_that_does_not_finish_in_time_is_refused_with_the_reason():
    m, a = begin(SYNC_TARGET, ALIVE)
    m, a = promotion.feed(m, Observed(SYNC_TARGET, ALIVE), 139.0)
    assert isinstance(a, Wait)
    m, a = promotion.feed(m, TimePassed(), 140.0)
    assert isinstance(a, Refuse)
    assert "the local disk is Inconsistent" in a.reason
    assert "did not become UpToDate within 40.0 s" in a.reason


def test_resync_source_dies_refuse_at_once_after_dropping_it():
    m, a = begin(SYNC_TARGET, ALIVE)
    m, a = promotion.feed(m, PeerChanged(DEAD), 101.0)
    assert isinstance(a, Disconnect)
    m, a = promotion.feed(m, CommandDone("disconnect", True), 101.1)
    # undo our disconnect (listen again), then refuse: no resync can finish
    assert isinstance(a, Connect)
    m, a = promotion.feed(m, CommandDone("connect", True), 101.2)
    assert isinstance(a, Refuse)
    assert "no resync can make it UpToDate" in a.reason and m.phase is Phase.REFUSED


def test_new_pair_bootstrap_and_wait_for_the_peer_to_connect():
    blank = ReplicaSnapshot("Secondary", "Unknown", "Connecting", "Inconsistent", "DUnknown")
    m, a = begin(blank, ALIVE)
    assert isinstance(a, Wait) and a.kind == "connect" and a.until == 115.0
    both = ReplicaSnapshot("Secondary", "Secondary", "Connected", "Inconsistent",
                           "Inconsistent", "Established")
    m, a = promotion.feed(m, ReplicaChanged(both), 103.0)
    assert isinstance(a, Promote) and a.force and a.bootstrap
    assert "initial full sync" in a.reason


def test_new_pair_without_the_peer_is_refused_after_connect_wait():
    blank = ReplicaSnapshot("Secondary", "Unknown", "Connecting", "Inconsistent", "DUnknown")
    m, a = begin(blank, ALIVE)
    m, a = promotion.feed(m, TimePassed(), 115.0)
    # then the resync rule: still catching up (Connecting) until sync_wait
    assert isinstance(a, Wait) and a.kind == "resync"
    m, a = promotion.feed(m, TimePassed(), 140.0)
    assert isinstance(a, Refuse) and "Inconsistent" in a.reason


@pytest.mark.parametrize(("disk", "fragment"), [
    ("Outdated", "the peer marked it stale"),
    ("Consistent", "the peer may hold newer data"),
    ("Inconsistent", "no resync can make it UpToDate"),
])
def test_stale_data_and_a_dead_peer_is_refused_at_once(disk, fragment):
    _m, a = begin(ReplicaSnapshot("Secondary", "Unknown", "Connecting", disk, "DUnknown"), DEAD)
    assert isinstance(a, Refuse) and fragment in a.reason


def test_forced_outdated_promotes_with_force_and_says_the_risk():
    _m, a = begin(ReplicaSnapshot("Secondary", "Unknown", "Connecting", "Outdated", "DUnknown"),
                  DEAD, force=True)
    assert isinstance(a, Promote) and a.force and "missing here" in a.risk


def test_forced_never_promotes_next_to_a_primary():
    m, a = begin(CONNECTED_TO_PRIMARY, ALIVE, force=True)
    m, a = promotion.feed(m, TimePassed(), 120.0)
    assert isinstance(a, Refuse) and "the peer is Primary" in a.reason


def test_split_brain_refused_unless_forced():
    sb = ReplicaSnapshot("Secondary", "Unknown", "StandAlone", "UpToDate", "DUnknown",
                         split_brain=True)
    assert isinstance(begin(sb, DEAD)[1], Refuse)
    assert isinstance(begin(sb, DEAD, force=True)[1], Promote)


@pytest.mark.parametrize("command", ["disconnect", "promote"])
def test_a_failed_command_refuses_with_its_stderr(command):
    m, a = begin(CONNECTED_TO_PRIMARY, DEAD)
    detail = f"drbdadm {command} r0 failed (exit 11): State change failed: (-10) boom"
    if command == "promote":
        m, a = promotion.feed(m, CommandDone("disconnect", True), 100.1)
    m, a = promotion.feed(m, CommandDone(command, False, detail), 100.2)
    if command == "promote":  # it disconnected: it listens again before refusing
        assert isinstance(a, Connect)
        m, a = promotion.feed(m, CommandDone("connect", True), 100.3)
    assert isinstance(a, Refuse) and detail in a.reason


def test_connect_failure_after_promotion_refuses():
    m, a = begin(CONNECTED_TO_PRIMARY, DEAD)
    m, a = promotion.feed(m, CommandDone("disconnect", True), 100.1)
    m, a = promotion.feed(m, CommandDone("promote", True), 100.2)
    m, a = promotion.feed(m, CommandDone("connect", False, "exit 10: unknown resource"), 100.3)
    assert isinstance(a, Refuse) and "cannot listen for the peer again: exit 10" in a.reason


def test_drbdadm_8_4_output_to_snapshot():
    s = ReplicaSnapshot.from_drbdadm("Secondary/Primary\n", "Inconsistent/UpToDate\n",
                                     "SyncTarget\n")
    assert (s.role, s.peer_role, s.connection, s.replication, s.disk, s.peer_disk) == (
        "Secondary", "Primary", "Connected", "SyncTarget", "Inconsistent", "UpToDate")
    s = ReplicaSnapshot.from_drbdadm("Secondary/Unknown\n", "UpToDate/DUnknown\n",
                                     "WFConnection\n")
    assert (s.connection, s.connected, s.peer_role) == ("Connecting", False, "Unknown")


def test_liveness_is_dead_only_when_declared_and_no_link_delivers():
    assert peer_liveness("p", True, "x", ("serial",)).dead is False
    assert peer_liveness("p", False, "", ()).dead is False
    assert peer_liveness("p", True, "gone", ()).dead is True


# -- property: a peer heard on any link is never disconnected ------------------------------

ROLES = st.sampled_from(["Secondary", "Primary", "Unknown"])
CONNS = st.sampled_from(["Connected", "Connecting", "StandAlone"])
DISKS = st.sampled_from(["UpToDate", "Outdated", "Inconsistent", "Consistent", "DUnknown",
                         "Diskless"])
REPL = st.sampled_from(["Off", "Established", "SyncTarget", "SyncSource"])
SNAPSHOTS = st.builds(ReplicaSnapshot, st.sampled_from(["Secondary"]), ROLES, CONNS, DISKS,
                      DISKS, REPL, st.booleans())
HEARING = st.lists(st.sampled_from(["serial", "crossover", "public"]), min_size=1,
                   max_size=3, unique=True).map(tuple)


@settings(max_examples=300, deadline=None)
@given(first=SNAPSHOTS, steps=st.lists(st.tuples(SNAPSHOTS, HEARING, st.floats(0, 60)),
                                       max_size=8), force=st.booleans())
def test_a_peer_heard_on_any_link_is_never_disconnected(first, steps, force):
    m, a = begin(first, peer_liveness("node1", True, "was dead", ("public",)), force=force)
    now = 100.0
    assert not isinstance(a, Disconnect)
    for replica, hearing, dt in steps:
        now += dt
        peer = peer_liveness("node1", True, "declared dead earlier", hearing)
        m, a = promotion.feed(m, Observed(replica, peer), now)
        assert not isinstance(a, Disconnect), (replica, hearing)
        if isinstance(a, Promote):
            m, a = promotion.feed(m, CommandDone("promote", True), now)
        if isinstance(a, Promoted | Refuse):
            break


@settings(max_examples=200, deadline=None)
@given(first=SNAPSHOTS, force=st.booleans(), dead=st.booleans())
def test_the_machine_always_ends(first, force, dead):
    """Whatever DRBD shows, the machine finishes (promoted or refused) by the longest
    limit; every Wait has a deadline in the future and a reason."""
    peer = DEAD if dead else ALIVE
    m, a = begin(first, peer, force=force)
    now = 100.0
    for _ in range(20):
        match a:
            case Wait():
                assert a.until > now and a.reason
                now = a.until
                m, a = promotion.feed(m, TimePassed(), now)
            case Disconnect():
                m, a = promotion.feed(m, CommandDone("disconnect", True), now)
            case Promote():
                m, a = promotion.feed(m, CommandDone("promote", True), now)
            case Connect():
                m, a = promotion.feed(m, CommandDone("connect", True), now)
            case Promoted() | Refuse():
                assert a.reason
                assert now <= 100.0 + max(LIMITS.sync_wait, LIMITS.peer_wait,
                                          LIMITS.connect_wait)
                return
    raise AssertionError(f"no end: {m}")


# -- the simulator: two cores, fake links, a fake DRBD pair ---------------------------------


def formed(**kw) -> DrbdSim:
    sim = DrbdSim(**kw)
    sim.run(3.0)
    assert sim.owner() == "node1"
    assert sim.drbd.sides["node1"].role == "Primary"
    assert sim.violations == []
    return sim


def said(sim: DrbdSim, node: str, after: float = 0.0) -> list[str]:
    return [r for t, r in sim.drbd_reasons[node] if t >= after]


def test_sim_owner_power_loss_promotes_without_waiting_for_drbds_ping():
    sim = formed()
    t0 = sim.now
    sim.kill("node1")
    sim.run(2.0)
    assert sim.owner() == "node2"
    cmds = [c for t, c in sim.drbd.commands["node2"] if t >= t0]
    assert cmds == ["disconnect --force", "primary", "connect"]
    started = [t for t, g, i in sim.nodes["node2"].starts if i == 0 and t >= t0]
    # deadtime 0.5 s (+ one keepalive) and three 10 ms commands, far from DRBD's 10.5 s
    assert started and started[0] - t0 < 0.75
    assert any("instead of waiting for DRBD's own ping" in r for r in said(sim, "node2", t0))
    # the fence-peer handler was asked and answered "peer unreachable" (5)
    answers = [a.code for _t, a in sim.nodes["node2"].fence_answers]
    assert answers == [5]
    assert sim.drbd.sides["node2"].conn == "Connecting"  # listening for node1 again


def test_sim_failback_waits_for_the_data_and_the_service_never_stops():
    """The old owner returns while node2 serves: it resynchronises as the target; auto
    failback does not move the group until node1's replica is UpToDate on both sides, so
    node2 never stops serving meanwhile and node1 never waits inside a promotion."""
    drbd = FakeDrbd(rate_kib_s=5_000.0)  # 50 MiB: 10 s
    sim = formed(drbd=drbd)
    sim.kill("node1")
    sim.run(3.0)
    assert sim.owner() == "node2"
    t1 = sim.now
    sim.restart("node1")
    for _ in range(90):  # 9 s of the resync: node2 serves all along
        sim.run(0.1)
        assert sim.owner() == "node2", sim.now - t1
    assert sim.drbd.sides["node1"].disk == "Inconsistent"
    st1 = sim.status("node1")["groups"][0]
    assert ("replica r0 is Inconsistent, resynchronising (SyncTarget" in st1["reason"]
            and "group web stays on node2 until it is UpToDate on both sides" in st1["reason"])
    assert not [t for t, _g, _i in sim.nodes["node2"].stops if t >= t1]
    sim.run(4.0)
    assert sim.owner() == "node1"
    assert sim.drbd.sides["node1"].disk == "UpToDate"
    assert [c for t, c in sim.drbd.commands["node1"] if t >= t1] == ["primary"]
    assert not any("waiting for the resync" in r for r in said(sim, "node1", t1))
    assert sim.violations == []


def test_sim_takeover_refused_while_the_replica_resyncs():
    drbd = FakeDrbd(rate_kib_s=1_000.0)  # 50 MiB: 50 s
    sim = formed(drbd=drbd, config=drbd_config(failback=False))
    sim.kill("node1")
    sim.run(3.0)
    sim.restart("node1")
    sim.run(5.0)
    reasons = sim.admin("node1", "takeover", "web")
    refused = [r for r in reasons if "takeover refused" in r]
    assert refused and "replica r0 is Inconsistent, resynchronising" in refused[0]
    sim.run(2.0)
    assert sim.owner() == "node2"


def test_sim_failover_to_a_resyncing_node_waits_up_to_the_bound_then_refuses():
    """node2, the resync source, stops twinbeat cleanly (its DRBD goes on): node1 must run
    the group while its replica is still Inconsistent; the promotion waits for the resync
    up to sync_wait, does not drop DRBD's connection to a peer that left cleanly, and
    refuses with the reason when the resync is longer."""
    drbd = FakeDrbd(rate_kib_s=500.0)  # 50 MiB: 100 s
    sim = formed(drbd=drbd, limits=Limits(sync_wait=5.0))
    sim.kill("node1")
    sim.run(3.0)
    sim.restart("node1")
    sim.run(3.0)
    t1 = sim.now
    sim.shutdown("node2")
    sim.run(10.0)
    waits = [r for r in said(sim, "node1", t1) if "waiting for the resync" in r]
    refused = [r for r in said(sim, "node1", t1) if "did not become UpToDate within 5.0 s" in r]
    assert waits and refused
    assert not any(c.startswith("disconnect") for t, c in sim.drbd.commands["node1"] if t >= t1)
    assert sim.owner() is None


def test_sim_a_live_peer_is_never_disconnected_while_drbd_shows_it_primary():
    # two links cut, serial still delivers: a handover by the protocol; DRBD on node2 sees
    # node1's demotion 1 s late (a slow replication link): node2 waits, never disconnects
    drbd = FakeDrbd(notice_delay=1.0)
    sim = formed(drbd=drbd)
    sim.cut("crossover", "public")
    t0 = sim.now
    sim.admin("node1", "standby")
    sim.run(4.0)
    assert sim.owner() == "node2"
    assert [c for t, c in sim.drbd.commands["node2"] if t >= t0] == ["primary"]
    waits = [r for r in said(sim, "node2", t0) if "DRBD still shows the peer Primary" in r]
    assert waits and "the peer is heard on serial" in waits[0]
    assert sim.violations == []


def test_sim_new_pair_bootstraps_from_the_preferred_node_once():
    drbd = FakeDrbd()
    for side in drbd.sides.values():
        side.disk = "Inconsistent"
    sim = DrbdSim(drbd=drbd)
    sim.run(3.0)
    assert sim.owner() == "node1"
    assert [c for _t, c in sim.drbd.commands["node1"]] == ["primary --force"]
    assert any("initial full sync" in r for r in said(sim, "node1"))
    assert sim.drbd.sides["node2"].disk == "Inconsistent"  # the target of the sync
    sim.run(10.0)
    assert sim.drbd.sides["node2"].disk == "UpToDate"
