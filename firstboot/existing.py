"""The answers behind an existing configuration, as defaults for ``--reconfigure``.

Best effort: whatever cannot be read is simply not a default (the table's default applies).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from firstboot.render import (
    AUTHKEYS,
    CLUSTER_TOML,
    CROSSOVER_NETWORK,
    DRBD_RES,
    PUBLIC_NETWORK,
    TIMESYNCD_CONF,
)
from firstboot.secret import parse_code
from supervisor import dataservices as dsm
from supervisor.authkeys import parse_authkeys_text
from supervisor.resource_spec import IPaddrSpec, ResourceSpecError, ServiceSpec, parse_resource


def _read(root: Path, path: str) -> str:
    try:
        return (root / path.lstrip("/")).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _network_values(text: str, key: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{key}=(.*)$", text, re.MULTILINE)]


def previous_answers(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        data: dict[str, Any] = tomllib.loads(_read(root, CLUSTER_TOML))
    except tomllib.TOMLDecodeError:
        data = {}
    me = _read(root, "/etc/hostname").strip()
    nodes = [n for n in data.get("node", []) if isinstance(n, dict)]
    groups = [g for g in data.get("group", []) if isinstance(g, dict)]
    links = [li for li in data.get("link", []) if isinstance(li, dict)]
    cluster = data.get("cluster", {}) if isinstance(data.get("cluster"), dict) else {}
    mine = next((n for n in nodes if n.get("name") == me), None)
    peer = next((n for n in nodes if n.get("name") != me), None)
    if mine and peer:
        out["hostname"] = str(mine["name"])
        out["peer_hostname"] = str(peer.get("name", ""))
        out["peer_public_address"] = str(peer.get("address", ""))
        out["peer_crossover_address"] = str(peer.get("crossover_address", ""))
        if groups:
            out["role"] = "node1" if groups[0].get("preferred") == me else "node2"
    if "name" in cluster:
        out["cluster_name"] = str(cluster["name"])
    if "public_interface" in cluster:
        out["public_interface"] = str(cluster["public_interface"])
    for link in links:
        if link.get("type") == "serial":
            out["serial_port"] = str(link.get("device", "")).removeprefix("/dev/")
            out["baud"] = str(link.get("baud", ""))
        elif link.get("name") == "crossover":
            out["crossover_interface"] = str(link.get("interface", ""))
    if links:
        if not any(li.get("type") == "serial" for li in links):
            out["serial_port"] = "none"
        out["public_heartbeat"] = "yes" if any(li.get("name") == "public" for li in links) else "no"
    public = _read(root, PUBLIC_NETWORK)
    if public:
        for key, answer in (("Address", "public_address"), ("Gateway", "gateway")):
            values = _network_values(public, key)
            if values:
                out[answer] = values[0]
        if "public_address" in out and not _network_values(public, "Gateway"):
            out["gateway"] = "none"
        out["dns"] = " ".join(_network_values(public, "DNS")) or "none"
    crossover = _read(root, CROSSOVER_NETWORK)
    values = _network_values(crossover, "Address")
    if values:
        out["crossover_address"] = values[0]
    data_units: tuple[str, ...] = ()
    services_text = _read(root, dsm.SERVICES_FILE)
    try:
        ds = dsm.load_text(services_text) if services_text else None
    except dsm.ServicesError:
        ds = None
    if ds is not None:  # the passwords are not kept: --reconfigure asks for them again
        data_units = ds.units()
        share = ds.share
        out["file_share"] = " ".join(p for p, on in (("smb", ds.smb), ("nfs", ds.nfs))
                                     if on) or "none"
        if share is not None:
            out["share_name"] = share.name
            out["share_user"] = share.user.name
            if share.nfs:
                out["nfs_clients"] = share.nfs_clients
        out["database"] = ds.database.name if ds.database else "none"
        if ds.database is not None:
            out["database_owner"] = ds.database.owner
    if groups:
        floating, services = [], []
        for text in groups[0].get("resources", []):
            try:
                spec = parse_resource(str(text))
            except ResourceSpecError:
                continue
            if isinstance(spec, IPaddrSpec):
                floating.append(str(spec.address))
            elif (isinstance(spec, ServiceSpec) and spec.name.endswith(".service")
                  and spec.name not in data_units):
                services.append(spec.name)
        if floating:
            out["floating_addresses"] = " ".join(floating)
        out["services"] = " ".join(services) or "none"
    replicated = [r for r in data.get("replicated", []) if isinstance(r, dict)]
    disk = str(replicated[0].get("disk", "")) if replicated else ""
    if not disk.startswith("/dev/"):  # written before [[replicated]] existed: the .res says
        m = re.search(r"^\s*disk\s+(/dev/\S+);", _read(root, DRBD_RES), re.MULTILINE)
        disk = m.group(1) if m else ""
    out["disk"] = disk.removeprefix("/dev/") or "none"
    notify = data.get("notify", {}) if isinstance(data.get("notify"), dict) else {}
    mail_to = notify.get("mail_to")
    if isinstance(mail_to, list) and mail_to and isinstance(mail_to[0], str):
        out["mail_to"] = mail_to[0]
        if isinstance(notify.get("smarthost"), str):
            out["smarthost"] = notify["smarthost"]
    elif data:
        out["mail_to"] = "none"
    ntp = _network_values(_read(root, TIMESYNCD_CONF), "NTP")
    if ntp:
        out["ntp_server"] = ntp[0]
    elif data:
        out["ntp_server"] = "none"
    try:
        authkey = parse_authkeys_text(_read(root, AUTHKEYS))
        if authkey.method == "sha256":
            out["secret"] = parse_code(authkey.secret.decode())
    except ValueError:  # no key file, or not one the wizard wrote: no default
        pass
    return {k: v for k, v in out.items() if v}


def root_login_set(root: Path) -> bool:
    """Whether root already has a password hash or an authorized SSH key."""
    for line in _read(root, "/etc/shadow").splitlines():
        if line.startswith("root:"):
            field = line.split(":")[1] if ":" in line else ""
            if field.startswith("$"):
                return True
    keys = _read(root, "/root/.ssh/authorized_keys")
    return any(line.strip() and not line.startswith("#") for line in keys.splitlines())
