"""Admin commands: accepted or refused by the core, with the reason as a typed value.

``standby`` pins every group (or one) to the peer, ``takeover`` to this node, ``cleanup``
forgets failures. Pins are stamped with a Lamport clock and published in every beat, so both
nodes agree on the latest admin wish. ``takeover --force-data GROUP`` also forgets the group's
failures and arms a forced promotion of its DRBD replicas for FORCE_WINDOW seconds (on the
core's clock), after saying what may be lost. ``resolve-split-brain --discard NODE`` is this
node's half of DRBD's manual split-brain recovery (DRBD 8.4 user's guide, "Manual split brain
recovery"): on the node whose data is discarded ``disconnect``, ``secondary``, ``connect
--discard-my-data``; on the survivor ``disconnect``, ``connect``; the loop runs the commands
(RunDrbdadm) and the answer comes when they are done.

Each command gets an ``AdminAnswer``: ``Accepted`` with the reasons, or ``Refused`` with the
sentence that says why (also a warning in the log); the control socket answers from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.core.actions import Accepted, AdminAnswer, Refused, RunDrbdadm
from supervisor.core.events import AdminCommand, DrbdadmDone
from supervisor.core.ownership import not_entitled_self
from supervisor.core.plan import cleanup
from supervisor.core.replica import promotion_verdict
from supervisor.core.state import EPS, CoreState, ForceData, Out, Resolving, evolve
from supervisor.core.states import PeerStatus
from supervisor.resource_spec import DrbdSpec

COMMANDS = ("standby", "takeover", "cleanup", "resolve-split-brain")
#: seconds a `takeover --force-data` keeps a forced promotion armed for the group's start
FORCE_WINDOW = 300.0


@dataclass(frozen=True)
class Outcome:
    """What an admin command came to in its step: the new state; a refusal, or nothing
    (accepted); sentences for the administrator that are not reasons (the risks of a forced
    promotion); whether the step's reasons are part of the answer; whether the refusal was
    logged already; whether the answer waits for commands the loop runs."""

    state: CoreState
    refusal: Refused | None = None
    told: tuple[str, ...] = ()
    with_reasons: bool = True
    logged: bool = False
    later: bool = False


def on_admin(s: CoreState, cmd: AdminCommand, now: float, out: Out) -> Outcome:
    if cmd.command == "resolve-split-brain":
        result = _resolve(s, cmd, out)
    elif cmd.command == "takeover" and cmd.force_data:
        result = _force_data(s, cmd.group, now, out)
    else:
        result = _admin(s, cmd.command, cmd.group, now, out)
    if result.refusal is not None and not result.logged:
        out.warn(result.refusal.reason)
    return result


def answer(request_id: int, result: Outcome, out: Out) -> AdminAnswer:
    """The answer to an admin command once its step is over: a refusal, or every sentence of
    the step (what the command set in motion is part of what it did)."""
    if result.refusal is not None:
        return AdminAnswer(request_id, result.refusal)
    return AdminAnswer(request_id, Accepted(
        (*result.told, *out.reasons) if result.with_reasons else result.told))


def _refused(s: CoreState, reason: str) -> Outcome:
    return Outcome(s, Refused(reason, (reason,)))


def _admin(s: CoreState, command: str, group: str | None, now: float, out: Out) -> Outcome:
    if command not in COMMANDS:
        return _refused(s, f"unknown admin command {command!r}")
    if group is not None and group not in s.groups:
        return _refused(s, f"{command} refused: there is no group {group!r}")
    names = [group] if group is not None else list(s.groups)
    if command == "cleanup":
        groups = dict(s.groups)
        for name in names:
            groups[name] = cleanup(groups[name], out)
        return Outcome(evolve(s, groups=groups))
    if command == "standby":
        if s.peer_status is not PeerStatus.ALIVE:
            return _refused(s, f"standby refused: peer {s.peer} is not alive, the groups "
                               "would stop")
        target = s.peer
    else:
        why = not_entitled_self(s, now, s.groups[group] if group is not None else None)
        if why:
            return _refused(s, f"takeover refused: {why}")
        target = s.me
    lamport = s.lamport + 1
    pins = dict(s.pins)
    groups = dict(s.groups)
    for name in names:
        pins[name] = (target, lamport)
        reason = f"admin {command}: group {name} should run on {target}"
        groups[name] = groups[name].said(reason)
        out.reason(reason)
    return Outcome(evolve(s, lamport=lamport, pins=pins, groups=groups))


def _force_data(s: CoreState, group: str | None, now: float, out: Out) -> Outcome:
    """``takeover --force-data GROUP``: say what may be lost, forget the group's failures
    here (a refused promotion failed it), take it over, and arm the forced promotion."""
    if group is None:
        return Outcome(s, Refused("takeover --force-data needs a group name"))
    cfg = s.group_cfg(group)
    resources = [] if cfg is None else [spec.resource for spec in cfg.resources
                                        if isinstance(spec, DrbdSpec)]
    if not resources:
        return Outcome(s, Refused(f"group {group!r} has no drbddisk resource; use a plain "
                                  "takeover"))
    risks = []
    for name in resources:
        r = s.replicas.get(name)
        if r is not None and r.connection != "Unconfigured":
            verdict = promotion_verdict(
                resource=name, role=r.role, disk=r.disk, peer_role=r.peer_role,
                peer_disk=r.peer_disk, connection=r.connection, split_brain=r.split_brain,
                force=True)
            risks.append(verdict.risk or verdict.reason)
    cleaned = _admin(s, "cleanup", group, now, out)
    taken = _admin(cleaned.state, "takeover", group, now, out)
    if taken.refusal is not None:
        reason = taken.refusal.reason
        return Outcome(s, Refused(reason, (*risks, *out.reasons, reason)))
    out.warn(f"admin: takeover of group {group} with FORCED data promotion: "
             f"{'; '.join(risks) or 'disk states unknown'}")
    armed = ForceData(now + FORCE_WINDOW, frozenset(resources))
    return Outcome(evolve(taken.state, force_data={**taken.state.force_data, group: armed}),
                   told=tuple(risks))


def expire_force(s: CoreState, now: float, out: Out) -> CoreState:
    """Forget forced promotions whose window passed unused."""
    expired = [g for g, f in s.force_data.items() if now >= f.deadline - EPS]
    if not expired:
        return s
    for group in expired:
        out.reason(f"the forced data promotion armed for group {group} expired unused "
                   f"({', '.join(sorted(s.force_data[group].resources))})")
    return evolve(s, force_data={g: f for g, f in s.force_data.items() if g not in expired})


# --------------------------------------------------------------------------------------------
# resolve-split-brain


def _resolve(s: CoreState, cmd: AdminCommand, out: Out) -> Outcome:
    nodes = [s.me, s.peer]
    if cmd.discard not in nodes:
        return Outcome(s, Refused(f"--discard must name a node: {' or '.join(nodes)}"))
    names = [r for r in s.replicas if cmd.resource in (None, r)]
    if not names:
        return Outcome(s, Refused("no such replicated resource here" if cmd.resource
                                  else "this node replicates nothing"))
    said: list[str] = []
    ok = True
    pending = []
    for name in names:
        r = s.replicas[name]
        if r.connection == "Connected" and not r.split_brain:
            said.append(f"{name}: connected and replicating, no split brain to resolve")
            continue
        steps: tuple[tuple[tuple[str, ...], bool], ...]
        # disconnect fails on a StandAlone resource ("unknown connection"): not required
        if cmd.discard == s.me:
            if r.role == "Primary":
                ok = False
                said.append(f"{name}: refused: this node ({s.me}) is Primary and serves this "
                            "data; move the group to the other node first (twinbeat standby),"
                            " or discard the other node")
                continue
            lost = ("" if r.out_of_sync_kib is None else
                    f" (DRBD counts {r.out_of_sync_kib} KiB changed here since the nodes "
                    "parted)")
            said.append(f"{name}: DISCARDING this node's ({s.me}) changes since the split"
                        f"{lost}; it will resync from {s.peer}")
            steps = ((("disconnect",), False), (("secondary",), True),
                     (("connect", "--discard-my-data"), True))
        else:
            said.append(f"{name}: keeping this node's ({s.me}) data; {cmd.discard}'s changes "
                        "since the split will be overwritten")
            steps = ((("disconnect",), False), (("connect",), True))
        out.actions.append(RunDrbdadm(cmd.request_id, name, steps))
        pending.append(name)
    for sentence in said:
        out.warn(f"resolve-split-brain: {sentence}")
    state = Resolving(tuple(said), ok, frozenset(pending))
    if pending:
        return Outcome(evolve(s, resolving={**s.resolving, cmd.request_id: state}),
                       later=True, logged=True)
    refusal, told = _resolved(state)
    return Outcome(s, refusal, told, with_reasons=False, logged=True)


def _resolved(r: Resolving) -> tuple[Refused | None, tuple[str, ...]]:
    """The refusal (or None) and the lines of a finished resolve-split-brain."""
    if r.ok:
        return None, r.said
    return Refused("; ".join(r.said), r.said), ()


def on_drbdadm_done(s: CoreState, done: DrbdadmDone, out: Out) -> CoreState:
    r = s.resolving.get(done.request_id)
    if r is None or done.resource not in r.pending:
        return s
    if done.ok:
        line = (f"{done.resource}: done here; run the same command on {s.peer} if you have "
                "not yet")
    else:
        line = f"{done.resource}: {done.detail}"
    out.warn(f"resolve-split-brain: {line}")
    r = Resolving((*r.said, line), r.ok and done.ok, r.pending - {done.resource})
    resolving = dict(s.resolving)
    if r.pending:
        resolving[done.request_id] = r
    else:
        del resolving[done.request_id]
        refusal, said = _resolved(r)
        out.actions.append(AdminAnswer(done.request_id, refusal or Accepted(said)))
    return evolve(s, resolving=resolving)
