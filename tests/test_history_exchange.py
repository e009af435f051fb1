"""The event histories exchanged over the heartbeat links: the history frames' schema and
bounds, and two nodes' HistorySync catching up with each other through a fake link."""

from __future__ import annotations

import base64
import json

import pytest

from supervisor.core import historywire as wire
from supervisor.core.codec import MAC_LEN, DecodeError, _mac
from supervisor.core.notify import Kind, Notice, Severity
from supervisor.history import History
from supervisor.historysync import HistorySync

KEY = b"history-exchange-key"
T0 = 1_800_000_000.0


def forged(body: object, key: bytes = KEY) -> bytes:
    """A frame with a valid MAC around any body (what a peer with a bug could send)."""
    raw = json.dumps(body).encode()
    return wire.MAGIC + base64.b64encode(raw + _mac(key, raw)) + b"\n"


def recorded(tmp, node: str, n: int, reason: str = "r") -> History:
    h = History(tmp / node, node)
    (tmp / node).mkdir()
    for i in range(n):
        h.record(Notice(Kind.LINK_DOWN, f"{reason} {i}", link="serial"), mono=i, wall=T0 + i)
    return h


# --------------------------------------------------------------------------------------------
# The frames


def test_answer_round_trip_bounded(tmp_path):
    h = recorded(tmp_path, "node1", 10, reason="x" * 1000)
    frame, n = wire.encode_answer("pair", "node1", h.events, 10, KEY)
    assert n == wire.MAX_EVENTS and len(frame) <= wire.MAX_FRAME
    answer = wire.decode(frame, KEY, "pair", "node1")
    assert isinstance(answer, wire.Answer) and answer.last == 10
    assert [e.seq for e in answer.events] == [1, 2, 3, 4]
    first = answer.events[0]
    assert first.reason == "x" * (wire.MAX_REASON - 3) + "..."
    assert (first.node, first.kind, first.severity, first.link, first.wall) == (
        "node1", Kind.LINK_DOWN, Severity.WARNING, "serial", T0)
    assert first.mono == 0.0  # the peer's monotonic clock means nothing here
    request = wire.decode(wire.encode_request("pair", "node2", 7, KEY), KEY, "pair", "node2")
    assert request == wire.Request("node2", 7)


def test_a_long_reason_never_makes_a_frame_too_long(tmp_path):
    h = History(tmp_path, "node1")
    for i in range(4):
        h.record(Notice(Kind.FAILOVER, "\u00e9" * 300, group="g" * 63), mono=i, wall=T0)
    frame, n = wire.encode_answer("pair", "node1", h.events, 4, KEY)
    assert len(frame) <= wire.MAX_FRAME and 1 <= n < 4  # escaped text is bigger: fewer fit


@pytest.mark.parametrize(("body", "cause"), [
    ({"v": 2, "c": "pair", "n": "node1", "q": 1}, "malformed"),
    ({"v": True, "c": "pair", "n": "node1", "q": 1}, "malformed"),
    ({"v": 1, "c": "other", "n": "node1", "q": 1}, "foreign_cluster"),
    ({"v": 1, "c": "pair", "n": "node2", "q": 1}, "unknown_node"),
    ({"v": 1, "c": "pair", "n": "node1", "q": -1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "q": 1.5}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": [[1]] * 5, "last": 1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": {}, "last": 1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": [[1, T0, "nonsense", "info", "", "", "", "",
                                                   ""]], "last": 1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": [[1, T0, "failover", "loud", "", "", "", "",
                                                   ""]], "last": 1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": [[1, "now", "failover", "info", "", "", "",
                                                   "", ""]], "last": 1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": [[1, T0, "failover", "info", "\x1b[2J", "",
                                                   "", "", ""]], "last": 1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": [[1, T0, "failover", "info", "", "", "a b",
                                                   "", ""]], "last": 1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": [[1, T0, "failover", "info", "x" * 301, "",
                                                   "", "", ""]], "last": 1}, "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "ev": [], "last": True}, "malformed"),
    ([1, 2], "malformed"),
    ({"v": 1, "c": "pair", "n": "node1", "x": [[[[[[[[[[1]]]]]]]]]]}, "malformed"),
])
def test_frames_out_of_the_schema_are_dropped(body, cause):
    with pytest.raises(DecodeError) as exc:
        wire.decode(forged(body), KEY, "pair", "node1")
    assert exc.value.cause == cause


def test_bad_mac_and_garbage():
    good = wire.encode_request("pair", "node1", 3, KEY)
    with pytest.raises(DecodeError, match="bad_mac"):
        wire.decode(good, b"another key", "pair", "node1")
    for line in (b"TB1:AAAA", wire.MAGIC + b"!!!", wire.MAGIC + b"A" * 4000,
                 wire.MAGIC + base64.b64encode(b"x" * MAC_LEN)):
        with pytest.raises(DecodeError) as exc:
            wire.decode(line, KEY, "pair", "node1")
        assert exc.value.cause == "garbage"
    assert wire.is_history(good) and not wire.is_history(b"TB1:abc")


# --------------------------------------------------------------------------------------------
# Two nodes through a fake link


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def pair(tmp_path, n1: int, n2: int) -> tuple[dict[str, HistorySync], list[bytes], Clock]:
    clock = Clock()
    wire_log: list[bytes] = []
    histories = {"node1": recorded(tmp_path, "node1", n1),
                 "node2": recorded(tmp_path, "node2", n2)}
    syncs: dict[str, HistorySync] = {}

    def sender(to: str):
        def send(frame: bytes) -> None:
            wire_log.append(frame)
            syncs[to].on_frame(frame)
        return send

    for me, peer in (("node1", "node2"), ("node2", "node1")):
        syncs[me] = HistorySync(histories[me], cluster="pair", me=me, peer=peer,
                                key=lambda: KEY, send=sender(peer),
                                store=histories[me].add_remote, clock=clock)
    return syncs, wire_log, clock


def test_a_node_catches_up_on_its_peers_events_in_bounded_frames(tmp_path):
    syncs, frames, clock = pair(tmp_path, n1=11, n2=2)
    syncs["node2"].tick(peer_alive=True)  # the peer is alive: ask at once
    h2 = syncs["node2"].history
    assert [e.seq for e in h2.events if e.node == "node1"] == list(range(1, 12))
    # 3 answers of at most 4 events and the requests between them: each a bounded frame
    assert len(frames) == 6 and max(len(f) for f in frames) <= wire.MAX_FRAME
    assert syncs["node2"].received == 11 and syncs["node1"].sent_events == 11
    # the events are the peer's, as recorded there (not hooked again: only stored)
    mine = {e.key: e for e in syncs["node1"].history.events}
    for e in h2.events:
        if e.node == "node1":
            assert (e.reason, e.wall, e.kind) == (mine[e.key].reason, mine[e.key].wall,
                                                  mine[e.key].kind)
    # nothing new: a request every POLL seconds, no answer
    frames.clear()
    syncs["node2"].tick(peer_alive=True)
    assert frames == []
    clock.t += syncs["node2"].poll
    syncs["node2"].tick(peer_alive=True)
    assert len(frames) == 1 and wire.decode(frames[0], KEY, "pair", "node2") == wire.Request(
        "node2", 11)
    # a new event on node1 comes with the next request
    syncs["node1"].history.record(Notice(Kind.FAILOVER, "taking over group web", group="web"),
                                  mono=50, wall=T0 + 50)
    clock.t += syncs["node2"].poll
    syncs["node2"].tick(peer_alive=True)
    assert h2.last_seq("node1") == 12


def test_no_request_while_the_peer_is_not_alive_and_replays_are_not_answered_twice(tmp_path):
    syncs, frames, clock = pair(tmp_path, n1=3, n2=0)
    syncs["node2"].tick(peer_alive=False)
    assert frames == []
    request = wire.encode_request("pair", "node2", 0, KEY)
    syncs["node1"].on_frame(request)
    syncs["node1"].on_frame(request)  # replayed at once: no second answer
    assert len(frames) == 1
    clock.t += wire.ANSWER_INTERVAL
    syncs["node1"].on_frame(request)
    assert len(frames) == 2
    # a frame from a stranger's key is counted and dropped
    syncs["node1"].on_frame(wire.encode_request("pair", "node2", 0, b"stranger"))
    assert syncs["node1"].dropped == {"bad_mac": 1} and len(frames) == 2


def test_answers_are_rate_limited(tmp_path):
    syncs, frames, clock = pair(tmp_path, n1=40, n2=0)
    syncs["node2"].on_frame = lambda line: None  # type: ignore[method-assign]
    for after in range(40):  # forty different (replayed) requests at one instant
        syncs["node1"].on_frame(wire.encode_request("pair", "node2", after, KEY))
    assert len(frames) == wire.ANSWERS_PER_SECOND
    clock.t += 0.5
    for after in range(40):
        syncs["node1"].on_frame(wire.encode_request("pair", "node2", after, KEY))
    assert len(frames) == wire.ANSWERS_PER_SECOND + wire.ANSWERS_PER_SECOND // 2
