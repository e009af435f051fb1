"""The wizard's data-service questions (file share, database): garbage re-asked with its
reason, Ctrl-C writes nothing, the rendered files, the seed keys, and the share user's
account on both nodes."""

from __future__ import annotations

import json
import re
import stat
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from firstboot import accounts, hardware, secret, seed
from firstboot import validate_services as vs
from firstboot.accounts import Account, AccountError
from firstboot.existing import previous_answers
from firstboot.model import build_setup, data_services
from firstboot.passwords import nt_hash
from firstboot.validate import Context, Invalid
from supervisor import dataservices as dsm
from supervisor.config import load_config
from tests.firstboot_support import (
    NODE1,
    PASSWORD,
    SSH_KEY,
    changes,
    drive,
    finish,
    make_root,
    spawn,
    tree_digest,
)

SHARE_PASSWORD = "Share-pass-2468"
DB_PASSWORD = "Db-pass-13579"
CODE_RE = re.compile(r"Shared secret code \[([0-9A-Z-]{29})\]")


def _index(prompt: str) -> int:
    return next(i for i, (p, _) in enumerate(NODE1) if p.startswith(prompt))


SECRET = _index("Shared secret code")
FILE_SHARE = _index("File share")
DATABASE = _index("PostgreSQL database")

# What node1 types for the data services: every bad answer first, each re-asked with its
# reason, then a good one.
DATA_STEPS: list[tuple[str, str, str | None]] = [
    # (prompt, answer, the error it must give or None)
    ("File share (smb, nfs, both or none) [none]: ", "ftp", "answer smb, nfs, both or none"),
    ("File share (smb, nfs, both or none) [none]: ", "both", None),
    ("Share name [data]: ", "homes", "one of Samba's own section names"),
    ("Share name [data]: ", "my share", "is not a share name Samba and NFS both take"),
    ("Share name [data]: ", "", None),
    ("Share user [share]: ", "root", "root is a system account"),
    ("Share user [share]: ", "alice", None),
    ("Share user's SMB password: ", "", "the share password cannot be empty"),
    ("Share user's SMB password: ", "password", "too weak"),
    ("Share user's SMB password: ", "alice-2468", "cannot contain the user's"),
    ("Share user's SMB password: ", SHARE_PASSWORD, None),
    ("Repeat the share password: ", "different-1", "the two passwords differ"),
    ("Share user's SMB password: ", SHARE_PASSWORD, None),
    ("Repeat the share password: ", SHARE_PASSWORD, None),
    ("NFS clients (a network) [192.168.85.0/24]: ", "192.168.85.1/24",
     "(the network is 192.168.85.0/24)"),
    ("NFS clients (a network) [192.168.85.0/24]: ", "", None),
    ("PostgreSQL database ('none' for none) [none]: ", "template1", "PostgreSQL's own"),
    ("PostgreSQL database ('none' for none) [none]: ", "app", None),
    ("Database owner [app]: ", "pg_monitor", "PostgreSQL's own"),
    ("Database owner [app]: ", "appowner", None),
    ("Database owner's password: ", "short", "too short"),
    ("Database owner's password: ", DB_PASSWORD, None),
    ("Repeat the database password: ", DB_PASSWORD, None),
]


@pytest.fixture
def root1(tmp_path: Path) -> Path:
    root = make_root(tmp_path / "node1", node=1)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "postgres:x:105:109::/var/lib/postgresql:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\npostgres:x:109:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/shadow").chmod(0o640)
    return root


def wizard_with_data(root: Path, stop_at_confirmation: bool = False) -> Any:
    child = spawn(root)
    drive(child, NODE1[:SECRET])
    child.expect(CODE_RE)
    child.sendline("")
    for prompt, answer, error in DATA_STEPS:
        child.expect_exact(prompt)
        child.sendline(answer)
        if error is not None:
            child.expect_exact("  error: ")
            child.expect_exact(error)
    rest = NODE1[DATABASE + 1:]
    drive(child, rest, stop_before=len(rest) - 1 if stop_at_confirmation else None)
    return child


def test_data_questions_reask_garbage_and_ctrl_c_writes_nothing(root1: Path) -> None:
    snapshot = tree_digest(root1)
    child = wizard_with_data(root1, stop_at_confirmation=True)
    text = child.before if isinstance(child.before, str) else ""
    assert "file share    data over SMB and NFS in /srv/shares, owned by alice" in text
    assert "NFS clients 192.168.85.0/24" in text
    assert "database      PostgreSQL 17: app owned by appowner" in text
    child.sendintr()
    assert finish(child) == 130
    assert tree_digest(root1) == snapshot


def test_data_services_are_written_with_hashed_passwords(root1: Path) -> None:
    before = tree_digest(root1)
    child = wizard_with_data(root1)
    child.expect_exact("wrote /etc/twinbeat/cluster.toml")
    assert finish(child) == 0
    changed = changes(before, root1)
    for path in ("etc/twinbeat/services.toml", "etc/samba/smb.conf",
                 "etc/exports.d/twinbeat.exports", "etc/nfs.conf.d/twinbeat.conf",
                 "etc/postgresql/17/main/conf.d/twinbeat.conf",
                 "etc/postgresql/17/main/pg_hba.conf", "etc/passwd", "etc/group",
                 "etc/shadow"):
        assert path in changed, path
    services = root1 / "etc/twinbeat/services.toml"
    assert stat.S_IMODE(services.stat().st_mode) == 0o600
    text = services.read_text()
    assert SHARE_PASSWORD not in text and DB_PASSWORD not in text
    ds = dsm.load_text(text)
    assert ds.share is not None and ds.database is not None
    assert ds.share.user == dsm.ShareUser("alice", 2000, nt_hash(SHARE_PASSWORD))
    assert ds.database.password.startswith("SCRAM-SHA-256$4096:")
    assert (root1 / "etc/samba/smb.conf").read_text() == dsm.smb_conf(ds)
    assert "alice:x:2000:2000:twinbeat file share:/nonexistent:/usr/sbin/nologin" in \
        (root1 / "etc/passwd").read_text().splitlines()
    assert (root1 / "etc/shadow").read_text().splitlines()[-1].startswith("alice:!:")
    assert stat.S_IMODE((root1 / "etc/shadow").stat().st_mode) == 0o640
    cfg = load_config(root1 / "etc/twinbeat/cluster.toml", check_devices=False,
                      check_authkeys=False)
    assert cfg.groups[0].resource_texts == (
        "IPaddr::192.168.85.3/24/eth0", "drbddisk::r0", "Filesystem::/dev/drbd0::/srv::ext4",
        "smbd.service", "nfs-server.service", "postgresql@17-main.service", "nginx.service")
    assert cfg.groups[0].start_timeout == 300.0  # (initdb at the first start)
    # --reconfigure offers the same choices (the passwords are asked again)
    prev = previous_answers(root1)
    assert {k: prev[k] for k in ("file_share", "share_name", "share_user", "nfs_clients",
                                 "database", "database_owner")} == {
        "file_share": "smb nfs", "share_name": "data", "share_user": "alice",
        "nfs_clients": "192.168.85.0/24", "database": "app", "database_owner": "appowner"}
    assert prev["services"] == "nginx.service"


def _seed(role: str, code: str, **extra: object) -> str:
    one, two = ("1", "2") if role == "node1" else ("2", "1")
    values: dict[str, object] = {
        "role": role, "hostname": f"node{one}", "peer_hostname": f"node{two}",
        "public_address": f"192.168.85.{one}/24", "crossover_address": f"10.0.0.{one}/24",
        "peer_public_address": f"192.168.85.{two}", "peer_crossover_address": f"10.0.0.{two}",
        "disk": "vdb", "secret": code, "root_password": PASSWORD, "ssh_key": SSH_KEY,
        "file_share": ["smb", "nfs"], "share_name": "data", "share_user": "alice",
        "share_password": SHARE_PASSWORD, "nfs_clients": "192.168.85.0/24",
        "database": "app", "database_owner": "appowner", "database_password": DB_PASSWORD,
    }
    values.update(extra)
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items() if v is not None)


def _ctx(root: Path) -> Context:
    return Context(hardware.discover(root), generated_code="X")


def test_seed_keys_configure_both_nodes_alike(tmp_path: Path) -> None:
    code = secret.generate_code(secret.SeededRng(5))
    setups = []
    for n, role in ((1, "node1"), (2, "node2")):
        root = make_root(tmp_path / role, node=n)
        data, problems = seed.parse_seed_text(_seed(role, code))
        assert problems == [] and data is not None
        result = seed.apply_seed(data, _ctx(root))
        assert result.problems == []
        setups.append(build_setup(result.answers, hardware.discover(root)))
    one, two = setups
    assert one.fingerprint() == two.fingerprint()
    a, b = data_services(one, b"salt-one" * 2), data_services(two, b"salt-two" * 2)
    assert a.share == b.share
    assert dsm.smb_conf(a) == dsm.smb_conf(b) and dsm.exports(a) == dsm.exports(b)
    assert a.database is not None and b.database is not None
    assert a.database.password != b.database.password  # each node salts its own verifier
    # a different database name is a different fingerprint: the nodes would disagree
    other = build_setup({**seed.apply_seed(seed.parse_seed_text(_seed(
        "node2", code, database="other"))[0] or {}, _ctx(make_root(
            tmp_path / "n2b", node=2))).answers}, hardware.discover(tmp_path / "n2b"))
    assert other.fingerprint() != one.fingerprint()


@pytest.mark.parametrize(("extra", "problem"), [
    ({"disk": "none"}, "file_share: a file share needs the replicated disk, and no disk was "
                       "chosen"),
    ({"disk": "none", "file_share": "none"}, "database: a database needs the replicated disk"),
    ({"share_password": "12345678"}, "share_password: the share password is too weak"),
    ({"nfs_clients": "everyone"}, "nfs_clients: 'everyone' is not a network"),
    ({"database_password": None}, "database_password: the database password cannot be empty"),
    ({"share_name": "a:b"}, "share_name: 'a:b' is not a share name"),
])
def test_bad_seed_values_are_listed(tmp_path: Path, extra: dict[str, object],
                                    problem: str) -> None:
    root = make_root(tmp_path / "n1", node=1)
    code = secret.generate_code(secret.SeededRng(5))
    data, problems = seed.parse_seed_text(_seed("node1", code, **extra))
    assert problems == [] and data is not None
    result = seed.apply_seed(data, _ctx(root))
    assert any(p.startswith(problem) for p in result.problems), result.problems


def test_no_disk_no_data_services_and_the_group_is_unchanged(tmp_path: Path) -> None:
    root = make_root(tmp_path / "n1", node=1)
    code = secret.generate_code(secret.SeededRng(5))
    data, _ = seed.parse_seed_text(_seed("node1", code, disk="none", file_share="none",
                                         database="none"))
    assert data is not None
    result = seed.apply_seed(data, _ctx(root))
    assert result.problems == []
    s = build_setup(result.answers, hardware.discover(root))
    assert s.resources == ("IPaddr::192.168.85.3/24/eth0",)
    # a pair without data services keeps the fingerprint it had before they existed
    bare = {k: v for k, v in result.answers.items() if k not in ("file_share", "database")}
    assert build_setup(bare, hardware.discover(root)).fingerprint() == s.fingerprint()


@pytest.mark.parametrize(("validator", "text", "ctx_answers", "error"), [
    (vs.file_share, "smb", {"disk": None}, "needs the replicated disk"),
    (vs.file_share, "smb ftp", {"disk": "vdb"}, "'ftp': answer smb"),
    (vs.share_user, "Alice", {}, "is not a user name"),
    (vs.share_password, "aaaaaaaa1", {}, "too weak"),
    (vs.share_password, " Padded-1234", {}, "without spaces at the ends"),
    (vs.share_password, "Pässwort-123", {}, "printable ASCII"),
    (vs.nfs_clients, "0.0.0.0/0", {}, "too wide"),
    (vs.database, "App", {"disk": "vdb"}, "is not a database name"),
    (vs.database_password, "appowner-77", {"database_owner": "appowner"},
     "cannot contain the user's"),
])
def test_validators_refuse_with_a_reason(tmp_path: Path, validator: Any, text: str,
                                         ctx_answers: dict[str, Any], error: str) -> None:
    ctx = Context(hardware.discover(make_root(tmp_path / "r", node=1)), answers=ctx_answers)
    with pytest.raises(Invalid, match=re.escape(error)):
        validator(text, ctx)


def test_validators_accept_good_answers(tmp_path: Path) -> None:
    ctx = Context(hardware.discover(make_root(tmp_path / "r", node=1)),
                  answers={"disk": "vdb", "public_address": IPv4Interface("192.168.85.1/24")})
    assert vs.file_share("both", ctx) == ("smb", "nfs")
    assert vs.file_share("NFS, smb", ctx) == ("smb", "nfs")
    assert vs.file_share("none", ctx) == ()
    assert vs.share_name("Team.Docs", ctx) == "Team.Docs"
    assert vs.nfs_clients(" 10.1.0.0/16 ", ctx) == "10.1.0.0/16"
    assert vs.database("none", ctx) is None
    assert vs.share_password("correct horse 9", ctx) == "correct horse 9"


# --------------------------------------------------------------------------------------------
# The share user's account


def test_account_is_added_once_with_the_same_ids(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:1:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    a = Account("alice", 2000, 2000)
    done = accounts.add_share_user(tmp_path, a, 20000)
    assert done == ["created user alice (uid 2000, no login) in /etc/passwd, /etc/group, "
                    "/etc/shadow, /etc/gshadow"]
    assert (etc / "group").read_text() == "root:x:0:\nalice:x:2000:\n"
    assert (etc / "gshadow").read_text() == "root:*::\nalice:!::\n"
    assert accounts.add_share_user(tmp_path, a, 20001) == [
        "user alice (uid 2000) already exists"]


@pytest.mark.parametrize(("passwd", "error"), [
    ("alice:x:1000:1000::/home/alice:/bin/sh\n", "exists with uid 1000 and gid 1000"),
    ("bob:x:2000:2000::/home/bob:/bin/sh\n", "uid 2000 already belongs to bob"),
])
def test_account_conflicts_are_refused_before_writing(tmp_path: Path, passwd: str,
                                                      error: str) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(passwd)
    with pytest.raises(AccountError, match=error):
        accounts.check_share_user(tmp_path, Account("alice", 2000, 2000))
    with pytest.raises(AccountError, match=error):
        accounts.add_share_user(tmp_path, Account("alice", 2000, 2000), 1)
    assert (tmp_path / "etc/passwd").read_text() == passwd
    assert not (tmp_path / "etc/group").exists()
