"""Admin commands: accepted or refused by the core, with the reason as a typed value.

``standby`` pins every group (or one) to the peer, ``takeover`` to this node, ``unpin``
clears a pin (the group follows its preferred node and auto_failback again), ``cleanup``
forgets failures. ``maintenance on|off [NODE]`` sets a node's maintenance mode: its
resources are left as they are (not monitored, not moved, not stopped at shutdown); the flag
is stamped like a pin, published in every beat and persisted by each node (SaveMaintenance),
so it survives restarts and reboots. Pins are stamped with a Lamport clock and published in
every beat, so both nodes agree on the latest admin wish. ``takeover --force-data GROUP``
also forgets the group's failures and arms a forced promotion of its DRBD replicas for
FORCE_WINDOW seconds (on the core's clock), after saying what may be lost.
``resolve-split-brain --discard NODE`` is this node's half of DRBD's manual split-brain
recovery (DRBD 8.4 user's guide, "Manual split brain recovery"): on the node whose data is
discarded ``disconnect``, ``secondary``, ``connect --discard-my-data``; on the survivor
``disconnect``, ``connect``; the loop runs the commands
(RunDrbdadm) and the answer comes when they are done.

Each command gets an ``AdminAnswer``: ``Accepted`` with the reasons, or ``Refused`` with the
sentence that says why (also a warning in the log); the control socket answers from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from supervisor.core.actions import Accepted, AdminAnswer, Refused, RunDrbdadm, SaveMaintenance
from supervisor.core.events import AdminCommand, DrbdadmDone
from supervisor.core.intake import flags_of, maintenance_sentence
from supervisor.core.notify import Kind
from supervisor.core.ownership import not_entitled_self
from supervisor.core.plan import cleanup
from supervisor.core.replica import promotion_verdict
from supervisor.core.state import (
    EPS,
    CoreState,
    ForceData,
    Out,
    ResolveIn,
    Resolving,
    evolve,
)
from supervisor.core.states import Activity, PeerStatus
from supervisor.resource_spec import DrbdSpec

COMMANDS = ("standby", "takeover", "cleanup", "unpin", "maintenance", "resolve-split-brain")
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
        result = _resolve(s, cmd, now, out)
    elif cmd.command == "takeover" and cmd.force_data:
        result = _force_data(s, cmd.group, now, out)
    elif cmd.command == "maintenance":
        result = _maintenance(s, cmd.on, cmd.node or s.me, out)
    elif cmd.command == "unpin":
        result = _unpin(s, cmd.group, out)
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


def _unpin(s: CoreState, group: str | None, out: Out) -> Outcome:
    """``twinbeat unpin GROUP``: clear a standby/takeover pin. The cleared pin keeps a fresh
    stamp (published as ``u``) so that the peer's older pin does not bring it back."""
    if group is None:
        return _refused(s, "unpin needs a group name")
    if group not in s.groups:
        return _refused(s, f"unpin refused: there is no group {group!r}")
    pin = s.pins.get(group)
    if pin is None or not pin[0]:
        return _refused(s, f"unpin refused: group {group} is not pinned")
    lamport = s.lamport + 1
    reason = (f"admin unpin: group {group} is no longer pinned to {pin[0]}; it follows its "
              "preferred node and auto_failback again")
    out.reason(reason)
    g = s.groups[group].said(reason)
    return Outcome(evolve(s, lamport=lamport, pins={**s.pins, group: ("", lamport)},
                          groups={**s.groups, group: g}))


def _maintenance(s: CoreState, on: bool | None, node: str, out: Out) -> Outcome:
    """``twinbeat maintenance on|off [--node NODE]``."""
    if on is None:
        return _refused(s, "maintenance needs on or off")
    if node not in (s.me, s.peer):
        return _refused(s, f"maintenance refused: {node!r} is not a node of this cluster "
                           f"({s.me}, {s.peer})")
    if s.in_maintenance(node) == on:
        return _refused(s, f"maintenance refused: {node} is already "
                           f"{'in' if on else 'out of'} maintenance")
    if on:
        busy = _in_transition(s, node)
        if busy:
            return _refused(s, f"maintenance refused: {busy} on {node}; wait until it is "
                               "running or stopped, so that it is left in a known state")
    lamport = s.lamport + 1
    flags = {**s.maintenance, node: (on, lamport)}
    said = maintenance_sentence(node, on, f"asked on {s.me}")
    if on:
        out.warn(said)
    else:
        out.reason(said)
    out.event(Kind.MAINTENANCE_ON if on else Kind.MAINTENANCE_OFF, said, subject=node)
    out.actions.append(SaveMaintenance(flags_of(flags)))
    return Outcome(evolve(s, lamport=lamport, maintenance=flags))


def _in_transition(s: CoreState, node: str) -> str:
    """A group that is starting or stopping on ``node`` (as far as this node knows)."""
    moving = (Activity.STARTING, Activity.STOPPING)
    if node == s.me:
        for g in s.groups.values():
            busy = (g.plan or g.inflight is not None) and g.purpose != "monitor"
            if g.activity in moving or busy:
                return f"group {g.name} is {g.activity.value}"
        return ""
    beat = s.peer_state.beat
    if s.peer_status is not PeerStatus.ALIVE or beat is None:
        return ""
    for name, view in beat.groups.items():
        if view.activity in moving:
            return f"group {name} is {view.activity.value}"
    return ""


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


#: how long a resolve-split-brain waits for the peer's half
RESOLVE_TIMEOUT = 120.0


Steps = tuple[tuple[tuple[str, ...], bool], ...]


def _steps(s: CoreState, name: str, discard: str) -> tuple[str, Steps]:
    """This node's half of DRBD's manual recovery for ``name``: (what it says, the drbdadm
    steps); no steps with a sentence starting "refused:" when it may not, or none to do."""
    r = s.replicas[name]
    if r.connection == "Connected" and not r.split_brain:
        return f"{name}: connected and replicating, no split brain to resolve", ()
    # disconnect fails on a StandAlone resource ("unknown connection"): not required
    if discard == s.me:
        if r.role == "Primary":
            return (f"{name}: refused: this node ({s.me}) is Primary and serves this data; "
                    "move the group to the other node first (twinbeat standby), or discard "
                    "the other node"), ()
        lost = ("" if r.out_of_sync_kib is None else
                f" (DRBD counts {r.out_of_sync_kib} KiB changed here since the nodes parted)")
        return (f"{name}: DISCARDING this node's ({s.me}) changes since the split{lost}; it "
                f"will resync from {s.peer}",
                ((("disconnect",), False), (("secondary",), True),
                 (("connect", "--discard-my-data"), True)))
    return (f"{name}: keeping this node's ({s.me}) data; {discard}'s changes since the split "
            "will be overwritten", ((("disconnect",), False), (("connect",), True)))


def _resolve(s: CoreState, cmd: AdminCommand, now: float, out: Out) -> Outcome:
    """Run this node's half and, while the peer is alive, carry the decision to it over the
    heartbeat links (``sb``): the answer comes when both halves are done."""
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
        sentence, steps = _steps(s, name, cmd.discard)
        said.append(sentence)
        if ": refused:" in sentence:
            ok = False
        if steps:
            out.actions.append(RunDrbdadm(cmd.request_id, name, steps))
            pending.append(name)
    peer: frozenset[str] = frozenset()
    wire = 0
    counter = s.resolve_counter
    if ok and s.peer_status is PeerStatus.ALIVE:
        counter += 1
        wire = (s.generation << 20) | (counter & 0xFFFFF)
        peer = frozenset(names)
        said.append(f"asking {s.peer} over the heartbeat links to run its half "
                    f"({', '.join(sorted(names))})")
    elif ok:
        said.append(f"{s.peer} is not reachable: run the same command there when it is back")
    for sentence in said:
        out.warn(f"resolve-split-brain: {sentence}")
    state = Resolving(tuple(said), ok, frozenset(pending), peer, cmd.discard or "", wire,
                      now + RESOLVE_TIMEOUT)
    if pending or peer:
        return Outcome(evolve(s, resolving={**s.resolving, cmd.request_id: state},
                              resolve_counter=counter), later=True, logged=True)
    refusal, told = _resolved(state)
    return Outcome(s, refusal, told, with_reasons=False, logged=True)


def _resolved(r: Resolving) -> tuple[Refused | None, tuple[str, ...]]:
    """The refusal (or None) and the lines of a finished resolve-split-brain."""
    if r.ok:
        return None, r.said
    return Refused("; ".join(r.said), r.said), ()


def _progress(s: CoreState, request_id: int, r: Resolving, out: Out) -> CoreState:
    """Keep a resolve-split-brain that still waits, or answer it once both halves are in."""
    resolving = dict(s.resolving)
    if r.pending or r.peer:
        resolving[request_id] = r
    else:
        del resolving[request_id]
        refusal, said = _resolved(r)
        out.actions.append(AdminAnswer(request_id, refusal or Accepted(said)))
    return evolve(s, resolving=resolving)


def on_drbdadm_done(s: CoreState, done: DrbdadmDone, out: Out) -> CoreState:
    asked = s.resolve_in.get(done.resource)
    if asked is not None and asked.wire == done.request_id and asked.result is None:
        result = "done" if done.ok else "failed"
        line = f"{done.resource}: {s.peer}'s decision carried out here" if done.ok \
            else f"{done.resource}: {done.detail}"
        out.warn(f"resolve-split-brain (asked by {s.peer}): {line}")
        return evolve(s, resolve_in={**s.resolve_in, done.resource: ResolveIn(
            asked.wire, result, "" if done.ok else done.detail)})
    r = s.resolving.get(done.request_id)
    if r is None or done.resource not in r.pending:
        return s
    line = f"{done.resource}: done here" if done.ok else f"{done.resource}: {done.detail}"
    out.warn(f"resolve-split-brain: {line}")
    r = replace(r, said=(*r.said, line), ok=r.ok and done.ok,
                pending=r.pending - {done.resource})
    return _progress(s, done.request_id, r, out)


def update(s: CoreState, now: float, out: Out) -> CoreState:
    """The carried halves: run the peer's requests here; collect its answers to ours."""
    beat = s.peer_state.beat if s.peer_status is PeerStatus.ALIVE else None
    asks = beat.resolve if beat is not None else {}
    resolve_in = {k: v for k, v in s.resolve_in.items() if k in asks}
    for name, (discard, wire) in sorted(asks.items()):
        cur = resolve_in.get(name)
        if cur is not None and cur.wire == wire:
            continue
        if name not in s.replicas or discard not in (s.me, s.peer):
            resolve_in[name] = ResolveIn(wire, "failed", f"{name} is not replicated here"
                                         if name not in s.replicas else "unknown node")
            continue
        sentence, steps = _steps(s, name, discard)
        out.warn(f"resolve-split-brain asked by {s.peer}: {sentence}")
        if ": refused:" in sentence:
            resolve_in[name] = ResolveIn(wire, "refused", sentence)
        elif not steps:
            resolve_in[name] = ResolveIn(wire, "done", sentence)
        else:
            out.actions.append(RunDrbdadm(wire, name, steps))
            resolve_in[name] = ResolveIn(wire)
    if resolve_in != dict(s.resolve_in):
        s = evolve(s, resolve_in=resolve_in)
    answers = beat.resolve_answers if beat is not None else {}
    for request_id, r in list(s.resolving.items()):
        if not r.peer:
            continue
        lines, ok, left = list(r.said), r.ok, set(r.peer)
        for name in sorted(r.peer):
            a = answers.get(name)
            if a is not None and a[0] == r.wire:
                result, detail = a[1], a[2]
                lines.append(f"{name} on {s.peer}: {result}" + (f" ({detail})" if detail
                                                                and result != "done" else ""))
                ok = ok and result == "done"
                left.discard(name)
        if left and beat is None:
            lines.append(f"{s.peer} went away before running its half of "
                         f"{', '.join(sorted(left))}: run the same command there when it is "
                         "back")
            left.clear()
        elif left and now >= r.deadline - EPS:
            lines.append(f"no answer from {s.peer} for {', '.join(sorted(left))} within "
                         f"{RESOLVE_TIMEOUT:.0f} s: run the same command there")
            ok = False
            left.clear()
        if left == set(r.peer):
            continue
        for line in lines[len(r.said):]:
            out.warn(f"resolve-split-brain: {line}")
        s = _progress(s, request_id, replace(r, said=tuple(lines), ok=ok,
                                             peer=frozenset(left)), out)
    return s


def requests(s: CoreState) -> dict[str, tuple[str, int]]:
    """Published as ``sb``: our resolve-split-brain requests the peer has not answered."""
    return {name: (r.discard, r.wire) for r in s.resolving.values() for name in r.peer}


def answers(s: CoreState) -> dict[str, tuple[int, str, str]]:
    """Published as ``sba``: our answers, while the peer still asks."""
    beat = s.peer_state.beat
    asks = beat.resolve if beat is not None else {}
    return {name: (a.wire, a.result, a.detail) for name, a in s.resolve_in.items()
            if a.result is not None and asks.get(name, ("", -1))[1] == a.wire}


def deadlines(s: CoreState) -> list[float]:
    """When an admin command's state may change without an event: a resolve-split-brain's
    wait for the peer ends, a forced promotion left unused expires (``expire_force``)."""
    return ([r.deadline for r in s.resolving.values() if r.peer]
            + [f.deadline for f in s.force_data.values()])
