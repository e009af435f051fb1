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


MAILTO_PREFIX = "mailto::"


def _mailto(word: str, ref: str, mails: list[tuple[str, str]], p: Problems) -> None:
    """heartbeat's ``MailTo::addr[,addr]::subject`` resource: a mail on every takeover and
    release. twinbeat mails events itself, so it becomes ``[notify] mail_to``, never a
    resource (a script named MailTo does not exist here and would fail the group)."""
    parts = word.split("::")
    addrs = [a.strip() for a in parts[1].split(",") if a.strip()] if len(parts) > 1 else []
    subject = parts[2] if len(parts) > 2 else ""
    if not addrs:
        p.error(ref, f"{word}: MailTo needs an address (MailTo::addr::subject)")
        return
    for addr in addrs:
        if addr not in [a for a, _ in mails]:
            mails.append((addr, ref))
    said = (f" (its subject {subject!r} is not used: twinbeat's subjects name the event)"
            if subject else "")
    p.note(ref, f"{word}: not a resource in twinbeat: {', '.join(addrs)} joins [notify] "
           f"mail_to, which mails every failover, takeover and release from a durable queue"
           f"{said}; set [notify] smarthost to your mail relay")


def read_haresources(text: str, name: str, p: Problems,
                     mails: list[tuple[str, str]] | None = None) -> list[HaGroup]:
    """The groups of haresources; heartbeat's MailTo resources are taken out of them and
    their addresses added to ``mails`` (address, line)."""
    groups: list[HaGroup] = []
    mails = [] if mails is None else mails
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
        if len(words) > 1 and any(w.lower().startswith(MAILTO_PREFIX) for w in words[1:]):
            for w in words[1:]:
                if w.lower().startswith(MAILTO_PREFIX):
                    _mailto(w, ref, mails, p)
            words = [words[0]] + [w for w in words[1:]
                                  if not w.lower().startswith(MAILTO_PREFIX)]
            if len(words) == 1:
                p.note(ref, "this line held only MailTo: no group is made of it")
                continue
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
