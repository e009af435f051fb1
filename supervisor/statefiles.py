"""Small persistent state under the state directory (default /var/lib/twinbeat)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/twinbeat")
CONTROL_SOCKET = "control.sock"


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to a temporary file, fsync it, rename it over ``path``, fsync the dir."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def prepare_state_dir(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)


def next_generation(state_dir: Path) -> int:
    """Read the boot generation, add one, persist it before it is ever used on the wire."""
    path = state_dir / "generation"
    try:
        old = int(path.read_text().strip() or "0")
    except FileNotFoundError:
        old = 0
    except ValueError:
        # A corrupt file: start above anything a sane previous run could have used.
        old = int(os.stat(path).st_mtime)
    new = old + 1
    atomic_write(path, f"{new}\n".encode(), 0o600)
    return new
