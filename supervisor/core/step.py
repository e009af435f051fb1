"""The decision core's entry point: ``step(state, event, now) -> Step(state, actions, reasons)``.

Pure code: no clock, no sockets, no files, no subprocesses. ``now`` (monotonic seconds) is
passed in with every event; ``next_deadline(state, now)`` tells the loop when to call again
with a ``Tick`` if nothing else happens. Every decision comes with a sentence in
``Step.reasons`` ("taking over group web: peer node2 silent on all links for 2.0 s"), which the
loop logs (at warning level when the step also carries a ``Log`` action with that sentence)
and the tests assert. ``step`` never changes the state it is given (``supervisor.core.state``).

This module only dispatches; the concerns live beside it:

    intake.py     a received frame: decode, authenticate, drop or accept
    liveness.py   links, the peer, the outside world
    ownership.py  who should own each group; the WANT/GRANT handover
    plan.py       each group's ordered start / reverse stop, monitors, restarts, failures
    deadlines.py  when the state may change without an event (``next_deadline``)
    admin.py      standby / takeover [--force-data] / cleanup / resolve-split-brain
    fencing.py    DRBD's outdate-peer over the heartbeat links
    publish.py    what a beat says and when one is sent
    view.py       the status as a typed value
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from supervisor.core import admin, codec, fencing, liveness
from supervisor.core.actions import Action
from supervisor.core.deadlines import (
    carry,
    next_deadline,
    node_deadlines,
    other_deadline_by,
)
from supervisor.core.events import (
    AdminCommand,
    ConfigChanged,
    ConfigRejected,
    DrbdadmDone,
    Event,
    FenceRequested,
    FrameReceived,
    FramesReceived,
    LinkCarrier,
    NodeStarted,
    OutdateResult,
    PingReply,
    PublicCarrier,
    ReplicaChanged,
    ResourceResult,
    ShutdownRequested,
    Tick,
    WatchdogState,
)
from supervisor.core.intake import decode_frame, on_copies, on_frame
from supervisor.core.notify import Kind, Severity, replica_changes
from supervisor.core.ownership import decide_group
from supervisor.core.plan import (
    advance,
    expire_failures,
    monitor_at,
    monitor_due,
    on_result,
    schedule_monitor,
)
from supervisor.core.publish import beat_due, publish
from supervisor.core.replica import Replica
from supervisor.core.state import (
    EPS,
    CoreState,
    GroupState,
    LinkState,
    Out,
    Settings,
    drbd_resources,
    evolve,
    initial_state,
)
from supervisor.core.states import Activity, LinkStatus, Nego, NodeStatus, PeerStatus

if TYPE_CHECKING:
    from supervisor.config import Config

__all__ = ["Step", "initial_state", "next_deadline", "step"]


@dataclass(frozen=True)
class Step:
    state: CoreState
    actions: list[Action]
    reasons: list[str]
    #: False for a step that took nothing new in (a shortcut: the peer's beat again, a tick
    #: for our beat alone): nothing a decision reads has changed (``quiet.busy`` answers as
    #: it did before it; a property test checks it)
    news: bool = True


def step(state: CoreState, event: Event, now: float) -> Step:
    if isinstance(event, FrameReceived | FramesReceived):
        again, decoded, due = _nothing_new(state, event, now)
        if again is not None:
            if due:  # monitors due with the frames: issued, as the full step would
                return _monitors_issued(again, due, now)
            if beat_due(again, now):  # our beat, due within EARLY: sent on this wake-up
                out = Out()
                # what it says is what the last one said: nothing it is made of changed
                again = publish(again, now, out, said=again.last_published)
                carry(state, again)
                return Step(again, out.actions, out.reasons, news=False)
            carry(state, again)
            return Step(again, [], [], news=False)
        if decoded is not None:  # the first frame, decoded by the shortcut: not twice
            return full_step(state, event, now, decoded=decoded)
    elif isinstance(event, Tick):
        beat = only_the_beat_due(state, now)
        if beat is not None:
            return beat
    elif isinstance(event, ResourceResult):
        answered = only_a_check_answered(state, event, now)
        if answered is not None:
            return answered
    return full_step(state, event, now)


def full_step(state: CoreState, event: Event, now: float, *,
              decoded: codec.Beat | codec.DecodeError | None = None) -> Step:
    """``step`` without its shortcuts (a beat heard again, a tick for the beat only; tests
    compare them with it)."""
    out = Out()
    if isinstance(event, AdminCommand):
        result = admin.on_admin(state, event, now, out)
        s = _evaluate(result.state, now, out)
        if not result.later:
            out.actions.append(admin.answer(event.request_id, result, out))
        return Step(s, out.actions, out.reasons)
    s = _handle(state, event, now, out, decoded)
    s = _evaluate(s, now, out)
    return Step(s, out.actions, out.reasons)


def same_beat_again(s: CoreState, event: FrameReceived | FramesReceived,
                    now: float) -> CoreState | None:
    """The state ``step`` takes ``event`` to by its shortcut, or None if it would step it
    the full way (the property tests compare the two)."""
    return _nothing_new(s, event, now)[0]


def _nothing_new(s: CoreState, event: FrameReceived | FramesReceived, now: float
                 ) -> tuple[CoreState | None, codec.Beat | codec.DecodeError | None,
                            tuple[str, ...]]:
    """The state after ``event`` when its frames all say nothing new: the peer's newest beat
    again, from other links that are up (one frame, or the frames of one wake-up), or first
    a next beat of the peer that says what its newest one said (only its sequence number and
    its echo differ), while the peer is alive and nothing but our own beat is due (every
    other deadline of ``next_deadline`` lies ahead, but the monitors of settled groups:
    ``_monitors_due``): the frames only refresh their links
    (heard, loss window, round-trip time) and the peer's beat and last heard time. No
    decision can follow from them: every decision is taken at a deadline or on news, and
    these frames are neither. So they are taken in without evaluating the whole state again
    (every beat of an idle peer, on each link); ``step`` then issues the monitors due (the
    third value: their groups) and sends our beat if it is due (``publish.beat_due``: within
    EARLY of the keepalive), as the full step would. None: step the event the full way (with
    what the first frame decoded to, if the shortcut decoded it)."""
    frames = (event,) if isinstance(event, FrameReceived) else event.frames
    p = s.peer_state
    if (p.status is not PeerStatus.ALIVE or p.beat is None or s.status is not NodeStatus.ACTIVE
            or s.shutting_down):
        return None, None, ()
    first = frames[0].data.strip()
    for frame in frames:
        ls = s.links.get(frame.link)
        if (ls is None or ls.status is not LinkStatus.UP
                or frame.data.strip() not in (p.frame, first)):
            return None, None, ()
    due: tuple[str, ...] = ()
    if other_deadline_by(s, now + EPS):
        found = _monitors_due(s, now)
        if found is None:
            return None, None, ()
        due = found
    decoded: codec.Beat | codec.DecodeError | None = None
    if first != p.frame:
        decoded = decode_frame(s, first)
        if not _same_news(s, p.beat, decoded):
            return None, decoded, ()
    out = Out()
    after = on_copies(s, frames, now, out, decoded=decoded)
    if after is None:  # not all copies of one beat, or one is dropped: one by one
        after = on_frame(s, frames[0].link, frames[0].data, now, out, decoded=decoded,
                         waited=frames[0].waited, arrived=frames[0].arrived)
        for frame in frames[1:]:
            after = on_frame(after, frame.link, frame.data, now, out, waited=frame.waited,
                             arrived=frame.arrived)
    if out.actions or out.reasons or after.peer_state.beat is not (decoded or p.beat):
        return None, decoded, ()
    return after, decoded, due


def _monitors_due(s: CoreState, now: float) -> tuple[str, ...] | None:
    """The groups whose monitor is due at ``now``, when their monitors are the only
    deadlines of ``next_deadline`` that have passed (the beat's aside) and each of those
    groups is settled (running, nothing in flight nor planned, not negotiating) on an active
    node that is not stopping nor in maintenance: then the full step would only issue their
    checks (``schedule_monitor``, ``advance``) and publish. None otherwise, or when no
    monitor is due (step the full way)."""
    if s.status is not NodeStatus.ACTIVE or s.shutting_down or s.in_maintenance(s.me):
        return None
    limit = now + EPS
    if min(node_deadlines(s), default=math.inf) <= limit:
        return None
    due = []
    for g in s.groups.values():
        if g.failed_until is not None and g.failed_until <= limit:
            return None
        at = monitor_at(s, g)
        if at is None or at > limit:
            continue
        if not monitor_due(s, g, now) or g.nego is not Nego.NONE or not _decided(s, g, now):
            return None
        due.append(g.name)
    return tuple(due) or None


def _decided(s: CoreState, g: GroupState, now: float) -> bool:
    """Whether deciding ``g`` now leaves it as it is. A decision waits while the group's
    operation is in flight (``decide_group``): news that came during a check (a changed
    configuration, the peer's wish) is decided by the first full step after it; a shortcut
    must not take that step's place."""
    out = Out()
    return decide_group(s, g, now, out) == g and not out.actions and not out.reasons


def _monitors_issued(s: CoreState, due: tuple[str, ...], now: float) -> Step:
    """The step that issues the checks of the groups ``due`` (``_monitors_due``) and
    publishes, as the full step does at their monitors' deadline (what the beat says is
    worked out again: a group's check is now in flight)."""
    out = Out()
    for name in due:
        s = advance(s, schedule_monitor(s, s.groups[name], now), now, out)
    s = publish(s, now, out)
    return Step(s, out.actions, out.reasons)


def _same_news(s: CoreState, newest: codec.Beat,
               decoded: codec.Beat | codec.DecodeError) -> bool:
    """Whether ``decoded`` is the peer's next beat (same generation, a later sequence
    number) and says what ``newest`` said (known without comparing field by field when the
    codec made it from ``newest``'s template: the same body around a new sequence number
    and echo)."""
    return (isinstance(decoded, codec.Beat) and decoded.sender == s.peer
            and decoded.generation == newest.generation and decoded.seq > newest.seq
            and ((decoded.template is not None and decoded.template is newest.template)
                 or replace(decoded, seq=newest.seq, echo=newest.echo) == newest))


def only_the_beat_due(s: CoreState, now: float) -> Step | None:
    """The step of a Tick at which the next beat is due and nothing else (every other
    deadline of ``next_deadline`` lies ahead), on an active node that is not stopping: the
    beat is sent, and nothing else can change: every decision is taken at a deadline or on
    news, and this tick carries neither. So the beat is published without evaluating the
    whole state first (the keepalive's own wake-up, at every keepalive). The monitors of
    settled groups due with it (``_monitors_due``) are issued first, as the full step would.
    None: step the tick the full way."""
    if not beat_due(s, now) or s.status is not NodeStatus.ACTIVE or s.shutting_down:
        return None
    if other_deadline_by(s, now + EPS):
        due = _monitors_due(s, now)  # monitors due with the beat: issued, then it goes out
        return None if due is None else _monitors_issued(s, due, now)
    out = Out()
    after = publish(s, now, out, said=s.last_published)  # nothing changed since it was said
    carry(s, after)
    return Step(after, out.actions, out.reasons, news=False)


def only_a_check_answered(s: CoreState, r: ResourceResult, now: float) -> Step | None:
    """The step of a monitor's answer that says the resource runs, for a settled group
    (running, not negotiating, its check in flight) on an active node that is not stopping
    nor in maintenance, with every deadline of ``next_deadline`` ahead: the check is done
    (the group's next check is issued, or its next monitor set), and our beat goes out if
    due. Nothing else can change: every other decision is taken at a deadline or on news,
    and a check that found its resource running is neither. So the rest of the state is not
    evaluated again (an owner's monitor answers every ``monitor_interval``). None: step the
    result the full way (also when a decision waited for the check to end: ``_decided``)."""
    g = s.groups.get(r.group)
    if (not (r.ok and r.running) or g is None or g.inflight is None
            or g.inflight.kind != "check" or r.op_id != g.inflight_id
            or g.activity is not Activity.RUNNING or g.nego is not Nego.NONE
            or s.status is not NodeStatus.ACTIVE or s.shutting_down
            or s.in_maintenance(s.me) or other_deadline_by(s, now + EPS)):
        return None
    out = Out()
    after = on_result(s, r, now, out)
    if not _decided(after, after.groups[r.group], now):  # news came during the check
        return None
    after = advance(after, after.groups[r.group], now, out)
    after = publish(after, now, out)
    return Step(after, out.actions, out.reasons)


def _handle(s: CoreState, event: Event, now: float, out: Out,
            decoded: codec.Beat | codec.DecodeError | None = None) -> CoreState:
    """``decoded``: what the first frame of a FrameReceived or FramesReceived decoded to."""
    match event:
        case FrameReceived(link=link, data=data, waited=waited, arrived=arrived):
            return on_frame(s, link, data, now, out, decoded=decoded, waited=waited,
                            arrived=arrived)
        case FramesReceived(frames=frames):
            s = on_frame(s, frames[0].link, frames[0].data, now, out, decoded=decoded,
                         waited=frames[0].waited, arrived=frames[0].arrived)
            for frame in frames[1:]:
                s = on_frame(s, frame.link, frame.data, now, out, waited=frame.waited,
                             arrived=frame.arrived)
            return s
        case Tick():
            return s
        case ResourceResult():
            return on_result(s, event, now, out)
        case LinkCarrier(link=link, up=up):
            return liveness.on_link_carrier(s, link, up, out)
        case PublicCarrier(up=up):
            return liveness.on_public_carrier(s, up, out)
        case PingReply():
            return liveness.on_ping_reply(s, now)
        case WatchdogState(ok=ok, reason=reason, armed=armed, timeout=timeout):
            return liveness.on_watchdog(s, ok, reason, out, armed=armed, timeout=timeout)
        case ShutdownRequested():
            if s.shutting_down:
                return s
            if s.in_maintenance(s.me):
                said = ("shutting down in maintenance mode: the groups are left as they are "
                        "(not stopped, not handed over)")
            else:
                said = "shutting down: stopping every group and handing it to the peer"
            out.reason(said)
            out.event(Kind.NODE_STOPPING, f"twinbeat is stopping on {s.me}: {said}")
            return evolve(s, shutting_down=True)
        case ConfigChanged(config=config, key=key):
            return _on_config(s, config, key, out)
        case ConfigRejected(path=path, problems=problems):
            shown = "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
            said = (f"configuration change in {path} rejected, the running configuration "
                    f"stays: {shown}")
            out.warn(said)
            out.event(Kind.CONFIG_REJECTED, said)
            return s
        case NodeStarted(previous=previous, detail=detail):
            return _on_started(s, previous, detail, out)
        case FenceRequested(resource=resource, request_id=request_id):
            return fencing.on_request(s, resource, request_id, now, out)
        case OutdateResult():
            return fencing.on_outdate_result(s, event, out)
        case ReplicaChanged(replica=replica):
            old = s.replicas.get(replica.name)
            if old == replica:
                return s
            if old is not None:
                for notice in replica_changes(old, replica):
                    out.reason(notice.reason)
                    out.event(notice.kind, notice.reason, resource=notice.resource)
            return evolve(s, replicas={**s.replicas, replica.name: replica})
        case DrbdadmDone():
            return admin.on_drbdadm_done(s, event, out)
    raise TypeError(f"not an event: {event!r}")


def _on_config(s: CoreState, config: Config, key: bytes | None, out: Out) -> CoreState:
    if s.me not in [n.name for n in config.nodes]:
        said = f"new configuration ignored: it does not list this node ({s.me})"
        out.warn(said)
        out.event(Kind.CONFIG_REJECTED, said)
        return s
    settings = Settings.make(config, s.me, s.settings.key if key is None else key,
                             s.settings.release)
    links = {link.name: s.links.get(link.name) or LinkState(link.name, link.type)
             for link in config.links}
    groups = dict(s.groups)
    for g in config.groups:
        if g.name not in groups:
            groups[g.name] = GroupState(g.name, g.resources, activity=Activity.IDLE,
                                        reason="new group")
            out.reason(f"configuration: new group {g.name}")
    names = {g.name for g in config.groups}
    for name, gs in s.groups.items():
        if name in names:
            continue
        if gs.activity is Activity.IDLE and gs.inflight is None:
            del groups[name]
            out.reason(f"configuration: group {name} removed")
        else:
            groups[name] = gs.said(f"configuration: group {name} removed; stopping it")
            out.reason(groups[name].reason)
    out.reason("configuration reloaded")
    out.event(Kind.CONFIG_RELOADED, f"configuration {config.path} reloaded")
    replicas = {name: s.replicas.get(name) or Replica(name) for name in drbd_resources(config)}
    # a new key or cluster name: the next frame is authenticated again, whatever its bytes
    peer_state = evolve(s.peer_state, frame=b"")
    return evolve(s, settings=settings, links=links, groups=groups, replicas=replicas,
                  peer_state=peer_state)


def _on_started(s: CoreState, previous: str, detail: str, out: Out) -> CoreState:
    """How the last run ended, as the edge found it at start."""
    if previous == "watchdog":
        said = (f"{s.me} was reset by its watchdog ({detail}) while twinbeat ran: the "
                "supervisor or the kernel hung")
        out.warn(said)
        out.event(Kind.BOOTED_AFTER_RESET, said)
    elif previous == "reset":
        said = (f"{s.me} restarted while twinbeat ran, without a clean shutdown (power loss, "
                "a kernel panic, or a reset)")
        out.warn(said)
        out.event(Kind.BOOTED_AFTER_RESET, said)
    elif previous == "crashed":
        said = "twinbeat started again after it stopped without a clean shutdown (crash or kill)"
        out.warn(said)
        out.event(Kind.NODE_STARTED, said, severity=Severity.WARNING)
    else:
        said = f"twinbeat started on {s.me} (generation {s.generation})"
        out.reason(said)
        out.event(Kind.NODE_STARTED, said)
    if s.in_maintenance(s.me):
        said = (f"{s.me} is in maintenance mode (kept across the restart): its groups are left "
                "as they are until `twinbeat maintenance off`")
        out.warn(said)
    return s


def _evaluate(s: CoreState, now: float, out: Out) -> CoreState:
    s = liveness.update_links(s, now, out)
    s = liveness.update_peer(s, now, out)
    s = liveness.update_world(s, now, out)
    s = fencing.update(s, now, out)
    s = admin.update(s, now, out)
    if s.force_data:
        s = admin.expire_force(s, now, out)
    frozen = s.in_maintenance(s.me)  # resources left as they are: no decision, no monitor
    for name in list(s.groups):
        g = s.groups[name]
        g = expire_failures(s, g, now, out)
        if frozen:
            s = s.with_group(g)
            continue
        g = decide_group(s, g, now, out)
        g = schedule_monitor(s, g, now)
        s = advance(s, g, now, out)
        g = s.groups[name]
        if g.activity is Activity.IDLE and g.inflight is None and s.group_cfg(name) is None:
            s = evolve(s, groups={n: x for n, x in s.groups.items() if n != name})
    s = _progress_shutdown(s, out)
    return publish(s, now, out)


def _progress_shutdown(s: CoreState, out: Out) -> CoreState:
    if not s.shutting_down or s.shutdown_done or s.status is NodeStatus.LEAVING:
        return s
    if s.in_maintenance(s.me):
        out.reason(f"telling {s.peer} that {s.me} is leaving (in maintenance: its groups are "
                   "left as they are)")
        return s.to(NodeStatus.LEAVING)
    for g in s.groups.values():
        if g.activity not in (Activity.IDLE, Activity.STOP_FAILED) or g.inflight is not None:
            return s
    out.reason(f"every group is stopped; telling {s.peer} that {s.me} is leaving")
    return s.to(NodeStatus.LEAVING)
