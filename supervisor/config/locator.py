"""Line numbers for TOML keys: ``tomllib`` gives none, so the keys are located in the text.

Every problem the loader reports names a line (``cluster.toml:14: timing.deadtime: ...``),
and the importer maps the lines of what it wrote back to heartbeat's lines; both use this.
"""

from __future__ import annotations

import re
import tomllib

KeyPath = tuple[str | int, ...]


class Locator:
    """Maps a key path such as ("group", 1, "resources") to its line in the TOML text.

    It follows enough of TOML to stay in step: table headers (dotted and quoted names, prefixes
    recorded too), arrays of tables (counted), dotted keys, and values that span lines (arrays,
    multi-line strings) with brackets, quotes and ``#`` inside strings or comments ignored.
    """

    _PART = r"(?:[A-Za-z0-9_\-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*')"
    _DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
    _HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(rf"^\s*({_DOTTED})\s*=")
    _PARTS = re.compile(_PART)

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        counters: dict[tuple[str, ...], int] = {}
        table: KeyPath = ()
        depth = 0  # open [ and { of a value that continues on the next lines
        closing: str | None = None  # the delimiter of an open multi-line string
        for number, line in enumerate(text.splitlines(), start=1):
            if closing is not None or depth > 0:
                depth, closing = self._scan(line, depth, closing)
                continue
            k = self._KEY.match(line)
            m = None if k else self._HEADER.match(line)
            if m:
                name = self._split(m.group(2))
                if m.group(1) == "[[":
                    idx = counters.get(name, 0)
                    counters[name] = idx + 1
                    table = (*name, idx)
                else:
                    table = name
                for n in range(1, len(table) + 1):
                    self.lines.setdefault(table[:n], number)
                continue
            if k:
                keys = self._split(k.group(1))
                for n in range(1, len(keys) + 1):
                    self.lines.setdefault((*table, *keys[:n]), number)
                depth, closing = self._scan(line[k.end():], 0, None)

    @classmethod
    def _split(cls, dotted: str) -> tuple[str, ...]:
        parts = []
        for part in cls._PARTS.findall(dotted):
            key = part
            if part[0] in "\"'":
                try:
                    key = next(iter(tomllib.loads(f"{part} = 0")))
                except tomllib.TOMLDecodeError:
                    key = part[1:-1]
            parts.append(key)
        return tuple(parts)

    @staticmethod
    def _scan(text: str, depth: int, closing: str | None) -> tuple[int, str | None]:
        """Follow a value through one line: string quotes, comments and bracket depth."""
        i = 0
        while i < len(text):
            if closing is not None:
                if closing == '"""' and text[i] == "\\":
                    i += 2
                    continue
                if text.startswith(closing, i):
                    i += 3
                    closing = None
                    continue
                i += 1
                continue
            c = text[i]
            if c == "#":
                break
            if text.startswith('"""', i) or text.startswith("'''", i):
                closing = text[i : i + 3]
                i += 3
                continue
            if c in "\"'":
                i += 1
                while i < len(text) and text[i] != c:
                    i += 2 if c == '"' and text[i] == "\\" else 1
                i += 1
                continue
            if c in "[{":
                depth += 1
            elif c in "]}":
                depth = max(0, depth - 1)
            i += 1
        return depth, closing

    def line(self, path: KeyPath) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1


def keyname(path: KeyPath) -> str:
    """``("group", 1, "resources")`` -> ``group[1].resources`` (how problems name a key)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out
