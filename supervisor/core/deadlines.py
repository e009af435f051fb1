"""When the core's state may change without an event (pure: no clock, no I/O).

``next_deadline(state, now)`` tells the loop when to call ``step`` with a Tick if nothing
else happens first; ``deadlines`` lists every such time (links and the peer falling silent,
the outside world, fencing and admin waits, a hung peer's reset, each group's monitor and
failure expiry, the next beat); the step's shortcuts ask ``other_deadlines`` (all but the
next beat's, memoised per state; the settled part of them carried over a shortcut's step,
``carry_settled``) whether one has passed.
"""

from __future__ import annotations

import math

from supervisor.core import admin, fencing, liveness
from supervisor.core.plan import monitor_at
from supervisor.core.state import EPS, CoreState
from supervisor.core.states import PeerStatus
from supervisor.core.watchdog_window import hung_peer_reset_by


def next_deadline(s: CoreState, now: float) -> float:
    """The next time the core must be called (with a Tick) if no event arrives first."""
    limit = now + EPS
    beat = s.next_beat
    if beat > limit:
        floor = _FLOOR.get(id(s))
        if floor is not None and floor[0] is s and floor[1] >= beat:
            return beat  # every other deadline lies at or after it (``carry_floor``)
    earliest, times = other_deadlines(s)
    if earliest > limit:  # none has passed (most often): the earliest of them is theirs
        future: tuple[float, ...] = (earliest,) if times else ()
    else:
        future = tuple(x for x in times if x > limit)
    if s.next_beat > limit:
        future += (s.next_beat,)
    return min(future) if future else now + s.config.timing.keepalive


#: the deadlines other than the next beat's of the last few states asked, by identity (with
#: the state itself, so that its id is not reused): the loop asks ``next_deadline`` of the
#: state a wake-up ends with, and the next wake-up's shortcut (``_nothing_new``,
#: ``only_the_beat_due``) asks the same state's again. A memo of a pure function of a frozen
#: state (as ``publish._CUTS``): the answers are the same either way.
_OTHER_DEADLINES: dict[int, tuple[CoreState, float, tuple[float, ...]]] = {}


def other_deadlines(s: CoreState) -> tuple[float, tuple[float, ...]]:
    """The earliest of ``deadlines(s, beat=False)`` (inf when none) and all of them (the
    settled ones from their memo: ``carry_settled``)."""
    memo = _OTHER_DEADLINES.get(id(s))
    if memo is not None and memo[0] is s:
        return memo[1], memo[2]
    times = [*liveness.deadlines(s), *_settled(s)]
    _add_group_deadlines(s, times)
    earliest, kept = min(times, default=math.inf), tuple(times)
    if len(_OTHER_DEADLINES) >= 4:
        _OTHER_DEADLINES.clear()
    _OTHER_DEADLINES[id(s)] = (s, earliest, kept)
    return earliest, kept


#: a lower bound of the earliest of ``other_deadlines`` of the last few states a shortcut's
#: step ended with, by identity (with the state itself, so that its id is not reused):
#: ``carry_floor``. A bound, not a memo: asked only whether they all lie after a time.
_FLOOR: dict[int, tuple[CoreState, float]] = {}


def other_deadline_by(s: CoreState, limit: float) -> bool:
    """Whether one of the deadlines other than the next beat's (``other_deadlines``) falls
    at or before ``limit`` (the step's shortcuts ask it of the state a wake-up starts from:
    when the floor that ``carry_floor`` left lies after ``limit``, none does, and they are
    not worked out)."""
    floor = _FLOOR.get(id(s))
    if floor is not None and floor[0] is s and floor[1] > limit:
        return False
    return other_deadlines(s)[0] <= limit


def carry_floor(before: CoreState, after: CoreState) -> None:
    """Give ``after``, the state a shortcut's step took ``before`` to (frames that only
    refresh the links and the peer's beat and last heard time, our beat sent; its settled
    deadlines carried: ``carry_settled`` said so), the earliest of ``before``'s other
    deadlines as a floor of its own: no deadline of theirs moved earlier in that step (a
    link's and the peer's last heard time never go back, the groups, the world and the
    settled deadlines are the same), so none of ``after``'s lies before it. An idle node's
    keepalive then works them out only when the floor is reached (the earliest is most
    often a link's warntime: every second keepalive in the idle benchmark, at keepalive
    100 ms and deadtime 500 ms), not on every wake-up. (The property test of
    ``next_deadline`` compares its answers with ``deadlines``, which never asks it.)"""
    memo = _OTHER_DEADLINES.get(id(before))
    if memo is not None and memo[0] is before:
        floor = memo[1]
    else:
        known = _FLOOR.get(id(before))
        if known is None or known[0] is not before:
            return
        floor = known[1]
    if len(_FLOOR) >= 4:
        _FLOOR.clear()
    _FLOOR[id(after)] = (after, floor)


#: the settled deadlines (``settled_deadlines``) of the last few states asked or carried, by
#: identity (with the state itself, so that its id is not reused). A memo of a pure function
#: of a frozen state, as ``_OTHER_DEADLINES``: the answers are the same either way (the
#: property test of ``next_deadline`` compares them with ``deadlines``, which never asks it).
_SETTLED: dict[int, tuple[CoreState, tuple[float, ...]]] = {}


def settled_deadlines(s: CoreState) -> tuple[float, ...]:
    """The deadlines of fencing, admin commands and a hung peer's reset: none of them moves
    when beats are heard or sent (the links' and the peer's liveness do, every keepalive)."""
    times = [*fencing.deadlines(s), *admin.deadlines(s)]
    reset_by = hung_peer_reset_by(s)
    if reset_by is not None:
        times.append(reset_by)
    return tuple(times)


def _settled(s: CoreState) -> tuple[float, ...]:
    memo = _SETTLED.get(id(s))
    if memo is not None and memo[0] is s:
        return memo[1]
    times = settled_deadlines(s)
    _remember_settled(s, times)
    return times


def _remember_settled(s: CoreState, times: tuple[float, ...]) -> None:
    if len(_SETTLED) >= 4:
        _SETTLED.clear()
    _SETTLED[id(s)] = (s, times)


def carry_settled(before: CoreState, after: CoreState) -> bool:
    """Give ``after`` the settled deadlines of ``before`` (known already) when nothing they
    are made of differs: the same fencing requests, admin commands and forced promotions
    (the very objects), and a live peer in both (no reset to wait for). So it holds after
    any step; ``step``'s shortcuts call it (frames that only refresh the links and the
    peer's beat and last heard time, our beat sent), and the idle node's keepalive then
    works out only the liveness and the groups' deadlines of its new state (the settled
    ones cost about 20 us of a cold keepalive step here). Whether it carried them."""
    memo = _SETTLED.get(id(before))
    if (memo is None or memo[0] is not before or after.fence is not before.fence
            or after.resolving is not before.resolving
            or after.force_data is not before.force_data
            or before.peer_state.status is not PeerStatus.ALIVE
            or after.peer_state.status is not PeerStatus.ALIVE):
        return False
    _remember_settled(after, memo[1])
    return True


def deadlines(s: CoreState, beat: bool = True) -> list[float]:
    """Every time at which the state may change without an event (some may have passed);
    without the next beat's if not ``beat``."""
    times = node_deadlines(s)
    if beat:
        times.append(s.next_beat)
    _add_group_deadlines(s, times)
    return times


def _add_group_deadlines(s: CoreState, times: list[float]) -> None:
    """Each group's next monitor and the end of its failure, added to ``times``."""
    for g in s.groups.values():
        at = monitor_at(s, g)
        if at is not None:
            times.append(at)
        if g.failed_until is not None and g.failed_until != math.inf:
            times.append(g.failed_until)


def node_deadlines(s: CoreState) -> list[float]:
    """The deadlines of ``deadlines`` other than the groups' and the next beat's (worked out
    afresh: no memo)."""
    return [*liveness.deadlines(s), *settled_deadlines(s)]
