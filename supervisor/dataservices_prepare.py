"""``twinbeat-prepare@SERVICE.service``: get a data service's state ready on the replicated disk.

Each of smbd, the NFS daemons and the PostgreSQL cluster requires this unit through a drop-in
shipped in the image (``/usr/lib/systemd/system/UNIT.d/twinbeat.conf``), so it runs before
the daemon starts, whoever starts it. It

1. does nothing (and succeeds) when ``/etc/twinbeat/services.toml`` does not configure the
   service: the unit then runs as Debian ships it;
2. refuses (exit 1, the reason on stderr and so in the journal) unless the mount point holds
   a mounted DRBD device: a daemon must never put its state on the node's own disk, where
   the peer would not find it after a failover;
3. creates what is missing and never changes what exists:

   * samba: ``MP/samba/{private,state,cache}``, the share directory (owned by the share
     user), and the share user in Samba's passdb (``pdbedit -i`` from the NT hash in
     services.toml) when passdb does not know it yet;
   * nfs: ``MP/nfs`` with statd's ``sm``/``sm.bak`` (owned by the ``statd`` user, as in
     Debian's /var/lib/nfs) and nfsdcld's directory, and the share directory;
   * postgresql: when the data directory does not exist, a new cluster: ``initdb`` into a
     temporary directory beside it (made durable with one ``syncfs()`` of the file system
     rather than an fsync per file, each of which waits for the peer's disk under DRBD
     protocol C; the time it took is in the line that reports it), the owner role (with
     its SCRAM verifier) and the database created in single-user mode, the configuration
     files that Debian keeps in /etc removed from it, then renamed into place (a crash half
     way leaves no cluster and the next start begins again). An existing data directory is
     used as it is.

   On a new pair the node that formats the replicated disk runs the group first, so it is
   the one that initialises; the other node finds everything on the disk when it takes over.

Run as ``/usr/libexec/twinbeat/prepare-service SERVICE``; the commands go through the
supervisor's process runner (clean environment, timeout, process group killed on expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.atomicfile import fsync_dir
from supervisor.dataservices import (
    PG_BIN,
    SERVICES,
    SERVICES_FILE,
    DataServices,
    ServicesError,
    load_text,
    smbpasswd_line,
)
from supervisor.drivers import runner
from supervisor.mountinfo import parse_mountinfo

_DRBD_RE = re.compile(r"^/dev/drbd\d+$")
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class PrepareError(Exception):
    """The service must not start; the message says why."""


@dataclass
class Tools:
    """What prepare touches; tests replace the programs and the identity look-ups."""

    mountinfo: Path = Path("/proc/self/mountinfo")
    runuser: str = "runuser"
    pdbedit: str = "pdbedit"
    initdb: str = f"{PG_BIN}/initdb"
    postgres: str = f"{PG_BIN}/postgres"
    run_dir: Path = Path("/run/twinbeat")
    timeout: float = 300.0
    user_ids: Callable[[str], tuple[int, int]] = field(
        default=lambda name: (pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid))
    group_id: Callable[[str], int] = field(default=lambda name: grp.getgrnam(name).gr_gid)
    chown: Callable[[str, int, int], None] = os.chown
    log: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))
    #: measures how long a new cluster took (initdb is slow on a slow machine: ~80 s under
    #: QEMU's TCG), said in the line that reports it
    clock: Callable[[], float] = time.monotonic


def mounted_source(mountinfo_text: str, mount_point: str) -> str | None:
    """The device mounted on mount_point (the topmost mount), or None."""
    on = [m for m in parse_mountinfo(mountinfo_text) if m.mountpoint == mount_point]
    return on[-1].source if on else None


def check_replicated(ds: DataServices, tools: Tools, service: str) -> str:
    try:
        text = tools.mountinfo.read_text()
    except OSError as exc:
        raise PrepareError(f"cannot read the mount table: {exc}") from None
    source = mounted_source(text, os.path.realpath(ds.mount_point))
    if source is None:
        raise PrepareError(
            f"{ds.mount_point} is not mounted: {service}'s state lives on the replicated disk, "
            "which twinbeat mounts on the node that owns the group; not starting it here")
    if not _DRBD_RE.match(source):
        raise PrepareError(
            f"{ds.mount_point} holds {source}, not a replicated (DRBD) device: not starting "
            f"{service} with its state on this node's own disk")
    return source


def _mkdir(path: str, mode: int, owner: tuple[int, int] | None, tools: Tools,
           made: list[str]) -> None:
    """Create path (and its parents) when missing; an existing directory is left alone."""
    p = Path(path)
    if p.is_dir():
        return
    if p.exists() or p.is_symlink():
        raise PrepareError(f"{path} exists and is not a directory")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.mkdir(mode=mode)
    os.chmod(p, mode)  # not reduced by the umask
    if owner is not None:
        tools.chown(path, *owner)
    made.append(path)


async def _run(tools: Tools, argv: Sequence[str], what: str, *, input: bytes | None = None,
               ) -> runner.RunResult:
    r = await runner.run(argv, timeout=tools.timeout, input=input, cwd="/")
    if not r.ok:
        raise PrepareError(f"{what}: {r.describe()}")
    return r


def _share_dirs(ds: DataServices, tools: Tools, made: list[str]) -> None:
    share = ds.share
    assert share is not None
    _mkdir(ds.shares_dir, 0o755, None, tools, made)
    owner = tools.user_ids(share.user.name)
    _mkdir(ds.share_path(share), 0o2770, owner, tools, made)


async def prepare_samba(ds: DataServices, tools: Tools) -> list[str]:
    share = ds.share
    assert share is not None
    done: list[str] = []
    _mkdir(ds.samba_dir, 0o755, None, tools, done)
    _mkdir(ds.samba_private, 0o700, None, tools, done)
    _mkdir(ds.samba_state, 0o755, None, tools, done)
    _mkdir(ds.samba_cache, 0o755, None, tools, done)
    _share_dirs(ds, tools, done)
    done = [f"created {d}" for d in done]
    known = await _run(tools, [tools.pdbedit, "-L"], "cannot list Samba's users")
    names = {line.split(":", 1)[0] for line in known.stdout.splitlines() if ":" in line}
    if share.user.name not in names:
        tools.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = tools.run_dir / "smbpasswd.import"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, smbpasswd_line(share.user, int(time.time())).encode())
        finally:
            os.close(fd)
        try:
            await _run(tools, [tools.pdbedit, "-i", f"smbpasswd:{tmp}"],
                       f"cannot add {share.user.name} to Samba's users")
        finally:
            tmp.unlink(missing_ok=True)
        done.append(f"added the share user {share.user.name} to Samba's passdb")
    return done


async def prepare_nfs(ds: DataServices, tools: Tools) -> list[str]:
    made: list[str] = []
    state = ds.nfs_state
    _mkdir(state, 0o755, None, tools, made)
    statd = tools.user_ids("statd")[0], tools.group_id("nogroup")
    _mkdir(f"{state}/sm", 0o700, statd, tools, made)
    _mkdir(f"{state}/sm.bak", 0o700, statd, tools, made)
    _mkdir(f"{state}/nfsdcld", 0o700, None, tools, made)
    _mkdir(f"{state}/v4recovery", 0o755, None, tools, made)
    _share_dirs(ds, tools, made)
    return [f"created {d}" for d in made]


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def prepare_postgresql(ds: DataServices, tools: Tools) -> list[str]:
    db = ds.database
    assert db is not None
    data = Path(ds.pg_data)
    if (data / "PG_VERSION").is_file():
        return []
    if data.exists() and (not data.is_dir() or any(data.iterdir())):
        raise PrepareError(f"{data} exists but holds no PostgreSQL cluster (no PG_VERSION): "
                           "refusing to touch it")
    made: list[str] = []
    owner = tools.user_ids("postgres")
    _mkdir(str(data.parent.parent), 0o755, owner, tools, made)
    _mkdir(str(data.parent), 0o755, owner, tools, made)
    tmp = data.parent / f".{data.name}.initdb"
    if tmp.exists():
        shutil.rmtree(tmp)  # an initialisation that did not finish
    as_postgres = [tools.runuser, "-u", "postgres", "--"]
    began = tools.clock()
    await _run(tools, [*as_postgres, tools.initdb, "-D", str(tmp), "--auth-local=peer",
                       "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
                       "--data-checksums", "--sync-method=syncfs"], "initdb failed")
    sql = (f"CREATE ROLE {_sql_ident(db.owner)} LOGIN PASSWORD '{db.password}';\n"
           f"CREATE DATABASE {_sql_ident(db.name)} OWNER {_sql_ident(db.owner)};\n")
    r = await _run(tools, [*as_postgres, tools.postgres, "--single", "-D", str(tmp),
                           "postgres"], "cannot create the database", input=sql.encode())
    errors = [line for line in (r.stdout + r.stderr).splitlines()
              if re.search(r"\b(ERROR|FATAL|PANIC):", line)]
    if errors:
        raise PrepareError(f"cannot create the database: {' | '.join(errors)}")
    for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
        with contextlib.suppress(FileNotFoundError):
            (tmp / name).unlink()  # Debian keeps them in /etc/postgresql
    if data.exists():
        data.rmdir()  # empty (checked above)
    # a whole directory moves into place (atomic_write is for files): then made durable
    tmp.rename(data)
    fsync_dir(data.parent)
    return [f"created {d}" for d in made] + [
        f"initialised a new PostgreSQL cluster in {data} with database {db.name} owned by "
        f"{db.owner} in {tools.clock() - began:.1f} s"]


PREPARERS = {"samba": prepare_samba, "nfs": prepare_nfs, "postgresql": prepare_postgresql}


async def prepare(service: str, services_text: str | None, tools: Tools) -> list[str]:
    """What was done (one line each); PrepareError when the service must not start."""
    if service not in SERVICES:
        raise PrepareError(f"unknown service {service!r} (known: {', '.join(SERVICES)})")
    if services_text is None:
        return [f"{SERVICES_FILE} does not exist: {service} is not a twinbeat data service"]
    try:
        ds = load_text(services_text)
    except ServicesError as exc:
        raise PrepareError(f"{SERVICES_FILE}: {exc}") from None
    if not ds.configured(service):
        return [f"{SERVICES_FILE} does not configure {service}: nothing to prepare"]
    source = check_replicated(ds, tools, service)
    done = await PREPARERS[service](ds, tools)
    return done or [f"{service}'s state on {source} ({ds.mount_point}) is ready"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: prepare-service {{{','.join(SERVICES)}}}", file=sys.stderr)
        return EXIT_USAGE
    try:
        text: str | None = Path(SERVICES_FILE).read_text()
    except FileNotFoundError:
        text = None
    tools = Tools()
    try:
        for line in asyncio.run(prepare(args[0], text, tools)):
            print(line)
    except PrepareError as exc:
        print(f"twinbeat: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
