"""``twinbeat check-config`` and ``twinbeat drbd-config``: the configuration, read and
checked, and the DRBD resource files rendered from it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from supervisor.cli.common import EXIT_FAIL, EXIT_OK, load_or_report
from supervisor.config import describe_settings


def cmd_drbd_config(args: argparse.Namespace) -> int:
    from supervisor import drbdconf

    cfg = load_or_report(args.config)
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
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_FAIL
    groups = ", ".join(g.name for g in cfg.groups) or "none"
    print(
        f"{args.config}: OK (cluster {cfg.cluster_name}, nodes "
        f"{' and '.join(n.name for n in cfg.nodes)}, {len(cfg.links)} links, groups: {groups})"
    )
    from supervisor.resourcecheck import check_resources

    status = EXIT_OK
    for missing in check_resources(cfg, Path(args.config).read_text(encoding="utf-8"),
                                   drbd_dir=args.drbd_dir):
        print(missing, file=sys.stderr)
        if missing.severity == "error":
            status = EXIT_FAIL
    if not cfg.replicated:
        return status
    from supervisor import drbdconf

    for r in cfg.replicated:
        problem = drbdconf.check_file(cfg, r, args.drbd_dir)
        if problem is None:
            print(f"{drbdconf.resource_path(r, args.drbd_dir)}: OK (matches {args.config})")
        else:
            print(problem, file=sys.stderr)
            status = EXIT_FAIL
    return status
