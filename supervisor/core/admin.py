"""Admin commands: accepted or refused by the core, with the reason as a typed value.

``standby`` pins every group (or one) to the peer, ``takeover`` to this node, ``cleanup``
forgets failures. Pins are stamped with a Lamport clock and published in every beat, so both
nodes agree on the latest admin wish. Each command gets an ``AdminAnswer``: ``Accepted`` with
the reasons, or ``Refused`` with the sentence that says why (also a warning in the log); the
control socket answers from that value.
"""

from __future__ import annotations

from supervisor.core.actions import Accepted, AdminAnswer, Refused
from supervisor.core.ownership import not_entitled_self
from supervisor.core.plan import cleanup
from supervisor.core.state import CoreState, Out, evolve
from supervisor.core.states import PeerStatus

COMMANDS = ("standby", "takeover", "cleanup")


def on_admin(s: CoreState, command: str, group: str | None, now: float,
             out: Out) -> tuple[CoreState, Refused | None]:
    """The state after the command, and the refusal (also a warning) if it was refused."""
    s, refusal = _admin(s, command, group, now, out)
    if not refusal:
        return s, None
    out.warn(refusal)
    return s, Refused(refusal)


def answer(request_id: int, refusal: Refused | None, out: Out) -> AdminAnswer:
    """The answer to an admin command once its step is over: a refusal, or every reason
    of the step (what the command set in motion is part of what it did)."""
    return AdminAnswer(request_id, refusal or Accepted(tuple(out.reasons)))


def _admin(s: CoreState, command: str, group: str | None, now: float,
           out: Out) -> tuple[CoreState, str]:
    """The new state and, when refused, the reason (the state is then unchanged)."""
    if command not in COMMANDS:
        return s, f"unknown admin command {command!r}"
    if group is not None and group not in s.groups:
        return s, f"{command} refused: there is no group {group!r}"
    names = [group] if group is not None else list(s.groups)
    if command == "cleanup":
        groups = dict(s.groups)
        for name in names:
            groups[name] = cleanup(groups[name], out)
        return evolve(s, groups=groups), ""
    if command == "standby":
        if s.peer_status is not PeerStatus.ALIVE:
            return s, f"standby refused: peer {s.peer} is not alive, the groups would stop"
        target = s.peer
    else:
        why = not_entitled_self(s, now, s.groups[group] if group is not None else None)
        if why:
            return s, f"takeover refused: {why}"
        target = s.me
    lamport = s.lamport + 1
    pins = dict(s.pins)
    groups = dict(s.groups)
    for name in names:
        pins[name] = (target, lamport)
        reason = f"admin {command}: group {name} should run on {target}"
        groups[name] = groups[name].said(reason)
        out.reason(reason)
    return evolve(s, lamport=lamport, pins=pins, groups=groups), ""
