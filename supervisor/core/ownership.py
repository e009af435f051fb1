"""Ownership: who should run each group, and the WANT/GRANT handover that gets it there.

While the peer is alive, both nodes compute the same desired owner from what each publishes
(entitlement: watchdog, failures, blocked stops, the outside world; then admin pins, then
``auto_failback`` and the preferred node). The node that should own an idle group publishes
WANT(epoch); the other stops it if it holds it, then answers GRANT(epoch) from IDLE; only then
does the first one start it. With the peer DEAD a node takes its groups over alone, unless it
is not entitled (then it stops them); with the peer UNKNOWN it waits for initdead. The
protocol is described in ``supervisor.core.states``.
"""

from __future__ import annotations

from supervisor.core import codec
from supervisor.core.liveness import cut_off_for_groups, peer_cut_off
from supervisor.core.plan import ensure_stopped, start
from supervisor.core.state import EPS, CoreState, GroupState, Out, evolve
from supervisor.core.states import Activity, Nego, NodeStatus, PeerStatus
from supervisor.core.watchdog_window import hung_peer_reset_by
from supervisor.resource_spec import DrbdSpec

_NO_VIEW = codec.GroupView()


def peer_view(s: CoreState, name: str) -> codec.GroupView | None:
    """The peer's published view of a group, while the peer is alive."""
    beat = s.peer_state.beat
    if s.peer_state.status is not PeerStatus.ALIVE or beat is None:
        return None
    return beat.groups.get(name, _NO_VIEW)


def not_entitled_self(s: CoreState, now: float, g: GroupState | None) -> str:
    """Why this node may not own group ``g`` (any group: None); empty when it may."""
    if s.shutting_down:
        return f"{s.me} is shutting down"
    if not s.watchdog_ok:
        return f"watchdog required but not armed ({s.watchdog_reason})"
    if g is not None:
        if g.failed_until is not None:
            return f"group {g.name} failed here ({g.failed_reason})"
        if g.activity is Activity.STOP_FAILED:
            return f"group {g.name} is blocked here ({g.blocked_reason})"
    why = cut_off_for_groups(s, now)
    if why or g is None:
        return why
    return _replica_behind_self(s, g)


def not_entitled_peer(s: CoreState, name: str, now: float) -> str:
    beat = s.peer_state.beat
    if s.peer_status is not PeerStatus.ALIVE or beat is None:
        return f"peer {s.peer} is not alive"
    view = beat.groups.get(name, _NO_VIEW)
    if not beat.can_own:
        return f"peer {s.peer} may not own groups (watchdog or shutdown)"
    if view.failed:
        return f"group {name} failed on {s.peer}"
    if view.activity is Activity.STOP_FAILED:
        return f"group {name} is blocked on {s.peer}"
    why = peer_cut_off(s)
    if why:
        return why
    g = s.groups.get(name)
    if g is not None and g.activity in (Activity.STARTING, Activity.RUNNING):
        behind = [r for r in _drbd_of(g) if r in beat.replicas_behind]
        if behind:
            return (f"{s.peer}'s replica {', '.join(behind)} is not in sync yet (the group "
                    f"stays on {s.me} until it is UpToDate on both sides)")
    return ""


def _drbd_of(g: GroupState) -> list[str]:
    return [spec.resource for spec in g.specs if isinstance(spec, DrbdSpec)]


def replicas_behind(s: CoreState) -> list[str]:
    """The DRBD resources whose local replica is not in sync with the peer's (published as
    ``rb``: the peer does not hand a group over to this node meanwhile)."""
    return sorted(name for name, r in s.replicas.items() if not r.in_sync)


def _replica_behind_self(s: CoreState, g: GroupState) -> str:
    """Failback waits for the data: while the live peer runs the group, this node may not
    take it back (auto failback, or an admin's takeover) until its replicas are in sync."""
    view = peer_view(s, g.name)
    if view is None or view.activity not in (Activity.STARTING, Activity.RUNNING):
        return ""
    if g.activity is not Activity.IDLE:
        return ""
    behind = [s.replicas[r].not_in_sync() for r in _drbd_of(g)
              if r in s.replicas and not s.replicas[r].in_sync]
    if not behind:
        return ""
    return (f"{'; '.join(behind)}: group {g.name} stays on {s.peer} until it is UpToDate on "
            "both sides")


def preferred(s: CoreState, name: str) -> tuple[str, bool]:
    """The node the group should run on when both can, and whether an admin pinned it."""
    pin = s.pins.get(name)
    if pin is not None and pin[0]:  # ("", stamp): cleared by `twinbeat unpin`
        return pin[0], True
    cfg = s.group_cfg(name)
    return (cfg.preferred if cfg else s.me), False


def desired_owner(s: CoreState, g: GroupState, now: float) -> tuple[str | None, str]:
    """Who should own the group given this node's view, and why (peer alive)."""
    name = g.name
    me_no = not_entitled_self(s, now, g)
    peer_no = not_entitled_peer(s, name, now)
    if me_no and peer_no:
        return None, f"neither node can own it ({me_no}; {peer_no})"
    if me_no:
        return s.peer, me_no
    if peer_no:
        return s.me, peer_no
    pref, pinned = preferred(s, name)
    view = peer_view(s, name)
    holders = []
    if g.activity in (Activity.STARTING, Activity.RUNNING):
        holders.append(s.me)
    if view is not None and view.activity in (Activity.STARTING, Activity.RUNNING):
        holders.append(s.peer)
    if pinned:
        return pref, f"an admin asked for it to run on {pref}"
    if len(holders) == 1 and not s.config.auto_failback:
        return holders[0], f"it runs on {holders[0]} and auto_failback is off"
    if len(holders) == 1 and holders[0] == pref:
        return pref, f"it runs on its preferred node {pref}"
    if len(holders) == 2:
        return pref, f"both nodes hold it: {pref} is its preferred node"
    if len(holders) == 1:
        return pref, f"auto_failback is on and {pref} is its preferred node"
    return pref, f"{pref} is its preferred node"


def owner_of(s: CoreState, name: str) -> str | None:
    """The node that holds the group, as far as this node knows."""
    g = s.groups.get(name)
    if g is not None and g.activity is not Activity.IDLE:
        return s.me
    view = peer_view(s, name)
    if view is not None and view.activity.holds:
        return s.peer
    return None


def decide_group(s: CoreState, g: GroupState, now: float, out: Out) -> GroupState:
    """Start, stop, ask for, or grant one group; the group's new state."""
    if g.inflight is not None or g.activity in (Activity.STOPPING, Activity.STOP_FAILED):
        if g.activity is not Activity.IDLE and g.nego is not Nego.NONE:
            g = evolve(g, nego=Nego.NONE)
        return g
    cfg = s.group_cfg(g.name)
    if cfg is None or s.shutting_down:
        g = ensure_stopped(g, out, "shutting down" if cfg else "group removed")
        if s.peer_status is PeerStatus.ALIVE and g.activity is Activity.IDLE:
            g = _maybe_grant(s, g, out, s.peer)
        return g
    if g.activity is Activity.IDLE and cfg.resources != g.specs:
        g = evolve(g, specs=cfg.resources)
    if g.activity in (Activity.STARTING, Activity.RUNNING) and cfg.resources != g.specs:
        return ensure_stopped(g, out, "its resources changed in the configuration; "
                                      "restarting it")
    if s.peer_status is PeerStatus.UNKNOWN:
        if g.nego is not Nego.NONE:
            g = evolve(g, nego=Nego.NONE)
        if g.activity is not Activity.IDLE:
            return g
        return g.said(f"waiting up to initdead for peer {s.peer} before taking group {g.name}")
    if s.in_maintenance(s.peer):
        # the peer's resources are left as they are: nothing moves to or from it
        if g.nego is not Nego.NONE:
            g = evolve(g, nego=Nego.NONE)
        if g.activity is not Activity.IDLE:
            return g
        return g.said(f"group {g.name} is left where it is: {s.peer} is in maintenance "
                      "(nothing is moved to or from it)")
    if s.peer_status is PeerStatus.DEAD:
        if g.nego is not Nego.NONE:
            g = evolve(g, nego=Nego.NONE)
        why = not_entitled_self(s, now, g)
        if why:
            if g.activity is Activity.IDLE:
                g = g.said(f"not taking over group {g.name}: {why}")
            return ensure_stopped(g, out, f"{why}, and {s.peer} is not reachable")
        if g.activity is Activity.IDLE:
            beat = s.peer_state.beat
            reset_by = hung_peer_reset_by(s)
            if reset_by is not None and now < reset_by - EPS:
                assert beat is not None and beat.watchdog_timeout is not None
                assert s.peer_state.last_heard is not None
                waiting = (
                    f"not taking over group {g.name} yet: {s.peer} may be hung rather than "
                    f"dead; waiting until its watchdog (armed for {beat.watchdog_timeout:g} s) "
                    f"must have reset it, {reset_by - s.peer_state.last_heard:.2f} s after its "
                    "last beat")
                if waiting != g.reason:
                    out.reason(waiting)
                return g.said(waiting)
            why = s.peer_state.dead_reason
            if (beat is not None and beat.status is not NodeStatus.LEAVING
                    and not beat.watchdog_timeout):
                why += (f"; {s.peer} had no armed watchdog: if it is hung rather than dead it "
                        "still holds what it ran")
            elif reset_by is not None:
                why += (f"; its watchdog (armed for {beat.watchdog_timeout:g} s) must have "
                        "reset it by now" if beat is not None else "")
            return start(s, g, out, f"taking over group {g.name}: {why}",
                         check_duplicates=beat is None)
        return g
    # Peer alive: negotiate.
    owner, why = desired_owner(s, g, now)
    view = peer_view(s, g.name) or _NO_VIEW
    if owner == s.me:
        if g.activity is not Activity.IDLE:
            return g
        if (
            g.nego is Nego.WANT
            and view.activity is Activity.IDLE
            and view.nego is Nego.GRANT
            and view.epoch == g.epoch
        ):
            return start(s, g, out,
                         f"acquiring group {g.name}: {s.peer} released it to us ({why})",
                         check_duplicates=True)
        if g.nego is not Nego.WANT:
            counter = g.want_counter + 1
            g = evolve(g, want_counter=counter, nego=Nego.WANT,
                       epoch=(s.generation << 20) | (counter & 0xFFFFF),
                       reason=f"asking {s.peer} for group {g.name}: {why}")
            out.reason(g.reason)
        return g
    # The peer (or nobody) should own it.
    if g.activity is not Activity.IDLE:
        return ensure_stopped(
            g, out, f"releasing it to {owner}: {why}" if owner else f"stopping it: {why}"
        )
    if owner == s.peer:
        g = _maybe_grant(s, g, out, owner)
        if g.nego is Nego.NONE and view.activity.holds:
            g = g.said(f"group {g.name} runs on {s.peer}: {why}")
        return g
    if g.nego is not Nego.NONE:
        g = evolve(g, nego=Nego.NONE)
    return g.said(f"group {g.name} is stopped: {why}")


def _maybe_grant(s: CoreState, g: GroupState, out: Out, owner: str) -> GroupState:
    view = peer_view(s, g.name) or _NO_VIEW
    if view.nego is Nego.WANT:
        if g.nego is not Nego.GRANT or g.epoch != view.epoch:
            g = evolve(g, nego=Nego.GRANT, epoch=view.epoch,
                       reason=f"granting group {g.name} to {owner}")
            out.reason(g.reason)
        return g
    return g if g.nego is Nego.NONE else evolve(g, nego=Nego.NONE)
