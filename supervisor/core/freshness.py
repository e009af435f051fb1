"""Freshness of the peer's beats across links: replays and sequence jumps (pure: no I/O).

A beat is ordered by ``(generation, seq)``: the generation grows by one at each start of the
peer, the sequence number by one at each beat. The peer sends every beat on every link, so
the same beat normally arrives two or three times, a few milliseconds apart. For a frame with
a valid MAC from the peer, on link L, at time ``now``:

1. Per link, orders strictly increase: a frame not newer than the last one taken on L is a
   ``replay``.
2. Across links, the *newest* order taken on any link, and when it first arrived
   (``newest_at``), is the reference. An older generation is a ``replay``. A frame of the
   newest generation that is not newer than the newest is a *copy* of a beat heard on another
   link: taken when it is at most COPY_FRAMES behind and arrives within ``warntime`` of
   ``newest_at`` (a copy that late would make its link LATE anyway), else a ``replay``.
   A copy proves that link L carries frames; it does not prove that the peer is alive later
   than the newest beat did, so it counts as heard at most ``keepalive`` after ``newest_at``.
   That is what keeps frames captured on a cut link, replayed after the peer died, from
   delaying a takeover by more than one keepalive (with per-link windows each link had its
   own idea of "old", and a replay on a link that had been cut looked new).
3. A newer order may advance only by a bounded amount for the time since ``newest_at``: the
   sequence number by at most SEQ_BASE + SEQ_RATE_PER_KEEPALIVE beats per keepalive, the
   generation by at most GEN_BASE + one per GEN_PERIOD seconds (a new generation's sequence
   number is bounded the same way from 0). A larger step is a ``jump``, dropped and counted:
   one forged or corrupted huge number can no longer become the reference that makes every
   genuine frame after it look old. A genuine frame after a long silence is allowed the
   larger step that the silence explains.

What is not covered: the first frame this node hears after its own start has no reference,
so its order is taken as it is (within the codec's absolute bounds); and the rules bound the
size of a step, not its truth: a holder of the key can still claim what the peer could
(a restart, a clean shutdown).

Admin pins carry Lamport stamps that grow by one per admin command; ``plausible_pins`` keeps
a stamp from running more than PIN_LEAD ahead of this node's clock, so that the clock can
never be pushed to the codec's MAX_COUNTER (where this node's own beats would become
out-of-domain for its peer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

#: how far behind the newest beat a copy from another link may be (serial lags UDP by a few
#: beats at most: 22 ms per frame at 115200 baud, a transmit buffer of ~16 frames)
COPY_FRAMES = 32
#: a sequence number may always advance this much, plus SEQ_RATE_PER_KEEPALIVE per keepalive
#: elapsed since the newest beat (the peer sends one beat per keepalive and one per change)
SEQ_BASE = 1000
SEQ_RATE_PER_KEEPALIVE = 50
#: a generation may always advance this much, plus one per GEN_PERIOD seconds elapsed (a
#: start of twinbeat takes longer than that)
GEN_BASE = 2
GEN_PERIOD = 1.0
#: how far a pin's stamp may run ahead of this node's Lamport clock (admin commands)
PIN_LEAD = 2**20

Order = tuple[int, int]


class Timing(Protocol):
    """The part of supervisor.config.Timing the rules use."""

    @property
    def keepalive(self) -> float: ...

    @property
    def warntime(self) -> float: ...


@dataclass(frozen=True)
class Freshness:
    """What the rules remember about the peer's beats (never mutated: ``admit`` returns a new
    one, so the core's state copies may share it)."""

    newest: Order | None = None
    newest_at: float = 0.0
    links: Mapping[str, Order] = field(default_factory=dict)


class Verdict(NamedTuple):
    """``drop`` is the counter of a refused frame ("" when taken); ``state`` the memory to keep
    when the frame is taken; ``fresh``: newer than every beat before it; ``heard_at``: the
    time up to which the frame proves the peer alive. (A named tuple: one is made for every
    frame, three a keepalive, and read at once; built in C, not by a dataclass's
    ``__init__``.)"""

    drop: str
    reason: str
    state: Freshness
    fresh: bool = False
    heard_at: float = 0.0


def admit(state: Freshness, link: str, order: Order, now: float, timing: Timing) -> Verdict:
    """Whether a frame of the peer with ``order``, on ``link`` at ``now``, is fresh enough."""
    last = state.links.get(link)
    if last is not None and order <= last:
        return Verdict("replay", f"not newer than the last frame on link {link}", state)
    newest = state.newest
    links = {**state.links, link: order}
    if newest is None:
        return Verdict("", "first frame heard", Freshness(order, now, links), True, now)
    gen, seq = order
    new_gen, new_seq = newest
    elapsed = max(0.0, now - state.newest_at)
    if order <= newest:
        if gen < new_gen:
            return Verdict("replay", f"generation {gen} is older than {new_gen}", state)
        if new_seq - seq > COPY_FRAMES:
            return Verdict("replay", f"{new_seq - seq} beats behind the newest", state)
        if elapsed > timing.warntime:
            return Verdict("replay", f"a copy {elapsed:.3f} s after the first", state)
        heard = min(now, state.newest_at + timing.keepalive)
        return Verdict("", "a copy of a recent beat", Freshness(newest, state.newest_at, links),
                       False, heard)
    seq_limit = SEQ_BASE + int(SEQ_RATE_PER_KEEPALIVE * elapsed / timing.keepalive)
    if gen > new_gen:
        gen_limit = GEN_BASE + int(elapsed / GEN_PERIOD)
        if gen - new_gen > gen_limit:
            return Verdict("jump", f"generation jumps by {gen - new_gen} (at most {gen_limit} "
                                   f"after {elapsed:.1f} s)", state)
        new_seq = 0
    if seq - new_seq > seq_limit:
        return Verdict("jump", f"sequence number jumps by {seq - new_seq} (at most "
                               f"{seq_limit} after {elapsed:.1f} s)", state)
    return Verdict("", "newest beat", Freshness(order, now, links), True, now)


def admit_copies(state: Freshness, links: Sequence[str], now: float) -> Freshness | None:
    """``admit`` of the beat ``state`` took as its newest at ``now`` (its first frame, just
    admitted), arriving again on each of ``links`` at the same instant, one after the other:
    each is a copy heard at ``now``, so the memory after them all is the same beat as the
    newest with each link's order set; None when one of them would be dropped (a replay on
    its link: ``admit`` them one by one, it says why). The same as those ``admit`` calls (a
    property test compares them), without a verdict and a memory made for each."""
    newest = state.newest
    if newest is None or state.newest_at != now:
        return None
    seen = dict(state.links)
    for link in links:
        last = seen.get(link)
        if last is not None and newest <= last:
            return None
        seen[link] = newest
    return Freshness(newest, now, seen)


def plausible_pins(pins: Mapping[str, tuple[str, int]], clock: int
                   ) -> dict[str, tuple[str, int]]:
    """The pins whose stamps are at most PIN_LEAD ahead of this node's Lamport ``clock``."""
    return {g: pin for g, pin in pins.items() if pin[1] <= clock + PIN_LEAD}
