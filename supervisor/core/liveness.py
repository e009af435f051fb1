"""Liveness: each link, the peer, and this node's view of the outside world.

A link is UP while heartbeats arrive, LATE after ``warntime`` of silence, DOWN after
``deadtime`` or when its carrier is gone. The peer is DEAD when it is silent on every link for
``deadtime``, when it said it is leaving, or when it was never heard within ``initdead``. This
node is cut off when its public interface has no carrier or its ping nodes stopped answering
(a ping node that never answered is not trusted to judge). Pure: ``now`` is passed in.
"""

from __future__ import annotations

from supervisor.core.state import EPS, CoreState, Out, evolve, fmt
from supervisor.core.states import LinkStatus, NodeStatus, PeerStatus


def on_link_carrier(s: CoreState, link: str, up: bool, out: Out) -> CoreState:
    ls = s.links.get(link)
    if ls is None or ls.carrier == up:
        return s
    out.reason(f"link {link}: carrier {'up' if up else 'down'}")
    return s.with_link(evolve(ls, carrier=up))


def on_public_carrier(s: CoreState, up: bool, out: Out) -> CoreState:
    if s.world.carrier == up:
        return s
    out.reason(f"public interface carrier {'up' if up else 'down'}")
    return evolve(s, world=evolve(s.world, carrier=up))


def on_ping_reply(s: CoreState, now: float) -> CoreState:
    return evolve(s, world=evolve(s.world, last_ping=now))


def on_watchdog(s: CoreState, ok: bool, reason: str, out: Out) -> CoreState:
    if (ok, reason) == (s.watchdog_ok, s.watchdog_reason):
        return s
    out.reason(f"watchdog: {reason}")
    return evolve(s, watchdog_ok=ok, watchdog_reason=reason)


def update_links(s: CoreState, now: float, out: Out) -> CoreState:
    t = s.config.timing
    for ls in s.links.values():
        old = ls.status
        if ls.carrier is False:
            new = LinkStatus.DOWN
        elif ls.last_heard is None:
            new = (
                LinkStatus.DOWN
                if now - s.started_at >= t.initdead - EPS
                else LinkStatus.UNKNOWN
            )
        else:
            age = now - ls.last_heard
            if age >= t.deadtime - EPS:
                new = LinkStatus.DOWN
            elif age >= t.warntime - EPS:
                new = LinkStatus.LATE
            else:
                new = LinkStatus.UP
        if new is old:
            continue
        s = s.with_link(ls.to(new))
        if new is LinkStatus.DOWN:
            if ls.carrier is False:
                why = "carrier lost"
            elif ls.last_heard is None:
                why = f"nothing heard since start ({fmt(now - s.started_at)})"
            else:
                why = f"no heartbeat for {fmt(now - ls.last_heard)}"
            out.warn(f"link {ls.name} down: {why}")
        elif new is LinkStatus.LATE and ls.last_heard is not None:
            out.warn(
                f"late heartbeat on link {ls.name}: {fmt(now - ls.last_heard)} since the last"
                f" (warntime {fmt(t.warntime)})"
            )
        elif new is LinkStatus.UP and old in (LinkStatus.DOWN, LinkStatus.UNKNOWN):
            out.reason(f"link {ls.name} up")
    return s


def update_peer(s: CoreState, now: float, out: Out) -> CoreState:
    t = s.config.timing
    p = s.peer_state
    if p.status is PeerStatus.ALIVE and p.last_heard is not None:
        silent = now - p.last_heard
        if silent >= t.deadtime - EPS:
            why = (f"peer {s.peer} silent on all links for {fmt(silent)} "
                   f"(deadtime {fmt(t.deadtime)})")
            s = evolve(s, peer_state=p.to(PeerStatus.DEAD, dead_reason=why))
            out.warn(why)
    elif p.status is PeerStatus.UNKNOWN and now - s.started_at >= t.initdead - EPS:
        why = f"peer {s.peer} not heard within initdead ({fmt(t.initdead)})"
        s = evolve(s, peer_state=p.to(PeerStatus.DEAD, dead_reason=why))
        out.warn(why)
    if s.status is NodeStatus.INIT and s.peer_status is not PeerStatus.UNKNOWN:
        s = s.to(NodeStatus.ACTIVE)
    return s


def world_ok(s: CoreState, now: float) -> tuple[bool, str]:
    """Whether this node sees the outside world, and why not."""
    cfg = s.config
    w = s.world
    if cfg.public_interface and w.carrier is False:
        return False, f"public interface {cfg.public_interface} has no carrier"
    # A ping node that never answered since start is not trusted to judge: a gateway that
    # drops ICMP must not keep the backup from ever taking over (see update_world).
    if cfg.ping_nodes and w.last_ping is not None and now - w.last_ping >= cfg.ping_timeout - EPS:
        nodes = ", ".join(str(a) for a in cfg.ping_nodes)
        return False, f"no ping node answers ({nodes})"
    return True, ""


def update_world(s: CoreState, now: float, out: Out) -> CoreState:
    cfg = s.config
    w = s.world
    if (
        cfg.ping_nodes
        and w.last_ping is None
        and not w.ping_silence_warned
        and now - s.started_at >= cfg.ping_timeout - EPS
    ):
        w = evolve(w, ping_silence_warned=True)
        nodes = ", ".join(str(a) for a in cfg.ping_nodes)
        out.warn(
            f"no ping node has answered yet ({nodes}); until one does they are not used to "
            "decide whether this node is cut off"
        )
    ok, why = world_ok(s, now)
    if why != w.reason:
        if ok:
            out.reason("this node sees the outside world again")
        else:
            out.warn(f"this node is cut off: {why}")
        w = evolve(w, reason=why)
    return s if w is s.world else evolve(s, world=w)


def deadlines(s: CoreState) -> list[float]:
    """When liveness may change next without an event."""
    t = s.config.timing
    times = []
    for ls in s.links.values():
        if ls.last_heard is not None:
            times += [ls.last_heard + t.warntime, ls.last_heard + t.deadtime]
        else:
            times.append(s.started_at + t.initdead)
    p = s.peer_state
    if p.last_heard is not None:
        times.append(p.last_heard + t.deadtime)
    if p.status is PeerStatus.UNKNOWN:
        times.append(s.started_at + t.initdead)
    if s.config.ping_nodes:
        last = s.world.last_ping
        times.append((last if last is not None else s.started_at) + s.config.ping_timeout)
    return times
