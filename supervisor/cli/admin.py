"""The commands that ask the running daemon to act: standby, takeover [--force-data], cleanup,
resolve-split-brain, and DRBD's fence-peer handler."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from supervisor.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, ask, confirm, printable
from supervisor.control import ControlError, request
from supervisor.statefiles import CONTROL_SOCKET

#: fence-peer's exit code when the daemon cannot ask the peer: "peer could not be reached"
FENCE_UNREACHABLE = 5
#: how long fence-peer waits for the daemon's answer; the daemon answers within its own
#: fence timeout (max(2 x deadtime, 10 s)) or as soon as the peer is declared dead
FENCE_ANSWER_TIMEOUT = 120.0


def cmd_admin(args: argparse.Namespace) -> int:
    answer = ask(args, {"command": args.command, "group": args.group})
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
    answer = ask(args, {"command": "resolve-split-brain", "discard": args.discard,
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
