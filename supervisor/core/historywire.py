"""History frames: the two nodes exchange their event histories over the heartbeat links
(pure: no I/O).

Beats stay small (a beat is ~250 bytes, 22 ms at 115200 baud): events travel in their own
frames, on demand and bounded. A history frame is one line like a beat, with its own
marker, authenticated with the same key::

    TBH1:<base64(body || mac)>\\n

Two bodies (compact JSON):

- a request, ``{"v":1,"c":CLUSTER,"n":SENDER,"q":SEQ}``: "send me your events after SEQ";
- an answer, ``{"v":1,"c":CLUSTER,"n":SENDER,"ev":[EVENT...],"last":SEQ}``: at most
  MAX_EVENTS of the sender's own events after the asked number, oldest first, and the
  sender's latest number (more to fetch when ``last`` is above the last event sent). An
  event is ``[seq, wall, kind, severity, reason, subject, group, link, resource]``, its
  reason cut to MAX_REASON characters, the whole line at most MAX_FRAME bytes.

A frame is checked like a beat after its MAC, with the beat schema's own rules
(``supervisor.core.codec``: bounded nesting before parsing, JSON integers in range, names by
the configuration's rule), kinds and severities are known values and every size is bounded;
anything else is dropped. Replaying a frame is harmless:
an answer only adds events a node already has (each is kept once by its node and number), the
same request is answered at most once per ANSWER_INTERVAL and no more than ANSWERS_PER_SECOND
answers go out.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass

from supervisor.core.codec import (
    DecodeError,
    _count,
    _mac,
    _name,
    open_envelope,
)
from supervisor.core.notify import ClusterEvent, Kind, Severity
from supervisor.names import DRBD_RESOURCE, NAME

MAGIC = b"TBH1:"
VERSION = 1
MAX_EVENTS = 4
MAX_REASON = 300
MAX_FRAME = 2048
#: the largest event number (a node that lost its history restarts at the UNIX time in ms)
MAX_SEQ = 2**53
#: seconds before the same request is answered again; and at most ANSWERS_PER_SECOND
#: answers on average (a replayed request costs at most one bounded frame)
ANSWER_INTERVAL = 0.5
ANSWERS_PER_SECOND = 20
_KINDS = frozenset(k.value for k in Kind)
_SEVERITIES = frozenset(s.label for s in Severity)


@dataclass(frozen=True)
class Request:
    sender: str
    after: int


@dataclass(frozen=True)
class Answer:
    sender: str
    events: tuple[ClusterEvent, ...]
    last: int


Frame = Request | Answer


def is_history(line: bytes) -> bool:
    return line.lstrip().startswith(MAGIC)


def _frame(body: dict[str, object], key: bytes) -> bytes:
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    return MAGIC + base64.b64encode(raw + _mac(key, raw)) + b"\n"


def encode_request(cluster: str, sender: str, after: int, key: bytes) -> bytes:
    return _frame({"v": VERSION, "c": cluster, "n": sender, "q": after}, key)


def encode_answer(cluster: str, sender: str, events: list[ClusterEvent], last: int,
                  key: bytes) -> tuple[bytes, int]:
    """The answer frame for the first events of ``events`` that fit (at most MAX_EVENTS, the
    line at most MAX_FRAME bytes), and how many of them it holds: at least one when there is
    one (its reason is cut shorter until it fits, so that no event can stall the exchange)."""
    items: list[list[object]] = []
    frame = _frame({"v": VERSION, "c": cluster, "n": sender, "ev": [], "last": last}, key)
    for e in events[:MAX_EVENTS]:
        limit = MAX_REASON
        while True:
            reason = e.reason if len(e.reason) <= limit else e.reason[:limit - 3] + "..."
            item: list[object] = [e.seq, round(e.wall, 3), e.kind.value, e.severity.label,
                                  reason, e.subject, e.group, e.link, e.resource]
            bigger = _frame({"v": VERSION, "c": cluster, "n": sender, "ev": [*items, item],
                             "last": last}, key)
            if len(bigger) <= MAX_FRAME or items or limit <= 10:
                break
            limit //= 2
        if len(bigger) > MAX_FRAME:
            break
        items.append(item)
        frame = bigger
    return frame, len(items)


def decode(line: bytes, key: bytes, cluster: str, peer: str) -> Frame:
    """Authenticate and check one history frame from ``peer``; raise DecodeError."""
    body = open_envelope(line, key, MAGIC, MAX_FRAME, "history frame")
    if not isinstance(body, dict) or body.get("v") != VERSION or type(body.get("v")) is not int:
        raise DecodeError("malformed", "not a history frame of version 1")
    if body.get("c") != cluster:
        raise DecodeError("foreign_cluster", "another cluster")
    if body.get("n") != peer:
        raise DecodeError("unknown_node", "not from the peer")
    if "q" in body:
        return Request(peer, _seq(body["q"], "request"))
    events = body.get("ev")
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise DecodeError("malformed", f"ev must be a list of at most {MAX_EVENTS} events")
    return Answer(peer, tuple(_event(peer, item) for item in events),
                  _seq(body.get("last"), "last"))


def _seq(value: object, what: str) -> int:
    return _count(value, what, MAX_SEQ)


def _text(value: object, what: str, limit: int, *, name: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise DecodeError("malformed", f"{what} must be text of at most {limit} characters")
    if name is not None and value:
        _name(value, what, name)
    if not value.isprintable():
        raise DecodeError("malformed", f"{what} holds control characters")
    return value


def _event(node: str, item: object) -> ClusterEvent:
    if not isinstance(item, list) or len(item) != 9:
        raise DecodeError("malformed", "an event is a list of 9")
    seq, wall, kind, severity, reason, subject, group, link, resource = item
    if type(wall) not in (int, float) or not math.isfinite(wall) or not 0 <= wall < 2**40:
        raise DecodeError("malformed", "bad event time")
    if kind not in _KINDS or severity not in _SEVERITIES:
        raise DecodeError("malformed", "unknown event kind or severity")
    return ClusterEvent(
        node=node, seq=_seq(seq, "event number"), mono=0.0, wall=float(wall), kind=Kind(kind),
        severity=Severity.parse(severity), reason=_text(reason, "reason", MAX_REASON),
        subject=_text(subject, "subject", 64, name=NAME),
        group=_text(group, "group", 64, name=NAME), link=_text(link, "link", 64, name=NAME),
        resource=_text(resource, "resource", 64, name=DRBD_RESOURCE),
    )
