"""Reading ha.cf as heartbeat read it: directives, media, timing (see the package's
docstring for what becomes what)."""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field

from supervisor.importer.common import Problems, refname

HEARTBEAT_KEEPALIVE_MS = 1000  # heartbeat's built-in defaults (config.c, 1.2 and later)
HEARTBEAT_DEADTIME_MS = 30000
HEARTBEAT_BAUD = 19200
_TIME_RE = re.compile(
    r"^(\d+(?:\.\d*)?|\.\d+)(ms|msec|us|usec|s|sec|m|min|h|hr)?$", re.IGNORECASE
)
_TIME_MS = {"ms": 1.0, "msec": 1.0, "us": 0.001, "usec": 0.001, "s": 1000.0, "sec": 1000.0,
            "m": 60000.0, "min": 60000.0, "h": 3600000.0, "hr": 3600000.0}
_TRUE = ("on", "yes", "true", "y", "1")
_FALSE = ("off", "no", "false", "n", "0")


# --------------------------------------------------------------------------------------------
# ha.cf


@dataclass(frozen=True)
class Directive:
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


def read_ha_cf(text: str, name: str, unflatten: bool, p: Problems) -> list[Directive]:
    directives: list[Directive] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        ref = refname(name, number)
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
                directives.append(Directive(words[0], tuple(words[1:]), ref, text_, True))
            continue
        words = _words(content)
        if not words:
            continue
        directives.append(Directive(words[0], tuple(words[1:]), ref, " ".join(words)))
    return directives


def _ms(d: Directive, p: Problems) -> int | None:
    """heartbeat's time values: seconds unless a unit follows (1, 0.5, 100ms, 500000us, 2s)."""
    m = _TIME_RE.match(d.args[0])
    if not m:
        p.error(d.ref, f"{d.name}: {d.args[0]!r} is not a time (examples: 2, 500ms, 1.5)")
        return None
    factor = _TIME_MS[(m.group(2) or "s").lower()]
    return int(float(m.group(1)) * factor + 0.5)  # rounded as heartbeat rounds


@dataclass
class Medium:
    kind: str  # serial | udp
    ref: str
    device: str = ""
    interface: str = ""
    peer: str | None = None
    port: int | None = None  # None: udpport (or the default)
    ttl: int | None = None
    name: str = ""


@dataclass
class HaCf:
    timing: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (ms, ref)
    baud: tuple[int, str] | None = None
    udpport: tuple[int, str] | None = None
    links: list[Medium] = field(default_factory=list)
    nodes: list[tuple[str, str]] = field(default_factory=list)
    failback: tuple[bool, str] | None = None
    nice_failback: tuple[bool, str] | None = None
    ping: list[tuple[str, str]] = field(default_factory=list)
    watchdog: tuple[str, str] | None = None


def parse_ha_cf(directives: list[Directive], p: Problems) -> HaCf:
    cf = HaCf()
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


def _directive(cf: HaCf, d: Directive, p: Problems) -> None:
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
        cf.links.extend(Medium("serial", ref, device=dev) for dev in args)
    elif name in ("udp", "bcast"):
        cf.links.extend(Medium("udp", ref, interface=iface) for iface in args)
        if name == "udp":
            p.note(ref, f"{d.text}: heartbeat's old name for bcast (broadcast on {args[0]})")
    elif name == "ucast":
        cf.links.append(Medium("udp", ref, interface=args[0], peer=args[1]))
    elif name == "mcast":
        iface, group, port, ttl, loop = args
        if not port.isdigit() or not ttl.isdigit():
            p.error(ref, f"mcast: port {port!r} and ttl {ttl!r} must be numbers")
            return
        if not is_multicast(group):
            p.error(ref, f"mcast: {group!r} is not a multicast group address")
            return
        cf.links.append(Medium("udp", ref, interface=iface, peer=group, port=int(port),
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


def is_multicast(text: str) -> bool:
    return _is_ip(text) and ipaddress.ip_address(text).is_multicast
