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
    twinbeat install BUNDLE [--allow-downgrade] [--reboot]
    twinbeat boot-check [--bound SECONDS] | persist prepare|save|seed-slots
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
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
#: fence-peer's exit code when the daemon cannot ask the peer: "peer could not be reached"
FENCE_UNREACHABLE = 5
#: how long fence-peer waits for the daemon's answer; the daemon answers within its own
#: fence timeout (max(2 x deadtime, 10 s)) or as soon as the peer is declared dead
FENCE_ANSWER_TIMEOUT = 120.0


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
        "thrown away and NODE resyncs from the other node. Run the same command on BOTH "
        "nodes (order does not matter): on NODE it runs `drbdadm secondary` and `drbdadm "
        "connect --discard-my-data`, on the other node `drbdadm connect` (DRBD user's guide, "
        "manual split brain recovery). NODE must not be serving the group: move it first "
        "with `twinbeat standby` on NODE.",
    )
    sb.add_argument("--discard", required=True, metavar="NODE",
                    help="the node whose changes since the split are thrown away")
    sb.add_argument("--resource", metavar="RES", help="one DRBD resource (default: all)")
    sb.add_argument("--yes", action="store_true", help="do not ask for confirmation")
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
        description="DRBD's fence-peer handler (drbd.conf: disk { fencing resource-only; } "
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
    from supervisor.lifecycle.cli import add_parsers

    add_parsers(sub)  # install, boot-check, persist (updates: supervisor/lifecycle/)
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
    from supervisor.lifecycle.cli import dispatch

    done = dispatch(args)
    return EXIT_USAGE if done is None else done


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
    from supervisor.loop import Supervisor

    supervisor = Supervisor(cfg, me, args.state_dir)
    try:
        return asyncio.run(supervisor.run())
    except KeyboardInterrupt:
        return EXIT_FAIL


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
    answer = _ask(args, {"command": "resolve-split-brain", "discard": args.discard,
                         "resource": args.resource})
    if answer is None:
        return EXIT_FAIL
    for reason in answer.get("reasons") or []:
        print(reason)
    if not answer.get("ok"):
        if not answer.get("reasons"):
            print(f"twinbeat: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_fence_peer(args: argparse.Namespace) -> int:
    """DRBD's fence-peer handler; the exit code is DRBD's (see the subcommand's --help)."""
    resource = args.resource or os.environ.get("DRBD_RESOURCE", "")
    if not resource:
        print("twinbeat fence-peer: no resource given and DRBD_RESOURCE is not set",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        answer = request(args.state_dir / CONTROL_SOCKET,
                         {"command": "fence-peer", "resource": resource},
                         timeout=FENCE_ANSWER_TIMEOUT)
    except (ControlError, OSError, ValueError) as exc:
        print(f"twinbeat fence-peer {resource}: cannot ask the twinbeat daemon ({exc}); "
              f"exit {FENCE_UNREACHABLE}: peer unreachable", file=sys.stderr)
        return FENCE_UNREACHABLE
    code = answer.get("code")
    if not answer.get("ok") or not isinstance(code, int) or isinstance(code, bool):
        print(f"twinbeat fence-peer {resource}: {answer.get('error') or 'no exit code'}; "
              f"exit {FENCE_UNREACHABLE}", file=sys.stderr)
        return FENCE_UNREACHABLE
    print(f"twinbeat: {answer.get('message') or ''}", file=sys.stderr)
    return code


def cmd_status(args: argparse.Namespace) -> int:
    answer = _ask(args, {"command": "status"})
    if answer is None:
        return EXIT_FAIL
    if not answer.get("ok"):
        print(f"twinbeat: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAIL
    st = answer["status"]
    from supervisor.lifecycle.cli import status_lines

    if args.json:
        json.dump({**st, "system": status_lines()}, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print(format_status(st))
        print("\n".join(status_lines()))
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


def format_versions(me: str, peer: str, v: dict[str, Any]) -> str:
    """One line: both nodes' releases and protocols; "MIXED VERSIONS" while they differ."""
    mine = f"{me} {v.get('release') or '?'} (protocol {v.get('protocol')})"
    if v.get("peer_protocol") is None:
        theirs = f"{peer} not heard yet"
    else:
        theirs = (f"{peer} {v.get('peer_release') or 'an older release (it does not say)'} "
                  f"(protocol {v.get('peer_protocol')})")
    line = f"versions: {mine}, {theirs}"
    if v.get("mixed"):
        line += f" - MIXED VERSIONS: {v.get('reason')}"
    elif v.get("peer_protocol") is not None and v.get("peer_protocol") != v.get("protocol"):
        line += f" - {v.get('reason')}"
    return line


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
    versions = st.get("versions")
    if versions:
        lines.append(format_versions(st["node"], peer["name"], versions))
    lines.append("links:")
    for link in st["links"]:
        loss = "-" if link["loss"] is None else f"{link['loss'] * 100:.1f}%"
        hears = {True: "peer hears us", False: "peer does NOT hear us", None: ""}[
            link["peer_hears_us"]
        ]
        transport = link.get("transport") or {}
        err = f", {transport['error']}" if transport.get("error") else ""
        carrier = ", no carrier" if link.get("carrier") is False else ""
        lines.append(
            f"  {link['name']:<10} {link['type']:<6} {link['state']:<7} "
            f"last {_age(link['last_heard_age']):<12} loss {loss:<6} {hears}{carrier}{err}"
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
    if not st.get("can_own", True):
        lines.append("this node may NOT own groups: " + str(wd.get("reason")))
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
