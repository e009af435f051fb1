"""This node's side of a rolling upgrade (I/O): its facts, and the update agent that answers
the other node (``twinbeat upgrade-agent``, twinbeat-upgrade-agent.service; protocol in
agent.py).

The agent listens on this node's crossover address only (cluster.toml's
``crossover_address``), one connection at a time, each with a time limit. It answers:

``facts``    the release, the booted slot, whether there is another slot to install to, an
             update waiting for its first boot or on trial, the last update failure, the
             bundles held in /persist/lifecycle/bundles;
``put``      a bundle, checked against the SHA-256 the signed request names;
``install``  ``twinbeat install`` of a held bundle (RAUC checks its signature), its output;
``reboot``   answered first, then ``systemctl reboot``;
``forget``   removes the held bundles.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from supervisor.lifecycle import agent as agentlib
from supervisor.lifecycle.agent import Reply, Stream

log = logging.getLogger("twinbeat.upgrade-agent")
#: longest a client may take to send its request (a bundle's bytes are read with it)
READ_TIMEOUT = 120.0
INSTALL_TIMEOUT = 3600.0


def local_facts(me: str, bundles: Path) -> dict[str, Any]:
    from supervisor.lifecycle.system import (
        SLOT_DEVICES,
        Records,
        block_size,
        booted_slot,
        other_slot,
        running_version,
    )

    records = Records()
    pending, failure = records.pending(), records.failure()
    booted = booted_slot()
    return {
        "node": me,
        "release": running_version(),
        "slot": booted,
        "can_install": bool(booted) and block_size(SLOT_DEVICES[other_slot(booted)]) is not None,
        "pending": pending.to_json() if pending else None,
        "failure": failure.to_json() if failure else None,
        "bundles": agentlib.bundles_in(bundles),
    }


Run = Callable[[list[str], float], tuple[bool, str]]


def handlers(me: str, bundles: Path, run: Run,
             facts: Callable[[], dict[str, Any]] | None = None
             ) -> dict[str, agentlib.Handler]:
    """The agent's requests; ``run`` runs a command (argv, timeout) -> (ok, output)."""

    def do_facts(args: Mapping[str, Any], stream: Stream) -> Reply:
        return Reply({"ok": True, "facts": facts() if facts else local_facts(me, bundles)})

    def do_put(args: Mapping[str, Any], stream: Stream) -> Reply:
        return agentlib.receive_bundle(args, stream, bundles)

    def do_install(args: Mapping[str, Any], stream: Stream) -> Reply:
        name = args.get("name")
        if not isinstance(name, str) or name not in agentlib.bundles_in(bundles):
            return Reply({"ok": False, "error": f"no bundle {name!r} here (copy it first)"})
        argv = ["twinbeat", "install", str(bundles / name)]
        if args.get("allow_downgrade") is True:
            argv.append("--allow-downgrade")
        ok, output = run(argv, INSTALL_TIMEOUT)
        answer: dict[str, Any] = {"ok": ok, "output": output}
        if not ok:
            answer["error"] = (output.strip().splitlines() or ["twinbeat install failed"])[-1]
        return Reply(answer)

    def do_reboot(args: Mapping[str, Any], stream: Stream) -> Reply:
        def reboot() -> None:
            ok, output = run(["systemctl", "reboot"], 60)
            if not ok:
                log.error("reboot failed: %s", output)

        return Reply({"ok": True, "rebooting": me}, after=reboot)

    def do_forget(args: Mapping[str, Any], stream: Stream) -> Reply:
        return Reply({"ok": True, "removed": agentlib.forget_bundles(bundles)})

    return {"facts": do_facts, "put": do_put, "install": do_install, "reboot": do_reboot,
            "forget": do_forget}


def run_command(argv: list[str], timeout: float) -> tuple[bool, str]:
    from supervisor.drivers.runner import run_sync

    r = run_sync(argv, timeout=timeout)
    return r.ok, (r.stdout + r.stderr) if r.ok else (r.stdout + r.stderr + "\n" + r.describe())


def serve(listener: socket.socket, key: bytes, table: Mapping[str, agentlib.Handler],
          once: bool = False, stop: threading.Event | None = None) -> None:
    """Answer one connection after the other (one only with ``once``). To end it from
    another thread: set ``stop``, then shut the listener down (that wakes accept)."""
    while True:
        try:
            conn, addr = listener.accept()
        except OSError:
            if stop is not None and stop.is_set():
                return
            raise
        who = addr[0] if isinstance(addr, tuple) else "a local client"
        with conn:
            conn.settimeout(READ_TIMEOUT)
            try:
                what = agentlib.serve_connection(conn, key, table)
                log.info("%s: %s", who, what)
            except (OSError, agentlib.AgentError) as exc:
                log.warning("%s: %s", who, exc)
        if once:
            return


def cmd_agent(args: argparse.Namespace) -> int:
    from supervisor.config import ConfigError, load_authkeys, load_config
    from supervisor.lifecycle.system import LIFECYCLE_DIR

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        cfg = load_config(Path(args.config))
        key = load_authkeys(cfg.authkeys_path).secret
    except (ConfigError, OSError, ValueError) as exc:
        log.error("not starting: %s", exc)
        return 1
    me = args.node or socket.gethostname().split(".")[0]
    node = next((n for n in cfg.nodes if n.name == me), None)
    if node is None or node.crossover_address is None:
        log.error("not starting: %s has no crossover address in %s", me, args.config)
        return 1
    family = socket.AF_INET6 if node.crossover_address.version == 6 else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((str(node.crossover_address), args.port))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", node.crossover_address, args.port,
                  exc.strerror or exc)
        return 1
    listener.listen(2)
    log.info("update agent of %s listening on %s:%d", me, node.crossover_address, args.port)
    serve(listener, agentlib.channel_key(key),
          handlers(me, LIFECYCLE_DIR / "bundles", run_command))
    return 0
