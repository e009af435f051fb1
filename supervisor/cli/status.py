"""``twinbeat status``: the daemon's status as text (or JSON), this node's view beside the
peer's; ``twinbeat history``: the pair's event timeline."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from supervisor.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, ask, printable


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


def cmd_history(args: argparse.Namespace) -> int:
    import time

    from supervisor.history import history_report, parse_since

    since = None
    if args.since:
        try:
            since = parse_since(args.since, time.time())
        except ValueError as exc:
            print(f"twinbeat: {exc}", file=sys.stderr)
            return EXIT_USAGE
    text, problem = history_report(args.state_dir, since=since, as_json=args.json)
    if problem:
        print(f"twinbeat: {problem}", file=sys.stderr)
        return EXIT_FAIL
    sys.stdout.write(text)
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
        rtt = "-" if link.get("rtt") is None else f"{link['rtt'] * 1000:.1f} ms"
        gap = link.get("worst_gap_ms")
        gap_text = "" if gap is None else f"worst gap {gap:.0f} ms "
        lines.append(
            f"  {link['name']:<10} {link['type']:<6} {link['state']:<7} "
            f"last {_age(link['last_heard_age']):<12} loss {loss:<6} rtt {rtt:<9} {gap_text}"
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
    for node in st.get("maintenance") or ():
        lines.append(f"MAINTENANCE: {node} is in maintenance mode - its resources are left as "
                     "they are (not monitored, not moved)")
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
    lines += format_side_by_side(st)
    dropped = st.get("dropped") or {}
    if dropped:
        lines.append(
            "dropped frames: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
        )
    # Names and reasons may carry what the peer sent: a newline in them is escaped too.
    return "\n".join(printable(line) for line in lines)


def format_side_by_side(st: dict[str, Any]) -> list[str]:
    """This node's view next to the peer's own (what its latest beat said)."""
    said = st.get("peer_said")
    me, peer = st["node"], st["peer"]["name"]
    maint = set(st.get("maintenance") or ())
    yes = {True: "yes", False: "no", None: "-"}
    here_col, peer_col = f"{me} (here)", f"{peer} (its own view)"
    rows = [("", here_col, peer_col)]
    if said is None:
        rows.append(("status", st["status"], "never heard"))
    else:
        rows.append(("status", st["status"],
                     said["status"] + ("" if st["peer"]["state"] == "alive" else
                                       f" (last heard {_age(st['peer']['last_heard_age'])})")))
        rows.append(("outside world", yes[st["world"]["ok"]], yes[said["world_ok"]]))
        rows.append(("may own groups", yes[st.get("can_own")], yes[said["can_own"]]))
    rows.append(("maintenance", "YES" if me in maint else "no",
                 "YES" if peer in maint else "no"))
    hears = (said or {}).get("hears_us") or {}
    for link in st["links"]:
        theirs = hears.get(link["name"])
        rows.append((f"link {link['name']}", f"hears {peer}: {link['state']}",
                     "-" if theirs is None else f"hears {me}: {'yes' if theirs else 'NO'}"))
    peer_groups = {g["name"]: g for g in (said or {}).get("groups") or []}
    for g in st["groups"]:
        theirs = peer_groups.get(g["name"])
        other = "-" if theirs is None else theirs["activity"] + (
            " FAILED" if theirs["failed"] else "")
        rows.append((f"group {g['name']}", g["local"] + (" FAILED" if g["failed"] else ""),
                     other))
    width = max(len(r[0]) for r in rows) + 2
    middle = max(len(r[1]) for r in rows) + 2
    out = ["side by side:"]
    out += [f"  {a:<{width}}{b:<{middle}}{c}".rstrip() for a, b, c in rows]
    return out


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

