"""Health probes: a service is running when its own client gets an answer, not only when its
unit is active.

``probe_for(name)`` (pure) says which probe a resource NAME gets: the data services' units
and the names heartbeat users give them (``postgresql``, ``smbd``, ``nfs-kernel-server``).
The service agent runs it after ``systemctl is-active`` says active (a monitor) and after a
start (waiting up to ``ctx.probe_ready_wait`` for a first answer): a failed probe is a failed
monitor, with the probe's command and output as the reason.

=====================================  ==============================================
resource                               probe (each command must exit 0)
=====================================  ==============================================
``smbd``, ``samba``                    an SMB null session to IPC$ (``smbclient -N``)
``nfs-server``, ``nfs-kernel-server``  an RPC NULL call to nfsd over TCP (``rpcinfo``)
``postgresql@VER-NAME``                VER's ``pg_isready`` on the Unix socket
``postgresql``                         ``pg_isready`` on the Unix socket
=====================================  ==============================================

pg_isready is called directly (``/usr/lib/postgresql/VER/bin``), on Debian's socket directory
and the default port (5432, the port of the cluster twinbeat makes): Debian's
``pg_isready`` wrapper (perl, reading every cluster's configuration) took more than 10 s to
start on a busy QEMU guest, and the probe timed out although the server answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.drivers import runner

#: the address the probes use: the node itself (the service also listens there)
LOCAL = "127.0.0.1"
#: where Debian's PostgreSQL clusters put their Unix sockets
PG_SOCKETS = "/var/run/postgresql"
PG_DEFAULT_VERSION = "17"


@dataclass(frozen=True)
class Probe:
    what: str
    commands: tuple[tuple[str, ...], ...]

    def describe(self) -> str:
        return self.what


def probe_for(name: str) -> Probe | None:
    """The probe for a service resource NAME (a unit name with or without .service)."""
    base = name.removesuffix(".service")
    if base in ("smbd", "samba"):
        return Probe("an SMB null session to IPC$",
                     (("smbclient", "-N", f"//{LOCAL}/IPC$", "-c", "exit"),))
    if base in ("nfs-server", "nfs-kernel-server"):
        return Probe("an RPC NULL call to nfsd over TCP",
                     (("rpcinfo", "-T", "tcp", LOCAL, "nfs"),))
    if base == "postgresql":
        return _pg_isready(PG_DEFAULT_VERSION, "PostgreSQL")
    if base.startswith("postgresql@"):
        version, _, cluster = base.removeprefix("postgresql@").partition("-")
        if version.isdigit() and cluster:
            return _pg_isready(version, f"cluster {version}/{cluster}")
    return None


def _pg_isready(version: str, what: str) -> Probe:
    return Probe(f"pg_isready on {what}",
                 ((f"/usr/lib/postgresql/{version}/bin/pg_isready", "-h", PG_SOCKETS,
                   "-t", "5"),))


async def run_probe(probe: Probe, timeout: float) -> str | None:
    """None when every command answered; else the reason (the failed command, its exit status
    and output) as one line."""
    for argv in probe.commands:
        r = await runner.run(argv, timeout=timeout, log_failure=False)
        if not r.ok:
            out = " | ".join((r.stdout.strip() or "").splitlines()[-2:])
            text = f"{probe.what} failed: {r.describe()}"
            return text + (f"; output: {out}" if out else "")
    return None
