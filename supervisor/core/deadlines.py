"""When the core's state may change without an event (pure: no clock, no I/O).

``next_deadline(state, now)`` tells the loop when to call ``step`` with a Tick if nothing
else happens first; ``deadlines`` lists every such time (links and the peer falling silent,
the outside world, fencing and admin waits, a hung peer's reset, each group's monitor and
failure expiry, the next beat); the step's shortcuts ask ``other_deadlines`` (all but the
next beat's, memoised per state) whether one has passed.
"""

from __future__ import annotations

import math

from supervisor.core import admin, fencing, liveness
from supervisor.core.plan import monitor_at
from supervisor.core.state import EPS, CoreState
from supervisor.core.watchdog_window import hung_peer_reset_by


def next_deadline(s: CoreState, now: float) -> float:
    """The next time the core must be called (with a Tick) if no event arrives first."""
    limit = now + EPS
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
    """The earliest of ``deadlines(s, beat=False)`` (inf when none) and all of them."""
    memo = _OTHER_DEADLINES.get(id(s))
    if memo is not None and memo[0] is s:
        return memo[1], memo[2]
    times = tuple(deadlines(s, beat=False))
    earliest = min(times, default=math.inf)
    if len(_OTHER_DEADLINES) >= 4:
        _OTHER_DEADLINES.clear()
    _OTHER_DEADLINES[id(s)] = (s, earliest, times)
    return earliest, times


def deadlines(s: CoreState, beat: bool = True) -> list[float]:
    """Every time at which the state may change without an event (some may have passed);
    without the next beat's if not ``beat``."""
    times = node_deadlines(s)
    if beat:
        times.append(s.next_beat)
    for g in s.groups.values():
        at = monitor_at(s, g)
        if at is not None:
            times.append(at)
        if g.failed_until is not None and g.failed_until != math.inf:
            times.append(g.failed_until)
    return times


def node_deadlines(s: CoreState) -> list[float]:
    """The deadlines of ``deadlines`` other than the groups' and the next beat's."""
    times = [*liveness.deadlines(s), *fencing.deadlines(s), *admin.deadlines(s)]
    reset_by = hung_peer_reset_by(s)
    if reset_by is not None:
        times.append(reset_by)
    return times
