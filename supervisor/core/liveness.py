"""Liveness: each link, the peer, and this node's view of the outside world.

A link is UP while heartbeats arrive, LATE after ``warntime`` of silence, DOWN after
``deadtime`` or when its carrier is gone. The peer is DEAD when it is silent on every link for
``deadtime``, when it said it is leaving, or when it was never heard within ``initdead``. This
node is cut off when its public interface has no carrier or its ping nodes stopped answering
(a ping node that never answered is not trusted to judge). Pure: ``now`` is passed in.
"""

from __future__ import annotations

from supervisor.core.notify import Kind, Severity
from supervisor.core.state import EPS, CoreState, Out, WorldState, evolve, fmt
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


def on_watchdog(s: CoreState, ok: bool, reason: str, out: Out, *, armed: bool = True,
                timeout: float | None = None) -> CoreState:
    if (ok, reason, timeout) == (s.watchdog_ok, s.watchdog_reason, s.watchdog_timeout):
        return s
    sentence = f"watchdog: {reason}"
    out.reason(sentence)
    if (ok, reason) != (s.watchdog_ok, s.watchdog_reason):
        if not armed:
            # required mode: this node may not own groups (critical); automatic mode without
            # a device: it may, but a hang would not reset it (a warning)
            out.event(Kind.WATCHDOG_NOT_ARMED,
                      sentence + ("" if ok else "; this node may not own groups"),
                      severity=None if not ok else Severity.WARNING)
        elif not s.watchdog_ok and ok:
            out.event(Kind.WATCHDOG_ARMED, sentence)
    return evolve(s, watchdog_ok=ok, watchdog_reason=reason, watchdog_timeout=timeout)


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
            sentence = f"link {ls.name} down: {why}"
            out.warn(sentence)
            # a link that never came up is news only while the peer is heard elsewhere (a
            # dead peer is its own event)
            if old is not LinkStatus.UNKNOWN or s.peer_status is PeerStatus.ALIVE:
                out.event(Kind.LINK_DOWN, sentence + " (the other links decide whether the "
                          "peer is alive)", link=ls.name)
        elif new is LinkStatus.LATE and ls.last_heard is not None:
            out.warn(
                f"late heartbeat on link {ls.name}: {fmt(now - ls.last_heard)} since the last"
                f" (warntime {fmt(t.warntime)})"
            )
        elif new is LinkStatus.UP and old in (LinkStatus.DOWN, LinkStatus.UNKNOWN):
            out.reason(f"link {ls.name} up")
            if old is LinkStatus.DOWN:
                out.event(Kind.LINK_UP, f"link {ls.name} up again", link=ls.name)
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
            out.event(Kind.PEER_DEAD, why, subject=s.peer)
    elif p.status is PeerStatus.UNKNOWN and now - s.started_at >= t.initdead - EPS:
        why = f"peer {s.peer} not heard within initdead ({fmt(t.initdead)})"
        s = evolve(s, peer_state=p.to(PeerStatus.DEAD, dead_reason=why))
        out.warn(why)
        out.event(Kind.PEER_DEAD, why, subject=s.peer)
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
            out.event(Kind.WORLD_REGAINED, "this node sees the outside world again")
        else:
            out.warn(f"this node is cut off: {why}")
            if not w.reason:
                out.event(Kind.WORLD_LOST, f"this node is cut off: {why}")
        w = evolve(w, reason=why)
    w = _damp(s, w, ok, now, out)
    return s if w is s.world else evolve(s, world=w)


def recovery_hold(s: CoreState) -> float:
    """How long a node that lost its groups for being cut off from its ping nodes waits, once
    it sees the world again, before it takes any back (a ping node that flaps must not
    bounce a group)."""
    return HOLD_FACTOR * s.config.ping_timeout


HOLD_FACTOR = 3.0


def _damp(s: CoreState, w: WorldState, ok: bool, now: float, out: Out) -> WorldState:
    """The world check's damping, judged by this node alone and published (``wy``) so that
    both nodes agree. A lost carrier is a fact: the node yields its groups at once while the
    live peer sees the world. Unanswered pings are not: the node yields only once the live
    peer has seen the world while this node did not for ping_timeout, on top of the
    ping_timeout that made it cut off (a late answer on a loaded node is not a lost one, and
    a ping node that fails for both nodes moves nothing); once its pings are answered again
    it takes no group back for recovery_hold()."""
    beat = s.peer_state.beat
    peer_sees = (s.peer_status is PeerStatus.ALIVE and beat is not None and beat.world_ok)
    carrier_cut = bool(s.config.public_interface) and w.carrier is False
    outranked = not ok and peer_sees and not carrier_cut
    if outranked and w.outranked_since is None:
        w = evolve(w, outranked_since=now)
    elif not outranked and w.outranked_since is not None:
        w = evolve(w, outranked_since=None)
    timeout = s.config.ping_timeout
    if not w.lost and not ok and peer_sees and carrier_cut:
        out.warn(f"this node is cut off ({w.reason}) while {s.peer} sees the outside world: "
                 "handing its groups to it")
        w = evolve(w, lost="carrier", recover_until=None)
    elif (not w.lost and w.outranked_since is not None
          and now - w.outranked_since >= timeout - EPS):
        out.warn(f"this node has been cut off ({w.reason}) for {fmt(timeout)} while {s.peer} "
                 "sees the outside world: handing its groups to it")
        w = evolve(w, lost="ping", recover_until=None)
    if w.lost and ok:
        if w.lost == "carrier":
            w = evolve(w, lost="")
        else:
            hold = recovery_hold(s)
            out.reason(f"this node sees the outside world again; it takes no group back for "
                       f"{fmt(hold)} (its ping nodes did not answer)")
            w = evolve(w, lost="", recover_until=now + hold)
    if w.recover_until is not None and now >= w.recover_until - EPS:
        out.reason("this node has seen the outside world long enough to own groups again")
        w = evolve(w, recover_until=None)
    return w


def yields_groups(s: CoreState) -> bool:
    """Published as ``wy``: this node gives its groups to a peer that sees the world."""
    return bool(s.world.lost) or s.world.recover_until is not None


def cut_off_for_groups(s: CoreState, now: float) -> str:
    """Why being cut off costs this node its groups now ("" when it does not)."""
    w = s.world
    ok, why = world_ok(s, now)
    if s.peer_status is not PeerStatus.ALIVE or s.peer_state.beat is None:
        return "" if ok else f"this node is cut off ({why})"
    if w.lost:
        return f"this node is cut off ({why or w.reason}) while {s.peer} sees the outside world"
    if w.recover_until is not None:
        return (f"this node was cut off and takes no group back until it has seen the "
                f"outside world for {fmt(recovery_hold(s))} "
                f"({fmt(max(0.0, w.recover_until - now))} to go)")
    return ""


def peer_cut_off(s: CoreState) -> str:
    """Why the live peer yields its groups for being cut off ("" when it does not)."""
    beat = s.peer_state.beat
    if beat is None or not beat.yields_world:
        return ""
    return f"peer {s.peer} is cut off from the outside world (or just back) and yields its groups"


def deadlines(s: CoreState) -> list[float]:
    """When liveness may change next without an event."""
    cfg = s.settings.config  # (not the property: every keepalive asks)
    t = cfg.timing
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
    if cfg.ping_nodes:
        last = s.world.last_ping
        times.append((last if last is not None else s.started_at) + cfg.ping_timeout)
    w = s.world
    if w.outranked_since is not None:
        times.append(w.outranked_since + cfg.ping_timeout)
    if w.recover_until is not None:
        times.append(w.recover_until)
    return times
