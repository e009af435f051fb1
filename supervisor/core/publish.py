"""What a beat says, and when one is sent.

A beat goes out every ``keepalive`` and at once whenever what it says changes (so a WANT, a
GRANT or a stop is seen by the peer without waiting for the next keepalive). A beat due
within EARLY of the keepalive goes out with the step at hand (most often the peer's beat
arriving) rather than on a wake-up of its own: the interval between two beats is then
between (1 - EARLY) and 1 keepalive, and the node that sends right after hearing its peer's
beat tends to keep doing so (its next beat is due a keepalive after that arrival, about when
the peer's next beat arrives). Each beat is encoded once and the one SendFrame carries the
same bytes to every link. A leaving node sends LEAVING_FRAMES beats in a row (each with its
own sequence number: the peer drops repeats), so that one lost frame does not cost the peer a
deadtime.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from supervisor.core import admin, codec, compat, fencing
from supervisor.core.actions import SendFrame, ShutdownComplete
from supervisor.core.liveness import world_ok, yields_groups
from supervisor.core.ownership import replicas_behind
from supervisor.core.state import SENT_WINDOW, CoreState, Out, beat_opens, evolve
from supervisor.core.states import NodeStatus

LEAVING_FRAMES = 3
_NAME = attrgetter("name")


def beat_due(s: CoreState, now: float) -> bool:
    """Whether the next beat goes out at ``now``: it is due, or due within EARLY of the
    keepalive."""
    return now >= beat_opens(s)


def published(s: CoreState, now: float) -> tuple[Any, ...]:
    """Everything a beat says except its sequence number (a change sends a beat at once)."""
    return (
        s.status,
        world_ok(s, now)[0],
        s.watchdog_ok and not s.shutting_down,
        tuple((n, ls.status.delivers) for n, ls in sorted(s.links.items())),
        tuple(
            (n, g.activity, g.nego, g.epoch, g.failed_until is not None)
            for n, g in sorted(s.groups.items())
        ),
        tuple(sorted(s.pins.items())),
        tuple(sorted(fencing.requests(s).items())),
        tuple(sorted(fencing.answers(s).items())),
        tuple(sorted(s.maintenance.items())),
        s.watchdog_timeout,
        yields_groups(s),
        tuple(replicas_behind(s)),
        tuple(sorted(admin.requests(s).items())),
        tuple(sorted(admin.answers(s).items())),
    )


def publish(s: CoreState, now: float, out: Out, *,
            said: tuple[Any, ...] | None = None) -> CoreState:
    """Send a beat if one is due or what it says changed; the leaving burst at shutdown.
    ``said``: ``published(s, now)``, when the caller knows it (``step``'s shortcuts: the
    last beat's, as nothing it is made of changed since; the property tests compare them
    with the full step)."""
    if said is None:
        said = published(s, now)
    if s.status is NodeStatus.LEAVING and not s.shutdown_done:
        for _ in range(LEAVING_FRAMES):
            s = _send(s, now, out, said)
        out.actions.append(ShutdownComplete())
        return evolve(s, shutdown_done=True)
    if said != s.last_published or beat_due(s, now):
        return _send(s, now, out, said)
    return s


def _send(s: CoreState, now: float, out: Out, said: tuple[Any, ...]) -> CoreState:
    seq = s.seq + 1
    out.actions.append(SendFrame(frame(s, said, seq, echo(s, seq, now))))
    return evolve(s, seq=seq, last_published=said,
                  next_beat=now + s.settings.config.timing.keepalive,
                  sent=(*s.sent[1 - SENT_WINDOW:], (seq, now)))


def beat(s: CoreState, said: tuple[Any, ...], seq: int,
         echoed: tuple[str, int, int, int] | None) -> codec.Beat:
    """The beat that says ``said`` (``published``) with this sequence number and echo."""
    return codec.Beat(
        cluster=s.config.cluster_name,
        sender=s.me,
        generation=s.generation,
        seq=seq,
        status=s.status,
        world_ok=said[1],
        can_own=said[2],
        links={n: ls.status.delivers for n, ls in s.links.items()},
        groups={
            n: codec.GroupView(g.activity, g.nego, g.epoch, g.failed_until is not None)
            for n, g in s.groups.items()
        },
        pins=dict(s.pins),
        config_digest=s.settings.digest,
        outdate=fencing.requests(s),
        outdate_answers=fencing.answers(s),
        minor=s.settings.minor,
        release=s.settings.release,
        maintenance=dict(s.maintenance),
        echo=echoed,
        watchdog_timeout=s.watchdog_timeout,
        yields_world=yields_groups(s),
        replicas_behind=tuple(replicas_behind(s)),
        resolve=admin.requests(s),
        resolve_answers=admin.answers(s),
    )


def gated(s: CoreState, said: tuple[Any, ...], seq: int,
          echoed: tuple[str, int, int, int] | None) -> codec.Beat:
    """``beat`` with the fields of the features the pair does not use at their absent value
    (``compat.gate``): what goes on the wire."""
    return compat.gate(beat(s, said, seq, echoed), compat.features_in_use(s))


#: by sender: what the last beat encoded said and who said it (``_sayer``), and its body cut
#: around its sequence number and echo (``codec.Cut``). A beat that says the same as the one
#: before it (most beats: only the sequence number and the echo change) is encoded from that
#: cut, not built and encoded field by field. A memo of pure functions (``beat`` and
#: ``codec.encode``): the frame's bytes are the same either way (a property test compares
#: them), so the core stays pure; one entry per node name (two in the simulator).
_CUTS: dict[str, tuple[tuple[Any, ...], codec.Cut, bool]] = {}
#: False: every beat built and encoded field by field (the property test's full way)
USE_CUTS = True


def _sayer(s: CoreState, said: tuple[Any, ...],
           echoed: tuple[str, int, int, int] | None) -> tuple[Any, ...]:
    """Everything the frame of a beat depends on except its sequence number and echo: what
    it says (``published``: status, links, groups, pins, requests... every field of the
    beat but those two is made from it), who says it, its versions and the features the
    pair uses (``compat.gate``), with which key, and whether it echoes (the cut has a place
    for an echo or not)."""
    settings = s.settings  # (its fields read directly: every beat asks)
    return (said, settings.config.cluster_name, settings.me, s.generation, settings.digest,
            settings.minor, settings.release, compat.features_in_use(s), settings.key,
            echoed is None)


def frame(s: CoreState, said: tuple[Any, ...], seq: int,
          echoed: tuple[str, int, int, int] | None) -> bytes:
    """The frame of ``gated(s, said, seq, echoed)``, encoded from the cut of the last beat
    when that one said the same."""
    if not USE_CUTS:
        return codec.encode(gated(s, said, seq, echoed), s.settings.key)
    sayer = _sayer(s, said, echoed)
    last = _CUTS.get(s.me)
    if last is not None and last[0] == sayer:
        _, cut, held = last
        return codec.encode_next(cut, seq, None if held else echoed, s.settings.key)
    wire = gated(s, said, seq, echoed)
    data, cut = codec.encode_cut(wire, s.settings.key)
    if len(_CUTS) >= 8:
        _CUTS.clear()
    # held: the pair does not use the echo's feature, the gate left it out (as it will for
    # every beat with this sayer: the features are part of it)
    _CUTS[s.me] = (sayer, cut, echoed is not None and wire.echo is None)
    return data


def echo(s: CoreState, seq: int, now: float) -> tuple[str, int, int, int] | None:
    """The echo this beat carries: the peer's latest beat heard on one link (each link in
    turn), and how long ago it arrived; the peer measures that link's round-trip time. A
    beat that waited for a quiet wake-up is not echoed: a datagram's wait is known
    (FrameReceived.arrived) but a serial frame's is not, and a quiet node's echo would
    itself wait for its next wake-up (the peer would count that wait in its round trip)."""
    heard = []  # (a loop: a comprehension makes a function object, every keepalive)
    for ls in s.links.values():
        if (not ls.heard_waited and ls.status.delivers and ls.last_order is not None
                and ls.last_heard is not None):
            heard.append(ls)
    if not heard:  # (a quiet node's, every keepalive: nothing sorted)
        return None
    heard.sort(key=_NAME)  # by link name (the keys of ``links``)
    ls = heard[seq % len(heard)]
    assert ls.last_order is not None and ls.last_heard is not None
    hold = min(codec.MAX_HOLD_MS, max(0, round((now - ls.last_heard) * 1000)))
    return (ls.name, ls.last_order[0], ls.last_order[1], hold)
