"""Property: while any link delivers (up both ways, no loss), no resource group has two owners.

Hypothesis drives two simulated nodes through random sequences of link cuts (never all of
them at once), loss, delay and reordering below deadtime, node kills and restarts, admin
commands, resources dying behind the supervisor's back, failing starts and stops. The
simulator checks the invariant after every single step of either core.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.core import codec, publish
from supervisor.core import deadlines as deadlines_module
from supervisor.core import step as step_module
from supervisor.core.actions import CheckResource, SendFrame, StopResource
from supervisor.core.events import (
    ConfigChanged,
    Event,
    FrameReceived,
    FramesReceived,
    ResourceResult,
    Tick,
)
from supervisor.core.publish import beat_due
from supervisor.core.quiet import busy
from supervisor.core.state import EARLY, EPS, CoreState, evolve
from supervisor.core.states import Activity
from supervisor.core.step import (
    Step,
    full_step,
    next_deadline,
    only_a_check_answered,
    only_the_beat_due,
    same_beat_again,
)
from supervisor.core.step import step as core_step
from tests import sim as sim_module
from tests.sim import Sim, make_config

LINKS = ["serial", "crossover", "public"]

ops = st.one_of(
    st.tuples(st.just("run"), st.floats(0.01, 2.0)),
    st.tuples(st.just("cut"), st.sampled_from(LINKS), st.sampled_from([None, "node1", "node2"])),
    st.tuples(st.just("heal"), st.sampled_from(LINKS)),
    st.tuples(st.just("lossy"), st.sampled_from(LINKS), st.floats(0.0, 0.6)),
    st.tuples(st.just("delay"), st.sampled_from(LINKS), st.floats(0.0, 0.15)),
    st.tuples(st.just("kill"), st.sampled_from(["node1", "node2"])),
    st.tuples(st.just("restart"), st.sampled_from(["node1", "node2"])),
    st.tuples(st.just("admin"), st.sampled_from(["node1", "node2"]),
              st.sampled_from(["standby", "takeover", "cleanup"])),
    st.tuples(st.just("crash_resource"), st.sampled_from(["node1", "node2"]), st.integers(0, 2)),
    st.tuples(st.just("fail_start"), st.sampled_from(["node1", "node2"]), st.integers(0, 2)),
    st.tuples(st.just("shutdown"), st.sampled_from(["node1", "node2"])),
)


def apply(sim: Sim, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "run":
        sim.run(op[1])
    elif kind == "cut":
        _, link, direction = op
        others_fully_up = [
            name for name, lk in sim.links.items() if name != link and all(lk.up.values())
            and lk.loss == 0.0
        ]
        if others_fully_up:  # keep at least one link delivering both ways, losing nothing
            sim.cut(link, direction=direction)
    elif kind == "heal":
        sim.heal(op[1])
    elif kind == "lossy":
        sim.links[op[1]].loss = op[2]
    elif kind == "delay":
        sim.links[op[1]].delay = 0.002 + op[2] / 2
        sim.links[op[1]].jitter = op[2] / 2
    elif kind == "kill":
        sim.kill(op[1])
    elif kind == "restart":
        node = sim.nodes[op[1]]
        if not node.alive or node.exited:
            node.fail_start.clear()
            sim.restart(op[1])
    elif kind == "admin":
        sim.admin(op[1], op[2])
    elif kind == "crash_resource":
        sim.nodes[op[1]].running[("web", op[2])] = False
    elif kind == "fail_start":
        sim.nodes[op[1]].fail_start.add(("web", op[2]))
    elif kind == "shutdown":
        sim.shutdown(op[1])


def run_sequence(step: Callable[[CoreState, Event, float], Step],
                 sequence: list[tuple[Any, ...]], seed: int, failback: bool,
                 timing: tuple[tuple[str, float, float], ...] = (),
                 gap: float = 0.0, *, quiet: bool = False, settle: float = 1.0) -> None:
    """Both simulated cores, stepped through `step`, over `sequence` (links' delay and jitter
    as given, else the simulator's; node2 started `gap` after node1; `quiet`: frames wait for
    the node's own wake-up while nothing is in flight, as the loop's quiet links do), then a
    cleanup and a second of quiet."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim_module, "step", step)
        sim = Sim(make_config(failback=failback, max_restarts=1, failure_timeout="3s"),
                  seed=seed, start_gap=gap)
        sim.quiet = quiet
        for name, delay, jitter in timing:
            sim.links[name].delay, sim.links[name].jitter = delay, jitter
        sim.run(0.5)
        for op in sequence:
            apply(sim, op)
        sim.admin("node1", "cleanup")
        sim.run(settle)


@pytest.mark.slow  # 150 random sequences of a two-node simulation: ~20 s of CPU
@pytest.mark.timeout(300)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(ops, min_size=1, max_size=25),
    st.integers(0, 1000),
    st.booleans(),
    st.floats(0.0, 1.0),
    st.floats(0.0, 0.1),
)
def test_no_group_has_two_owners_while_a_link_delivers(sequence, seed, failback, warmup, delay):
    sim = Sim(make_config(failback=failback, max_restarts=1, failure_timeout="3s"), seed=seed)
    for link in sim.links.values():
        link.delay = 0.002 + delay
    sim.run(warmup)  # the random operations may hit the cluster while it forms
    for op in sequence:
        apply(sim, op)
        assert sim.violations == [], (sequence, sim.violations)
    # Heal everything, bring everybody back: the cluster settles on exactly one owner.
    sim.heal()
    for link in sim.links.values():
        link.loss, link.delay, link.jitter = 0.0, 0.002, 0.0
    sim.run(1.0)  # let shutdowns in progress finish
    for name, node in list(sim.nodes.items()):
        node.fail_start.clear()
        if not node.alive or node.exited or node.state.shutting_down:
            sim.kill(name)
            sim.restart(name)
    sim.admin("node1", "cleanup")
    sim.admin("node2", "cleanup")
    sim.run(8.0)
    assert sim.violations == []
    assert sim.owner() in ("node1", "node2"), [
        (n, s.state.groups["web"].reason) for n, s in sim.nodes.items()
    ]


def test_conflicting_wishes_during_a_handover_are_resolved_by_the_protocol():
    """node2 is told to take over just after it granted the group to node1.

    Both nodes now believe they should own the group and both see the other idle; only the
    grant protocol keeps them from starting it together (a mutation test: drop the grant
    check in core/ownership.py's decide_group and this test fails).
    """
    for delay in (0.01, 0.03, 0.05, 0.08):
        sim = Sim(make_config())
        for link in sim.links.values():
            link.delay = delay
        for _ in range(10_000):  # 10 s of simulated time at most
            if "granting group web to node1" in sim.reasons("node2"):
                break
            sim.run(0.001)
        else:
            raise AssertionError(f"node2 never granted the group to node1 (delay {delay})")
        sim.admin("node2", "takeover")
        sim.run(3.0)
        assert sim.violations == [], (delay, sim.violations)
        assert sim.owner() == "node2"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=15), st.integers(0, 1000), st.booleans())
def test_step_never_changes_the_state_it_is_given(sequence, seed, failback):
    """Every step of both simulated cores, over random event sequences: the input state,
    pickled before the step, pickles the same after it (a deep comparison: a step that
    changed any record, tuple or mapping it shares with its input fails here)."""
    steps = 0

    def checked(state: CoreState, event: Event, now: float) -> Step:
        nonlocal steps
        before = pickle.dumps(state)
        result = core_step(state, event, now)
        assert pickle.dumps(state) == before, (event, now)
        steps += 1
        return result

    run_sequence(checked, sequence, seed, failback)
    assert steps > 0



def frame_steps_compared(taken: dict[object, int]) -> Any:
    """A ``step`` for the simulator that also steps every frame event the full way and
    compares: the same state, actions and reasons; for frames the shortcut takes
    (``same_beat_again``), no reason and no action but our own beat when it is due
    (``publish.beat_due``), unless a monitor was due with them. Counts in ``taken``: shortcut
    steps by event type, "next beat" (the first frame was the peer's next beat, not a copy),
    "our beat" (our beat sent with them), "monitor" (a monitor's check issued with them)."""

    def compared(state: CoreState, event: Event, now: float) -> Step:
        result = core_step(state, event, now)
        if not result.news:  # the loop keeps what busy() said before the step
            assert busy(result.state) == busy(state), (event, now)
        if not isinstance(event, FrameReceived | FramesReceived):
            return result
        full = full_step(state, event, now)
        # also when the shortcut gives up after decoding (the full step gets its decoding)
        assert (result.actions, result.reasons) == (full.actions, full.reasons), (event, now)
        assert result.state == full.state, (event, now)
        if same_beat_again(state, event, now) is not None:
            if any(isinstance(a, CheckResource) for a in full.actions):
                # a monitor due with the frames (step._monitors_due): its check issued
                taken["monitor"] += 1
                taken[type(event)] += 1
                return result
            assert not result.news, (event, now)
            assert full.reasons == [], (event, now)
            if full.actions:  # our beat, due within EARLY: sent on this wake-up
                assert [type(a) for a in full.actions] == [SendFrame], (event, now)
                assert beat_due(state, now), (event, now)
                taken["our beat"] += 1
            else:
                assert not beat_due(state, now), (event, now)
            taken[type(event)] += 1
            first = (event if isinstance(event, FrameReceived) else event.frames[0]).data
            if first.strip() != state.peer_state.frame:
                taken["next beat"] += 1
            if (isinstance(event, FramesReceived) and len(event.frames) == 3
                    and len({f.data.strip() for f in event.frames}) == 1):
                taken["three copies"] += 1  # one beat on every link (intake.on_copies)
        return result

    return compared


def copies_timing(together: bool) -> tuple[tuple[str, float, float], ...]:
    """The copies of a beat arrive apart, as on the real media (serial: ~22 ms a frame); or
    the serial one first and the two network ones after it, at the same instant: each link's
    (name, delay, jitter)."""
    return ((("serial", 0.0005, 0.0), ("crossover", 0.003, 0.0), ("public", 0.003, 0.0))
            if together else
            (("serial", 0.022, 0.002), ("crossover", 0.0005, 0.002),
             ("public", 0.001, 0.002)))


@pytest.mark.parametrize("mode", ["apart", "together", "quiet"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=15), st.integers(0, 1000), st.booleans(),
       st.floats(0.0, 0.1))
def test_a_beat_heard_again_is_taken_in_as_the_full_step_would(mode, sequence, seed,
                                                                failback, gap):
    """The shortcut for frames that say nothing new, the peer's newest beat arriving again
    on other links or its next beat saying the same (``same_beat_again``: no evaluation of
    the whole state) gives exactly what the full step gives: the same state, no reason, no
    action but our own beat when it is due within ``state.EARLY`` of the keepalive; over
    random event sequences of both simulated cores (links cut, lossy, delayed; kills,
    restarts, admin commands; node2 started ``gap`` after node1, so the two beat in any
    phase). The copies arrive apart (one frame a step), or the two network links' copies at
    the same instant (stepped together, FramesReceived, as the loop does with the frames of
    one wake-up), or every copy waits for the node's own wake-up while nothing is in flight
    (quiet: the three copies of one beat stepped together, ``intake.on_copies``)."""
    taken: dict[object, int] = {FrameReceived: 0, FramesReceived: 0, "next beat": 0,
                                "our beat": 0, "three copies": 0, "monitor": 0}
    run_sequence(frame_steps_compared(taken), sequence, seed, failback,
                 copies_timing(mode == "together"), gap, quiet=mode == "quiet")
    if mode == "quiet":  # and an idle pair, whose owner's monitors fall due with the frames
        run_sequence(frame_steps_compared(taken), [], seed, failback,
                     copies_timing(False), gap, quiet=True, settle=3.0)
        assert taken["monitor"] > 0
    # three links: the second and third copy of most beats; the first of most beats of an
    # idle peer (the next beat, saying nothing new)
    assert taken[FrameReceived if mode == "apart" else FramesReceived] > 0
    assert taken["next beat"] > 0
    if mode == "quiet":
        assert taken["three copies"] > 0


def beats_recorded(step: Any, sent: dict[str, list[tuple[float, bool]]]) -> Any:
    """``step`` that records, by node, when each step that sent a beat ran and whether what
    the beat says was unchanged (a beat sent for a change may follow the one before it at
    once)."""

    def recording(state: CoreState, event: Event, now: float) -> Step:
        result: Step = step(state, event, now)
        if any(isinstance(a, SendFrame) for a in result.actions):
            sent[state.me].append((now, state.last_published == result.state.last_published))
        return result

    return recording


def test_our_beat_due_within_early_goes_out_with_the_peers_beat():
    """A node whose beat is due within EARLY of the keepalive when the peer's beat arrives
    sends it on that wake-up (as the full step does), and keeps doing so: its next beat is
    due a keepalive after the peer's arrived, about when the peer's next one arrives. Over
    start gaps that put the two nodes' beats in every phase (a tenth of a keepalive apart),
    such beats are sent; a beat never goes out later than a keepalive after the one before
    it, nor earlier than (1 - EARLY) of one, when what it says has not changed. (The copies
    arrive apart, with jitter: the network ones arrive before or after our beat is due.)"""
    keepalive = make_config().timing.keepalive
    for gap in [keepalive * i / 10 for i in range(10)]:
        taken: dict[object, int] = {FrameReceived: 0, FramesReceived: 0, "next beat": 0,
                                    "our beat": 0, "three copies": 0, "monitor": 0}
        sent: dict[str, list[tuple[float, bool]]] = {"node1": [], "node2": []}
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sim_module, "step", beats_recorded(frame_steps_compared(taken), sent))
            sim = Sim(make_config(), start_gap=gap)
            for name, delay, jitter in copies_timing(together=False):
                sim.links[name].delay, sim.links[name].jitter = delay, jitter
            sim.run(6.0)
        assert sim.owner() == "node1"
        for node, beats in sent.items():
            settled = [(t, same) for t, same in beats if t > 4.0]  # formed, nothing changes
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(settled) if b[1]]
            assert gaps and max(gaps) <= keepalive + 1e-6, (gap, node)
            assert min(gaps) >= keepalive * (1 - EARLY) - 1e-6, (gap, node)
        if taken["our beat"]:
            return
    raise AssertionError("no beat was sent with the peer's in any phase")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=15), st.integers(0, 1000), st.booleans())
def test_a_tick_for_the_beat_alone_is_stepped_as_the_full_step_would(sequence, seed,
                                                                       failback):
    """The shortcut for a tick at which only the next beat is due (``only_the_beat_due``:
    the beat is published without evaluating the whole state) gives exactly what the full
    step gives: the same state, the same actions (the beat's bytes) and reasons; over random
    event sequences of both simulated cores (links cut, lossy, delayed; kills, restarts,
    admin commands)."""
    taken = {"beat": 0, "monitor": 0}

    def compared(state: CoreState, event: Event, now: float) -> Step:
        result = core_step(state, event, now)
        if isinstance(event, Tick) and only_the_beat_due(state, now) is not None:
            full = full_step(state, event, now)
            assert (result.actions, result.reasons) == (full.actions, full.reasons), now
            assert result.state == full.state, now
            if any(isinstance(a, CheckResource) for a in full.actions):
                taken["monitor"] += 1  # a monitor due with the beat: its check issued
            else:
                assert not result.news and busy(result.state) == busy(state), now
                taken["beat"] += 1
        return result

    run_sequence(compared, sequence, seed, failback)
    run_sequence(compared, [], seed, failback, settle=3.0)  # and an idle pair after it
    assert taken["beat"] > 0  # most keepalive ticks of an idle pair
    assert taken["monitor"] > 0  # the owner's monitor, with a beat (not quiet: on a tick)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=15), st.integers(0, 1000), st.booleans())
def test_a_check_that_found_its_resource_running_is_stepped_as_the_full_step_would(
        sequence, seed, failback):
    """The shortcut for a monitor's answer that says the resource runs
    (``only_a_check_answered``: the check is done without evaluating the whole state) gives
    exactly what the full step gives: the same state, the same actions and reasons; over
    random event sequences of both simulated cores (monitors every second; links cut, lossy,
    delayed; kills, restarts, admin commands, failing resources)."""
    taken = 0

    def compared(state: CoreState, event: Event, now: float) -> Step:
        nonlocal taken
        result = core_step(state, event, now)
        if (isinstance(event, ResourceResult)
                and only_a_check_answered(state, event, now) is not None):
            full = full_step(state, event, now)
            assert (result.actions, result.reasons) == (full.actions, full.reasons), now
            assert result.state == full.state, now
            taken += 1
        return result

    run_sequence(compared, sequence, seed, failback, settle=3.0)
    run_sequence(compared, [], seed, failback, settle=4.0)  # and an idle pair after it
    assert taken > 0  # the owner's monitor, every second once the group runs


def test_a_decision_that_waited_for_a_check_is_taken_when_it_is_answered():
    """News that came while the owner's check was in flight (here: the group's resources
    changed in the configuration) waits for the check (``decide_group``); the check's answer
    is then stepped the full way, which restarts the group, and so is every monitor after
    it until the decision is taken: the shortcuts (``only_a_check_answered``,
    ``_monitors_due``) never take its place."""
    sim = Sim(make_config())
    sim.run(4.0)
    for _ in range(2000):  # to the moment the owner's check is in flight
        sim.run(0.001)
        s = sim.nodes["node1"].state
        if s.groups["web"].inflight is not None and s.groups["web"].inflight.kind == "check":
            break
    else:
        raise AssertionError("node1 issued no check in 2 s")
    assert s.groups["web"].activity is Activity.RUNNING
    now = sim.now
    changed = make_config(resources='["IPaddr::192.168.85.3/24/eth0", "noop::db"]')
    s = core_step(s, ConfigChanged(changed), now).state
    assert s.groups["web"].inflight is not None  # the decision waits for the check
    answer = ResourceResult("web", s.groups["web"].inflight_id, True, True)
    assert only_a_check_answered(s, answer, now) is None
    result = core_step(s, answer, now)
    assert result == full_step(s, answer, now)
    assert any(isinstance(a, StopResource) for a in result.actions)
    assert any("its resources changed in the configuration" in r for r in result.reasons)
    # a monitor due while that decision waits is not a shortcut either
    pending = evolve(s, groups={**s.groups, "web": evolve(
        s.groups["web"], inflight=None, plan=(), next_monitor=now - 1.0)})
    assert step_module._monitors_due(pending, now) is None


@pytest.mark.parametrize("quiet", [False, True])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=15), st.integers(0, 1000), st.booleans())
def test_the_next_deadline_is_the_earliest_deadline_ahead(quiet, sequence, seed, failback):
    """``next_deadline`` (from the memo of each state's deadlines, whose settled part the
    step's shortcuts carry from the state before: ``carry``) is the earliest of
    every deadline (``deadlines``, worked out afresh) after ``now``, or a keepalive from now
    when none is; asked of the state before and after every step of both simulated cores
    (before it, at the step's ``now`` and at a later one, when some of them have passed),
    with the links read at arrival or, quiet, at each node's own wake-ups."""
    asked = 0

    def plain(state: CoreState, now: float) -> float:
        future = [x for x in deadlines_module.deadlines(state) if x > now + EPS]
        return min(future) if future else now + state.config.timing.keepalive

    def compared(state: CoreState, event: Event, now: float) -> Step:
        nonlocal asked
        for at in (now, now + 0.4):
            assert next_deadline(state, at) == plain(state, at), (event, at)
        result = core_step(state, event, now)
        assert next_deadline(result.state, now) == plain(result.state, now), (event, now)
        asked += 1
        return result

    run_sequence(compared, sequence, seed, failback, quiet=quiet)
    assert asked > 0


def test_settled_deadlines_are_carried_only_when_nothing_they_are_made_of_changed():
    """``carry`` gives the next state the settled deadlines of the one before (as an
    idle keepalive's shortcut does) only when its fencing requests, admin commands and
    forced promotions are the same objects and the peer is alive in both; otherwise they
    are worked out afresh. Either way they are ``settled_deadlines`` of that state."""
    from supervisor.core.state import ForceData
    from supervisor.core.states import PeerStatus

    sim = Sim(make_config())
    sim.run(3.0)
    s = sim.nodes["node1"].state
    assert s.peer_state.status is PeerStatus.ALIVE
    armed = evolve(s, force_data={"web": ForceData(s.started_at + 99.0, frozenset({"r0"}))})
    known = deadlines_module._known
    assert deadlines_module._settled(known(armed)) == (s.started_at + 99.0,)

    beat_sent = evolve(armed, seq=armed.seq + 1)  # what a shortcut changes, not these
    assert deadlines_module.carry(armed, beat_sent)
    assert deadlines_module._KNOWN[id(beat_sent)].settled == (s.started_at + 99.0,)

    used_up = evolve(armed, force_data={})
    assert not deadlines_module.carry(armed, used_up)
    assert deadlines_module._settled(known(used_up)) == ()
    dead = evolve(armed, peer_state=evolve(armed.peer_state, status=PeerStatus.DEAD))
    assert not deadlines_module.carry(armed, dead)
    fenced = evolve(armed, fence=evolve(armed.fence))  # another object (equal or not)
    assert not deadlines_module.carry(armed, fenced)
    resolving = evolve(armed, resolving=dict(armed.resolving))
    assert not deadlines_module.carry(armed, resolving)
    was_dead = evolve(armed, peer_state=evolve(armed.peer_state, status=PeerStatus.DEAD))
    deadlines_module._settled(known(was_dead))
    assert not deadlines_module.carry(was_dead, armed)  # the peer came back
    for state in (beat_sent, used_up, dead, fenced, resolving):
        assert deadlines_module._settled(known(state)) == deadlines_module.settled_deadlines(state)


def test_a_shortcuts_step_leaves_a_floor_of_the_other_deadlines():
    """An idle node's keepalive (a tick for our beat alone: a shortcut) leaves the state it
    ends with a floor of its other deadlines (the earliest of the state before's): the next
    deadline is then the next beat without working them out again, and a floor that a time
    reaches makes them worked out (the property test above compares every answer)."""
    sim = Sim(make_config())
    sim.run(3.0)
    s = sim.nodes["node1"].state
    now = s.next_beat
    earliest = deadlines_module.other_deadlines(s)[0]
    assert earliest > now + 0.1  # (idle: the beat is due before every other deadline)
    result = core_step(s, Tick(), now)
    assert not result.news and any(isinstance(a, SendFrame) for a in result.actions)
    after = result.state
    known = deadlines_module._KNOWN[id(after)]
    assert known.state is after and known.floor == earliest

    def worked_out() -> bool:
        return known.times is not None

    assert next_deadline(after, now) == after.next_beat
    assert not worked_out()
    assert not deadlines_module.other_deadline_by(after, now + 0.05)
    assert not worked_out()
    assert deadlines_module.other_deadline_by(after, earliest + 10.0)
    assert worked_out() and known.earliest >= earliest
    # a full step carries nothing: its state has no floor
    full = full_step(s, Tick(), now).state
    assert id(full) not in deadlines_module._KNOWN


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=15), st.integers(0, 1000), st.booleans(),
       st.floats(0.0, 0.1))
def test_our_beat_encoded_from_the_last_ones_cut_is_the_full_encoding(sequence, seed,
                                                                      failback, gap):
    """Every step's beats, encoded from the cut of the node's last beat when it says the
    same (``publish.frame``), are the bytes of the beat built and encoded field by field
    (``publish.USE_CUTS`` off): the same actions, reasons and state; over random event
    sequences of both simulated cores (links cut, lossy, delayed; kills, restarts, admin
    commands, shutdowns), in any phase."""
    counted = {"beats": 0, "from a cut": 0}
    encode_next = codec.encode_next

    def counting(*args: Any) -> bytes:
        counted["from a cut"] += 1
        return encode_next(*args)

    def compared(state: CoreState, event: Event, now: float) -> Step:
        result = core_step(state, event, now)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(publish, "USE_CUTS", False)
            full = core_step(state, event, now)
        assert (result.actions, result.reasons) == (full.actions, full.reasons), (event, now)
        assert result.state == full.state, (event, now)
        counted["beats"] += sum(isinstance(a, SendFrame) for a in result.actions)
        return result

    publish._CUTS.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codec, "encode_next", counting)
        run_sequence(compared, sequence, seed, failback, gap=gap)
    assert counted["from a cut"] > 0  # most beats of a formed pair say what the last said
