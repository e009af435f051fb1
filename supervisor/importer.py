"""``twinbeat import-heartbeat``: turn a heartbeat v1 configuration into ``cluster.toml``.

heartbeat kept its configuration in three files under ``/etc/ha.d``: ``ha.cf`` (nodes, media,
timing), ``haresources`` (one resource group per line, the preferred node first) and ``authkeys``
(``auth N`` and the ``N method secret`` line it selects). This module reads all three the way
heartbeat read them and writes the same cluster in twinbeat's schema (``supervisor.config``):

=================================  =========================================================
ha.cf                              cluster.toml
=================================  =========================================================
``keepalive`` ``deadtime``         ``[timing]`` (bare numbers are seconds; ``ms``/``us``/``s``
``warntime`` ``initdead``          units as heartbeat reads them; absent keepalive/deadtime
                                   get heartbeat's defaults, 1 s and 30 s, written out)
``serial DEV...`` + ``baud``       one ``[[link]] type = "serial"`` per device (19200 default)
``udp``/``bcast IFACE...``         one ``[[link]] type = "udp"`` per interface, no peer
                                   (broadcast); ``udpport`` sets the port
``ucast IFACE PEER``               ``[[link]] type = "udp"`` with ``peer``
``mcast IFACE GROUP PORT TTL LOOP``  ``[[link]] type = "udp"`` with ``peer = GROUP``, port, ttl
``node NAME...``                   the two ``[[node]]`` tables (``--node``/``--peer`` complete
                                   or choose them)
``auto_failback on|off|legacy``    ``cluster.auto_failback`` (legacy = on);
``nice_failback on|off``           its old inverted name
``ping`` / ``ping_group``          ``cluster.ping_nodes``; ``deadping`` -> ``ping_timeout``
``watchdog DEV``                   ``[watchdog] mode = "required"``, ``device = DEV``
logging, ``crm``, ``stonith``...   not carried over: each is named in a note, with the reason
=================================  =========================================================

A ``#`` starts a comment anywhere on an ``ha.cf`` line, as in heartbeat. A line that holds
several directives *behind* ``#`` signs (a whole ha.cf flattened onto one line, as web pages
and e-mail have done to many published examples) is refused with an error naming the line:
heartbeat itself would have read only what comes before the first ``#``. ``unflatten=True``
(``--unflatten``) instead splits such a line at the directive names and takes every directive
found as active, listing each one in the notes so that it can be checked.

haresources: each line is one group: the preferred node, then the resources in start order in
any heartbeat form (``IPaddr::ADDR[/CIDR[/IFACE|/BCAST]]``, the bare ``ADDR/CIDR`` shorthand,
``script::arg``, ``Filesystem::...``, ``drbddisk::...``, plain service names). A backslash at
the end of a line continues it. A group is named after its first service, else ``groupN``.

authkeys: md5, sha1 (and sha256) secrets are carried over as the HMAC-SHA256 key (twinbeat
always signs with HMAC-SHA256). ``crc`` is no authentication at all: the import warns loudly
and writes a fresh random key instead; so it does when the file names no usable key.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import ipaddress
import os
import re
import secrets
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.config import (
    ConfigError,
    format_duration,
    load_config,
    parse_authkeys_text,
)
from supervisor.resource_spec import ResourceSpecError, ServiceSpec, parse_resource

HEARTBEAT_KEEPALIVE_MS = 1000  # heartbeat's built-in defaults (config.c, 1.2 and later)
HEARTBEAT_DEADTIME_MS = 30000
HEARTBEAT_BAUD = 19200
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_TIME_RE = re.compile(
    r"^(\d+(?:\.\d*)?|\.\d+)(ms|msec|us|usec|s|sec|m|min|h|hr)?$", re.IGNORECASE
)
_TIME_MS = {"ms": 1.0, "msec": 1.0, "us": 0.001, "usec": 0.001, "s": 1000.0, "sec": 1000.0,
            "m": 60000.0, "min": 60000.0, "h": 3600000.0, "hr": 3600000.0}
_TRUE = ("on", "yes", "true", "y", "1")
_FALSE = ("off", "no", "false", "n", "0")


def _random_secret() -> str:
    return secrets.token_hex(32)


@dataclass
class ImportResult:
    config_text: str  # cluster.toml, with comments saying where each value came from
    authkeys_text: str  # "auth 1\n1 sha256 SECRET\n"
    notes: list[str] = field(default_factory=list)  # what was not carried over, and why
    warnings: list[str] = field(default_factory=list)  # what needs the admin's attention
    fresh_key: bool = False  # the secret is new (crc or no usable key in authkeys)


class HeartbeatImportError(ValueError):
    """The heartbeat files cannot be converted; ``problems`` are ``file:line: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# --------------------------------------------------------------------------------------------
# ha.cf


@dataclass(frozen=True)
class _Directive:
    name: str
    args: tuple[str, ...]
    ref: str  # "ha.cf:12"
    text: str  # as written, for messages
    recovered: bool = False  # split out of a flattened line


# name -> (least, most) number of values; most None = any number
_MEDIA = {"serial": (1, None), "udp": (1, None), "bcast": (1, None), "ucast": (2, 2),
          "mcast": (5, 5)}
_VALUES: dict[str, tuple[int, int | None]] = {
    "keepalive": (1, 1), "deadtime": (1, 1), "warntime": (1, 1), "initdead": (1, 1),
    "deadping": (1, 1), "baud": (1, 1), "udpport": (1, 1), "node": (1, None),
    "auto_failback": (1, 1), "nice_failback": (1, 1), "ping": (1, None), "ping_group": (2, None),
    "watchdog": (1, 1), **_MEDIA,
}
_LOGGING = ("logfile", "debugfile", "logfacility", "use_logd", "conn_logd_time", "debug")
_NOTES = {
    **{name: "twinbeat logs to the journal (journalctl -u twinbeat)" for name in _LOGGING},
    "hopfudge": "only matters with more than two nodes; a twinbeat cluster has exactly two",
    "realtime": "twinbeat's service unit sets its scheduling",
    "rtprio": "twinbeat's service unit sets its scheduling",
    "apiauth": "twinbeat has no heartbeat API and no API clients",
    "respawn": "twinbeat starts no helper programs; run them as systemd services",
    "crm": "",  # decided by its value
    **{
        name: "a heartbeat 2 setting with no counterpart in twinbeat"
        for name in (
            "msgfmt", "compression", "compression_threshold", "traditional_compression",
            "hbgenmethod", "coredumps", "coreroot", "autojoin", "uuidfrom", "max_rexmit_delay",
            "env", "use_apphbd", "record_config_changes", "record_pengine_inputs",
            "enable_config_writes", "normalpoll", "memreserve",
        )
    },
}
_WARN = {
    "stonith": "twinbeat has no STONITH device support: a node that must stop is reset by its "
    "own watchdog (see [watchdog]) - check that this is enough for your shared storage",
    "stonith_host": "twinbeat has no STONITH device support: a node that must stop is reset by "
    "its own watchdog (see [watchdog]) - check that this is enough for your shared storage",
}
_KNOWN = set(_VALUES) | set(_NOTES) | set(_WARN)


def _refname(name: str, line: int | None = None) -> str:
    return name if line is None else f"{name}:{line}"


class _Problems:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def error(self, ref: str, message: str) -> None:
        self.errors.append(f"{ref}: {message}")

    def note(self, ref: str, message: str) -> None:
        self.notes.append(f"{ref}: {message}")

    def warn(self, ref: str, message: str) -> None:
        self.warnings.append(f"{ref}: {message}")


def _words(text: str) -> list[str]:
    """heartbeat splits values at white space and commas (``serial /dev/cua0, /dev/cua1``)."""
    return [w for w in re.split(r"[\s,]+", text) if w]


def _split_directives(words: list[str]) -> list[list[str]]:
    """Cut a run of words at directive names: ``node a node b`` -> ``node a``, ``node b``."""
    out: list[list[str]] = []
    for word in words:
        if word in _KNOWN and (not out or len(out[-1]) - 1 >= _least(out[-1][0])):
            out.append([word])
        elif out:
            out[-1].append(word)
    return out


def _least(name: str) -> int:
    return _VALUES.get(name, (1, None))[0]


def _hidden_directives(comment: str) -> list[list[str]]:
    """The directives written behind ``#`` signs on one line (each segment starting with one)."""
    found: list[list[str]] = []
    for segment in comment.split("#"):
        words = _words(segment)
        if words and words[0] in _KNOWN:
            found.extend(_split_directives(words))
    return [d for d in found if len(d) - 1 >= _least(d[0])]


def _read_ha_cf(text: str, name: str, unflatten: bool, p: _Problems) -> list[_Directive]:
    directives: list[_Directive] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        ref = _refname(name, number)
        content, hash_, comment = raw.partition("#")
        hidden = _hidden_directives(comment) if hash_ else []
        if len(hidden) >= 2:
            if not unflatten:
                names = ", ".join(d[0] for d in hidden)
                first = " ".join(_words(content)) or "nothing"
                p.error(
                    ref,
                    f"this line holds {len(hidden)} more directive(s) behind '#' ({names}): it "
                    "looks like a whole ha.cf flattened onto one line (e.g. copied from a web "
                    f"page), and heartbeat itself would read only {first!r} from it. Put each "
                    "directive on its own line, or import with --unflatten to split the line at "
                    "the directive names",
                )
                continue
            runs = _split_directives(_words(content)) if content.strip() else []
            for words in runs + hidden:
                text_ = " ".join(words)
                p.note(
                    ref,
                    f"recovered {text_!r} from the flattened line (taken as active: check that "
                    "it was not commented out)",
                )
                directives.append(_Directive(words[0], tuple(words[1:]), ref, text_, True))
            continue
        words = _words(content)
        if not words:
            continue
        directives.append(_Directive(words[0], tuple(words[1:]), ref, " ".join(words)))
    return directives


def _ms(d: _Directive, p: _Problems) -> int | None:
    """heartbeat's time values: seconds unless a unit follows (1, 0.5, 100ms, 500000us, 2s)."""
    m = _TIME_RE.match(d.args[0])
    if not m:
        p.error(d.ref, f"{d.name}: {d.args[0]!r} is not a time (examples: 2, 500ms, 1.5)")
        return None
    factor = _TIME_MS[(m.group(2) or "s").lower()]
    return int(float(m.group(1)) * factor + 0.5)  # rounded as heartbeat rounds


@dataclass
class _Link:
    kind: str  # serial | udp
    ref: str
    device: str = ""
    interface: str = ""
    peer: str | None = None
    port: int | None = None  # None: udpport (or the default)
    ttl: int | None = None
    name: str = ""


@dataclass
class _HaCf:
    timing: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (ms, ref)
    baud: tuple[int, str] | None = None
    udpport: tuple[int, str] | None = None
    links: list[_Link] = field(default_factory=list)
    nodes: list[tuple[str, str]] = field(default_factory=list)
    failback: tuple[bool, str] | None = None
    nice_failback: tuple[bool, str] | None = None
    ping: list[tuple[str, str]] = field(default_factory=list)
    watchdog: tuple[str, str] | None = None


def _parse_ha_cf(directives: list[_Directive], p: _Problems) -> _HaCf:
    cf = _HaCf()
    for d in directives:
        if d.name not in _KNOWN:
            close = difflib.get_close_matches(d.name, sorted(_KNOWN), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            p.error(d.ref, f"unknown directive {d.name!r}{hint}; heartbeat would refuse it too")
            continue
        if d.name in _WARN:
            p.warn(d.ref, f"{d.text}: not carried over: {_WARN[d.name]}")
            continue
        if d.name == "crm":
            value = d.args[0].lower() if d.args else ""
            if value in _FALSE:
                p.note(d.ref, f"{d.text}: twinbeat manages resources from its own groups, too")
            else:
                p.warn(
                    d.ref,
                    f"{d.text}: with the CRM, heartbeat took its resources from the CIB "
                    "(cib.xml), not from haresources; the groups below come from haresources "
                    "only - compare them with your CIB",
                )
            continue
        if d.name in _NOTES:
            reason = _NOTES[d.name]
            if d.name == "respawn" and any("ipfail" in a for a in d.args):
                reason = "ipfail's job is built into twinbeat: a node that reaches none of its "
                reason += "ping nodes does not take over (cluster.ping_nodes)"
            p.note(d.ref, f"{d.text}: not carried over: {reason}")
            continue
        least, most = _VALUES[d.name]
        if len(d.args) < least or (most is not None and len(d.args) > most):
            want = f"{least}" if least == most else f"at least {least}"
            extra = [a for a in d.args if a in _KNOWN]
            hint = (
                f" (two directives on one line? put {extra[0]!r} on its own line)" if extra else ""
            )
            p.error(
                d.ref, f"{d.name} takes {want} value(s), not {len(d.args)}: {d.text!r}{hint}"
            )
            continue
        _directive(cf, d, p)
    return cf


def _directive(cf: _HaCf, d: _Directive, p: _Problems) -> None:
    name, args, ref = d.name, d.args, d.ref
    if name in ("keepalive", "deadtime", "warntime", "initdead", "deadping"):
        ms = _ms(d, p)
        if ms is not None:
            if name in cf.timing:
                p.note(ref, f"{name} is set again; this value replaces {cf.timing[name][1]}")
            cf.timing[name] = (ms, ref)
    elif name == "baud":
        if not args[0].isdigit():
            p.error(ref, f"baud: {args[0]!r} is not a number")
        else:
            cf.baud = (int(args[0]), ref)
    elif name == "udpport":
        if not args[0].isdigit():
            p.error(ref, f"udpport: {args[0]!r} is not a port number")
        else:
            cf.udpport = (int(args[0]), ref)
    elif name == "serial":
        cf.links.extend(_Link("serial", ref, device=dev) for dev in args)
    elif name in ("udp", "bcast"):
        cf.links.extend(_Link("udp", ref, interface=iface) for iface in args)
        if name == "udp":
            p.note(ref, f"{d.text}: heartbeat's old name for bcast (broadcast on {args[0]})")
    elif name == "ucast":
        cf.links.append(_Link("udp", ref, interface=args[0], peer=args[1]))
    elif name == "mcast":
        iface, group, port, ttl, loop = args
        if not port.isdigit() or not ttl.isdigit():
            p.error(ref, f"mcast: port {port!r} and ttl {ttl!r} must be numbers")
            return
        if not _is_multicast(group):
            p.error(ref, f"mcast: {group!r} is not a multicast group address")
            return
        cf.links.append(_Link("udp", ref, interface=iface, peer=group, port=int(port),
                              ttl=int(ttl)))
        if loop not in ("0", "1"):
            p.error(ref, f"mcast: loop must be 0 or 1, not {loop!r}")
        elif loop == "1":
            p.note(ref, "mcast loop 1: not carried over: twinbeat ignores its own heartbeats")
    elif name == "node":
        cf.nodes.extend((n, ref) for n in args)
    elif name in ("auto_failback", "nice_failback"):
        value = args[0].lower()
        if name == "auto_failback" and value == "legacy":
            p.note(ref, "auto_failback legacy: taken as on (legacy failed back, too)")
            cf.failback = (True, ref)
        elif value in _TRUE + _FALSE:
            on = value in _TRUE
            if name == "auto_failback":
                cf.failback = (on, ref)
            else:
                cf.nice_failback = (not on, ref)
                inverse = "off" if on else "on"
                p.note(ref, f"{d.text}: heartbeat's old name: auto_failback {inverse}")
        else:
            choices = "on, off or legacy" if name == "auto_failback" else "on or off"
            p.error(ref, f"{name}: {args[0]!r} is not {choices}")
    elif name in ("ping", "ping_group"):
        hosts = args if name == "ping" else args[1:]
        if name == "ping_group":
            p.note(ref, f"ping_group {args[0]}: its addresses join cluster.ping_nodes (twinbeat "
                   "counts the world reachable while any ping node answers)")
        for host in hosts:
            if _is_ip(host):
                cf.ping.append((host, ref))
            else:
                p.warn(ref, f"{name} {host}: not carried over: ping nodes must be IP addresses "
                       "(resolve the name and add it to cluster.ping_nodes)")
    elif name == "watchdog":
        cf.watchdog = (args[0], ref)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_multicast(text: str) -> bool:
    return _is_ip(text) and ipaddress.ip_address(text).is_multicast


# --------------------------------------------------------------------------------------------
# haresources


@dataclass
class _Group:
    node: str
    resources: list[str]
    ref: str
    name: str = ""


_MAILTO_PREFIX = "mailto::"


def _mailto(word: str, ref: str, mails: list[tuple[str, str]], p: _Problems) -> None:
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
    said = f" (its subject {subject!r} is not used: twinbeat's subjects name the event)" \
        if subject else ""
    p.note(ref, f"{word}: not a resource in twinbeat: {', '.join(addrs)} joins [notify] "
           f"mail_to, which mails every failover, takeover and release from a durable queue"
           f"{said}; set [notify] smarthost to your mail relay")


def _read_haresources(text: str, name: str, p: _Problems,
                      mails: list[tuple[str, str]] | None = None) -> list[_Group]:
    groups: list[_Group] = []
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
            p.note(_refname(name, number), "the last line ends with a backslash")
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
        ref = _refname(name, start)
        if len(words) > 1 and any(w.lower().startswith(_MAILTO_PREFIX) for w in words[1:]):
            for w in words[1:]:
                if w.lower().startswith(_MAILTO_PREFIX):
                    _mailto(w, ref, mails, p)
            words = [words[0]] + [w for w in words[1:]
                                  if not w.lower().startswith(_MAILTO_PREFIX)]
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
        groups.append(_Group(words[0], words[1:], ref))
    return groups


def _name_groups(groups: list[_Group]) -> None:
    taken: set[str] = set()
    for index, group in enumerate(groups, start=1):
        name = ""
        for text in group.resources:
            try:
                spec = parse_resource(text)
            except ResourceSpecError:
                continue
            if isinstance(spec, ServiceSpec):
                name = _safe_name(spec.name)
                break
        if not name or name in taken:
            name = f"group{index}"
        while name in taken:
            name += "x"
        taken.add(name)
        group.name = name


def _safe_name(text: str) -> str:
    return _NAME_BAD.sub("-", text).strip("-._")[:63]


# --------------------------------------------------------------------------------------------
# authkeys


@dataclass
class _Key:
    secret: str | None  # None: write a fresh one
    ref: str


def _read_authkeys(text: str, name: str, p: _Problems) -> _Key:
    active: tuple[int, str] | None = None
    keys: dict[int, tuple[str, str | None, str]] = {}  # n -> (method, secret, ref)
    for number, raw in enumerate(text.splitlines(), start=1):
        ref = _refname(name, number)
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "auth":
            if len(words) < 2 or not words[1].isdigit():
                p.error(ref, f"expected 'auth N' with N a key number, not {raw.strip()!r}")
            else:
                active = (int(words[1]), ref)
            continue
        if words[0].isdigit() and len(words) >= 2:
            index, method, rest = int(words[0]), words[1].lower(), words[2:]
        elif words[0].lower() in ("crc", "md5", "sha1", "sha256") and len(words) >= 2 and (
            words[1].isdigit()
        ):
            index, method, rest = int(words[1]), words[0].lower(), words[2:]
            p.warn(
                ref,
                f"{raw.strip()!r} has the key number after the method; heartbeat expects "
                f"'{index} {method}' (and would refuse this file). Read as key {index}, "
                f"method {method}",
            )
        else:
            p.error(ref, f"expected 'N method secret', not {raw.strip()!r}")
            continue
        if method not in ("crc", "md5", "sha1", "sha256"):
            p.error(ref, f"unknown method {method!r} (heartbeat knows crc, md5 and sha1)")
            continue
        if rest and rest[0].startswith("#") and method == "crc":
            rest = []
        secret = rest[0] if rest else None
        if len(rest) > 1 and not rest[1].startswith("#"):
            p.note(ref, f"the secret has {len(rest)} words: heartbeat used only the first, and so "
                   "does the import")
        keys[index] = (method, secret, ref)
    file_ref = _refname(name)
    if active is None:
        why = "the file is empty" if not text.strip() else "no 'auth N' line"
        p.warn(file_ref, f"{why}: heartbeat would not start with it (no authentication). "
               "twinbeat writes a fresh random key instead")
        return _Key(None, file_ref)
    n, auth_ref = active
    if n not in keys:
        p.warn(auth_ref, f"'auth {n}' names no key line '{n} ...': heartbeat would not start "
               "with it. twinbeat writes a fresh random key instead")
        return _Key(None, auth_ref)
    method, secret, ref = keys[n]
    if method == "crc":
        p.warn(
            ref,
            "method crc gives NO authentication: anyone who can reach a heartbeat link could "
            "forge heartbeats and make a node give up or take over services. twinbeat never "
            "accepts crc: it writes a FRESH RANDOM KEY (HMAC-SHA256); copy the new key file "
            "to BOTH nodes",
        )
        return _Key(None, ref)
    if secret is None:
        p.warn(ref, f"method {method} has no secret (heartbeat would refuse it): twinbeat "
               "writes a fresh random key instead")
        return _Key(None, ref)
    p.note(ref, f"the {method} secret is carried over as the HMAC-SHA256 key (twinbeat always "
           "signs with HMAC-SHA256)")
    if len(secret.encode()) < 16:
        p.warn(ref, f"the secret is only {len(secret.encode())} bytes long: anyone who can "
               "capture a heartbeat could try to guess it; consider a fresh random key (e.g. "
               "import again without it, or write 32 random hex bytes)")
    return _Key(secret, ref)


# --------------------------------------------------------------------------------------------
# Writing TOML


def _q(text: str) -> str:
    """A TOML basic string."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _comment_text(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


class _Toml:
    """Lines of TOML, each remembered with the heartbeat file:line it came from."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.refs: dict[int, str] = {}

    def add(self, line: str, ref: str | None = None, comment: str | None = None) -> None:
        if comment:
            line = f"{line:<40}# {_comment_text(comment)}" if line else f"# {comment}"
        self.lines.append(line)
        if ref is not None:
            self.refs[len(self.lines)] = ref

    def comment(self, text: str) -> None:
        self.lines.append(f"# {_comment_text(text)}" if text else "#")

    def blank(self) -> None:
        self.lines.append("")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# --------------------------------------------------------------------------------------------
# The import


def import_heartbeat(
    ha_cf: str,
    haresources: str,
    authkeys: str,
    *,
    node: str | None = None,
    peer: str | None = None,
    key_path: str = "authkeys",
    secret_factory: Callable[[], str] = _random_secret,
    cluster_name: str = "heartbeat",
    unflatten: bool = False,
    ha_cf_name: str = "ha.cf",
    haresources_name: str = "haresources",
    authkeys_name: str = "authkeys",
) -> ImportResult:
    """Convert the texts of ha.cf, haresources and authkeys; raise HeartbeatImportError.

    ``node``/``peer`` name the two nodes when ha.cf lists fewer than two, or choose two of
    more. ``key_path`` is written as ``cluster.authkeys`` (relative to the config's folder).
    The ``*_name`` arguments are the file names used in messages.
    """
    p = _Problems()
    directives = _read_ha_cf(ha_cf, ha_cf_name, unflatten, p)
    if p.errors:  # a flattened ha.cf: what follows from it would only be noise
        raise HeartbeatImportError(p.errors)
    cf = _parse_ha_cf(directives, p)
    mails: list[tuple[str, str]] = []
    groups = _read_haresources(haresources, haresources_name, p, mails)
    key = _read_authkeys(authkeys, authkeys_name, p)
    nodes = _choose_nodes(cf, node, peer, ha_cf_name, p)
    if not cf.links and not any(e.startswith(f"{ha_cf_name}:") for e in p.errors):
        p.error(ha_cf_name, "no heartbeat medium (serial, bcast, udp, ucast or mcast): heartbeat "
                "would not start without one, and twinbeat needs at least one link")
    failback = _failback(cf, ha_cf_name, p)
    groups = _match_groups(groups, nodes, cf, p)
    if p.errors:
        raise HeartbeatImportError(p.errors)
    _name_groups(groups)
    _name_links(cf.links, p)

    secret = key.secret
    fresh = secret is None
    if secret is None:
        secret = secret_factory()
        if len(secret.split()) != 1 or secret.startswith("#"):
            raise ValueError("secret_factory must return one word")
    authkeys_text = f"auth 1\n1 sha256 {secret}\n"

    files = (ha_cf_name, haresources_name, authkeys_name)
    toml = _render(
        cf=cf, nodes=nodes, groups=groups, failback=failback, key_path=key_path,
        cluster_name=cluster_name, key=key, fresh=fresh, p=p, files=files, mails=mails,
    )
    body = toml.text()
    _validate(body, toml, p)
    text = _header(files, p) + body
    if tomllib.loads(text) != tomllib.loads(body):  # the header is only comments
        raise AssertionError("the header changed the configuration")
    parse_authkeys_text(authkeys_text)  # what we write must read back
    return ImportResult(text, authkeys_text, p.notes, p.warnings, fresh)


def _header(files: tuple[str, str, str], p: _Problems) -> str:
    t = _Toml()
    t.comment("cluster.toml written by `twinbeat import-heartbeat` from heartbeat's")
    t.comment(f"  {files[0]}, {files[1]} and {files[2]}.")
    t.comment("Each value says which heartbeat line it came from. Copy this file and the key")
    t.comment("file to /etc/twinbeat/ on BOTH nodes; `twinbeat check-config` checks them.")
    if p.warnings:
        t.comment("")
        t.comment("Warnings:")
        for w in p.warnings:
            t.comment(f"  {w}")
    if p.notes:
        t.comment("")
        t.comment("Not carried over, or changed on the way:")
        for n in p.notes:
            t.comment(f"  {n}")
    t.blank()
    return t.text()


def _choose_nodes(
    cf: _HaCf, node: str | None, peer: str | None, name: str, p: _Problems
) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for n, ref in cf.nodes:
        if n.lower() in (k.lower() for k in seen):
            p.note(ref, f"node {n} is listed again")
            continue
        seen[n] = ref
    listed = list(seen.items())
    wanted = [w for w in (node, peer) if w]
    if len(listed) > 2:
        names = ", ".join(n for n, _ in listed)
        chosen = [
            next((item for item in listed if item[0].lower() == w.lower()), None) for w in wanted
        ]
        if len(wanted) < 2 or None in chosen:
            where = listed[0][1] if listed else name
            p.error(where, f"ha.cf lists {len(listed)} nodes ({names}); a twinbeat cluster has "
                    "exactly two: choose them with --node NAME --peer NAME")
            return []
        kept = [c for c in chosen if c is not None]
        for n, ref in listed:
            if all(n != k[0] for k in kept):
                p.warn(ref, f"node {n}: not carried over (only --node and --peer are kept)")
        return kept
    for w in wanted:
        if all(w.lower() != n.lower() for n, _ in listed):
            if len(listed) == 2:
                names = " and ".join(n for n, _ in listed)
                p.error(name, f"{w!r} is not one of ha.cf's nodes ({names})")
                return []
            listed.append((w, f"{name} (--node/--peer)"))
    if len(listed) != 2:
        have = (
            "no node lines" if not listed
            else f"only {len(listed)} node ({', '.join(n for n, _ in listed)})"
        )
        p.error(name, f"ha.cf has {have}; a twinbeat cluster has exactly two nodes: name them "
                "with --node NAME --peer NAME (heartbeat names nodes by `uname -n`)")
        return []
    return listed


def _failback(cf: _HaCf, name: str, p: _Problems) -> tuple[bool, str, str]:
    """(auto_failback, ref, comment)."""
    if cf.failback and cf.nice_failback:
        if cf.failback[0] != cf.nice_failback[0]:
            p.error(cf.nice_failback[1], f"nice_failback contradicts auto_failback at "
                    f"{cf.failback[1]} (heartbeat refuses both together)")
        return cf.failback[0], cf.failback[1], "auto_failback"
    if cf.failback:
        return cf.failback[0], cf.failback[1], "auto_failback"
    if cf.nice_failback:
        return cf.nice_failback[0], cf.nice_failback[1], "nice_failback, inverted"
    p.note(name, "no auto_failback: heartbeat's default (legacy) fails back, so "
           "auto_failback = true")
    return True, name, "heartbeat's default"


def _match_groups(
    groups: list[_Group], nodes: list[tuple[str, str]], cf: _HaCf, p: _Problems
) -> list[_Group]:
    if not nodes:
        return groups
    kept: list[_Group] = []
    names = {n.lower(): n for n, _ in nodes}
    listed = {n.lower() for n, _ in cf.nodes}
    for g in groups:
        if g.node.lower() in names:
            g.node = names[g.node.lower()]
            kept.append(g)
        elif g.node.lower() in listed:
            p.warn(g.ref, f"group {' '.join(g.resources)!r} prefers node {g.node}, which is not "
                   "kept: NOT carried over")
        else:
            p.error(g.ref, f"{g.node!r} is not a node in ha.cf (nodes: "
                    f"{', '.join(n for n, _ in nodes)})")
    return kept


def _name_links(links: list[_Link], p: _Problems) -> None:
    taken: set[str] = set()
    by_iface: dict[str, list[_Link]] = {}
    serials = 0
    for link in links:
        if link.kind == "serial":
            serials += 1
            base = "serial" if serials == 1 else f"serial{serials}"
        else:
            base = _safe_name(link.interface) or "udp"
            if base in taken and link.peer:
                base = _safe_name(f"{link.interface}-{link.peer}")
            by_iface.setdefault(link.interface, []).append(link)
        name = base
        n = 2
        while name in taken:
            name = f"{base}-{n}"
            n += 1
        taken.add(name)
        link.name = name
    for iface, same in by_iface.items():
        ucast = [link for link in same if link.peer and not _is_multicast(link.peer)]
        if len(ucast) > 1:
            peers = " and ".join(str(link.peer) for link in ucast)
            refs = ", ".join(link.ref for link in ucast)
            p.note(refs, f"ucast on {iface} names {peers}: one ha.cf shared by both nodes, where "
                   "heartbeat skips the address that is its own. Each becomes its own link; on "
                   "each node the link to its own address carries nothing")


def _render(
    *,
    cf: _HaCf,
    nodes: list[tuple[str, str]],
    groups: list[_Group],
    failback: tuple[bool, str, str],
    key_path: str,
    cluster_name: str,
    key: _Key,
    fresh: bool,
    p: _Problems,
    files: tuple[str, str, str],
    mails: list[tuple[str, str]] | None = None,
) -> _Toml:
    t = _Toml()
    t.add("[cluster]")
    t.add(f"name = {_q(cluster_name)}", None, "both nodes use the same name and key")
    key_comment = "fresh random key" if fresh else f"secret from {key.ref}"
    t.add(f"authkeys = {_q(key_path)}", key.ref, f"mode 0600; {key_comment}")
    t.add(f"auto_failback = {'true' if failback[0] else 'false'}", failback[1],
          f"{failback[1]} ({failback[2]})")
    if cf.ping:
        refs = sorted({ref for _, ref in cf.ping})
        t.add(f"ping_nodes = [{', '.join(_q(a) for a, _ in cf.ping)}]", refs[0],
              ", ".join(refs))
    if "deadping" in cf.timing:
        ms, ref = cf.timing["deadping"]
        t.add(f"ping_timeout = {_q(format_duration(ms / 1000))}", ref, f"{ref} (deadping)")
    t.blank()

    t.add("[timing]")
    for key_name, default in (("keepalive", HEARTBEAT_KEEPALIVE_MS),
                              ("deadtime", HEARTBEAT_DEADTIME_MS)):
        if key_name in cf.timing:
            ms, ref = cf.timing[key_name]
            t.add(f"{key_name} = {_q(format_duration(ms / 1000))}", ref, ref)
        else:
            ref = files[0]
            p.note(ref, f"no {key_name}: heartbeat's default {format_duration(default / 1000)} "
                   "is written out (twinbeat's own default differs)")
            t.add(f"{key_name} = {_q(format_duration(default / 1000))}", ref,
                  "heartbeat's default")
    for key_name in ("warntime", "initdead"):
        if key_name in cf.timing:
            ms, ref = cf.timing[key_name]
            t.add(f"{key_name} = {_q(format_duration(ms / 1000))}", ref, ref)
    t.blank()

    t.add("[watchdog]")
    if cf.watchdog:
        device, ref = cf.watchdog
        t.add('mode = "required"', ref, f"{ref}: never own services without it")
        t.add(f"device = {_q(device)}", ref, ref)
    else:
        t.add('mode = "automatic"', files[0],
              "ha.cf has no watchdog: twinbeat arms one if there is one")
    t.blank()

    for name, ref in nodes:
        t.add("[[node]]", ref)
        t.add(f"name = {_q(name)}", ref, ref)
        t.blank()

    baud = cf.baud
    for link in cf.links:
        t.add("[[link]]", link.ref)
        t.add(f"name = {_q(link.name)}", link.ref)
        t.add(f'type = "{link.kind}"', link.ref)
        if link.kind == "serial":
            t.add(f"device = {_q(link.device)}", link.ref, link.ref)
            if baud:
                t.add(f"baud = {baud[0]}", baud[1], baud[1])
            else:
                t.add(f"baud = {HEARTBEAT_BAUD}", link.ref, "heartbeat's default")
        else:
            t.add(f"interface = {_q(link.interface)}", link.ref, link.ref)
            if link.peer:
                what = "multicast group" if link.port is not None else "unicast peer"
                t.add(f"peer = {_q(link.peer)}", link.ref, what)
            if link.port is not None:
                t.add(f"port = {link.port}", link.ref, link.ref)
                if link.ttl is not None:
                    t.add(f"ttl = {link.ttl}", link.ref, link.ref)
            elif cf.udpport:
                t.add(f"port = {cf.udpport[0]}", cf.udpport[1], cf.udpport[1])
        t.blank()

    for g in groups:
        t.add("[[group]]", g.ref)
        t.add(f"name = {_q(g.name)}", g.ref, g.ref)
        t.add(f"preferred = {_q(g.node)}", g.ref)
        t.add(f"resources = [{', '.join(_q(r) for r in g.resources)}]", g.ref)
        t.blank()
    if not groups:
        t.comment("haresources defines no resource group: the nodes only watch each other.")
    if mails:
        refs = sorted({ref for _, ref in mails})
        t.blank()
        t.add("[notify]", refs[0], "heartbeat's MailTo resources: a mail on every event of "
              "at least min_severity")
        t.add(f"mail_to = [{', '.join(_q(a) for a, _ in mails)}]", refs[0], ", ".join(refs))
        t.comment('smarthost = "mail.example.com"   # your mail relay (default: localhost)')
    while t.lines and t.lines[-1] == "":
        t.lines.pop()
    return t


def _validate(text: str, toml: _Toml, p: _Problems) -> None:
    """Check the result with the real loader; map its problems back to heartbeat's lines."""
    try:
        cfg = load_config("cluster.toml", text=text, check_devices=False, check_authkeys=False)
    except ConfigError as exc:
        raise HeartbeatImportError(
            [f"{_ref_for(toml, prob.line)}: {prob.key}: {prob.message}"
             for prob in exc.problems if prob.severity == "error"]
        ) from None
    for w in cfg.warnings:
        p.warn(_ref_for(toml, w.line), w.message)


def _ref_for(toml: _Toml, line: int) -> str:
    for n in range(line, 0, -1):
        if n in toml.refs:
            return toml.refs[n]
    return "cluster.toml"


# --------------------------------------------------------------------------------------------
# The command line


def main_import(argv: Sequence[str]) -> int:
    """``twinbeat import-heartbeat``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="twinbeat import-heartbeat",
        description="Convert heartbeat's ha.cf, haresources and authkeys into cluster.toml.",
    )
    parser.add_argument("--ha-cf", required=True, metavar="FILE", help="heartbeat's ha.cf")
    parser.add_argument("--haresources", required=True, metavar="FILE")
    parser.add_argument("--authkeys", required=True, metavar="FILE")
    parser.add_argument(
        "--output", metavar="FILE",
        help="write cluster.toml here and the key file 'authkeys' beside it (mode 0600); "
        "without it the TOML goes to stdout and no key file is written",
    )
    parser.add_argument("--node", metavar="NAME", help="a node's name, when ha.cf lists fewer "
                        "than two nodes or more")
    parser.add_argument("--peer", metavar="NAME", help="the other node's name (with --node)")
    parser.add_argument("--name", default="heartbeat", help="cluster name (default heartbeat)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--unflatten", action="store_true",
                        help="split an ha.cf line holding several directives behind '#' "
                        "(a flattened web copy) at the directive names")
    args = parser.parse_args(list(argv))
    prog = "twinbeat import-heartbeat"

    texts: list[str] = []
    for path in (args.ha_cf, args.haresources, args.authkeys):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            print(f"{prog}: error: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 1
        try:
            texts.append(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            print(f"{prog}: error: {path}:{line}: not UTF-8 text", file=sys.stderr)
            return 1

    output = Path(args.output) if args.output else None
    key_file = output.parent / "authkeys" if output else None
    if output is not None and key_file is not None:
        if not output.parent.is_dir():
            print(f"{prog}: error: {output.parent} is not a folder", file=sys.stderr)
            return 1
        if output.name == "authkeys":
            print(f"{prog}: error: --output must not be named authkeys: the key file is "
                  "written beside it under that name", file=sys.stderr)
            return 1
        if not args.force:
            existing = [str(f) for f in (output, key_file) if os.path.lexists(f)]
            if existing:
                print(f"{prog}: error: {' and '.join(existing)} already exist(s); "
                      "use --force to overwrite", file=sys.stderr)
                return 1
    try:
        result = import_heartbeat(
            *texts, node=args.node, peer=args.peer, cluster_name=args.name,
            unflatten=args.unflatten, ha_cf_name=args.ha_cf, haresources_name=args.haresources,
            authkeys_name=args.authkeys,
        )
    except HeartbeatImportError as exc:
        for problem in exc.problems:
            print(f"{prog}: error: {problem}", file=sys.stderr)
        return 1

    for w in result.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    for n in result.notes:
        print(f"note: {n}", file=sys.stderr)
    if output is None or key_file is None:
        sys.stdout.write(result.config_text)
        print("note: no key file was written (only with --output); the config expects it as "
              "'authkeys' beside cluster.toml, mode 0600", file=sys.stderr)
        return 0
    try:
        _write_new(key_file, result.authkeys_text.encode(), 0o600, args.force)
        try:
            _write_new(output, result.config_text.encode(), 0o644, args.force)
        except BaseException:
            key_file.unlink(missing_ok=True)
            raise
    except FileExistsError as exc:
        print(f"{prog}: error: {exc.filename} already exists; use --force to overwrite",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: cannot write {exc.filename or output}: {exc.strerror}",
              file=sys.stderr)
        return 1
    try:
        load_config(output, check_devices=False)
    except ConfigError as exc:  # a bug here, not in the input: say so plainly
        print(f"{prog}: error: the written configuration does not load:\n{exc}", file=sys.stderr)
        return 1
    key_note = "a fresh random key" if result.fresh_key else "the secret from authkeys"
    print(f"wrote {output} and {key_file} (mode 0600, {key_note})", file=sys.stderr)
    return 0


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write a file atomically: a private temporary file (mode 0600 from the start) renamed or
    linked into place, so a key is never readable by others, not even for an instant. Without
    ``force`` an existing file is never replaced (FileExistsError)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode & ~_umask() if mode != 0o600 else 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: never overwrites
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


