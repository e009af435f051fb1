"""The event history in the state directory: the last N events of each node, kept across
restarts (``/var/lib/twinbeat/history.json``), and ``twinbeat history``.

The file is rewritten whole and atomically (write a temporary file, fsync, rename) by the
daemon's writer, off the decision path; events are rare (a handful per failover), so a file
of a few hundred events costs nothing to rewrite. It holds this node's events and the peer's
(received over the heartbeat links), one timeline ordered by wall-clock time. The next
sequence number is stored with them, so a node's numbers never go back; a corrupt file is
kept aside (``history.json.bad``) and numbering restarts above anything a sane earlier run
could have used.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor.atomicfile import atomic_write
from supervisor.core.notify import ClusterEvent, Notice, merge, stamp

HISTORY_FILE = "history.json"
DEFAULT_KEEP = 500
FORMAT_VERSION = 1


class History:
    def __init__(self, state_dir: Path, node: str, keep: int = DEFAULT_KEEP) -> None:
        self.path = state_dir / HISTORY_FILE
        self.node = node
        self.keep = keep
        self.events: list[ClusterEvent] = []
        self.next_seq = 1
        self.problem = ""
        self.dirty = False

    # -- reading -------------------------------------------------------------------------------

    def load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("unknown format")
            events = [ClusterEvent.from_dict(d) for d in data["events"]]
            next_seq = data["next_seq"]
            if isinstance(next_seq, bool) or not isinstance(next_seq, int):
                raise ValueError("bad next_seq")
        except (ValueError, KeyError, TypeError) as exc:
            self.problem = f"{self.path} was unreadable ({exc}); kept as {self.path.name}.bad"
            atomic_write(self.path.with_name(self.path.name + ".bad"), raw, mode=0o600)
            self.path.unlink()
            # above any number an earlier run can have handed out (one event per ms at most)
            self.next_seq = int(time.time() * 1000)
            return
        own = [e.seq for e in events if e.node == self.node]
        self.next_seq = max([next_seq, *(s + 1 for s in own)])
        self.events = merge(events, keep=self.keep)

    # -- writing -------------------------------------------------------------------------------

    def record(self, notice: Notice, *, mono: float, wall: float) -> ClusterEvent:
        event = stamp(notice, node=self.node, seq=self.next_seq, mono=mono, wall=wall)
        self.next_seq += 1
        self.events = merge(self.events, [event], keep=self.keep)
        self.dirty = True
        return event

    def add_remote(self, events: list[ClusterEvent]) -> list[ClusterEvent]:
        """Take the peer's events; return those that were new here."""
        known = {e.key for e in self.events}
        new = [e for e in events if e.key not in known and e.node != self.node]
        if new:
            self.events = merge(self.events, new, keep=self.keep)
            self.dirty = True
        return new

    def last_seq(self, node: str) -> int:
        return max((e.seq for e in self.events if e.node == node), default=0)

    def after(self, node: str, seq: int) -> list[ClusterEvent]:
        """``node``'s events with a sequence number above ``seq``, oldest first."""
        return sorted((e for e in self.events if e.node == node and e.seq > seq),
                      key=lambda e: e.seq)

    def serialise(self) -> bytes:
        data = {"version": FORMAT_VERSION, "node": self.node, "next_seq": self.next_seq,
                "events": [e.to_dict() for e in self.events]}
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()

    def save(self, data: bytes | None = None) -> None:
        """Write the file atomically (``data`` from ``serialise()`` taken on the loop)."""
        atomic_write(self.path, self.serialise() if data is None else data, mode=0o600)


# --------------------------------------------------------------------------------------------
# `twinbeat history`

_AGO_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$", re.IGNORECASE)
_AGO_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or a date and
    time (``2026-12-01``, ``2026-12-01T10:30``, ``2026-12-01 10:30:00``; UTC unless an offset
    is given). Returns UNIX time."""
    m = _AGO_RE.match(text)
    if m:
        return now - float(m.group(1)) * _AGO_UNITS[m.group(2).lower()]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration (10m, 2h, 1d) or a date and "
                         "time (2026-12-01T10:30)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def format_time(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_event(e: ClusterEvent) -> str:
    about = ", ".join(x for x in (e.group and f"group {e.group}", e.link and f"link {e.link}",
                                  e.resource and f"resource {e.resource}") if x)
    return (f"{format_time(e.wall)} {e.node}#{e.seq} {e.severity.label.upper():<8} "
            f"{e.kind.value}{f' ({about})' if about else ''}: {e.reason}")




def history_report(state_dir: Path, *, since: float | None, as_json: bool) -> tuple[str, str]:
    """(stdout text, problem) for ``twinbeat history``."""
    h = History(state_dir, "", keep=10**9)
    if not h.path.exists():
        return "", f"no history yet ({h.path} does not exist)"
    try:
        data = json.loads(h.path.read_bytes())
        events = [ClusterEvent.from_dict(d) for d in data["events"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return "", f"cannot read {h.path}: {exc}"
    events = merge(events, keep=10**9)
    if since is not None:
        events = [e for e in events if e.wall >= since]
    if as_json:
        out: Any = [e.to_dict() for e in events]
        return json.dumps(out, indent=2) + "\n", ""
    return "".join(format_event(e) + "\n" for e in events), ""
