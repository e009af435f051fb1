"""Reading haresources: one resource group per line, the preferred node first."""

from __future__ import annotations

import re
from dataclasses import dataclass

from supervisor import names
from supervisor.importer.common import Problems, refname
from supervisor.resource_spec import ResourceSpecError, ServiceSpec, parse_resource

_NAME_BAD = re.compile(rf"[^{names.NAME_CHARS}]+")

# --------------------------------------------------------------------------------------------
# haresources


@dataclass
class HaGroup:
    node: str
    resources: list[str]
    ref: str
    name: str = ""


def read_haresources(text: str, name: str, p: Problems) -> list[HaGroup]:
    groups: list[HaGroup] = []
    pending = ""
    start = 0
    lines = text.splitlines()
    for number, raw in enumerate(lines, start=1):
        if not pending:
            start = number
            if raw.strip().startswith("#"):
                continue
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            if number < len(lines):
                continue
            p.note(refname(name, number), "the last line ends with a backslash")
            stripped = ""
        logical = pending + stripped
        pending = ""
        words: list[str] = []
        for word in logical.split():
            if word.startswith("#"):
                break
            words.append(word)
        if not words:
            continue
        ref = refname(name, start)
        if len(words) == 1:
            p.error(ref, f"{words[0]!r} has no resources: a line is 'NODE RESOURCE...'")
            continue
        for resource in words[1:]:
            try:
                parse_resource(resource)
            except ResourceSpecError as exc:
                p.error(ref, f"resource {resource!r}: {exc}")
        groups.append(HaGroup(words[0], words[1:], ref))
    return groups


def name_groups(groups: list[HaGroup]) -> None:
    taken: set[str] = set()
    for index, group in enumerate(groups, start=1):
        name = ""
        for text in group.resources:
            try:
                spec = parse_resource(text)
            except ResourceSpecError:
                continue
            if isinstance(spec, ServiceSpec):
                name = safe_name(spec.name)
                break
        if not name or name in taken:
            name = f"group{index}"
        while name in taken:
            name += "x"
        taken.add(name)
        group.name = name


def safe_name(text: str) -> str:
    return _NAME_BAD.sub("-", text).strip("-._")[:63]
