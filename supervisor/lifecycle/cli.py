"""``twinbeat install | boot-check | persist | upgrade | upgrade-agent``: updates (I/O side).

    twinbeat install BUNDLE [--allow-downgrade] [--reboot]
    twinbeat boot-check [--bound SECONDS]
    twinbeat persist prepare | save | seed-slots
    twinbeat upgrade BUNDLE | --resume | --status | --abandon   (rolling.py)
    twinbeat upgrade-agent                                       (node.py, agent.py)

``install`` checks a bundle (RAUC: signature against this image's keyring, compatible;
here: version, target slot, room), records the health baseline, and has RAUC write it to
the other slot. ``boot-check`` (twinbeat-boot-check.service) marks the booted slot good, or
tries a new one against the health check and rolls it back. ``persist`` is the state
partition's side (twinbeat-persist.service and RAUC's handlers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.lifecycle import bundlecheck, persist
from supervisor.lifecycle.bootdecide import Failure, Pending, on_boot
from supervisor.lifecycle.health import Baseline, Probe, baseline_from_status, judge
from supervisor.lifecycle.persist import PERSIST
from supervisor.lifecycle.system import (
    SLOT_DEVICES,
    LifecycleError,
    Records,
    block_size,
    booted_slot,
    node_compatible,
    other_slot,
    rauc_info,
    rauc_mark,
    rauc_slot_name,
    run,
    running_version,
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: how long a new slot may take to become healthy before it is rolled back (TCG-proof)
HEALTH_BOUND = 300.0
PROBE_INTERVAL = 5.0


def say(text: str) -> None:
    print(text, flush=True)


def fail(text: str) -> int:
    print(f"twinbeat: {text}", file=sys.stderr, flush=True)
    return EXIT_FAIL


def supervisor_status() -> tuple[dict[str, Any] | None, str]:
    from supervisor.control import ControlError, request
    from supervisor.statefiles import CONTROL_SOCKET, DEFAULT_STATE_DIR

    try:
        answer = request(DEFAULT_STATE_DIR / CONTROL_SOCKET, {"command": "status"})
    except ControlError as exc:
        return None, str(exc)
    if not answer.get("ok"):
        return None, str(answer.get("error"))
    status = answer.get("status")
    return (status if isinstance(status, dict) else None), ""


def probe() -> Probe:
    proc = run(["systemctl", "show", "-p", "ActiveState", "-p", "Result", "twinbeat.service"],
               check=False)
    props = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    state = props.get("ActiveState", "")
    status, error = supervisor_status() if state == "active" else (None, "")
    return Probe(unit_state=state, unit_result=props.get("Result", ""), status=status,
                 error=error)


# -- install ---------------------------------------------------------------------------------


def cmd_install(args: argparse.Namespace) -> int:
    bundle: Path = args.bundle
    if not bundle.is_file():
        return fail(f"{bundle}: no such file")
    booted = booted_slot()
    if not booted:
        return fail("this node was not started by its boot loader (no rauc.slot= on the "
                    "kernel command line): it cannot switch slots")
    target = other_slot(booted)
    version = running_version()
    say(f"checking {bundle} (RAUC verifies its signature against this node's key)")
    try:
        info = bundlecheck.parse_info(rauc_info(bundle))
    except LifecycleError as exc:
        return fail(bundlecheck.explain_rauc_error(str(exc)))
    device = SLOT_DEVICES[target]
    slot_bytes = block_size(device)
    found = bundlecheck.refusals(info, node_compatible=node_compatible(), running=version,
                                 allow_downgrade=args.allow_downgrade, slot_bytes=slot_bytes,
                                 target_exists=slot_bytes is not None)
    if found:
        for reason in found:
            print(f"twinbeat: refused: {reason}", file=sys.stderr)
        return EXIT_FAIL
    try:
        free = os.statvfs(PERSIST)
        if free.f_bavail * free.f_frsize < 4 * 2**20:
            return fail(f"{PERSIST} is full (less than 4 MiB free): free some space "
                        "(journalctl --vacuum-size=...) and try again; nothing was installed")
    except OSError as exc:
        return fail(f"{PERSIST}: {exc.strerror}; nothing was installed")
    status, _ = supervisor_status()
    baseline = baseline_from_status(status)
    records = Records()
    pending = Pending(slot=target, version=info.version, from_slot=booted,
                      from_version=version, baseline=baseline, installed_at=time.time(),
                      phase="installing")
    records.set_pending(pending)
    say(f"installing {info.version} into slot {target} (running {version} on slot {booted})")
    proc = run(["rauc", "install", str(bundle)], timeout=3600, check=False)
    if proc.returncode != 0:
        records.clear_pending()
        records.log(time.time(), f"install of {info.version} into {target} failed")
        return fail(bundlecheck.explain_rauc_error(proc.stderr or proc.stdout)
                    + f" (slot {target} is marked bad; slot {booted} with {version} "
                    "stays the one that boots)")
    records.set_pending(Pending(**{**pending.__dict__, "phase": "installed"}))
    records.log(time.time(), f"installed {info.version} into slot {target}")
    say(f"installed {info.version} into slot {target}. It starts at the next boot and is "
        f"kept only if this node is healthy within {HEALTH_BOUND:.0f} s "
        f"({describe(baseline)}); otherwise the node goes back to {version} on slot "
        f"{booted} by itself.")
    if args.reboot:
        say("rebooting")
        run(["systemctl", "reboot"], check=False)
    return EXIT_OK


def describe(b: Baseline) -> str:
    if not b.supervisor:
        return "the system up"
    parts = ["twinbeat running"]
    if b.peer:
        parts.append("the peer heard on " + (", ".join(b.links) or "its links"))
    if b.replicas:
        parts.append("DRBD " + ", ".join(b.replicas) + " attached")
    return ", ".join(parts)


# -- boot-check ------------------------------------------------------------------------------


def cmd_boot_check(args: argparse.Namespace, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> int:
    booted = booted_slot()
    if not booted:
        say("boot-check: not started by the boot loader (no rauc.slot=): nothing to mark")
        return EXIT_OK
    version = running_version()
    records = Records()
    decision = on_boot(booted, version, records.pending(), time.time())
    say(f"boot-check: {decision.reason}")
    try:
        if decision.kind == "good":
            records.clear_pending()
            rauc_mark("mark-good", "booted")
            return EXIT_OK
        if decision.kind == "rolled-back":
            assert decision.failure is not None and decision.bad_slot is not None
            records.set_failure(decision.failure)
            records.clear_pending()
            records.log(time.time(), decision.failure.text())
            rauc_mark("mark-bad", rauc_slot_name(decision.bad_slot))
            rauc_mark("mark-active", "booted")
            rauc_mark("mark-good", "booted")
            return EXIT_OK
        pending = records.pending()
        assert pending is not None
        return _trial(pending, booted, version, records, bound=args.bound, clock=clock,
                      sleep=sleep)
    except LifecycleError as exc:
        return fail(f"boot-check: {exc}")


def _trial(pending: Pending, booted: str, version: str, records: Records, *, bound: float,
           clock: Callable[[], float], sleep: Callable[[float], None]) -> int:
    start = clock()
    last = ""
    while True:
        verdict = judge(pending.baseline, probe(), clock() - start, bound)
        text = verdict.text()
        if text != last:
            say(f"boot-check: {verdict.state}: {text}")
            last = text
        if verdict.state == "healthy":
            rauc_mark("mark-good", "booted")
            records.clear_pending()
            records.clear_failure()
            records.log(time.time(), f"{version} on slot {booted} is healthy: kept ({text})")
            say(f"boot-check: {version} on slot {booted} kept")
            return EXIT_OK
        if verdict.state == "failed":
            failure = Failure(version, booted, pending.from_version, text, time.time())
            records.set_failure(failure)
            records.clear_pending()
            records.log(time.time(), f"{version} on slot {booted} failed its health check: "
                        f"{text}; rolling back to {pending.from_version}")
            rauc_mark("mark-bad", "booted")
            say(f"boot-check: {version} failed its health check ({text}): rebooting into "
                f"{pending.from_version} on slot {pending.from_slot}")
            run(["systemctl", "reboot"], check=False)
            return EXIT_FAIL
        sleep(PROBE_INTERVAL)


# -- persist ---------------------------------------------------------------------------------


def cmd_persist(args: argparse.Namespace) -> int:
    return persist.run_action(args.action)


# -- status ----------------------------------------------------------------------------------


def status_lines(records: Records | None = None) -> list[str]:
    """What `twinbeat status` shows about updates (version, slot, failures)."""
    records = records or Records()
    lines = [f"system: twinbeat {running_version()}"
             + (f" on slot {booted_slot()}" if booted_slot() else "")]
    pending = records.pending()
    if pending is not None:
        lines.append(f"update: {pending.version} in slot {pending.slot} "
                     f"({pending.phase}, on trial until healthy)")
    failure = records.failure()
    if failure is not None:
        lines.append(failure.text())
    lines += upgrade_lines(records.directory / "upgrade.json")
    return lines


def upgrade_lines(path: Path) -> list[str]:
    """A rolling upgrade under way, or one that stopped (`twinbeat upgrade`)."""
    from supervisor.lifecycle.agent import AgentError
    from supervisor.lifecycle.rolling import load_plan
    from supervisor.lifecycle.upgrade import Step

    try:
        saved = load_plan(path)
    except AgentError as exc:
        return [f"rolling upgrade: {exc}"]
    if saved is None or saved.plan.step is Step.DONE:
        return []
    p = saved.plan
    if p.step is Step.STOPPED:
        return [f"rolling upgrade to {p.target} STOPPED: {p.reason}"]
    return [f"rolling upgrade to {p.target} under way: step {p.step.value} ({p.first} "
            f"first, then {p.second}; `twinbeat upgrade --status`)"]


def add_parsers(sub: Any) -> None:
    i = sub.add_parser("install", help="install an update bundle into the other system "
                       "slot of this node (see also `twinbeat upgrade` for the pair)")
    i.add_argument("bundle", type=Path, metavar="BUNDLE", help="twinbeat-<version>.raucb")
    i.add_argument("--allow-downgrade", action="store_true",
                   help="install a version older than (or the same as) the running one")
    i.add_argument("--reboot", action="store_true", help="reboot into it when installed")
    b = sub.add_parser("boot-check", help="mark this boot's slot good, or try a new slot "
                       "against the health check and roll it back (twinbeat-boot-check"
                       ".service)")
    b.add_argument("--bound", type=float, default=HEALTH_BOUND, metavar="SECONDS",
                   help=f"how long a new slot may take to be healthy (default {HEALTH_BOUND:.0f})")
    p = sub.add_parser("persist", help="the state partition: prepare (boot), save "
                       "(shutdown, before installs), seed-slots (RAUC's post-install handler)")
    p.add_argument("action", choices=persist.ACTIONS)
    u = sub.add_parser(
        "upgrade", help="upgrade both nodes of the pair to an update bundle, one after the "
        "other, with one planned handover",
        description="Run on either node. Refuses unless both nodes are alive on every link, "
        "the replicas are UpToDate/UpToDate and no group is failed. Copies the bundle to the "
        "peer over the crossover link, installs it on the node that owns nothing, reboots it "
        "and waits until it is back healthy on the new version, hands the groups over to it, "
        "then upgrades the other node the same way and gives the groups back if "
        "auto_failback says so. Any failure stops it with the pair serving. The plan is kept "
        "in /persist/lifecycle/upgrade.json: after an interruption or this node's own reboot "
        "it goes on with --resume (at boot: twinbeat-upgrade.service).")
    u.add_argument("bundle", nargs="?", metavar="BUNDLE", help="twinbeat-<version>.raucb")
    u.add_argument("--allow-downgrade", action="store_true",
                   help="install a version older than (or the same as) the running one")
    u.add_argument("--resume", action="store_true", help="go on with an unfinished upgrade")
    u.add_argument("--if-pending", action="store_true",
                   help="with --resume: say nothing when there is nothing to resume (boot)")
    u.add_argument("--status", action="store_true", help="show where the upgrade stands")
    u.add_argument("--abandon", action="store_true",
                   help="forget an unfinished upgrade (undoes nothing)")
    u.add_argument("--config", default="/etc/twinbeat/cluster.toml", metavar="FILE")
    u.add_argument("--node", metavar="NAME", help="this node's name (default: the hostname)")
    a = sub.add_parser("upgrade-agent", help="answer the other node's `twinbeat upgrade` on "
                       "the crossover link (twinbeat-upgrade-agent.service)")
    a.add_argument("--config", default="/etc/twinbeat/cluster.toml", metavar="FILE")
    a.add_argument("--node", metavar="NAME", help="this node's name (default: the hostname)")
    a.add_argument("--port", type=int, default=7794, help="TCP port (default 7794)")


#: the commands /usr/bin/twinbeat hands to main() here without loading the full command
#: line (boot-check and upgrade-agent start at every boot, beside the supervisor)
COMMANDS = ("install", "boot-check", "upgrade", "upgrade-agent")


def main(argv: list[str]) -> int:
    """``twinbeat install|boot-check|upgrade|upgrade-agent ...`` with only this module's
    options (the same parsers ``twinbeat --help`` shows)."""
    parser = argparse.ArgumentParser(
        prog="twinbeat", description="twinbeat's updates (the full list: twinbeat --help).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_parsers(sub)
    args = parser.parse_args(argv)
    done = dispatch(args)
    return EXIT_USAGE if done is None else done


def dispatch(args: argparse.Namespace) -> int | None:
    if args.command == "install":
        return cmd_install(args)
    if args.command == "boot-check":
        return cmd_boot_check(args)
    if args.command == "persist":
        return cmd_persist(args)
    if args.command == "upgrade":
        if not (args.bundle or args.resume or args.status or args.abandon):
            return fail("upgrade: name a BUNDLE (or --resume, --status, --abandon)")
        from supervisor.lifecycle.rolling import cmd_upgrade

        return cmd_upgrade(args)
    if args.command == "upgrade-agent":
        from supervisor.lifecycle.node import cmd_agent

        return cmd_agent(args)
    return None
