"""The rolling upgrade's state machine: the whole walk on a healthy pair, every
precondition refusal, and every failure step stopping with the pair serving."""

from __future__ import annotations

from dataclasses import replace

import pytest

from supervisor.lifecycle.upgrade import (
    NodeView,
    Outcome,
    PairView,
    Plan,
    Step,
    Timeouts,
    advance,
    begin,
    mixed,
)

LINKS = {"serial": "up", "crossover": "up", "public": "up"}
N, N1 = "0.1.0", "0.1.1"


def node(name: str, **kw: object) -> NodeView:
    base = NodeView(name=name, reachable=True, version=N, healthy=True, has_bundle=True)
    return replace(base, **kw)  # type: ignore[arg-type]


def pair(n1: NodeView, n2: NodeView, **kw: object) -> PairView:
    base = PairView(nodes={"node1": n1, "node2": n2}, links=dict(LINKS), peer_alive=True,
                    replicas=(("r0", "UpToDate", "UpToDate"),), groups=("service",),
                    auto_failback=True)
    return replace(base, **kw)  # type: ignore[arg-type]


SERVING = pair(node("node1", owns=("service",)), node("node2"))


def test_a_healthy_pair_goes_all_the_way_with_one_planned_handover() -> None:
    out = begin(SERVING, N1, 0.0)
    assert out.plan.step is Step.COPY
    assert out.reasons == ("upgrading to 0.1.1: node2 first (it owns nothing), then node1 "
                           "after a planned handover of service",)
    plan = out.plan
    actions: list[tuple[str, str]] = []

    def now_at() -> Step:
        return plan.step

    def step(view: PairView, t: float) -> Outcome:
        nonlocal plan
        o = advance(plan, view, t)
        plan = o.plan
        actions.extend((a.kind, a.node) for a in o.actions)
        return o

    step(SERVING, 1)  # bundle on both
    assert now_at() is Step.INSTALL_FIRST
    step(SERVING, 2)
    assert actions[-1] == ("install", "node2")
    step(SERVING, 3)  # install still running: not asked twice
    assert actions.count(("install", "node2")) == 1
    installed = pair(node("node1", owns=("service",)), node("node2", installed=N1))
    step(installed, 50)
    step(installed, 51)
    assert actions[-1] == ("reboot", "node2") and now_at() is Step.WAIT_FIRST
    rebooting = pair(node("node1", owns=("service",)), node("node2", reachable=False),
                     peer_alive=False, links={**LINKS, "crossover": "down"})
    o = step(rebooting, 60)
    assert now_at() is Step.WAIT_FIRST and o.reasons[0].startswith("waiting:")
    resyncing = pair(node("node1", owns=("service",)), node("node2", version=N1),
                     replicas=(("r0", "UpToDate", "Inconsistent"),))
    o = step(resyncing, 200)
    assert o.reasons == ("waiting: replica r0 is UpToDate/Inconsistent, not "
                         "UpToDate/UpToDate",)
    back = pair(node("node1", owns=("service",)), node("node2", version=N1))
    step(back, 250)
    assert now_at() is Step.HANDOVER
    step(back, 251)
    assert actions[-1] == ("standby", "node1")
    moved = pair(node("node1"), node("node2", version=N1, owns=("service",)))
    step(moved, 260)
    assert now_at() is Step.INSTALL_SECOND
    step(moved, 261)
    assert actions[-1] == ("install", "node1")
    moved_installed = pair(node("node1", installed=N1),
                           node("node2", version=N1, owns=("service",)))
    step(moved_installed, 300)
    step(moved_installed, 301)
    assert actions[-1] == ("reboot", "node1")
    both = pair(node("node1", version=N1), node("node2", version=N1, owns=("service",)))
    step(both, 500)
    assert now_at() is Step.FAILBACK
    step(both, 501)
    assert actions[-1] == ("takeover", "node1")
    home = pair(node("node1", version=N1, owns=("service",)), node("node2", version=N1))
    o = step(home, 510)
    assert now_at() is Step.DONE
    assert o.reasons == ("done: both nodes run 0.1.1; node1 serves its groups again",)
    assert [a for a, _ in actions] == ["install", "reboot", "standby", "install", "reboot",
                                      "takeover"]
    # resumable: the plan survives JSON, and a finished plan stays finished
    assert Plan.from_json(plan.to_json()) == plan
    assert advance(plan, home, 600).plan == plan


def test_without_auto_failback_the_groups_stay() -> None:
    plan = Plan(N1, N, "node2", "node1", Step.FAILBACK, 0.0, home=("service",))
    view = pair(node("node1", version=N1), node("node2", version=N1, owns=("service",)),
                auto_failback=False)
    o = advance(plan, view, 1)
    assert o.plan.step is Step.DONE and o.actions == ()
    assert "auto_failback is off" in o.reasons[0]


@pytest.mark.parametrize(("view", "reason"), [
    (replace(SERVING, peer_alive=False), "the peer is not alive: both nodes must be up"),
    (replace(SERVING, links={**LINKS, "serial": "down"}),
     "not every link is up: serial (down)"),
    (replace(SERVING, replicas=(("r0", "UpToDate", "Outdated"),)),
     "replica r0 is UpToDate/Outdated, not UpToDate/UpToDate"),
    (replace(SERVING, failed_groups=("service",)), "failed group(s): service"),
    (pair(node("node1", owns=("service",)), node("node2", healthy=False)),
     "node2 has a slot on trial (an update not yet judged)"),
    (pair(node("node1", owns=("service",)), node("node2", can_install=False)),
     "node2 has no slot B to install to"),
    (pair(node("node1", owns=("service",)), node("node2", version="0.2.0")),
     "node2 runs 0.2.0, newer than 0.1.1 (--allow-downgrade)"),
    (pair(node("node1", owns=("a",)), node("node2", owns=("b",))),
     "both nodes own groups: no node can be upgraded without an outage; move every group "
     "to one node first (twinbeat standby)"),
])
def test_every_precondition_refuses_with_its_reason(view: PairView, reason: str) -> None:
    out = begin(view, N1, 0.0)
    assert out.plan.step is Step.STOPPED
    assert reason in out.reasons
    assert out.actions == ()


def at(step: Step, **kw: object) -> Plan:
    return replace(Plan(N1, N, "node2", "node1", step, 0.0, home=("service",)), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("plan", "view", "now", "why"), [
    (at(Step.COPY), pair(node("node1", owns=("service",)), node("node2", has_bundle=False)),
     4000, "stopped at copy: the bundle did not reach node2; node1 keeps serving"),
    (at(Step.COPY, asked=True, asked_for="node2"),
     pair(node("node1", owns=("service",)),
          node("node2", has_bundle=False, failure="no room for the bundle")), 5,
     "stopped at copy: copying the bundle to node2 failed: no room for the bundle; node1 "
     "keeps serving"),
    (at(Step.INSTALL_FIRST, asked=True),
     pair(node("node1", owns=("service",)), node("node2", failure="no space left")), 5,
     "stopped at install-first: installing on node2 failed: no space left; node1 keeps "
     "serving"),
    (at(Step.WAIT_FIRST), pair(node("node1", owns=("service",)),
                               node("node2", failure="twinbeat.service failed")), 5,
     "stopped at wait-first: node2 rolled back to 0.1.0: twinbeat.service failed; node1 "
     "keeps serving"),
    (at(Step.WAIT_FIRST), pair(node("node1", owns=("service",)), node("node2",
                                                                      reachable=False)),
     2000, "stopped at wait-first: not whole within 1200 s: node2 is not back healthy on "
     "0.1.1 yet; node1 keeps serving"),
    (at(Step.HANDOVER), pair(node("node1", owns=("service",)), node("node2", version=N1)),
     400, "stopped at handover: the handover to node2 did not finish within 300 s; node1 "
     "keeps serving"),
    (at(Step.INSTALL_SECOND), pair(node("node1"), node("node2", reachable=False)), 5,
     "stopped at install-second: node2, which serves, does not answer; node2 keeps serving"),
    (at(Step.WAIT_FIRST), pair(node("node1", reachable=False), node("node2")), 5,
     "stopped at wait-first: node1, which serves, does not answer; node1 keeps serving"),
])
def test_every_failure_stops_and_keeps_serving(plan: Plan, view: PairView, now: float,
                                               why: str) -> None:
    out = advance(plan, view, now, Timeouts())
    assert out.plan.step is Step.STOPPED
    assert out.reasons == (why,)
    assert out.actions == ()
    # and it stays stopped: nothing more is done
    assert advance(out.plan, view, now + 1).actions == ()


def test_a_node_that_still_owns_a_group_is_not_rebooted() -> None:
    out = advance(at(Step.REBOOT_SECOND), pair(node("node1", owns=("service",)),
                                               node("node2", version=N1)), 1)
    assert out.plan.step is Step.STOPPED and out.actions == ()


def test_mixed_versions_are_named() -> None:
    assert mixed({"node1": "0.1.0", "node2": "0.1.1"}) == \
        "mixed versions: node1 0.1.0, node2 0.1.1"
    assert mixed({"node1": "0.1.1", "node2": "0.1.1"}) == ""
