"""The commands that ask the running daemon to act: standby, takeover [--force-data], cleanup,
unpin, maintenance, resolve-split-brain, and DRBD's fence-peer handler."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from supervisor.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, ask, confirm, printable
from supervisor.cli.status import format_replica
from supervisor.control import ControlError, request
from supervisor.statefiles import CONTROL_SOCKET

#: how long resolve-split-brain waits for both halves (the core gives the peer 120 s)
RESOLVE_ANSWER_TIMEOUT = 150.0


def cmd_admin(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"command": args.command, "group": getattr(args, "group", None)}
    if args.command == "maintenance":
        request = {"command": "maintenance", "on": args.mode == "on", "node": args.node}
    answer = ask(args, request)
    if answer is None:
        return EXIT_FAIL
    for reason in answer.get("reasons") or []:
        print(printable(str(reason)))
    if not answer.get("ok"):
        if answer.get("error") and not answer.get("reasons"):
            print(printable(f"twinbeat: {answer['error']}"), file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def _replicas(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    answer = ask(args, {"command": "status"})
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
    if not args.yes and not confirm("Promote possibly stale data?"):
        return EXIT_FAIL
    answer = ask(args, {"command": "takeover", "group": args.group, "force_data": True})
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
    if not args.yes and not confirm(f"Throw away {args.discard}'s changes?"):
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
    return follow_resync(args, [r["name"] for r in replicas
                                if args.resource in (None, r["name"])], args.wait)


def replicas_in_sync(replication: list[dict[str, Any]], names: list[str]) -> bool:
    """Every replica named is Connected, UpToDate on both sides, no resync, no split brain."""
    wanted = [r for r in replication if r["name"] in names]
    return bool(wanted) and all(
        r["connection"] == "Connected" and r["disk"] == r["peer_disk"] == "UpToDate"
        and not r.get("syncing") and not r.get("split_brain") for r in wanted)


def follow_resync(args: argparse.Namespace, names: list[str], wait: float,
                  clock: Any = time.monotonic, sleep: Any = time.sleep) -> int:
    """Print each replica's line whenever it changes until all are Connected and
    UpToDate/UpToDate (exit 0) or ``wait`` seconds pass (exit 1)."""
    deadline = clock() + wait
    last: dict[str, str] = {}
    while True:
        answer = ask(args, {"command": "status"})
        if answer is None:
            return EXIT_FAIL
        replication = answer["status"].get("replication") or []
        for r in replication:
            if r["name"] in names:
                line = printable(format_replica(r).splitlines()[0])
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
