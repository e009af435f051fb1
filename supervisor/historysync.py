"""Exchanging event histories with the peer over the heartbeat links (the edge's half; the
wire format is ``supervisor.core.historywire``).

While the peer is alive, every POLL seconds (and at once when it comes back) this node asks
for the peer's events after the last one it holds; the peer answers with at most a few of
its own events per frame, and a full answer is followed by the next request at once, so a
node that was away for a while catches up in a handful of round trips. Each node is the only
source of its own events (numbered by it); what arrives is merged into the local history
(``History.add_remote``), never hooked or mailed again: the node that recorded an event did
that.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from supervisor.core import historywire as wire
from supervisor.core.codec import DecodeError
from supervisor.core.notify import ClusterEvent
from supervisor.history import History

log = logging.getLogger("twinbeat.events")

POLL = 5.0


class HistorySync:
    def __init__(
        self,
        history: History,
        *,
        cluster: str,
        me: str,
        peer: str,
        key: Callable[[], bytes],
        send: Callable[[bytes], None],
        store: Callable[[list[ClusterEvent]], list[ClusterEvent]],
        clock: Callable[[], float] = time.monotonic,
        poll: float = POLL,
    ) -> None:
        self.history = history
        self.cluster = cluster
        self.me = me
        self.peer = peer
        self.key = key
        self.send = send
        self.store = store
        self.clock = clock
        self.poll = poll
        self.next_ask = 0.0
        self.last_answer = (-1, -wire.ANSWER_INTERVAL)  # (after, when)
        self._budget = float(wire.ANSWERS_PER_SECOND)  # a token bucket of answers
        self._budget_at = self.clock()
        self.dropped: Counter[str] = Counter()
        self.received = 0
        self.sent_events = 0
        self._peer_alive = False

    def tick(self, peer_alive: bool) -> None:
        """Called about once a second: ask when it is time (and at once when the peer is
        back)."""
        now = self.clock()
        if peer_alive and not self._peer_alive:
            self.next_ask = now
        self._peer_alive = peer_alive
        if peer_alive and now >= self.next_ask:
            self.ask()

    def ask(self) -> None:
        self.next_ask = self.clock() + self.poll
        self.send(wire.encode_request(self.cluster, self.me,
                                      self.history.last_seq(self.peer), self.key()))

    def on_frame(self, line: bytes) -> None:
        try:
            frame = wire.decode(line, self.key(), self.cluster, self.peer)
        except DecodeError as exc:
            self.dropped[exc.cause] += 1
            log.debug("history frame dropped: %s", exc)
            return
        if isinstance(frame, wire.Request):
            self._answer(frame.after)
            return
        new = self.store(list(frame.events))
        self.received += len(new)
        if frame.events and frame.last > max(e.seq for e in frame.events):
            self.ask()  # more to fetch

    def _answer(self, after: int) -> None:
        now = self.clock()
        last_after, last_time = self.last_answer
        # the same request again (a repeat, a replay) within ANSWER_INTERVAL gets no answer,
        # and no more than ANSWERS_PER_SECOND go out on average
        if after == last_after and now - last_time < wire.ANSWER_INTERVAL:
            return
        rate = wire.ANSWERS_PER_SECOND
        self._budget = min(float(rate), self._budget + (now - self._budget_at) * rate)
        self._budget_at = now
        if self._budget < 1.0:
            return
        events = self.history.after(self.me, after)
        if not events:
            return
        self._budget -= 1.0
        self.last_answer = (after, now)
        frame, n = wire.encode_answer(self.cluster, self.me, events,
                                      self.history.next_seq - 1, self.key())
        self.sent_events += n
        self.send(frame)

    def info(self) -> dict[str, object]:
        return {"received": self.received, "sent": self.sent_events,
                "dropped": dict(self.dropped)}
