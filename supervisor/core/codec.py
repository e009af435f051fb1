"""The heartbeat wire format (pure: no I/O).

One module on purpose (over 500 lines; the field table below is ~90 of them): the frame is one
schema. The field table, the encoder, the decoder that checks every field against its limit
and the line splitter that finds frames in a byte stream change together; split, one of them
would drift from the others.

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
    u   {group: stamp}  cleared pins (``twinbeat unpin``): a pin whose stamp is older is gone
    e   [link, generation, seq, hold ms]  an echo for the round-trip time: the sender heard
        our beat (generation, seq) on link, hold ms before it sent this one (one link per
        beat, in turn: ~25 bytes)
    m   {node: [on, stamp]}  maintenance mode (``twinbeat maintenance on|off``) by node,
        merged by highest stamp like the pins
    wt  the timeout (ms) the sender's watchdog is armed with; left out when none is armed:
        a survivor waits until a silent sender's watchdog must have reset it
        (supervisor.core.watchdog_window)
    wy  1 while the sender yields its groups for being cut off from the outside world (or
        just back): the world check's damping (supervisor.core.liveness)
    rb  [drbd resource]  the sender's replicas that are not in sync with ours (a resync to it
        runs, or it is not connected): we keep a group we run instead of handing it over
    sb  {drbd resource: [node, request id]}  resolve-split-brain asked on the sender: discard
        NODE's changes; the receiver runs its own half of DRBD's manual recovery
    sba {drbd resource: [request id, result, detail]}  the receiver's half: done, failed or
        refused (with the reason, at most MAX_DETAIL characters)
    pm  protocol minor version (PROTOCOL_MINOR): what the sender's beats may carry beyond
        version ``v``; absent in the beats of nodes older than the field (minor 0)
    sw  the sender's twinbeat release (its /usr/lib/twinbeat/VERSION), e.g. "0.1.1"

``o``, ``oa``, ``sb`` and ``sba`` are state, not messages: they are repeated in every beat
until the request is answered (or given up), so a lost frame costs nothing. All of these
(``u``, ``m``, ``pm`` and ``sw`` too) are left out when empty, and a frame without them (an
older peer) decodes to the old behaviour (no pins cleared, no maintenance, no watchdog to wait
for, not yielding, replicas in sync, no requests, protocol minor 0, release not said).

The schema (checked after the MAC, before anything reaches the core)
--------------------------------------------------------------------
A valid MAC proves the frame came from a holder of the key, not that it makes sense: a peer
with a bug, a newer version or a stolen key. Every body is checked against one schema, and a
body that fails it is a ``DecodeError("malformed")``, counted and dropped like a bad MAC:

- nesting at most MAX_DEPTH, measured on the raw bytes before the JSON parser runs (a
  recursive parser fails at a depth that depends on the Python version and its stack);
  the body is strict UTF-8 JSON of at most MAX_LINE bytes;
- integers are JSON integers (never booleans or floats): ``g`` in [0, MAX_GENERATION],
  ``s``, epochs, pin stamps and fence request ids in [0, MAX_COUNTER]; ``w``, ``wd``,
  ``l`` values and a group's ``failed`` are 0 or 1; states are the enum values above;
- names (sender, links, groups, pinned node) match NAME_RE, the configuration's own rule for
  names (ASCII letters, digits, ``-_.``; never a control character or a lone surrogate);
  DRBD resources in ``o``/``oa`` match RESOURCE_RE;
- a pin and a maintenance flag (``m``, at most two) name a member of this cluster
  (``Domain.nodes``); a cleared pin (``u``) and a pin name groups that must be configured ones
  (``Domain.groups``) when the sender's digest ``cd`` equals ours. While the two
  configurations differ (a group added on one node before the other) an entry for a group we
  do not know is ignored instead: dropping every frame of that peer would make a live peer
  look dead on all links;
- maps have at most MAX_ENTRIES entries (``l``: MAX_LINKS); lists have exactly their size.

Compatibility across versions (rolling upgrades)
------------------------------------------------
``v`` is the *major* protocol version: it changes only when an old node can no longer read a
new node's beats, and a receiver accepts only the versions in ACCEPTED_VERSIONS. Compatible
changes ("minor versions") only add *optional* keys. A receiver ignores every key it does not
know (not a crash, not a drop: the rest of the beat is used), so an N-1 node keeps reading an
N node's beats; an N node must keep accepting beats without its new keys (absent means the
old behaviour, as ``o``/``oa`` do) and should leave a new key out until it knows that the
peer reads it. Keys this version knows are held to the schema above: an out-of-domain value
of a known key drops the frame, whatever the version. Unknown keys still count towards the
size and nesting limits.

Each beat says its minor (``pm``) and release (``sw``): ``supervisor.core.compat`` decides
from both minors what the pair uses (an N-1 peer is accepted; the keys of what N adds are
left out of N's beats until both run N, compat.gate) and from both releases whether the
pair runs mixed versions (a rolling upgrade).

Freshness (replays, sequence jumps) is not decided here but in ``supervisor.core.freshness``.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from supervisor.core.sha256 import compare_digest, sha256
from supervisor.core.states import Activity, Nego, NodeStatus
from supervisor.names import DRBD_RESOURCE, NAME

if TYPE_CHECKING:
    from supervisor.config import Config

MAGIC = b"TB1:"
VERSION = 1
#: the major versions this node reads (see "Compatibility across versions" above)
ACCEPTED_VERSIONS = frozenset({1})
#: the protocol minor version these beats carry (see supervisor.core.compat)
PROTOCOL_MINOR = 1
#: a release as ``sw`` carries it (Debian-style versions: digits, letters, ``.+~-``)
RELEASE_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~-]{0,31}\Z")
MAX_MINOR = 1 << 16
MAC_LEN = 16
MAX_LINE = 8192
#: deepest nesting of arrays and objects in a body (version 1 needs 3)
MAX_DEPTH = 8
#: largest boot generation: a node's epochs and fence ids are (generation << 20) | counter
MAX_GENERATION = 2**32 - 1
#: largest sequence number, epoch, pin stamp or fence request id (a signed 64-bit integer)
MAX_COUNTER = 2**63 - 1
MAX_ENTRIES = 128
#: the longest an echo may have been held (a beat is due every keepalive; 60 s covers all)
MAX_HOLD_MS = 60_000
MAX_LINKS = 16
#: node, link and group names: the configuration's own rule (supervisor.names)
NAME_RE = NAME
#: DRBD resource names as cluster.toml, drbddisk::RES and the fence-peer handler accept them
RESOURCE_RE = DRBD_RESOURCE
_DIGEST_RE = re.compile(r"^[0-9a-f]{0,64}\Z")
#: what ``drbdadm outdate`` on the peer came to (see supervisor.drivers.drbd.outdate_replica)
OUTDATE_RESULTS = frozenset({"outdated", "inconsistent", "primary", "failed"})
#: what the peer's half of a resolve-split-brain came to
RESOLVE_RESULTS = frozenset({"done", "failed", "refused"})
#: characters of a resolve answer's detail carried in a beat
MAX_DETAIL = 300
#: the longest watchdog timeout a beat may announce (ms): the Linux API's limit is far below
MAX_WATCHDOG_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Domain:
    """What a frame of this cluster may name: its members, its groups, its policy digest.

    ``nodes``/``groups`` None: any well-formed name (tools and tests without a configuration).
    """

    cluster: str
    nodes: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    digest: str = ""

    @classmethod
    def of(cls, config: Config, digest: str = "") -> Domain:
        return cls(
            config.cluster_name,
            frozenset(n.name for n in config.nodes),
            frozenset(g.name for g in config.groups),
            digest,
        )


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
    #: node -> (maintenance on, stamp)
    maintenance: dict[str, tuple[bool, int]] = field(default_factory=dict)
    #: (link, generation, seq, hold ms): our beat the sender heard on link, and how long
    #: before it sent this one (the round-trip time of that link)
    echo: tuple[str, int, int, int] | None = None
    #: seconds; None when the sender has no armed watchdog
    watchdog_timeout: float | None = None
    #: the sender yields its groups for being cut off (damped; supervisor.core.liveness)
    yields_world: bool = False
    #: the sender's DRBD resources that are not in sync (supervisor.core.ownership)
    replicas_behind: tuple[str, ...] = ()
    #: resolve-split-brain carried to the peer: {resource: (discard node, request id)}
    resolve: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: the answers: {resource: (request id, result, detail)}
    resolve_answers: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    minor: int = 0  # the sender's protocol minor version (0: it did not say)
    release: str = ""  # the sender's twinbeat release ("": it did not say)
    #: the body this beat was decoded from, cut around its sequence number and echo, and
    #: the domain it was checked against (None: a beat built here, or a body not in the
    #: encoder's compact form); not part of what the beat says (``==`` ignores it)
    template: Template | None = field(default=None, compare=False, repr=False)

    @property
    def order(self) -> tuple[int, int]:
        return (self.generation, self.seq)


#: by key: SHA-256 with the key's inner and outer padded blocks hashed (RFC 2104's
#: ``H(K ^ ipad)`` and ``H(K ^ opad)``), set up once; every MAC then costs two copies and
#: two short hashes, all in C. A memo of a pure function of the key's bytes (a test compares
#: the MAC with ``hmac.new``): a handful of keys at most.
#:
#: The hashes are CPython's own SHA-256 (``core.sha256``: the module hashlib falls back on),
#: not OpenSSL's: an idle node computes two MACs a keepalive right after a 100 ms sleep, when
#: every code path is cold, and OpenSSL 3's copy of a hash context allocates and looks up
#: its provider again. Measured on this project's machine, two MACs right after a 100 ms
#: sleep: 27-31 us with CPython's SHA-256, 41-46 us with OpenSSL's (hashlib.sha256), 57 us
#: through a keyed ``hmac.HMAC``, 89 us by ``hmac.digest``; warm, one MAC costs 1.6-2.1 us
#: against 0.8-1.3 us with OpenSSL, which even a flood of frames does not notice.
_PADS: dict[bytes, tuple[Any, Any]] = {}
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _mac(key: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of ``body`` under ``key``, cut to MAC_LEN."""
    pads = _PADS.get(key)
    if pads is None:
        if len(_PADS) >= 8:
            _PADS.clear()
        block = (sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        pads = _PADS[key] = (sha256(block.translate(_IPAD)), sha256(block.translate(_OPAD)))
    inner, outer = pads[0].copy(), pads[1].copy()
    inner.update(body)
    outer.update(inner.digest())
    mac: bytes = outer.digest()
    return mac[:MAC_LEN]


def encode(beat: Beat, key: bytes) -> bytes:
    """The frame for ``beat`` as one line, newline included."""
    return _frame(_JSON.encode(_body(beat)).encode(), key)


def encode_cut(beat: Beat, key: bytes) -> tuple[bytes, Cut]:
    """The frame for ``beat`` (as ``encode``), and its body cut around its sequence number
    and echo: ``encode_next`` makes the frame of the same beat with another sequence number
    and echo from it, without building the body again."""
    body = _body(beat)
    raw = _JSON.encode(body).encode()
    cut = _cuts(raw, body)
    assert cut is not None, "the encoder's own body is in its compact form"
    return _frame(raw, key), Cut(*cut)


def encode_next(cut: Cut, seq: int, echo: tuple[str, int, int, int] | None,
                key: bytes) -> bytes:
    """``encode`` of the beat ``cut`` was made from, with sequence number ``seq`` and echo
    ``echo`` (None exactly when that beat had none): the same bytes (a property test compares
    them)."""
    if echo is None:
        if cut.middle is not None:
            raise ValueError("this cut has an echo")
        raw = b"%s%d%s" % (cut.head, seq, cut.tail)
    else:
        if cut.middle is None:
            raise ValueError("this cut has no echo")
        raw = b"%s%d%s%s%s" % (cut.head, seq, cut.middle, _JSON.encode(list(echo)).encode(),
                               cut.tail)
    return _frame(raw, key)


@dataclass(frozen=True)
class Cut:
    """An encoded body cut around the values of its sequence number and echo:
    ``head + <s> + middle + <e> + tail`` (``middle`` None: a body without an echo,
    ``head + <s> + tail``)."""

    head: bytes
    middle: bytes | None
    tail: bytes


def _frame(raw: bytes, key: bytes) -> bytes:
    # (binascii's: base64.b64encode is a Python function around it, one more a beat)
    return MAGIC + binascii.b2a_base64(raw + _mac(key, raw), newline=False) + b"\n"


def _body(beat: Beat) -> dict[str, object]:
    body: dict[str, object] = {
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
        "p": {k: [v[0], v[1]] for k, v in sorted(beat.pins.items()) if v[0]},
        "cd": beat.config_digest,
    }
    cleared = {k: v[1] for k, v in sorted(beat.pins.items()) if not v[0]}
    if cleared:
        body["u"] = cleared
    if beat.echo is not None:
        body["e"] = list(beat.echo)
    if beat.maintenance:
        body["m"] = {k: [int(v[0]), v[1]] for k, v in sorted(beat.maintenance.items())}
    if beat.outdate:
        body["o"] = dict(sorted(beat.outdate.items()))
    if beat.outdate_answers:
        body["oa"] = {k: [v[0], v[1]] for k, v in sorted(beat.outdate_answers.items())}
    if beat.watchdog_timeout:
        body["wt"] = round(beat.watchdog_timeout * 1000)
    if beat.yields_world:
        body["wy"] = 1
    if beat.replicas_behind:
        body["rb"] = sorted(beat.replicas_behind)
    if beat.resolve:
        body["sb"] = {k: [v[0], v[1]] for k, v in sorted(beat.resolve.items())}
    if beat.resolve_answers:
        body["sba"] = {k: [v[0], v[1], v[2][:MAX_DETAIL]]
                       for k, v in sorted(beat.resolve_answers.items())}
    if beat.minor:
        body["pm"] = beat.minor
    if beat.release:
        body["sw"] = beat.release
    return body


#: compact JSON, ASCII only (json.dumps with these arguments builds a new encoder each call)
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def decode(line: bytes, key: bytes, domain: str | Domain, newest: Beat | None = None) -> Beat:
    """Decode, authenticate and check one frame; raise DecodeError (never anything else).

    ``domain`` is what the frame may name (:class:`Domain`); a bare cluster name checks the
    shape of names only (tests and tools that have no configuration).

    ``newest``: a beat decoded before (the peer's newest). A frame whose authenticated body is
    that beat's body byte for byte except its sequence number and echo (the peer's next beat
    of an idle pair) is that beat with the new sequence number and echo: only those two are
    checked, and no Beat is built field by field (``Template.same_but``). The result is the
    same as without ``newest`` (a property test compares them over hostile frames).
    """
    if isinstance(domain, str):
        domain = Domain(domain)
    raw = authenticated(line, key, MAGIC, MAX_LINE, "frame")
    if newest is not None and newest.template is not None:
        beat = newest.template.same_but(raw, newest, domain)
        if beat is not None:
            return beat
    return _beat_from(parse_body(raw), domain, raw)


def open_envelope(line: bytes, key: bytes, magic: bytes, max_len: int, what: str) -> object:
    """The JSON body of one ``magic`` + base64(body + HMAC) line, authenticated, its nesting
    bounded, parsed; raise DecodeError with the reason. ``what`` names the frame kind in the
    reasons ("frame", "history frame")."""
    return parse_body(authenticated(line, key, magic, max_len, what))


def authenticated(line: bytes, key: bytes, magic: bytes, max_len: int, what: str) -> bytes:
    """The body of one ``magic`` + base64(body + HMAC) line, its MAC verified (not parsed);
    raise DecodeError with the reason."""
    line = line.strip()
    if not line.startswith(magic):
        raise DecodeError("garbage", f"no {what} marker")
    if len(line) > max_len:
        raise DecodeError("garbage", f"{what} too long")
    try:
        # (base64.b64decode(validate=True) is this, behind two Python functions)
        blob = binascii.a2b_base64(line[len(magic):], strict_mode=True)
    except (binascii.Error, ValueError):
        raise DecodeError("garbage", "not base64") from None
    if len(blob) <= MAC_LEN:
        raise DecodeError("garbage", "frame too short")
    raw, mac = blob[:-MAC_LEN], blob[-MAC_LEN:]
    if not compare_digest(mac, _mac(key, raw)):
        raise DecodeError("bad_mac", "authentication failed")
    return raw


def parse_body(raw: bytes) -> object:
    """An authenticated body, its nesting bounded, parsed; raise DecodeError("malformed")."""
    # Authenticated from here on, but still not trusted: a peer with a bug, a newer version or
    # a stolen key. The nesting is bounded before the parser sees the body (a recursive parser
    # runs out of stack at a depth that differs between Python versions).
    depth = nesting(raw)
    if depth > MAX_DEPTH:
        raise DecodeError("malformed", f"nested {depth} deep (at most {MAX_DEPTH})")
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DecodeError("malformed", f"not JSON: {exc}") from None


def nesting(raw: bytes) -> int:
    """How deeply JSON text nests arrays and objects (brackets inside strings do not count).

    Stops counting past MAX_DEPTH. Unbalanced text gets some number; the parser rejects it.
    """
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    break
        else:
            depth -= 1
    return deepest


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _malformed(detail: str) -> DecodeError:
    return DecodeError("malformed", detail)


def _count(value: object, what: str, limit: int = MAX_COUNTER) -> int:
    """A JSON integer in [0, limit] (not a boolean, not a float)."""
    if type(value) is not int or not 0 <= value <= limit:
        raise _malformed(f"{what} must be an integer from 0 to {limit}, not {_show(value)}")
    return value


def _flag(value: object, what: str) -> bool:
    if type(value) is not int or value not in (0, 1):
        raise _malformed(f"{what} must be 0 or 1, not {_show(value)}")
    return value == 1


def _name(value: object, what: str, pattern: re.Pattern[str] = NAME_RE) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _malformed(f"{what} is not a name: {_show(value)}")
    return value


def _choice(value: object, allowed: frozenset[str], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _malformed(f"{what} must be one of {', '.join(sorted(allowed))}, not "
                         f"{_show(value)}")
    return value


def _member(value: object, what: str, allowed: frozenset[str] | None) -> str:
    name = _name(value, what)
    if allowed is not None and name not in allowed:
        raise _malformed(f"{what} {name!r} is not one of {', '.join(sorted(allowed))}")
    return name


def _table(body: dict[str, object], key: str, limit: int = MAX_ENTRIES) -> dict[str, object]:
    value = body.get(key, {})
    if not isinstance(value, dict):
        raise _malformed(f"{key!r} must be an object, not {_show(value)}")
    if len(value) > limit:
        raise _malformed(f"{key!r} has {len(value)} entries (at most {limit})")
    return value


def _pair(value: object, size: int, what: str) -> list[object]:
    if not isinstance(value, list) or len(value) != size:
        raise _malformed(f"{what} must be a list of {size}, not {_show(value)}")
    return value


def _show(value: object) -> str:
    """A short, printable rendering of a value a peer sent (for a drop's detail)."""
    text = ascii(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _echo(value: object) -> tuple[str, int, int, int]:
    link, gen, eseq, hold = _pair(value, 4, "echo")
    return (_name(link, "echo link"), _count(gen, "echo generation", MAX_GENERATION),
            _count(eseq, "echo sequence number"), _count(hold, "echo hold", MAX_HOLD_MS))


def _beat_from(body: object, domain: Domain, raw: bytes = b"") -> Beat:
    if not isinstance(body, dict):
        raise _malformed("body is not an object")
    version = body.get("v")
    if type(version) is not int or version not in ACCEPTED_VERSIONS:
        raise _malformed(f"protocol version {_show(version)}")
    cluster = body.get("c")
    if not isinstance(cluster, str):
        raise _malformed(f"cluster name {_show(cluster)}")
    if cluster != domain.cluster:
        raise DecodeError("foreign_cluster", f"cluster {_show(cluster)}")
    sender = _name(body.get("n"), "sender")
    generation = _count(body.get("g"), "generation", MAX_GENERATION)
    seq = _count(body.get("s"), "sequence number")
    status = _choice(body.get("st", "active"), _STATUSES, "node status")
    digest = body.get("cd", "")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise _malformed(f"config digest {_show(digest)}")
    # Groups this node does not know are out of domain when the sender claims the very same
    # configuration; while the two configurations differ (a group added on one node first)
    # such entries are ignored and the frame is kept: dropping it would make a live peer
    # look dead on every link.
    known = domain.groups
    strict = known is not None and digest == domain.digest and bool(digest)
    links = {
        _name(k, "link"): _flag(v, f"link {k}") for k, v in _table(body, "l", MAX_LINKS).items()
    }
    groups: dict[str, GroupView] = {}
    for name, item in _table(body, "gr").items():
        _name(name, "group")
        act, nego, epoch, failed = _pair(item, 4, f"group {name}")
        view = GroupView(Activity(_choice(act, _ACTIVITIES, f"group {name} activity")),
                         Nego(_choice(nego, _NEGOS, f"group {name} negotiation")),
                         _count(epoch, f"group {name} epoch"),
                         _flag(failed, f"group {name} failed"))
        if known is None or name in known:
            groups[name] = view
        elif strict:
            raise _malformed(f"group {name!r} is not configured")
    pins: dict[str, tuple[str, int]] = {}
    for name, item in _table(body, "p").items():
        _name(name, "pinned group")
        node, stamp = _pair(item, 2, f"pin of {name}")
        pin = (_member(node, f"pin of {name}: node", domain.nodes),
               _count(stamp, f"pin of {name}: stamp"))
        if known is None or name in known:
            pins[name] = pin
        elif strict:
            raise _malformed(f"pin for group {name!r}, which is not configured")
    for name, raw_stamp in _table(body, "u").items():  # cleared pins (unpin)
        _name(name, "unpinned group")
        stamp = _count(raw_stamp, f"cleared pin of {name}: stamp")
        if (known is None or name in known) and (name not in pins or pins[name][1] < stamp):
            pins[name] = ("", stamp)
        elif known is not None and name not in known and strict:
            raise _malformed(f"cleared pin for group {name!r}, which is not configured")
    maintenance: dict[str, tuple[bool, int]] = {}
    for name, item in _table(body, "m", 2).items():
        flag, stamp = _pair(item, 2, f"maintenance of {name}")
        maintenance[_member(name, "maintenance node", domain.nodes)] = (
            _flag(flag, f"maintenance of {name}"), _count(stamp, f"maintenance of {name}: stamp"))
    echo = _echo(body["e"]) if "e" in body else None
    outdate = {
        _name(k, "fence request resource", RESOURCE_RE): _count(v, f"fence request {k}")
        for k, v in _table(body, "o").items()
    }
    answers: dict[str, tuple[int, str]] = {}
    for name, item in _table(body, "oa").items():
        _name(name, "fence answer resource", RESOURCE_RE)
        rid, result = _pair(item, 2, f"fence answer {name}")
        answers[name] = (_count(rid, f"fence answer {name}: request"),
                         _choice(result, OUTDATE_RESULTS, f"fence answer {name}: result"))
    wt = _count(body.get("wt", 0), "watchdog timeout (ms)", MAX_WATCHDOG_MS)
    raw_rb = body.get("rb", [])
    if not isinstance(raw_rb, list) or len(raw_rb) > MAX_ENTRIES:
        raise _malformed(f"'rb' must be a list of at most {MAX_ENTRIES}, not {_show(raw_rb)}")
    behind = tuple(_name(x, "replica behind", RESOURCE_RE) for x in raw_rb)
    resolve: dict[str, tuple[str, int]] = {}
    for name, item in _table(body, "sb").items():
        _name(name, "resolve request resource", RESOURCE_RE)
        node, rid = _pair(item, 2, f"resolve request {name}")
        resolve[name] = (_member(node, f"resolve request {name}: node", domain.nodes),
                         _count(rid, f"resolve request {name}: request"))
    resolved: dict[str, tuple[int, str, str]] = {}
    for name, item in _table(body, "sba").items():
        _name(name, "resolve answer resource", RESOURCE_RE)
        rid, result, detail = _pair(item, 3, f"resolve answer {name}")
        if not isinstance(detail, str) or len(detail) > MAX_DETAIL:
            raise _malformed(f"resolve answer {name}: detail {_show(detail)}")
        resolved[name] = (_count(rid, f"resolve answer {name}: request"),
                          _choice(result, RESOLVE_RESULTS, f"resolve answer {name}: result"),
                          detail)
    minor = _count(body.get("pm", 0), "protocol minor version", MAX_MINOR)
    release = body.get("sw", "")
    if not isinstance(release, str) or (release and not RELEASE_RE.match(release)):
        raise _malformed(f"release {_show(release)}")
    return Beat(
        cluster=cluster,
        sender=sender,
        generation=generation,
        seq=seq,
        status=NodeStatus(status),
        world_ok=_flag(body.get("w", 1), "w"),
        can_own=_flag(body.get("wd", 1), "wd"),
        links=links,
        groups=groups,
        pins=pins,
        config_digest=digest,
        outdate=outdate,
        outdate_answers=answers,
        maintenance=maintenance,
        echo=echo,
        watchdog_timeout=wt / 1000 if wt else None,
        yields_world=_flag(body.get("wy", 0), "wy"),
        replicas_behind=behind,
        resolve=resolve,
        resolve_answers=resolved,
        minor=minor,
        release=release,
        template=Template.of(raw, body, domain) if raw else None,
    )


@dataclass(frozen=True)
class Template:
    """A checked body cut around the values of its sequence number and echo:
    ``raw == head + <s> + middle + <e> + tail`` (``middle`` None: the body has no echo, and
    ``raw == head + <s> + tail``), and the domain it was checked against.

    Built only from a body in the encoder's own compact form (``raw`` is what the encoder
    makes of the parsed body, every key once, ``s`` before ``e``), so the cuts are exactly
    where those two values' tokens begin and end. A body with these same bytes around a
    plain integer and a flat echo ``["link",int,int,int]`` then parses to the same body
    with only those two values changed: the same nesting (the echo is as deep as before),
    the same keys and every other value the same, byte for byte (so of the same JSON type:
    ``1`` and ``true`` differ here, not in a comparison of parsed values). Checked against
    the same domain, every other field comes out the same, and only the two new values need
    their checks.
    """

    domain: Domain
    head: bytes
    middle: bytes | None
    tail: bytes

    @classmethod
    def of(cls, raw: bytes, body: dict[str, object], domain: Domain) -> Template | None:
        if _JSON.encode(body).encode() != raw:
            return None  # not the compact form (spaces, escapes, a key repeated): no cuts
        cut = _cuts(raw, body)
        return None if cut is None else cls(domain, *cut)

    def same_but(self, raw: bytes, newest: Beat, domain: Domain) -> Beat | None:
        """``newest`` with the sequence number and echo of ``raw``, when ``raw`` is this
        template around a plain integer and echo, checked against the same domain; raise
        DecodeError when one of those two values is out of its domain (as the whole
        decoding would); None: decode ``raw`` the whole way."""
        if (not (self.domain is domain or self.domain == domain)
                or not raw.startswith(self.head) or not raw.endswith(self.tail)):
            return None
        end = len(raw) - len(self.tail)
        found = _INTEGER.match(raw, len(self.head), end)
        if found is None:
            return None
        if self.middle is None:
            if found.end() != end:
                return None
            return evolve_beat(newest, _count(int(found[0]), "sequence number"), None)
        at = found.end() + len(self.middle)
        if not raw.startswith(self.middle, found.end()):
            return None
        echo = _ECHO.fullmatch(raw, at, end)
        if echo is None:
            return None
        seq = _count(int(found[0]), "sequence number")
        link, gen, eseq, hold = echo.groups()
        return evolve_beat(newest, seq, _echo([link.decode(), int(gen), int(eseq), int(hold)]))


def _cuts(raw: bytes, body: dict[str, object]) -> tuple[bytes, bytes | None, bytes] | None:
    """(head, middle, tail) of ``raw``, the compact encoding of ``body``, around the values
    of ``s`` and ``e`` (middle None: no ``e``); None when ``e`` comes before ``s``."""
    keys = list(body)
    i = keys.index("s")
    # raw is "{" + ",".join(key:value of each item) + "}": the items before "s" give
    # where its value (an integer: checked) begins, the items after "e" where the echo
    # ends
    head = _JSON.encode({k: body[k] for k in keys[:i]})[:-1] + ("," if i else "") + '"s":'
    seq_end = len(head) + len(str(body["s"]))
    if "e" not in body:
        return head.encode(), None, raw[seq_end:]
    j = keys.index("e")
    if j < i:
        return None
    after = _JSON.encode({k: body[k] for k in keys[j + 1:]})
    tail = "}" if after == "{}" else "," + after[1:]
    echo_start = len(raw) - len(tail) - len(_JSON.encode(body["e"]))
    return head.encode(), raw[seq_end:echo_start], tail.encode()


#: a JSON integer as the encoder writes one, short enough for a counter (a longer one, or any
#: other token, is decoded the whole way and refused there as it always was)
_INT = rb"(0|[1-9][0-9]{0,19})"
_INTEGER = re.compile(_INT)
#: an echo as the encoder writes one
_ECHO = re.compile(rb'\["([A-Za-z0-9._-]{1,64})",' + _INT + b"," + _INT + b"," + _INT + rb"\]")


def evolve_beat(newest: Beat, seq: int, echo: tuple[str, int, int, int] | None) -> Beat:
    """``newest`` with another sequence number and echo (``dataclasses.replace`` without
    building every field again: supervisor.core.state.evolve)."""
    beat = object.__new__(Beat)
    beat.__dict__.update(newest.__dict__)
    beat.__dict__["seq"] = seq
    beat.__dict__["echo"] = echo
    return beat


_STATUSES = frozenset(s.value for s in NodeStatus)
_ACTIVITIES = frozenset(a.value for a in Activity)
_NEGOS = frozenset(n.value for n in Nego)


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
        if (not self._buf and data.startswith(MAGIC) and data.find(b"\n") == len(data) - 1
                and MAGIC not in data[len(MAGIC):]):
            # one whole frame line, as an idle pair's port holds at each wake-up: what the
            # general way below gives for it, without the buffer
            return [data[:-1]]
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
