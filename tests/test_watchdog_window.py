"""The watchdog window (supervisor.core.watchdog_window): a survivor acquires a silent peer's
groups only once the peer's watchdog must have reset it. The arithmetic, the wire field, and
the simulator with hung (frozen) owners whose simulated watchdog resets them."""

from __future__ import annotations

import pytest

from supervisor.core import codec
from supervisor.core.watchdog_window import acquire_delay, margin, window_text
from tests.sim import KEY, Sim, make_config


@pytest.mark.parametrize(("deadtime", "keepalive", "timeout", "expected"), [
    (2.0, 0.2, 1.0, 2.0),      # the wizard's settings: 1 + 0.2 + 0.25 = 1.45 < 2: no cost
    (5.0, 1.0, 2.0, 5.0),      # the table's defaults: 2 + 1 + 0.25 = 3.25 < 5
    (2.0, 0.2, 10.0, 11.2),    # the old default 10 s: 10 + 0.2 + 1.0
    (0.5, 0.1, 1.0, 1.35),     # deadtime below any watchdog: 1 + 0.1 + 0.25
    (2.0, 0.2, None, 2.0),     # no armed watchdog: nothing to wait for
])
def test_acquire_delay(deadtime, keepalive, timeout, expected):
    assert acquire_delay(deadtime, keepalive, timeout) == pytest.approx(expected)


def test_margin_grows_with_long_timeouts():
    assert margin(1.0, 0.2) == pytest.approx(0.45)
    assert margin(30.0, 0.2) == pytest.approx(3.2)


def test_window_sentences():
    assert "at no cost" in window_text(1.0, 2.0, 0.2)
    assert "waits 11.20 s after the last beat instead of 2 s" in window_text(10.0, 2.0, 0.2)
    assert "a double owner until it is reset by hand" in window_text(None, 2.0, 0.2)


def test_wt_on_the_wire():
    beat = codec.Beat("c", "node1", 3, 7, watchdog_timeout=1.0)
    line = codec.encode(beat, KEY)
    assert codec.decode(line, KEY, "c").watchdog_timeout == 1.0
    none = codec.decode(codec.encode(codec.Beat("c", "node1", 3, 8), KEY), KEY, "c")
    assert none.watchdog_timeout is None


@pytest.mark.parametrize("bad", [-1, "1000", 1.5, True, 10**12])
def test_wt_must_be_whole_milliseconds_in_range(bad):
    import base64
    import json

    body = {"v": 1, "c": "c", "n": "node1", "g": 1, "s": 1, "wt": bad}
    raw = json.dumps(body).encode()
    line = codec.MAGIC + base64.b64encode(raw + codec._mac(KEY, raw)) + b"\n"
    with pytest.raises(codec.DecodeError, match="malformed"):
        codec.decode(line, KEY, "c")


def formed(**kw) -> Sim:
    sim = Sim(make_config(watchdog="automatic", **kw))
    sim.run(3.0)
    assert sim.owner() == "node1"
    return sim


def double_owner_samples(sim: Sim, seconds: float, step: float = 0.01) -> int:
    """Run for ``seconds``, counting instants when both nodes (frozen or not) hold the group."""
    count = 0
    for _ in range(round(seconds / step)):
        sim.run(step)
        holders = [n for n in sim.nodes.values() if n.alive and n.holds("web")]
        count += len(holders) > 1
    return count


def test_hung_owner_is_reset_before_the_peer_acquires():
    # deadtime 0.5 s, watchdog 1 s: node2 waits 1 + 0.1 + 0.25 s after node1's last beat
    sim = formed(watchdog_timeout="1s")
    sim.check_invariant = False  # a frozen holder is not a violation by itself: counted below
    t0 = sim.now
    sim.freeze("node1")
    assert double_owner_samples(sim, 3.0) == 0
    assert sim.nodes["node1"].reboots == ["watchdog reset (simulated)"]
    assert sim.owner() == "node2"
    took = [t for t, r in sim.nodes["node2"].reasons if r.startswith("taking over group web")]
    # the last beat came at most one keepalive before the freeze
    assert took and 1.35 - 0.1 - 1e-6 <= took[0] - t0 <= 1.35 + 1e-6
    waits = [r for _t, r in sim.nodes["node2"].reasons if "may be hung rather than dead" in r]
    assert waits and "armed for 1 s" in waits[0] and "1.35 s after its last beat" in waits[0]
    assert "must have reset it by now" in next(
        r for _t, r in sim.nodes["node2"].reasons if r.startswith("taking over group web"))


def test_a_watchdog_within_deadtime_costs_nothing():
    sim = formed(watchdog_timeout="1s", deadtime="2s", warntime="1s", initdead="4s")
    sim.check_invariant = False
    t0 = sim.now
    sim.freeze("node1")
    assert double_owner_samples(sim, 3.0) == 0  # reset at 1 s, takeover after 2 s
    took = [t for t, r in sim.nodes["node2"].reasons if r.startswith("taking over group web")]
    assert took and 2.0 - 0.1 - 1e-6 <= took[0] - t0 <= 2.0 + 1e-6
    assert not any("may be hung" in r for _t, r in sim.nodes["node2"].reasons)


def test_without_the_wait_a_hung_owner_would_be_a_double_owner():
    """The same freeze against a peer that publishes no armed watchdog (mode off): the
    survivor takes over after deadtime and says that the peer may still hold what it ran;
    the frozen node keeps its resources (never reset): the window this rule closes."""
    sim = Sim(make_config(watchdog="off"))
    sim.run(3.0)
    sim.check_invariant = False
    sim.freeze("node1")
    assert double_owner_samples(sim, 2.0) > 0
    took = next(r for _t, r in sim.nodes["node2"].reasons
                if r.startswith("taking over group web"))
    assert "node1 had no armed watchdog: if it is hung rather than dead it still holds" in took


def test_a_clean_leave_is_not_waited_for():
    sim = formed(watchdog_timeout="5s")
    t0 = sim.now
    sim.shutdown("node1")
    sim.run(0.5)
    assert sim.owner() == "node2" and sim.now - t0 < 1.0
    assert sim.violations == []


def test_power_loss_with_a_long_watchdog_waits_the_window():
    # a dead node cannot be told from a hung one: the wait applies to both
    sim = formed(watchdog_timeout="3s")
    t0 = sim.now
    sim.kill("node1")
    sim.run(3.0)
    assert sim.owner() is None
    sim.run(1.0)
    assert sim.owner() == "node2"
    took = [t for t, r in sim.nodes["node2"].reasons if r.startswith("taking over group web")]
    assert took and took[0] - t0 >= 3.0 + 0.1 + 0.3 - 0.1 - 1e-6


def test_status_shows_the_peer_watchdog_and_the_wait():
    sim = formed(watchdog_timeout="1s")
    st = sim.status("node2")
    assert st["peer"]["watchdog_timeout"] == 1.0
    assert st["watchdog"]["armed_timeout"] == 1.0
    assert "exceeds deadtime 0.5 s: a takeover waits 1.35 s" in st["peer"]["takeover_wait"]
    sim.check_invariant = False
    sim.freeze("node1")
    sim.run(0.8)
    assert "may be hung rather than dead" in sim.status("node2")["groups"][0]["reason"]


def test_startup_timeout_is_long_only_when_nothing_can_be_held():
    from supervisor.core.watchdog_window import STARTUP_TIMEOUT, startup_timeout

    for previous in ("clean", "reset", "watchdog"):
        timeout, why = startup_timeout(3.0, previous)
        assert timeout == STARTUP_TIMEOUT == 30.0
        assert "then the configured 3 s" in why and previous in why
    timeout, why = startup_timeout(3.0, "crashed")
    assert timeout == 3.0 and "may have left resources running" in why
    # a configured timeout at least as long as the startup one is used as it is
    assert startup_timeout(45.0, "clean") == (45.0, "armed with the configured 45 s")
