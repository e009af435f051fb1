"""Fencing without a fencing device: DRBD's fence-peer carried by the heartbeat links.

The codec fields (``o``: requests, ``oa``: answers), the decision rules of one core fed by
hand-made peer beats, and two simulated cores exchanging real frames.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core import codec
from supervisor.core.actions import FenceAnswer, Log, OutdateReplica, SendFrame, StopResource
from supervisor.core.events import (
    FenceRequested,
    FrameReceived,
    OutdateResult,
    ResourceResult,
    ShutdownRequested,
    Tick,
)
from supervisor.core.fencing import fence_timeout
from supervisor.core.state import initial_state
from supervisor.core.states import NodeStatus, PeerStatus
from supervisor.core.step import Step, next_deadline, step
from supervisor.core.view import status as core_status
from tests.sim import KEY, Sim, make_config

# --------------------------------------------------------------------------------------------
# Codec

# names as the schema allows them (codec.NAME_RE); other names are tested in test_protocol
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,11}", fullmatch=True)
ids = st.integers(0, 2**52)
fence_beats = st.builds(
    codec.Beat,
    cluster=st.just("c1"),
    sender=names,
    generation=st.integers(0, codec.MAX_GENERATION),
    seq=st.integers(0, 2**40),
    outdate=st.dictionaries(names, ids, max_size=3),
    outdate_answers=st.dictionaries(
        names, st.tuples(ids, st.sampled_from(sorted(codec.OUTDATE_RESULTS))), max_size=3
    ),
)


@given(fence_beats)
def test_codec_round_trip_with_fence_fields(beat):
    assert codec.decode(codec.encode(beat, KEY), KEY, "c1") == beat


def _body(beat: codec.Beat) -> dict[str, Any]:
    line = codec.encode(beat, KEY)
    blob = base64.b64decode(line[len(codec.MAGIC):].strip())
    body: dict[str, Any] = json.loads(blob[: -codec.MAC_LEN])
    return body


def _frame(body: dict[str, Any]) -> bytes:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return codec.MAGIC + base64.b64encode(raw + codec._mac(KEY, raw)) + b"\n"


def test_fence_fields_are_left_out_when_empty_and_absent_means_empty():
    plain = codec.Beat("c1", "node1", 1, 5)
    body = _body(plain)
    assert "o" not in body and "oa" not in body
    assert codec.decode(_frame(body), KEY, "c1").outdate == {}
    busy = codec.Beat("c1", "node1", 1, 6, outdate={"r0": 7},
                      outdate_answers={"r1": (9, "primary")})
    body = _body(busy)
    assert body["o"] == {"r0": 7} and body["oa"] == {"r1": [9, "primary"]}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("o", {"r0": "7"}),
        ("o", {"r0": -1}),
        ("o", {"r0": True}),
        ("o", {"r0": 1.5}),
        ("o", [["r0", 7]]),
        ("o", "r0"),
        ("oa", {"r0": [7, "done"]}),
        ("oa", {"r0": [7]}),
        ("oa", {"r0": [7, "outdated", 1]}),
        ("oa", {"r0": ["7", "outdated"]}),
        ("oa", {"r0": [7, ["outdated"]]}),
        ("oa", {"r0": "7 outdated"}),
        ("oa", {"r0": {"7": "outdated"}}),
        ("oa", [7, "outdated"]),
    ],
)
def test_malformed_fence_fields_are_rejected(key, value):
    body = _body(codec.Beat("c1", "node1", 1, 5))
    body[key] = value
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(_frame(body), KEY, "c1")
    assert info.value.cause == "malformed"


def test_a_frame_with_a_pending_request_and_answer_stays_small():
    beat = codec.Beat(
        "cluster", "node1", 12, 123456,
        links={"serial": True, "crossover": True, "public": True},
        groups={"web": codec.GroupView(epoch=12 << 20 | 3)},
        outdate={"r0": 12 << 20 | 1}, outdate_answers={"r0": (13 << 20 | 1, "outdated")},
    )
    assert len(codec.encode(beat, KEY)) < 360


# --------------------------------------------------------------------------------------------
# One core, fed by hand-made beats from its peer (node2)

CFG = make_config()  # keepalive 100 ms, deadtime 500 ms, initdead 2 s
TIMEOUT = fence_timeout(CFG)


class Node:
    """node1's core and what it did; ``peer_beat`` feeds a frame from node2."""

    def __init__(self) -> None:
        self.state = initial_state(CFG, "node1", KEY, 3, 0.0)
        self.now = 0.0
        self.peer_seq = 0
        self.actions: list[object] = []
        self.reasons: list[str] = []

    def step(self, event: object, at: float | None = None) -> Step:
        if at is not None:
            self.now = at
        result = step(self.state, event, self.now)  # type: ignore[arg-type]
        self.state = result.state
        self.actions += result.actions
        self.reasons += result.reasons
        return result

    def peer_beat(self, at: float, *, outdate: dict[str, int] | None = None,
                  answers: dict[str, tuple[int, str]] | None = None,
                  status: NodeStatus = NodeStatus.ACTIVE, link: str = "serial") -> Step:
        self.peer_seq += 1
        beat = codec.Beat("sim", "node2", 1, self.peer_seq, status=status,
                          outdate=outdate or {}, outdate_answers=answers or {})
        return self.step(FrameReceived(link, codec.encode(beat, KEY)), at)

    def answers(self) -> list[FenceAnswer]:
        return [a for a in self.actions if isinstance(a, FenceAnswer)]

    def outdates(self) -> list[OutdateReplica]:
        return [a for a in self.actions if isinstance(a, OutdateReplica)]

    def last_sent(self) -> codec.Beat:
        frames = [a for a in self.actions if isinstance(a, SendFrame)]
        return codec.decode(frames[-1].data, KEY, "sim")


def alive_node() -> Node:
    node = Node()
    node.step(Tick(), 0.0)
    node.peer_beat(0.05)
    assert node.state.peer_status is PeerStatus.ALIVE
    return node


def test_request_while_peer_never_heard_answers_5_at_once():
    node = Node()
    step = node.step(FenceRequested("r0", 1), 0.5)
    assert step.actions[0] == FenceAnswer(1, 5, step.actions[0].message)  # type: ignore[union-attr]
    assert "node2 is unreachable (not heard since node1 started)" in step.reasons[0]
    assert node.state.fence.out == {}
    assert node.last_sent().outdate == {}


def test_request_while_peer_dead_answers_5_at_once_with_the_reason():
    node = alive_node()
    node.step(Tick(), 1.0)  # 0.95 s of silence > deadtime 0.5 s
    assert node.state.peer_status is PeerStatus.DEAD
    step = node.step(FenceRequested("r0", 4))
    assert [(a.request_id, a.code) for a in node.answers()] == [(4, 5)]
    assert "silent on all links" in step.reasons[0] and "exit 5" in step.reasons[0]
    assert node.state.fence.last is not None and node.state.fence.last.code == 5


def test_request_while_peer_alive_is_published_in_every_beat_until_answered():
    node = alive_node()
    step = node.step(FenceRequested("r0", 1), 0.1)
    assert node.answers() == []
    assert "asking it over the heartbeat links" in step.reasons[0]
    wire = node.state.fence.out["r0"].wire_id
    assert wire >> 20 == 3  # the generation: ids never repeat across restarts
    assert node.last_sent().outdate == {"r0": wire}  # published at once (state changed)
    for i in range(1, 6):  # and repeated in every keepalive beat
        node.peer_beat(0.1 + i * 0.1 - 0.05)
        node.step(Tick(), 0.1 + i * 0.1)
        assert node.last_sent().outdate == {"r0": wire}
    step = node.peer_beat(0.75, answers={"r0": (wire, "outdated")})
    fa = [a for a in step.actions if isinstance(a, FenceAnswer)]
    assert [(a.request_id, a.code) for a in fa] == [(1, 4)]
    assert "node2 outdated its replica; exit 4" in fa[0].message
    assert fa[0].message in step.reasons
    assert node.state.fence.out == {}
    assert node.last_sent().outdate == {}  # no longer asked
    node.peer_beat(0.8, answers={"r0": (wire, "outdated")})  # repeated answer: no 2nd answer
    assert len(node.answers()) == 1


@pytest.mark.parametrize(
    ("result", "code"),
    [("inconsistent", 3), ("outdated", 4), ("failed", 5), ("primary", 6)],
)
def test_peer_results_map_to_drbd_exit_codes(result, code):
    node = alive_node()
    node.step(FenceRequested("r0", 9), 0.1)
    wire = node.state.fence.out["r0"].wire_id
    node.peer_beat(0.15, answers={"r0": (wire, result)})
    assert [(a.request_id, a.code) for a in node.answers()] == [(9, code)]
    assert f"exit {code}" in node.answers()[0].message
    st = core_status(node.state, 0.2)["fencing"]
    assert st["last"]["code"] == code and st["pending"] == []


def test_an_answer_to_another_request_is_not_ours():
    node = alive_node()
    node.step(FenceRequested("r0", 1), 0.1)
    wire = node.state.fence.out["r0"].wire_id
    node.peer_beat(0.15, answers={"r0": (wire - 1, "outdated"), "r1": (wire, "outdated")})
    assert node.answers() == []
    assert "r0" in node.state.fence.out


def test_no_answer_from_a_live_peer_gives_5_after_the_timeout():
    node = alive_node()
    node.step(FenceRequested("r0", 2), 0.1)
    assert TIMEOUT == 30.0  # max(2 x 0.5 s, 30 s)
    deadline = 0.1 + TIMEOUT
    t = 0.1
    while t < deadline - 0.2:  # the peer stays alive but never answers
        t += 0.1
        node.peer_beat(t - 0.05)
        assert next_deadline(node.state, node.now) <= deadline + 1e-9
        node.step(Tick(), t)
    assert node.answers() == []
    st = core_status(node.state, node.now)["fencing"]
    assert st["pending"][0]["resource"] == "r0" and st["pending"][0]["handlers"] == 1
    node.peer_beat(deadline - 0.05)
    step = node.step(Tick(), deadline)
    assert [(a.request_id, a.code) for a in node.answers()] == [(2, 5)]
    assert any("no answer from node2 within 30.0 s although it is alive" in r
               for r in step.reasons)
    assert any(isinstance(a, Log) and a.level == "warning" for a in step.actions)
    assert node.last_sent().outdate == {}


def test_the_timeout_is_twice_deadtime_when_that_is_longer():
    assert fence_timeout(make_config(deadtime="20s", warntime="4s",
                                            initdead="40s")) == 40.0


def test_peer_dying_meanwhile_answers_5():
    node = alive_node()
    node.step(FenceRequested("r0", 3), 0.1)
    step = node.step(Tick(), 0.6)  # 0.55 s of silence
    assert node.state.peer_status is PeerStatus.DEAD
    assert [(a.request_id, a.code) for a in node.answers()] == [(3, 5)]
    assert any("became unreachable before answering" in r for r in step.reasons)


def test_peer_leaving_meanwhile_answers_5():
    node = alive_node()
    node.step(FenceRequested("r0", 3), 0.1)
    node.peer_beat(0.2, status=NodeStatus.LEAVING)
    assert [(a.request_id, a.code) for a in node.answers()] == [(3, 5)]


def test_shutting_down_answers_pending_requests_5():
    node = alive_node()
    node.step(FenceRequested("r0", 3), 0.1)
    node.step(ShutdownRequested(), 0.15)
    for i in range(40):  # the start-up cleanup stops are never answered: nothing runs here
        node.peer_beat(0.2 + i * 0.05)
        if node.answers():
            break
        for op in [a for a in node.actions if isinstance(a, StopResource)]:
            node.actions.remove(op)
            node.step(ResourceResult(op.group, op.op_id, True))
    assert node.state.status is NodeStatus.LEAVING
    assert [(a.request_id, a.code) for a in node.answers()] == [(3, 5)]
    assert any("shutting down before node2 answered" in r for r in node.reasons)


def test_a_second_handler_for_the_same_resource_waits_for_the_same_answer():
    node = alive_node()
    node.step(FenceRequested("r0", 1), 0.1)
    wire = node.state.fence.out["r0"].wire_id
    step = node.step(FenceRequested("r0", 2), 0.12)
    assert "already asking node2" in step.reasons[0]
    assert node.state.fence.out["r0"].wire_id == wire
    node.peer_beat(0.15, answers={"r0": (wire, "inconsistent")})
    assert sorted((a.request_id, a.code) for a in node.answers()) == [(1, 3), (2, 3)]


def test_invalid_resource_names_are_refused():
    node = alive_node()
    node.step(FenceRequested("-r0", 1), 0.1)
    assert [(a.request_id, a.code) for a in node.answers()] == [(1, 5)]
    assert node.state.fence.out == {}


# -- the receiving side --------------------------------------------------------------------


def test_a_peer_request_runs_one_outdate_and_publishes_the_answer_while_asked():
    node = alive_node()
    step = node.peer_beat(0.1, outdate={"r0": 77})
    assert [a for a in step.actions if isinstance(a, OutdateReplica)] == [
        OutdateReplica("r0", 77, TIMEOUT / 2)
    ]
    assert any("asks node1 to outdate its replica (fence request 77)" in r
               for r in step.reasons)
    for i in range(10):  # the request is repeated in every beat: still one outdate
        node.peer_beat(0.15 + i * 0.05, outdate={"r0": 77})
    node.peer_beat(0.7, outdate={"r0": 77}, link="crossover")
    assert len(node.outdates()) == 1
    assert node.last_sent().outdate_answers == {}  # no result yet
    step = node.step(OutdateResult("r0", 77, "outdated"), 0.72)
    assert "the replica of DRBD resource r0 on node1 is Outdated now" in step.reasons[0]
    assert node.last_sent().outdate_answers == {"r0": (77, "outdated")}  # sent at once
    node.peer_beat(0.75, outdate={"r0": 77})
    node.step(Tick(), 0.9)
    assert node.last_sent().outdate_answers == {"r0": (77, "outdated")}  # repeated
    node.peer_beat(0.95)  # the peer got it and stopped asking
    assert node.last_sent().outdate_answers == {}
    st = core_status(node.state, 1.0)["fencing"]
    assert st["peer_requests"] == [
        {"resource": "r0", "request": 77, "result": "outdated", "age": 0.9}
    ]
    step = node.peer_beat(1.0, outdate={"r0": 78})  # a new request: a new outdate
    assert [a.request_id for a in node.outdates()] == [77, 78]


def test_stale_or_repeated_outdate_results_are_ignored():
    node = alive_node()
    node.peer_beat(0.1, outdate={"r0": 77})
    step = node.step(OutdateResult("r0", 76, "outdated"), 0.11)
    assert any(isinstance(a, Log) and "stale outdate result" in a.message for a in step.actions)
    node.step(OutdateResult("r0", 77, "primary"), 0.12)
    node.step(OutdateResult("r0", 77, "outdated"), 0.13)
    assert node.state.fence.in_["r0"].result == "primary"
    assert node.last_sent().outdate_answers == {"r0": (77, "primary")}


def test_a_request_with_a_bad_resource_name_is_dropped_at_the_edge_and_runs_nothing():
    node = alive_node()
    node.peer_beat(0.1, outdate={"--force": 5})
    assert node.state.dropped == {"malformed": 1}
    assert node.outdates() == []
    assert node.last_sent().outdate_answers == {}


def test_this_node_never_publishes_a_request_its_peer_would_drop():
    node = alive_node()
    step = node.step(FenceRequested("r0\n", 3), 0.1)
    assert [(a.request_id, a.code) for a in node.answers()] == [(3, 5)]
    assert "not a DRBD resource name" in step.reasons[0]
    assert node.last_sent().outdate == {}


def test_requests_in_an_older_frame_from_another_link_are_not_acted_on():
    node = alive_node()
    old = codec.encode(codec.Beat("sim", "node2", 1, 50, outdate={"r0": 1}), KEY)
    node.peer_beat(0.1)  # seq 2
    node.peer_seq = 60
    node.peer_beat(0.12, link="crossover")  # seq 61: newer, asks nothing
    node.step(FrameReceived("public", old), 0.13)  # seq 50 on a fresh link: liveness only
    assert node.outdates() == []


# --------------------------------------------------------------------------------------------
# Two simulated cores


def formed(**kw: Any) -> Sim:
    sim = Sim(make_config(**kw))
    sim.run(3.0)
    assert sim.owner() == "node1"
    return sim


def answers(sim: Sim, node: str = "node1") -> list[tuple[int, int]]:
    return [(a.request_id, a.code) for _, a in sim.nodes[node].fence_answers]


def test_sim_primary_asks_secondary_outdates_once_primary_gets_4():
    sim = formed()
    t0 = sim.now
    sim.deliver("node1", FenceRequested("r0", 1))
    sim.run(0.5)
    node2 = sim.nodes["node2"]
    assert len(node2.outdates) == 1
    at, action = node2.outdates[0]
    assert action.resource == "r0" and at - t0 < 0.01  # the beat went out at once
    assert answers(sim) == []
    sim.deliver("node2", OutdateResult("r0", action.request_id, "outdated"))
    sim.run(0.05)
    assert answers(sim) == [(1, 4)]
    sim.run(2.0)
    assert len(node2.outdates) == 1
    assert answers(sim) == [(1, 4)]
    st = sim.status("node1")["fencing"]
    assert st["pending"] == [] and st["last"]["code"] == 4
    assert sim.status("node2")["fencing"]["peer_requests"][0]["result"] == "outdated"
    assert sim.violations == []


def test_sim_duplicate_frames_do_not_outdate_twice():
    sim = formed()
    sim.nodes["node2"].outdate_result = "outdated"
    for link in sim.links.values():  # every frame arrives three times, once per link
        link.delay, link.jitter = 0.01, 0.05  # and reordered
    sim.deliver("node1", FenceRequested("r0", 1))
    request_frame = sim.nodes["node1"].last_frame
    sim.run(0.3)
    for name in ("serial", "crossover", "public"):  # replayed copies of the request frame
        sim.deliver("node2", FrameReceived(name, request_frame))
    sim.run(3.0)
    assert len(sim.nodes["node2"].outdates) == 1
    assert answers(sim) == [(1, 4)]
    assert sim.nodes["node2"].state.dropped.get("replay", 0) > 0


def test_sim_secondary_dead_answers_5_immediately():
    sim = formed()
    sim.kill("node2")
    sim.run(1.0)
    assert sim.peer_status("node1") is PeerStatus.DEAD
    reasons = sim.deliver("node1", FenceRequested("r0", 1))
    assert answers(sim) == [(1, 5)]
    assert "exit 5 (peer unreachable)" in reasons[0]


def test_sim_request_lost_on_the_only_heartbeat_link_answers_5_after_the_timeout():
    # The replication link (crossover) broke, and so did the public one; the serial link
    # loses everything node1 sends while node2's beats still arrive: node1 sees a live peer
    # that never answers. Beats every 0.35 s: only the request's own deadline wakes the core
    # at exactly 30 s.
    sim = formed(keepalive="350ms", warntime="700ms", deadtime="1s", initdead="3s")
    sim.cut("crossover", "public")
    sim.run(1.0)
    assert sim.peer_status("node1") is PeerStatus.ALIVE
    sim.cut("serial", direction="node1")
    t0 = sim.now
    sim.deliver("node1", FenceRequested("r0", 1))
    sim.run(TIMEOUT - 0.1)
    assert answers(sim) == []
    assert sim.peer_status("node1") is PeerStatus.ALIVE
    sim.run(0.2)
    [(at, answer)] = sim.nodes["node1"].fence_answers
    assert (answer.request_id, answer.code) == (1, 5)
    assert at - t0 == pytest.approx(TIMEOUT, abs=1e-6)
    assert "no answer from node2 within 30.0 s" in answer.message
    assert sim.nodes["node2"].outdates == []


def test_sim_all_heartbeat_links_lost_answers_5_when_the_peer_is_declared_dead():
    sim = formed()
    sim.check_invariant = False  # every link cut: the documented split-brain case
    sim.cut("crossover", "public")
    sim.run(1.0)
    sim.deliver("node1", FenceRequested("r0", 1))
    sim.links["serial"].loss = 1.0
    t0 = sim.now
    sim.run(1.0)
    [(at, answer)] = sim.nodes["node1"].fence_answers
    assert answer.code == 5 and at - t0 <= 0.5 + 1e-6
    assert "became unreachable before answering" in answer.message


def test_sim_the_peer_restarting_gets_the_request_again():
    sim = formed()
    sim.deliver("node1", FenceRequested("r0", 1))
    sim.run(0.2)
    assert len(sim.nodes["node2"].outdates) == 1  # node2 then loses power before answering
    sim.kill("node2")
    sim.restart("node2")  # back within deadtime: node1 never saw it dead
    sim.nodes["node2"].outdate_result = "outdated"
    sim.run(1.0)
    assert answers(sim) == [(1, 4)]


def test_status_text_shows_pending_and_last_fence_peer():
    from supervisor.cli import format_status

    sim = formed()
    sim.deliver("node1", FenceRequested("r0", 1))
    sim.run(0.3)
    text = format_status(sim.status("node1"))
    assert "fence-peer r0: waiting for the peer's answer" in text
    request = sim.nodes["node2"].outdates[0][1]
    sim.deliver("node2", OutdateResult("r0", request.request_id, "primary"))
    sim.run(0.3)
    text = format_status(sim.status("node1"))
    assert "waiting for the peer's answer" not in text
    assert "last fence-peer (0 s ago): fence-peer for DRBD resource r0: node2 refused" in text
