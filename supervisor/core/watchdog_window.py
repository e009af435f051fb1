"""The watchdog window: a silent peer may be hung, not dead (pure).

A node whose supervisor hangs keeps its floating address, mounts and services until its
watchdog resets it; a survivor that acquired them sooner would run them too (a double owner,
and on a replicated disk two writers). So a survivor acquires only once the silent node's
watchdog *must* have fired. Each node publishes the timeout its watchdog is armed with
(``wt`` in its beats; none when it has no armed watchdog). The hung node fed its watchdog at
most one keepalive after its last beat (the loop feeds after every step and beats every
keepalive), so it is reset at the latest ``timeout + keepalive`` after that beat; a margin
covers the device's own slack (an i6300ESB set to 5 s resets ~5.1 s after the last feed) and
clock granularity. The survivor therefore waits::

    max(deadtime, timeout + keepalive + max(0.25 s, timeout / 10))

after the last beat it heard. A watchdog timeout well below deadtime would cost no time at
all, but a loop that stalls past it (a slow or loaded machine) resets a healthy node; the
default (1.5 x deadtime, at least 2 s: supervisor.settings) costs a little time instead. A peer that
left cleanly (it stopped its groups first) or was never heard is not waited for; a peer that
published no armed watchdog cannot be waited for (it may hang for ever): the survivor takes
over after deadtime and says so.

**At start** a node whose supervisor did not die on this boot holds nothing: no address, no
mount, no replica role survive a reboot, and a clean stop released them. A reset then would
fence nothing, while a slow boot (a 1-vCPU guest loading its last modules, a login, the
supervisor's own clean-up of what a previous run left) can stall the loop past a timeout of a
few seconds: a healthy node reset for nothing, again and again. So such a start arms the
device with :data:`STARTUP_TIMEOUT` and the supervisor shortens it to the configured timeout
before the node starts its first resource (:func:`startup_timeout`). That is safe because the
peer waits for the timeout a node *publishes*: the long one while it is published, the short
one once a beat carries it. A supervisor that died on this boot (``crashed``) may have left
what it held running: its successor arms the configured timeout at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.core.states import NodeStatus, PeerStatus

if TYPE_CHECKING:
    from supervisor.core.state import CoreState

MARGIN_MIN = 0.25
MARGIN_FRACTION = 0.1
#: seconds the watchdog is armed with from a start that holds nothing until the first resource
STARTUP_TIMEOUT = 30.0


def startup_timeout(configured: float, previous: str) -> tuple[float, str]:
    """The timeout to arm at start, and why; ``previous`` is how the last run ended
    (NodeStarted.previous: clean, crashed, reset, watchdog)."""
    if previous == "crashed":
        return configured, (f"the previous supervisor died on this boot and may have left "
                            f"resources running: armed with the configured {configured:g} s "
                            "at once")
    if configured >= STARTUP_TIMEOUT:
        return configured, f"armed with the configured {configured:g} s"
    return STARTUP_TIMEOUT, (f"nothing is held after a {previous} start: {STARTUP_TIMEOUT:g} s "
                             f"until this node starts its first resource, then the configured "
                             f"{configured:g} s")


def margin(timeout: float, keepalive: float) -> float:
    """Seconds added to a watchdog timeout: the last feed may follow the last beat by one
    keepalive, and the device has its own slack."""
    return keepalive + max(MARGIN_MIN, MARGIN_FRACTION * timeout)


def acquire_delay(deadtime: float, keepalive: float, peer_timeout: float | None) -> float:
    """Seconds after the peer's last beat before a survivor may acquire its groups."""
    if not peer_timeout:
        return deadtime
    return max(deadtime, peer_timeout + margin(peer_timeout, keepalive))


def hung_peer_reset_by(s: CoreState) -> float | None:
    """When a silent peer's watchdog must have reset it (monotonic time), if that is later
    than its declaration as dead; None when there is nothing to wait for."""
    p = s.peer_state
    beat = p.beat
    if p.status is not PeerStatus.DEAD or beat is None or p.last_heard is None:
        return None
    if beat.status is NodeStatus.LEAVING or not beat.watchdog_timeout:
        return None
    t = s.config.timing
    at = p.last_heard + acquire_delay(t.deadtime, t.keepalive, beat.watchdog_timeout)
    return at if at > p.last_heard + t.deadtime else None


def window_text(timeout: float | None, deadtime: float, keepalive: float) -> str:
    """One sentence on what a takeover waits for with these settings (status, check-config)."""
    if not timeout:
        return ("no watchdog is armed: a hung node keeps its resources while its peer takes "
                "them over after deadtime (a double owner until it is reset by hand)")
    delay = acquire_delay(deadtime, keepalive, timeout)
    if delay <= deadtime:
        return (f"watchdog timeout {timeout:g} s + margin {margin(timeout, keepalive):.2f} s is "
                f"within deadtime {deadtime:g} s: a hung node is reset before its peer takes "
                "over, at no cost")
    return (f"watchdog timeout {timeout:g} s + margin {margin(timeout, keepalive):.2f} s exceeds "
            f"deadtime {deadtime:g} s: a takeover waits {delay:.2f} s after the last beat "
            f"instead of {deadtime:g} s, so that a hung owner is reset first")
