"""The heartbeat wire format (pure: no I/O).

One frame format for every medium. A frame is one ASCII line::

    TB1:<base64(body || mac)>\\n

``body`` is compact JSON (the sender's view, below); ``mac`` is HMAC-SHA256 over the body with
the shared key from authkeys, truncated to 16 bytes (RFC 2104 allows truncation to half the
hash). The serial medium needs no other framing: a receiver splits the byte stream at
newlines, so after line noise or a cable replugged mid-frame the damaged line fails to decode
(counted, dropped) and the next newline resynchronises. On UDP each datagram is one line.

Body fields (short keys keep a frame ~250 bytes, 22 ms at 115200 baud)::

    v   protocol version (1)         c   cluster name
    n   sender node name             g   sender's boot generation (persisted, +1 each start)
    s   sequence number (per generation, +1 each frame)
    st  node status: init|active|leaving
    w   1 if the sender sees the outside world (public carrier, ping nodes)
    wd  1 if the sender may own groups (watchdog armed, or not required)
    l   {link: 1|0}  whether the sender hears us on that link
    gr  {group: [activity, negotiation, epoch, failed]}
    p   {group: [node, stamp]}  admin pins (standby/takeover), merged by highest stamp
    cd  digest of the sender's shared policy (nodes, groups, failback): the two nodes compare
        it and warn when their configurations disagree on what they must agree on
    o   {drbd resource: request id}  fence requests from the sender to us: "outdate your
        replica of this resource" (DRBD's outdate-peer, carried by our own links)
    oa  {drbd resource: [request id, result]}  the sender's answers to our requests; result
        is one of OUTDATE_RESULTS

    pm  protocol minor version (PROTOCOL_MINOR): what the sender's beats may carry beyond
        version ``v``; absent in the beats of nodes older than the field (minor 0)
    sw  the sender's twinbeat release (its /usr/lib/twinbeat/VERSION), e.g. "0.1.1"

``o`` and ``oa`` are state, not messages: they are repeated in every beat until the request
is answered (or given up), so a lost frame costs nothing. Both are left out when empty, and a
frame without them (an older peer) decodes to empty dicts.

Versions: ``v`` is the major version, changed only when an older node could no longer read a
newer node's beats. Compatible additions raise the minor ``pm`` and add optional keys, which
an older receiver ignores (unknown keys are never an error); an absent key means the older
behaviour. ``supervisor.core.compat`` decides from both minors what is used (an N-1 peer is
accepted; what N adds stays off until both run N) and from both releases whether the pair
runs mixed versions (during a rolling upgrade). A known key with a value out of its domain
drops the frame, like any malformed body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field

from supervisor.core.states import Activity, Nego, NodeStatus

MAGIC = b"TB1:"
VERSION = 1
#: the protocol minor version these beats carry (see supervisor.core.compat)
PROTOCOL_MINOR = 1
#: a release as ``sw`` carries it (Debian-style versions: digits, letters, ``.+~-``)
RELEASE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~-]{0,31}\Z")
MAX_MINOR = 1 << 16
MAC_LEN = 16
MAX_LINE = 8192
#: what ``drbdadm outdate`` on the peer came to (see supervisor.drivers.drbd.outdate_replica)
OUTDATE_RESULTS = frozenset({"outdated", "inconsistent", "primary", "failed"})


class DecodeError(Exception):
    """A frame that must be dropped; ``cause`` is the counter it is counted under."""

    def __init__(self, cause: str, detail: str = "") -> None:
        self.cause = cause
        super().__init__(f"{cause}: {detail}" if detail else cause)


@dataclass(frozen=True)
class GroupView:
    activity: Activity = Activity.IDLE
    nego: Nego = Nego.NONE
    epoch: int = 0
    failed: bool = False


@dataclass(frozen=True)
class Beat:
    cluster: str
    sender: str
    generation: int
    seq: int
    status: NodeStatus = NodeStatus.ACTIVE
    world_ok: bool = True
    can_own: bool = True
    links: dict[str, bool] = field(default_factory=dict)
    groups: dict[str, GroupView] = field(default_factory=dict)
    pins: dict[str, tuple[str, int]] = field(default_factory=dict)
    config_digest: str = ""
    outdate: dict[str, int] = field(default_factory=dict)
    outdate_answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    minor: int = 0  # the sender's protocol minor version (0: it did not say)
    release: str = ""  # the sender's twinbeat release ("": it did not say)

    @property
    def order(self) -> tuple[int, int]:
        return (self.generation, self.seq)


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_LEN]


def encode(beat: Beat, key: bytes) -> bytes:
    """The frame for ``beat`` as one line, newline included."""
    body = {
        "v": VERSION,
        "c": beat.cluster,
        "n": beat.sender,
        "g": beat.generation,
        "s": beat.seq,
        "st": beat.status.value,
        "w": int(beat.world_ok),
        "wd": int(beat.can_own),
        "l": {k: int(v) for k, v in sorted(beat.links.items())},
        "gr": {
            k: [v.activity.value, v.nego.value, v.epoch, int(v.failed)]
            for k, v in sorted(beat.groups.items())
        },
        "p": {k: [v[0], v[1]] for k, v in sorted(beat.pins.items())},
        "cd": beat.config_digest,
    }
    if beat.outdate:
        body["o"] = dict(sorted(beat.outdate.items()))
    if beat.outdate_answers:
        body["oa"] = {k: [v[0], v[1]] for k, v in sorted(beat.outdate_answers.items())}
    if beat.minor:
        body["pm"] = beat.minor
    if beat.release:
        body["sw"] = beat.release
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()
    return MAGIC + base64.b64encode(raw + _mac(key, raw)) + b"\n"


def decode(line: bytes, key: bytes, cluster: str) -> Beat:
    """Decode and authenticate one frame; raise DecodeError (never anything else)."""
    line = line.strip()
    if not line.startswith(MAGIC):
        raise DecodeError("garbage", "no frame marker")
    if len(line) > MAX_LINE:
        raise DecodeError("garbage", "frame too long")
    try:
        blob = base64.b64decode(line[len(MAGIC):], validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("garbage", "not base64") from None
    if len(blob) <= MAC_LEN:
        raise DecodeError("garbage", "frame too short")
    raw, mac = blob[:-MAC_LEN], blob[-MAC_LEN:]
    if not hmac.compare_digest(mac, _mac(key, raw)):
        raise DecodeError("bad_mac", "authentication failed")
    try:
        body = json.loads(raw)
        return _beat_from(body, cluster)
    except DecodeError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # Authenticated but malformed: a peer with a different protocol version or a bug.
        raise DecodeError("malformed", str(exc)) from None


def _beat_from(body: object, cluster: str) -> Beat:
    if not isinstance(body, dict):
        raise DecodeError("malformed", "body is not an object")
    if body.get("v") != VERSION:
        raise DecodeError("malformed", f"protocol version {body.get('v')!r}")
    if body["c"] != cluster:
        raise DecodeError("foreign_cluster", f"cluster {body['c']!r}")
    sender, gen, seq = body["n"], body["g"], body["s"]
    if not isinstance(sender, str) or not isinstance(gen, int) or not isinstance(seq, int):
        raise DecodeError("malformed", "bad header types")
    if isinstance(gen, bool) or isinstance(seq, bool) or gen < 0 or seq < 0:
        raise DecodeError("malformed", "bad generation or sequence")
    groups: dict[str, GroupView] = {}
    for name, item in dict(body.get("gr", {})).items():
        act, nego, epoch, failed = item
        if not isinstance(epoch, int):
            raise DecodeError("malformed", "bad epoch")
        groups[str(name)] = GroupView(Activity(act), Nego(nego), epoch, bool(failed))
    pins: dict[str, tuple[str, int]] = {}
    for name, item in dict(body.get("p", {})).items():
        node, stamp = item
        if not isinstance(node, str) or not isinstance(stamp, int):
            raise DecodeError("malformed", "bad pin")
        pins[str(name)] = (node, stamp)
    links = {str(k): bool(v) for k, v in dict(body.get("l", {})).items()}
    digest = body.get("cd", "")
    if not isinstance(digest, str):
        raise DecodeError("malformed", "bad config digest")
    raw_o, raw_oa = body.get("o", {}), body.get("oa", {})
    if not isinstance(raw_o, dict) or not isinstance(raw_oa, dict):
        raise DecodeError("malformed", "fence fields are not objects")
    outdate: dict[str, int] = {}
    for name, rid in raw_o.items():
        if not _request_id(rid):
            raise DecodeError("malformed", "bad fence request")
        outdate[str(name)] = rid
    answers: dict[str, tuple[int, str]] = {}
    for name, item in raw_oa.items():
        if not isinstance(item, list):
            raise DecodeError("malformed", "bad fence answer")
        rid, result = item
        if not _request_id(rid) or result not in OUTDATE_RESULTS:
            raise DecodeError("malformed", "bad fence answer")
        answers[str(name)] = (rid, result)
    minor = body.get("pm", 0)
    if type(minor) is not int or not 0 <= minor <= MAX_MINOR:
        raise DecodeError("malformed", "bad protocol minor version")
    release = body.get("sw", "")
    if not isinstance(release, str) or (release and not RELEASE_RE.match(release)):
        raise DecodeError("malformed", "bad release")
    return Beat(
        cluster=cluster,
        sender=sender,
        generation=gen,
        seq=seq,
        status=NodeStatus(body.get("st", "active")),
        world_ok=bool(body.get("w", 1)),
        can_own=bool(body.get("wd", 1)),
        links=links,
        groups=groups,
        pins=pins,
        config_digest=digest,
        outdate=outdate,
        outdate_answers=answers,
        minor=minor,
        release=release,
    )


def _request_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class LineSplitter:
    """Splits a serial byte stream into frame lines; resynchronises at every newline.

    Bytes before the first newline after a (re)start may be half a frame: they form a line
    that fails to decode and is counted as garbage. A line longer than MAX_LINE is cut off
    and dropped so that noise without newlines cannot grow the buffer without bound.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.overflows = 0
        self.resyncs = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines: list[bytes] = []
        while True:
            idx = self._buf.find(b"\n")
            if idx < 0:
                break
            line = bytes(self._buf[:idx])
            del self._buf[: idx + 1]
            # Noise or half a frame before a marker (cable replugged mid-frame): the frame
            # starts at the last marker; base64 never contains ':' so it cannot be inside one.
            marker = line.rfind(MAGIC)
            if marker > 0:
                self.resyncs += 1
                line = line[marker:]
            if line.strip():
                lines.append(line)
        if len(self._buf) > MAX_LINE:
            # Keep only what follows the last frame marker, if any.
            marker = self._buf.rfind(MAGIC)
            self.overflows += 1
            if marker > 0 and len(self._buf) - marker <= MAX_LINE:
                del self._buf[:marker]
            else:
                self._buf.clear()
        return lines
