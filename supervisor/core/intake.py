"""Frame intake: decode, authenticate and sort out one received frame.

A frame that fails to decode or to meet the schema (``codec``), comes from an unknown or our
own node, is not fresh (``freshness``: a replay on any link, a jump too large for the time
since the newest beat), or comes from a generation that said it was leaving is dropped and
counted under its cause; it changes nothing else. An accepted frame
marks its link heard, and when it is the newest beat of the peer it becomes ``peer.beat``:
pins merged by stamp, the peer's view of our links, the configuration digest compared.
"""

from __future__ import annotations

from supervisor.core import codec, freshness
from supervisor.core.state import LOSS_WINDOW, CoreState, Out, evolve
from supervisor.core.states import NodeStatus, PeerStatus


def on_frame(s: CoreState, link: str, data: bytes, now: float, out: Out) -> CoreState:
    ls = s.links.get(link)
    if ls is None:
        return s.count_drop("unknown_link")
    line = data.strip()
    p = s.peer_state
    if p.beat is not None and line == p.frame:
        beat = p.beat  # the peer's newest beat again, from another link: decoded already
    else:
        try:
            beat = codec.decode(line, s.settings.key,
                                codec.Domain.of(s.config, s.settings.digest))
        except codec.DecodeError as exc:
            return s.count_drop(exc.cause)
        if beat.sender == s.me:
            return s.count_drop("own_frame")
        if beat.sender != s.peer:
            return s.count_drop("unknown_node")
    verdict = freshness.admit(p.fresh, link, beat.order, now, s.config.timing)
    if verdict.drop:
        return s.count_drop(verdict.drop)
    if beat.generation <= p.left_gen:
        return s.count_drop("after_leave")
    # Accepted: liveness on this link.
    if ls.window_gen != beat.generation:
        window: tuple[int, ...] = (beat.seq,)
    else:
        window = (*ls.window[1 - LOSS_WINDOW:], beat.seq) if ls.window else (beat.seq,)
    ls = evolve(ls, last_order=beat.order, last_heard=now, received=ls.received + 1,
                window_gen=beat.generation, window=window)
    links = {**s.links, link: ls}
    p = evolve(p, last_heard=verdict.heard_at, fresh=verdict.state)
    pins, lamport = s.pins, s.lamport
    if p.beat is None or beat.order > p.beat.order:
        if p.beat is not None and beat.generation > p.beat.generation:
            out.reason(f"peer {s.peer} restarted (generation {beat.generation})")
        p = evolve(p, beat=beat, frame=line)
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
    if beat.status is NodeStatus.LEAVING:
        p = evolve(p, left_gen=beat.generation)
        if p.status is not PeerStatus.DEAD:
            why = f"peer {s.peer} left the cluster (clean shutdown)"
            p = p.to(PeerStatus.DEAD, dead_reason=why)
            out.reason(why)
    elif p.status is not PeerStatus.ALIVE:
        p = p.to(PeerStatus.ALIVE)
        out.reason(f"peer {s.peer} is alive (heard on {link})")
    return evolve(s, links=links, peer_state=p, pins=pins, lamport=lamport)
