"""The rolling upgrade of the pair as a state machine (pure: no I/O, the clock passed in).

``begin`` checks the preconditions and plans the order: the node that owns nothing is
upgraded first, the other after a planned handover. ``advance`` looks at the pair as it
is now (a ``PairView``, read by the caller from both nodes) and returns the next plan and
the actions to carry out, each with the sentence that explains it. It is idempotent: the
caller persists the plan after every call and can stop and call it again (resume) at any
time; a step whose result is already visible is not repeated.

Any failure stops the upgrade with the pair serving: nothing is installed on the node
that serves until the other runs the new version healthily and has taken the groups over.

    precheck -> copy -> install-first -> reboot-first -> wait-first -> handover
             -> install-second -> reboot-second -> wait-second -> failback -> done
    (any step) -> stopped
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

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
    installed: str = ""  # version waiting in its other slot for the next boot
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


@dataclass(frozen=True)
class Timeouts:
    install: float = 3600.0
    rejoin: float = 1200.0  # reboot, boot check and resync of a node
    handover: float = 300.0


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
    """Every reason the pair cannot be upgraded now (empty: it can)."""
    out: list[str] = []
    if not view.peer_alive:
        out.append("the peer is not alive: both nodes must be up")
    down = [f"{name} ({state})" for name, state in view.links.items() if state != "up"]
    if down:
        out.append("not every link is up: " + ", ".join(down))
    for res, disk, peer in view.replicas:
        if (disk, peer) != ("UpToDate", "UpToDate"):
            out.append(f"replica {res} is {disk}/{peer}, not UpToDate/UpToDate")
    if view.failed_groups:
        out.append("failed group(s): " + ", ".join(view.failed_groups))
    for node in view.nodes.values():
        if not node.reachable:
            out.append(f"{node.name} does not answer")
        elif not node.healthy:
            out.append(f"{node.name} has a slot on trial (an update not yet judged)")
        elif not node.can_install:
            out.append(f"{node.name} has no slot B to install to")
    return out


def begin(view: PairView, target: str, now: float, allow_downgrade: bool = False) -> Outcome:
    """Check and plan; the plan is STOPPED (with the reasons) if the pair is not ready."""
    names = sorted(view.nodes)
    versions = {view.nodes[n].version for n in names}
    old = min(versions, key=version_key) if versions else ""
    idle = [n for n in names if not view.nodes[n].owns]
    first = idle[0] if idle else names[0]
    second = next(n for n in names if n != first)
    plan = Plan(target=target, old=old, first=first, second=second, step=Step.COPY,
                since=now, home=view.nodes[second].owns)
    refused = preconditions(view)
    if not allow_downgrade:
        for n in names:
            v = view.nodes[n].version
            if v and version_key(target) < version_key(v):
                refused.append(f"{n} runs {v}, newer than {target} (--allow-downgrade)")
    if len(idle) == 0:
        refused.append("both nodes own groups: no node can be upgraded without an outage; "
                       "move every group to one node first (twinbeat standby)")
    if refused:
        return Outcome(replace(plan, step=Step.STOPPED, reason="refused: " + "; ".join(
            refused)), (), tuple(refused))
    why = (f"upgrading to {target}: {first} first (it owns nothing), then {second} after "
           f"a planned handover of {', '.join(plan.home) or 'nothing'}")
    return Outcome(plan, (), (why,))


def _stop(plan: Plan, why: str) -> Outcome:
    serving = plan.second if plan.step.value in (
        "copy", "install-first", "reboot-first", "wait-first", "handover") else plan.first
    text = f"stopped at {plan.step.value}: {why}; {serving} keeps serving"
    return Outcome(replace(plan, step=Step.STOPPED, reason=text), (), (text,))


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
    if plan.step in (Step.DONE, Step.STOPPED):
        return Outcome(plan, (), (plan.reason,))
    first, second = view.nodes[plan.first], view.nodes[plan.second]
    waited = now - plan.since
    step = plan.step

    # the node that serves must stay reachable while the other is being upgraded
    serving = second if step.value in ("copy", "install-first", "reboot-first",
                                       "wait-first", "handover") else first
    if not serving.reachable:
        return _stop(plan, f"{serving.name}, which serves, does not answer")

    if step is Step.COPY:
        missing = [n for n in (first, second) if not n.has_bundle]
        if not missing:
            return _go(plan, Step.INSTALL_FIRST, now, "the bundle is on both nodes")
        if plan.asked and plan.asked_for == missing[0].name and missing[0].failure:
            return _stop(plan, f"copying the bundle to {missing[0].name} failed: "
                               f"{missing[0].failure}")
        if waited > timeouts.install:
            return _stop(plan, f"the bundle did not reach {missing[0].name}")
        return _ask(plan, "copy", missing[0].name,
                    f"copying the bundle to {missing[0].name} over the crossover link")

    if step in (Step.INSTALL_FIRST, Step.INSTALL_SECOND):
        node = first if step is Step.INSTALL_FIRST else second
        nxt = Step.REBOOT_FIRST if step is Step.INSTALL_FIRST else Step.REBOOT_SECOND
        if node.installed == plan.target:
            return _go(plan, nxt, now, f"{plan.target} is installed on {node.name}")
        if plan.asked and node.failure:
            return _stop(plan, f"installing on {node.name} failed: {node.failure}")
        if waited > timeouts.install:
            return _stop(plan, f"installing on {node.name} took over "
                               f"{timeouts.install:.0f} s")
        return _ask(plan, "install", node.name,
                    f"installing {plan.target} into {node.name}'s other slot")

    if step in (Step.REBOOT_FIRST, Step.REBOOT_SECOND):
        node = first if step is Step.REBOOT_FIRST else second
        nxt = Step.WAIT_FIRST if step is Step.REBOOT_FIRST else Step.WAIT_SECOND
        if node.owns:
            return _stop(plan, f"{node.name} owns {', '.join(node.owns)}: not rebooting it")
        return Outcome(replace(plan, step=nxt, since=now, asked=False, asked_for=""),
                       (Action("reboot", node.name, f"rebooting {node.name} into "
                               f"{plan.target}"),), (f"rebooting {node.name} into {plan.target}",))

    if step in (Step.WAIT_FIRST, Step.WAIT_SECOND):
        node = first if step is Step.WAIT_FIRST else second
        nxt = Step.HANDOVER if step is Step.WAIT_FIRST else Step.FAILBACK
        if node.reachable and node.healthy and node.version not in ("", plan.target):
            return _stop(plan, f"{node.name} rolled back to {node.version}: "
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
            return _stop(plan, f"not whole within {timeouts.rejoin:.0f} s: {trouble}")
        return Outcome(plan, (), (f"waiting: {trouble}",))

    if step is Step.HANDOVER:
        if not second.owns and all(g in first.owns for g in plan.home):
            return _go(plan, Step.INSTALL_SECOND, now,
                       f"{plan.first} serves {', '.join(plan.home) or 'nothing'}")
        if waited > timeouts.handover:
            return _stop(plan, f"the handover to {plan.first} did not finish within "
                               f"{timeouts.handover:.0f} s")
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
        return _stop(plan, f"giving the groups back to {plan.second} did not finish")
    return _ask(plan, "takeover", second.name,
                f"auto_failback: {plan.second} takes {', '.join(plan.home)} back")


def mixed(versions: Mapping[str, str]) -> str:
    """The status line while the two nodes run different versions ("" when they agree)."""
    if len(set(versions.values())) <= 1:
        return ""
    return "mixed versions: " + ", ".join(f"{n} {v}" for n, v in sorted(versions.items()))
