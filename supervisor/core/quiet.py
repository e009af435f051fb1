"""When the loop may read the links at this node's own wake-ups only (pure; no clock).

An idle pair exchanges beats and nothing else. Reading each frame the moment it arrives costs
a wake-up of the loop per arrival: on the node whose timer sends first, one for its beat and
one for the peer's answer, every keepalive. While nothing is in flight, a frame can wait in
its socket (or the serial port) until this node's next wake-up, which comes at its next beat,
at most a keepalive away: the loop then reads every link there, steps what it read and sends
its beat, one wake-up per keepalive ("quiet").

Quiet only while nothing waits for the peer and the wait is short:

- the keepalive is at most QUIET_KEEPALIVE (a frame waits at most that long), and warntime
  leaves room for a beat read up to two keepalives after the one before it (a peer's beat
  that arrives right after our wake-up is read at the next one): no LATE link from the
  reading alone;
- this node is active and not stopping, the peer alive with a beat heard, and every link up
  (a link that is late, down or gone is read at arrival: its frames, and a serial port's
  hang-up, are seen as they come);
- no group is starting, stopping or negotiating (a monitor's check may run: its answer is
  local), no fencing, no split-brain resolution, no forced promotion in flight.

Death is never detected later for it: the loop reads every link before it steps a deadline
(a wake-up of its own), so a deadline is taken on what the links hold then, and a frame that
waited is heard when it arrived, not when it was read (FrameReceived.arrived: a datagram's
kernel receive timestamp; a serial frame, which has none, with its beat's datagrams read at
the same wake-up, else when read). Heard when read, the peer's last beat before it died
counted from up to a keepalive late, and so did its death (a takeover 1.05 s after a kill at
deadtime 1 s, in CI's namespace tier). What could make a live peer look silent is heard when
read, as before: a receive time the wall clock's step made impossible, the last datagram of
a drain that left more in the socket (supervisor.drivers.links); and the peer's and a link's
last heard time never go back (an older beat's copy read after a newer beat).

A frame with news (the peer wants a group, asks to fence) is read at the next wake-up, then
the node is busy and reads at arrival until it is idle again.
"""

from __future__ import annotations

from supervisor.core.state import CoreState
from supervisor.core.states import Activity, LinkStatus, Nego, NodeStatus, PeerStatus

#: the longest keepalive at which frames wait for the node's own wake-up (seconds)
QUIET_KEEPALIVE = 0.2
#: warntime must be at least this many keepalives (a beat may be read two keepalives after
#: the one before it)
WARN_KEEPALIVES = 2.5

_SETTLED = (Activity.RUNNING, Activity.IDLE)


def busy(s: CoreState) -> str | None:
    """Why the links must be read the moment a frame arrives, or None: they may wait for the
    node's next wake-up (quiet)."""
    t = s.config.timing
    if t.keepalive > QUIET_KEEPALIVE:
        return f"keepalive above {QUIET_KEEPALIVE * 1000:.0f} ms"
    if t.warntime < WARN_KEEPALIVES * t.keepalive:
        return f"warntime below {WARN_KEEPALIVES:g} keepalives"
    if s.status is not NodeStatus.ACTIVE or s.shutting_down:
        return f"{s.me} is {'stopping' if s.shutting_down else s.status.value}"
    p = s.peer_state
    if p.status is not PeerStatus.ALIVE or p.beat is None:
        return f"peer {s.peer} is not known alive"
    for ls in s.links.values():
        if ls.status is not LinkStatus.UP:
            return f"link {ls.name} is {ls.status.value}"
    for g in s.groups.values():
        if (g.activity not in _SETTLED or g.nego is not Nego.NONE
                or (g.inflight is not None and g.inflight.kind != "check")):
            return f"group {g.name} is changing"
    if s.fence.out or s.fence.in_:
        return "fencing in progress"
    if s.resolving or s.resolve_in:
        return "a split brain is being resolved"
    if s.force_data:
        return "a forced promotion is in flight"
    return None
