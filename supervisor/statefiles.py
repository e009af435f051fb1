"""Small persistent state under the state directory (default /var/lib/twinbeat)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
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
MAINTENANCE_FILE = "maintenance.json"


def load_maintenance(state_dir: Path) -> tuple[dict[str, tuple[bool, int]], str]:
    """The maintenance flags the last run saved (node -> (on, stamp)), and a problem ("" when
    the file was fine or absent; an unreadable file is reported and ignored)."""
    path = state_dir / MAINTENANCE_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, ""
    except OSError as exc:
        return {}, f"cannot read {path}: {exc}"
    try:
        data = json.loads(raw)
        flags = {}
        for node, item in data["nodes"].items():
            on, stamp = item["on"], item["stamp"]
            if not isinstance(on, bool) or isinstance(stamp, bool) or not isinstance(stamp, int):
                raise ValueError(f"bad entry for {node!r}")
            flags[str(node)] = (on, stamp)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return {}, f"{path} is unreadable ({exc}); maintenance flags ignored"
    return flags, ""


def save_maintenance(state_dir: Path, flags: Iterable[tuple[str, bool, int]]) -> None:
    data = {"nodes": {node: {"on": on, "stamp": stamp} for node, on, stamp in flags}}
    atomic_write(state_dir / MAINTENANCE_FILE, json.dumps(data, indent=1, sort_keys=True) + "\n",
                 mode=0o600)
SPLIT_BRAINS = "split-brain.json"


def load_split_brains(state_dir: Path) -> dict[str, dict[str, object]]:
    """The DRBD split brains detected and not resolved yet, as a previous run left them:
    {resource: {"detail": ..., "since": epoch seconds}}; {} when none (or unreadable)."""
    try:
        data = json.loads((state_dir / SPLIT_BRAINS).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def save_split_brains(state_dir: Path, data: dict[str, dict[str, object]]) -> None:
    """Remember the unresolved split brains across restarts (removed when there is none)."""
    path = state_dir / SPLIT_BRAINS
    if not data:
        path.unlink(missing_ok=True)
        return
    atomic_write(path, json.dumps(data, sort_keys=True) + "\n", mode=0o600)
