"""The mount table: ``/proc/PID/mountinfo`` parsed (pure, standard library only).

Apart from the Filesystem agent so that light programs (twinbeat-prepare@) can read it
without importing the agents and the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

DevNo = tuple[int, int]


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    devno: DevNo
    root: str
    mountpoint: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out = []
    i = 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries = []
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        major, minor = fields[2].split(":")
        entries.append(
            MountEntry(
                int(fields[0]),
                (int(major), int(minor)),
                _unescape(fields[3]),
                _unescape(fields[4]),
                fields[sep + 1],
                _unescape(fields[sep + 2]),
            )
        )
    return entries
