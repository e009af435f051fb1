"""Render the node's files from the jinja2 templates shipped beside this module.

``render(setup)`` returns the files to write, in the order they must be written: every file
first and ``/etc/twinbeat/cluster.toml`` last, because its existence marks the node as
configured. Rendering is pure; ``check(files)`` runs the supervisor's own validation over the
rendered cluster.toml and authkeys before anything touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from firstboot import model
from firstboot.model import Setup
from supervisor import dataservices as dsm
from supervisor import drbdconf
from supervisor.authkeys import parse_authkeys_text
from supervisor.config import ConfigError, dump, load_config
from supervisor.config.locator import KeyPath
from supervisor.settings import default

TEMPLATES = Path(__file__).resolve().parent / "templates"
CLUSTER_TOML = "/etc/twinbeat/cluster.toml"
TIMESYNCD_CONF = "/etc/systemd/timesyncd.conf.d/twinbeat.conf"
AUTHKEYS = "/etc/twinbeat/authkeys"
PUBLIC_NETWORK = "/etc/systemd/network/10-twinbeat-public.network"
CROSSOVER_NETWORK = "/etc/systemd/network/10-twinbeat-crossover.network"
DRBD_RES = "/etc/drbd.d/r0.res"
MARKER = "written by twinbeat-firstboot"


class RenderError(Exception):
    """The rendered files do not pass the supervisor's validation (a bug, never user input)."""


@dataclass(frozen=True)
class FileOut:
    path: str  # absolute, as on the appliance
    content: str
    mode: int = 0o644


def environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    return env


def cluster_toml(setup: Setup) -> str:
    """/etc/twinbeat/cluster.toml, written by the supervisor's own writer (its comments are
    the settings table's help), with the wizard's header and notes."""
    me, peer = setup.me, setup.peer
    links: list[dict[str, object]] = []
    if setup.serial_port:
        links.append({"type": "serial", "name": "serial", "device": f"/dev/{setup.serial_port}",
                      "baud": setup.baud})
    links.append({"type": "udp", "name": "crossover", "interface": setup.crossover_nic.name,
                  "peer": peer.crossover_address})
    if setup.public_heartbeat:
        links.append({"type": "udp", "name": "public", "interface": setup.public_nic.name,
                      "peer": peer.address})
    cluster: dict[str, object] = {"name": setup.cluster_name, "authkeys": AUTHKEYS,
                                  "auto_failback": True}
    if setup.gateway:
        cluster["ping_nodes"] = [setup.gateway]
    cluster["public_interface"] = setup.public_nic.name
    data: dict[str, object] = {
        "cluster": cluster,
        "timing": {"keepalive": model.KEEPALIVE, "warntime": model.WARNTIME,
                   "deadtime": model.DEADTIME, "initdead": model.INITDEAD},
        "watchdog": {"mode": "automatic"},
        "node": [{"name": n.name, "address": n.address, "crossover_address": n.crossover_address}
                 for n in setup.nodes],
        "link": links,
        "group": [{"name": model.GROUP_NAME, "preferred": setup.node1.name,
                   "resources": list(setup.resources)}],
    }
    if setup.disk is not None and setup.database:
        group = data["group"][0]  # type: ignore[index]
        group["start_timeout"] = "300s"
    notes: dict[KeyPath, str] = {
        ("timing",): (
            f"The wizard's timing: a beat every {model.KEEPALIVE} on each link; the peer is dead "
            f"after {model.DEADTIME} of silence on every link (ten missed beats, enough for a "
            f"busy node's scheduling hiccups), late after {model.WARNTIME}. Right after start, "
            f"{model.INITDEAD}: time for the other node to finish booting."),
    }
    if setup.disk is not None and setup.database:
        notes[("group", 0)] = (
            "The database's first start initialises its cluster on the new replicated disk "
            "(initdb), slow on a slow machine (measured under QEMU without KVM on a busy "
            "2-core host: 41 to 122 s, then the server's own start): each resource of the "
            "group may take 5 minutes to start.")
    if setup.disk is not None:
        data["replicated"] = [{
            "name": model.DRBD_RESOURCE,
            "disk": setup.disk.path,
            "minor": model.DRBD_MINOR,
            "port": model.DRBD_PORT,
            "protocol": default("replicated", "protocol"),
            "resync_rate": default("replicated", "resync_rate"),
            "filesystem": model.FILESYSTEM,
            "mount_point": model.MOUNT_POINT,
            "split_brain": default("replicated", "split_brain"),
        }]
        notes[("replicated", 0)] = (
            f"{setup.disk.path} is mirrored as {model.DRBD_DEVICE}, mounted on "
            f"{model.MOUNT_POINT} where the group runs.")
    if setup.mail_to:
        data["notify"] = {"mail_to": [setup.mail_to], "smarthost": setup.smarthost,
                          "smtp_security": "starttls", "min_severity": "warning"}
        notes[("notify",)] = (
            "The wizard's alert mail. A login: smtp_user = \"...\" and smtp_password_file = "
            "\"/etc/twinbeat/smtp-password\" (mode 0600).")
    header = (
        f"/etc/twinbeat/cluster.toml: written by twinbeat-firstboot on {me.name} "
        f"({setup.role}).\n"
        "Check it with `twinbeat check-config`; change it with `twinbeat-firstboot "
        "--reconfigure`.\n"
        "Both nodes hold the same cluster name, nodes and group; only the links' interfaces "
        "and\n"
        "peers (and the replicated disk's path) differ. Fingerprint of the shared part: "
        f"{setup.fingerprint()}"
    )
    return dump(data, header=header, notes=notes)


def render(setup: Setup, templates: Path = TEMPLATES, *, salt: bytes = b"") -> list[FileOut]:
    """The node's files. With a disk, /etc/drbd.d/r0.res is rendered by the supervisor's own
    renderer (supervisor.drbdconf) from the rendered cluster.toml, so the two agree the way
    twinbeat checks at start. No global DRBD file: drbd-utils' own global_common.conf already
    says ``usage-count no`` on Debian, and its drbdadm-84 (which drives the kernel's 8.4
    module) parses it. With a disk, the data services' files (services.toml, smb.conf,
    exports, nfs.conf.d, PostgreSQL's conf.d and pg_hba.conf: supervisor.dataservices) come
    first; ``salt`` salts the database password's SCRAM verifier."""
    env = environment(templates)

    def one(template: str, **extra: object) -> str:
        return env.get_template(template).render(setup=setup, **extra)

    files = [
        FileOut(f.path, f.content, f.mode) for f in data_files(setup, salt)
    ] + [
        FileOut("/etc/hostname", one("hostname.j2")),
        FileOut("/etc/hosts", one("hosts.j2")),
        FileOut(
            PUBLIC_NETWORK,
            one("network.j2", path=PUBLIC_NETWORK, purpose="public", nic=setup.public_nic,
                address=setup.public, public=True),
        ),
        FileOut(
            CROSSOVER_NETWORK,
            one("network.j2", path=CROSSOVER_NETWORK, purpose="crossover",
                nic=setup.crossover_nic, address=setup.crossover, public=False),
        ),
    ]
    text = cluster_toml(setup)
    if setup.ntp_server:
        files.append(FileOut(TIMESYNCD_CONF, one("timesyncd.conf.j2")))
    if setup.disk is not None:
        files.append(FileOut(DRBD_RES, drbd_resource_file(text)))
    files.append(FileOut(AUTHKEYS, one("authkeys.j2"), 0o600))
    files.append(FileOut(CLUSTER_TOML, text))
    return files


def data_files(setup: Setup, salt: bytes) -> list[dsm.Rendered]:
    """The data services' files; none without a replicated disk or without a data service."""
    if setup.disk is None or not (setup.file_share or setup.database):
        return []
    return dsm.render_all(model.data_services(setup, salt))


def drbd_resource_file(cluster_toml: str) -> str:
    """/etc/drbd.d/r0.res as the supervisor renders it from this cluster.toml."""
    try:
        config = load_config(CLUSTER_TOML, text=cluster_toml, check_devices=False,
                             check_authkeys=False)
    except ConfigError as exc:
        raise RenderError(f"cluster.toml does not validate:\n{exc}") from None
    (replicated,) = config.replicated
    if str(drbdconf.resource_path(replicated)) != DRBD_RES:
        raise RenderError(f"the replicated disk's file is not {DRBD_RES}")
    return drbdconf.render_resource(config, replicated)


def check(files: list[FileOut]) -> None:
    by_path = {f.path: f for f in files}
    if files[-1].path != CLUSTER_TOML:
        raise RenderError("cluster.toml must be the last file written")
    try:
        key = parse_authkeys_text(by_path[AUTHKEYS].content)
    except ValueError as exc:
        raise RenderError(f"authkeys: {exc}") from None
    if key.method != "sha256" or not key.secret:
        raise RenderError("authkeys must hold a sha256 key")
    try:
        load_config(
            CLUSTER_TOML,
            text=by_path[CLUSTER_TOML].content,
            check_devices=False,
            check_authkeys=False,
        )
    except ConfigError as exc:
        raise RenderError(f"cluster.toml does not validate:\n{exc}") from None
