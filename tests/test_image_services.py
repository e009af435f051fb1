"""The data services in the built image, without booting it (needs root).

Installed and disabled at boot; the configuration the wizard renders accepted by the
services' own tools inside the image (``testparm -s``, ``exportfs -ra``, ``postgres -C``); and
then, in a throw-away overlay of the image's root, a private network namespace, mount
namespace and pid namespace (every process is gone when it ends): twinbeat-prepare's Samba and
PostgreSQL steps run with the image's own programs, smbd and the PostgreSQL cluster start
from the rendered configuration, and the real clients (smbclient, psql) log in with the
passwords whose hashes the wizard computed.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from firstboot.accounts import Account, add_share_user
from firstboot.passwords import nt_hash, scram_sha256
from supervisor import dataservices as dsm
from supervisor.dataservices import Database, DataServices, FileShare, ShareUser
from tests.test_image import Image, image  # noqa: F401  (the module's image fixture)

pytestmark = pytest.mark.image

SMB_PASSWORD = "Share-pass-2468"
DB_PASSWORD = "Db-pass-13579"
DS = DataServices(
    "/srv", "TWINBEAT",
    FileShare("data", ShareUser("alice", dsm.SHARE_UID, nt_hash(SMB_PASSWORD)), smb=True,
              nfs=True, nfs_clients="192.168.85.0/24"),
    Database("app", "appowner", scram_sha256(DB_PASSWORD, b"image-test-salt!"),
             "192.168.85.0/24"),
)


def enabled(img: Image, unit: str) -> str:
    r = subprocess.run(["systemctl", f"--root={img.root}", "is-enabled", unit],
                       capture_output=True, text=True, check=False)
    return r.stdout.strip() or r.stderr.strip()


@pytest.mark.parametrize("unit", [
    "smbd.service", "nmbd.service", "nfs-server.service", "nfs-client.target",
    "rpcbind.service", "rpcbind.socket", "postgresql.service"])
def test_data_services_are_installed_and_disabled(image: Image, unit: str) -> None:  # noqa: F811
    assert (image.root / "usr/lib/systemd/system" / unit).exists(), unit
    assert enabled(image, unit) == "disabled"


def test_postgresql_backup_units_are_not_pulled_in(image: Image) -> None:  # noqa: F811
    """postgresql-common's pg_receivewal@ (a replication slot, WAL archived on the node's own
    disk) and backup timers would start with every cluster: not on the appliance."""
    wants = image.root / "etc/systemd/system/postgresql@.service.wants"
    assert not wants.exists() or list(wants.iterdir()) == []
    for unit in ("pg_receivewal@.service", "pg_basebackup@.timer", "pg_compresswal@.timer",
                 "pg_dump@.timer"):
        assert (image.root / "usr/lib/systemd/system" / unit).exists(), unit
        assert enabled(image, unit) == "disabled", unit


def test_each_node_makes_its_own_tls_key(image: Image) -> None:  # noqa: F811
    assert enabled(image, "twinbeat-ssl-cert.service") == "enabled"
    assert not (image.root / "etc/ssl/private/ssl-cert-snakeoil.key").exists()
    unit = (image.root / "usr/lib/systemd/system/twinbeat-ssl-cert.service").read_text()
    assert "ExecStart=/usr/lib/twinbeat/make-node-cert\n" in unit
    assert os.access(image.root / "usr/lib/twinbeat/make-node-cert", os.X_OK)


def test_no_postgresql_cluster_data_of_its_own(image: Image) -> None:  # noqa: F811
    assert (image.root / "etc/postgresql/17/main/postgresql.conf").exists()
    assert not (image.root / "var/lib/postgresql/17/main").exists()
    assert (image.root / "usr/lib/postgresql/17/bin/postgres").exists()


def test_clients_and_tools_for_probes_are_installed(image: Image) -> None:  # noqa: F811
    for tool in ("usr/sbin/smbd", "usr/bin/testparm", "usr/bin/smbclient", "usr/bin/pdbedit",
                 "usr/sbin/exportfs", "usr/sbin/rpc.nfsd", "usr/sbin/rpcinfo",
                 "usr/bin/pg_isready", "usr/bin/psql", "usr/sbin/runuser"):
        assert (image.root / tool).exists(), tool


@pytest.mark.parametrize(("unit", "service"), [
    ("smbd.service", "samba"), ("nfs-server.service", "nfs"), ("nfs-mountd.service", "nfs"),
    ("rpc-statd.service", "nfs"), ("rpc-statd-notify.service", "nfs"),
    ("nfsdcld.service", "nfs"), ("postgresql@17-main.service", "postgresql")])
def test_daemons_require_their_state_on_the_replicated_disk(
        image: Image, unit: str, service: str) -> None:  # noqa: F811
    units = image.root / "usr/lib/systemd/system"
    template = unit.split("@", maxsplit=1)[0] + "@.service" if "@" in unit else unit
    assert (units / template).exists(), f"the drop-in extends {unit}, which is not installed"
    dropin = (units / f"{unit}.d/twinbeat.conf").read_text().splitlines()
    assert f"Requires=twinbeat-prepare@{service}.service" in dropin
    assert f"After=twinbeat-prepare@{service}.service" in dropin
    if unit in ("rpc-statd.service", "rpc-statd-notify.service", "nfsdcld.service"):
        assert "PartOf=nfs-server.service" in dropin
    if unit == "smbd.service":  # Debian's AppArmor and AD-DC checks are reset: none here
        assert "ExecStartPre=" in dropin and "ExecCondition=" in dropin
        assert not (image.root / "usr/sbin/apparmor_parser").exists()  # no AppArmor at all
    prepare = (units / "twinbeat-prepare@.service").read_text()
    assert "ExecStart=/usr/libexec/twinbeat/prepare-service %i" in prepare
    launcher = image.root / "usr/libexec/twinbeat/prepare-service"
    assert "from supervisor.dataservices_prepare import main" in launcher.read_text()


def test_prepare_service_refuses_without_the_replicated_disk(image: Image) -> None:  # noqa: F811
    """The image's own launcher, with no services.toml: nothing to prepare (exit 0)."""
    r = image.chroot("/usr/libexec/twinbeat/prepare-service", "samba")
    assert r.returncode == 0, r.stderr
    assert "is not a twinbeat data service" in r.stdout
    r = image.chroot("/usr/libexec/twinbeat/prepare-service", "ftp")
    assert r.returncode == 1 and "unknown service 'ftp'" in r.stderr


# --------------------------------------------------------------------------------------------
# The rendered configuration in an overlay of the image


@pytest.fixture
def sandbox(image: Image, tmp_path: Path) -> Iterator[Path]:  # noqa: F811
    """A writable overlay of the image's root (one per test) with the wizard's files for DS
    written in."""
    base = tmp_path
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={image.root},upperdir={upper},workdir={work}", str(merged)],
                   check=True)
    try:
        for f in dsm.render_all(DS):
            path = merged / f.path.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f.content)
            path.chmod(f.mode)
        add_share_user(merged, Account("alice", dsm.SHARE_UID, dsm.SHARE_UID), 20000)
        (merged / "srv").mkdir(exist_ok=True)
        yield merged
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def inside(root: Path, script: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run a shell script chrooted in root, in new mount, network and pid namespaces (only
    a loopback interface; every process it starts dies with it)."""
    setup = textwrap.dedent(f"""\
        set -e
        mount -t proc proc {root}/proc
        mount --rbind /dev {root}/dev
        mount -t tmpfs tmpfs {root}/run
        mount -t tmpfs tmpfs {root}/tmp
        ip link set lo up
        exec chroot {root} /bin/sh -ec "$1"
        """)
    return subprocess.run(
        ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--", "sh", "-c",
         setup, "sh", script],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})


def test_testparm_accepts_the_rendered_smb_conf(sandbox: Path) -> None:
    # (testparm also checks that Samba's directories exist: prepare makes them)
    r = inside(sandbox, "mkdir -p /srv/samba/private /srv/samba/state /srv/samba/cache "
               "/srv/shares/data && testparm -s /etc/samba/smb.conf")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Loaded services file OK." in r.stderr
    dumped = " ".join(r.stdout.split())
    share = dumped.split("[data]", 1)[1]
    assert "path = /srv/shares/data" in share and "valid users = alice" in share
    # (strict sync = yes is Samba 4.22's default: testparm -s lists only what differs)
    for want in ("sync always = Yes",
                 "passdb backend = tdbsam:/srv/samba/private/passdb.tdb",
                 "private dir = /srv/samba/private", "state directory = /srv/samba/state"):
        assert want in dumped, want
    for section, name, value in (("data", "strict sync", "Yes"), ("data", "sync always", "Yes"),
                                 ("global", "map to guest", "Never")):
        r = inside(sandbox, f"testparm -s --section-name={section} --parameter-name='{name}' "
                   "2>/dev/null")
        assert r.stdout.strip() == value, r.stdout + r.stderr


def test_testparm_rejects_a_broken_smb_conf(sandbox: Path) -> None:
    """The check can fail: an unknown parameter in the same file."""
    r = inside(sandbox, "cp /etc/samba/smb.conf /tmp/bad.conf && "
               "echo '   sync allways = maybe' >> /tmp/bad.conf && testparm -s /tmp/bad.conf")
    assert r.returncode != 0
    assert "Unknown parameter encountered" in r.stderr


def test_exportfs_accepts_the_rendered_exports(sandbox: Path) -> None:
    """exportfs -ra parses /etc/exports.d and writes its table (etab) where nfs.conf says:
    the state directory on the replicated disk."""
    r = inside(sandbox, "mkdir -p /srv/nfs /srv/shares/data && exportfs -ra && "
               "cat /srv/nfs/etab && echo ---- && exportfs -s")
    assert r.returncode == 0, r.stdout + r.stderr
    etab, _, listed = r.stdout.partition("----")
    assert etab.startswith("/srv/shares/data\t192.168.85.0/24(rw,sync,"), etab
    for option in ("sync", "fsid=1", "all_squash", "anonuid=2000", "anongid=2000"):
        assert option in etab.split("(", 1)[1].rstrip(")\n").split(","), option
    assert "/srv/shares/data" in listed


def test_exportfs_rejects_a_broken_export(sandbox: Path) -> None:
    r = inside(sandbox, "mkdir -p /srv/nfs /srv/shares/data && "
               "echo '/srv/shares/data 192.168.85.0/24(rw,sink)' > /etc/exports.d/bad.exports "
               "&& exportfs -ra; status=$?; rm /etc/exports.d/bad.exports; exit $status")
    assert "unknown keyword \"sink\"" in r.stderr, r.stderr


def test_postgres_reads_the_rendered_configuration(sandbox: Path) -> None:
    conf = "/etc/postgresql/17/main/postgresql.conf"
    r = inside(sandbox, " && ".join(
        f"runuser -u postgres -- /usr/lib/postgresql/17/bin/postgres --config-file={conf} "
        f"-C {name}" for name in ("data_directory", "fsync", "synchronous_commit",
                                  "listen_addresses", "hba_file")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["/srv/postgresql/17/main", "on", "on", "*",
                                "/etc/postgresql/17/main/pg_hba.conf"]


PREPARE = """\
python3 -I -c '
import asyncio, sys
sys.path.insert(0, "/usr/lib/twinbeat")
from supervisor.dataservices import load_text
from supervisor.dataservices_prepare import Tools, prepare_{service}
ds = load_text(open("/etc/twinbeat/services.toml").read())
for line in asyncio.run(prepare_{service}(ds, Tools())):
    print(line)
'
"""


def test_samba_serves_the_share_with_the_wizards_password(sandbox: Path) -> None:
    """prepare's Samba step (directories, the user imported from its NT hash), smbd started
    from the rendered smb.conf, our probe and a real login and upload with smbclient."""
    script = PREPARE.format(service="samba") + f"""
        ls -ld /srv/shares/data /srv/samba/private | awk '{{print $1, $3}}'
        /usr/sbin/smbd --daemon --no-process-group
        for i in $(seq 100); do
            smbclient -N //127.0.0.1/IPC$ -c exit 2>/dev/null && break; sleep 0.2
        done
        smbclient -N //127.0.0.1/IPC$ -c exit && echo PROBE-OK
        echo hello > /tmp/hello.txt
        smbclient //127.0.0.1/data -U 'alice%{SMB_PASSWORD}' -c 'put /tmp/hello.txt hello.txt'
        ls -ln /srv/shares/data/hello.txt | awk '{{print $3, $4}}'
        smbclient //127.0.0.1/data -U 'alice%wrong-password' -c ls 2>&1 || echo REFUSED
        ls /srv/samba/private
    """
    r = inside(sandbox, script)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "added the share user alice to Samba's passdb" in out
    assert "drwxrws--- alice" in out and "drwx------ root" in out
    assert "PROBE-OK" in out
    assert "2000 2000" in out  # the file written over SMB belongs to the share user
    assert "NT_STATUS_LOGON_FAILURE" in out and "REFUSED" in out
    assert "passdb.tdb" in out and "secrets.tdb" in out


def test_postgresql_cluster_is_made_on_the_data_disk_and_logs_in(sandbox: Path) -> None:
    """prepare's PostgreSQL step with the image's initdb and single-user postgres, the cluster
    started as Debian's unit starts it (pg_ctlcluster), pg_isready (the probe) and a SCRAM
    login of the database owner over TCP with the wizard's password."""
    script = PREPARE.format(service="postgresql") + f"""
        /usr/lib/twinbeat/make-node-cert  # (twinbeat-ssl-cert.service at first boot)
        stat -c 'KEY %a %G' /etc/ssl/private/ssl-cert-snakeoil.key
        openssl x509 -noout -text -in /etc/ssl/certs/ssl-cert-snakeoil.pem | grep -F 'NIST CURVE'
        mkdir -p /run/postgresql && chown postgres:postgres /run/postgresql
        ls /srv/postgresql/17/main
        pg_ctlcluster 17 main start
        /usr/lib/postgresql/17/bin/pg_isready -h /var/run/postgresql -t 5 && echo PROBE-OK
        runuser -u postgres -- psql -tA -c 'SHOW data_directory' -c 'SHOW synchronous_commit'
        PGPASSWORD='{DB_PASSWORD}' psql -h 127.0.0.1 -U appowner -d app -tA \\
            -c 'CREATE TABLE t (n int primary key)' -c 'INSERT INTO t VALUES (1)' \\
            -c 'SELECT current_user, current_database(), count(*) FROM t' \\
            -c 'SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()'
        PGPASSWORD=wrong psql -h 127.0.0.1 -U appowner -d app -c 'SELECT 1' 2>&1 || echo REFUSED
        pg_ctlcluster 17 main stop
    """
    r = inside(sandbox, script)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    made = re.search(r"initialised a new PostgreSQL cluster in /srv/postgresql/17/main with "
                     r"database app owned by appowner in [0-9.]+ s\n", out)
    assert made is not None, out
    listing = out[made.end():].split()
    assert "PG_VERSION" in listing and "postgresql.conf" not in listing
    assert "PROBE-OK" in out
    assert "/srv/postgresql/17/main\non\n" in out
    assert "appowner|app|1" in out
    # the node's own key (ECDSA P-256, root:ssl-cert 0640): the owner's login went over TLS
    assert "KEY 640 ssl-cert" in out and "NIST CURVE: P-256" in out
    assert re.search(r"^TLSv1\.[23]$", out, re.M), out
    assert 'password authentication failed for user "appowner"' in out and "REFUSED" in out
