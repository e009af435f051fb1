"""One pure validator per answer, shared by the interactive wizard and the seed.

A validator takes the text typed at the prompt (a seed's value is turned into the same text)
and a Context holding the hardware and the answers given so far. It returns the parsed value
or raises Invalid with a one-line message for the user. Nothing here touches the console,
the clock or the file system: the hardware was read beforehand (hardware.py).

A validator that needs an earlier answer which is missing (it was itself invalid in a seed)
raises NeedsEarlier; the seed path then reports only the earlier problem.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from firstboot.hardware import Hardware, is_base_unit
from firstboot.secret import parse_code
from supervisor import names
from supervisor.config import CLUSTER_SETTINGS, SERIAL_SETTINGS

ROLES = ("node1", "node2")
MIN_PREFIX = 8
PUBLIC_MAX_PREFIX = 29  # both nodes, a floating address, network and broadcast
CROSSOVER_MAX_PREFIX = 30
MIN_PASSWORD = 6
_HASH_RE = re.compile(r"^\$(1|5|6|y|gy|7|2[abxy])\$[^\s:]+$")
_KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)
NONE_WORDS = ("none", "no", "-")


class Invalid(ValueError):
    """An answer that cannot be used; the message is one line for the user."""


class NeedsEarlier(Exception):
    """A validator needs an answer that is missing because it was invalid."""


@dataclass
class Context:
    hw: Hardware
    answers: dict[str, Any] = field(default_factory=dict)
    generated_code: str = ""
    # raw answers that become the defaults (an earlier pass, or the existing configuration)
    previous: Mapping[str, str] = field(default_factory=dict)
    root_login_set: bool = False  # --reconfigure: root already has a password or key
    can_hash_passwords: bool = True

    def need(self, key: str) -> Any:
        if key not in self.answers:
            raise NeedsEarlier(key)
        return self.answers[key]


def is_none(text: str) -> bool:
    return text.strip().lower() in NONE_WORDS


# --------------------------------------------------------------------------------------------
# Names


def role(text: str, ctx: Context) -> str:
    t = text.strip().lower()
    t = {"1": "node1", "2": "node2"}.get(t, t)
    if t not in ROLES:
        raise Invalid(f"{text.strip()!r} is not a role: type node1 or node2")
    return t


def _hostname(text: str) -> str:
    t = text.strip()
    if not t:
        raise Invalid("the hostname cannot be empty")
    if not names.is_hostname(t):
        if len(t) > names.HOSTNAME_MAX:
            raise Invalid(f"the hostname is too long (at most {names.HOSTNAME_MAX} characters)")
        raise Invalid(
            f"{t!r} is not a valid hostname: use letters, digits and '-' "
            "(not first or last)"
        )
    if t.lower() == "localhost":
        raise Invalid("'localhost' cannot be a cluster node's name")
    return t


def hostname(text: str, ctx: Context) -> str:
    return _hostname(text)


def peer_hostname(text: str, ctx: Context) -> str:
    t = _hostname(text)
    if t.lower() == str(ctx.need("hostname")).lower():
        raise Invalid(f"the peer cannot have this node's name ({t})")
    return t


def cluster_name(text: str, ctx: Context) -> str:
    t = text.strip()
    if not t:
        raise Invalid("the cluster name cannot be empty")
    parse = next(s.parse for s in CLUSTER_SETTINGS if s.key == "name")
    try:
        return str(parse(t))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Network cards and addresses


def _nic(text: str, ctx: Context) -> str:
    t = text.strip()
    if not ctx.hw.nics:
        raise Invalid("no network card was found on this machine")
    if not t:
        raise Invalid("type the name of a network card")
    if ctx.hw.nic(t) is None:
        names = ", ".join(n.name for n in ctx.hw.nics)
        raise Invalid(f"there is no network card named {t!r} (cards: {names})")
    return t


def public_interface(text: str, ctx: Context) -> str:
    return _nic(text, ctx)


def crossover_interface(text: str, ctx: Context) -> str:
    t = _nic(text, ctx)
    if len(ctx.hw.nics) < 2:
        raise Invalid("this machine has one network card; twinbeat needs a second one")
    if t == ctx.need("public_interface"):
        raise Invalid(f"{t} is already the public interface; the crossover needs the other card")
    return t


def parse_ipv4(text: str, what: str) -> IPv4Address:
    t = text.strip()
    if not t:
        raise Invalid(f"type the {what}")
    try:
        addr = IPv4Address(t)
    except ValueError:
        if ":" in t:
            raise Invalid(f"{t!r}: the wizard takes IPv4 addresses only") from None
        raise Invalid(f"{t!r} is not an IPv4 address (example: 192.168.85.1)") from None
    for bad, name in (
        (addr.is_unspecified, "the unspecified address"),
        (addr.is_loopback, "a loopback address"),
        (addr.is_multicast, "a multicast address"),
        (addr.is_link_local, "a link-local address"),
        (addr.is_reserved or addr == IPv4Address("255.255.255.255"), "a reserved address"),
    ):
        if bad:
            raise Invalid(f"{addr} is {name}; the {what} must be a host address")
    return addr


def parse_interface_address(text: str, what: str, max_prefix: int) -> IPv4Interface:
    t = text.strip()
    if not t:
        raise Invalid(f"type the {what} as ADDRESS/PREFIX, for example 192.168.85.1/24")
    addr_text, slash, prefix_text = t.partition("/")
    addr = parse_ipv4(addr_text, what)
    if not slash:
        raise Invalid(f"add the prefix length, for example {addr}/24")
    prefix_text = prefix_text.strip()
    if "." in prefix_text:
        try:
            prefix = IPv4Network(f"0.0.0.0/{prefix_text}").prefixlen
        except ValueError:
            raise Invalid(f"netmask {prefix_text} is not valid") from None
    elif prefix_text.isdigit():
        prefix = int(prefix_text)
    else:
        raise Invalid(f"prefix {prefix_text!r} is not a number")
    if not MIN_PREFIX <= prefix <= max_prefix:
        raise Invalid(f"prefix /{prefix} is out of range ({MIN_PREFIX}-{max_prefix})")
    iface = IPv4Interface(f"{addr}/{prefix}")
    _check_host(addr, iface.network, what)
    return iface


def _check_host(addr: IPv4Address, net: IPv4Network, what: str, where: str = "") -> None:
    if addr not in net:
        raise Invalid(f"{addr} is outside the {where or 'subnet'} {net}")
    if net.prefixlen <= 30 and addr == net.network_address:
        raise Invalid(f"{addr} is the network address of {net}, not a host")
    if net.prefixlen <= 30 and addr == net.broadcast_address:
        raise Invalid(f"{addr} is the broadcast address of {net}, not a host")


def public_address(text: str, ctx: Context) -> IPv4Interface:
    return parse_interface_address(text, "public address", PUBLIC_MAX_PREFIX)


def gateway(text: str, ctx: Context) -> IPv4Address | None:
    if is_none(text):
        return None
    own: IPv4Interface = ctx.need("public_address")
    addr = parse_ipv4(text, "gateway")
    _check_host(addr, own.network, "gateway", "public subnet")
    if addr == own.ip:
        raise Invalid(f"{addr} is this node's own address, not a gateway")
    return addr


def dns(text: str, ctx: Context) -> tuple[IPv4Address, ...]:
    if is_none(text):
        return ()
    out: list[IPv4Address] = []
    for word in re.split(r"[\s,]+", text.strip()):
        if word:
            addr = parse_ipv4(word, "DNS server")
            if addr not in out:
                out.append(addr)
    if len(out) > 3:
        raise Invalid("give at most three DNS servers")
    return tuple(out)


def crossover_address(text: str, ctx: Context) -> IPv4Interface:
    iface = parse_interface_address(text, "crossover address", CROSSOVER_MAX_PREFIX)
    public: IPv4Interface = ctx.need("public_address")
    if iface.network.overlaps(public.network):
        raise Invalid(
            f"{iface.network} overlaps the public subnet {public.network}; "
            "use a separate private subnet"
        )
    return iface


def peer_public_address(text: str, ctx: Context) -> IPv4Address:
    own: IPv4Interface = ctx.need("public_address")
    addr = parse_ipv4(text, "peer's public address")
    _check_host(addr, own.network, "peer's public address", "public subnet")
    if addr == own.ip:
        raise Invalid(f"{addr} is this node's own address; the peer needs its own")
    if addr == ctx.need("gateway"):
        raise Invalid(f"{addr} is the gateway; the peer needs its own address")
    return addr


def peer_crossover_address(text: str, ctx: Context) -> IPv4Address:
    own: IPv4Interface = ctx.need("crossover_address")
    addr = parse_ipv4(text, "peer's crossover address")
    _check_host(addr, own.network, "peer's crossover address", "crossover subnet")
    if addr == own.ip:
        raise Invalid(f"{addr} is this node's own address; the peer needs its own")
    return addr


def yes_no(text: str, ctx: Context | None = None) -> bool:
    t = text.strip().lower()
    if t in ("y", "yes", "true", "on"):
        return True
    if t in ("n", "no", "false", "off"):
        return False
    raise Invalid(f"{text.strip()!r}: answer yes or no")


def floating_addresses(text: str, ctx: Context) -> tuple[IPv4Address, ...]:
    own: IPv4Interface = ctx.need("public_address")
    peer: IPv4Address = ctx.need("peer_public_address")
    gw: IPv4Address | None = ctx.need("gateway")
    words = [w for w in re.split(r"[\s,]+", text.strip()) if w]
    if not words:
        raise Invalid("give at least one floating address (the address clients use)")
    out: list[IPv4Address] = []
    for word in words:
        if "/" in word:
            prefix = own.network.prefixlen
            raise Invalid(f"{word}: give the address alone; it takes the public prefix /{prefix}")
        addr = parse_ipv4(word, "floating address")
        _check_host(addr, own.network, "floating address", "public subnet")
        if addr == own.ip:
            raise Invalid(f"{addr} is this node's own address; a floating address must differ")
        if addr == peer:
            raise Invalid(f"{addr} is the peer's address; a floating address must differ")
        if addr == gw:
            raise Invalid(f"{addr} is the gateway; a floating address must differ")
        if addr in out:
            raise Invalid(f"{addr} is listed twice")
        out.append(addr)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Serial port, disk


def serial_port(text: str, ctx: Context) -> str | None:
    if is_none(text):
        return None
    t = text.strip().removeprefix("/dev/")
    if ctx.hw.serial(t) is None:
        names = ", ".join(p.name for p in ctx.hw.serial_ports) or "none found"
        raise Invalid(f"there is no serial port {t!r} (ports: {names})")
    return t


def serial_port_warnings(value: Any, ctx: Context) -> list[str]:
    if value is None:
        return ["no serial link: a cut crossover cable plus a public LAN fault looks like "
                "a dead peer"]
    port = ctx.hw.serial(value)
    if port is not None and port.is_console:
        return [f"{value} is the serial console: kernel and console output will garble "
                "the heartbeats on it"]
    return []


def baud(text: str, ctx: Context) -> int:
    t = text.strip()
    parse = next(s.parse for s in SERIAL_SETTINGS if s.key == "baud")
    try:
        return int(parse(int(t) if t.isdigit() else t))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def disk(text: str, ctx: Context) -> str | None:
    if is_none(text):
        return None
    t = text.strip().removeprefix("/dev/")
    d = ctx.hw.disk(t)
    if d is None:
        names = ", ".join(x.name for x in ctx.hw.free_disks) or "none"
        raise Invalid(f"there is no disk named {t!r} (disks you can use: {names})")
    if d.in_use is not None:
        raise Invalid(f"{t} {d.in_use}: choose another disk or 'none'")
    return t


def disk_warnings(value: Any, ctx: Context) -> list[str]:
    if value is None:
        return []
    d = ctx.hw.disk(value)
    out: list[str] = []
    if d is not None and d.contents:
        out.append(f"{d.name} holds {d.contents}: replication will overwrite it")
    if d is not None and d.removable:
        out.append(f"{d.name} is a removable disk")
    return out


# --------------------------------------------------------------------------------------------
# Secret, services, root access


def secret_code(text: str, ctx: Context) -> str:
    try:
        return parse_code(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def services(text: str, ctx: Context) -> tuple[str, ...]:
    if is_none(text):
        return ()
    out: list[str] = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        unit = word if "." in word else word + ".service"
        if not unit.endswith(".service"):
            raise Invalid(f"{word}: only services (.service units) can be owned")
        if not names.is_service(unit) or unit.endswith("@.service"):
            raise Invalid(f"{word!r} is not a service name")
        if is_base_unit(unit):
            raise Invalid(f"{unit} is part of the base system; the cluster cannot own it")
        if unit not in ctx.hw.services:
            offered = ", ".join(ctx.hw.offered_services) or "none"
            raise Invalid(f"{unit} is not installed (installed services: {offered})")
        if unit not in out:
            out.append(unit)
    return tuple(out)


def root_password(text: str, ctx: Context) -> str | None:
    if text == "":
        return None
    if not ctx.can_hash_passwords:
        raise Invalid("passwords cannot be hashed here (no openssl); press Enter, give a key")
    if len(text) < MIN_PASSWORD:
        raise Invalid(f"the password is too short (at least {MIN_PASSWORD} characters)")
    if any(c in text for c in "\n\r\0"):
        raise Invalid("the password cannot contain control characters")
    return text


def root_password_hash(text: str, ctx: Context) -> str | None:
    t = text.strip()
    if not t or is_none(t):
        return None
    if not _HASH_RE.match(t):
        raise Invalid("not a crypt(3) hash such as $6$SALT$HASH (openssl passwd -6)")
    if ctx.answers.get("root_password") is not None:
        raise Invalid("give root_password or root_password_hash, not both")
    return t


def ssh_key(text: str, ctx: Context) -> str | None:
    t = " ".join(text.split())
    if is_none(t) or not t:
        if (
            ctx.answers.get("root_password") is None
            and ctx.answers.get("root_password_hash") is None
            and not ctx.root_login_set
        ):
            raise Invalid("give a root password or an SSH key: otherwise nobody can log in")
        return None
    words = t.split(" ", 2)
    if words[0] not in _KEY_TYPES:
        raise Invalid(f"{words[0][:30]!r} is not an SSH key type (ssh-ed25519, ssh-rsa, ...)")
    if len(words) < 2:
        raise Invalid("the key is incomplete: paste the whole line of the .pub file")
    try:
        blob = base64.b64decode(words[1], validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("the key's base64 part is damaged") from None
    if len(blob) < 4:
        raise Invalid("the key's base64 part is too short")
    n = int.from_bytes(blob[:4], "big")
    if blob[4:4 + n].decode("ascii", "replace") != words[0]:
        raise Invalid("the key's data does not match its type: was it copied whole?")
    return t


def confirm(text: str, ctx: Context | None = None) -> bool:
    return yes_no(text, ctx)



_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_MAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")


def server_name(text: str, what: str) -> str:
    """A host name or an IPv4 address."""
    t = text.strip()
    if _IPV4_LIKE.match(t):
        return str(parse_ipv4(t, what))
    if not _HOSTNAME_RE.match(t):
        raise Invalid(f"{t[:60]!r} is not a host name or IPv4 address for the {what}")
    return t


_IPV4_LIKE = re.compile(r"^[0-9.]+$")


def ntp_server(text: str, ctx: Context) -> str | None:
    if is_none(text) or not text.strip():
        return None
    return server_name(text, "NTP server")


def mail_to(text: str, ctx: Context) -> str | None:
    t = text.strip()
    if is_none(t) or not t:
        return None
    if not _MAIL_RE.match(t):
        raise Invalid(f"{t[:60]!r} is not an e-mail address (name@example.com)")
    return t


def smarthost(text: str, ctx: Context) -> str:
    if not text.strip():
        raise Invalid("give the mail relay that accepts mail for that address")
    return server_name(text, "mail relay")
