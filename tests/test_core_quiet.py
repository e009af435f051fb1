"""Quiet reading (supervisor.core.quiet): while nothing is in flight, a node's frames wait for
its own next wake-up. On the simulated pair (tests/sim.py ``quiet``, which holds a quiet
node's frames until its next tick and steps them first, as the loop does): an idle pair goes
quiet and nothing turns late or dead for it, a dead peer is still found within deadtime,
admin moves and a power loss still move the group, and each reason to read at arrival is
named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.actions import SendFrame
from supervisor.core.events import (
    FrameReceived,
    FramesReceived,
    Tick,
    shared_arrivals,
)
from supervisor.core.quiet import QUIET_KEEPALIVE, busy
from supervisor.core.step import full_step, step
from tests.sim import Sim, make_config

TROUBLE = ("late", "down", "dead", "failover", "taking over")


def _trouble(sim: Sim) -> list[str]:
    return [r for n in sim.nodes for r in sim.reasons(n)
            if any(word in r.lower() for word in TROUBLE)]


def _quiet_sim(**config: object) -> Sim:
    sim = Sim(make_config(**config))  # type: ignore[arg-type]
    sim.quiet = True
    return sim


def test_an_idle_pair_goes_quiet_and_nothing_turns_late() -> None:
    sim = _quiet_sim()
    sim.run(5.0)
    assert sim.owner() == "node1"
    for link in sim.links.values():
        link.jitter = 0.03  # beats arrive anywhere within 30 ms: some wait two wake-ups
    held, trouble = sim.held, _trouble(sim)
    stops = len(sim.nodes["node1"].stops) + len(sim.nodes["node2"].stops)
    sim.run(120.0)
    assert [busy(n.state) for n in sim.nodes.values()] == [None, None]
    # ten beats a second on three links from each node, all but a few held for a wake-up
    assert sim.held - held > 0.9 * 2 * 3 * 10 * 120, sim.held - held
    assert _trouble(sim) == trouble, _trouble(sim)[len(trouble):]
    assert sim.owner() == "node1"
    assert len(sim.nodes["node1"].stops) + len(sim.nodes["node2"].stops) == stops


def test_a_dead_peer_is_found_as_fast_as_when_every_frame_is_read_at_arrival() -> None:
    """The peer is dead ``deadtime`` after its last frame reached this node, read at arrival
    or held for a quiet wake-up (a held datagram carries its arrival, a serial frame its
    beat's datagrams' arrival: FrameReceived.arrived), whatever the phase of the two nodes'
    beats (the kill at several offsets within a keepalive). Before the arrivals, a quiet node
    heard a held beat when it read it, and found the peer dead up to a keepalive late."""
    for quiet in (False, True):
        for offset in (0.0, 0.023, 0.051, 0.077):
            sim = Sim(make_config())
            sim.quiet = quiet
            sim.run(5.0 + offset)
            assert sim.owner() == "node1"
            sim.kill("node1")
            sim.run(3.0)
            assert sim.owner() == "node2", quiet
            node2 = sim.nodes["node2"]
            decided = next(t for t, r in node2.reasons if r.startswith("taking over group web"))
            assert node2.last_arrival is not None
            # deadtime 500 ms
            assert decided - node2.last_arrival == pytest.approx(0.5, abs=1e-6), (
                quiet, offset, decided, node2.last_arrival)


def test_standby_and_takeover_move_the_group_on_a_quiet_pair() -> None:
    sim = _quiet_sim()
    sim.run(5.0)
    assert busy(sim.nodes["node1"].state) is None
    sim.admin("node1", "standby")
    assert busy(sim.nodes["node1"].state) == "group web is changing"
    sim.run(3.0)
    assert sim.owner() == "node2"
    sim.run(3.0)
    assert busy(sim.nodes["node2"].state) is None
    sim.admin("node1", "takeover")
    sim.run(3.0)
    assert sim.owner() == "node1"


def test_each_reason_to_read_at_arrival_is_named() -> None:
    slow = _quiet_sim(keepalive="1s", deadtime="5s", warntime="3s", initdead="10s")
    slow.run(15.0)
    assert busy(slow.nodes["node2"].state) == (
        f"keepalive above {QUIET_KEEPALIVE * 1000:.0f} ms")
    tight = _quiet_sim(warntime="200ms")
    tight.run(5.0)
    assert busy(tight.nodes["node2"].state) == "warntime below 2.5 keepalives"
    sim = _quiet_sim()
    assert busy(sim.nodes["node1"].state) == "node1 is init"
    sim.run(5.0)
    sim.cut("crossover")
    sim.run(1.0)
    assert busy(sim.nodes["node2"].state) == "link crossover is down"
    sim.heal("crossover")
    sim.run(1.0)
    assert busy(sim.nodes["node2"].state) is None
    sim.kill("node1")
    sim.run(2.0)
    assert busy(sim.nodes["node2"].state) == "peer node1 is not known alive"
    sim.shutdown("node2")
    assert busy(sim.nodes["node2"].state) == "node2 is stopping"


def _rtts(sim: Sim, node: str) -> dict[str, float | None]:
    return {link["name"]: link["rtt"] for link in sim.status(node)["links"]}


def test_no_round_trip_is_measured_from_frames_that_waited() -> None:
    """A frame read at a quiet wake-up may have waited up to a keepalive: it is not echoed
    and measures nothing, so the round trip shown stays the one measured at arrival while
    the pair formed (on the links whose turn came before it went quiet), not a figure
    inflated by the wait; busy again (a standby), frames read at arrival measure again."""
    sim = _quiet_sim()
    for link in sim.links.values():
        link.delay, link.jitter = 0.005, 0.0
    sim.run(5.0)
    formed = {n: _rtts(sim, n) for n in sim.nodes}
    measured = [v for r in formed.values() for v in r.values() if v is not None]
    assert len(measured) >= 2 and all(v == pytest.approx(0.010, abs=0.0015)
                                      for v in measured), formed
    for link in sim.links.values():
        link.delay = 0.020  # the wire gets slower while the pair is quiet
    sim.run(10.0)
    assert busy(sim.nodes["node1"].state) is None
    assert {n: _rtts(sim, n) for n in sim.nodes} == formed
    assert not any(ls.heard_waited is False and ls.last_heard is not None
                   and ls.last_heard > sim.now - 0.5
                   for n in sim.nodes.values() for ls in n.state.links.values())
    sim.admin("node1", "standby")  # busy: frames are read at arrival, echoed, measured
    sim.run(0.5)
    after = _rtts(sim, "node1")
    changed = {k: v for k, v in after.items() if v != formed["node1"][k]}
    assert changed and all(v == pytest.approx(0.040, abs=0.003)
                           for v in changed.values()), after


def test_the_copies_of_a_beat_share_the_latest_arrival_known() -> None:
    """A serial frame has no receive timestamp: it is heard with the datagrams that carried
    the same beat in the same read (the latest of their arrivals); a line no datagram
    timestamped keeps None (heard when read)."""
    lines = [b"beat 7", b"beat 7", b"beat 7", b"beat 8"]
    assert shared_arrivals(lines, [None, 10.004, 10.006, None]) == [10.006] * 3 + [None]
    assert shared_arrivals(lines[:3], [10.006, 10.004, None]) == [10.006] * 3  # one line
    assert shared_arrivals(lines[:3], [None] * 3) == [None] * 3
    assert shared_arrivals([b"beat 9"], [None]) == [None]
    with pytest.raises(ValueError):  # a line without its arrival is a caller's bug
        shared_arrivals(lines, [None])


@given(st.lists(st.tuples(st.sampled_from([b"beat 7", b"beat 8", b"beat 9"]),
                          st.one_of(st.none(), st.sampled_from([10.001, 10.004, 10.006]))),
                min_size=1, max_size=6))
def test_each_frame_is_heard_at_the_latest_arrival_of_its_lines_copies(
        read: list[tuple[bytes, float | None]]) -> None:
    """Whatever a wake-up read (one beat's copies, the common case the first loop answers,
    or several beats): each frame's arrival is the latest known among the frames of its
    line, None when none of them was timestamped."""
    lines, arrivals = [line for line, _ in read], [at for _, at in read]
    expected = []
    for line in lines:
        known = [at for other, at in read if other == line and at is not None]
        expected.append(max(known) if known else None)
    assert shared_arrivals(lines, arrivals) == expected


def _next_beats(sim: Sim, node: str, n: int) -> list[tuple[float, bytes]]:
    """The next ``n`` beats ``node`` sends from its present state (time, frame)."""
    s, t = sim.nodes[node].state, sim.now
    beats: list[tuple[float, bytes]] = []
    while len(beats) < n:
        t += 0.01
        result = step(s, Tick(), t)
        s = result.state
        beats += [(t, a.data) for a in result.actions if isinstance(a, SendFrame)]
    return beats[:n]


def test_an_older_beats_copy_read_after_a_newer_beat_does_not_take_the_peer_back() -> None:
    """The loop reads link by link: one read may hold beat 8 on the crossover before beat 7
    on the public link (its 8 still on the way). The copy of 7 proves nothing later than 8
    did: the peer and each link stay heard at their latest arrival, in the full step and
    its shortcut alike."""
    sim = _quiet_sim()
    sim.run(5.0)
    (t7, b7), (t8, b8) = _next_beats(sim, "node1", 2)
    node2 = sim.nodes["node2"].state
    read = [("serial", b7.strip(), None), ("crossover", b7.strip(), t7 + 0.001),
            ("crossover", b8.strip(), t8 + 0.001), ("public", b7.strip(), t7 + 0.002)]
    arrivals = shared_arrivals([line for _, line, _ in read], [at for _, _, at in read])
    batch = tuple(FrameReceived(link, line, True, at)
                  for (link, line, _), at in zip(read, arrivals, strict=True))
    now = t8 + 0.05
    for result in (full_step(node2, FramesReceived(batch), now),
                   step(node2, FramesReceived(batch), now)):
        assert result.state.peer_state.last_heard == t8 + 0.001
        assert result.state.links["crossover"].last_heard == t8 + 0.001
        assert result.state.links["public"].last_heard == t7 + 0.002
        assert not [r for r in result.reasons if "down" in r or "silent" in r]
