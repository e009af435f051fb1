"""The data services a pair can serve from its replicated disk: Samba, NFS and PostgreSQL.

The image ships Debian's packages (``samba``, ``nfs-kernel-server``, ``postgresql`` 17), all
disabled at boot. The first-boot wizard describes what the pair serves in
``/etc/twinbeat/services.toml`` (mode 0600: it holds password hashes) and renders each
service's own configuration from it with this module, identically on both nodes:

==================  ======================================  ===================================
service             configuration (in /etc, on both nodes)  state (on the replicated disk)
==================  ======================================  ===================================
Samba (smbd)        ``/etc/samba/smb.conf``                 ``MP/samba/{private,state,cache}``
                                                            (passdb, secrets, share modes)
NFS kernel server   ``/etc/exports.d/twinbeat.exports``,    ``MP/nfs`` (``/var/lib/nfs``'s
                    ``/etc/nfs.conf.d/twinbeat.conf``       role: etab, rmtab, statd's sm/,
                                                            nfsdcld's client records)
PostgreSQL 17       ``/etc/postgresql/17/main/conf.d/``     ``MP/postgresql/17/main`` (the
                    ``twinbeat.conf``, ``pg_hba.conf``      data directory)
==================  ======================================  ===================================

MP is the replicated disk's mount point (``/srv``). The share itself is ``MP/shares/NAME``,
served over SMB and/or NFS. Each service's own mechanism points it at the replicated disk
(smb.conf's ``private dir``/``state directory``/``cache directory`` and ``passdb backend``;
nfs.conf's ``state-directory-path`` and ``storagedir``; postgresql.conf's
``data_directory``); nothing is copied between the nodes.

Before any of these daemons starts, ``twinbeat-prepare@SERVICE.service`` (required by each of
them through a drop-in shipped in the image) runs :func:`prepare` (``dataservices_prepare``):
it refuses unless MP is a mounted DRBD device (so a daemon never writes its state onto the
node's own disk), creates the state directories that are missing, and initialises what is
new: the PostgreSQL cluster (``initdb``, the owner role and the database) when the data
directory does not exist yet, which on a new pair happens once, on the node that formats
the replicated disk and runs the group first; the share user in Samba's passdb when it is
not there yet.

Acknowledged writes (with DRBD protocol C, "on stable storage" means on both disks):

* Samba ``strict sync = yes``: smbd honours a client's flush request with fsync before it
  answers; ``sync always = yes``: every write is fsync'ed before smbd answers it, so a write
  the client saw acknowledged survives the server's power loss even if the client never
  flushes (smbclient's ``put`` does not).
* NFS ``sync`` exports: the server answers a write (and a COMMIT) only after it reached
  stable storage; a client's fsync returns once its data was committed.
* PostgreSQL ``fsync = on``, ``synchronous_commit = on``, ``full_page_writes = on``: a COMMIT
  returns only after its WAL record was flushed.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass

SERVICES_FILE = "/etc/twinbeat/services.toml"
DEFAULT_MOUNT_POINT = "/srv"
MARKER = "written by twinbeat-firstboot"

PG_VERSION = "17"
PG_CLUSTER = "main"
PG_ETC = f"/etc/postgresql/{PG_VERSION}/{PG_CLUSTER}"
PG_BIN = f"/usr/lib/postgresql/{PG_VERSION}/bin"

SMB_UNIT = "smbd.service"
NFS_UNIT = "nfs-server.service"
PG_UNIT = f"postgresql@{PG_VERSION}-{PG_CLUSTER}.service"

SMB_CONF = "/etc/samba/smb.conf"
EXPORTS = "/etc/exports.d/twinbeat.exports"
NFS_CONF = "/etc/nfs.conf.d/twinbeat.conf"
PG_CONF = f"{PG_ETC}/conf.d/twinbeat.conf"
PG_HBA = f"{PG_ETC}/pg_hba.conf"

#: the share user's uid and gid: the same on both nodes, so files on the replicated disk
#: belong to the same user whichever node serves them (above Debian's dynamic range start)
SHARE_UID = 2000
#: the NFS export's file system id: the same on both nodes, so clients' file handles stay
#: valid across a failover (the heartbeat + DRBD NFS recipes' fsid=)
NFS_FSID = 1
#: NFSv4 lease and grace period (seconds, the kernel's minimum): after a failover, new
#: opens wait for the grace period while clients reclaim their state
NFS_LEASE = 10

SHARE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
USER_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Samba's own section names, and names that mean something to smb.conf
RESERVED_SHARES = frozenset({"global", "homes", "printers", "print$", "ipc$", "admin$"})
_NT_HASH_RE = re.compile(r"^[0-9A-F]{32}$")
_SCRAM_RE = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


class ServicesError(ValueError):
    """services.toml is not valid; the message says which key and why."""


@dataclass(frozen=True)
class ShareUser:
    """The share's user: a Unix account (no login) with the same uid on both nodes, and the
    NT hash of its SMB password (imported into Samba's passdb on the replicated disk once)."""

    name: str
    uid: int = SHARE_UID
    nt_hash: str = ""


@dataclass(frozen=True)
class FileShare:
    name: str
    user: ShareUser
    smb: bool = True
    nfs: bool = False
    #: the network whose clients may mount the NFS export
    nfs_clients: str = ""


@dataclass(frozen=True)
class Database:
    name: str
    owner: str
    #: the owner's password as a SCRAM-SHA-256 verifier (never the password itself)
    password: str
    #: the network whose clients may connect (pg_hba.conf)
    clients: str


@dataclass(frozen=True)
class DataServices:
    mount_point: str = DEFAULT_MOUNT_POINT
    #: the SMB server's name (the same on both nodes: clients see one server)
    server_name: str = "TWINBEAT"
    share: FileShare | None = None
    database: Database | None = None

    # -- where the state lives ---------------------------------------------------------------

    @property
    def samba_dir(self) -> str:
        return f"{self.mount_point}/samba"

    @property
    def samba_private(self) -> str:
        return f"{self.samba_dir}/private"

    @property
    def samba_state(self) -> str:
        return f"{self.samba_dir}/state"

    @property
    def samba_cache(self) -> str:
        return f"{self.samba_dir}/cache"

    @property
    def shares_dir(self) -> str:
        return f"{self.mount_point}/shares"

    def share_path(self, share: FileShare) -> str:
        return f"{self.shares_dir}/{share.name}"

    @property
    def nfs_state(self) -> str:
        return f"{self.mount_point}/nfs"

    @property
    def pg_data(self) -> str:
        return f"{self.mount_point}/postgresql/{PG_VERSION}/{PG_CLUSTER}"

    # -- what the group runs -------------------------------------------------------------------

    @property
    def smb(self) -> bool:
        return self.share is not None and self.share.smb

    @property
    def nfs(self) -> bool:
        return self.share is not None and self.share.nfs

    def units(self) -> tuple[str, ...]:
        """The units the group starts after the file system, in this order."""
        out = []
        if self.smb:
            out.append(SMB_UNIT)
        if self.nfs:
            out.append(NFS_UNIT)
        if self.database is not None:
            out.append(PG_UNIT)
        return tuple(out)

    def configured(self, service: str) -> bool:
        return {"samba": self.smb, "nfs": self.nfs,
                "postgresql": self.database is not None}.get(service, False)


SERVICES = ("samba", "nfs", "postgresql")


def netbios_name(cluster_name: str) -> str:
    """An SMB server name from the cluster name: upper case, at most 15 characters."""
    text = re.sub(r"[^A-Za-z0-9-]", "-", cluster_name).strip("-").upper()[:15]
    return text or "TWINBEAT"


# --------------------------------------------------------------------------------------------
# services.toml


def _q(text: str) -> str:
    """A TOML basic string (the values are validated: no control characters)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump(ds: DataServices) -> str:
    lines = [
        f"# {SERVICES_FILE}: {MARKER}; the same on both nodes.",
        "# What the pair serves from its replicated disk; each service's own configuration",
        "# (smb.conf, exports, postgresql.conf) is rendered from it. Mode 0600: it holds",
        "# the hashes of the share user's and the database owner's passwords.",
        f"mount_point = {_q(ds.mount_point)}",
        f"server_name = {_q(ds.server_name)}",
    ]
    if ds.share is not None:
        s = ds.share
        lines += [
            "", "[share]",
            f"name = {_q(s.name)}",
            f"smb = {'true' if s.smb else 'false'}",
            f"nfs = {'true' if s.nfs else 'false'}",
            f"nfs_clients = {_q(s.nfs_clients)}",
            f"user = {_q(s.user.name)}",
            f"uid = {s.user.uid}",
            "# the NT hash of the SMB password, imported into Samba's passdb once",
            f"nt_hash = {_q(s.user.nt_hash)}",
        ]
    if ds.database is not None:
        d = ds.database
        lines += [
            "", "[database]",
            f"name = {_q(d.name)}",
            f"owner = {_q(d.owner)}",
            "# the owner's password as a SCRAM-SHA-256 verifier, set when the cluster is made",
            f"password = {_q(d.password)}",
            f"clients = {_q(d.clients)}",
        ]
    return "\n".join(lines) + "\n"


def _network(text: str, key: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        raise ServicesError(f"{key}: {text!r} is not a network ({exc})") from None


def _get(table: dict[str, object], key: str, kind: type, where: str) -> object:
    if key not in table:
        raise ServicesError(f"{where}.{key}: missing")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ServicesError(f"{where}.{key}: expected a {kind.__name__}")
    return value


def _match(value: object, pattern: re.Pattern[str], what: str) -> str:
    text = str(value)
    if not pattern.match(text):
        raise ServicesError(f"{what}: {text!r} is not valid")
    return text


def load_text(text: str) -> DataServices:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ServicesError(f"not valid TOML: {exc}") from None
    mount_point = str(data.get("mount_point", DEFAULT_MOUNT_POINT))
    if not mount_point.startswith("/") or mount_point == "/":
        raise ServicesError(f"mount_point: {mount_point!r} must be an absolute path below /")
    share = None
    if "share" in data:
        t = data["share"]
        if not isinstance(t, dict):
            raise ServicesError("share: expected a table")
        smb = bool(_get(t, "smb", bool, "share"))
        nfs = bool(_get(t, "nfs", bool, "share"))
        if not smb and not nfs:
            raise ServicesError("share: neither smb nor nfs is true")
        uid = int(str(_get(t, "uid", int, "share")))
        if not 1000 <= uid < 60000:
            raise ServicesError(f"share.uid: {uid} is not a regular user's uid (1000-59999)")
        user = ShareUser(
            name=_match(_get(t, "user", str, "share"), USER_NAME_RE, "share.user"),
            uid=uid,
            nt_hash=_match(_get(t, "nt_hash", str, "share"), _NT_HASH_RE, "share.nt_hash")
            if smb else "",
        )
        name = _match(_get(t, "name", str, "share"), SHARE_NAME_RE, "share.name")
        if name.lower() in RESERVED_SHARES:
            raise ServicesError(f"share.name: {name!r} is reserved by Samba")
        share = FileShare(
            name=name, user=user, smb=smb, nfs=nfs,
            nfs_clients=_network(str(_get(t, "nfs_clients", str, "share")),
                                 "share.nfs_clients") if nfs else "",
        )
    database = None
    if "database" in data:
        t = data["database"]
        if not isinstance(t, dict):
            raise ServicesError("database: expected a table")
        database = Database(
            name=_match(_get(t, "name", str, "database"), DB_NAME_RE, "database.name"),
            owner=_match(_get(t, "owner", str, "database"), DB_NAME_RE, "database.owner"),
            password=_match(_get(t, "password", str, "database"), _SCRAM_RE,
                            "database.password"),
            clients=_network(str(_get(t, "clients", str, "database")), "database.clients"),
        )
    return DataServices(mount_point=mount_point,
                        server_name=str(data.get("server_name", "TWINBEAT")),
                        share=share, database=database)


# --------------------------------------------------------------------------------------------
# Each service's configuration


def smb_conf(ds: DataServices) -> str:
    share = ds.share
    if share is None or not share.smb:
        raise ServicesError("no SMB share to render")
    return f"""\
# {SMB_CONF}: {MARKER} (the same on both nodes).
# twinbeat starts smbd on the node that owns the group. Samba's user database (passdb),
# secrets and state live on the replicated disk ({ds.samba_dir}), so they move with the share.
[global]
   server role = standalone server
   workgroup = WORKGROUP
   netbios name = {ds.server_name}
   server string = twinbeat file share
   security = user
   map to guest = never
   passdb backend = tdbsam:{ds.samba_private}/passdb.tdb
   private dir = {ds.samba_private}
   state directory = {ds.samba_state}
   cache directory = {ds.samba_cache}
   # SMB over TCP 445 only: no NetBIOS name service (nmbd is not run)
   disable netbios = yes
   smb ports = 445
   load printers = no
   printing = bsd
   printcap name = /dev/null
   disable spoolss = yes
   logging = systemd
   log level = 1
   # An acknowledged write is on both disks (DRBD protocol C) before smbd answers:
   # strict sync: a client's flush waits for fsync; sync always: every write is fsync'ed.
   strict sync = yes
   sync always = yes

[{share.name}]
   path = {ds.share_path(share)}
   valid users = {share.user.name}
   read only = no
   browseable = yes
   create mask = 0664
   directory mask = 2775
"""


def exports(ds: DataServices) -> str:
    share = ds.share
    if share is None or not share.nfs:
        raise ServicesError("no NFS export to render")
    uid = share.user.uid
    options = (f"rw,sync,no_subtree_check,fsid={NFS_FSID},all_squash,anonuid={uid},"
               f"anongid={uid}")
    return f"""\
# {EXPORTS}: {MARKER} (the same on both nodes).
# sync: the server answers a write or a commit only once it is on both disks (DRBD protocol
# C); fsid: the same file handles whichever node serves; all_squash: every client acts as the
# share user ({share.user.name}, uid {uid}), who also owns the files written over SMB.
{ds.share_path(share)} {share.nfs_clients}({options})
"""


def nfs_conf(ds: DataServices) -> str:
    if not ds.nfs:
        raise ServicesError("no NFS export to render")
    state = ds.nfs_state
    return f"""\
# {NFS_CONF}: {MARKER} (the same on both nodes).
# The NFS server's state (/var/lib/nfs's role: the export and mount tables, statd's list of
# clients to notify, nfsdcld's NFSv4 client records) lives on the replicated disk, so that
# clients reclaim their locks and open files from the node that takes over.
[nfsd]
# NFSv4 lease and grace period (the kernel's minimum): after a failover new opens wait
# this long while the clients reclaim their state
lease-time = {NFS_LEASE}
grace-time = {NFS_LEASE}

[exportd]
state-directory-path = {state}

[mountd]
state-directory-path = {state}

[exportfs]
state-directory-path = {state}

[statd]
state-directory-path = {state}

[nfsdcld]
storagedir = {state}/nfsdcld
"""


def pg_conf(ds: DataServices) -> str:
    if ds.database is None:
        raise ServicesError("no database to render")
    return f"""\
# {PG_CONF}: {MARKER} (the same on both nodes).
# The cluster's data directory is on the replicated disk; twinbeat starts the cluster on the
# node that owns the group (the configuration stays here, in {PG_ETC}).
data_directory = '{ds.pg_data}'
listen_addresses = '*'
password_encryption = 'scram-sha-256'
# A COMMIT returns once its WAL record is on both disks (DRBD protocol C).
fsync = on
synchronous_commit = on
full_page_writes = on
"""


def pg_hba(ds: DataServices) -> str:
    db = ds.database
    if db is None:
        raise ServicesError("no database to render")
    return f"""\
# {PG_HBA}: {MARKER} (the same on both nodes).
# TYPE  DATABASE  USER      ADDRESS            METHOD
local   all       postgres                     peer
local   all       all                          peer
host    all       all       127.0.0.1/32       scram-sha-256
host    all       all       ::1/128            scram-sha-256
host    all       all       {db.clients:<18} scram-sha-256
"""


def smbpasswd_line(user: ShareUser, when: int) -> str:
    """The user in smbpasswd(5) format (no LanMan hash), for ``pdbedit -i smbpasswd:FILE``."""
    return f"{user.name}:{user.uid}:{'X' * 32}:{user.nt_hash}:[U          ]:LCT-{when:08X}:\n"


@dataclass(frozen=True)
class Rendered:
    path: str
    content: str
    mode: int = 0o644


def render_all(ds: DataServices) -> list[Rendered]:
    """Every file the wizard writes for these services (services.toml first)."""
    out = [Rendered(SERVICES_FILE, dump(ds), 0o600)]
    if ds.smb:
        out.append(Rendered(SMB_CONF, smb_conf(ds)))
    if ds.nfs:
        out.append(Rendered(EXPORTS, exports(ds)))
        out.append(Rendered(NFS_CONF, nfs_conf(ds)))
    if ds.database is not None:
        out.append(Rendered(PG_CONF, pg_conf(ds)))
        out.append(Rendered(PG_HBA, pg_hba(ds)))
    return out
