"""``twinbeat upgrade BUNDLE``: the rolling upgrade of the pair, driven (the I/O side).

The decisions are upgrade.py's (pure). This module looks at the pair, feeds what it sees to
``upgrade.advance``, carries out the actions and persists the plan after every step in
/persist/lifecycle/upgrade.json, so that the upgrade survives an interruption (Ctrl-C, a lost
terminal) and this node's own reboot: ``twinbeat upgrade --resume`` (run at boot by
twinbeat-upgrade.service when a plan is unfinished) picks it up where it stopped.

What it sees, on every round:

* this node's supervisor status (control socket): the peer alive, every link's state, the
  replicas' disk states, the groups' owners and failures, both nodes' versions;
* each node's facts (its release, booted slot, an update waiting for the next boot or on
  trial, its last update failure, the bundles it holds): this node's read directly, the
  peer's asked of its update agent (agent.py) over the crossover link.

What it does: copies the bundle to each node's /persist/lifecycle/bundles (the peer's over
the crossover link), installs (``twinbeat install`` there, which runs RAUC and records the
health baseline for the boot check), reboots, and moves the groups with the supervisor's
own admin commands: the pins of ``standby``/``takeover`` are the pair's, so the handover is
asked of this node's supervisor whichever node this is.

One module on purpose (just over 500 lines; ~100 of them are the command line, its progress
lines and --status/--abandon): the look, the action and the saved plan of one round are read
together; the decisions are already apart, in upgrade.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from supervisor.atomicfile import atomic_write
from supervisor.lifecycle import agent as agentlib
from supervisor.lifecycle import upgrade
from supervisor.lifecycle.bootdecide import Failure, Pending
from supervisor.lifecycle.upgrade import Action, NodeView, PairView, Plan, Step

#: seconds between two looks at the pair
POLL = 5.0
#: how long `twinbeat install` may take on a node (RAUC writes 2 GiB under TCG)
INSTALL_TIMEOUT = 3600.0


# -- pure: what the driver sees -----------------------------------------------------------


def owned(status: Mapping[str, Any] | None, node: str) -> tuple[str, ...]:
    """The groups ``node`` runs, as this node's supervisor sees them."""
    if not status:
        return ()
    return tuple(str(g.get("name")) for g in status.get("groups") or []
                 if g.get("owner") == node)


def node_view(name: str, facts: Mapping[str, Any] | None, status: Mapping[str, Any] | None,
              *, target: str = "", digest: str = "", since: float = 0.0,
              error: str = "") -> NodeView:
    """One node as upgrade.py sees it. ``facts`` None: it does not answer. ``target`` and
    ``digest``: the upgrade's version and bundle SHA-256; ``since``: when it began (wall
    clock; an update failure before it is history). ``error``: what the driver's last
    action on the node came to (an install that failed)."""
    if facts is None:
        return NodeView(name=name, reachable=False, owns=owned(status, name), failure=error)
    pending = facts.get("pending")
    pend = Pending.from_json(pending) if isinstance(pending, dict) else None
    failure = ""
    raw = facts.get("failure")
    if isinstance(raw, dict) and target:
        f = Failure.from_json(raw)
        if f.version == target and f.at >= since:
            failure = f.text()
    bundles = facts.get("bundles") or {}
    return NodeView(
        name=name,
        reachable=True,
        version=str(facts.get("release") or ""),
        healthy=pend is None,
        installed=pend.version if pend is not None and pend.phase == "installed" else "",
        has_bundle=bool(target) and bool(digest) and bundles.get(bundle_name(target)) == digest,
        owns=owned(status, name),
        failure=error or failure,
        can_install=bool(facts.get("can_install")),
    )


def pair_view(status: Mapping[str, Any] | None, nodes: Mapping[str, NodeView],
              auto_failback: bool) -> PairView:
    st = status or {}
    peer = st.get("peer") or {}
    links = {str(link.get("name")): str(link.get("state")) for link in st.get("links") or []}
    replicas = tuple((str(r.get("name")), str(r.get("disk")), str(r.get("peer_disk")))
                     for r in st.get("replication") or [])
    groups = tuple(str(g.get("name")) for g in st.get("groups") or [])
    failed = tuple(str(g.get("name")) for g in st.get("groups") or [] if g.get("failed"))
    hears = {str(link.get("name")): link.get("peer_hears_us") for link in st.get("links") or []}
    v = st.get("versions") or {}
    mine, theirs = v.get("protocol"), v.get("peer_protocol")
    maintenance = tuple(str(n) for n in st.get("maintenance") or ())
    return PairView(nodes=dict(nodes), links=links, peer_alive=peer.get("state") == "alive",
                    replicas=replicas, groups=groups, failed_groups=failed,
                    auto_failback=auto_failback,
                    peer_hears={k: h if isinstance(h, bool) else None for k, h in hears.items()},
                    protocol=mine if isinstance(mine, int) else 0,
                    peer_protocol=theirs if isinstance(theirs, int) or theirs is None else 0,
                    maintenance=maintenance)


def status_refusals(status: Mapping[str, Any] | None) -> list[str]:
    """Without this node's supervisor there is nothing to look at (the other checks,
    versions included, are upgrade.begin's)."""
    if not status:
        return ["this node's supervisor does not answer (is twinbeat.service running?)"]
    return []


def bundle_name(version: str) -> str:
    return f"twinbeat-{version}.raucb"


# -- the plan on disk -------------------------------------------------------------------------


@dataclass
class Saved:
    """The plan and what the driver keeps beside it (JSON on /persist)."""

    plan: Plan
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"plan": self.plan.to_json(), "extra": self.extra}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Saved:
        return Saved(Plan.from_json(d["plan"]), dict(d.get("extra") or {}))


def load_plan(path: Path) -> Saved | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Saved.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise agentlib.AgentError(f"{path} cannot be read ({exc}): remove it to start over"
                                  ) from None


def save_plan(path: Path, saved: Saved) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(saved.to_json(), indent=2, sort_keys=True) + "\n",
                 mode=0o600)


# -- the I/O the driver needs (real ones below, fakes in tests) -------------------------------


@dataclass
class World:
    me: str
    peer: str
    auto_failback: bool
    status: Callable[[], dict[str, Any] | None]  # this node's supervisor
    facts: Callable[[str], dict[str, Any] | None]  # a node's facts, None: no answer
    copy: Callable[[str, Path, str], str]  # (node, bundle, sha256) -> "" or the error
    install: Callable[[str, str, bool], str]  # (node, bundle name, downgrade) -> "" or error
    reboot: Callable[[str], str]  # node -> "" or the error
    admin: Callable[[str], str]  # "standby" | "takeover" on this node -> "" or the error
    forget: Callable[[str], None]  # remove the copies of the bundle on a node
    say: Callable[[str], None]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


#: what upgrade.py's actions come to on this node's supervisor (pins are the pair's)
def admin_here(action: Action, me: str) -> str:
    """``standby``/``takeover`` asked for ``action.node``, said from this node."""
    if action.node == me:
        return action.kind
    return "takeover" if action.kind == "standby" else "standby"


class Driver:
    def __init__(self, world: World, path: Path,
                 timeouts: upgrade.Timeouts | None = None) -> None:
        self.w = world
        self.path = path
        # (upgrade.timeouts_for: the handover's bound from the groups' own timeouts)
        self.timeouts = timeouts if timeouts is not None else upgrade.Timeouts()
        self.errors: dict[str, str] = {}
        self._last: list[str] = []

    def observe(self, saved: Saved | None) -> PairView:
        w = self.w
        status = w.status()
        nodes = {}
        for name in (w.me, w.peer):
            if saved is None:
                nodes[name] = node_view(name, w.facts(name), status)
                continue
            nodes[name] = node_view(
                name, w.facts(name), status, target=saved.plan.target,
                digest=str(saved.extra.get("sha256") or ""),
                since=float(saved.extra.get("started_wall") or 0.0),
                error=self.errors.get(name, ""))
        return pair_view(status, nodes, w.auto_failback)

    def tell(self, plan: Plan, reasons: tuple[str, ...]) -> None:
        lines = [f"[{plan.step.value}] {r}" for r in reasons if r]
        if lines != self._last:
            for line in lines:
                self.w.say(line)
            self._last = lines

    def start(self, bundle: Path, target: str, digest: str, allow_downgrade: bool, *,
              bundle_compatible: str | None = None,
              node_compatible: str | None = None) -> Saved:
        w = self.w
        view = self.observe(None)
        out = upgrade.begin(view, target, w.clock(), allow_downgrade,
                            bundle_compatible=bundle_compatible,
                            node_compatible=node_compatible)
        plan = out.plan
        refused = list(out.reasons) if plan.step is Step.STOPPED else []
        down = status_refusals(w.status())
        if down:
            refused += down
            plan = replace(plan, step=Step.STOPPED, reason="refused: " + "; ".join(refused))
        saved = Saved(plan, {"bundle": str(bundle), "sha256": digest,
                             "allow_downgrade": allow_downgrade, "started_wall": w.clock(),
                             "orchestrator": w.me})
        if plan.step is Step.STOPPED:
            for r in refused:
                w.say(f"refused: {r}")
            return saved
        self.tell(plan, out.reasons)
        save_plan(self.path, saved)
        return saved

    def run(self, saved: Saved) -> Saved:
        """Advance until done, stopped, or this node reboots itself (then the plan waits
        on disk for the next boot)."""
        w = self.w
        while True:
            view = self.observe(saved)
            out = upgrade.advance(saved.plan, view, w.clock(), self.timeouts)
            saved = Saved(out.plan, saved.extra)
            self.tell(out.plan, out.reasons)
            save_plan(self.path, saved)
            for action in out.actions:
                if action.kind == "reboot" and action.node == w.me:
                    w.say(f"[{out.plan.step.value}] this node reboots now; the upgrade goes on "
                          "after the boot (twinbeat-upgrade.service: `journalctl -fu "
                          "twinbeat-upgrade` or `twinbeat upgrade --status`)")
                    error = w.reboot(w.me)
                    if error:
                        self.errors[w.me] = error
                        continue
                    return saved
                error = self.act(action, saved)
                self.errors.pop(action.node, None)
                if error:
                    self.errors[action.node] = error
                    w.say(f"[{out.plan.step.value}] {action.kind} on {action.node} failed: "
                          f"{error}")
            if saved.plan.step in (Step.DONE, Step.STOPPED):
                if saved.plan.step is Step.DONE:
                    for node in (w.me, w.peer):
                        w.forget(node)
                return saved
            if not out.actions:
                w.sleep(POLL)

    def act(self, action: Action, saved: Saved) -> str:
        w = self.w
        name = bundle_name(saved.plan.target)
        if action.kind == "copy":
            return w.copy(action.node, Path(saved.extra["bundle"]), saved.extra["sha256"])
        if action.kind == "install":
            return w.install(action.node, name, bool(saved.extra.get("allow_downgrade")))
        if action.kind == "reboot":
            return w.reboot(action.node)
        if action.kind in ("standby", "takeover"):
            return w.admin(admin_here(action, w.me))
        return f"unknown action {action.kind}"


# -- the real world -------------------------------------------------------------------------


def real_world(me: str, peer: str, peer_host: str, secret: bytes, *, auto_failback: bool,
               bundles: Path, say: Callable[[str], None]) -> World:
    from supervisor.drivers.runner import run_sync
    from supervisor.lifecycle.cli import supervisor_status
    from supervisor.lifecycle.node import local_facts

    client = agentlib.Client(peer_host, agentlib.channel_key(secret))

    def status() -> dict[str, Any] | None:
        return supervisor_status()[0]

    def facts(node: str) -> dict[str, Any] | None:
        if node == me:
            return local_facts(me, bundles)
        try:
            answer = client.call("facts", timeout=60)
        except agentlib.AgentError:
            return None  # (the plan's reasons say what is awaited)
        return answer.get("facts") if answer.get("ok") else None

    def copy(node: str, bundle: Path, digest: str) -> str:
        name = bundle.name
        if node == me:
            bundles.mkdir(parents=True, exist_ok=True)
            dest = bundles / name
            if bundle.resolve() != dest.resolve():
                say(f"copying {bundle} to {dest}")
                free = shutil.disk_usage(bundles).free
                size = bundle.stat().st_size
                if free < size + agentlib.RESERVE:
                    return (f"no room for the bundle on {bundles}: {free // 2**20} MiB free, "
                            f"{(size + agentlib.RESERVE) // 2**20} MiB needed")
                error = agentlib.copy_checked(bundle, dest, digest)
                if error:
                    return error
            elif agentlib.file_sha256(dest) != digest:
                return f"{dest} does not match the bundle's SHA-256"
            atomic_write(bundles / f"{name}.sha256", f"{digest}  {name}\n", mode=0o600)
            return ""
        started = time.monotonic()
        marks: set[int] = set()

        def progress(sent: int, total: int) -> None:
            tenth = sent * 10 // max(total, 1)
            if tenth not in marks:
                marks.add(tenth)
                rate = sent / max(time.monotonic() - started, 0.001) / 2**20
                say(f"[copy] {sent // 2**20} of {total // 2**20} MiB to {peer} "
                    f"({rate:.1f} MiB/s)")

        try:
            answer = client.call("put", {"name": name, "size": bundle.stat().st_size,
                                         "sha256": digest}, body=bundle, progress=progress,
                                 timeout=INSTALL_TIMEOUT)
        except agentlib.AgentError as exc:
            return str(exc)
        return "" if answer.get("ok") else str(answer.get("error"))

    def install(node: str, name: str, downgrade: bool) -> str:
        if node == me:
            argv = ["twinbeat", "install", str(bundles / name)]
            if downgrade:
                argv.append("--allow-downgrade")
            r = run_sync(argv, timeout=INSTALL_TIMEOUT)
            for line in (r.stdout + r.stderr).splitlines():
                say(f"[install] {me}: {line}")
            return "" if r.ok else (r.stderr.strip() or r.describe())
        try:
            answer = client.call("install", {"name": name, "allow_downgrade": downgrade},
                                 timeout=INSTALL_TIMEOUT)
        except agentlib.AgentError as exc:
            return str(exc)
        for line in str(answer.get("output") or "").splitlines():
            say(f"[install] {peer}: {line}")
        return "" if answer.get("ok") else str(answer.get("error"))

    def reboot(node: str) -> str:
        if node == me:
            r = run_sync(["systemctl", "reboot"], timeout=60)
            return "" if r.ok else r.describe()
        try:
            answer = client.call("reboot", timeout=60)
        except agentlib.AgentError as exc:
            return str(exc)
        return "" if answer.get("ok") else str(answer.get("error"))

    def admin(command: str) -> str:
        from supervisor.control import ControlError, request
        from supervisor.statefiles import CONTROL_SOCKET, DEFAULT_STATE_DIR

        try:
            answer = request(DEFAULT_STATE_DIR / CONTROL_SOCKET,
                             {"command": command, "group": None})
        except ControlError as exc:
            return str(exc)
        for r in answer.get("reasons") or []:
            say(f"[handover] {me}: {r}")
        return "" if answer.get("ok") else str(answer.get("error") or answer.get("reasons"))

    def forget(node: str) -> None:
        if node == me:
            agentlib.forget_bundles(bundles)
            return
        with contextlib.suppress(agentlib.AgentError):
            client.call("forget", timeout=60)

    return World(me=me, peer=peer, auto_failback=auto_failback, status=status, facts=facts,
                 copy=copy, install=install, reboot=reboot, admin=admin, forget=forget,
                 say=say)


def this_node(config_nodes: list[str]) -> str:
    me = socket.gethostname().split(".")[0]
    return me if me in config_nodes else ""


def _print(text: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} {text}", flush=True)


def cmd_upgrade(args: argparse.Namespace) -> int:
    from supervisor.config import ConfigError, load_authkeys, load_config
    from supervisor.lifecycle.bundlecheck import parse_info
    from supervisor.lifecycle.system import (
        LIFECYCLE_DIR,
        LifecycleError,
        node_compatible,
        rauc_info,
    )

    path = LIFECYCLE_DIR / "upgrade.json"
    bundles = LIFECYCLE_DIR / "bundles"
    try:
        saved = load_plan(path)
    except agentlib.AgentError as exc:
        print(f"twinbeat: {exc}", file=sys.stderr)
        return 1
    if args.status:
        if saved is None:
            print("no upgrade has been started on this node")
            return 0
        p = saved.plan
        print(f"upgrade to {p.target} (from {p.old}): {p.first} first, then {p.second}; "
              f"step {p.step.value}" + (f": {p.reason}" if p.reason else ""))
        return 0
    if args.abandon:
        if saved is None or saved.plan.step in (Step.DONE, Step.STOPPED):
            print("no unfinished upgrade here")
            return 0
        stopped = replace(saved.plan, step=Step.STOPPED,
                          reason=f"abandoned at {saved.plan.step.value} by the administrator")
        save_plan(path, Saved(stopped, saved.extra))
        print(f"upgrade abandoned at {saved.plan.step.value}; nothing is undone: "
              "`twinbeat status` on both nodes shows where they are")
        return 0
    try:
        # the links' devices are the supervisor's business (its status says whether they
        # are up); the upgrade needs the nodes, their crossover addresses and the key
        cfg = load_config(Path(args.config), check_devices=False)
        key = load_authkeys(cfg.authkeys_path).secret
    except (ConfigError, OSError, ValueError) as exc:
        print(f"twinbeat: {exc}", file=sys.stderr)
        return 1
    names = [n.name for n in cfg.nodes]
    me = args.node or this_node(names)
    if me not in names:
        print(f"twinbeat: this node ({me or 'its hostname'}) is not in {args.config}",
              file=sys.stderr)
        return 1
    peer_node = next(n for n in cfg.nodes if n.name != me)
    if peer_node.crossover_address is None:
        print(f"twinbeat: {args.config} gives {peer_node.name} no crossover address: the "
              "bundle is copied over the crossover link", file=sys.stderr)
        return 1
    world = real_world(me, peer_node.name, str(peer_node.crossover_address), key,
                       auto_failback=cfg.auto_failback, bundles=bundles, say=_print)
    driver = Driver(world, path, upgrade.timeouts_for(
        [(len(g.resources), g.start_timeout, g.stop_timeout) for g in cfg.groups]))
    if args.resume:
        if saved is None or saved.plan.step in (Step.DONE, Step.STOPPED):
            if not args.if_pending:
                print("no unfinished upgrade to resume")
            return 0
        _print(f"resuming the upgrade to {saved.plan.target} at {saved.plan.step.value}")
    else:
        if saved is not None and saved.plan.step not in (Step.DONE, Step.STOPPED):
            print(f"twinbeat: an upgrade to {saved.plan.target} is under way (step "
                  f"{saved.plan.step.value}): `twinbeat upgrade --resume` continues it, "
                  "`twinbeat upgrade --abandon` forgets it", file=sys.stderr)
            return 1
        bundle = Path(args.bundle)
        if not bundle.is_file():
            print(f"twinbeat: {bundle}: no such file", file=sys.stderr)
            return 1
        try:
            info = parse_info(rauc_info(bundle))
        except LifecycleError as exc:
            from supervisor.lifecycle.bundlecheck import explain_rauc_error

            print(f"twinbeat: {explain_rauc_error(str(exc))}", file=sys.stderr)
            return 1
        _print(f"checking the pair for an upgrade to {info.version} ({bundle})")
        digest = agentlib.file_sha256(bundle)
        saved = driver.start(bundle, info.version, digest, args.allow_downgrade,
                             bundle_compatible=info.compatible,
                             node_compatible=node_compatible())
        if saved.plan.step is Step.STOPPED:
            return 1
    try:
        saved = driver.run(saved)
    except KeyboardInterrupt:
        _print("interrupted: the plan is kept; `twinbeat upgrade --resume` goes on from "
               "here, `twinbeat upgrade --abandon` forgets it")
        return 130
    if saved.plan.step is Step.DONE:
        _print(saved.plan.reason)
        return 0
    if saved.plan.step is Step.STOPPED:
        _print(saved.plan.reason)
        return 1
    return 0
