"""What the commands share: exit codes, the control-socket request, loading a configuration
with its problems printed, asking the operator to confirm."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from supervisor.config import DEFAULT_CONFIG, Config, ConfigError, load_config
from supervisor.control import ControlError, request
from supervisor.statefiles import CONTROL_SOCKET

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def config_option(p: argparse.ArgumentParser) -> None:
    """The --config FILE option every command that reads cluster.toml takes."""
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
                   help=f"cluster configuration (default {DEFAULT_CONFIG})")


def load_or_report(path: Path) -> Config | None:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = sum(1 for p in exc.problems if p.severity == "error")
        print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return None
    for warning in cfg.warnings:
        print(warning, file=sys.stderr)
    return cfg


def ask(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return request(args.state_dir / CONTROL_SOCKET, payload)
    except ControlError as exc:
        print(f"twinbeat: {exc}", file=sys.stderr)
        return None


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print("twinbeat: not confirmed (no terminal to ask on); add --yes", file=sys.stderr)
        return False
    try:
        return input(f"{question} Type yes to go on: ").strip().lower() == "yes"
    except EOFError:
        return False


def printable(text: str) -> str:
    """``text`` safe to print on any terminal: control characters, lone surrogates and other
    unprintable characters become Python escapes (``\\x1b``, ``\\ud800``). Status and reasons
    carry names a peer sent; a name must never break the output or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
