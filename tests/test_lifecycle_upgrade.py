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
    timeouts_for,
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
    (replace(SERVING, peer_hears={"serial": True, "crossover": False, "public": True}),
     "the peer does not hear this node on every link: crossover"),
    (replace(SERVING, peer_protocol=0),
     "the peer does not say its version in its beats (protocol 0): it runs a twinbeat older "
     "than rolling upgrades; update it alone with `twinbeat install` first"),
    (replace(SERVING, protocol=3, peer_protocol=1),
     "protocol versions: the peer is 2 protocol versions behind (1 with 3); more than one "
     "version apart: upgrade the older node first"),
    (pair(node("node1", owns=("service",)), node("node2", reachable=False)),
     "node2 does not answer"),
    (replace(SERVING, maintenance=("node2",)),
     "in maintenance mode: node2 (twinbeat moves nothing there; `twinbeat maintenance off` "
     "first)"),
    (pair(node("node1", owns=("service",)), node("node2", healthy=False)),
     "node2 has a slot on trial (an update not yet judged)"),
    (pair(node("node1", owns=("service",)), node("node2", can_install=False)),
     "node2 has no slot B to install to"),
    (pair(node("node1", owns=("service",)), node("node2", version="0.2.0")),
     "node2 runs 0.2.0, newer than 0.1.1 (--allow-downgrade)"),
    (pair(node("node1", owns=("service",), version=N1), node("node2", version=N1)),
     "both nodes already run 0.1.1 (--allow-downgrade reinstalls it)"),
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


OLD_SERVES = "node1 serves service on 0.1.0"


@pytest.mark.parametrize(("plan", "view", "now", "why"), [
    (at(Step.COPY), pair(node("node1", owns=("service",)), node("node2", has_bundle=False)),
     4000, "stopped at copy: the bundle did not reach node2; " + OLD_SERVES),
    (at(Step.COPY, asked=True, asked_for="node2"),
     pair(node("node1", owns=("service",)),
          node("node2", has_bundle=False, failure="no room for the bundle")), 5,
     "stopped at copy: copying the bundle to node2 failed: no room for the bundle; "
     + OLD_SERVES),
    (at(Step.INSTALL_FIRST, asked=True),
     pair(node("node1", owns=("service",)), node("node2", failure="no space left")), 5,
     "stopped at install-first: installing on node2 failed: no space left; " + OLD_SERVES),
    (at(Step.INSTALL_FIRST, asked=True),
     pair(node("node1", owns=("service",)), node("node2")), 3601,
     "stopped at install-first: installing on node2 took over 3600 s; " + OLD_SERVES),
    (at(Step.REBOOT_FIRST), pair(node("node1", owns=("service",)),
                                 node("node2", installed=N1, owns=("other",))), 5,
     "stopped at reboot-first: node2 owns other: not rebooting it; node1 serves service "
     "on 0.1.0; node2 serves other on 0.1.0"),
    (at(Step.WAIT_FIRST), pair(node("node1", owns=("service",)),
                               node("node2", failure="twinbeat.service failed")), 5,
     "stopped at wait-first: node2 rolled back to 0.1.0: twinbeat.service failed; "
     + OLD_SERVES),
    (at(Step.WAIT_FIRST), pair(node("node1", owns=("service",)), node("node2",
                                                                      reachable=False)),
     2000, "stopped at wait-first: not whole within 1200 s: node2 is not back healthy on "
     "0.1.1 yet; " + OLD_SERVES),
    (at(Step.WAIT_FIRST), pair(node("node1", owns=("service",)), node("node2", version=N1),
                               replicas=(("r0", "UpToDate", "Inconsistent"),)),
     2000, "stopped at wait-first: not whole within 1200 s: replica r0 is "
     "UpToDate/Inconsistent, not UpToDate/UpToDate; " + OLD_SERVES),
    (at(Step.WAIT_FIRST, asked=True, asked_for="node2 again"),
     pair(node("node1", owns=("service",)), node("node2", installed=N1)), 1300,
     "stopped at wait-first: node2 did not reboot into 0.1.1 within 1200 s; " + OLD_SERVES),
    (at(Step.WAIT_FIRST), pair(node("node1", owns=("service",)), node("node2", version=N1),
                               failed_groups=("service",)), 5,
     "stopped at wait-first: group(s) failed during the upgrade: service; " + OLD_SERVES),
    (at(Step.WAIT_FIRST), pair(node("node1", reachable=False, owns=("service",)),
                               node("node2", version=N1)), 5,
     "stopped at wait-first: node1, which was to serve, does not answer; no node that "
     "answers serves the groups now: the supervisors decide who takes them over"),
    # after the handover node2 serves on the new version; node1 on the old one stays so
    (at(Step.INSTALL_SECOND, asked=True),
     pair(node("node1", failure="no space left"),
          node("node2", version=N1, owns=("service",))), 5,
     "stopped at install-second: installing on node1 failed: no space left; node2 serves "
     "service on 0.1.1"),
    (at(Step.INSTALL_SECOND), pair(node("node1"), node("node2", reachable=False)), 5,
     "stopped at install-second: node2, which was to serve, does not answer; no node that "
     "answers serves the groups now: the supervisors decide who takes them over"),
    (at(Step.WAIT_SECOND), pair(node("node1", failure="twinbeat.service failed"),
                                node("node2", version=N1, owns=("service",))), 5,
     "stopped at wait-second: node1 rolled back to 0.1.0: twinbeat.service failed; node2 "
     "serves service on 0.1.1"),
    (at(Step.INSTALL_FIRST, asked=True), replace(SERVING, maintenance=("node1",)), 5,
     "stopped at install-first: maintenance mode switched on for node1: the upgrade leaves "
     "the pair alone; " + OLD_SERVES),
    (at(Step.FAILBACK), pair(node("node1", version=N1),
                             node("node2", version=N1, owns=("service",))), 400,
     "stopped at failback: giving the groups back to node1 did not finish; node2 serves "
     "service on 0.1.1"),
])
def test_every_failure_stops_and_says_who_serves(plan: Plan, view: PairView, now: float,
                                                why: str) -> None:
    out = advance(plan, view, now, Timeouts())
    assert out.plan.step is Step.STOPPED
    assert out.reasons == (why,)
    assert out.plan.reason == why
    assert out.actions == ()
    # and it stays stopped: nothing more is done
    assert advance(out.plan, view, now + 1).actions == ()


@pytest.mark.parametrize(("view", "now", "why"), [
    # the new version cannot run the group: it fails on node2 during the handover
    (pair(node("node1"), node("node2", version=N1, owns=("service",)),
          failed_groups=("service",)), 5,
     "stopped at handover: group(s) failed during the upgrade: service; node1 takes service "
     "back on 0.1.0 (until then: node2 serves service on 0.1.1)"),
    # node2, on the new version, stops answering while it takes the groups
    (pair(node("node1"), node("node2", reachable=False)), 5,
     "stopped at handover: node2, on 0.1.1, stopped answering during the handover; node1 "
     "takes service back on 0.1.0 (until then: no node that answers serves the groups now: "
     "the supervisors decide who takes them over)"),
    # the handover does not finish in time (the group stopped on node1, not started on node2)
    (pair(node("node1"), node("node2", version=N1)), 400,
     "stopped at handover: the handover to node2 did not finish within 300 s; node1 takes "
     "service back on 0.1.0 (until then: no node that answers serves the groups now: the "
     "supervisors decide who takes them over)"),
])
def test_a_failed_handover_gives_the_groups_back_to_the_old_version(
        view: PairView, now: float, why: str) -> None:
    out = advance(at(Step.HANDOVER, asked=True, asked_for="node1"), view, now)
    assert out.plan.step is Step.STOPPED
    assert out.reasons == (why,)
    assert [(a.kind, a.node) for a in out.actions] == [("takeover", "node1")]
    assert advance(out.plan, view, now + 1).actions == ()


def test_the_handover_bound_covers_the_groups_own_start_and_stop_timeouts() -> None:
    """A handover stops each resource on one node and starts it on the other: with the
    wizard's database group (seven resources that may each take 300 s to start, 60 s to
    stop) it is not given back after 300 s, only once their sum has passed; small groups
    keep the default."""
    assert timeouts_for([]).handover == Timeouts().handover == 300.0
    assert timeouts_for([(3, 20.0, 20.0)]).handover == 300.0
    slow = timeouts_for([(7, 300.0, 60.0)])
    assert slow.handover == 7 * 360.0
    assert (slow.install, slow.rejoin, slow.reboot) == (
        Timeouts().install, Timeouts().rejoin, Timeouts().reboot)
    view = pair(node("node1"), node("node2", version=N1))
    plan = at(Step.HANDOVER, asked=True, asked_for="node1")
    assert advance(plan, view, 400, slow).plan.step is Step.HANDOVER  # still waiting
    out = advance(plan, view, 7 * 360.0 + 1, slow)
    assert out.plan.step is Step.STOPPED
    assert "did not finish within 2520 s" in out.reasons[0]


def test_a_failed_handover_with_the_groups_still_home_only_stops() -> None:
    view = pair(node("node1", owns=("service",)), node("node2", version=N1),
                failed_groups=("service",))
    out = advance(at(Step.HANDOVER, asked=True, asked_for="node1"), view, 5)
    assert out.plan.step is Step.STOPPED and out.actions == ()
    assert out.reasons == ("stopped at handover: group(s) failed during the upgrade: "
                           "service; " + OLD_SERVES,)


def test_the_serving_node_gone_during_the_handover_stops_without_asking_it() -> None:
    view = pair(node("node1", reachable=False, owns=("service",)), node("node2", version=N1))
    out = advance(at(Step.HANDOVER, asked=True, asked_for="node1"), view, 5)
    assert out.plan.step is Step.STOPPED and out.actions == ()
    assert out.reasons[0].startswith("stopped at handover: node1, which serves on 0.1.0, "
                                     "does not answer; no node that answers")


def test_a_node_that_still_owns_a_group_is_not_rebooted() -> None:
    out = advance(at(Step.REBOOT_SECOND), pair(node("node1", owns=("service",)),
                                               node("node2", version=N1)), 1)
    assert out.plan.step is Step.STOPPED and out.actions == ()


def test_mixed_versions_are_named() -> None:
    assert mixed({"node1": "0.1.0", "node2": "0.1.1"}) == \
        "mixed versions: node1 0.1.0, node2 0.1.1"
    assert mixed({"node1": "0.1.1", "node2": "0.1.1"}) == ""


def test_a_peer_one_protocol_version_behind_may_be_upgraded() -> None:
    out = begin(replace(SERVING, protocol=2, peer_protocol=1), N1, 0.0)
    assert out.plan.step is Step.COPY


def test_a_pair_that_hears_itself_everywhere_is_not_refused() -> None:
    view = replace(SERVING, peer_hears={"serial": True, "crossover": True, "public": True})
    assert begin(view, N1, 0.0).plan.step is Step.COPY


def test_a_reboot_not_done_is_asked_again_once_then_stops() -> None:
    """The driver persists the plan before it acts: stopped between the two, the reboot
    was never asked. The node still on its old slot with the new one waiting is not a
    rollback; after Timeouts.reboot the reboot is asked once more."""
    waiting = pair(node("node1", owns=("service",)), node("node2", installed=N1))
    plan = at(Step.REBOOT_FIRST)
    out = advance(plan, waiting, 10)
    assert [(a.kind, a.node) for a in out.actions] == [("reboot", "node2")]
    plan = out.plan
    assert (plan.step, plan.asked_for) == (Step.WAIT_FIRST, "node2")
    out = advance(plan, waiting, 100)
    assert out.plan == plan and out.actions == ()
    assert out.reasons == ("waiting: node2 to reboot into 0.1.1",)
    out = advance(plan, waiting, 311)
    assert [(a.kind, a.node) for a in out.actions] == [("reboot", "node2")]
    assert out.reasons == ("node2 has not rebooted yet: asking again",)
    plan = out.plan
    assert advance(plan, waiting, 320).actions == ()
    assert advance(plan, waiting, 1211).plan.step is Step.STOPPED


def test_a_clock_set_back_counts_as_no_time() -> None:
    plan = at(Step.WAIT_FIRST, since=10_000.0)
    view = pair(node("node1", owns=("service",)), node("node2", reachable=False))
    out = advance(plan, view, 5.0)
    assert out.plan.step is Step.WAIT_FIRST
    assert out.reasons == ("waiting: node2 is not back healthy on 0.1.1 yet",)


def _walk() -> list[tuple[Plan, PairView, float]]:
    """(plan, view, now) at every step of a healthy upgrade, before the step's action."""
    v0 = SERVING
    inst = pair(node("node1", owns=("service",)), node("node2", installed=N1))
    back = pair(node("node1", owns=("service",)), node("node2", version=N1))
    moved = pair(node("node1"), node("node2", version=N1, owns=("service",)))
    inst2 = pair(node("node1", installed=N1), node("node2", version=N1, owns=("service",)))
    both = pair(node("node1", version=N1), node("node2", version=N1, owns=("service",)))
    return [(at(Step.COPY), replace(v0, nodes={"node1": node("node1", owns=("service",)),
                                                "node2": node("node2", has_bundle=False)}), 1),
            (at(Step.INSTALL_FIRST), v0, 2), (at(Step.REBOOT_FIRST), inst, 3),
            (at(Step.WAIT_FIRST), back, 4), (at(Step.HANDOVER), back, 5),
            (at(Step.INSTALL_SECOND), moved, 6), (at(Step.REBOOT_SECOND), inst2, 7),
            (at(Step.WAIT_SECOND), both, 8), (at(Step.FAILBACK), both, 9)]


@pytest.mark.parametrize(("plan", "view", "now"), _walk(),
                         ids=[p.step.value for p, _, _ in _walk()])
def test_interrupted_at_any_step_the_saved_plan_resumes_without_repeating(
        plan: Plan, view: PairView, now: float) -> None:
    """The edge saves the plan (JSON) after every call; a resumed run reads it back. Read
    back, it decides exactly as before, and an action already asked is not asked again."""
    import json

    asked: list[tuple[str, str, Step]] = []
    for i in range(3):  # each round: decide, save, stop, read back
        out = advance(plan, view, now + i)
        assert out.plan.step is not Step.STOPPED, out.reasons
        asked += [(a.kind, a.node, out.plan.step) for a in out.actions]
        saved = Plan.from_json(json.loads(json.dumps(out.plan.to_json())))
        assert saved == out.plan
        plan = saved
    # the view does not change, so at most one step is taken and its action asked once
    assert len(asked) == len(set(asked)) <= 1, asked
    again = advance(plan, view, now + 3)
    assert again.plan == plan and again.actions == ()
    assert all(r.startswith("waiting:") for r in again.reasons), again.reasons


def test_a_bundle_for_another_system_is_refused_before_anything_is_copied() -> None:
    out = begin(SERVING, N1, 0.0, bundle_compatible="twinbeat-arm64",
                node_compatible="twinbeat-x86-64")
    assert out.plan.step is Step.STOPPED and out.actions == ()
    assert out.reasons == ("the bundle is for twinbeat-arm64, this pair takes twinbeat-x86-64 "
                           "bundles (another architecture or product)",)
    same = begin(SERVING, N1, 0.0, bundle_compatible="twinbeat-x86-64",
                 node_compatible="twinbeat-x86-64")
    assert same.plan.step is Step.COPY


def test_allow_downgrade_reinstalls_the_running_version() -> None:
    view = pair(node("node1", owns=("service",), version=N1), node("node2", version=N1))
    assert begin(view, N1, 0.0, allow_downgrade=True).plan.step is Step.COPY


def test_a_node_on_trial_in_its_new_slot_is_waited_for_not_rebooted_again() -> None:
    """During the boot check the record of the install is still there (installed == the
    target) but the node runs the target: it has rebooted."""
    trial = pair(node("node1", owns=("service",)),
                 node("node2", version=N1, installed=N1, healthy=False))
    out = advance(at(Step.WAIT_FIRST, asked=True, asked_for="node2"), trial, 600)
    assert out.actions == () and out.plan.step is Step.WAIT_FIRST
    assert out.reasons == ("waiting: node2 is not back healthy on 0.1.1 yet",)
