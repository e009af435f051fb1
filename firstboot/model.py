"""The validated answers as one typed value (Setup), its summary and its fingerprint.

Pure: building a Setup reads only the answers and the hardware that was discovered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from firstboot.accounts import Account
from firstboot.hardware import Disk, Hardware, Nic, format_size
from firstboot.passwords import nt_hash, scram_sha256
from firstboot.secret import ALPHABET
from supervisor import dataservices as dsm

GROUP_NAME = "service"
# The replicated disk's [[replicated]] table; the rest of it takes the supervisor's defaults,
# written out in cluster.toml (render.cluster_toml) so that users see them.
DRBD_RESOURCE = "r0"
DRBD_MINOR = 0
DRBD_DEVICE = f"/dev/drbd{DRBD_MINOR}"
DRBD_PORT = 7788
MOUNT_POINT = "/srv"
FILESYSTEM = "ext4"

# Heartbeat timing (render.cluster_toml writes the reasoning into cluster.toml).
KEEPALIVE = "200ms"
WARNTIME = "600ms"
DEADTIME = "2s"
INITDEAD = "20s"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    address: IPv4Address
    crossover_address: IPv4Address


@dataclass(frozen=True)
class Setup:
    role: str
    cluster_name: str
    me: NodeInfo
    peer: NodeInfo
    public_nic: Nic
    public: IPv4Interface
    gateway: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    crossover_nic: Nic
    crossover: IPv4Interface
    public_heartbeat: bool
    floating: tuple[IPv4Address, ...]
    serial_port: str | None
    baud: int
    disk: Disk | None
    secret: str
    services: tuple[str, ...]
    root_password: str | None
    root_password_hash: str | None
    ssh_key: str | None
    ntp_server: str | None = None
    mail_to: str | None = None
    smarthost: str | None = None
    # The data services on the replicated disk (supervisor.dataservices): a file share over
    # SMB and/or NFS, a PostgreSQL database. Passwords in clear until the files are rendered
    # (only their hashes are written).
    file_share: tuple[str, ...] = ()
    share_name: str | None = None
    share_user: str | None = None
    share_password: str | None = None
    nfs_clients: str | None = None
    database: str | None = None
    database_owner: str | None = None
    database_password: str | None = None

    @property
    def node1(self) -> NodeInfo:
        return self.me if self.role == "node1" else self.peer

    @property
    def node2(self) -> NodeInfo:
        return self.peer if self.role == "node1" else self.me

    @property
    def nodes(self) -> tuple[NodeInfo, NodeInfo]:
        return (self.node1, self.node2)

    @property
    def data_units(self) -> tuple[str, ...]:
        """The data services' units, in the order the group starts them."""
        return data_services(self, b"").units() if self.disk is not None else ()

    @property
    def resources(self) -> tuple[str, ...]:
        prefix = self.public.network.prefixlen
        out = [f"IPaddr::{a}/{prefix}/{self.public_nic.name}" for a in self.floating]
        if self.disk is not None:
            out.append(f"drbddisk::{DRBD_RESOURCE}")
            out.append(f"Filesystem::{DRBD_DEVICE}::{MOUNT_POINT}::{FILESYSTEM}")
        out.extend(self.data_units)
        out.extend(s for s in self.services if s not in self.data_units)
        return tuple(out)

    def shared_data(self) -> dict[str, object]:
        """What both nodes must agree on about the data services (no passwords)."""
        return {
            "share": [self.share_name, list(self.file_share), self.share_user,
                      self.nfs_clients] if self.file_share else None,
            "database": [self.database, self.database_owner] if self.database else None,
        }

    def fingerprint(self) -> str:
        """A short digest of what both nodes must agree on, shown in both summaries."""
        shared = {
            "cluster": self.cluster_name,
            "nodes": [[n.name, str(n.address), str(n.crossover_address)] for n in self.nodes],
            "prefix": self.public.network.prefixlen,
            "floating": [str(a) for a in self.floating],
            "replicated": self.disk is not None,
            "services": list(self.services),
            "public_heartbeat": self.public_heartbeat,
            "serial": self.serial_port is not None,
            "baud": self.baud if self.serial_port is not None else None,
            "secret": self.secret,
        }
        if self.file_share or self.database:  # (a pair without them keeps its fingerprint)
            shared["data"] = self.shared_data()
        digest = hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).digest()
        bits = int.from_bytes(digest[:5], "big")
        chars = "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in range(8))
        return f"{chars[:4]}-{chars[4:]}"


def data_services(s: Setup, salt: bytes) -> dsm.DataServices:
    """The data services of this setup (supervisor.dataservices); ``salt`` salts the
    database password's SCRAM verifier."""
    share = None
    if s.file_share and s.share_name and s.share_user:
        smb = "smb" in s.file_share
        share = dsm.FileShare(
            name=s.share_name,
            user=dsm.ShareUser(s.share_user, dsm.SHARE_UID,
                               nt_hash(s.share_password or "") if smb else ""),
            smb=smb, nfs="nfs" in s.file_share, nfs_clients=s.nfs_clients or "")
    database = None
    if s.database and s.database_owner:
        database = dsm.Database(s.database, s.database_owner,
                                scram_sha256(s.database_password or "", salt),
                                str(s.public.network))
    return dsm.DataServices(MOUNT_POINT, dsm.netbios_name(s.cluster_name), share, database)


def share_account(s: Setup) -> Account | None:
    """The file share's Unix account, when the setup has a file share."""
    if s.disk is None or not s.file_share or not s.share_user:
        return None
    return Account(s.share_user, dsm.SHARE_UID, dsm.SHARE_UID)


def build_setup(answers: Mapping[str, Any], hw: Hardware) -> Setup:
    """Assemble the Setup from validated answers (KeyError if one is missing)."""
    public_nic = hw.nic(answers["public_interface"])
    crossover_nic = hw.nic(answers["crossover_interface"])
    if public_nic is None or crossover_nic is None:
        raise KeyError("interface")
    disk = hw.disk(answers["disk"]) if answers.get("disk") else None
    public: IPv4Interface = answers["public_address"]
    crossover: IPv4Interface = answers["crossover_address"]
    return Setup(
        role=answers["role"],
        cluster_name=answers["cluster_name"],
        me=NodeInfo(answers["hostname"], public.ip, crossover.ip),
        peer=NodeInfo(
            answers["peer_hostname"],
            answers["peer_public_address"],
            answers["peer_crossover_address"],
        ),
        public_nic=public_nic,
        public=public,
        gateway=answers["gateway"],
        dns=answers["dns"],
        crossover_nic=crossover_nic,
        crossover=crossover,
        public_heartbeat=answers["public_heartbeat"],
        floating=answers["floating_addresses"],
        serial_port=answers.get("serial_port"),
        baud=answers.get("baud") or 115200,
        disk=disk,
        secret=answers["secret"],
        services=answers["services"],
        root_password=answers.get("root_password"),
        root_password_hash=answers.get("root_password_hash"),
        ssh_key=answers.get("ssh_key"),
        ntp_server=answers.get("ntp_server"),
        mail_to=answers.get("mail_to"),
        smarthost=answers.get("smarthost"),
        file_share=answers.get("file_share") or (),
        share_name=answers.get("share_name"),
        share_user=answers.get("share_user"),
        share_password=answers.get("share_password"),
        nfs_clients=answers.get("nfs_clients"),
        database=answers.get("database"),
        database_owner=answers.get("database_owner"),
        database_password=answers.get("database_password"),
    )


def heartbeat_paths(s: Setup) -> list[str]:
    out = []
    if s.serial_port:
        out.append(f"serial /dev/{s.serial_port} at {s.baud} baud")
    out.append(f"crossover {s.crossover_nic.name} -> {s.peer.crossover_address}")
    if s.public_heartbeat:
        out.append(f"public {s.public_nic.name} -> {s.peer.address}")
    return out


def summary_lines(s: Setup, *, root_login_set: bool = False) -> list[str]:
    """The summary shown before the confirmation (ASCII, lines under 80 columns)."""
    prefix = s.public.network.prefixlen
    lines = ["Summary"]

    def row(label: str, *values: str) -> None:
        for i, value in enumerate(values):
            lines.append(f"  {label if i == 0 else '':<14}{value}")

    row("role", s.role + (" (preferred owner of the service)" if s.role == "node1"
                          else " (takes over when node1 fails)"))
    row("this node", f"{s.me.name}: {s.me.address}, crossover {s.me.crossover_address}")
    row("peer node", f"{s.peer.name}: {s.peer.address}, crossover {s.peer.crossover_address}")
    row("cluster", s.cluster_name)
    row("public", f"{s.public_nic.name} ({s.public_nic.mac}) {s.public}")
    row("gateway", str(s.gateway) if s.gateway else "none")
    row("DNS", " ".join(map(str, s.dns)) or "none")
    row("NTP", s.ntp_server or "none")
    row("crossover", f"{s.crossover_nic.name} ({s.crossover_nic.mac}) {s.crossover}")
    row("heartbeats", *heartbeat_paths(s))
    row("floating", *(f"{a}/{prefix} on {s.public_nic.name}" for a in s.floating))
    if s.disk is not None:
        row("replicated", f"{s.disk.path} ({format_size(s.disk.size_bytes)}) as {DRBD_DEVICE} "
                          f"on {MOUNT_POINT}")
    else:
        row("replicated", "none")
    if s.file_share:
        row("file share", f"{s.share_name} over {' and '.join(p.upper() for p in s.file_share)}"
                          f" in {MOUNT_POINT}/shares, owned by {s.share_user}",
            *([f"NFS clients {s.nfs_clients}"] if "nfs" in s.file_share else []))
    else:
        row("file share", "none")
    if s.database:
        row("database", f"PostgreSQL {dsm.PG_VERSION}: {s.database} owned by {s.database_owner}"
                        f", data in {MOUNT_POINT}/postgresql")
    else:
        row("database", "none")
    row("services", " ".join(s.resources[len(s.floating) + (2 if s.disk else 0):]) or "none")
    row("secret code", s.secret)
    access = []
    if s.root_password or s.root_password_hash:
        access.append("password set")
    if s.ssh_key:
        key = s.ssh_key.split(" ")
        access.append(f"SSH key {key[0]}" + (f" {key[2][:30]}" if len(key) > 2 else ""))
    if not access:
        access.append("unchanged" if root_login_set else "none")
    row("root login", ", ".join(access))
    row("alerts", f"mail to {s.mail_to} via {s.smarthost}" if s.mail_to else "none")
    row("fingerprint", f"{s.fingerprint()} (node1 and node2 must show the same)")
    if s.serial_port is None and not s.public_heartbeat:
        lines.append("  warning: one heartbeat path only: a cut cable will look like a dead peer")
    return lines
