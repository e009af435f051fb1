"""``twinbeat run``: the supervisor daemon (logging set up, the configuration and the DRBD
resource files checked, then the loop)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

from supervisor.cli.common import EXIT_FAIL
from supervisor.config import Config, ConfigError, load_config


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
        written, problems = drbd_files_at_start(cfg, args.drbd_dir)
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
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def drbd_files_at_start(cfg: Config, drbd_dir: str | Path) -> tuple[list[str], list[str]]:
    """``drbdconf.prepare_at_start`` (write the missing DRBD resource files, report those
    that disagree with the configuration) in a forked child (``runner.in_child``): the
    files written, the problems.

    The daemon itself never imports drbdconf: jinja2 brings hashlib (with OpenSSL's
    libcrypto), tempfile, pickle, bz2, lzma, ast and inspect along, which the supervisor
    would keep for a check it makes once (in the booted image, a replicated pair's
    supervisors measured 24.9 / 25.7 MiB of PSS with it, 20.5 / 21.3 MiB without).
    Nothing runs in the daemon yet (no thread, no loop) when it forks. A check that fails,
    or does not answer within in_child's minute (the child is then killed), is a problem:
    the daemon does not start on files it could not check."""
    from supervisor.drivers.runner import ChildFailed, in_child

    def check() -> tuple[list[str], list[str]]:
        from supervisor import drbdconf

        written, problems = drbdconf.prepare_at_start(cfg, drbd_dir)
        return [str(p) for p in written], problems

    try:
        written, problems = in_child(check)
    except ChildFailed as exc:
        return [], [f"checking the DRBD resource files failed: {exc}"]
    return list(written), list(problems)
