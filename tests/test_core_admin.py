"""Admin commands as typed decisions of the core: standby/takeover refusals, takeover
--force-data (a forced promotion armed on the core's clock) and resolve-split-brain (the
drbdadm commands as actions, the answer when they are done)."""

from __future__ import annotations

from supervisor.core.actions import (
    Accepted,
    AdminAnswer,
    Refused,
    RunDrbdadm,
    StartResource,
)
from supervisor.core.events import AdminCommand, DrbdadmDone, ReplicaChanged, Tick
from supervisor.core.plan import use_force
from supervisor.core.replica import Replica
from supervisor.core.state import ForceData, evolve
from supervisor.core.step import Step, next_deadline, step
from tests.sim import Sim, make_config

DATA = """
[[group]]
name = "data"
preferred = "node2"
resources = ["drbddisk::r0", "noop::fs"]
"""


def answer_of(result: Step) -> AdminAnswer:
    answers = [a for a in result.actions if isinstance(a, AdminAnswer)]
    assert len(answers) == 1, result.actions
    return answers[0]


def test_a_refusal_is_a_typed_value_with_its_sentence():
    sim = Sim(make_config())
    sim.kill("node2")
    sim.run(0.5)  # node2 never heard
    result = step(sim.nodes["node1"].state, AdminCommand("standby", None, 7), sim.now)
    a = answer_of(result)
    assert a.request_id == 7
    assert a.decision == Refused("standby refused: peer node2 is not alive, the groups would "
                                 "stop", ("standby refused: peer node2 is not alive, the "
                                          "groups would stop",))
    assert result.state.pins == {}


def test_an_accepted_command_answers_with_what_it_set_in_motion():
    sim = Sim(make_config())
    sim.run(3.0)
    result = step(sim.nodes["node1"].state, AdminCommand("standby", "web", 3), sim.now)
    decision = answer_of(result).decision
    assert isinstance(decision, Accepted)
    assert decision.reasons[0] == "admin standby: group web should run on node2"
    assert any("releasing it to node2" in r for r in decision.reasons)


def dead_peer_with_data() -> Sim:
    sim = Sim(make_config(extra_groups=DATA))
    sim.kill("node2")
    sim.nodes["node1"].fail_start.add(("data", 0))  # drbddisk refuses: Outdated data
    sim.run(4.0)
    assert sim.nodes["node1"].state.groups["data"].failed_until is not None
    return sim


def forced_starts(sim: Sim, t0: float) -> list[StartResource]:
    return [a for t, a in sim.nodes["node1"].actions if t >= t0
            and isinstance(a, StartResource) and a.group == "data"]


def test_force_data_arms_one_forced_promotion_per_resource():
    sim = dead_peer_with_data()
    n1 = sim.nodes["node1"]
    outdated = Replica("r0", role="Secondary", connection="Connecting", disk="Outdated")
    sim.deliver("node1", ReplicaChanged(outdated))
    n1.fail_start.clear()
    t0 = sim.now
    reasons = sim.deliver("node1", AdminCommand("takeover", "data", 5, force_data=True))
    a = next(x for _t, x in n1.actions if isinstance(x, AdminAnswer) and x.request_id == 5)
    assert isinstance(a.decision, Accepted)
    assert "this replica was marked Outdated" in a.decision.reasons[0]  # the risk, first
    assert any("FORCED data promotion" in r for r in reasons)
    sim.run(1.0)
    starts = forced_starts(sim, t0)
    assert [(s.index, s.force_data) for s in starts] == [(0, True), (1, False)]
    assert n1.state.force_data == {}  # used up
    assert sim.owner("data") == "node1"


def test_an_unused_force_expires_on_the_cores_clock():
    """A takeover that never comes must not leave a forced promotion armed."""
    sim = Sim(make_config(extra_groups=DATA))
    sim.run(3.0)
    armed = ForceData(sim.now + 0.2, frozenset({"r0"}))  # node2 owns data: no start here
    s = evolve(sim.nodes["node1"].state, force_data={"data": armed})
    assert step(s, Tick(), sim.now + 0.1).state.force_data == {"data": armed}
    assert use_force(s, "data", "r0", sim.now + 0.1)[1] is True
    assert use_force(s, "data", "r0", sim.now + 0.2)[1] is False
    late = step(s, Tick(), sim.now + 0.2)
    assert late.state.force_data == {}
    # its expiry is a deadline of the core: the loop wakes for it, no shortcut steps past it
    far = evolve(s, force_data={"data": ForceData(sim.now + 30, frozenset({"r0"}))})
    assert next_deadline(far, sim.now + 29.9) <= sim.now + 30
    assert step(far, Tick(), sim.now + 30).state.force_data == {}
    assert "the forced data promotion armed for group data expired unused (r0)" in late.reasons


def test_force_data_refusals():
    sim = Sim(make_config(extra_groups=DATA))
    sim.run(3.0)
    state = sim.nodes["node1"].state
    for cmd, text in [
        (AdminCommand("takeover", None, 1, force_data=True), "needs a group name"),
        (AdminCommand("takeover", "web", 1, force_data=True), "has no drbddisk resource"),
    ]:
        decision = answer_of(step(state, cmd, sim.now)).decision
        assert isinstance(decision, Refused) and text in decision.reason


def split(role: str = "Secondary") -> Replica:
    return Replica("r0", role=role, connection="StandAlone", disk="UpToDate",
                   split_brain=True, out_of_sync_kib=1024)


def test_resolve_split_brain_runs_the_commands_then_answers():
    """Alone (the peer is away): this node's half, then the answer, which says to run the
    same command on the peer when it is back."""
    sim = Sim(make_config(extra_groups=DATA))
    sim.run(3.0)
    sim.kill("node2")
    sim.run(3.0)
    sim.deliver("node1", ReplicaChanged(split()))
    s = sim.nodes["node1"].state
    first = step(s, AdminCommand("resolve-split-brain", None, 9, discard="node1"), sim.now)
    runs = [a for a in first.actions if isinstance(a, RunDrbdadm)]
    assert [r.steps for r in runs] == [((("disconnect",), False), (("secondary",), True),
                                        (("connect", "--discard-my-data"), True))]
    assert not [a for a in first.actions if isinstance(a, AdminAnswer)]  # not yet
    assert any("DISCARDING this node's (node1) changes" in r and "1024 KiB" in r
               for r in first.reasons)
    assert any("node2 is not reachable: run the same command there when it is back" in r
               for r in first.reasons)
    done = step(first.state, DrbdadmDone(9, "r0", True), sim.now)
    decision = answer_of(done).decision
    assert isinstance(decision, Accepted)
    assert decision.reasons[-1] == "r0: done here"
    assert done.state.resolving == {}
    failed = step(first.state, DrbdadmDone(9, "r0", False, "drbdadm connect failed: x"),
                  sim.now)
    refusal = answer_of(failed).decision
    assert isinstance(refusal, Refused) and "drbdadm connect failed" in refusal.reason


def test_resolve_split_brain_on_one_node_drives_both():
    """`twinbeat resolve-split-brain --discard node1` run on node2 only: node2 runs its
    half (disconnect, connect) and carries the decision to node1 over the heartbeat links,
    where node1 runs its own (disconnect, secondary, connect --discard-my-data); the answer
    comes once both are done."""
    sim = Sim(make_config(extra_groups=DATA))
    sim.run(3.0)
    sim.deliver("node1", ReplicaChanged(split()))
    sim.deliver("node2", ReplicaChanged(split(role="Primary")))
    t0 = sim.now
    sim.deliver("node2", AdminCommand("resolve-split-brain", None, 7, discard="node1"))
    sim.run(1.0)
    n1 = [a.steps for _t, a in sim.nodes["node1"].drbdadm_runs]
    n2 = [a.steps for _t, a in sim.nodes["node2"].drbdadm_runs]
    assert n1 == [((("disconnect",), False), (("secondary",), True),
                   (("connect", "--discard-my-data"), True))]
    assert n2 == [((("disconnect",), False), (("connect",), True))]
    (at, ans), = sim.nodes["node2"].admin_answers
    assert isinstance(ans.decision, Accepted) and at - t0 < 0.5
    assert "r0: done here" in ans.decision.reasons
    assert "r0 on node1: done" in ans.decision.reasons
    assert any("resolve-split-brain asked by node2: r0: DISCARDING this node's (node1)" in r
               for r in sim.reasons("node1"))
    # no second run on either side: one request id, run once
    sim.run(2.0)
    assert len(sim.nodes["node1"].drbdadm_runs) == len(sim.nodes["node2"].drbdadm_runs) == 1


def test_resolve_split_brain_carried_to_a_primary_victim_is_refused_there():
    sim = Sim(make_config(extra_groups=DATA))
    sim.run(3.0)
    sim.deliver("node1", ReplicaChanged(split(role="Primary")))
    sim.deliver("node2", ReplicaChanged(split()))
    sim.deliver("node2", AdminCommand("resolve-split-brain", None, 7, discard="node1"))
    sim.run(1.0)
    assert sim.nodes["node1"].drbdadm_runs == []
    (_at, ans), = sim.nodes["node2"].admin_answers
    assert isinstance(ans.decision, Refused)
    assert "r0 on node1: refused" in ans.decision.reason
    assert "this node (node1) is Primary" in ans.decision.reason


def test_resolve_split_brain_refusals():
    sim = Sim(make_config(extra_groups=DATA))
    sim.run(3.0)
    sim.deliver("node1", ReplicaChanged(split(role="Primary")))
    s = sim.nodes["node1"].state
    for cmd, text in [
        (AdminCommand("resolve-split-brain", None, 1, discard="node3"), "node1 or node2"),
        (AdminCommand("resolve-split-brain", None, 1, discard="node1", resource="r9"),
         "no such replicated resource"),
        (AdminCommand("resolve-split-brain", None, 1, discard="node1"),
         "this node (node1) is Primary"),
    ]:
        result = step(s, cmd, sim.now)
        decision = answer_of(result).decision
        assert isinstance(decision, Refused) and text in decision.reason, decision
        assert not [a for a in result.actions if isinstance(a, RunDrbdadm)]
