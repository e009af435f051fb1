"""The resource plan of each group: ordered start, reverse stop, monitors, restarts, failures.

A group's resources start left to right and stop right to left, one operation at a time
(``GroupState.plan``; the one in flight is ``inflight``, answered by a ResourceResult with its
``op_id``). A start that fails stops what was started and fails the group here; a monitor
that finds a resource dead restarts it and everything after it, up to ``max_restarts`` within
``restart_window``, then gives the group up; a stop that fails blocks the group (or reboots
the node, ``on_stop_failure = "reboot"``). A failed group is not eligible here for
``failure_timeout`` (or until ``twinbeat cleanup``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from supervisor.core.actions import CheckResource, Log, Reboot, StartResource, StopResource
from supervisor.core.events import ResourceResult
from supervisor.core.notify import Kind
from supervisor.core.state import (
    EPS,
    CoreState,
    GroupState,
    Op,
    Out,
    beat_opens,
    evolve,
    fmt,
    stops,
)
from supervisor.core.states import Activity, Nego, PeerStatus
from supervisor.resource_spec import DrbdSpec
from supervisor.settings import (
    GROUP_RESTART_WINDOW,
    GROUP_START_TIMEOUT,
    GROUP_STATUS_TIMEOUT,
    GROUP_STOP_TIMEOUT,
)

if TYPE_CHECKING:
    from supervisor.config import Group


def next_monitor(cfg: Group | None, now: float) -> float | None:
    return now + cfg.monitor_interval if cfg is not None and cfg.monitor_interval else None


def on_result(s: CoreState, r: ResourceResult, now: float, out: Out) -> CoreState:
    g = s.groups.get(r.group)
    if g is None or g.inflight is None or r.op_id != g.inflight_id:
        out.actions.append(Log("warning", f"ignoring a stale result for group {r.group}"))
        return s
    return s.with_group(_result(s, g, r, now, out))


def _result(s: CoreState, g: GroupState, r: ResourceResult, now: float,
            out: Out) -> GroupState:
    op = g.inflight
    assert op is not None
    g = evolve(g, inflight=None)
    what = g.specs[op.index].describe()
    cfg = s.group_cfg(g.name)
    if op.kind == "start":
        if r.ok:
            g = evolve(g, up=max(g.up, op.index + 1))
            if not g.plan:
                if g.activity is Activity.STARTING:
                    g = g.to(Activity.RUNNING, reason=f"group {g.name} is running on {s.me}")
                    out.reason(g.reason)
                    out.event(Kind.GROUP_STARTED, g.reason, group=g.name)
                else:
                    out.reason(f"group {g.name}: {what} restarted")
                g = evolve(g, next_monitor=next_monitor(cfg, now))
            return g
        reason = f"starting {what} in group {g.name} failed: {r.detail or 'error'}"
        out.warn(reason + "; stopping what was started")
        out.event(Kind.RELEASE, reason + "; stopping what was started", group=g.name)
        return g.to(Activity.STOPPING, reason=reason,
                    plan=tuple(Op("stop", i) for i in range(op.index, -1, -1)),
                    purpose="failover", fail_after_stop=f"{what} failed to start")
    if op.kind == "stop":
        if r.ok:
            g = evolve(g, up=min(g.up, op.index))
            if not g.plan and g.activity is Activity.STOPPING:
                g = stopped(s, g, now, out)
            return g
        detail = r.detail or "error"
        if g.activity is not Activity.STOPPING:  # a restart's stop: the group is stopping now
            g = g.to(Activity.STOPPING)
        if g.purpose == "cleanup" or cfg is None or cfg.on_stop_failure == "block":
            blocked = (
                f"stopping {what} failed ({detail}); group {g.name} is blocked on {s.me}: "
                f"fix it, then run `twinbeat cleanup {g.name}`"
            )
            out.error(blocked)
            out.event(Kind.GROUP_FAILED, blocked, group=g.name)
            return g.to(Activity.STOP_FAILED, plan=(), blocked_reason=blocked, reason=blocked)
        reason = (
            f"stopping {what} failed ({detail}): rebooting {s.me} so that "
            f"{s.peer} can take group {g.name} over"
        )
        out.error(reason)
        out.event(Kind.GROUP_FAILED, reason, group=g.name)
        out.actions.append(Reboot(reason))
        return g.to(Activity.STOP_FAILED, plan=(), reason=reason)
    # check
    if s.in_maintenance(s.me):  # not monitored: a check that was running when it began
        return evolve(g, plan=())
    if r.ok and r.running:
        if not g.plan:
            g = evolve(g, next_monitor=next_monitor(cfg, now))
        return g
    g = evolve(g, plan=())
    if g.activity is not Activity.RUNNING:
        return g
    n = len(g.specs)
    window = cfg.restart_window if cfg else GROUP_RESTART_WINDOW
    failures = (*(t for t in g.failures if now - t < window), now)
    max_restarts = cfg.max_restarts if cfg else 0
    detail = r.detail or "not running"
    if len(failures) > max_restarts:
        reason = (
            f"{what} in group {g.name} failed ({detail}) {len(failures)} times within "
            f"{fmt(window)}: giving the group up"
        )
        out.warn(reason)
        out.event(Kind.RELEASE, reason, group=g.name)
        g = g.to(Activity.STOPPING, failures=failures, reason=reason, plan=stops(g.up),
                 purpose="failover", fail_after_stop=f"{what} kept failing")
        if not g.plan:
            g = stopped(s, g, now, out)
        return g
    reason = (
        f"{what} in group {g.name} is not running ({detail}): restarting it "
        f"({len(failures)} of {max_restarts} restarts)"
    )
    out.warn(reason)
    plan = (*(Op("stop", i) for i in reversed(range(op.index, n))),
            *(Op("start", i) for i in range(op.index, n)))
    return evolve(g, failures=failures, reason=reason, purpose="restart", plan=plan)


def stopped(s: CoreState, g: GroupState, now: float, out: Out) -> GroupState:
    """The last stop of the group's plan succeeded: it is IDLE here."""
    cfg = s.group_cfg(g.name)
    g = g.to(Activity.IDLE, up=0, next_monitor=None)
    if g.fail_after_stop:
        timeout = cfg.failure_timeout if cfg else 0.0
        until = f"for {fmt(timeout)}" if timeout > 0 else "until `twinbeat cleanup`"
        failed = g.fail_after_stop
        g = evolve(g, failed_until=now + timeout if timeout > 0 else math.inf,
                   failed_reason=failed, fail_after_stop="",
                   reason=f"group {g.name} failed on {s.me} ({failed}); not eligible {until}")
        out.event(Kind.GROUP_FAILED, g.reason, group=g.name)
    elif g.purpose == "cleanup":
        g = evolve(g, reason=f"group {g.name}: nothing left running from before")
    else:
        g = evolve(g, reason=f"group {g.name} stopped on {s.me}")
        out.event(Kind.GROUP_STOPPED, g.reason, group=g.name)
    out.reason(g.reason)
    if cfg is not None and cfg.resources != g.specs:
        g = evolve(g, specs=cfg.resources)
    return g


def start(s: CoreState, g: GroupState, out: Out, reason: str, *,
          check_duplicates: bool) -> GroupState:
    """Start the group here. With the peer dead after it was heard, that is a failover;
    otherwise a takeover (a handover agreed with the peer, or a start alone at boot)."""
    out.reason(reason)
    failover = s.peer_status is PeerStatus.DEAD and s.peer_state.beat is not None
    out.event(Kind.FAILOVER if failover else Kind.TAKEOVER, reason, group=g.name)
    g = g.to(Activity.STARTING, purpose="start", up=0, reason=reason,
             check_duplicates=check_duplicates and s.config.takeover.dad,
             plan=tuple(Op("start", i) for i in range(len(g.specs))))
    g = g if g.nego is Nego.NONE else evolve(g, nego=Nego.NONE)
    if not g.plan:
        g = g.to(Activity.RUNNING)
    return g


def ensure_stopped(g: GroupState, out: Out, why: str) -> GroupState:
    if g.activity not in (Activity.STARTING, Activity.RUNNING):
        return g
    reason = f"group {g.name}: {why}"
    out.reason(reason)
    out.event(Kind.RELEASE, reason, group=g.name)
    g = g.to(Activity.STOPPING, nego=Nego.NONE, purpose="release", plan=stops(g.up),
             reason=reason)
    if not g.plan:
        g = g.to(Activity.IDLE)
    return g


def expire_failures(s: CoreState, g: GroupState, now: float, out: Out) -> GroupState:
    if g.failed_until is None or now < g.failed_until - EPS:
        return g
    reason = f"failure of group {g.name} on {s.me} expired; eligible again"
    out.reason(reason)
    out.event(Kind.GROUP_RECOVERED, reason, group=g.name)
    return evolve(g, failed_until=None, failed_reason="", failures=(), reason=reason)


def monitor_at(s: CoreState, g: GroupState) -> float | None:
    """When the group's next monitor runs: when it is due, or with the beat that goes out
    at or after that (from ``beat_opens``), so that it costs no wake-up of its own; at most
    a keepalive after it was due."""
    if g.next_monitor is None:
        return None
    return max(g.next_monitor, beat_opens(s))


def monitor_due(s: CoreState, g: GroupState, now: float) -> bool:
    """Whether ``g``'s check is due at ``now``: running, nothing in flight nor planned, and
    its monitor's time has come (``monitor_at``)."""
    at = monitor_at(s, g)
    return (g.activity is Activity.RUNNING and g.inflight is None and not g.plan
            and at is not None and now >= at - EPS)


def schedule_monitor(s: CoreState, g: GroupState, now: float) -> GroupState:
    """``g`` with its check planned if it is due (``monitor_due``), else as it is."""
    if monitor_due(s, g, now):
        return evolve(g, purpose="monitor",
                      plan=tuple(Op("check", i) for i in range(len(g.specs))))
    return g


def advance(s: CoreState, g: GroupState, now: float, out: Out) -> CoreState:
    """Issue the next operation of the group's plan if none is in flight. A drbddisk start
    is forced when an administrator's `takeover --force-data` is armed for it."""
    if g.inflight is not None or not g.plan:
        return s.with_group(g)
    op, plan = g.plan[0], g.plan[1:]
    spec = g.specs[op.index]
    force_data = False
    if op.kind == "start" and isinstance(spec, DrbdSpec) and s.force_data:
        s, force_data = use_force(s, g.name, spec.resource, now)
    cfg = s.group_cfg(g.name)
    op_id = s.op_counter + 1
    g = evolve(g, plan=plan, inflight=op, inflight_id=op_id)
    if op.kind == "start":
        out.actions.append(
            StartResource(
                g.name,
                op.index,
                spec,
                op_id,
                cfg.start_timeout if cfg else GROUP_START_TIMEOUT,
                check_duplicates=g.check_duplicates,
                force_data=force_data,
            )
        )
    elif op.kind == "stop":
        out.actions.append(
            StopResource(g.name, op.index, spec, op_id,
                         cfg.stop_timeout if cfg else GROUP_STOP_TIMEOUT)
        )
    else:
        out.actions.append(
            CheckResource(g.name, op.index, spec, op_id,
                          cfg.status_timeout if cfg else GROUP_STATUS_TIMEOUT)
        )
    return evolve(s, op_counter=op_id, groups={**s.groups, g.name: g})


def use_force(s: CoreState, group: str, resource: str, now: float) -> tuple[CoreState, bool]:
    """Whether this start of ``resource`` in ``group`` is forced (and use the force up)."""
    armed = s.force_data.get(group)
    if armed is None or resource not in armed.resources or now >= armed.deadline - EPS:
        return s, False
    left = armed.resources - {resource}
    force = dict(s.force_data)
    if left:
        force[group] = evolve(armed, resources=left)
    else:
        del force[group]
    return evolve(s, force_data=force), True


def cleanup(g: GroupState, out: Out) -> GroupState:
    """``twinbeat cleanup``: forget the failures; a blocked group tries its stop again."""
    failed = g.failed_until is not None or g.activity is Activity.STOP_FAILED
    g = evolve(g, failures=(), failed_until=None, failed_reason="")
    if g.activity is Activity.STOP_FAILED:
        g = g.to(Activity.STOPPING, purpose="cleanup", blocked_reason="",
                 plan=stops(len(g.specs)), up=len(g.specs))
    reason = f"cleanup of group {g.name}: failures forgotten"
    out.reason(reason)
    if failed:
        out.event(Kind.GROUP_RECOVERED, reason, group=g.name)
    return evolve(g, reason=reason)
