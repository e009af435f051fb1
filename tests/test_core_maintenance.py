"""Maintenance mode and unpin: admin commands the core accepts or refuses with a typed reason;
a node in maintenance leaves its resources as they are (no monitor, no move, no stop at
shutdown), also across a restart; the flags and cleared pins travel in the beats; the status
shows both nodes' views."""

from __future__ import annotations

from supervisor.cli import format_side_by_side, format_status
from supervisor.core import codec
from supervisor.core.actions import (
    Accepted,
    AdminAnswer,
    CheckResource,
    Refused,
    SaveMaintenance,
    StartResource,
    StopResource,
)
from supervisor.core.events import AdminCommand, Tick
from supervisor.core.state import initial_state
from supervisor.core.states import Activity, NodeStatus, PeerStatus
from supervisor.core.step import step
from supervisor.statefiles import MAINTENANCE_FILE, load_maintenance, save_maintenance
from tests.sim import KEY, Sim, make_config


def started_pair(**config: object) -> Sim:
    sim = Sim(make_config(**config))  # type: ignore[arg-type]
    sim.run(5.0)
    assert sim.owner("web") == "node1"
    return sim


def ask(sim: Sim, node: str, command: AdminCommand) -> AdminAnswer:
    """Deliver an admin command; the core's answer."""
    t0 = sim.now
    n = len(sim.nodes[node].actions)
    sim.deliver(node, command)
    answers = [a for t, a in sim.nodes[node].actions[n:] if isinstance(a, AdminAnswer)
               and t >= t0]
    assert len(answers) == 1
    return answers[0]


def maintenance(on: bool, node: str | None = None, rid: int = 1) -> AdminCommand:
    return AdminCommand("maintenance", None, rid, on=on, node=node)


def actions_since(sim: Sim, node: str, t0: float, kind: type) -> list[object]:
    return [a for t, a in sim.nodes[node].actions if t >= t0 and isinstance(a, kind)]


# --------------------------------------------------------------------------------------------
# What maintenance does


def test_a_node_in_maintenance_does_not_monitor_restart_or_stop_its_resources():
    sim = started_pair()
    answer = ask(sim, "node1", maintenance(True))
    assert isinstance(answer.decision, Accepted)
    assert answer.decision.reasons[0].startswith("maintenance mode on for node1")
    sim.run(0.1)
    t0 = sim.now
    sim.nodes["node1"].running[("web", 2)] = False  # httpd dies: not noticed, not restarted
    sim.run(5.0)
    assert actions_since(sim, "node1", t0, CheckResource) == []
    assert actions_since(sim, "node1", t0, StartResource) == []
    assert sim.activity("node1") is Activity.RUNNING
    # shutdown in maintenance: the resources are left as they are
    sim.shutdown("node1")
    sim.run(1.0)
    assert sim.nodes["node1"].exited
    assert actions_since(sim, "node1", t0, StopResource) == []
    assert sim.nodes["node1"].running[("web", 0)] is True
    # and the peer does not move the group although node1 left
    sim.run(5.0)
    assert sim.peer_status("node2") is PeerStatus.DEAD
    assert actions_since(sim, "node2", t0, StartResource) == []
    assert sim.nodes["node2"].state.groups["web"].reason == (
        "group web is left where it is: node1 is in maintenance (nothing is moved to or "
        "from it)")


def test_a_node_in_maintenance_is_not_taken_over_when_it_dies():
    sim = started_pair()
    ask(sim, "node1", maintenance(True))
    sim.run(0.5)
    t0 = sim.now
    sim.kill("node1")
    sim.run(5.0)
    assert sim.peer_status("node2") is PeerStatus.DEAD
    assert actions_since(sim, "node2", t0, StartResource) == []


def test_maintenance_off_resumes_monitoring():
    sim = started_pair()
    ask(sim, "node1", maintenance(True))
    sim.run(3.0)
    sim.nodes["node1"].running[("web", 2)] = False
    answer = ask(sim, "node1", maintenance(False, rid=2))
    assert isinstance(answer.decision, Accepted)
    t0 = sim.now
    sim.run(3.0)
    assert actions_since(sim, "node1", t0, CheckResource)
    assert sim.owner("web") == "node1"  # the monitor found httpd dead and restarted it


def test_maintenance_for_the_peer_travels_in_the_beats_and_the_peer_saves_it():
    sim = started_pair()
    answer = ask(sim, "node2", maintenance(True, node="node1"))
    assert isinstance(answer.decision, Accepted)
    assert answer.decision.reasons[0] == (
        "maintenance mode on for node1 (asked on node2): its resources are left as they are, "
        "not monitored, not moved")
    sim.run(0.5)
    n1 = sim.nodes["node1"].state
    assert n1.in_maintenance("node1") and sim.nodes["node2"].state.in_maintenance("node1")
    saved = [a for _, a in sim.nodes["node1"].actions if isinstance(a, SaveMaintenance)]
    assert saved[-1].flags == (("node1", True, n1.maintenance["node1"][1]),)
    assert any("maintenance mode on for node1 (asked on node2)" in r
               for r in sim.reasons("node1"))
    assert sim.status("node2")["maintenance"] == ["node1"]
    assert sim.status("node1")["peer_said"]["maintenance"] is False


def test_maintenance_survives_a_restart_and_nothing_is_touched_until_it_ends():
    cfg = make_config()
    flags = {"node1": (True, 7)}
    state = initial_state(cfg, "node1", KEY, 2, 0.0, maintenance=flags)
    assert state.in_maintenance("node1") and state.lamport == 7
    # the start-up cleanup (stop what may be left over) waits for the end of maintenance
    result = step(state, Tick(), 0.1)
    assert not [a for a in result.actions if isinstance(a, StopResource)]
    result = step(result.state, maintenance(False, rid=2), 0.2)
    answer = next(a for a in result.actions if isinstance(a, AdminAnswer))
    assert isinstance(answer.decision, Accepted)
    assert [a for a in result.actions if isinstance(a, StopResource)]
    saved = next(a for a in result.actions if isinstance(a, SaveMaintenance))
    assert saved.flags == (("node1", False, 8),)


def test_maintenance_refusals_are_typed():
    sim = started_pair()
    cases = [
        (maintenance(True, node="node3"), "maintenance refused: 'node3' is not a node of this "
                                          "cluster (node1, node2)"),
        (maintenance(False), "maintenance refused: node1 is already out of maintenance"),
        (AdminCommand("maintenance", None, 1), "maintenance needs on or off"),
    ]
    for command, reason in cases:
        decision = ask(sim, "node1", command).decision
        assert decision == Refused(reason, (reason,))
    sim.admin("node1", "standby", "web")  # web is stopping on node1 now
    decision = ask(sim, "node1", maintenance(True)).decision
    assert isinstance(decision, Refused)
    assert decision.reason == ("maintenance refused: group web is stopping on node1; wait "
                               "until it is running or stopped, so that it is left in a known "
                               "state")


# --------------------------------------------------------------------------------------------
# unpin


def test_unpin_clears_a_pin_on_both_nodes():
    sim = started_pair()
    sim.admin("node1", "standby", "web")
    sim.run(3.0)
    assert sim.owner("web") == "node2"
    answer = ask(sim, "node2", AdminCommand("unpin", "web", 5))
    assert isinstance(answer.decision, Accepted)
    assert answer.decision.reasons[0] == (
        "admin unpin: group web is no longer pinned to node2; it follows its preferred node "
        "and auto_failback again")
    sim.run(3.0)
    assert sim.owner("web") == "node1"  # preferred node, auto_failback
    for node in ("node1", "node2"):
        assert sim.nodes[node].state.pins["web"][0] == ""
        assert sim.status(node)["groups"][0]["pinned"] is False
    decision = ask(sim, "node1", AdminCommand("unpin", "web", 6)).decision
    assert decision == Refused("unpin refused: group web is not pinned",
                               ("unpin refused: group web is not pinned",))
    decision = ask(sim, "node1", AdminCommand("unpin", "nosuch", 7)).decision
    assert isinstance(decision, Refused) and "there is no group 'nosuch'" in decision.reason


def test_an_older_pin_does_not_come_back_after_unpin():
    beat = codec.Beat("sim", "node2", 1, 1, pins={"web": ("", 9), "db": ("node1", 3)},
                      maintenance={"node2": (True, 4)})
    frame = codec.encode(beat, KEY)
    back = codec.decode(frame, KEY, "sim")
    assert back.pins == {"web": ("", 9), "db": ("node1", 3)}
    assert back.maintenance == {"node2": (True, 4)}
    # an empty map is not sent at all (old peers read these beats unchanged)
    plain = codec.decode(codec.encode(codec.Beat("sim", "node2", 1, 2), KEY), KEY, "sim")
    assert plain.maintenance == {} and plain.pins == {}


# --------------------------------------------------------------------------------------------
# Status: both views; the flags file


def test_status_shows_the_peers_view_next_to_this_nodes():
    sim = started_pair()
    ask(sim, "node2", maintenance(True))
    sim.cut("serial", direction="node1")  # node2 no longer hears node1 on serial
    sim.run(1.0)
    st = sim.status("node1")
    st["watchdog"] = {"ok": True, "reason": "simulated", "mode": "off"}
    text = format_status(st)
    assert "MAINTENANCE: node2 is in maintenance mode" in text
    rows = format_side_by_side(st)
    assert rows[1].split() == ["node1", "(here)", "node2", "(its", "own", "view)"]
    table = {" ".join(r.split()[:2]): r for r in rows[2:]}
    assert table["maintenance no"].endswith("YES")
    assert table["link serial"].split("hears")[2].strip() == "node1: NO"
    assert table["link crossover"].endswith("hears node1: yes")
    assert table["group web"].split() == ["group", "web", "running", "idle"]
    assert st["peer_said"]["status"] == NodeStatus.ACTIVE.value


def test_flags_file_round_trip_and_a_bad_file(tmp_path):
    assert load_maintenance(tmp_path) == ({}, "")
    save_maintenance(tmp_path, (("node1", True, 3), ("node2", False, 5)))
    assert load_maintenance(tmp_path) == ({"node1": (True, 3), "node2": (False, 5)}, "")
    assert oct((tmp_path / MAINTENANCE_FILE).stat().st_mode & 0o777) == "0o600"
    (tmp_path / MAINTENANCE_FILE).write_text('{"nodes": {"node1": {"on": "yes", "stamp": 1}}}')
    flags, problem = load_maintenance(tmp_path)
    assert flags == {} and "unreadable" in problem
