"""Frame intake: decode, authenticate and sort out one received frame.

A frame that fails to decode or to meet the schema (``codec``), comes from an unknown or our
own node, is not fresh (``freshness``: a replay on any link, a jump too large for the time
since the newest beat), or comes from a generation that said it was leaving is dropped and
counted under its cause; it changes nothing else. An accepted frame
marks its link heard, and when it is the newest beat of the peer it becomes ``peer.beat``:
pins merged by stamp, the peer's view of our links, the configuration digest compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter

from supervisor.core import codec, freshness
from supervisor.core.actions import SaveMaintenance
from supervisor.core.events import FrameReceived
from supervisor.core.freshness import Order
from supervisor.core.notify import Kind, Severity
from supervisor.core.state import LOSS_WINDOW, CoreState, LinkState, Out, PeerState, evolve
from supervisor.core.states import NodeStatus, PeerStatus


def decode_frame(s: CoreState, line: bytes) -> codec.Beat | codec.DecodeError:
    """The beat of a frame line with this state's key and domain, or why it is not one (the
    peer's next beat that says what its newest one said is not built field by field:
    ``codec.decode`` with ``newest``)."""
    try:
        return codec.decode(line, s.settings.key, s.settings.domain, s.peer_state.beat)
    except codec.DecodeError as exc:
        return exc


def heard_time(arrived: float | None, now: float) -> float:
    """When a frame is heard: when it arrived if the loop knows it (FrameReceived.arrived, a
    frame that waited for a quiet wake-up), never later than now; else now."""
    return now if arrived is None or arrived > now else arrived


_ARRIVED, _LINK = attrgetter("arrived"), attrgetter("link")


def _later(last: float | None, heard: float) -> float:
    """The last heard time after a frame heard at ``heard``: never earlier than it was (the
    frames of one read come link by link, with their arrivals: an older beat's copy, read
    after a newer beat on another link, proves nothing later)."""
    return heard if last is None or heard > last else last


def on_frame(s: CoreState, link: str, data: bytes, now: float, out: Out, *,
             decoded: codec.Beat | codec.DecodeError | None = None,
             waited: bool = False, arrived: float | None = None) -> CoreState:
    """``decoded``: what ``codec.decode`` made of the frame already (its beat, or its error),
    if the caller decoded it with this state's key and domain. ``waited``: the frame waited
    for a quiet wake-up (FrameReceived.waited): no round trip from it. ``arrived``: when it
    arrived (FrameReceived.arrived): the link and the peer are heard then, not now."""
    now = heard_time(arrived, now)
    ls = s.links.get(link)
    if ls is None:
        return s.count_drop("unknown_link")
    line = data.strip()
    beat = _beat_of(s, line, decoded)
    if isinstance(beat, str):
        return s.count_drop(beat)
    p = s.peer_state
    order = beat.order
    verdict = freshness.admit(p.fresh, link, order, now, s.config.timing)
    if verdict.drop:
        return s.count_drop(verdict.drop)
    if beat.generation <= p.left_gen:
        return s.count_drop("after_leave")
    links = {**s.links, link: _heard(s, link, ls, beat, now, waited=waited, order=order)}
    return _taken(s, p, links, beat, order, line=line, link=link, out=out,
                  last_heard=_later(p.last_heard, verdict.heard_at), fresh=verdict.state)


def on_copies(s: CoreState, frames: Sequence[FrameReceived], now: float, out: Out, *,
              decoded: codec.Beat | codec.DecodeError | None = None) -> CoreState | None:
    """The frames of one wake-up that carry the same line (one beat of the peer and its
    copies on other links), taken in as ``on_frame`` takes them one after the other, each
    record built once (the links, the peer, the state) instead of once a frame. None, with
    nothing said, when one of them would not be taken (``on_frame`` then counts it, one by
    one) or the beat says the peer leaves (its copies are dropped after the first). Heard
    when the first arrived (``heard_time``; the copies of one wake-up share their beat's
    arrival, see ``events.shared_arrivals``)."""
    arrived = frames[0].arrived
    if list(map(_ARRIVED, frames)).count(arrived) != len(frames):
        return None
    now = heard_time(arrived, now)
    line = frames[0].data.strip()
    beat = _beat_of(s, line, decoded)
    p = s.peer_state
    if (isinstance(beat, str) or beat.generation <= p.left_gen
            or beat.status is NodeStatus.LEAVING):
        return None
    timing = s.settings.config.timing
    order = beat.order  # (a property: asked once, not once a link)
    verdict = freshness.admit(p.fresh, frames[0].link, order, now, timing)
    if verdict.drop:
        return None
    fresh, heard_at = verdict.state, verdict.heard_at
    rest = list(map(_LINK, frames[1:]))
    copies = freshness.admit_copies(fresh, rest, now) if rest and verdict.fresh else None
    if copies is not None:  # the newest beat, on the other links at once: heard now
        fresh, heard_at = copies, now
    else:
        for link in rest:
            verdict = freshness.admit(fresh, link, order, now, timing)
            if verdict.drop:
                return None
            fresh, heard_at = verdict.state, verdict.heard_at
    links = dict(s.links)
    for frame in frames:
        ls = links.get(frame.link)
        if ls is None or (frame is not frames[0] and frame.data.strip() != line):
            return None
        links[frame.link] = _heard(s, frame.link, ls, beat, now, waited=frame.waited,
                                   order=order)
    return _taken(s, p, links, beat, order, line=line, link=frames[0].link, out=out,
                  last_heard=_later(p.last_heard, heard_at), fresh=fresh)


def _beat_of(s: CoreState, line: bytes,
             decoded: codec.Beat | codec.DecodeError | None) -> codec.Beat | str:
    """The beat of a frame line of the peer, or the counter of why it is dropped."""
    p = s.peer_state
    if p.beat is not None and line == p.frame:
        return p.beat  # the peer's newest beat again, from another link: decoded already
    if decoded is None:
        decoded = decode_frame(s, line)
    if isinstance(decoded, codec.DecodeError):
        return decoded.cause
    if decoded.sender == s.me:
        return "own_frame"
    if decoded.sender != s.peer:
        return "unknown_node"
    return decoded


def _heard(s: CoreState, link: str, ls: LinkState, beat: codec.Beat, now: float, *,
           waited: bool, order: Order | None = None) -> LinkState:
    """``ls`` (of ``link``) after a frame of ``beat`` was taken on it: heard, its loss
    window, its round trip. (``order``: the beat's, when the caller has it: a property.)"""
    if ls.window_gen != beat.generation:
        window: tuple[int, ...] = (beat.seq,)
    else:
        window = (*ls.window[1 - LOSS_WINDOW:], beat.seq) if ls.window else (beat.seq,)
    last = ls.last_heard  # (never earlier than it was: _later, written out on this path)
    return evolve(ls, last_order=beat.order if order is None else order,
                  last_heard=now if last is None or now > last else last,
                  received=ls.received + 1,
                  window_gen=beat.generation, window=window, heard_waited=waited,
                  rtt=ls.rtt if waited else round_trip(s, link, beat, now, ls.rtt))


def _taken(s: CoreState, p: PeerState, links: dict[str, LinkState], beat: codec.Beat,
           order: Order, *,
           line: bytes, link: str, out: Out, last_heard: float | None,
           fresh: freshness.Freshness) -> CoreState:
    """The state once the frames of ``beat`` were taken (on ``links``, first on ``link``;
    the peer heard at ``last_heard``, its beats' freshness now ``fresh``): the newest beat
    of the peer becomes ``peer.beat``, what it says merged."""
    pins, lamport = s.pins, s.lamport
    if p.beat is not None and order <= p.beat.order:
        p = evolve(p, last_heard=last_heard, fresh=fresh)
    else:
        if p.beat is not None and beat.generation > p.beat.generation:
            out.reason(f"peer {s.peer} restarted (generation {beat.generation})")
        p = evolve(p, beat=beat, frame=line, last_heard=last_heard, fresh=fresh)
        mismatch = bool(beat.config_digest) and beat.config_digest != s.settings.digest
        if mismatch != p.config_mismatch:
            p = evolve(p, config_mismatch=mismatch)
            if mismatch:
                out.warn(
                    f"the configurations of {s.me} and {s.peer} disagree on nodes, groups or "
                    f"auto_failback (digest {s.settings.digest} here, {beat.config_digest} "
                    f"there): fix /etc/twinbeat/cluster.toml on one of them"
                )
            else:
                out.reason(f"the configurations of {s.me} and {s.peer} agree again")
        for link_name, hears in beat.links.items():
            other = links.get(link_name)
            if other is not None and other.peer_hears_us != hears:
                links[link_name] = evolve(other, peer_hears_us=hears)
        if beat.pins:
            merged = dict(pins)
            for group, (node, stamp) in freshness.plausible_pins(beat.pins, lamport).items():
                if group not in merged or (stamp, node) > (merged[group][1], merged[group][0]):
                    merged[group] = (node, stamp)
                lamport = max(lamport, stamp)
            if merged != pins:
                pins = merged
        maintenance = _merge_maintenance(s, beat, out)
        if maintenance is not s.maintenance:
            s = evolve(s, maintenance=maintenance)
            lamport = max(lamport, *(stamp for _, stamp in maintenance.values()))
    if beat.status is NodeStatus.LEAVING:
        p = evolve(p, left_gen=beat.generation)
        if p.status is not PeerStatus.DEAD:
            why = f"peer {s.peer} left the cluster (clean shutdown)"
            p = p.to(PeerStatus.DEAD, dead_reason=why)
            out.reason(why)
            out.event(Kind.PEER_DEAD, why, subject=s.peer, severity=Severity.WARNING)
    elif p.status is not PeerStatus.ALIVE:
        was = p.status
        p = p.to(PeerStatus.ALIVE)
        said = f"peer {s.peer} is alive (heard on {link})"
        out.reason(said)
        if was is PeerStatus.DEAD:
            out.event(Kind.PEER_BACK, said, subject=s.peer)
    return evolve(s, links=links, peer_state=p, pins=pins, lamport=lamport)


def round_trip(s: CoreState, link: str, beat: codec.Beat, now: float,
               old: float | None) -> float | None:
    """The round-trip time of ``link`` when this beat echoes one of ours heard on that same
    link: now - when we sent it - how long the peer held it; else the last one measured."""
    if beat.echo is None:
        return old
    name, generation, seq, hold_ms = beat.echo
    if name != link or generation != s.generation:
        return old
    for sent_seq, sent_at in s.sent:
        if sent_seq == seq:
            rtt = now - sent_at - hold_ms / 1000
            return round(max(0.0, rtt), 6) if rtt < s.config.timing.deadtime else old
    return old


def _merge_maintenance(s: CoreState, beat: codec.Beat,
                       out: Out) -> Mapping[str, tuple[bool, int]]:
    """The maintenance flags merged with the peer's (highest stamp wins). A flag of this
    node changed by the peer (``twinbeat maintenance on --node ME`` run there) is this
    node's event too, and is persisted (SaveMaintenance)."""
    if not beat.maintenance:
        return s.maintenance
    merged = dict(s.maintenance)
    for node, (on, stamp) in beat.maintenance.items():
        if node not in (s.me, s.peer) or stamp > s.lamport + freshness.PIN_LEAD:
            continue  # (a stamp that far ahead would drag the Lamport clock along)
        old = merged.get(node)
        if old is None or (stamp, on) > (old[1], old[0]):
            merged[node] = (on, stamp)
    if merged == s.maintenance:
        return s.maintenance
    mine, was = merged.get(s.me, (False, 0))[0], s.in_maintenance(s.me)
    if mine != was:
        said = maintenance_sentence(s.me, mine, f"asked on {s.peer}")
        out.reason(said)
        out.event(Kind.MAINTENANCE_ON if mine else Kind.MAINTENANCE_OFF, said, subject=s.me)
    out.actions.append(SaveMaintenance(flags_of(merged)))
    return merged


def maintenance_sentence(node: str, on: bool, how: str) -> str:
    if on:
        return (f"maintenance mode on for {node} ({how}): its resources are left as they are, "
                "not monitored, not moved")
    return f"maintenance mode off for {node} ({how}): its groups are managed again"


def flags_of(flags: Mapping[str, tuple[bool, int]]) -> tuple[tuple[str, bool, int], ...]:
    return tuple((node, on, stamp) for node, (on, stamp) in sorted(flags.items()))
