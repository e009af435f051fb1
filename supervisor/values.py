"""The value parsers and formatters of the settings table (pure: no I/O; the core may import it).

Each parser takes what ``tomllib`` read and returns the typed value, or raises ValueError with a
message meant for the user (the loader adds the file, line and key). Each formatter is the
inverse: ``parse(format(x)) == x`` for every value a parser returns, which is what lets
``supervisor.config.dump`` write any configuration back (see ``tests/test_config_dump.py``).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from supervisor import names

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
# Milliseconds are divided by 1000 (not multiplied by 0.001, which is inexact: 9 * 0.001 is
# 0.009000000000000001), so "300ms" and "0.3" give the same float.
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_FSTYPE_RE = re.compile(r"^[a-z0-9][a-z0-9_.]{0,31}$")
_RATE_RE = re.compile(r"^\s*(\d+)\s*([KkMmGg]?)\s*$")
_RATE_UNITS = {"": 1, "k": 1, "m": 1024, "g": 1024 * 1024}
# DRBD 8.4's limits (drbd_limits.h) in KiB/s: c-max-rate is at least 250K, both at most 4G.
RATE_MIN_KIB = 250
RATE_MAX_KIB = 4 << 20
SPLIT_BRAIN_POLICIES = ("disconnect", "discard-younger-primary", "discard-least-changes",
                        "discard-node")
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


# --------------------------------------------------------------------------------------------
# Durations and rates


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


def duration_value(seconds: float) -> str | float:
    """What the writer puts in the file: ``format_duration`` when it reads back exactly, else
    the number of seconds (a TOML float reads back as the same float)."""
    text = format_duration(seconds)
    return text if parse_duration(text) == seconds else float(seconds)


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


# --------------------------------------------------------------------------------------------
# Plain values


def parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "yes", "true"):
        return True
    if isinstance(value, str) and value.lower() in ("off", "no", "false"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def parse_str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def parse_str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def int_range(lo: int, hi: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number between {lo} and {hi}")
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range ({lo}-{hi})")
        return value

    return parse


def choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(choices)}")
        return str(value)

    return parse


def parse_baud(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in BAUDS:
        raise ValueError(f"{value!r} is not a standard baud rate ({', '.join(map(str, BAUDS))})")
    return value


def parse_ip(value: object) -> IPAddress:
    text = parse_str(value)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def parse_ip_list(value: object) -> tuple[IPAddress, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of IP addresses")
    return tuple(parse_ip(v) for v in value)


def format_ip(value: IPAddress) -> str:
    return str(value)


def format_ip_list(value: Iterable[IPAddress]) -> list[str]:
    return [str(v) for v in value]


def format_list(value: Iterable[str]) -> list[str]:
    return list(value)


# --------------------------------------------------------------------------------------------
# Names and paths (the rules are supervisor.names')


def parse_name(value: object) -> str:
    text = parse_str(value)
    if not names.is_name(text):
        raise ValueError(f"{text!r} is not a valid name (letters, digits, '-', '_', '.')")
    return text


def parse_interface(value: object) -> str:
    text = parse_str(value)
    if not names.is_interface(text):
        raise ValueError(f"{text!r} is not a valid interface name")
    return text


def parse_drbd_name(value: object) -> str:
    text = parse_str(value)
    if not names.is_drbd_resource(text):
        raise ValueError(f"{text!r} is not a DRBD resource name (letters, digits, '-', '_', "
                         "'.', not starting with '-' or '.')")
    return text


def parse_dev_path(value: object) -> str:
    text = parse_str(value)
    if not names.is_dev_path(text):
        raise ValueError(f"{text!r} is not a /dev path (e.g. \"/dev/sdb\")")
    return text


def parse_mount_point(value: object) -> str:
    text = parse_str(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path (e.g. \"/srv\")")
    path = names.mount_point(text)
    if path is None:
        raise ValueError(f"{text!r} cannot be a mount point (an absolute path such as \"/srv\")")
    return path


def parse_fstype(value: object) -> str:
    text = parse_str(value)
    if not _FSTYPE_RE.match(text):
        raise ValueError(f"{text!r} is not a file system type (e.g. \"ext4\", \"xfs\")")
    return text


def parse_split_brain(value: object) -> str:
    text = parse_str(value)
    words = text.split()
    if words and words[0] == "discard-node":
        if len(words) != 2 or not names.is_name(words[1]):
            raise ValueError("write discard-node with the node to discard: \"discard-node NAME\"")
        return f"discard-node {words[1]}"
    if len(words) == 1 and words[0] in SPLIT_BRAIN_POLICIES:
        return words[0]
    raise ValueError(
        f"{text!r} is not a split-brain policy (disconnect, discard-younger-primary, "
        "discard-least-changes, \"discard-node NAME\")"
    )


def as_is(value: Any) -> Any:
    return value


# --------------------------------------------------------------------------------------------
# [notify], [metrics], [status_page]

_MAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9.-]+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
SEVERITIES = ("info", "warning", "critical")


def parse_mail(value: object) -> str:
    text = parse_str(value).strip()
    if not _MAIL_RE.match(text):
        raise ValueError(f"{text!r} is not an e-mail address (name@domain)")
    return text


def parse_mail_list(value: object) -> tuple[str, ...]:
    """One address or a list of them (``mail_to``)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("expected a list of e-mail addresses")
    return tuple(parse_mail(v) for v in value)


def parse_host(value: object) -> str:
    """A host name or an IP address (a mail relay)."""
    text = parse_str(value).strip()
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOST_RE.match(text):
            raise ValueError(f"{text!r} is not a host name or address") from None
    return text


def parse_abs_path(value: object) -> str:
    text = parse_str(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path")
    return text


def parse_dir_or_none(value: object) -> str:
    """An absolute path, or "" for none (``hooks_dir``)."""
    if value == "":
        return ""
    return parse_abs_path(value)


def parse_listen(value: object) -> tuple[str, int]:
    """``"ADDRESS:PORT"`` (``"[v6]:PORT"`` for IPv6, ``":PORT"`` for every IPv4 address)."""
    text = parse_str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: give ADDRESS:PORT, e.g. 0.0.0.0:9105 or [::]:9105")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    return host, int(port)


def format_listen(value: tuple[str, int]) -> str:
    host, port = value
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
