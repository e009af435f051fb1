"""Small persistent state under the state directory (default /var/lib/twinbeat)."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.atomicfile import atomic_write
from supervisor.core.codec import RELEASE_RE

DEFAULT_STATE_DIR = Path("/var/lib/twinbeat")
CONTROL_SOCKET = "control.sock"


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
    atomic_write(path, f"{new}\n", mode=0o600)
    return new


#: the release of the installed twinbeat (written into the image by scripts/build-image.sh)
RELEASE_FILE = Path("/usr/lib/twinbeat/VERSION")


def read_release(path: Path = RELEASE_FILE) -> str:
    """This node's twinbeat release, "" when the file is missing or not a release."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    return text if RELEASE_RE.match(text) else ""
