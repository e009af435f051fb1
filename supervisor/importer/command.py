"""``twinbeat import-heartbeat``: the command line around ``import_heartbeat``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from supervisor.atomicfile import atomic_write
from supervisor.config import ConfigError, load_config
from supervisor.importer.common import HeartbeatImportError
from supervisor.importer.convert import import_heartbeat

# --------------------------------------------------------------------------------------------
# The command line


def main_import(argv: Sequence[str]) -> int:
    """``twinbeat import-heartbeat``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="twinbeat import-heartbeat",
        description="Convert heartbeat's ha.cf, haresources and authkeys into cluster.toml.",
    )
    parser.add_argument("--ha-cf", required=True, metavar="FILE", help="heartbeat's ha.cf")
    parser.add_argument("--haresources", required=True, metavar="FILE")
    parser.add_argument("--authkeys", required=True, metavar="FILE")
    parser.add_argument(
        "--output", metavar="FILE",
        help="write cluster.toml here and the key file 'authkeys' beside it (mode 0600); "
        "without it the TOML goes to stdout and no key file is written",
    )
    parser.add_argument("--node", metavar="NAME", help="a node's name, when ha.cf lists fewer "
                        "than two nodes or more")
    parser.add_argument("--peer", metavar="NAME", help="the other node's name (with --node)")
    parser.add_argument("--name", default="heartbeat", help="cluster name (default heartbeat)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--unflatten", action="store_true",
                        help="split an ha.cf line holding several directives behind '#' "
                        "(a flattened web copy) at the directive names")
    args = parser.parse_args(list(argv))
    prog = "twinbeat import-heartbeat"

    texts: list[str] = []
    for path in (args.ha_cf, args.haresources, args.authkeys):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            print(f"{prog}: error: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 1
        try:
            texts.append(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            print(f"{prog}: error: {path}:{line}: not UTF-8 text", file=sys.stderr)
            return 1

    output = Path(args.output) if args.output else None
    key_file = output.parent / "authkeys" if output else None
    if output is not None and key_file is not None:
        if not output.parent.is_dir():
            print(f"{prog}: error: {output.parent} is not a folder", file=sys.stderr)
            return 1
        if output.name == "authkeys":
            print(f"{prog}: error: --output must not be named authkeys: the key file is "
                  "written beside it under that name", file=sys.stderr)
            return 1
        if not args.force:
            existing = [str(f) for f in (output, key_file) if os.path.lexists(f)]
            if existing:
                print(f"{prog}: error: {' and '.join(existing)} already exist(s); "
                      "use --force to overwrite", file=sys.stderr)
                return 1
    try:
        result = import_heartbeat(
            *texts, node=args.node, peer=args.peer, cluster_name=args.name,
            unflatten=args.unflatten, ha_cf_name=args.ha_cf, haresources_name=args.haresources,
            authkeys_name=args.authkeys,
        )
    except HeartbeatImportError as exc:
        for problem in exc.problems:
            print(f"{prog}: error: {problem}", file=sys.stderr)
        return 1

    for w in result.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    for n in result.notes:
        print(f"note: {n}", file=sys.stderr)
    if output is None or key_file is None:
        sys.stdout.write(result.config_text)
        print("note: no key file was written (only with --output); the config expects it as "
              "'authkeys' beside cluster.toml, mode 0600", file=sys.stderr)
        return 0
    try:
        _write_new(key_file, result.authkeys_text.encode(), 0o600, args.force)
        try:
            _write_new(output, result.config_text.encode(), 0o644, args.force)
        except BaseException:
            key_file.unlink(missing_ok=True)
            raise
    except FileExistsError as exc:
        print(f"{prog}: error: {exc.filename} already exists; use --force to overwrite",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: cannot write {exc.filename or output}: {exc.strerror}",
              file=sys.stderr)
        return 1
    try:
        load_config(output, check_devices=False)
    except ConfigError as exc:  # a bug here, not in the input: say so plainly
        print(f"{prog}: error: the written configuration does not load:\n{exc}", file=sys.stderr)
        return 1
    key_note = "a fresh random key" if result.fresh_key else "the secret from authkeys"
    print(f"wrote {output} and {key_file} (mode 0600, {key_note})", file=sys.stderr)
    return 0


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write a file atomically (supervisor.atomicfile: private until renamed or linked into
    place, so a key is never readable by others, not even for an instant). ``mode`` other
    than 0600 follows the umask, as a file the shell creates. Without ``force`` an existing
    file is never replaced (FileExistsError)."""
    atomic_write(path, data, mode=mode & ~_umask() if mode != 0o600 else 0o600, replace=force)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
