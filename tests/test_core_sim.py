"""Failover scenarios: two decision cores joined by simulated links with a fake clock."""

from __future__ import annotations

import dataclasses

import pytest

from supervisor.core import codec
from supervisor.core.events import ConfigChanged, FrameReceived, FramesReceived, WatchdogState
from supervisor.core.states import Activity, LinkStatus, PeerStatus
from supervisor.core.step import step
from tests.sim import KEY, Sim, make_config


def formed(**kw) -> Sim:
    sim = Sim(make_config(**kw))
    sim.run(3.0)
    assert sim.owner() == "node1"
    assert sim.violations == []
    return sim


def reasons_after(sim: Sim, node: str, t: float) -> list[str]:
    return [r for at, r in sim.nodes[node].reasons if at >= t]


def test_cluster_forms_preferred_node_owns_group():
    sim = formed()
    assert sim.holders() == ["node1"]
    assert "granting group web to node1" in sim.reasons("node2")
    assert any(r.startswith("acquiring group web") for r in sim.reasons("node1"))
    st = sim.status("node2")
    assert st["peer"]["state"] == "alive"
    assert [link["state"] for link in st["links"]] == ["up", "up", "up"]
    assert st["groups"][0]["owner"] == "node1"


def test_start_order_left_to_right():
    sim = formed()
    assert [i for _, g, i in sim.nodes["node1"].starts] == [0, 1, 2]


def test_peer_death_takeover_within_deadtime():
    sim = formed()
    t0 = sim.now
    sim.kill("node1")
    sim.run(0.39)
    # not yet: the last beat came at most one keepalive (100 ms) before the kill
    assert sim.owner() is None
    sim.run(0.5)
    assert sim.owner() == "node2"
    took = [at for at, r in sim.nodes["node2"].reasons if r.startswith("taking over group web")]
    assert took and took[0] - t0 <= 0.5 + 1e-6
    assert any("silent on all links" in r for r in reasons_after(sim, "node2", t0))


@pytest.mark.parametrize("link", ["serial", "crossover", "public"])
def test_one_link_cut_is_a_warning_not_a_failover(link):
    sim = formed()
    t0 = sim.now
    sim.cut(link)
    sim.run(5.0)
    assert sim.owner() == "node1"
    assert sim.peer_status("node2") is PeerStatus.ALIVE
    st = {lk["name"]: lk["state"] for lk in sim.status("node2")["links"]}
    assert st[link] == "down"
    assert all(v == "up" for k, v in st.items() if k != link)
    assert f"link {link} down: no heartbeat for 0.5 s" in reasons_after(sim, "node2", t0)
    sim.heal(link)
    sim.run(1.0)
    st = {lk["name"]: lk["state"] for lk in sim.status("node2")["links"]}
    assert st[link] == "up"


def test_two_links_cut_no_failover_while_third_delivers():
    sim = formed()
    sim.cut("serial", "crossover")
    sim.run(5.0)
    assert sim.owner() == "node1"
    assert sim.violations == []
    down = [lk["name"] for lk in sim.status("node2")["links"] if lk["state"] == "down"]
    assert down == ["serial", "crossover"]


def test_all_links_cut_is_split_brain_then_heal_leaves_one_owner():
    sim = formed()
    sim.check_invariant = False
    sim.cut()
    sim.run(2.0)
    assert sorted(sim.holders()) == ["node1", "node2"]  # the documented split-brain case
    sim.heal()
    sim.run(2.0)
    assert sim.holders() == ["node1"]
    assert any("both nodes hold it" in r for r in sim.reasons("node2"))


def test_flapping_link_does_not_fail_over():
    sim = formed()
    for _ in range(20):
        sim.cut("crossover")
        sim.run(0.7)
        sim.heal("crossover")
        sim.run(0.3)
    assert sim.owner() == "node1"
    assert sim.violations == []
    assert not any("taking over" in r for r in sim.reasons("node2"))


def test_delayed_and_reordered_frames_never_double_own():
    sim = formed()
    for link in sim.links.values():
        link.delay = 0.05
        link.jitter = 0.15  # reorders frames within a link (old ones are then dropped)
        link.loss = 0.2
    sim.run(20.0)
    assert sim.owner() == "node1"
    assert sim.violations == []
    assert sim.nodes["node2"].state.dropped.get("replay", 0) > 0


def test_simultaneous_start_gives_group_to_preferred_node_once():
    for seed in range(20):
        sim = Sim(make_config(), seed=seed, start_gap=0.0)
        sim.run(3.0)
        assert sim.owner() == "node1", seed
        assert sim.violations == []
        assert len(sim.nodes["node1"].starts) == 3


def test_backup_alone_takes_over_after_initdead():
    sim = Sim(make_config(initdead="2s"))
    sim.kill("node1")
    sim.run(1.9)
    assert sim.owner() is None
    assert "waiting up to initdead" in sim.nodes["node2"].state.groups["web"].reason
    sim.run(0.3)
    assert sim.owner() == "node2"
    assert any("not heard within initdead" in r for r in sim.reasons("node2"))


def test_failback_on_returns_group_to_preferred_node():
    sim = formed(failback=True)
    sim.kill("node1")
    sim.run(1.0)
    assert sim.owner() == "node2"
    sim.restart("node1")
    sim.run(3.0)
    assert sim.owner() == "node1"
    assert sim.violations == []
    assert any("releasing it to node1" in r for r in sim.reasons("node2"))


def test_failback_off_leaves_group_where_it_is():
    sim = formed(failback=False)
    sim.kill("node1")
    sim.run(1.0)
    sim.restart("node1")
    sim.run(5.0)
    assert sim.owner() == "node2"
    assert "auto_failback is off" in sim.nodes["node1"].state.groups["web"].reason


def test_admin_standby_and_takeover():
    sim = formed(failback=True)
    reasons = sim.admin("node1", "standby")
    assert "admin standby: group web should run on node2" in reasons
    sim.run(2.0)
    assert sim.owner() == "node2"
    assert sim.violations == []
    sim.run(5.0)  # pinned: auto_failback does not pull it back
    assert sim.owner() == "node2"
    sim.admin("node1", "takeover", "web")
    sim.run(2.0)
    assert sim.owner() == "node1"
    assert sim.violations == []


def test_standby_refused_when_peer_dead():
    sim = formed()
    sim.kill("node2")
    sim.run(1.0)
    reasons = sim.admin("node1", "standby")
    assert any(r.startswith("standby refused: peer node2 is not alive") for r in reasons)
    sim.run(1.0)
    assert sim.owner() == "node1"


def test_admin_unknown_group_refused():
    sim = formed()
    reasons = sim.admin("node1", "takeover", "nope")
    assert reasons == ["takeover refused: there is no group 'nope'"]


def test_replayed_frames_are_dropped_and_change_nothing():
    sim = formed()
    captured: list[bytes] = []
    beat = codec.Beat("sim", "node2", 1, 5, groups={"web": codec.GroupView(Activity.RUNNING)})
    captured.append(codec.encode(beat, KEY))  # an old frame claiming node2 runs web
    before = sim.nodes["node1"].state
    for frame in captured:
        sim.deliver("node1", FrameReceived("serial", frame))
    after = sim.nodes["node1"].state
    assert after.dropped.get("replay", 0) == before.dropped.get("replay", 0) + 1
    assert after.peer_state.beat == before.peer_state.beat
    sim.run(2.0)
    assert sim.owner() == "node1"


@pytest.mark.parametrize(
    ("frame", "cause"),
    [
        (b"hello\n", "garbage"),
        (b"TB1:!!!!\n", "garbage"),
        (codec.encode(codec.Beat("sim", "node2", 99, 1), b"wrong key"), "bad_mac"),
        (codec.encode(codec.Beat("other", "node2", 99, 1), KEY), "foreign_cluster"),
        (codec.encode(codec.Beat("sim", "node9", 99, 1), KEY), "unknown_node"),
        (codec.encode(codec.Beat("sim", "node1", 99, 1), KEY), "own_frame"),
    ],
)
def test_bad_frames_are_counted_and_never_change_state(frame, cause):
    sim = formed()
    before = sim.nodes["node1"].state
    result = step(before, FrameReceived("crossover", frame), sim.now)
    assert result.state.dropped.get(cause, 0) == before.dropped.get(cause, 0) + 1
    assert result.state.peer_state.beat == before.peer_state.beat
    assert result.state.links["crossover"].last_heard == before.links["crossover"].last_heard
    assert result.reasons == []


def test_cut_off_node_does_not_take_over_and_hands_over():
    cfg = make_config(extra_cluster='public_interface = "eth0"')
    sim = Sim(cfg)
    sim.run(3.0)
    assert sim.owner() == "node1"
    t0 = sim.now
    sim.set_world("node1", False)  # node1's public link goes down; node2 still sees the world
    sim.run(2.0)
    assert sim.owner() == "node2"
    assert sim.violations == []
    assert any("cut off" in r for r in reasons_after(sim, "node1", t0))
    sim.set_world("node1", True)
    sim.run(2.0)
    assert sim.owner() == "node1"  # auto_failback on


def test_isolated_owner_releases_while_backup_takes_over():
    cfg = make_config(extra_cluster='public_interface = "eth0"')
    sim = Sim(cfg)
    sim.run(3.0)
    sim.check_invariant = False
    sim.cut()
    sim.set_world("node1", False)  # node1 is completely isolated
    sim.run(2.0)
    assert sim.holders() == ["node2"]
    assert any("releasing" in r or "cut off" in r for r in sim.reasons("node1"))
    sim.heal()
    sim.set_world("node1", True)
    sim.run(3.0)
    assert sim.holders() == ["node1"]


def test_backup_without_world_does_not_take_over():
    cfg = make_config(extra_cluster='public_interface = "eth0"')
    sim = Sim(cfg)
    sim.run(3.0)
    sim.set_world("node2", False)
    sim.run(0.5)
    sim.kill("node1")
    sim.run(2.0)
    assert sim.holders() == []
    assert "not taking over group web" in sim.nodes["node2"].state.groups["web"].reason


def test_watchdog_required_but_unarmed_never_owns():
    cfg = make_config(watchdog="required")
    sim = Sim(cfg)
    sim.deliver("node1", WatchdogState(False, "cannot open /dev/watchdog: no such device"))
    sim.run(3.0)
    # the simulator arms node1 at boot; disarm it again after the fact
    sim.deliver("node1", WatchdogState(False, "cannot open /dev/watchdog: no such device"))
    sim.run(3.0)
    assert sim.owner() == "node2"
    st = sim.status("node1")
    assert st["watchdog"]["reason"] == "cannot open /dev/watchdog: no such device"
    sim.kill("node2")
    sim.run(2.0)
    assert sim.holders() == []


def test_start_failure_stops_what_started_and_peer_takes_over():
    sim = Sim(make_config())
    sim.nodes["node1"].fail_start.add(("web", 1))
    sim.run(4.0)
    assert sim.owner() == "node2"
    n1 = sim.nodes["node1"]
    assert [i for _, _, i in n1.starts] == [0]
    # the failed resource (1) and the one started before it (0), in reverse order
    assert [i for at, _, i in n1.stops if at >= n1.starts[0][0]] == [1, 0]
    assert n1.state.groups["web"].failed_until is not None
    assert sim.violations == []


def test_stop_failure_reboots_and_peer_takes_over():
    sim = formed(on_stop_failure="reboot")
    sim.nodes["node1"].fail_stop.add(("web", 2))
    sim.admin("node1", "standby")
    sim.run(2.0)
    assert sim.nodes["node1"].reboots
    assert "rebooting node1" in sim.nodes["node1"].reboots[0]
    assert sim.owner() == "node2"


def test_stop_failure_block_keeps_peer_out():
    sim = formed(on_stop_failure="block")
    sim.nodes["node1"].fail_stop.add(("web", 2))
    sim.admin("node1", "standby")
    sim.run(3.0)
    assert sim.activity("node1") is Activity.STOP_FAILED
    assert sim.activity("node2") is Activity.IDLE
    assert sim.violations == []
    sim.nodes["node1"].fail_stop.clear()
    sim.admin("node1", "cleanup", "web")
    sim.run(2.0)
    assert sim.owner() == "node2"


def test_monitor_restarts_then_fails_over():
    sim = formed(max_restarts=2, monitor="1s")
    n1 = sim.nodes["node1"]
    for _ in range(2):
        n1.running[("web", 1)] = False  # killed behind the supervisor's back
        sim.run(1.5)
        assert sim.owner() == "node1"
    assert sum(1 for r in sim.reasons("node1") if "restarting it" in r) == 2
    n1.running[("web", 1)] = False
    sim.run(3.0)
    assert sim.owner() == "node2"
    assert any("giving the group up" in r for r in sim.reasons("node1"))
    assert sim.violations == []


def test_failure_expires_and_cleanup_clears_it():
    sim = formed(max_restarts=0, failure_timeout="5s", failback=True)
    sim.nodes["node1"].running[("web", 2)] = False
    sim.run(3.0)
    assert sim.owner() == "node2"
    assert sim.status("node1")["groups"][0]["failed"] is True
    sim.run(5.0)
    assert any("expired" in r for r in sim.reasons("node1"))
    sim.run(2.0)
    assert sim.owner() == "node1"


def test_graceful_shutdown_hands_over_without_waiting_deadtime():
    sim = formed()
    t0 = sim.now
    sim.shutdown("node1")
    sim.run(0.3)
    assert sim.owner() == "node2"
    assert sim.nodes["node1"].exited
    assert sim.violations == []
    assert sim.now - t0 < 0.5


def test_frozen_owner_is_replaced_and_resolves_on_thaw():
    sim = formed()
    sim.check_invariant = False
    sim.freeze("node1")
    sim.run(1.0)
    assert "node2" in sim.holders()
    sim.thaw("node1")
    sim.run(2.0)
    assert sim.holders() == ["node1"]  # resolved: preferred node keeps it, node2 released


def test_link_state_machine_late_then_down():
    sim = formed()
    sim.cut("serial")
    t0 = sim.now
    def serial_state() -> LinkStatus:
        return sim.nodes["node2"].state.links["serial"].status

    sim.run(0.35)
    assert serial_state() is LinkStatus.LATE
    sim.run(0.3)
    assert serial_state() is LinkStatus.DOWN
    later = reasons_after(sim, "node2", t0)
    assert any(r.startswith("late heartbeat on link serial") for r in later)


def test_status_reports_loss_and_dropped_counters():
    sim = formed()
    sim.links["crossover"].loss = 0.5
    sim.run(10.0)
    st = sim.status("node2")
    loss = {lk["name"]: lk["loss"] for lk in st["links"]}
    assert 0.3 < loss["crossover"] < 0.7
    assert loss["serial"] == 0.0


def test_configurations_that_disagree_are_reported():
    a = make_config(failback=True)
    b = make_config(failback=False)
    sim = Sim(configs={"node1": a, "node2": b})
    sim.run(3.0)
    st = sim.status("node1")
    assert st["config_mismatch"] is True
    assert any("disagree on nodes, groups or auto_failback" in r for r in sim.reasons("node2"))
    same = Sim(make_config())
    same.run(2.0)
    assert same.status("node1")["config_mismatch"] is False


PINGS = 'ping_nodes = ["192.168.85.254"]\nping_timeout = "2s"'


def test_late_ping_answers_on_a_loaded_node_move_nothing():
    """node1's ping answers arrive 2 s late: for about a second after the delay starts no
    answer has come for ping_timeout (2 s), so node1 counts as cut off; without the damping
    that moved the group (a CI run saw it). The late answers then keep coming."""
    sim = Sim(make_config(extra_cluster=PINGS))
    sim.run(5.0)
    assert sim.owner() == "node1"
    t0 = sim.now
    sim.nodes["node1"].ping_delay = 2.0
    sim.run(30.0)
    assert sim.owner() == "node1"
    assert [t for n in sim.nodes.values() for t, _g, _i in n.stops if t >= t0] == []
    said = reasons_after(sim, "node1", t0)
    assert any("this node is cut off: no ping node answers" in r for r in said)
    assert not any("handing its groups" in r for r in said)
    assert sim.violations == []


def test_lost_ping_answers_move_once_and_not_back_before_the_hold():
    sim = Sim(make_config(extra_cluster=PINGS))  # auto_failback on: node1 is preferred
    sim.run(5.0)
    t0 = sim.now
    sim.nodes["node1"].world_ok = False
    sim.run(5.0)  # cut off at 2 s, groups handed over at 4 s
    assert sim.owner() == "node2"
    st = sim.status("node1")
    assert "while node2 sees the outside world" in st["world"]["yields"]
    assert any("node1 is cut off from the outside world (or just back) and yields its groups"
               in r for r in reasons_after(sim, "node2", t0))
    # node1's pings are answered again: it takes nothing back for 3 x ping_timeout (6 s)
    sim.nodes["node1"].world_ok = True
    t1 = sim.now
    sim.run(5.0)
    assert sim.owner() == "node2"
    assert "takes no group back until" in sim.status("node1")["world"]["yields"]
    sim.run(3.0)
    assert sim.owner() == "node1"  # auto_failback once the hold is over
    moves = [t for t, r in sim.nodes["node2"].reasons
             if r.startswith("acquiring group web") and t >= t0]
    assert len(moves) == 1
    back = [t for t, r in sim.nodes["node1"].reasons
            if r.startswith("acquiring group web") and t >= t1]
    assert back and back[0] - t1 >= 6.0 - 1e-6
    assert sim.violations == []


def test_a_flapping_ping_node_moves_a_group_at_most_once():
    sim = Sim(make_config(extra_cluster=PINGS))
    sim.run(5.0)
    t0 = sim.now
    for _ in range(6):  # answers lost for 5 s, then answered for 1 s
        sim.nodes["node1"].world_ok = False
        sim.run(5.0)
        sim.nodes["node1"].world_ok = True
        sim.run(1.0)
    moves = [t for n in sim.nodes.values() for t, r in n.reasons
             if r.startswith("acquiring group web") and t >= t0]
    assert len(moves) == 1
    assert sim.owner() == "node2"


def test_a_ping_node_that_fails_for_both_moves_nothing():
    sim = Sim(make_config(extra_cluster=PINGS))
    sim.run(5.0)
    for node in sim.nodes.values():
        node.world_ok = False
    sim.run(20.0)
    assert sim.owner() == "node1"
    assert not any("handing its groups" in r for r in sim.reasons("node1"))


def test_ping_node_that_never_answers_does_not_block_takeover():
    cfg = make_config(extra_cluster='ping_nodes = ["192.168.85.254"]')
    sim = Sim(cfg)
    for node in sim.nodes.values():
        node.world_ok = False  # the gateway drops ICMP: no reply, ever
    sim.run(5.0)
    assert sim.owner() == "node1"
    assert any("no ping node has answered yet" in r for r in sim.reasons("node2"))
    assert sim.status("node2")["world"]["ping_answered"] is False
    sim.kill("node1")
    sim.run(2.0)
    assert sim.owner() == "node2"


def test_ping_node_that_stops_answering_cuts_the_node_off():
    cfg = make_config(extra_cluster='ping_nodes = ["192.168.85.254"]')
    sim = Sim(cfg)
    sim.run(5.0)
    assert sim.status("node1")["world"]["ping_answered"] is True
    sim.nodes["node1"].world_ok = False  # node1's pings stop being answered
    t0 = sim.now
    # cut off after ping_timeout (3 s) of silence, groups handed over after ping_timeout more
    sim.run(5.5)
    assert sim.owner() == "node1"
    sim.run(1.5)
    assert sim.owner() == "node2"
    assert any("no ping node answers" in r for r in sim.reasons("node1"))
    handed = [t for t, r in sim.nodes["node1"].reasons if "handing its groups to it" in r]
    # 6 s after the last answer, which the simulated pinger gave at most ~0.3 s before t0
    # (it answers on the node's wake-ups, every 0.2 s at most)
    assert handed and 5.7 <= handed[0] - t0 <= 6.3


def test_the_same_beat_on_another_link_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch):
    """Every beat reaches the peer once per link, in the same bytes: only the first copy is
    decoded and authenticated; the others count on their links all the same; a replay on a
    link that saw the beat is still dropped; a new key authenticates the same bytes again."""
    sim = formed()
    state = sim.nodes["node1"].state
    peer = state.peer_state.beat
    assert peer is not None
    beat = dataclasses.replace(peer, seq=peer.seq + 1)
    frame = codec.encode(beat, KEY)
    decoded: list[bytes] = []
    real = codec.decode

    def counting(line: bytes, key: bytes, cluster: codec.Domain,
                 newest: codec.Beat | None = None) -> codec.Beat:
        decoded.append(line)
        return real(line, key, cluster, newest)

    monkeypatch.setattr(codec, "decode", counting)
    now = sim.now
    s1 = step(state, FrameReceived("serial", frame.rstrip(b"\n")), now).state
    s2 = step(s1, FrameReceived("crossover", frame), now + 0.001).state
    s3 = step(s2, FrameReceived("public", frame), now + 0.002).state
    assert len(decoded) == 1
    assert s3.peer_state.beat == beat
    assert {n: ls.last_order for n, ls in s3.links.items()} == {
        "serial": beat.order, "crossover": beat.order, "public": beat.order}
    assert all(s3.links[n].received == state.links[n].received + 1 for n in s3.links)
    s4 = step(s3, FrameReceived("crossover", frame), now + 0.003).state
    assert s4.dropped.get("replay", 0) == s3.dropped.get("replay", 0) + 1
    assert len(decoded) == 1
    # a new key: the same bytes are authenticated again, and now fail
    rekeyed = step(s3, ConfigChanged(state.config, b"another key"), now).state
    replayed = step(rekeyed, FrameReceived("public", frame), now + 0.004).state
    assert len(decoded) == 2
    assert replayed.dropped.get("bad_mac", 0) == rekeyed.dropped.get("bad_mac", 0) + 1


def test_frames_stepped_together_take_in_each_and_decide_once():
    """FramesReceived (the frames of one wake-up of the loop) leaves the links and the peer as
    the frames one by one would, with one evaluation instead of one per frame."""
    sim = formed()
    state = sim.nodes["node1"].state
    peer = state.peer_state.beat
    assert peer is not None
    beat = dataclasses.replace(peer, seq=peer.seq + 1)
    frame = codec.encode(beat, KEY)
    frames = tuple(FrameReceived(link, frame) for link in ("serial", "crossover", "public"))
    now = sim.now + 0.01
    one_by_one = state
    for f in frames:
        one_by_one = step(one_by_one, f, now).state
    together = step(state, FramesReceived(frames), now).state
    assert together.links == one_by_one.links
    assert together.peer_state == one_by_one.peer_state
    assert together.dropped == one_by_one.dropped
    # a batch with a bad frame in it: the bad one is counted, the others are taken in
    bad = FramesReceived((FrameReceived("serial", b"noise\n"), frames[1]))
    mixed = step(state, bad, now).state
    assert mixed.dropped.get("garbage", 0) == state.dropped.get("garbage", 0) + 1
    assert mixed.links["crossover"].last_order == beat.order
    assert mixed.links["serial"].last_order == state.links["serial"].last_order


def test_the_simulator_steps_simultaneous_frames_together():
    sim = formed()
    assert sim.batches > 0  # so every simulated scenario runs the loop's batching too
    sim.batch_frames = False
    before = sim.batches
    sim.run(1.0)
    assert sim.batches == before
    assert sim.owner() == "node1"
