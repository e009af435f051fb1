"""``twinbeat``: the supervisor daemon and its command line.

    twinbeat run [--config FILE] [--node NAME] [--state-dir DIR] [--drbd-dir DIR]
    twinbeat status [--json] [--state-dir DIR]
    twinbeat history [--json] [--since WHEN] [--state-dir DIR]
    twinbeat standby [GROUP] | takeover [GROUP] | cleanup [GROUP]   [--state-dir DIR]
    twinbeat unpin GROUP
    twinbeat maintenance on|off [--node NODE]
    twinbeat takeover --force-data GROUP [--yes]
    twinbeat resolve-split-brain --discard NODE [--resource RES] [--yes]
    twinbeat fence-peer [RESOURCE] [--state-dir DIR]     (DRBD's fence-peer handler)
    twinbeat check-config [--config FILE] [--drbd-dir DIR]
    twinbeat drbd-config [--write] [--config FILE] [--drbd-dir DIR]
    twinbeat import-heartbeat --ha-cf F --haresources F --authkeys F [--output FILE]
    twinbeat export pacemaker [--config FILE] [--output DIR] [--force]
    twinbeat install BUNDLE [--allow-downgrade] [--reboot]
    twinbeat upgrade BUNDLE | --resume | --status | --abandon
    twinbeat boot-check [--bound SECONDS] | persist prepare|save|seed-slots | upgrade-agent

One module per group of commands: ``parser`` (the options), ``daemon`` (run),
``configuration`` (check-config, drbd-config), ``admin`` (standby, takeover, cleanup, unpin,
maintenance, resolve-split-brain, fence-peer), ``status`` (status, history); ``common`` holds
what they share.
import-heartbeat and export pacemaker own their options (supervisor.importer,
supervisor.pacemaker). Updates (install, upgrade, boot-check, persist, upgrade-agent) are
supervisor.lifecycle.cli's.
"""

from __future__ import annotations

import sys

import supervisor.notls  # noqa: F401  (first: asyncio is imported without its TLS half)
from supervisor.cli.admin import (
    cmd_admin,
    cmd_fence_peer,
    cmd_force_data,
    cmd_resolve_split_brain,
)
from supervisor.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, printable
from supervisor.cli.configuration import cmd_check_config, cmd_drbd_config
from supervisor.cli.daemon import cmd_run
from supervisor.cli.parser import build_parser
from supervisor.cli.status import (
    cmd_history,
    cmd_status,
    format_replica,
    format_side_by_side,
    format_status,
)

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "format_replica", "format_side_by_side",
           "format_status", "main", "printable"]


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
    args = build_parser(daemon=argv[:1] == ["run"]).parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "status":
        return cmd_status(args)
    if args.command == "history":
        return cmd_history(args)
    if args.command == "takeover" and args.force_data:
        return cmd_force_data(args)
    if args.command in ("standby", "takeover", "cleanup", "unpin", "maintenance"):
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
