"""The data services: services.toml, each service's rendered configuration, the password
hashes, and twinbeat-prepare@ (mount check, directories, Samba user, PostgreSQL cluster)
against fake programs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from firstboot.passwords import md4, nt_hash, scram_keys, scram_sha256
from supervisor import dataservices as dsm
from supervisor.dataservices import (
    Database,
    DataServices,
    FileShare,
    ServicesError,
    ShareUser,
    dump,
    load_text,
)
from supervisor.dataservices_prepare import (
    PrepareError,
    Tools,
    mounted_source,
    prepare,
)

SCRAM = scram_sha256("s3cret-pass", b"0123456789abcdef")


def services(mount_point: str = "/srv", *, smb: bool = True, nfs: bool = True,
             database: bool = True) -> DataServices:
    share = FileShare("data", ShareUser("alice", 2000, nt_hash("Secret-123") if smb else ""),
                      smb=smb,
                      nfs=nfs, nfs_clients="192.168.85.0/24" if nfs else "")
    db = Database("app", "appowner", SCRAM, "192.168.85.0/24") if database else None
    return DataServices(mount_point, "TWINBEAT", share if smb or nfs else None, db)


# --------------------------------------------------------------------------------------------
# Password hashes


@pytest.mark.parametrize(("text", "digest"), [
    # RFC 1320's test suite
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
     "043f8582f241db351ce627e153e7f0e4"),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
])
def test_md4_matches_rfc_1320(text: bytes, digest: str) -> None:
    assert md4(text).hex() == digest


def test_nt_hash_of_a_known_password() -> None:
    # the NT hash of "password", as every NTLM reference lists it
    assert nt_hash("password") == "8846F7EAEE8FB117AD06BDD830B7586C"


def test_scram_verifier_proves_rfc_7677_exchange() -> None:
    """RFC 7677's example: user, pencil, salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations. The
    server's keys from our verifier must check the client's proof and give the server
    signature the RFC lists."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_sha256("pencil", salt, 4096)
    head, keys = verifier.split("$", 2)[1:]
    assert head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = (f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
            f"c=biws,r={nonce}").encode()
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    signature = hmac.new(stored, auth, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored
    assert base64.b64encode(hmac.new(server, auth, hashlib.sha256).digest()).decode() == \
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert scram_keys("pencil", salt, 4096) == (stored, server)


# --------------------------------------------------------------------------------------------
# services.toml


def test_services_toml_round_trips() -> None:
    for ds in (services(), services(nfs=False), services(smb=False, database=False),
               services(smb=False, nfs=False)):
        assert load_text(dump(ds)) == ds


@pytest.mark.parametrize(("edit", "problem"), [
    (("nfs_clients = \"192.168.85.0/24\"", "nfs_clients = \"192.168.85.1/24\""),
     "share.nfs_clients: '192.168.85.1/24' is not a network"),
    (('name = "data"', 'name = "homes"'), "share.name: 'homes' is reserved by Samba"),
    (('name = "data"', 'name = "a/b"'), "share.name: 'a/b' is not valid"),
    (("uid = 2000", "uid = 0"), "share.uid: 0 is not a regular user's uid"),
    (("password = \"SCRAM", "password = \"md5"), "database.password:"),
    (("smb = true", "smb = \"yes\""), "share.smb: expected a bool"),
    (('owner = "appowner"', 'owner = "Robert\'); DROP"'), "database.owner:"),
    (("mount_point = \"/srv\"", "mount_point = \"srv\""), "mount_point: 'srv' must be"),
])
def test_services_toml_errors_name_the_key(edit: tuple[str, str], problem: str) -> None:
    text = dump(services())
    assert edit[0] in text
    with pytest.raises(ServicesError, match=problem.replace("(", r"\(").replace("$", r"\$")):
        load_text(text.replace(edit[0], edit[1], 1))


def test_units_follow_the_choices_in_order() -> None:
    assert services().units() == ("smbd.service", "nfs-server.service",
                                  "postgresql@17-main.service")
    assert services(nfs=False, database=False).units() == ("smbd.service",)
    assert services(smb=False, nfs=False).units() == ("postgresql@17-main.service",)


def test_netbios_name_from_cluster_name() -> None:
    assert dsm.netbios_name("twinbeat") == "TWINBEAT"
    assert dsm.netbios_name("my_cluster.example-long-name") == "MY-CLUSTER-EXAM"
    assert dsm.netbios_name("___") == "TWINBEAT"


# --------------------------------------------------------------------------------------------
# Rendered configuration


def test_smb_conf_keeps_state_on_the_replicated_disk_and_syncs_writes() -> None:
    text = dsm.smb_conf(services())
    lines = [line.strip() for line in text.splitlines()]
    for want in ("passdb backend = tdbsam:/srv/samba/private/passdb.tdb",
                 "private dir = /srv/samba/private", "state directory = /srv/samba/state",
                 "cache directory = /srv/samba/cache", "strict sync = yes",
                 "sync always = yes", "map to guest = never", "disable netbios = yes",
                 "[data]", "path = /srv/shares/data", "valid users = alice",
                 "read only = no", "netbios name = TWINBEAT"):
        assert want in lines, want
    assert dsm.MARKER in lines[0]


def test_exports_sync_with_a_stable_fsid() -> None:
    text = dsm.exports(services())
    export = [line for line in text.splitlines() if not line.startswith("#")]
    assert export == ["/srv/shares/data 192.168.85.0/24(rw,sync,no_subtree_check,fsid=1,"
                      "all_squash,anonuid=2000,anongid=2000)"]


def test_nfs_conf_points_every_daemon_at_the_replicated_disk() -> None:
    text = dsm.nfs_conf(services())
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
        elif "=" in line and not line.startswith("#"):
            key, value = (x.strip() for x in line.split("=", 1))
            sections[current][key] = value
    for daemon in ("exportd", "mountd", "exportfs", "statd"):
        assert sections[daemon] == {"state-directory-path": "/srv/nfs"}
    assert sections["nfsdcld"] == {"storagedir": "/srv/nfs/nfsdcld"}
    assert sections["nfsd"] == {"lease-time": "10", "grace-time": "10"}


def test_postgresql_conf_and_hba() -> None:
    conf = dsm.pg_conf(services())
    settings: dict[str, str] = {}
    for line in conf.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    assert settings == {
        "data_directory": "'/srv/postgresql/17/main'", "listen_addresses": "'*'",
        "password_encryption": "'scram-sha-256'", "fsync": "on",
        "synchronous_commit": "on", "full_page_writes": "on"}
    hba = [line.split() for line in dsm.pg_hba(services()).splitlines()
           if line and not line.startswith("#")]
    assert ["host", "all", "all", "192.168.85.0/24", "scram-sha-256"] in hba
    assert hba[0] == ["local", "all", "postgres", "peer"]
    assert not any("trust" in row for row in hba)


def test_render_all_writes_only_the_chosen_services() -> None:
    paths = [f.path for f in dsm.render_all(services(nfs=False))]
    assert paths == [dsm.SERVICES_FILE, dsm.SMB_CONF, dsm.PG_CONF, dsm.PG_HBA]
    modes = {f.path: f.mode for f in dsm.render_all(services())}
    assert modes[dsm.SERVICES_FILE] == 0o600
    assert dsm.EXPORTS in modes and dsm.NFS_CONF in modes


def test_smbpasswd_line_format() -> None:
    line = dsm.smbpasswd_line(ShareUser("alice", 2000, nt_hash("password")), 0x5F5E1000)
    assert line == ("alice:2000:XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX:8846F7EAEE8FB117AD06BDD830B7586C"
                    ":[U          ]:LCT-5F5E1000:\n")


# --------------------------------------------------------------------------------------------
# twinbeat-prepare@


PDBEDIT = """#!/bin/sh
echo "pdbedit $*" >> "{log}"
case "$1" in
  -L) cat "{users}" 2>/dev/null; exit 0 ;;
  -i) file=${{2#smbpasswd:}}; cut -d: -f1,2 "$file" >> "{users}"; cp "$file" "{imported}" ;;
esac
"""
RUNUSER = """#!/bin/sh
echo "runuser $*" >> "{log}"
shift 3
exec "$@"
"""
INITDB = """#!/bin/sh
echo "initdb $*" >> "{log}"
mkdir -p "$2" && echo 17 > "$2/PG_VERSION"
for f in postgresql.conf pg_hba.conf pg_ident.conf postgresql.auto.conf; do : > "$2/$f"; done
"""
POSTGRES = """#!/bin/sh
echo "postgres $*" >> "{log}"
cat > "{sql}"
{fail}
"""


class Fake:
    def __init__(self, tmp: Path, *, mounted: str | None = "/dev/drbd0",
                 sql_error: bool = False) -> None:
        self.tmp = tmp
        self.mp = tmp / "srv"
        self.mp.mkdir()
        self.log = tmp / "calls.log"
        self.log.touch()
        self.users = tmp / "users"
        self.imported = tmp / "imported"
        self.sql = tmp / "sql"
        mountinfo = tmp / "mountinfo"
        lines = ["22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda2 rw"]
        if mounted:
            lines.append(f"40 22 147:0 / {self.mp} rw,relatime shared:9 - ext4 {mounted} rw")
        mountinfo.write_text("\n".join(lines) + "\n")
        fail = 'echo "ERROR:  role \\"x\\" already exists" >&2' if sql_error else ""
        progs = {"pdbedit": PDBEDIT, "runuser": RUNUSER, "initdb": INITDB,
                 "postgres": POSTGRES}
        paths = {}
        for name, text in progs.items():
            p = tmp / name
            p.write_text(text.format(log=self.log, users=self.users, imported=self.imported,
                                     sql=self.sql, fail=fail))
            p.chmod(0o755)
            paths[name] = str(p)
        self.chowns: list[tuple[str, int, int]] = []
        self.said: list[str] = []
        self.tools = Tools(
            mountinfo=mountinfo, runuser=paths["runuser"], pdbedit=paths["pdbedit"],
            initdb=paths["initdb"], postgres=paths["postgres"], run_dir=tmp / "run",
            timeout=20, user_ids=self.ids, group_id=lambda name: 65534,
            chown=lambda p, u, g: self.chowns.append((p, u, g)), log=self.said.append,
            clock=lambda: float(len(self.log.read_text().splitlines())))

    @staticmethod
    def ids(name: str) -> tuple[int, int]:
        return {"alice": (2000, 2000), "postgres": (105, 109), "statd": (106, 65534)}[name]

    def calls(self) -> list[str]:
        return [line.split(" ", 1)[0] + " " + line.split(" ", 1)[1].replace(str(self.tmp), "T")
                for line in self.log.read_text().splitlines()]

    def text(self, ds: DataServices) -> str:
        return dump(ds)

    def prepare(self, service: str, ds: DataServices | None) -> list[str]:
        return asyncio.run(prepare(service, None if ds is None else dump(ds), self.tools))


def test_mounted_source_takes_the_topmost_mount() -> None:
    text = ("1 0 8:1 / /srv rw - ext4 /dev/sda1 rw\n"
            "2 1 147:0 / /srv rw - ext4 /dev/drbd0 rw\n")
    assert mounted_source(text, "/srv") == "/dev/drbd0"
    assert mounted_source(text, "/data") is None


def test_prepare_does_nothing_for_a_service_twinbeat_does_not_configure(tmp_path: Path) -> None:
    fake = Fake(tmp_path, mounted=None)
    assert "does not exist" in fake.prepare("samba", None)[0]
    ds = services(str(fake.mp), nfs=False)
    assert "does not configure nfs" in fake.prepare("nfs", ds)[0]
    assert fake.calls() == []


@pytest.mark.parametrize(("mounted", "reason"), [
    (None, "is not mounted"), ("/dev/vdb1", r"holds /dev/vdb1, not a replicated \(DRBD\) device")])
def test_prepare_refuses_without_the_replicated_disk(tmp_path: Path, mounted: str | None,
                                                     reason: str) -> None:
    fake = Fake(tmp_path, mounted=mounted)
    ds = services(str(fake.mp))
    for service in ("samba", "nfs", "postgresql"):
        with pytest.raises(PrepareError, match=reason):
            fake.prepare(service, ds)
    assert fake.calls() == []
    assert list(fake.mp.iterdir()) == []


def test_prepare_samba_makes_the_state_and_imports_the_user_once(tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    ds = services(str(fake.mp))
    done = fake.prepare("samba", ds)
    mp = fake.mp
    for d in ("samba/private", "samba/state", "samba/cache", "shares/data"):
        assert (mp / d).is_dir(), d
    assert (mp / "samba/private").stat().st_mode & 0o777 == 0o700
    assert (mp / "shares/data").stat().st_mode & 0o7777 == 0o2770
    assert (str(mp / "shares/data"), 2000, 2000) in fake.chowns
    assert "added the share user alice to Samba's passdb" in done
    line = fake.imported.read_text()
    assert line.startswith(f"alice:2000:{'X' * 32}:{nt_hash('Secret-123')}:[U          ]:LCT-")
    assert not (tmp_path / "run/smbpasswd.import").exists()  # the hash is not left behind
    # again: the user is known, nothing is created or imported
    again = fake.prepare("samba", ds)
    assert again == [f"samba's state on /dev/drbd0 ({mp}) is ready"]
    assert [c.split()[:2] for c in fake.calls()] == [
        ["pdbedit", "-L"], ["pdbedit", "-i"], ["pdbedit", "-L"]]


def test_prepare_nfs_makes_statd_and_nfsdcld_directories(tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    ds = services(str(fake.mp))
    fake.prepare("nfs", ds)
    assert (fake.mp / "nfs/nfsdcld").is_dir() and (fake.mp / "nfs/v4recovery").is_dir()
    assert (str(fake.mp / "nfs/sm"), 106, 65534) in fake.chowns
    assert (str(fake.mp / "nfs/sm.bak"), 106, 65534) in fake.chowns
    assert (fake.mp / "shares/data").is_dir()
    (fake.mp / "nfs/sm/client1").write_text("x")
    fake.chowns.clear()
    fake.prepare("nfs", ds)
    assert fake.chowns == []  # nothing existing is touched
    assert (fake.mp / "nfs/sm/client1").read_text() == "x"


def test_prepare_postgresql_initialises_once(tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    ds = services(str(fake.mp))
    done = fake.prepare("postgresql", ds)
    data = fake.mp / "postgresql/17/main"
    assert (data / "PG_VERSION").read_text() == "17\n"
    # the time it took (the fake clock counts the lines the fake programs logged: runuser
    # and initdb, runuser and postgres)
    assert done[-1] == (f"initialised a new PostgreSQL cluster in {data} with database app "
                        "owned by appowner in 4.0 s")
    # Debian keeps the configuration in /etc: none is left in the data directory
    assert sorted(p.name for p in data.iterdir()) == ["PG_VERSION", "postgresql.auto.conf"]
    assert not (fake.mp / "postgresql/17/.main.initdb").exists()
    assert (str(fake.mp / "postgresql"), 105, 109) in fake.chowns
    assert fake.sql.read_text() == (
        f"CREATE ROLE \"appowner\" LOGIN PASSWORD '{SCRAM}';\n"
        "CREATE DATABASE \"app\" OWNER \"appowner\";\n")
    calls = fake.calls()
    assert calls[:2] == [
        "runuser -u postgres -- T/initdb -D T/srv/postgresql/17/.main.initdb "
        "--auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 "
        "--data-checksums --sync-method=syncfs", "initdb -D T/srv/postgresql/17/.main.initdb "
        "--auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 "
        "--data-checksums --sync-method=syncfs"]
    assert calls[3] == "postgres --single -D T/srv/postgresql/17/.main.initdb postgres"
    # the other node (or the next start) finds the cluster and leaves it alone
    n = len(calls)
    assert fake.prepare("postgresql", ds) == [
        f"postgresql's state on /dev/drbd0 ({fake.mp}) is ready"]
    assert len(fake.calls()) == n


def test_prepare_postgresql_fails_on_a_sql_error_and_leaves_no_cluster(tmp_path: Path) -> None:
    fake = Fake(tmp_path, sql_error=True)
    ds = services(str(fake.mp))
    with pytest.raises(PrepareError, match=r'cannot create the database: ERROR:  role "x"'):
        fake.prepare("postgresql", ds)
    assert not (fake.mp / "postgresql/17/main").exists()


def test_prepare_postgresql_restarts_an_unfinished_initialisation(tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    ds = services(str(fake.mp))
    half = fake.mp / "postgresql/17/.main.initdb"
    half.mkdir(parents=True)
    (half / "leftover").write_text("x")
    fake.prepare("postgresql", ds)
    assert not (fake.mp / "postgresql/17/main/leftover").exists()
    assert (fake.mp / "postgresql/17/main/PG_VERSION").exists()


def test_prepare_postgresql_refuses_a_foreign_data_directory(tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    ds = services(str(fake.mp))
    data = fake.mp / "postgresql/17/main"
    data.mkdir(parents=True)
    (data / "something").write_text("x")
    with pytest.raises(PrepareError, match="holds no PostgreSQL cluster"):
        fake.prepare("postgresql", ds)
    assert fake.calls() == []


def test_prepare_rejects_an_unknown_service_and_a_broken_file(tmp_path: Path) -> None:
    fake = Fake(tmp_path)
    with pytest.raises(PrepareError, match="unknown service 'ftp'"):
        asyncio.run(prepare("ftp", "", fake.tools))
    with pytest.raises(PrepareError, match=r"services\.toml: not valid TOML"):
        asyncio.run(prepare("samba", "share = [", fake.tools))
