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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from supervisor.core.codec import PROTOCOL_MINOR

#: what each protocol minor version added, and so is on only when both nodes have it
FEATURES: Mapping[str, int] = {
    # the beat says the sender's release and minor: `twinbeat status` shows both versions
    # and `twinbeat upgrade` can tell where the pair stands (it refuses a peer without them)
    "versions": 1,
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
        on = tuple(sorted(f for f, m in FEATURES.items() if m <= mine))
        return Compat(mine, None, used, True, False, on,
                      f"{peer_name} not heard yet: protocol {mine}, release {my_release or '?'}")
    used = min(mine, peer)
    on = tuple(sorted(f for f, m in FEATURES.items() if m <= used))
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


def local(release: str, peer: int | None, peer_release: str | None,
          peer_name: str = "the peer") -> Compat:
    """``negotiate`` for this build's own minor (PROTOCOL_MINOR)."""
    return negotiate(PROTOCOL_MINOR, release, peer, peer_release, peer_name)
