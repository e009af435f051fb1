"""When the core's state may change without an event (pure: no clock, no I/O).

``next_deadline(state, now)`` tells the loop when to call ``step`` with a Tick if nothing
else happens first; ``deadlines`` lists every such time (links and the peer falling silent,
the outside world, fencing and admin waits, a hung peer's reset, each group's monitor and
failure expiry, the next beat); the step's shortcuts ask ``other_deadlines`` (all but the
next beat's, memoised per state; the settled part of them and a floor of the rest carried
over a shortcut's step, ``carry``) whether one has passed.
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
        known = _found(s)
        if known is not None and known.floor >= beat:
            return beat  # every other deadline lies at or after it (``carry``)
    earliest, times = other_deadlines(s)
    if earliest > limit:  # none has passed (most often): the earliest of them is theirs
        future: tuple[float, ...] = (earliest,) if times else ()
    else:
        future = tuple(x for x in times if x > limit)
    if s.next_beat > limit:
        future += (s.next_beat,)
    return min(future) if future else now + s.config.timing.keepalive


class Known:
    """What is known of one state's deadlines other than its next beat: pure functions of
    the frozen state, each worked out at most once (None until then), or carried from the
    state before by a shortcut's step (``carry``). ``floor``: a time none of them lies
    before (-inf when none is known)."""

    __slots__ = ("earliest", "floor", "settled", "state", "times")

    def __init__(self, state: CoreState) -> None:
        self.state = state  # (kept: its id is not reused while it is remembered)
        #: ``settled_deadlines``
        self.settled: tuple[float, ...] | None = None
        #: every deadline but the next beat's (``other_deadlines``), and the earliest
        self.times: tuple[float, ...] | None = None
        self.earliest = math.inf
        self.floor = -math.inf


#: what is known of the last few states asked or carried, by identity: the loop asks
#: ``next_deadline`` of the state a wake-up ends with, and the next wake-up's shortcut
#: (``_nothing_new``, ``only_the_beat_due``) asks the same state's again. A memo of pure
#: functions of a frozen state (as ``publish._CUTS``): the answers are the same either way
#: (the property test of ``next_deadline`` compares them with ``deadlines``, which never
#: asks it).
_KNOWN: dict[int, Known] = {}
_KEPT = 4


def _found(s: CoreState) -> Known | None:
    """What is known of ``s``, if it is remembered (not another state's under a reused id)."""
    known = _KNOWN.get(id(s))
    return known if known is not None and known.state is s else None


def _known(s: CoreState) -> Known:
    """What is known of ``s``, remembered from now on."""
    known = _found(s)
    if known is None:
        if len(_KNOWN) >= _KEPT:
            _KNOWN.clear()
        known = _KNOWN[id(s)] = Known(s)
    return known


def other_deadlines(s: CoreState) -> tuple[float, tuple[float, ...]]:
    """The earliest of ``deadlines(s, beat=False)`` (inf when none) and all of them (the
    settled ones as known: ``carry``)."""
    known = _known(s)
    if known.times is None:
        times = [*liveness.deadlines(s), *_settled(known)]
        _add_group_deadlines(s, times)
        known.earliest, known.times = min(times, default=math.inf), tuple(times)
    return known.earliest, known.times


def other_deadline_by(s: CoreState, limit: float) -> bool:
    """Whether one of the deadlines other than the next beat's (``other_deadlines``) falls
    at or before ``limit`` (the step's shortcuts ask it of the state a wake-up starts from:
    when the floor that ``carry`` left lies after ``limit``, none does, and they are not
    worked out)."""
    known = _found(s)
    if known is not None and known.floor > limit:
        return False
    return other_deadlines(s)[0] <= limit


def settled_deadlines(s: CoreState) -> tuple[float, ...]:
    """The deadlines of fencing, admin commands and a hung peer's reset: none of them moves
    when beats are heard or sent (the links' and the peer's liveness do, every keepalive)."""
    times = [*fencing.deadlines(s), *admin.deadlines(s)]
    reset_by = hung_peer_reset_by(s)
    if reset_by is not None:
        times.append(reset_by)
    return tuple(times)


def _settled(known: Known) -> tuple[float, ...]:
    if known.settled is None:
        known.settled = settled_deadlines(known.state)
    return known.settled


def carry(before: CoreState, after: CoreState) -> bool:
    """Give ``after``, the state a shortcut's step took ``before`` to (frames that only
    refresh the links and the peer's beat and last heard time, our beat sent), what is
    known of ``before``'s deadlines that still holds; whether it carried anything.

    The settled deadlines (known already), when nothing they are made of differs: the same
    fencing requests, admin commands and forced promotions (the very objects), and a live
    peer in both (no reset to wait for); they cost about 20 us of a cold keepalive step
    here. Then the earliest of ``before``'s other deadlines (or its own floor) as a floor:
    no deadline of theirs moved earlier in that step (a link's and the peer's last heard
    time never go back, the groups, the world and the settled deadlines are the same), so
    none of ``after``'s lies before it. An idle node's keepalive then works them out only
    when the floor is reached (the earliest is most often a link's warntime: every second
    keepalive in the idle benchmark, at keepalive 100 ms and deadtime 500 ms), not on every
    wake-up."""
    was = _found(before)
    if (was is None or was.settled is None
            or after.fence is not before.fence or after.resolving is not before.resolving
            or after.force_data is not before.force_data
            or before.peer_state.status is not PeerStatus.ALIVE
            or after.peer_state.status is not PeerStatus.ALIVE):
        return False
    known = _known(after)
    known.settled = was.settled
    known.floor = was.earliest if was.times is not None else was.floor
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
