"""The command line's options (``twinbeat --help`` and each command's)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from supervisor.cli.common import config_option
from supervisor.config import DEFAULT_DRBD_DIR
from supervisor.statefiles import DEFAULT_STATE_DIR


def terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it ($COLUMNS, then the
    terminal of standard output, else 80)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own, at the width it would find itself (its ``__init__`` imports shutil
    for it, and shutil bz2, lzma and zlib: about 0.5 MiB the daemon would keep)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


def build_parser(*, daemon: bool = False) -> argparse.ArgumentParser:
    """The command line's parser; ``daemon``: with the ``run`` command alone (``twinbeat
    run``: what it says and refuses is the same, and the other commands' options, with the
    update commands' modules, are not loaded into the daemon: about 0.5 MiB of its PSS)."""
    p = argparse.ArgumentParser(
        prog="twinbeat", formatter_class=HelpFormatter,
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
        "run", formatter_class=HelpFormatter,
        help="run the supervisor in the foreground (what the unit runs)",
        description="Run the supervisor. With [[replicated]] disks it first writes a missing "
        "DRBD resource file and refuses to start when an existing one does not match "
        "cluster.toml.",
    )
    config_option(r)
    r.add_argument("--node", metavar="NAME",
                   help="this node's name in the configuration (default: the hostname)")
    state_dir(r)
    drbd_dir(r)
    r.add_argument("--verbose", "-v", action="store_true", help="log debug messages too")
    if daemon:
        return p

    s = sub.add_parser("status", help="show links, peer, groups and watchdog")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    state_dir(s)

    hi = sub.add_parser(
        "history", help="the pair's event timeline (failovers, links, replicas, ...)",
        description="Show the events this node recorded and those it received from its "
        "peer, oldest first, from the state directory (also while the daemon is stopped). "
        "Times are UTC.",
    )
    hi.add_argument("--json", action="store_true", help="machine-readable output")
    hi.add_argument("--since", metavar="WHEN",
                    help="only events since WHEN: a duration back from now (10m, 2h, 1d) or "
                    "a date and time (2026-12-01T10:30, UTC)")
    state_dir(hi)

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

    up = sub.add_parser(
        "unpin", help="clear a standby/takeover pin: the group follows its preferred node again",
        description="Clear the pin that `twinbeat standby` or `twinbeat takeover` put on GROUP "
        "(on both nodes): the group goes back to following its preferred node and "
        "auto_failback.")
    up.add_argument("group", help="the pinned group")
    state_dir(up)

    mt = sub.add_parser(
        "maintenance", help="maintenance mode: leave a node's resources as they are",
        description="Maintenance mode for this node (or --node NODE): twinbeat leaves its "
        "resources as they are - it does not monitor them, move them, or stop them when "
        "twinbeat stops - until `twinbeat maintenance off`. The mode is kept across "
        "restarts and reboots, shown in `twinbeat status` on both nodes, on the status "
        "page and in the metrics. The peer does not take over the groups of a node in "
        "maintenance, even when it stops answering.")
    mt.add_argument("mode", choices=("on", "off"))
    mt.add_argument("--node", metavar="NODE", help="the node (default: this one)")
    state_dir(mt)

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
    config_option(cc)
    cc.add_argument("--settings", action="store_true", help="list every setting and its default")
    drbd_dir(cc)

    dc = sub.add_parser(
        "drbd-config",
        help="print (or --write) the DRBD resource files rendered from cluster.toml",
        description="Render one DRBD 8.4 resource file per [[replicated]] table of "
        "cluster.toml: print them, or write them to DIR/NAME.res with --write.",
    )
    config_option(dc)
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
    from supervisor.lifecycle.cli import add_parsers

    add_parsers(sub)  # install, upgrade, boot-check, persist, upgrade-agent (updates)
    return p
