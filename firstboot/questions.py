"""The wizard's questions, in order: prompt, one-line explanation, default and validator.

The same table drives the console (wizard.py) and the seed (seed.py): a seed key is the
question's ``key``, and a missing key takes the default exactly as pressing Enter would.

One module on purpose (over 500 lines; the QUESTIONS table is ~270 of them): the table is read
top to bottom in the order the wizard asks, and each row's default and condition are the small
functions above it; split, a question and the rule that fills its default would live apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from firstboot import validate as v
from firstboot import validate_services as vs
from firstboot.validate import Context, NeedsEarlier

DEFAULT_CLUSTER = "twinbeat"
DEFAULT_BAUD = 115200
_PUBLIC_DEFAULT = {"node1": "192.168.85.1/24", "node2": "192.168.85.2/24"}
_CROSSOVER_NETS = ("10.0.0.0/24", "172.16.0.0/24", "192.168.254.0/24")


def _always(ctx: Context) -> bool:
    return True


def _no_lines(ctx: Context) -> list[str]:
    return []


def _no_warnings(value: Any, ctx: Context) -> list[str]:
    return []


def _const(text: str) -> Callable[[Context], str]:
    return lambda ctx: text


@dataclass(frozen=True)
class Question:
    key: str
    label: Callable[[Context], str]
    explain: Callable[[Context], str]
    validate: Callable[[str, Context], Any]
    default: Callable[[Context], str | None]
    listing: Callable[[Context], list[str]] = _no_lines
    warnings: Callable[[Any, Context], list[str]] = _no_warnings
    ask_if: Callable[[Context], bool] = _always
    hidden: bool = False
    interactive: bool = True  # False: a seed-only key
    #: hidden answers: what the wizard asks to type again, and whether the bracket shows
    #: what Enter means (keep / none); the services' passwords have no default
    repeat_label: str = "Repeat the root password"
    show_hidden_default: bool = True


def default_for(q: Question, ctx: Context) -> str | None:
    """The default shown in brackets: an earlier answer if there is one, else the table's."""
    if q.key in ctx.previous:
        return ctx.previous[q.key]
    return q.default(ctx)


def should_ask(q: Question, ctx: Context) -> bool:
    try:
        return q.ask_if(ctx)
    except NeedsEarlier:
        return False


# --------------------------------------------------------------------------------------------
# Defaults


def _other_role(role: str) -> str:
    return "node2" if role == "node1" else "node1"


def _d_peer_hostname(ctx: Context) -> str:
    role = str(ctx.need("role"))
    own = str(ctx.need("hostname"))
    mine, theirs = role[-1], _other_role(role)[-1]
    candidates = []
    if own.endswith(mine):
        candidates.append(own[:-1] + theirs)
    candidates += [_other_role(role), own + "-peer"]
    return next(c for c in candidates if c.lower() != own.lower())


def _d_public_interface(ctx: Context) -> str | None:
    up = [n for n in ctx.hw.nics if n.carrier]
    pool = up or list(ctx.hw.nics)
    return pool[0].name if pool else None


def _hosts_from(net: IPv4Network, start: IPv4Address, step: int) -> list[IPv4Address]:
    """Host addresses of net from start, walking by step, at most 256 of them."""
    out: list[IPv4Address] = []
    addr = int(start)
    for _ in range(256):
        addr += step
        a = IPv4Address(addr) if 0 <= addr < 2**32 else None
        if a is None or a not in net:
            break
        if net.prefixlen <= 30 and a in (net.network_address, net.broadcast_address):
            continue
        out.append(a)
    return out


def _d_gateway(ctx: Context) -> str:
    own: IPv4Interface = ctx.need("public_address")
    net = own.network
    for cand in (net.broadcast_address - 1, net.network_address + 1):
        if cand != own.ip and cand in net:
            return str(cand)
    return "none"


def _d_dns(ctx: Context) -> str:
    gw = ctx.need("gateway")
    return str(gw) if gw is not None else "none"


def _d_crossover_interface(ctx: Context) -> str | None:
    public = ctx.need("public_interface")
    return next((n.name for n in ctx.hw.nics if n.name != public), None)


def _d_crossover_address(ctx: Context) -> str | None:
    public: IPv4Interface = ctx.need("public_address")
    index = 1 if ctx.need("role") == "node1" else 2
    for text in _CROSSOVER_NETS:
        net = IPv4Network(text)
        if not net.overlaps(public.network):
            return f"{net.network_address + index}/{net.prefixlen}"
    return None


def _d_peer_address(own: IPv4Interface, role: str, avoid: set[IPv4Address]) -> str | None:
    step = 1 if role == "node1" else -1
    for cand in _hosts_from(own.network, own.ip, step) + _hosts_from(own.network, own.ip, -step):
        if cand not in avoid and cand != own.ip:
            return str(cand)
    return None


def _d_peer_public(ctx: Context) -> str | None:
    gw = ctx.need("gateway")
    return _d_peer_address(ctx.need("public_address"), ctx.need("role"), {gw} if gw else set())


def _d_peer_crossover(ctx: Context) -> str | None:
    return _d_peer_address(ctx.need("crossover_address"), ctx.need("role"), set())


def _d_floating(ctx: Context) -> str | None:
    own: IPv4Interface = ctx.need("public_address")
    peer: IPv4Address = ctx.need("peer_public_address")
    gw = ctx.need("gateway")
    start = max(own.ip, peer)
    for cand in _hosts_from(own.network, start, 1) + _hosts_from(own.network, start, -1):
        if cand not in (own.ip, peer, gw):
            return str(cand)
    return None


def _d_serial(ctx: Context) -> str:
    ports = ctx.hw.serial_ports
    free = [p for p in ports if not p.is_console]
    return (free or list(ports))[0].name if ports else "none"


def _d_disk(ctx: Context) -> str:
    blank = [d for d in ctx.hw.free_disks if d.contents is None and not d.removable]
    return blank[0].name if blank else "none"


def _d_secret(ctx: Context) -> str | None:
    return ctx.generated_code if ctx.need("role") == "node1" else None


# --------------------------------------------------------------------------------------------
# Listings shown under the explanation


def _list_nics(ctx: Context) -> list[str]:
    if not ctx.hw.nics:
        return ["(no network card found)"]
    return [n.describe() for n in ctx.hw.nics]


def _list_serial(ctx: Context) -> list[str]:
    if not ctx.hw.serial_ports:
        return ["(no serial port found)"]
    return [p.describe() for p in ctx.hw.serial_ports]


def _list_disks(ctx: Context) -> list[str]:
    lines = [d.describe() for d in ctx.hw.free_disks]
    if not lines:
        lines.append("(no disk besides the system disk)")
    for d in ctx.hw.disks:
        if d.in_use is not None:
            lines.append(f"{d.name:<8} {d.in_use}: not offered")
    return lines


def _list_services(ctx: Context) -> list[str]:
    offered = ctx.hw.offered_services
    if not offered:
        return ["(no installable service found)"]
    lines: list[str] = []
    line = "installed:"
    for name in offered:
        if len(line) + len(name) + 1 > 76:
            lines.append(line)
            line = "          "
        line += " " + name
    lines.append(line)
    return lines


def _data_explain(what: str, choice: str) -> Callable[[Context], str]:
    def explain(ctx: Context) -> str:
        if ctx.answers.get("disk") is None:
            return f"{what} needs the replicated disk, and no disk was chosen: answer none."
        return f"{what} on the replicated disk ({choice}; 'none' for none)."
    return explain


def _asked_share(ctx: Context) -> bool:
    return bool(ctx.need("file_share"))


def _d_nfs_clients(ctx: Context) -> str:
    return str(ctx.need("public_address").network)


def _secret_label(ctx: Context) -> str:
    if ctx.answers.get("role") == "node2":
        return "Shared secret code from node1"
    return "Shared secret code"


def _secret_explain(ctx: Context) -> str:
    if ctx.answers.get("role") == "node2":
        return "Type the code node1 showed (six groups of four; dashes are optional)."
    return "node2 needs this code: write it down and type it there (Enter keeps it)."


def _public_is(ctx: Context) -> str:
    nic = ctx.need("public_interface")
    return f"Heartbeats use serial and crossover; the public LAN ({nic}) is a third path."


# --------------------------------------------------------------------------------------------
# The table

QUESTIONS: tuple[Question, ...] = (
    Question(
        "role",
        _const("Role (node1 or node2)"),
        _const("node1 is the preferred owner of the service; node2 takes over when it fails."),
        v.role,
        _const("node1"),
    ),
    Question(
        "hostname",
        _const("Hostname of this node"),
        _const("This node's name on the network and in the cluster (letters, digits, '-')."),
        v.hostname,
        lambda ctx: str(ctx.need("role")),
    ),
    Question(
        "peer_hostname",
        _const("Hostname of the peer node"),
        _const("The other node's name: type the same two names on both nodes."),
        v.peer_hostname,
        _d_peer_hostname,
    ),
    Question(
        "cluster_name",
        _const("Cluster name"),
        _const("A name for the pair; both nodes must use the same one."),
        v.cluster_name,
        _const(DEFAULT_CLUSTER),
    ),
    Question(
        "public_interface",
        _const("Public interface"),
        _const("The network card on the LAN that clients use. Cards found:"),
        v.public_interface,
        _d_public_interface,
        listing=_list_nics,
    ),
    Question(
        "public_address",
        _const("Public address/prefix"),
        _const("This node's own address on the public LAN, as ADDRESS/PREFIX."),
        v.public_address,
        lambda ctx: _PUBLIC_DEFAULT[ctx.need("role")],
    ),
    Question(
        "gateway",
        _const("Gateway ('none' for no gateway)"),
        _const("The LAN's router; twinbeat pings it to know this node can reach the world."),
        v.gateway,
        _d_gateway,
    ),
    Question(
        "dns",
        _const("DNS servers ('none' for none)"),
        _const("Name servers for this node, separated by spaces."),
        v.dns,
        _d_dns,
    ),
    Question(
        "crossover_interface",
        _const("Crossover interface"),
        _const("The card cabled straight to the peer (crossover cable), for heartbeats:"),
        v.crossover_interface,
        _d_crossover_interface,
        listing=_list_nics,
    ),
    Question(
        "crossover_address",
        _const("Crossover address/prefix"),
        _const("This node's address on the crossover link, in a private subnet of its own."),
        v.crossover_address,
        _d_crossover_address,
    ),
    Question(
        "peer_public_address",
        _const("Peer's public address"),
        _const("The other node's own address on the public LAN."),
        v.peer_public_address,
        _d_peer_public,
    ),
    Question(
        "peer_crossover_address",
        _const("Peer's crossover address"),
        _const("The other node's address on the crossover link."),
        v.peer_crossover_address,
        _d_peer_crossover,
    ),
    Question(
        "public_heartbeat",
        _const("Heartbeats over the public LAN too? (yes/no)"),
        _public_is,
        v.yes_no,
        _const("yes"),
    ),
    Question(
        "floating_addresses",
        _const("Floating address(es)"),
        _const("The service address clients use; it moves to the node that runs the service."),
        v.floating_addresses,
        _d_floating,
    ),
    Question(
        "serial_port",
        _const("Null-modem serial port ('none' for none)"),
        _const("The port of the null-modem cable to the peer. Ports found:"),
        v.serial_port,
        _d_serial,
        listing=_list_serial,
        warnings=v.serial_port_warnings,
    ),
    Question(
        "baud",
        _const("Serial baud rate"),
        _const("The speed of the serial link; both ends must use the same."),
        v.baud,
        _const(str(DEFAULT_BAUD)),
        ask_if=lambda ctx: ctx.need("serial_port") is not None,
    ),
    Question(
        "disk",
        _const("Disk to replicate ('none' for none)"),
        _const("A disk mirrored to the peer (DRBD), mounted on /srv; same choice on both:"),
        v.disk,
        _d_disk,
        listing=_list_disks,
        warnings=v.disk_warnings,
    ),
    Question(
        "secret",
        _secret_label,
        _secret_explain,
        v.secret_code,
        _d_secret,
    ),
    Question(
        "file_share",
        _const("File share (smb, nfs, both or none)"),
        _data_explain("A file share", "smb for Windows and macOS, nfs for Linux, or both"),
        vs.file_share,
        _const("none"),
    ),
    Question(
        "share_name",
        _const("Share name"),
        _const("The share's name as clients see it: \\\\ADDRESS\\NAME, ADDRESS:/srv/shares/NAME."),
        vs.share_name,
        _const("data"),
        ask_if=_asked_share,
    ),
    Question(
        "share_user",
        _const("Share user"),
        _const("The user who owns the share's files; SMB clients log in as this user."),
        vs.share_user,
        _const("share"),
        ask_if=_asked_share,
    ),
    Question(
        "share_password",
        _const("Share user's SMB password"),
        _const("The password SMB clients log in with (hidden; 8 characters or more)."),
        vs.share_password,
        _const(""),
        ask_if=lambda ctx: "smb" in ctx.need("file_share"),
        hidden=True,
        repeat_label="Repeat the share password",
        show_hidden_default=False,
    ),
    Question(
        "nfs_clients",
        _const("NFS clients (a network)"),
        _const("The network whose machines may mount the share over NFS."),
        vs.nfs_clients,
        _d_nfs_clients,
        ask_if=lambda ctx: "nfs" in ctx.need("file_share"),
    ),
    Question(
        "database",
        _const("PostgreSQL database ('none' for none)"),
        _data_explain("A PostgreSQL database", "its name"),
        vs.database,
        _const("none"),
    ),
    Question(
        "database_owner",
        _const("Database owner"),
        _const("The role that owns the database; clients log in as it with a password."),
        vs.database_owner,
        lambda ctx: str(ctx.need("database")),
        ask_if=lambda ctx: ctx.need("database") is not None,
    ),
    Question(
        "database_password",
        _const("Database owner's password"),
        _const("The password the owner logs in with (hidden; 8 characters or more)."),
        vs.database_password,
        _const(""),
        ask_if=lambda ctx: ctx.need("database") is not None,
        hidden=True,
        repeat_label="Repeat the database password",
        show_hidden_default=False,
    ),
    Question(
        "services",
        _const("Services to own ('none' for none)"),
        _const("Services the cluster starts, in this order, on the node that owns it."),
        v.services,
        _const("none"),
        listing=_list_services,
    ),
    Question(
        "root_password",
        _const("Root password"),
        _const("Root's password for console logins (hidden; Enter for none, then give a key)."),
        v.root_password,
        _const(""),
        hidden=True,
    ),
    Question(
        "root_password_hash",
        _const("Root password hash"),
        _const("A crypt(3) hash for root, e.g. from `openssl passwd -6`."),
        v.root_password_hash,
        _const(""),
        interactive=False,
    ),
    Question(
        "ssh_key",
        _const("SSH public key for root ('none' for none)"),
        _const("A public key for root's SSH logins: paste one line of your id_*.pub file."),
        v.ssh_key,
        _const("none"),
    ),
    Question(
        "ntp_server",
        _const("NTP server ('none' for none)"),
        _const("Both nodes set their clocks from it (systemd-timesyncd), so their event "
               "histories line up."),
        v.ntp_server,
        lambda ctx: str(ctx.need("gateway")) if ctx.need("gateway") else "none",
    ),
    Question(
        "mail_to",
        _const("E-mail for alerts ('none' for none)"),
        _const("This address gets a mail when the pair fails over or degrades (a peer or a "
               "link lost, a group failed)."),
        v.mail_to,
        _const("none"),
    ),
    Question(
        "smarthost",
        _const("Mail relay (smarthost)"),
        _const("The SMTP server that accepts that mail, on port 587 with STARTTLS (a login: "
               "edit [notify] in cluster.toml)."),
        v.smarthost,
        lambda ctx: None,
        ask_if=lambda ctx: ctx.need("mail_to") is not None,
    ),
)

BY_KEY = {q.key: q for q in QUESTIONS}
REPEAT_PASSWORD_LABEL = "Repeat the root password"
CONFIRM_LABEL = "Write this configuration? (yes/no)"


def display_default(q: Question, default: str | None, ctx: Context) -> str | None:
    if not q.hidden:
        return default
    if not q.show_hidden_default:
        return None
    return "keep" if default or ctx.root_login_set else "none"


def prompt_text(q: Question, ctx: Context) -> str:
    default = display_default(q, default_for(q, ctx), ctx)
    label = q.label(ctx)
    return f"{label} [{default}]: " if default is not None else f"{label}: "
