"""The one writer of cluster.toml: ``dump(config or mapping) -> str``.

The settings table orders the tables and keys, checks and spells every value (each row's
parser, then its formatter: a value the loader would refuse is never written) and gives each
key its comment (the row's help) and each table the help of its section. The first-boot
wizard and ``twinbeat import-heartbeat`` write through it; ``load_config(text=dump(c)) == c``
for every configuration (tests/test_config_dump.py).

``notes`` adds the caller's words: a note for a key replaces the help as its comment (the
importer says which heartbeat line a value came from); a note for a table, keyed ``(table,)``
or ``(table, index)``, goes above that table's header.
"""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from supervisor.config.locator import KeyPath, keyname
from supervisor.config.model import Config, MetricsConfig, NotifyConfig, StatusPageConfig
from supervisor.settings import SECTIONS, Section, Setting, render_value, sections_of, settings_of

COMMENT_COLUMN = 34
WIDTH = 96


# --------------------------------------------------------------------------------------------
# A configuration as plain TOML tables


def as_mapping(config: Config) -> dict[str, Any]:
    """Every setting of ``config`` that has a value, as TOML values, table by table."""
    data: dict[str, Any] = {"cluster": _row_values("cluster", config)}
    authkeys = Path(config.authkeys_path)
    if authkeys.parent == Path(config.path).parent:
        data["cluster"]["authkeys"] = authkeys.name  # beside the file: as the wizard reads it
    data["timing"] = _row_values("timing", config.timing)
    data["watchdog"] = _row_values("watchdog", config.watchdog)
    data["takeover"] = _row_values("takeover", config.takeover)
    data["node"] = [_row_values("node", n) for n in config.nodes]
    data["link"] = [_row_values(f"link.{link.type}", link) for link in config.links]
    data["group"] = [_row_values("group", g) for g in config.groups]
    if config.replicated:
        data["replicated"] = [_row_values("replicated", r) for r in config.replicated]
    # the optional tables only when they say something (a configuration without them
    # reads back the same)
    for table, value, default in (("notify", config.notify, NotifyConfig()),
                                  ("metrics", config.metrics, MetricsConfig()),
                                  ("status_page", config.status_page, StatusPageConfig())):
        if value != default:
            data[table] = _row_values(table, value)
    return data


def _row_values(section: str, obj: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for row in settings_of(section):
        value = getattr(obj, row.field)
        if value is not None:
            out[row.key] = row.format(value)
    return out


# --------------------------------------------------------------------------------------------
# Writing


def dump(
    data: Config | Mapping[str, Any],
    *,
    header: str = "",
    notes: Mapping[KeyPath, str] | None = None,
    key_help: bool = True,
    strict: bool = True,
) -> str:
    """cluster.toml for ``data``; ValueError naming the key if a value is not valid.

    ``header`` is a comment above everything (its lines as given); ``key_help=False`` leaves
    out the help comments of keys that have no note. ``strict=False`` writes values as given
    (still TOML) for a caller that runs the loader next and wants all of its problems (the
    importer: it maps them back to heartbeat's lines).
    """
    tables = as_mapping(data) if isinstance(data, Config) else data
    notes = notes or {}
    known = {s.table for s in SECTIONS}
    unknown = sorted(set(tables) - known)
    if unknown:
        raise ValueError(f"unknown table(s): {', '.join(unknown)}")
    out: list[str] = [comment(line) for line in header.splitlines()]
    if out:
        out.append("")
    for table in dict.fromkeys(s.table for s in SECTIONS):
        if table not in tables:
            continue
        first = sections_of(table)[0]
        value = tables[table]
        if first.array:
            if not isinstance(value, Sequence) or isinstance(value, str | bytes):
                raise ValueError(f"{table}: expected a list of tables")
            for i, entry in enumerate(value):
                section = _section_for(table, entry, i)
                out += _table_lines(section, entry, (table, i), notes=notes,
                                    key_help=key_help, strict=strict, help_above=i == 0)
        else:
            if not isinstance(value, Mapping):
                raise ValueError(f"{table}: expected a table")
            out += _table_lines(first, value, (table,), notes=notes, key_help=key_help,
                                strict=strict, help_above=True)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def comment(text: str) -> str:
    """One comment line (control characters, which a comment cannot hold, shown as ?)."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return f"# {clean}" if clean else "#"


def _section_for(table: str, entry: object, i: int) -> Section:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{table}[{i}]: expected a table")
    choices = sections_of(table)
    if len(choices) == 1:
        return choices[0]
    kind = entry.get("type")
    for s in choices:
        if s.variant == kind:
            return s
    raise ValueError(f"{table}[{i}].type: {kind!r} is not one of: "
                     f"{', '.join(str(s.variant) for s in choices)}")


def _table_lines(
    section: Section,
    values: Mapping[str, Any],
    path: KeyPath,
    *,
    notes: Mapping[KeyPath, str],
    key_help: bool,
    strict: bool,
    help_above: bool,
) -> list[str]:
    out: list[str] = []
    if help_above and section.help:
        out += [comment(line) for line in textwrap.wrap(section.help, WIDTH - 2)]
    for note_key in ((section.table,), path) if section.array else (path,):
        if note_key in notes and (note_key != (section.table,) or help_above):
            for para in notes[note_key].splitlines():
                out += [comment(line) for line in textwrap.wrap(para, WIDTH - 2)] or ["#"]
    out.append(f"[[{section.table}]]" if section.array else f"[{section.table}]")
    rows = {s.key: s for s in settings_of(section.name)}
    unknown = [k for k in values if k not in rows]
    if unknown:
        raise ValueError(f"{keyname((*path, unknown[0]))}: not a setting of [{section.table}]")
    for key, row in rows.items():
        if key not in values or values[key] is None:
            continue
        text = _spell(row, values[key], (*path, key)) if strict else _plain(values[key])
        note = notes.get((*path, key))
        said = note if note is not None else (row.help if key_help else "")
        out += _key_lines(key, text, row, said)
    out.append("")
    return out


def _spell(row: Setting, value: Any, path: KeyPath) -> Any:
    """The TOML value of ``value``: the row parses it (so the loader will accept it) and
    formats what it parsed."""
    try:
        return row.format(row.parse(_plain(value)))
    except ValueError as exc:
        raise ValueError(f"{keyname(path)}: {exc}") from None


def _plain(value: Any) -> Any:
    """Values as tomllib reads them: addresses as text, tuples as lists."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _key_lines(key: str, value: Any, row: Setting, said: str) -> list[str]:
    if row.multiline and isinstance(value, list) and len(value) > 1:
        lines = [f"{key} = [", *(f"    {render_value(v)}," for v in value), "]"]
    else:
        lines = [f"{key} = {render_value(value)}"]
    if said:
        first = f"{lines[0]:<{COMMENT_COLUMN - 1}} {comment(said)}"
        if len(first) <= WIDTH + 4:
            lines[0] = first
        else:  # too long beside the value: above it
            lines[:0] = [comment(line) for line in textwrap.wrap(said, WIDTH - 2)]
    return lines
