"""Versions of the two nodes (pure): what the pair may use while they differ.

Each beat says the sender's protocol minor version (``pm``) and its twinbeat release
(``sw``); a node older than these fields says neither (minor 0, release unknown). From both:

* the pair uses the *lower* of the two minors: what a newer minor adds stays off until both
  nodes run it (FEATURES names each addition and the minor that brings it);
* a peer one minor behind (N-1) is the normal state in the middle of a rolling upgrade:
  accepted, with a reason that says so. Two or more behind is still read (the major version
  ``v`` decides that), but an upgrade must not skip: ``supported`` is False and the reason
  says to upgrade the older node first;
* the releases differ: "mixed versions" (``twinbeat status``), which is expected only while
  a rolling upgrade runs.

"Off" is enforced where a feature shows: ``gate`` leaves the beat fields of a feature the
pair does not use at their absent value (the older behaviour), so a node on N talks to an
N-1 peer as N-1 did; the core asks ``enabled`` before behaviour that needs the peer to have
a feature. A new minor adds its row to FEATURES and its fields to FEATURE_FIELDS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import TYPE_CHECKING

from supervisor.core.codec import Beat

if TYPE_CHECKING:
    from supervisor.core.state import CoreState

#: what each protocol minor version added, and so is on only when both nodes have it
FEATURES: Mapping[str, int] = {
    # the beat says the sender's release and minor: `twinbeat status` shows both versions
    # and `twinbeat upgrade` can tell where the pair stands (it refuses a peer without them)
    "versions": 1,
}

#: the Beat fields each feature adds, left at their absent value until the pair uses the
#: feature ("versions" has none to hold back: ``pm`` is how a peer learns the minor)
FEATURE_FIELDS: Mapping[str, tuple[str, ...]] = {
    "versions": (),
}


@dataclass(frozen=True)
class Compat:
    mine: int  # this node's protocol minor
    peer: int | None  # the peer's (None: no beat heard yet)
    used: int  # the minor the pair uses (the lower of the two)
    supported: bool  # the peer is at most one minor behind (or ahead)
    mixed: bool  # the releases differ (or the peer's is unknown while ours is known)
    features: tuple[str, ...]  # the FEATURES both nodes have
    reason: str


def negotiate(mine: int, my_release: str, peer: int | None, peer_release: str | None,
              peer_name: str = "the peer") -> Compat:
    """What the pair uses, given both minors and releases (peer None: not heard yet)."""
    if peer is None:
        used = mine
        on = features_of(mine)
        return Compat(mine, None, used, True, False, on,
                      f"{peer_name} not heard yet: protocol {mine}, release {my_release or '?'}")
    used = min(mine, peer)
    on = features_of(used)
    off = sorted(f for f, m in FEATURES.items() if m > used and m <= max(mine, peer))
    theirs = peer_release or "an older release (it does not say)"
    mixed = (peer_release or "") != my_release
    gap = abs(mine - peer)
    if gap == 0:
        why = f"{peer_name} speaks protocol {peer} as this node does"
    else:
        older = peer_name if peer < mine else "this node"
        why = (f"{older} is {gap} protocol version{'s' if gap > 1 else ''} behind "
               f"({min(mine, peer)} with {max(mine, peer)})")
        if off:
            why += f": {', '.join(off)} off until both run {max(mine, peer)}"
    supported = gap <= 1
    if not supported:
        why += "; more than one version apart: upgrade the older node first"
    if mixed:
        why = (f"mixed versions: this node runs {my_release or 'an unknown release'}, "
               f"{peer_name} {theirs}; " + why)
    return Compat(mine, peer, used, supported, mixed, on, why)


def of_state(s: CoreState) -> Compat:
    """What the pair uses, from this node's settings and the peer's latest beat."""
    beat = s.peer_state.beat
    return negotiate(s.settings.minor, s.settings.release, beat.minor if beat else None,
                     beat.release if beat else None, s.peer)


#: features_of by minor, with the table they were read from (a memo of a pure function:
#: tests put another table in FEATURES)
_IN_USE: dict[int, tuple[Mapping[str, int], tuple[str, ...]]] = {}


def features_of(used: int) -> tuple[str, ...]:
    """The FEATURES a pair on protocol minor ``used`` has, sorted (worked out once per
    minor: every beat asks)."""
    memo = _IN_USE.get(used)
    if memo is not None and memo[0] is FEATURES:
        return memo[1]
    on = tuple(sorted(f for f, m in FEATURES.items() if m <= used))
    if len(_IN_USE) >= 8:
        _IN_USE.clear()
    _IN_USE[used] = (FEATURES, on)
    return on


def features_in_use(s: CoreState) -> tuple[str, ...]:
    """``of_state(s).features`` without the sentence."""
    beat = s.peer_state.beat
    return features_of(s.settings.minor if beat is None else min(s.settings.minor, beat.minor))


def enabled(s: CoreState, feature: str) -> bool:
    """Whether the pair uses ``feature`` now (both nodes have it, or the peer is not heard
    yet and this node has it)."""
    return feature in features_in_use(s)


def _absent(name: str) -> object:
    f = next(f for f in fields(Beat) if f.name == name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise ValueError(f"Beat.{name} has no absent value: it cannot belong to a feature")


def gate(beat: Beat, on: tuple[str, ...],
         table: Mapping[str, tuple[str, ...]] | None = None) -> Beat:
    """``beat`` with the fields of every feature not in ``on`` at their absent value."""
    held = {name: _absent(name)
            for feature, names in (FEATURE_FIELDS if table is None else table).items()
            if feature not in on for name in names}
    return replace(beat, **held) if held else beat  # type: ignore[arg-type]
