"""When periodic loop work rides on a wake-up the loop has anyway (pure; no clock of its own).

The loop does a few things every so often besides stepping the core: it feeds the watchdog,
reads the carriers, ticks the history exchange. Each is done when it is due, or earlier on
the wake-up at hand (a beat's, a frame's) when the loop's next wake-up would come after it is
due and half its interval has passed: a little early rather than on a wake-up of its own. It
is never done later than due: the loop's timer is set for the earliest of them.
"""

from __future__ import annotations


def rides(last: float, every: float, now: float, next_wake: float) -> tuple[bool, str]:
    """Whether work done at ``last`` and due every ``every`` is done at ``now``, when the
    loop's next wake-up is at ``next_wake``; and why (or why not)."""
    due = last + every
    if now >= due:
        return True, "due"
    if next_wake > due and now - last >= every / 2:
        return True, "due before the next wake-up, half its interval passed: done early"
    if next_wake > due:
        return False, "due before the next wake-up, but less than half its interval passed"
    return False, "not due before the next wake-up"
