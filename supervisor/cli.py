"""``twinbeat``: the supervisor daemon and its command line.

    twinbeat run [--config FILE] [--node NAME] [--state-dir DIR] [--drbd-dir DIR]
    twinbeat status [--json] [--state-dir DIR]
    twinbeat standby [GROUP] | takeover [GROUP] | cleanup [GROUP]   [--state-dir DIR]
    twinbeat takeover --force-data GROUP [--yes]
    twinbeat resolve-split-brain --discard NODE [--resource RES] [--yes]
    twinbeat fence-peer [RESOURCE] [--state-dir DIR]     (DRBD's fence-peer handler)
    twinbeat check-config [--config FILE] [--drbd-dir DIR]
    twinbeat drbd-config [--write] [--config FILE] [--drbd-dir DIR]
    twinbeat import-heartbeat --ha-cf F --haresources F --authkeys F [--output FILE]
    twinbeat export pacemaker [--config FILE] [--output DIR] [--force]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from supervisor.config import (
    DEFAULT_CONFIG,
    DEFAULT_DRBD_DIR,
    Config,
    ConfigError,
    describe_settings,
    load_config,
)
from supervisor.control import ControlError, request
from supervisor.statefiles import CONTROL_SOCKET, DEFAULT_STATE_DIR

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="twinbeat",
        description="twinbeat: two-node high availability (heartbeats, takeover, watchdog).",
        epilog="Files: /etc/twinbeat/cluster.toml (configuration), /etc/twinbeat/authkeys "
        "(shared key, mode 0600), /var/lib/twinbeat/ (state and control socket), "
        "/etc/drbd.d/NAME.res (DRBD resources, rendered from cluster.toml).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def state_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--state-dir", type=Path, default=DEFAULT_STATE_DIR, metavar="DIR",
            help=f"state directory with the control socket (default {DEFAULT_STATE_DIR})",
        )

    def drbd_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--drbd-dir", type=Path, default=DEFAULT_DRBD_DIR, metavar="DIR",
            help=f"where the DRBD resource files live (default {DEFAULT_DRBD_DIR})",
        )

    r = sub.add_parser(
        "run", help="run the supervisor in the foreground (what the unit runs)",
        description="Run the supervisor. With [[replicated]] disks it first writes a missing "
        "DRBD resource file and refuses to start when an existing one does not match "
        "cluster.toml.",
    )
    r.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"cluster configuration (default {DEFAULT_CONFIG})")
    r.add_argument("--node", metavar="NAME",
                   help="this node's name in the configuration (default: the hostname)")
    state_dir(r)
    drbd_dir(r)
    r.add_argument("--verbose", "-v", action="store_true", help="log debug messages too")

    s = sub.add_parser("status", help="show links, peer, groups and watchdog")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    state_dir(s)

    for name, text in (
        ("standby", "give the group(s) to the peer and keep them there"),
        ("takeover", "take the group(s) here and keep them here"),
        ("cleanup", "forget a group's failures (and retry a blocked stop)"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("group", nargs="?", help="one group (default: all groups)")
        if name == "takeover":
            c.add_argument(
                "--force-data", action="store_true",
                help="also promote the group's DRBD replicas when their data is not "
                "UpToDate here (Outdated, Inconsistent, split brain): says what may be lost "
                "and asks for confirmation; needs GROUP",
            )
            c.add_argument("--yes", action="store_true",
                           help="with --force-data: do not ask for confirmation")
        state_dir(c)

    sb = sub.add_parser(
        "resolve-split-brain",
        help="recover DRBD from a split brain by discarding one node's changes",
        description="Recover a DRBD resource from a split brain (both nodes wrote while apart; "
        "`twinbeat status` shows SPLIT BRAIN). NODE's changes since the nodes parted are "
        "thrown away and NODE resyncs from the other node. Run it on EITHER node: it does "
        "this node's half and carries the decision to the peer over the heartbeat links, "
        "which does its own (DRBD user's guide, manual split brain recovery: on NODE "
        "`drbdadm secondary` and `drbdadm connect --discard-my-data`, on the other node "
        "`drbdadm connect`), then follows the resync until both replicas are Connected and "
        "UpToDate. NODE must not be serving the group: move it first with `twinbeat "
        "standby` on NODE. If the peer is down, run the same command there when it is back.",
    )
    sb.add_argument("--discard", required=True, metavar="NODE",
                    help="the node whose changes since the split are thrown away")
    sb.add_argument("--resource", metavar="RES", help="one DRBD resource (default: all)")
    sb.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sb.add_argument("--wait", type=float, default=3600.0, metavar="SECONDS",
                    help="follow the resync for at most this long (default 3600; 0: do not "
                    "follow)")
    state_dir(sb)

    cc = sub.add_parser(
        "check-config",
        help="validate the configuration (and the DRBD resource files); non-zero on errors",
        description="Validate cluster.toml; with [[replicated]] disks also check that each "
        "DRBD resource file exists and matches it.",
    )
    cc.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE")
    cc.add_argument("--settings", action="store_true", help="list every setting and its default")
    drbd_dir(cc)

    dc = sub.add_parser(
        "drbd-config",
        help="print (or --write) the DRBD resource files rendered from cluster.toml",
        description="Render one DRBD 8.4 resource file per [[replicated]] table of "
        "cluster.toml: print them, or write them to DIR/NAME.res with --write.",
    )
    dc.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
                    help=f"cluster configuration (default {DEFAULT_CONFIG})")
    dc.add_argument("--write", action="store_true",
                    help="write the files instead of printing them")
    drbd_dir(dc)

    fp = sub.add_parser(
        "fence-peer",
        help="DRBD's fence-peer handler: ask the peer over the heartbeat links to outdate "
        "its replica",
        description="DRBD's fence-peer handler (drbd.conf: disk { fencing "
        "resource-and-stonith; } "
        'handlers { fence-peer "/usr/bin/twinbeat fence-peer"; }). When a DRBD Primary loses '
        "its replication link, DRBD runs it; twinbeat asks the peer over the heartbeat links "
        "(serial, UDP) to mark its replica Outdated, so that it is not promoted with stale "
        "data. Messages go to stderr (DRBD logs them). Exit codes, as DRBD reads them: "
        "3 peer's disk already Inconsistent, 4 peer's disk now Outdated, 5 peer unreachable "
        "(also when the twinbeat daemon is not running), 6 peer refused: it is Primary.",
    )
    fp.add_argument("resource", nargs="?", metavar="RESOURCE",
                    help="DRBD resource (default: $DRBD_RESOURCE, which DRBD sets)")
    state_dir(fp)

    # Listed here for `twinbeat --help`; its options belong to supervisor.importer.
    sub.add_parser(
        "import-heartbeat",
        help="convert heartbeat v1 ha.cf, haresources and authkeys into cluster.toml "
        "(see `twinbeat import-heartbeat --help`)",
    )
    # Listed here for `twinbeat --help`; its options belong to supervisor.pacemaker.
    ex = sub.add_parser(
        "export",
        help="write the pair's configuration for Corosync/Pacemaker (see `twinbeat export "
        "pacemaker --help`)",
    )
    ex.add_argument("stack", choices=["pacemaker"],
                    help="the cluster stack: pacemaker (corosync.conf, cib.xml, pcs commands)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "import-heartbeat":
        # The importer owns its options (same names as shown by --help here).
        from supervisor.importer import main_import

        return main_import(argv[1:])
    if argv[:2] == ["export", "pacemaker"]:
        # The exporter owns its options (same names as shown by --help here).
        from supervisor.pacemaker import main_export

        return main_export(argv[2:])
    args = _parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "status":
        return cmd_status(args)
    if args.command == "takeover" and args.force_data:
        return cmd_force_data(args)
    if args.command in ("standby", "takeover", "cleanup"):
        return cmd_admin(args)
    if args.command == "resolve-split-brain":
        return cmd_resolve_split_brain(args)
    if args.command == "check-config":
        return cmd_check_config(args)
    if args.command == "fence-peer":
        return cmd_fence_peer(args)
    if args.command == "drbd-config":
        return cmd_drbd_config(args)
    return EXIT_USAGE


def _load_or_report(path: Path) -> Config | None:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = sum(1 for p in exc.problems if p.severity == "error")
        print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return None
    for warning in cfg.warnings:
        print(warning, file=sys.stderr)
    return cfg


def cmd_drbd_config(args: argparse.Namespace) -> int:
    from supervisor import drbdconf

    cfg = _load_or_report(args.config)
    if cfg is None:
        return EXIT_FAIL
    if not cfg.replicated:
        print(f"{args.config}: no [[replicated]] tables, no DRBD resource files",
              file=sys.stderr)
        return EXIT_OK
    rendered = drbdconf.render_all(cfg, args.drbd_dir)
    if not args.write:
        print("\n".join(text for _, text in rendered), end="")
        return EXIT_OK
    for path, text in rendered:
        try:
            drbdconf.write_file(path, text)
        except OSError as exc:
            print(f"twinbeat: cannot write {path}: {exc}", file=sys.stderr)
            return EXIT_FAIL
        print(f"wrote {path}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.settings:
        print(describe_settings())
        return EXIT_OK
    cfg = _load_or_report(args.config)
    if cfg is None:
        return EXIT_FAIL
    groups = ", ".join(g.name for g in cfg.groups) or "none"
    print(
        f"{args.config}: OK (cluster {cfg.cluster_name}, nodes "
        f"{' and '.join(n.name for n in cfg.nodes)}, {len(cfg.links)} links, groups: {groups})"
    )
    if not cfg.replicated:
        return EXIT_OK
    from supervisor import drbdconf

    status = EXIT_OK
    for r in cfg.replicated:
        problem = drbdconf.check_file(cfg, r, args.drbd_dir)
        if problem is None:
            print(f"{drbdconf.resource_path(r, args.drbd_dir)}: OK (matches {args.config})")
        else:
            print(problem, file=sys.stderr)
            status = EXIT_FAIL
    return status


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s" if _journal() else
        "%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    log = logging.getLogger("twinbeat")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        log.error("refusing to start: the configuration has errors")
        for problem in exc.problems:
            log.error("  %s", problem)
        return EXIT_FAIL
    for warning in cfg.warnings:
        log.warning("%s", warning)
    me = args.node or socket.gethostname().split(".")[0]
    if me not in [n.name for n in cfg.nodes]:
        log.error(
            "refusing to start: this node is %r but %s lists %s (use --node or fix the "
            "hostname)", me, args.config, " and ".join(n.name for n in cfg.nodes),
        )
        return EXIT_FAIL
    if cfg.replicated:
        from supervisor import drbdconf

        written, problems = drbdconf.prepare_at_start(cfg, args.drbd_dir)
        for path in written:
            log.info("wrote %s from %s (it was missing)", path, args.config)
        if problems:
            log.error("refusing to start: the DRBD resource files do not match %s", args.config)
            for message in problems:
                log.error("  %s", message)
            return EXIT_FAIL
    from supervisor.drivers import realtime
    from supervisor.loop import Supervisor

    # Keep the beat under load: logs written by a thread of their own, memory locked, and
    # the scheduling systemd gave us reported (supervisor.drivers.realtime).
    listener = realtime.log_in_background()
    locked, why = realtime.lock_memory()
    (log.info if locked else log.warning)("%s", why)
    sched = realtime.scheduling()
    (log.info if sched["realtime"] else log.warning)("%s", realtime.describe_scheduling(sched))
    supervisor = Supervisor(cfg, me, args.state_dir)
    supervisor.realtime = {"memory_locked": locked, "memory": why, **sched}
    try:
        return asyncio.run(supervisor.run())
    except KeyboardInterrupt:
        return EXIT_FAIL
    finally:
        listener.stop()


def _journal() -> bool:
    import os

    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def _ask(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return request(args.state_dir / CONTROL_SOCKET, payload)
    except ControlError as exc:
        print(f"twinbeat: {exc}", file=sys.stderr)
        return None


def cmd_admin(args: argparse.Namespace) -> int:
    answer = _ask(args, {"command": args.command, "group": args.group})
    if answer is None:
        return EXIT_FAIL
    for reason in answer.get("reasons") or []:
        print(printable(str(reason)))
    if not answer.get("ok"):
        if answer.get("error") and not answer.get("reasons"):
            print(printable(f"twinbeat: {answer['error']}"), file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print("twinbeat: not confirmed (no terminal to ask on); add --yes", file=sys.stderr)
        return False
    try:
        return input(f"{question} Type yes to go on: ").strip().lower() == "yes"
    except EOFError:
        return False


def _replicas(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    answer = _ask(args, {"command": "status"})
    if answer is None or not answer.get("ok"):
        return None
    return list(answer["status"].get("replication") or [])


def cmd_force_data(args: argparse.Namespace) -> int:
    if not args.group:
        print("twinbeat: takeover --force-data needs a GROUP", file=sys.stderr)
        return EXIT_USAGE
    replicas = _replicas(args)
    if replicas is None:
        return EXIT_FAIL
    print(f"FORCED takeover of group {args.group}: its DRBD replicas are promoted here "
          "whatever their state.")
    for r in replicas:
        print(f"  {r['name']}: here {r['disk']}, peer {r['peer_disk']} ({r['connection']})"
              + (", SPLIT BRAIN" if r.get("split_brain") else ""))
        if r["disk"] != "UpToDate" or r.get("split_brain"):
            print("    writes made on the other node that never reached this disk are LOST "
                  "for the service; they stay only on the other node's disk")
    if not args.yes and not _confirm("Promote possibly stale data?"):
        return EXIT_FAIL
    answer = _ask(args, {"command": "takeover", "group": args.group, "force_data": True})
    if answer is None:
        return EXIT_FAIL
    for reason in answer.get("reasons") or []:
        print(reason)
    if not answer.get("ok"):
        print(f"twinbeat: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_resolve_split_brain(args: argparse.Namespace) -> int:
    replicas = _replicas(args)
    if replicas is None:
        return EXIT_FAIL
    print(f"Resolving a DRBD split brain by discarding {args.discard}'s changes since the "
          "nodes parted (they are overwritten by the other node's data).")
    for r in replicas:
        if args.resource in (None, r["name"]):
            print(f"  {r['name']}: here {r['role']} {r['disk']}, {r['connection']}"
                  + (", SPLIT BRAIN" if r.get("split_brain") else "")
                  + ("" if r.get("out_of_sync_kib") is None
                     else f", {r['out_of_sync_kib']} KiB changed here since they parted"))
    if not args.yes and not _confirm(f"Throw away {args.discard}'s changes?"):
        return EXIT_FAIL
    try:
        # both halves: this node's drbdadm commands and the peer's, over the heartbeat links
        answer = request(args.state_dir / CONTROL_SOCKET,
                         {"command": "resolve-split-brain", "discard": args.discard,
                          "resource": args.resource}, timeout=RESOLVE_ANSWER_TIMEOUT)
    except ControlError as exc:
        print(f"twinbeat: {exc}", file=sys.stderr)
        return EXIT_FAIL
    for reason in answer.get("reasons") or []:
        print(reason)
    if not answer.get("ok"):
        if not answer.get("reasons"):
            print(f"twinbeat: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAIL
    if args.wait <= 0:
        return EXIT_OK
    return _follow_resync(args, [r["name"] for r in replicas
                                 if args.resource in (None, r["name"])], args.wait)


#: how long resolve-split-brain waits for both halves (the core gives the peer 120 s)
RESOLVE_ANSWER_TIMEOUT = 150.0


def replicas_in_sync(replication: list[dict[str, Any]], names: list[str]) -> bool:
    """Every replica named is Connected, UpToDate on both sides, no resync, no split brain."""
    wanted = [r for r in replication if r["name"] in names]
    return bool(wanted) and all(
        r["connection"] == "Connected" and r["disk"] == r["peer_disk"] == "UpToDate"
        and not r.get("syncing") and not r.get("split_brain") for r in wanted)


def _follow_resync(args: argparse.Namespace, names: list[str], wait: float,
                   clock: Any = time.monotonic, sleep: Any = time.sleep) -> int:
    """Print each replica's line whenever it changes until all are Connected and
    UpToDate/UpToDate (exit 0) or ``wait`` seconds pass (exit 1)."""
    deadline = clock() + wait
    last: dict[str, str] = {}
    while True:
        answer = _ask(args, {"command": "status"})
        if answer is None:
            return EXIT_FAIL
        replication = answer["status"].get("replication") or []
        for r in replication:
            if r["name"] in names:
                line = format_replica(r).splitlines()[0]
                if last.get(r["name"]) != line:
                    print(line, flush=True)
                    last[r["name"]] = line
        if replicas_in_sync(replication, names):
            print("resolved: Connected, UpToDate/UpToDate on both nodes")
            return EXIT_OK
        if clock() >= deadline:
            print(f"twinbeat: not in sync after {wait:g} s; `twinbeat status` shows where it "
                  "stands", file=sys.stderr)
            return EXIT_FAIL
        sleep(1.0)


def cmd_fence_peer(args: argparse.Namespace) -> int:
    """DRBD's fence-peer handler; the exit code is DRBD's (see the subcommand's --help).
    The launcher runs supervisor.fencepeer directly (it starts faster); this is the same."""
    from supervisor import fencepeer

    resource = args.resource or os.environ.get("DRBD_RESOURCE", "")
    if not resource:
        print("twinbeat fence-peer: no resource given and DRBD_RESOURCE is not set",
              file=sys.stderr)
        return EXIT_USAGE
    return fencepeer.fence_peer(resource, str(args.state_dir))


def cmd_status(args: argparse.Namespace) -> int:
    answer = _ask(args, {"command": "status"})
    if answer is None:
        return EXIT_FAIL
    if not answer.get("ok"):
        print(f"twinbeat: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAIL
    st = answer["status"]
    if args.json:
        json.dump(st, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print(format_status(st))
    return EXIT_OK


def printable(text: str) -> str:
    """``text`` safe to print on any terminal: control characters, lone surrogates and other
    unprintable characters become Python escapes (``\\x1b``, ``\\ud800``). Status and reasons
    carry names a peer sent; a name must never break the output or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _age(value: float | None) -> str:
    if value is None:
        return "never"
    return f"{value:.1f} s ago"


def format_status(st: dict[str, Any]) -> str:
    lines = []
    up = st.get("uptime", 0)
    lines.append(
        f"twinbeat on {st['node']} (cluster {st['cluster']}), generation {st['generation']}, "
        f"{st['status']}, up {int(up // 3600)}h{int(up % 3600 // 60):02d}m{int(up % 60):02d}s"
    )
    world = st["world"]
    lines.append(
        "outside world: " + ("reachable" if world["ok"] else f"CUT OFF ({world['reason']})")
        + (f"; {world['yields']}" if world.get("yields") else "")
    )
    if st.get("config_mismatch"):
        lines.append(
            "WARNING: the peer's configuration disagrees with this one on nodes, groups, "
            "auto_failback or replicated disks (compare both cluster.toml files)"
        )
    peer = st["peer"]
    extra = f" - {peer['reason']}" if peer.get("reason") and peer["state"] != "alive" else ""
    lines.append(
        f"peer {peer['name']}: {peer['state']}, last heard {_age(peer['last_heard_age'])}"
        + extra
    )
    lines.append("links:")
    for link in st["links"]:
        loss = "-" if link["loss"] is None else f"{link['loss'] * 100:.1f}%"
        hears = {True: "peer hears us", False: "peer does NOT hear us", None: ""}[
            link["peer_hears_us"]
        ]
        transport = link.get("transport") or {}
        err = f", {transport['error']}" if transport.get("error") else ""
        carrier = ", no carrier" if link.get("carrier") is False else ""
        gap = link.get("worst_gap_ms")
        gap_text = "" if gap is None else f"worst gap {gap:.0f} ms "
        lines.append(
            f"  {link['name']:<10} {link['type']:<6} {link['state']:<7} "
            f"last {_age(link['last_heard_age']):<12} loss {loss:<6} {gap_text}"
            f"{hears}{carrier}{err}"
        )
    wd = st["watchdog"]
    if wd.get("device"):
        fed = wd.get("last_feed_age")
        fed_text = "never" if fed is None else f"{fed:.1f} s ago"
        lines.append(
            f"watchdog: {wd.get('device')} ({wd.get('identity') or '?'}), timeout "
            f"{wd.get('timeout')} s, fed {fed_text}, mode {wd.get('mode')}"
        )
    else:
        lines.append(f"watchdog: {wd.get('reason') or 'none'} (mode {wd.get('mode', '?')})")
    rt = st.get("realtime") or {}
    if rt:
        sched = (f"realtime {str(rt.get('policy')).upper()} {rt.get('priority')}"
                 if rt.get("realtime") else f"NOT realtime ({rt.get('policy')})")
        memory = "memory locked" if rt.get("memory_locked") else str(rt.get("memory"))
        lines.append(f"scheduling: {sched}; {memory}")
    if not st.get("can_own", True):
        lines.append("this node may NOT own groups: " + str(wd.get("reason")))
    if peer.get("status") is not None:
        pwt = peer.get("watchdog_timeout")
        pwd = (f"armed for {pwt:g} s" if pwt else "NOT armed")
        if peer.get("can_own") is False:
            pwd += ", may NOT own groups"
        lines.append(f"peer watchdog: {pwd}; {peer.get('takeover_wait') or ''}".rstrip("; "))
    lines.append("groups:")
    for g in st["groups"]:
        owner = g["owner"] or "nobody"
        flags = []
        if g["pinned"]:
            flags.append("pinned by admin")
        if g["failed"]:
            flags.append(f"FAILED here: {g['failed_reason']}")
        lines.append(
            f"  {g['name']:<10} owner {owner:<10} here {g['local']:<11} "
            f"preferred {g['preferred']}" + (f" ({'; '.join(flags)})" if flags else "")
        )
        lines.append(f"             {g['reason']}")
    for r in st.get("replication") or []:
        lines.extend(format_replica(r).split("\n"))  # its own lines (local DRBD states)
    fencing = st.get("fencing") or {}
    for item in fencing.get("pending") or []:
        lines.append(
            f"fence-peer {item['resource']}: waiting for the peer's answer "
            f"({item['age']:.1f} s, gives up in {max(0.0, item['timeout_in']):.1f} s)"
        )
    last = fencing.get("last")
    if last:
        lines.append(f"last fence-peer ({last['age']:.0f} s ago): {last['message']}")
    dropped = st.get("dropped") or {}
    if dropped:
        lines.append(
            "dropped frames: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
        )
    # Names and reasons may carry what the peer sent: a newline in them is escaped too.
    return "\n".join(printable(line) for line in lines)


def format_replica(r: dict[str, Any]) -> str:
    """One DRBD resource: roles, connection, both disks, and sync progress with rate and ETA."""
    text = (f"replication {r['name']}: {r['role']}/{r['peer_role']}, {r['connection']}, "
            f"disks {r['disk']}/{r['peer_disk']}")
    if r.get("syncing"):
        text += f", {r['replication']}"
        if r.get("sync_done_percent") is not None:
            text += f" {r['sync_done_percent']:.1f}%"
        if r.get("out_of_sync_kib") is not None:
            text += f" ({r['out_of_sync_kib']} KiB to go"
            rate, eta = r.get("sync_rate_kib_s"), r.get("sync_eta_s")
            if rate is not None:
                text += f", {rate:.0f} KiB/s"
            if eta is not None:
                text += f", done in ~{int(eta // 60)}m{int(eta % 60):02d}s"
            text += ")"
    if r.get("split_brain"):
        text += ("\n  SPLIT BRAIN: the replicas diverged; see "
                 "`twinbeat resolve-split-brain --help`")
    monitor = r.get("monitor")
    if monitor and monitor != "running":
        text += f"\n  (DRBD monitor {monitor}: states may be stale)"
    return text


if __name__ == "__main__":
    sys.exit(main())
