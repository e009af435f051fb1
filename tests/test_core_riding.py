"""The loop's periodic work rides on wake-ups it has anyway (supervisor.core.riding), on a
fake clock: done when due, early on the wake-up at hand only when the next wake-up comes after
it is due and half its interval has passed, never later than due."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.riding import rides


def test_due_work_is_done() -> None:
    assert rides(10.0, 1.0, 11.0, 11.1) == (True, "due")
    assert rides(10.0, 1.0, 12.5, 12.6)[0]


def test_work_due_before_the_next_wake_up_is_done_early_after_half_its_interval() -> None:
    done, why = rides(10.0, 1.0, 10.6, 11.2)
    assert done and "early" in why


def test_work_due_before_the_next_wake_up_waits_for_half_its_interval() -> None:
    done, why = rides(10.0, 1.0, 10.4, 11.2)
    assert not done and "less than half" in why


def test_work_not_due_before_the_next_wake_up_waits_for_it() -> None:
    done, why = rides(10.0, 1.0, 10.9, 10.95)
    assert not done and why == "not due before the next wake-up"


@given(last=st.floats(0, 1000), every=st.floats(0.05, 10), wakes=st.lists(
    st.floats(0.001, 5), min_size=1, max_size=60))
def test_a_loop_that_sets_its_timer_for_the_work_never_does_it_late(
        last: float, every: float, wakes: list[float]) -> None:
    """Wake-ups at the loop's other deadlines (``wakes``: the gaps between them), the timer
    also set for the work's due time as the loop sets it: the work is never done later than
    due, and never sooner than half its interval after the last time."""
    now = last
    for gap in wakes:
        other = now + gap
        next_wake = min(other, last + every)  # the loop's timer: the earliest of them
        now = next_wake
        following = now + gap
        done, _ = rides(last, every, now, min(following, now + every))
        if done:
            assert now - last >= every / 2 - 1e-9
            assert now <= last + every + 1e-9
            last = now
        else:
            assert now < last + every


def test_a_monitor_rides_on_a_beat_and_is_never_starved() -> None:
    """A group's monitor (every 1 s) starts with a beat, at the wake-up that sends it, not on
    a wake-up of its own (supervisor.core.plan ``monitor_at``): at most a keepalive after it
    was due, every round; on both the node whose beats go out on its timer and, after a
    standby, on the node that sends its beats with the peer's (state.EARLY)."""
    from supervisor.core.actions import CheckResource, SendFrame
    from tests.sim import Sim, make_config

    sim = Sim(make_config())
    sim.run(5.0)
    for owner in ("node1", "node2"):
        node = sim.nodes[owner]
        start = len(node.actions)
        sim.run(30.0)
        acts = node.actions[start:]
        beats = {t for t, a in acts if isinstance(a, SendFrame)}
        rounds = [t for t, a in acts if isinstance(a, CheckResource) and a.index == 0]
        assert 25 <= len(rounds) <= 31, (owner, len(rounds))
        assert all(t in beats for t in rounds), owner
        gaps = [b - a for a, b in itertools.pairwise(rounds)]
        # 1 s after the round's last check answered (three checks of 10 ms), then the beat
        assert all(1.0 <= g <= 1.0 + 0.03 + 0.1 + 1e-6 for g in gaps), (owner, gaps)
        if owner == "node1":
            sim.admin("node1", "standby")
            sim.run(3.0)
            assert sim.owner() == "node2"
