"""``twinbeat status``: the daemon's status as text (or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from supervisor.cli.common import EXIT_FAIL, EXIT_OK, ask, printable


def cmd_status(args: argparse.Namespace) -> int:
    answer = ask(args, {"command": "status"})
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
    return printable(line)


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

