"""The rolling upgrade of the pair as a state machine (pure: no I/O, the clock passed in).

``begin`` checks the preconditions and plans the order: the node that owns nothing is
upgraded first, the other after a planned handover. ``advance`` looks at the pair as it
is now (a ``PairView``, read by the caller from both nodes) and returns the next plan and
the actions to carry out, each with the sentence that explains it. It is idempotent: the
caller persists the plan after every call and can stop and call it again (resume) at any
time; a step whose result is already visible is not repeated.

Any failure stops the upgrade with the pair serving: nothing is installed on the node
that serves until the other runs the new version healthily and has taken the groups over.
A handover that fails (the new version cannot run a group, or stops answering) gives the
groups back to the node on the old version. Every stop says who serves, from what the pair
shows, not from what was planned.

Preconditions (each refusal names the check): both nodes alive and each heard by the other
on every link, both saying their protocol version in their beats and at most one minor
apart (supervisor.core.compat), replicas UpToDate/UpToDate, no failed group, no slot on
trial, a slot B on both, neither node in maintenance mode, a node that owns nothing.

    precheck -> copy -> install-first -> reboot-first -> wait-first -> handover
             -> install-second -> reboot-second -> wait-second -> failback -> done
    (any step) -> stopped
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from supervisor.core.compat import negotiate
from supervisor.lifecycle.bundlecheck import version_key


class Step(StrEnum):
    COPY = "copy"
    INSTALL_FIRST = "install-first"
    REBOOT_FIRST = "reboot-first"
    WAIT_FIRST = "wait-first"
    HANDOVER = "handover"
    INSTALL_SECOND = "install-second"
    REBOOT_SECOND = "reboot-second"
    WAIT_SECOND = "wait-second"
    FAILBACK = "failback"
    DONE = "done"
    STOPPED = "stopped"


@dataclass(frozen=True)
class NodeView:
    name: str
    reachable: bool  # answers (its status, over the crossover link)
    version: str = ""  # running version
    healthy: bool = False  # its boot check is done (no slot on trial)
    installed: str = ""  # version waiting in its other slot for the next boot (or on trial)
    has_bundle: bool = False  # the bundle is on its disk
    owns: tuple[str, ...] = ()  # groups running here
    failure: str = ""  # its last update failure (twinbeat status), "" if none
    can_install: bool = True  # has a slot B


@dataclass(frozen=True)
class PairView:
    nodes: Mapping[str, NodeView]
    links: Mapping[str, str]  # link -> state, as the orchestrating node sees it
    peer_alive: bool
    replicas: tuple[tuple[str, str, str], ...] = ()  # (resource, disk, peer disk)
    groups: tuple[str, ...] = ()
    failed_groups: tuple[str, ...] = ()
    auto_failback: bool = False
    #: link -> the peer hears this node on it (its own view, from its beats)
    peer_hears: Mapping[str, bool | None] = field(default_factory=dict)
    #: both nodes' protocol minors as the beats say them (peer None: not heard; 0: a peer
    #: older than the field, which cannot take part in a rolling upgrade)
    protocol: int = 1
    peer_protocol: int | None = 1
    #: nodes in maintenance mode: twinbeat moves nothing there, so no planned handover
    maintenance: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timeouts:
    install: float = 3600.0
    rejoin: float = 1200.0  # reboot, boot check and resync of a node
    handover: float = 300.0
    #: a node still on its old slot this long after its reboot was asked: asked again once
    #: (the request was lost, or the driver stopped between saving the plan and asking)
    reboot: float = 300.0


def timeouts_for(groups: Sequence[tuple[int, float, float]]) -> Timeouts:
    """The bounds for a pair with these groups, each (resources, start_timeout,
    stop_timeout): a handover (and the failback) stops every resource on one node and starts
    it on the other, each within its own timeouts, so its bound is at least their sum (a
    database's first start may take minutes: the wizard gives it 300 s)."""
    need = sum(n * (start + stop) for n, start, stop in groups)
    default = Timeouts()
    return replace(default, handover=max(default.handover, need))


@dataclass(frozen=True)
class Plan:
    target: str
    old: str
    first: str
    second: str
    step: Step
    since: float  # when this step began
    home: tuple[str, ...] = ()  # the groups the second node served (given back at the end)
    asked: bool = False  # this step's action was issued (not issued twice)
    reason: str = ""
    asked_for: str = ""  # the node it was issued for (copy asks each node in turn)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "old": self.old, "first": self.first,
                "second": self.second, "step": self.step.value, "since": self.since,
                "home": list(self.home), "asked": self.asked, "reason": self.reason,
                "asked_for": self.asked_for}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Plan:
        return Plan(target=str(d["target"]), old=str(d["old"]), first=str(d["first"]),
                    second=str(d["second"]), step=Step(d["step"]), since=float(d["since"]),
                    home=tuple(str(g) for g in d.get("home") or ()),
                    asked=bool(d.get("asked")), reason=str(d.get("reason") or ""),
                    asked_for=str(d.get("asked_for") or ""))


@dataclass(frozen=True)
class Action:
    kind: str  # copy | install | reboot | standby | takeover
    node: str
    reason: str


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    actions: tuple[Action, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)


def preconditions(view: PairView) -> list[str]:
    """Every reason the pair is not whole now (empty: it is)."""
    out: list[str] = []
    if not view.peer_alive:
        out.append("the peer is not alive: both nodes must be up")
    down = [f"{name} ({state})" for name, state in view.links.items() if state != "up"]
    if down:
        out.append("not every link is up: " + ", ".join(down))
    elif view.peer_alive:
        deaf = [name for name in view.links if view.peer_hears.get(name) is False]
        if deaf:
            out.append("the peer does not hear this node on every link: " + ", ".join(deaf))
    for res, disk, peer in view.replicas:
        if (disk, peer) != ("UpToDate", "UpToDate"):
            out.append(f"replica {res} is {disk}/{peer}, not UpToDate/UpToDate")
    if view.failed_groups:
        out.append("failed group(s): " + ", ".join(view.failed_groups))
    if view.maintenance:
        out.append("in maintenance mode: " + ", ".join(view.maintenance)
                   + " (twinbeat moves nothing there; `twinbeat maintenance off` first)")
    for node in view.nodes.values():
        if not node.reachable:
            out.append(f"{node.name} does not answer")
        elif not node.healthy:
            out.append(f"{node.name} has a slot on trial (an update not yet judged)")
        elif not node.can_install:
            out.append(f"{node.name} has no slot B to install to")
    return out


def protocol_refusals(view: PairView) -> list[str]:
    """Both nodes must say their versions in their beats (minor 1 on) and be at most one
    protocol minor apart: the pair runs N with N-1 in the middle of the upgrade."""
    if view.peer_protocol is None:
        return []  # not heard: preconditions() already says the peer is not alive
    if view.peer_protocol == 0:
        return ["the peer does not say its version in its beats (protocol 0): it runs a "
                "twinbeat older than rolling upgrades; update it alone with "
                "`twinbeat install` first"]
    c = negotiate(view.protocol, "", view.peer_protocol, "")
    return [] if c.supported else [f"protocol versions: {c.reason}"]


def begin(view: PairView, target: str, now: float, allow_downgrade: bool = False, *,
          bundle_compatible: str | None = None, node_compatible: str | None = None) -> Outcome:
    """Check and plan; the plan is STOPPED (with the reasons) if the pair is not ready.
    ``bundle_compatible``/``node_compatible``: RAUC's compatible strings of the bundle and
    of this node (a bundle for another system is refused before it is copied anywhere)."""
    names = sorted(view.nodes)
    versions = {view.nodes[n].version for n in names}
    old = min(versions, key=version_key) if versions else ""
    idle = [n for n in names if not view.nodes[n].owns]
    first = idle[0] if idle else names[0]
    second = next(n for n in names if n != first)
    plan = Plan(target=target, old=old, first=first, second=second, step=Step.COPY,
                since=now, home=view.nodes[second].owns)
    refused = preconditions(view) + protocol_refusals(view)
    if bundle_compatible is not None and node_compatible is not None \
            and bundle_compatible != node_compatible:
        refused.append(f"the bundle is for {bundle_compatible or 'an unnamed system'}, this "
                       f"pair takes {node_compatible} bundles (another architecture or product)")
    if not allow_downgrade:
        for n in names:
            v = view.nodes[n].version
            if v and version_key(target) < version_key(v):
                refused.append(f"{n} runs {v}, newer than {target} (--allow-downgrade)")
        if all(view.nodes[n].version == target for n in names):
            refused.append(f"both nodes already run {target} (--allow-downgrade reinstalls "
                           "it)")
    if len(idle) == 0:
        refused.append("both nodes own groups: no node can be upgraded without an outage; "
                       "move every group to one node first (twinbeat standby)")
    if refused:
        return Outcome(replace(plan, step=Step.STOPPED, reason="refused: " + "; ".join(
            refused)), (), tuple(refused))
    why = (f"upgrading to {target}: {first} first (it owns nothing), then {second} after "
           f"a planned handover of {', '.join(plan.home) or 'nothing'}")
    return Outcome(plan, (), (why,))


def serving(view: PairView) -> str:
    """Who serves, as the pair shows it now (not as planned)."""
    parts = []
    for name in sorted(view.nodes):
        n = view.nodes[name]
        if n.owns and n.reachable:
            parts.append(f"{name} serves {', '.join(n.owns)} on {n.version or '?'}")
    if not parts:
        return "no node that answers serves the groups now: the supervisors decide who " \
               "takes them over"
    return "; ".join(parts)


def _stop(plan: Plan, view: PairView, why: str, *actions: Action) -> Outcome:
    if actions:
        then = "; ".join(a.reason for a in actions)
        text = f"stopped at {plan.step.value}: {why}; {then} (until then: {serving(view)})"
    else:
        text = f"stopped at {plan.step.value}: {why}; {serving(view)}"
    return Outcome(replace(plan, step=Step.STOPPED, reason=text), actions, (text,))


def _give_back(plan: Plan, view: PairView, why: str) -> Outcome:
    """A failed handover: the node on the old version takes its groups back."""
    old = view.nodes[plan.second]
    if old.reachable and not all(g in old.owns for g in plan.home):
        back = Action("takeover", plan.second,
                      f"{plan.second} takes {', '.join(plan.home)} back on {old.version}")
        return _stop(plan, view, why, back)
    return _stop(plan, view, why)


def _go(plan: Plan, step: Step, now: float, why: str) -> Outcome:
    return Outcome(replace(plan, step=step, since=now, asked=False, asked_for=""), (), (why,))


def _ask(plan: Plan, kind: str, node: str, why: str) -> Outcome:
    if plan.asked and plan.asked_for == node:
        return Outcome(plan, (), (f"waiting: {why}",))
    return Outcome(replace(plan, asked=True, asked_for=node), (Action(kind, node, why),), (why,))


def _settled(view: PairView) -> str:
    """Why the pair is not back to full health ("" when it is)."""
    problems = preconditions(view)
    return "; ".join(problems)


def advance(plan: Plan, view: PairView, now: float,
            timeouts: Timeouts = Timeouts()) -> Outcome:
    """The next plan and actions. ``now`` is the wall clock (the plan outlives a reboot of
    the node that runs it); a clock set back before the step began counts as no time."""
    if plan.step in (Step.DONE, Step.STOPPED):
        return Outcome(plan, (), (plan.reason,))
    first, second = view.nodes[plan.first], view.nodes[plan.second]
    waited = max(0.0, now - plan.since)
    step = plan.step

    # the node that serves must stay reachable while the other is being upgraded
    keeper = second if step.value in ("copy", "install-first", "reboot-first",
                                      "wait-first", "handover") else first
    if not keeper.reachable:
        if step is Step.HANDOVER:
            return _give_back(plan, view, f"{keeper.name}, which serves on {plan.old}, does "
                                          "not answer")
        return _stop(plan, view, f"{keeper.name}, which was to serve, does not answer")
    # maintenance switched on mid-way: no handover would happen; stop rather than wait
    if view.maintenance:
        return _stop(plan, view, "maintenance mode switched on for "
                     f"{', '.join(view.maintenance)}: the upgrade leaves the pair alone")
    # a group that fails while the pair is being upgraded stops it (no step waits it out)
    if view.failed_groups:
        why = f"group(s) failed during the upgrade: {', '.join(view.failed_groups)}"
        if step is Step.HANDOVER:
            return _give_back(plan, view, why)
        return _stop(plan, view, why)

    if step is Step.COPY:
        missing = [n for n in (first, second) if not n.has_bundle]
        if not missing:
            return _go(plan, Step.INSTALL_FIRST, now, "the bundle is on both nodes")
        if plan.asked and plan.asked_for == missing[0].name and missing[0].failure:
            return _stop(plan, view, f"copying the bundle to {missing[0].name} failed: "
                               f"{missing[0].failure}")
        if waited > timeouts.install:
            return _stop(plan, view, f"the bundle did not reach {missing[0].name}")
        return _ask(plan, "copy", missing[0].name,
                    f"copying the bundle to {missing[0].name} over the crossover link")

    if step in (Step.INSTALL_FIRST, Step.INSTALL_SECOND):
        node = first if step is Step.INSTALL_FIRST else second
        nxt = Step.REBOOT_FIRST if step is Step.INSTALL_FIRST else Step.REBOOT_SECOND
        if node.installed == plan.target:
            return _go(plan, nxt, now, f"{plan.target} is installed on {node.name}")
        if plan.asked and node.failure:
            return _stop(plan, view, f"installing on {node.name} failed: {node.failure}")
        if waited > timeouts.install:
            return _stop(plan, view, f"installing on {node.name} took over "
                               f"{timeouts.install:.0f} s")
        return _ask(plan, "install", node.name,
                    f"installing {plan.target} into {node.name}'s other slot")

    if step in (Step.REBOOT_FIRST, Step.REBOOT_SECOND):
        node = first if step is Step.REBOOT_FIRST else second
        nxt = Step.WAIT_FIRST if step is Step.REBOOT_FIRST else Step.WAIT_SECOND
        if node.owns:
            return _stop(plan, view, f"{node.name} owns {', '.join(node.owns)}: not rebooting it")
        return Outcome(replace(plan, step=nxt, since=now, asked=True, asked_for=node.name),
                       (Action("reboot", node.name, f"rebooting {node.name} into "
                               f"{plan.target}"),), (f"rebooting {node.name} into {plan.target}",))

    if step in (Step.WAIT_FIRST, Step.WAIT_SECOND):
        node = first if step is Step.WAIT_FIRST else second
        nxt = Step.HANDOVER if step is Step.WAIT_FIRST else Step.FAILBACK
        if node.reachable and node.installed == plan.target and node.version != plan.target:
            # still on its old slot, the new one waiting: the reboot has not happened yet
            if node.owns:
                return _stop(plan, view, f"{node.name} owns {', '.join(node.owns)}: not "
                                         "rebooting it")
            if waited > timeouts.reboot and plan.asked_for != f"{node.name} again":
                return Outcome(replace(plan, asked=True, asked_for=f"{node.name} again"),
                               (Action("reboot", node.name, f"rebooting {node.name} into "
                                       f"{plan.target} (still on {node.version} after "
                                       f"{waited:.0f} s)"),),
                               (f"{node.name} has not rebooted yet: asking again",))
            if waited > timeouts.rejoin:
                return _stop(plan, view, f"{node.name} did not reboot into {plan.target} "
                                         f"within {timeouts.rejoin:.0f} s")
            return Outcome(plan, (), (f"waiting: {node.name} to reboot into {plan.target}",))
        if node.reachable and node.healthy and node.version not in ("", plan.target):
            return _stop(plan, view, f"{node.name} rolled back to {node.version}: "
                               f"{node.failure or 'its new slot failed'}")
        trouble = ""
        if not (node.reachable and node.version == plan.target and node.healthy):
            trouble = f"{node.name} is not back healthy on {plan.target} yet"
        else:
            trouble = _settled(view)
        if not trouble:
            return _go(plan, nxt, now, f"{node.name} runs {plan.target}, healthy, and the "
                       "pair is whole again (every link up, replicas UpToDate)")
        if waited > timeouts.rejoin:
            return _stop(plan, view, f"not whole within {timeouts.rejoin:.0f} s: {trouble}")
        return Outcome(plan, (), (f"waiting: {trouble}",))

    if step is Step.HANDOVER:
        if not second.owns and all(g in first.owns for g in plan.home):
            return _go(plan, Step.INSTALL_SECOND, now,
                       f"{plan.first} serves {', '.join(plan.home) or 'nothing'}")
        if not first.reachable:
            return _give_back(plan, view, f"{plan.first}, on {plan.target}, stopped "
                                          "answering during the handover")
        if waited > timeouts.handover:
            return _give_back(plan, view, f"the handover to {plan.first} did not finish "
                                          f"within {timeouts.handover:.0f} s")
        return _ask(plan, "standby", second.name,
                    f"planned handover: {plan.second} hands "
                    f"{', '.join(plan.home) or 'its groups'} to {plan.first}")

    # FAILBACK
    if not view.auto_failback or not plan.home:
        text = (f"done: both nodes run {plan.target}; {plan.first} keeps the groups "
                "(auto_failback is off)" if plan.home else
                f"done: both nodes run {plan.target}")
        return Outcome(replace(plan, step=Step.DONE, reason=text), (), (text,))
    if all(g in second.owns for g in plan.home):
        text = f"done: both nodes run {plan.target}; {plan.second} serves its groups again"
        return Outcome(replace(plan, step=Step.DONE, reason=text), (), (text,))
    if waited > timeouts.handover:
        return _stop(plan, view, f"giving the groups back to {plan.second} did not finish")
    return _ask(plan, "takeover", second.name,
                f"auto_failback: {plan.second} takes {', '.join(plan.home)} back")


def mixed(versions: Mapping[str, str]) -> str:
    """The status line while the two nodes run different versions ("" when they agree)."""
    if len(set(versions.values())) <= 1:
        return ""
    return "mixed versions: " + ", ".join(f"{n} {v}" for n, v in sorted(versions.items()))
