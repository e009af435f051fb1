"""The cluster configuration: ``/etc/twinbeat/cluster.toml``.

One table of settings per section (name, parser, default, help) drives parsing, validation and
the documentation. Every problem is reported with the file, the line and the key, e.g.::

    /etc/twinbeat/cluster.toml:14: timing.deadtime: must be more than twice keepalive (2 x 1s)

A complete example::

    [cluster]
    name = "web"                      # both nodes must use the same name and key
    authkeys = "authkeys"             # relative to this file's folder; mode 0600
    auto_failback = true              # give groups back to their preferred node
    ping_nodes = ["192.168.85.254"]   # a node that reaches none of these is cut off
    public_interface = "eth0"         # carrier down there = cut off from the world

    [timing]
    keepalive = "200ms"               # units: ms, s, m, h; a bare number means seconds
    warntime = "600ms"
    deadtime = "1s"
    initdead = "10s"

    [watchdog]
    mode = "automatic"                # required | automatic | off

    [[node]]
    name = "node1"
    address = "192.168.85.1"
    crossover_address = "10.0.0.1"

    [[node]]
    name = "node2"
    address = "192.168.85.2"
    crossover_address = "10.0.0.2"

    [[link]]
    type = "serial"
    device = "/dev/ttyS1"
    baud = 115200

    [[link]]
    name = "crossover"
    type = "udp"
    interface = "eth1"
    peer = "10.0.0.2"                 # omit for broadcast; a multicast group also works

    [[group]]
    name = "web"
    preferred = "node1"
    resources = ["IPaddr::192.168.85.3/24/eth0", "drbddisk::r0",
                 "Filesystem::/dev/drbd0::/srv::ext4", "httpd"]

    [[replicated]]                    # a DRBD resource (supervisor.drbdconf renders its file)
    name = "r0"
    disk = "/dev/sdb"                 # this node's backing disk
    minor = 0                         # the device is /dev/drbd0
    port = 7788                       # TCP port on both crossover addresses
    protocol = "C"
    resync_rate = "100M"              # KiB/s with K, M or G (DRBD's own units)
    filesystem = "ext4"
    mount_point = "/srv"
    split_brain = "disconnect"        # or discard-younger-primary | discard-least-changes
                                      # | "discard-node NAME"
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.resource_spec import (
    DrbdSpec,
    FilesystemSpec,
    IPaddrSpec,
    ResourceSpec,
    ResourceSpecError,
    parse_resource,
)

if TYPE_CHECKING:
    from supervisor.opsconfig import OpsConfig

DEFAULT_CONFIG = Path("/etc/twinbeat/cluster.toml")
DEFAULT_DRBD_DIR = Path("/etc/drbd.d")  # where supervisor.drbdconf writes NAME.res
DEFAULT_PORT = 694  # heartbeat's udpport

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
# Milliseconds are divided by 1000 (not multiplied by 0.001, which is inexact: 9 * 0.001 is
# 0.009000000000000001), so "300ms" and "0.3" give the same float.
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


# --------------------------------------------------------------------------------------------
# Problems


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line}: {tag}{self.key}: {self.message}"


class ConfigError(Exception):
    """The configuration has errors; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --------------------------------------------------------------------------------------------
# Value parsers (each raises ValueError with a message meant for the user)


def parse_duration(value: object) -> float:
    """Seconds from ``"200ms"``, ``"1.5s"``, ``"2m"``, ``2`` or ``"2"`` (seconds, as heartbeat)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"2s\" or \"500ms\"")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration (examples: \"2s\", \"500ms\")")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            unit = (m.group(2) or "s").lower()
            number = float(m.group(1))
            return number / 1000 if unit == "ms" else number * _UNITS[unit]
    raise ValueError(f"{value!r} is not a duration (examples: \"2s\", \"500ms\", \"1m\")")


def format_duration(seconds: float) -> str:
    """The shortest of ``"2s"`` / ``"1500ms"`` for a duration, rounded to the millisecond.

    ``parse_duration(format_duration(x)) == x`` for every whole number of milliseconds.
    """
    ms = round(seconds * 1000)
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "yes", "true"):
        return True
    if isinstance(value, str) and value.lower() in ("off", "no", "false"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def _str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _name(value: object) -> str:
    text = _str(value)
    if not _NAME_RE.match(text):
        raise ValueError(f"{text!r} is not a valid name (letters, digits, '-', '_', '.')")
    return text


def _iface(value: object) -> str:
    text = _str(value)
    if not _IFACE_RE.match(text):
        raise ValueError(f"{text!r} is not a valid interface name")
    return text


def _ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    text = _str(value)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _ip_list(value: object) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of IP addresses")
    return tuple(_ip(v) for v in value)


def _int_range(lo: int, hi: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number between {lo} and {hi}")
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range ({lo}-{hi})")
        return value

    return parse


def _choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
        return str(value)

    return parse


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


def _baud(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in _BAUDS:
        raise ValueError(f"{value!r} is not a standard baud rate ({', '.join(map(str, _BAUDS))})")
    return value


_DRBD_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_PATH_RE = re.compile(r"^(/[A-Za-z0-9_.+@%=,-]+)+$")
_FSTYPE_RE = re.compile(r"^[a-z0-9][a-z0-9_.]{0,31}$")
_RATE_RE = re.compile(r"^\s*(\d+)\s*([KkMmGg]?)\s*$")
_RATE_UNITS = {"": 1, "k": 1, "m": 1024, "g": 1024 * 1024}
# DRBD 8.4's limits (drbd_limits.h) in KiB/s: c-max-rate is at least 250K, both at most 4G.
RATE_MIN_KIB = 250
RATE_MAX_KIB = 4 << 20
SPLIT_BRAIN_POLICIES = ("disconnect", "discard-younger-primary", "discard-least-changes",
                        "discard-node")


def _drbd_name(value: object) -> str:
    text = _str(value)
    if not _DRBD_NAME_RE.match(text):
        raise ValueError(f"{text!r} is not a DRBD resource name (letters, digits, '-', '_')")
    return text


def _dev_path(value: object) -> str:
    text = _str(value)
    if not text.startswith("/dev/") or not _PATH_RE.match(text) or "/../" in text + "/":
        raise ValueError(f"{text!r} is not a /dev path (e.g. \"/dev/sdb\")")
    return text


def _mount_point(value: object) -> str:
    text = _str(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path (e.g. \"/srv\")")
    path = text.rstrip("/")
    if not path or not _PATH_RE.match(path) or "/../" in path + "/" or "/./" in path + "/":
        raise ValueError(f"{text!r} cannot be a mount point (an absolute path such as \"/srv\")")
    return path


def _fstype(value: object) -> str:
    text = _str(value)
    if not _FSTYPE_RE.match(text):
        raise ValueError(f"{text!r} is not a file system type (e.g. \"ext4\", \"xfs\")")
    return text


def parse_rate(value: object) -> int:
    """KiB/s from DRBD's rate syntax: ``"100M"``, ``"500K"``, ``"1G"``, or a bare number (KiB/s).

    As in drbd.conf, K/M/G are binary multiples of a KiB: ``"100M"`` is 102400 KiB/s.
    """
    if isinstance(value, bool):
        raise ValueError("expected a rate such as \"100M\" or \"500K\" (KiB/s)")
    if isinstance(value, int):
        kib = value
    elif isinstance(value, str) and (m := _RATE_RE.match(value)):
        kib = int(m.group(1)) * _RATE_UNITS[m.group(2).lower()]
    else:
        raise ValueError(f"{value!r} is not a rate (examples: \"100M\", \"40M\", \"500K\")")
    if not RATE_MIN_KIB <= kib <= RATE_MAX_KIB:
        raise ValueError(
            f"{value!r} is out of range: DRBD accepts {format_rate(RATE_MIN_KIB)} to "
            f"{format_rate(RATE_MAX_KIB)}"
        )
    return kib


def format_rate(kib: int) -> str:
    """DRBD's shortest exact spelling of a rate in KiB/s: 102400 -> ``"100M"``."""
    if kib and kib % (1024 * 1024) == 0:
        return f"{kib // (1024 * 1024)}G"
    if kib and kib % 1024 == 0:
        return f"{kib // 1024}M"
    return f"{kib}K"


def _split_brain(value: object) -> str:
    text = _str(value)
    words = text.split()
    if words and words[0] == "discard-node":
        if len(words) != 2 or not _NAME_RE.match(words[1]):
            raise ValueError("write discard-node with the node to discard: \"discard-node NAME\"")
        return f"discard-node {words[1]}"
    if len(words) == 1 and words[0] in SPLIT_BRAIN_POLICIES:
        return words[0]
    raise ValueError(
        f"{text!r} is not a split-brain policy (disconnect, discard-younger-primary, "
        "discard-least-changes, \"discard-node NAME\")"
    )


# --------------------------------------------------------------------------------------------
# The settings tables


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[object], Any]
    default: Any = None
    required: bool = False
    help: str = ""


CLUSTER_SETTINGS = (
    Setting("name", _name, required=True, help="cluster name; both nodes must agree"),
    Setting("authkeys", _str, "authkeys", help="shared key file (heartbeat format), mode 0600"),
    Setting("auto_failback", _bool, True, help="return groups to their preferred node"),
    Setting("ping_nodes", _ip_list, (), help="addresses that show this node sees the world"),
    Setting("public_interface", _iface, None, help="carrier lost here = cut off"),
    Setting("ping_interval", parse_duration, 1.0, help="how often ping nodes are probed"),
    Setting("ping_timeout", parse_duration, 3.0, help="no reply for this long = unreachable"),
    Setting("resource_dirs", _str_list, ("/etc/twinbeat/resource.d", "/etc/init.d"),
            help="where resource scripts are looked up, in order (before/after systemd units)"),
)
TIMING_SETTINGS = (
    Setting("keepalive", parse_duration, 1.0, help="interval between heartbeats"),
    Setting("warntime", parse_duration, None, help="late heartbeat warning (default 3x keepalive)"),
    Setting("deadtime", parse_duration, 5.0, help="silent on every link this long = dead"),
    Setting("initdead", parse_duration, None, help="deadtime right after start (default 2x)"),
)
WATCHDOG_SETTINGS = (
    Setting("mode", _choice("required", "automatic", "off"), "automatic"),
    Setting("device", _str, "auto",
            help="auto (prefer hardware), a /dev/watchdogN path, or fifo:/PATH (tests)"),
    Setting("timeout", parse_duration, 10.0, help="reset after this long without a feed"),
)
TAKEOVER_SETTINGS = (
    Setting("garp_count", _int_range(0, 100), 5, help="gratuitous ARPs per burst"),
    Setting("garp_interval", parse_duration, 0.2, help="interval inside a burst"),
    Setting("garp_repeat_delay", parse_duration, 2.0, help="second burst after; 0 = none"),
    Setting("garp_refresh", parse_duration, 0.0, help="periodic refresh interval; 0 = off"),
    Setting("dad", _bool, True, help="refuse an address another host answers for at startup"),
)
NODE_SETTINGS = (
    Setting("name", _name, required=True, help="the node's name (its hostname, `uname -n`)"),
    Setting("address", _ip, None, help="public address"),
    Setting("crossover_address", _ip, None, help="address on the crossover link"),
)
SERIAL_SETTINGS = (
    Setting("type", _choice("serial", "udp"), required=True),
    Setting("name", _name, None),
    Setting("device", _str, required=True, help="e.g. /dev/ttyS1"),
    Setting("baud", _baud, 19200),
)
UDP_SETTINGS = (
    Setting("type", _choice("serial", "udp"), required=True),
    Setting("name", _name, None),
    Setting("interface", _iface, required=True),
    Setting("peer", _ip, None, help="unicast or multicast peer; omit for broadcast"),
    Setting("port", _int_range(1, 65535), DEFAULT_PORT),
    Setting("ttl", _int_range(1, 255), 1, help="multicast TTL"),
)
GROUP_SETTINGS = (
    Setting("name", _name, required=True),
    Setting("preferred", _name, required=True, help="the node that owns it when both can"),
    Setting("resources", _str_list, required=True, help="in start order, heartbeat syntax"),
    Setting("monitor_interval", parse_duration, 10.0, help="status check period; 0 = off"),
    Setting("max_restarts", _int_range(0, 1000), 3),
    Setting("restart_window", parse_duration, 300.0),
    Setting("failure_timeout", parse_duration, 600.0, help="forget failures after; 0 = never"),
    Setting("on_stop_failure", _choice("reboot", "block"), "reboot"),
    Setting("start_timeout", parse_duration, 60.0),
    Setting("stop_timeout", parse_duration, 60.0),
    Setting("status_timeout", parse_duration, 20.0),
)
# 100M (102400 KiB/s) is DRBD 8.4's own c-max-rate default and about what one gigabit crossover
# cable carries (~110 MB/s): a resync uses the link instead of crawling at DRBD's historic
# 250K default (a 100 GiB disk would need ~5 days at 250K, ~17 minutes at 100M). The dynamic
# controller still yields to application I/O (c-min-rate), so a high ceiling costs nothing.
DEFAULT_RESYNC_RATE = 100 * 1024
DEFAULT_DRBD_PORT = 7788
REPLICATED_SETTINGS = (
    Setting("name", _drbd_name, required=True, help="DRBD resource name (drbddisk::NAME)"),
    Setting("disk", _dev_path, required=True, help="this node's backing disk, a /dev path"),
    Setting("minor", _int_range(0, 255), 0, help="DRBD minor: the device is /dev/drbdMINOR"),
    Setting("port", _int_range(1, 65535), DEFAULT_DRBD_PORT,
            help="TCP port on both nodes' crossover_address"),
    Setting("protocol", _choice("A", "B", "C"), "C",
            help="C: a write completes when on both disks"),
    Setting("resync_rate", parse_rate, DEFAULT_RESYNC_RATE,
            help="resync ceiling in KiB/s, or with K, M, G (102400 = 100M)"),
    Setting("filesystem", _fstype, "ext4", help="file system on the DRBD device"),
    Setting("mount_point", _mount_point, required=True, help="where the owner mounts it"),
    Setting("split_brain", _split_brain, "disconnect",
            help="disconnect | discard-younger-primary | discard-least-changes | "
                 "discard-node NAME"),
)
TOP_LEVEL = ("cluster", "timing", "watchdog", "takeover", "node", "link", "group", "replicated",
             "notify", "metrics", "status_page")


# --------------------------------------------------------------------------------------------
# The configuration


@dataclass(frozen=True)
class Timing:
    keepalive: float = 1.0
    warntime: float = 3.0
    deadtime: float = 5.0
    initdead: float = 10.0


@dataclass(frozen=True)
class WatchdogConfig:
    mode: str = "automatic"
    device: str = "auto"
    timeout: float = 10.0


@dataclass(frozen=True)
class TakeoverConfig:
    garp_count: int = 5
    garp_interval: float = 0.2
    garp_repeat_delay: float = 2.0
    garp_refresh: float = 0.0
    dad: bool = True


@dataclass(frozen=True)
class Node:
    name: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    crossover_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


@dataclass(frozen=True)
class SerialLink:
    name: str
    device: str
    baud: int = 19200

    @property
    def type(self) -> str:
        return "serial"

    def describe(self) -> str:
        return f"serial {self.device} at {self.baud} baud"


@dataclass(frozen=True)
class UdpLink:
    name: str
    interface: str
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    port: int = DEFAULT_PORT
    ttl: int = 1

    @property
    def type(self) -> str:
        return "udp"

    def describe(self) -> str:
        to = str(self.peer) if self.peer else "broadcast"
        return f"udp {self.interface} -> {to}:{self.port}"


Link = SerialLink | UdpLink


@dataclass(frozen=True)
class Group:
    name: str
    preferred: str
    resources: tuple[ResourceSpec, ...]
    resource_texts: tuple[str, ...]
    monitor_interval: float = 10.0
    max_restarts: int = 3
    restart_window: float = 300.0
    failure_timeout: float = 600.0
    on_stop_failure: str = "reboot"
    start_timeout: float = 60.0
    stop_timeout: float = 60.0
    status_timeout: float = 20.0


@dataclass(frozen=True)
class Replicated:
    """One DRBD resource replicated over the crossover link (``[[replicated]]``)."""

    name: str
    disk: str
    mount_point: str
    minor: int = 0
    port: int = DEFAULT_DRBD_PORT
    protocol: str = "C"
    resync_rate: int = DEFAULT_RESYNC_RATE  # KiB/s
    filesystem: str = "ext4"
    split_brain: str = "disconnect"  # a policy, or "discard-node NAME"

    @property
    def device(self) -> str:
        return f"/dev/drbd{self.minor}"

    @property
    def split_brain_policy(self) -> str:
        return self.split_brain.split()[0]

    @property
    def split_brain_node(self) -> str | None:
        words = self.split_brain.split()
        return words[1] if len(words) == 2 else None

    def shared(self) -> tuple[str, int, int, str, int, str, str, str]:
        """What both nodes must agree on (the backing disk is each node's own)."""
        return (self.name, self.minor, self.port, self.protocol, self.resync_rate,
                self.filesystem, self.mount_point, self.split_brain)


@dataclass(frozen=True)
class Config:
    path: str
    cluster_name: str
    authkeys_path: str
    auto_failback: bool
    ping_nodes: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    public_interface: str | None
    ping_interval: float
    ping_timeout: float
    timing: Timing
    watchdog: WatchdogConfig
    takeover: TakeoverConfig
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    groups: tuple[Group, ...]
    resource_dirs: tuple[str, ...] = ("/etc/twinbeat/resource.d", "/etc/init.d")
    replicated: tuple[Replicated, ...] = ()
    #: [notify], [metrics], [status_page] (supervisor.opsconfig)
    ops: OpsConfig = field(default_factory=lambda: _default_ops())  # noqa: PLW0108 (below)
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def peer_of(self, name: str) -> Node:
        for n in self.nodes:
            if n.name != name:
                return n
        raise KeyError(name)

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)


# --------------------------------------------------------------------------------------------
# Line numbers: tomllib gives none, so locate keys in the text


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
        self.lines: dict[tuple[str | int, ...], int] = {}
        counters: dict[tuple[str, ...], int] = {}
        table: tuple[str | int, ...] = ()
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

    def line(self, path: tuple[str | int, ...]) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1


def _keyname(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


# --------------------------------------------------------------------------------------------
# Authkeys (heartbeat's format)


@dataclass(frozen=True)
class AuthKey:
    index: int
    method: str  # as written: crc, md5, sha1, sha256
    secret: bytes

    @property
    def insecure(self) -> bool:
        return self.method == "crc" or not self.secret


_AUTH_METHODS = ("crc", "md5", "sha1", "sha256")


class AuthkeysError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(message)


def parse_authkeys_text(text: str) -> AuthKey:
    """Read ``auth N`` and the ``N method secret`` line it selects, as heartbeat reads them.

    A line whose first non-blank character is ``#`` is a comment. The secret is one word (heartbeat
    takes the first word and ignores the rest; here anything after it must be a ``# comment``), so
    a ``#`` inside a secret is part of the secret, as in heartbeat.
    """
    active: int | None = None
    active_line = 0
    keys: dict[int, tuple[str, bytes, int]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "auth":
            if len(words) < 2 or not words[1].isdigit() or not _comment_or_nothing(words[2:]):
                raise AuthkeysError(number, "expected 'auth N' with N a key number")
            active, active_line = int(words[1]), number
            continue
        if not words[0].isdigit():
            hint = ""
            if words[0].lower() in _AUTH_METHODS and len(words) > 1 and words[1].isdigit():
                hint = f" (the key number comes first: '{words[1]} {words[0]} ...')"
            raise AuthkeysError(
                number, f"expected 'N method secret', not {raw.strip()!r}{hint}"
            )
        method = words[1].lower() if len(words) > 1 else ""
        if method not in _AUTH_METHODS:
            raise AuthkeysError(number, f"unknown method {method!r} (crc, md5, sha1, sha256)")
        if method == "crc":
            if not _comment_or_nothing(words[2:]):
                raise AuthkeysError(number, "method crc takes no secret")
            secret = b""
        else:
            if len(words) < 3:
                raise AuthkeysError(number, f"method {method} needs a secret")
            if not _comment_or_nothing(words[3:]):
                raise AuthkeysError(
                    number, "the secret must be one word (heartbeat used only the first word)"
                )
            secret = words[2].encode()
        if int(words[0]) in keys:
            raise AuthkeysError(number, f"key {int(words[0])} is defined twice")
        keys[int(words[0])] = (method, secret, number)
    if active is None:
        raise AuthkeysError(1, "no 'auth N' line")
    if active not in keys:
        raise AuthkeysError(active_line, f"'auth {active}' names no key line '{active} ...'")
    method, secret, _ = keys[active]
    return AuthKey(active, method, secret)


def _comment_or_nothing(words: list[str]) -> bool:
    return not words or words[0].startswith("#")


def load_authkeys(path: str | Path, *, check_mode: bool = True) -> AuthKey:
    """Load and check the key file; raises AuthkeysError (line 0: file-level problem)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AuthkeysError(0, f"{p} does not exist") from None
    except OSError as exc:
        raise AuthkeysError(0, f"{p}: {exc.strerror}") from None
    if check_mode and stat.S_IMODE(st.st_mode) & 0o077:
        raise AuthkeysError(
            0, f"{p} is mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 (chmod 600 {p})"
        )
    try:
        key = parse_authkeys_text(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise AuthkeysError(0, f"{p} is not text") from None
    if key.insecure:
        raise AuthkeysError(
            0, f"{p}: method crc gives no authentication; use sha256 with a secret"
        )
    return key


# --------------------------------------------------------------------------------------------
# Loading and validation


class _Builder:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.loc = Locator(text)
        self.problems: list[Problem] = []

    def error(self, keypath: tuple[str | int, ...], message: str) -> None:
        self.problems.append(
            Problem(self.path, self.loc.line(keypath), _keyname(keypath), message)
        )

    def warn(self, keypath: tuple[str | int, ...], message: str) -> None:
        self.problems.append(
            Problem(self.path, self.loc.line(keypath), _keyname(keypath), message, "warning")
        )

    def table(
        self, data: object, prefix: tuple[str | int, ...], settings: Iterable[Setting]
    ) -> dict[str, Any] | None:
        if not isinstance(data, dict):
            self.error(prefix, "expected a table")
            return None
        settings = tuple(settings)
        known = {s.key for s in settings}
        out: dict[str, Any] = {}
        for key in data:
            if key not in known:
                hint = _suggest(key, known)
                self.error((*prefix, key), f"unknown key{hint}")
        for s in settings:
            if s.key in data:
                try:
                    out[s.key] = s.parse(data[s.key])
                except ValueError as exc:
                    self.error((*prefix, s.key), str(exc))
                    out[s.key] = None
                    out.setdefault("__bad__", set()).add(s.key)
            elif s.required:
                self.error(prefix, f"missing required key '{s.key}'")
                out[s.key] = None
                out.setdefault("__bad__", set()).add(s.key)
            else:
                out[s.key] = s.default
        return out


def _suggest(key: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(known))})"


def load_config(
    path: str | Path = DEFAULT_CONFIG,
    *,
    text: str | None = None,
    root: str | Path | None = None,
    check_devices: bool = True,
    check_authkeys: bool = True,
) -> Config:
    """Read and validate the configuration; raise ConfigError listing every problem.

    ``root`` prefixes device and key paths (used to check a scratch tree); ``check_devices``
    and ``check_authkeys`` can be turned off to validate a file for another machine.
    """
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError([Problem(path, 0, "-", "file does not exist")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([Problem(path, 0, "-", f"cannot read: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            [Problem(path, int(m.group(1)) if m else 0, "-", f"not valid TOML: {exc}")]
        ) from None
    b = _Builder(path, text)
    for key in data:
        if key not in TOP_LEVEL:
            b.error((key,), f"unknown section{_suggest(key, TOP_LEVEL)}")

    if "cluster" in data:
        cluster = b.table(data["cluster"], ("cluster",), CLUSTER_SETTINGS) or {}
    else:
        b.error(("cluster",), 'missing the [cluster] section (it needs at least name = "...")')
        cluster = {s.key: s.default for s in CLUSTER_SETTINGS}
    timing_raw = b.table(data.get("timing", {}), ("timing",), TIMING_SETTINGS) or {}
    watchdog = b.table(data.get("watchdog", {}), ("watchdog",), WATCHDOG_SETTINGS) or {}
    takeover = b.table(data.get("takeover", {}), ("takeover",), TAKEOVER_SETTINGS) or {}

    timing = _check_timing(b, timing_raw)
    raw_watchdog = data.get("watchdog", {})
    if isinstance(raw_watchdog, dict) and "timeout" not in raw_watchdog:
        # not written: the default follows a long keepalive instead of refusing it
        default = next(s.default for s in WATCHDOG_SETTINGS if s.key == "timeout")
        watchdog["timeout"] = max(default, 2 * timing.keepalive)
    wd_timeout = watchdog.get("timeout")
    device = watchdog.get("device")
    if device not in (None, "auto") and not (
        str(device).startswith("/dev/") or str(device).startswith("fifo:/")
    ):
        b.error(("watchdog", "device"),
                "must be 'auto', a /dev/watchdog* path, or fifo:/PATH (the test driver)")
    if wd_timeout is not None and wd_timeout < 2 * timing.keepalive:
        b.error(
            ("watchdog", "timeout"),
            f"must be at least twice keepalive (2 x {format_duration(timing.keepalive)})",
        )
    for key in ("ping_interval", "ping_timeout"):
        if cluster.get(key) == 0:
            b.error(("cluster", key), "must be more than 0")
    if (cluster.get("ping_interval") or 0) > (cluster.get("ping_timeout") or math.inf):
        b.error(("cluster", "ping_timeout"), "must be at least ping_interval")
    for d in cluster.get("resource_dirs") or ():
        if not d.startswith("/"):
            b.error(("cluster", "resource_dirs"), f"{d!r} is not an absolute path")

    nodes = _check_nodes(b, data.get("node"))
    node_names = {n.name for n in nodes}
    indexed_links = _check_links(
        b, data.get("link"), root if check_devices else None, check_devices
    )
    links = [link for _, link in indexed_links]
    groups = _check_groups(b, data.get("group"), node_names, nodes)
    replicated = _check_replicated(b, data.get("replicated"), nodes, groups)
    from supervisor.opsconfig import check_ops

    ops = check_ops(b, data)

    ping_nodes = cluster.get("ping_nodes") or ()
    floating = {
        spec.address: g.name
        for g in groups
        for spec in g.resources
        if isinstance(spec, IPaddrSpec)
    }
    for i, addr in enumerate(ping_nodes):
        if any(addr in (n.address, n.crossover_address) for n in nodes):
            b.error(("cluster", "ping_nodes"), f"ping node {addr} is a cluster node (entry {i})")
        if addr in floating:
            b.error(
                ("cluster", "ping_nodes"),
                f"ping node {addr} is a floating address of group {floating[addr]!r}",
            )
    for i, link in indexed_links:
        if isinstance(link, UdpLink) and link.peer in floating:
            b.error(
                ("link", i, "peer"),
                f"{link.peer} is a floating address (group {floating[link.peer]!r}): "
                "heartbeats must go to a node's own address",
            )

    authkeys_path = cluster.get("authkeys") or "authkeys"
    resolved_keys = Path(authkeys_path)
    if not resolved_keys.is_absolute():
        resolved_keys = Path(path).parent / resolved_keys
    if check_authkeys:
        check_at = resolved_keys
        # ``root`` applies to paths written in the file; a relative one follows the file itself
        if root is not None and Path(authkeys_path).is_absolute():
            check_at = Path(root) / resolved_keys.relative_to("/")
        try:
            load_authkeys(check_at)
        except AuthkeysError as exc:
            where = f"{check_at}:{exc.line}: " if exc.line else ""
            b.error(("cluster", "authkeys"), f"{where}{exc}")

    errors = sorted((p for p in b.problems if p.severity == "error"), key=lambda p: p.line)
    if errors:
        raise ConfigError(errors + [p for p in b.problems if p.severity != "error"])
    return Config(
        path=path,
        cluster_name=cluster["name"],
        authkeys_path=str(resolved_keys),
        auto_failback=cluster["auto_failback"],
        ping_nodes=tuple(ping_nodes),
        public_interface=cluster["public_interface"],
        ping_interval=cluster["ping_interval"],
        ping_timeout=cluster["ping_timeout"],
        resource_dirs=tuple(cluster["resource_dirs"] or ()),
        timing=timing,
        watchdog=WatchdogConfig(watchdog["mode"], watchdog["device"], watchdog["timeout"]),
        takeover=TakeoverConfig(**{k: v for k, v in takeover.items() if k != "__bad__"}),
        nodes=tuple(nodes),
        links=tuple(links),
        groups=tuple(groups),
        replicated=tuple(replicated),
        ops=ops,
        warnings=tuple(p for p in b.problems if p.severity == "warning"),
    )


def _check_timing(b: _Builder, raw: Mapping[str, Any]) -> Timing:
    # A value that failed to parse is None and already reported; compare only good values.
    # (Explicit None tests: "0s" is a value to check, not a reason to use the default.)
    bad = raw.get("__bad__", set())
    keepalive = raw.get("keepalive")
    if keepalive is None:
        keepalive = 1.0
    deadtime = raw.get("deadtime")
    if deadtime is None:
        deadtime = 5.0
    good = {key for key in ("keepalive", "warntime", "deadtime", "initdead") if key not in bad}
    if "keepalive" in good and keepalive < 0.01:
        b.error(("timing", "keepalive"), "must be at least 10ms")
    if {"deadtime", "keepalive"} <= good and deadtime <= 2 * keepalive:
        b.error(
            ("timing", "deadtime"),
            f"must be more than twice keepalive (2 x {format_duration(keepalive)})",
        )
    warntime = raw.get("warntime")
    if warntime is None:
        warntime = min(3 * keepalive, deadtime * 0.75)
    elif {"warntime", "keepalive", "deadtime"} <= good and not keepalive <= warntime < deadtime:
        b.error(
            ("timing", "warntime"),
            f"must lie between keepalive ({format_duration(keepalive)}) and deadtime "
            f"({format_duration(deadtime)})",
        )
    initdead = raw.get("initdead")
    if initdead is None:
        initdead = 2 * deadtime
    elif {"initdead", "deadtime"} <= good and initdead < deadtime:
        b.error(("timing", "initdead"), f"must be at least deadtime ({format_duration(deadtime)})")
    return Timing(keepalive, warntime, deadtime, initdead)


def _check_nodes(b: _Builder, raw: object) -> list[Node]:
    if raw is None:
        b.error(("node",), "missing: the two [[node]] tables")
        return []
    if not isinstance(raw, list):
        b.error(("node",), "write each node as a [[node]] table")
        return []
    nodes: list[Node] = []
    for i, entry in enumerate(raw):
        t = b.table(entry, ("node", i), NODE_SETTINGS)
        if t is None or t["name"] is None:
            continue
        if any(n.name == t["name"] for n in nodes):
            b.error(("node", i, "name"), f"node {t['name']!r} is listed twice")
            continue
        nodes.append(Node(t["name"], t["address"], t["crossover_address"]))
    if len(raw) != 2:
        b.error(("node",), f"a twinbeat cluster has exactly two nodes, not {len(raw)}")
    seen: dict[object, str] = {}
    for i, n in enumerate(nodes):
        for attr in ("address", "crossover_address"):
            value = getattr(n, attr)
            if value is None:
                continue
            if value in seen:
                b.error(("node", i, attr), f"{value} is already {seen[value]}")
            else:
                seen[value] = f"the {attr} of node {n.name!r}"
    return nodes


def _check_links(
    b: _Builder, raw: object, root: str | Path | None, check_devices: bool
) -> list[tuple[int, Link]]:
    """The valid links, each with its index in the file."""
    if raw is None:
        b.error(("link",), "missing: at least one [[link]] (serial or udp)")
        return []
    if not isinstance(raw, list):
        b.error(("link",), "write each link as a [[link]] table")
        return []
    links: list[tuple[int, Link]] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        kind = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(entry, dict):
            b.error(("link", i), "expected a table")
            continue
        if kind is None:
            b.error(("link", i), "missing required key 'type' (serial or udp)")
            continue
        if kind == "serial":
            t = b.table(entry, ("link", i), SERIAL_SETTINGS)
            if t is None or "__bad__" in t:
                continue
            name = t["name"] or "serial" + ("" if "serial" not in names else str(i))
            dev = t["device"]
            if not dev.startswith("/dev/"):
                b.error(("link", i, "device"), f"{dev!r} is not a /dev path")
            elif check_devices:
                check = Path(root) / dev.lstrip("/") if root is not None else Path(dev)
                if not check.exists():
                    b.error(("link", i, "device"), f"serial device {dev} does not exist")
            link: Link = SerialLink(name, dev, t["baud"])
        elif kind == "udp":
            t = b.table(entry, ("link", i), UDP_SETTINGS)
            if t is None or "__bad__" in t:
                continue
            name = t["name"] or t["interface"]
            peer = t["peer"]
            if peer is not None and (peer.is_loopback or peer.is_unspecified):
                b.error(("link", i, "peer"), f"{peer} cannot be a heartbeat peer")
            link = UdpLink(name, t["interface"], peer, t["port"], t["ttl"])
        else:
            b.error(("link", i, "type"), f"{kind!r} is not a link type (serial, udp)")
            continue
        if link.name in names:
            b.error(("link", i, "name"), f"link name {link.name!r} is used twice")
            continue
        twin = next((other for _, other in links if _same_medium(link, other)), None)
        if twin is not None:
            b.error(("link", i), f"same medium as link {twin.name!r} ({twin.describe()})")
            continue
        names.add(link.name)
        links.append((i, link))
    if len(raw) == 1 and links:
        b.warn(("link",), "only one heartbeat link: a single cut cable will look like a dead peer")
    return links


def _same_medium(a: Link, b: Link) -> bool:
    if isinstance(a, SerialLink) and isinstance(b, SerialLink):
        return a.device == b.device
    if isinstance(a, UdpLink) and isinstance(b, UdpLink):
        return (a.interface, a.peer, a.port) == (b.interface, b.peer, b.port)
    return False


def _check_groups(
    b: _Builder, raw: object, node_names: set[str], nodes: list[Node]
) -> list[Group]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        b.error(("group",), "write each resource group as a [[group]] table")
        return []
    groups: list[Group] = []
    node_addrs = {a for n in nodes for a in (n.address, n.crossover_address) if a is not None}
    floating: dict[object, str] = {}
    for i, entry in enumerate(raw):
        t = b.table(entry, ("group", i), GROUP_SETTINGS)
        if t is None:
            continue
        name = t["name"]
        if name is not None and any(g.name == name for g in groups):
            b.error(("group", i, "name"), f"group {name!r} is defined twice")
        if t["preferred"] is not None and node_names and t["preferred"] not in node_names:
            b.error(
                ("group", i, "preferred"),
                f"{t['preferred']!r} is not a node (nodes: {', '.join(sorted(node_names))})",
            )
        specs: list[ResourceSpec] = []
        texts = t["resources"] or ()
        if t["resources"] is not None and not texts:
            b.error(("group", i, "resources"), "a group needs at least one resource")
        for j, text in enumerate(texts):
            try:
                spec = parse_resource(text)
            except ResourceSpecError as exc:
                b.error(("group", i, "resources"), f"resource {j + 1} ({text!r}): {exc}")
                continue
            if isinstance(spec, IPaddrSpec):
                _check_ipaddr(b, ("group", i, "resources"), j, spec)
                if spec.address in node_addrs:
                    b.error(
                        ("group", i, "resources"),
                        f"floating address {spec.address} is also a node's own address",
                    )
                if spec.address in floating:
                    b.error(
                        ("group", i, "resources"),
                        f"floating address {spec.address} is also in group "
                        f"{floating[spec.address]!r}",
                    )
                floating[spec.address] = name or "?"
            specs.append(spec)
        for key in ("restart_window", "start_timeout", "stop_timeout", "status_timeout"):
            if t.get(key) == 0:
                b.error(("group", i, key), "must be more than 0")
        if "__bad__" in t or name is None or t["preferred"] is None:
            continue
        groups.append(
            Group(
                name=name,
                preferred=t["preferred"],
                resources=tuple(specs),
                resource_texts=tuple(texts),
                monitor_interval=t["monitor_interval"],
                max_restarts=t["max_restarts"],
                restart_window=t["restart_window"],
                failure_timeout=t["failure_timeout"],
                on_stop_failure=t["on_stop_failure"],
                start_timeout=t["start_timeout"],
                stop_timeout=t["stop_timeout"],
                status_timeout=t["status_timeout"],
            )
        )
    return groups


def _check_replicated(
    b: _Builder, raw: object, nodes: list[Node], groups: list[Group]
) -> list[Replicated]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        b.error(("replicated",), "write each replicated disk as a [[replicated]] table")
        return []
    out: list[Replicated] = []
    seen: dict[str, dict[object, str]] = {k: {} for k in
                                          ("name", "minor", "port", "disk", "mount_point")}
    node_names = {n.name for n in nodes}
    for i, entry in enumerate(raw):
        t = b.table(entry, ("replicated", i), REPLICATED_SETTINGS)
        if t is None:
            continue
        label = t["name"] or f"entry {i}"
        for key, used in seen.items():
            value = t[key]
            if value is None:
                continue
            if value in used:
                b.error(("replicated", i, key),
                        f"{key} {value!r} is already used by [[replicated]] {used[value]}")
            else:
                used[value] = label
        sb = t["split_brain"]
        if sb is not None and sb.startswith("discard-node ") and node_names:
            victim = sb.split()[1]
            if victim not in node_names:
                b.error(("replicated", i, "split_brain"),
                        f"{victim!r} is not a node (nodes: {', '.join(sorted(node_names))})")
        if "__bad__" in t:
            continue
        out.append(Replicated(
            name=t["name"], disk=t["disk"], mount_point=t["mount_point"], minor=t["minor"],
            port=t["port"], protocol=t["protocol"], resync_rate=t["resync_rate"],
            filesystem=t["filesystem"], split_brain=sb,
        ))
    if raw:
        for j, n in enumerate(nodes):
            if n.crossover_address is None:
                b.error(("node", j, "crossover_address"),
                        f"node {n.name!r} needs a crossover_address: [[replicated]] disks are "
                        "mirrored between the nodes' crossover addresses")
    for i, r in enumerate(out):
        specs = [s for g in groups for s in g.resources]
        if not any(isinstance(s, DrbdSpec) and s.resource == r.name for s in specs):
            b.warn(("replicated", i, "name"),
                   f"no group has drbddisk::{r.name}: nothing promotes {r.device} or mounts it")
        for s in specs:
            if isinstance(s, FilesystemSpec) and s.device == r.device and (
                    s.mountpoint.rstrip("/") != r.mount_point or s.fstype != r.filesystem):
                b.warn(("replicated", i, "mount_point"),
                       f"a group mounts {r.device} on {s.mountpoint} ({s.fstype}), not on "
                       f"{r.mount_point} ({r.filesystem})")
    return out


def _check_ipaddr(b: _Builder, key: tuple[str | int, ...], j: int, spec: IPaddrSpec) -> None:
    if spec.prefix is None:
        return
    net = ipaddress.ip_network(f"{spec.address}/{spec.prefix}", strict=False)
    if spec.broadcast is not None and spec.broadcast not in net:
        b.error(key, f"resource {j + 1}: broadcast {spec.broadcast} is outside {net}")
    if spec.prefix < (8 if spec.address.version == 4 else 48):
        b.warn(
            key,
            f"resource {j + 1}: /{spec.prefix} is a very short prefix for a floating address "
            f"({net} holds {net.num_addresses} addresses); is it a typo?",
        )


def _default_ops() -> OpsConfig:
    from supervisor.opsconfig import OpsConfig

    return OpsConfig()


def describe_settings() -> str:
    """The settings tables as text (used by ``twinbeat check-config --help-settings``)."""
    from supervisor.opsconfig import SECTIONS

    out = []
    for section, settings in (
        ("cluster", CLUSTER_SETTINGS),
        ("timing", TIMING_SETTINGS),
        ("watchdog", WATCHDOG_SETTINGS),
        ("takeover", TAKEOVER_SETTINGS),
        ("[node]", NODE_SETTINGS),
        ("[link] serial", SERIAL_SETTINGS),
        ("[link] udp", UDP_SETTINGS),
        ("[group]", GROUP_SETTINGS),
        ("[replicated]", REPLICATED_SETTINGS),
        *SECTIONS,
    ):
        out.append(f"[{section}]")
        for s in settings:
            default = "(required)" if s.required else f"default {s.default!r}"
            out.append(f"  {s.key:<18} {default:<22} {s.help}")
    return "\n".join(out)


def environment_root() -> str | None:
    """TWINBEAT_ROOT lets tests point device/key checks at a scratch tree."""
    return os.environ.get("TWINBEAT_ROOT") or None


def without_links_to(config: Config, local: Iterable[object]) -> tuple[Config, list[str]]:
    """Drop UDP links whose peer is one of this host's own addresses.

    heartbeat's shared ha.cf lists ``ucast eth1 10.0.0.1`` and ``ucast eth1 10.0.0.2`` on both
    nodes and each node skips the line that names itself; the importer keeps both lines as
    links, and this does the skipping at start-up. Returns the new configuration and one
    sentence per dropped link.
    """
    mine = set(local)
    keep: list[Link] = []
    dropped: list[str] = []
    for link in config.links:
        if isinstance(link, UdpLink) and link.peer is not None and link.peer in mine:
            dropped.append(
                f"link {link.name} ({link.describe()}) skipped: its peer is this node's own "
                "address (the other node uses it)"
            )
        else:
            keep.append(link)
    if not dropped:
        return config, []
    return dataclasses.replace(config, links=tuple(keep)), dropped
