"""The node's identity on the state partition, against scratch directories: the bound
directories created on the first boot, the copied files saved, and a freshly written slot
seeded from the running one (identity files, root's password, the data services' files and
the share's account, enabled units)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from firstboot.passwords import scram_sha256
from supervisor import dataservices as dsm
from supervisor.dataservices import Database, DataServices, FileShare, ShareUser
from supervisor.lifecycle import persist
from tests.launcher_support import REPO, run_launcher

SHADOW_IMAGE = "root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n"
SHADOW_NEW = ("root:*:20100:0:99999:7:::\ndaemon:*:20100:0:99999:7:::\n"
              "newsvc:!:20100::::::\n")
ROOT_LINE = "root:$6$salt$hash:20050:0:99999:7:::"


def slot(base: Path, shadow: str, units: dict[str, str], links: dict[str, str]) -> Path:
    (base / "etc/systemd/system").mkdir(parents=True)
    (base / "usr/lib/systemd/system").mkdir(parents=True)
    (base / "etc/shadow").write_text(shadow)
    os.chmod(base / "etc/shadow", 0o640)
    (base / "etc/machine-id").write_text("")
    (base / "etc/hostname").write_text("twinbeat\n")
    (base / "etc/hosts").write_text("127.0.0.1 localhost\n")
    for unit in units:
        (base / "usr/lib/systemd/system" / unit).write_text("[Unit]\n")
    for rel, target in links.items():
        link = base / "etc/systemd/system" / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    return base


def test_prepare_creates_each_bound_directory_once_from_the_slot(tmp_path: Path) -> None:
    root, state = tmp_path / "root", tmp_path / "persist"
    (root / "etc/drbd.d").mkdir(parents=True)
    (root / "etc/drbd.d/global_common.conf").write_text("global {}\n")
    (root / "root").mkdir()
    (root / "root/.bashrc").write_text("# bash\n")
    done = persist.prepare(root, state)
    assert len(done) == len(persist.BOUND)
    for rel, mode in persist.BOUND:
        assert (state / rel).is_dir(), rel
        assert (state / rel).stat().st_mode & 0o7777 == mode, rel
    assert (state / "etc/drbd.d/global_common.conf").read_text() == "global {}\n"
    assert (state / "root/.bashrc").read_text() == "# bash\n"
    assert not list(state.glob("**/.*.*"))  # no temporary directory left behind
    # the second boot: what the node wrote there stays
    (state / "etc/twinbeat/cluster.toml").write_text("[cluster]\n")
    assert persist.prepare(root, state) == []
    assert (state / "etc/twinbeat/cluster.toml").read_text() == "[cluster]\n"


def test_save_keeps_the_copied_files_and_roots_password_only(tmp_path: Path) -> None:
    root = slot(tmp_path / "root", ROOT_LINE + "\ndaemon:*:1::::::\n", {}, {})
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/hostname").write_text("node1\n")
    done = persist.save(root, tmp_path / "persist")
    ident = tmp_path / "persist/identity"
    assert (ident / "machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"
    assert (ident / "hostname").read_text() == "node1\n"
    assert (ident / "root.shadow").read_text() == ROOT_LINE + "\n"
    assert (ident / "root.shadow").stat().st_mode & 0o777 == 0o600
    assert "saved root's password" in done


def test_an_empty_machine_id_is_not_saved(tmp_path: Path) -> None:
    root = slot(tmp_path / "root", SHADOW_IMAGE, {}, {})
    persist.save(root, tmp_path / "persist")
    assert not (tmp_path / "persist/identity/machine-id").exists()


def test_a_new_slot_gets_this_nodes_identity_and_its_own_users(tmp_path: Path) -> None:
    units = {"twinbeat.service": "", "twinbeat-demo-web.service": "", "ssh.service": ""}
    running = slot(tmp_path / "running", ROOT_LINE + "\ndaemon:*:20000:0:99999:7:::\n", units, {
        # the wizard enabled twinbeat and took the demo service out of the boot
        "multi-user.target.wants/twinbeat.service": "/usr/lib/systemd/system/twinbeat.service",
        "multi-user.target.wants/ssh.service": "/usr/lib/systemd/system/ssh.service",
    })
    (running / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (running / "etc/hostname").write_text("node1\n")
    (running / "etc/hosts").write_text("10.0.0.2 node2\n")
    new_units = {**units, "newthing.service": ""}
    new = slot(tmp_path / "new", SHADOW_NEW, new_units, {
        # the new image's presets: the demo on, twinbeat off, a new unit on
        "multi-user.target.wants/twinbeat-demo-web.service":
            "/usr/lib/systemd/system/twinbeat-demo-web.service",
        "multi-user.target.wants/ssh.service": "/usr/lib/systemd/system/ssh.service",
        "multi-user.target.wants/newthing.service": "/usr/lib/systemd/system/newthing.service",
    })
    done = persist.seed_slot(running, new)
    assert (new / "etc/machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"
    assert (new / "etc/hostname").read_text() == "node1\n"
    assert (new / "etc/hosts").read_text() == "10.0.0.2 node2\n"
    shadow = (new / "etc/shadow").read_text().splitlines()
    assert shadow == [ROOT_LINE, "daemon:*:20100:0:99999:7:::", "newsvc:!:20100::::::"]
    assert (new / "etc/shadow").stat().st_mode & 0o777 == 0o640
    wants = new / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == [
        "newthing.service", "ssh.service", "twinbeat.service"]
    assert os.readlink(wants / "twinbeat.service") == "/usr/lib/systemd/system/twinbeat.service"
    assert "enabled multi-user.target.wants/twinbeat.service" in done
    assert "disabled multi-user.target.wants/twinbeat-demo-web.service" in done


def test_seed_slots_ignores_other_slot_classes(tmp_path: Path) -> None:
    assert persist.seed_slots({"RAUC_TARGET_SLOTS": "1", "RAUC_SLOT_CLASS_1": "efi"},
                              tmp_path) == []


ROOT = Path(__file__).resolve().parent.parent


def test_every_bound_directory_has_its_fstab_bind_and_a_mount_point_in_the_image() -> None:
    """The image's /etc/fstab binds exactly persist.BOUND from /persist, and mkosi.finalize
    makes each mount point (the image test checks the built image; this one the sources)."""
    binds = {}
    for line in (ROOT / "mkosi.extra/etc/fstab").read_text().splitlines():
        fields = line.split()
        if fields and not line.startswith("#") and fields[2] == "none":
            binds[fields[1]] = fields
    assert sorted(binds) == sorted("/" + rel for rel, _ in persist.BOUND)
    for target, row in binds.items():
        assert row[0] == "/persist" + target
        assert "x-systemd.requires=twinbeat-persist.service" in row[3].split(",")
    finalize = (ROOT / "mkosi.finalize").read_text()
    for rel, _ in persist.BOUND:
        if rel != "root":  # /root is in every Debian image
            assert f'"$BUILDROOT/{rel}"' in finalize, rel


def test_the_supervisors_state_and_its_generation_are_on_the_state_partition() -> None:
    from supervisor.statefiles import DEFAULT_STATE_DIR

    assert str(DEFAULT_STATE_DIR).lstrip("/") in {rel for rel, _ in persist.BOUND}


def test_a_node_back_with_a_lower_generation_is_not_heard_by_its_peer() -> None:
    """Why: the peer drops every beat of an older generation as a replay. A node that booted
    a freshly written slot with its own state directory would start again at generation 1
    and stay dead for its peer; with the counter on /persist it goes on growing."""
    from tests.sim import Sim, make_config

    sim = Sim(make_config())
    sim.run(3.0)
    for _ in range(2):  # node2 has started a few times on this slot
        sim.kill("node2")
        sim.run(10.0)
        sim.restart("node2")
        sim.run(5.0)
    gen = sim.nodes["node2"].generation
    assert gen == 3 and sim.status("node1")["peer"]["state"] == "alive"
    sim.kill("node2")
    sim.run(10.0)
    sim._boot("node2", 1, sim.now)  # a fresh slot: /var/lib/twinbeat/generation reset
    sim.run(10.0)
    st = sim.status("node1")
    assert st["peer"]["state"] == "dead" and st["dropped"]["replay"] > 0
    sim.kill("node2")
    sim.run(10.0)
    sim._boot("node2", gen + 2, sim.now)  # the counter carried on /persist
    sim.run(10.0)
    assert sim.status("node1")["peer"]["state"] == "alive"


def test_everything_the_wizard_writes_is_carried_into_a_new_slot() -> None:
    """Each file of the wizard's golden output is on /persist (under a bound directory), one
    of the files copied into a new slot, or root's password (carried from /etc/shadow): an
    update keeps the node itself. A new answer of the wizard written elsewhere fails here."""
    golden = ROOT / "tests/golden/firstboot/node1"
    bound = [rel for rel, _ in persist.BOUND]
    for path in sorted(golden.rglob("*")):
        if path.is_dir() or path.name == "MANIFEST":
            continue
        rel = path.relative_to(golden).as_posix()
        carried = (rel in persist.COPIED or rel == persist.SHADOW
                   or any(rel.startswith(b + "/") for b in bound))
        assert carried, f"/{rel} is written by the wizard but lost by an update"


def test_the_early_services_reading_a_bound_directory_wait_for_the_bind() -> None:
    """systemd-networkd and systemd-timesyncd start before local-fs.target is reached
    (DefaultDependencies=no): each gets RequiresMountsFor= its bound directory, or it would
    read the slot's empty folder on every boot after the first."""
    units = ROOT / "mkosi.extra/usr/lib/systemd/system"
    for service, folder in (("systemd-networkd", "/etc/systemd/network"),
                            ("systemd-timesyncd", "/etc/systemd/timesyncd.conf.d")):
        assert folder.lstrip("/") in {rel for rel, _ in persist.BOUND}
        dropin = (units / f"{service}.service.d/twinbeat-persist.conf").read_text()
        assert f"RequiresMountsFor={folder}" in dropin.splitlines(), service


SCRAM = scram_sha256("s3cret-pass", b"0123456789abcdef")
# the wizard's data services with every choice (a share over SMB and NFS, a database)
ALL_SERVICES = DataServices("/srv", "TWINBEAT", FileShare(
    "data", ShareUser("alice", 2000, "0" * 32), smb=True, nfs=True,
    nfs_clients="192.168.85.0/24"), Database("app", "appowner", SCRAM,
                                             "192.168.85.0/24"))


def test_every_data_service_file_the_wizard_writes_is_carried_into_a_new_slot() -> None:
    """The wizard's data-service files (supervisor.dataservices.render_all, what it writes
    with a replicated disk) are on /persist or copied into a new slot: a new service file
    written elsewhere fails here."""
    bound = [rel for rel, _ in persist.BOUND]
    rendered = dsm.render_all(ALL_SERVICES)
    assert len(rendered) == 6
    for f in rendered:
        rel = f.path.lstrip("/")
        assert rel in persist.service_files() or any(rel.startswith(b + "/") for b in bound), \
            f"{f.path} is written by the wizard but lost by an update"


def test_a_new_slot_gets_the_data_services_files_and_the_share_users_account(
        tmp_path: Path) -> None:
    """The running slot's smb.conf, exports, nfs.conf.d and PostgreSQL files and the share
    user's lines in passwd/group/shadow/gshadow reach the new slot; a file keeps the new
    slot's owner (postgres's ids there) and the running file's mode; the new slot's other
    accounts stay."""
    running = slot(tmp_path / "running", ROOT_LINE + "\nalice:!:20060:0:99999:7:::\n", {}, {})
    new = slot(tmp_path / "new", SHADOW_NEW, {}, {})
    (running / "etc/twinbeat").mkdir(parents=True)
    (running / "etc/twinbeat/services.toml").write_text(dsm.dump(ALL_SERVICES))
    files = {f.path.lstrip("/"): f for f in dsm.render_all(ALL_SERVICES)}
    for rel in persist.service_files():
        (running / rel).parent.mkdir(parents=True, exist_ok=True)
        (running / rel).write_text(files[rel].content)
    os.chmod(running / dsm.PG_HBA.lstrip("/"), 0o640)
    (running / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\npostgres:x:105:109::/var/lib/postgresql:/bin/bash\n"
        "alice:x:2000:2000:twinbeat file share:/nonexistent:/usr/sbin/nologin\n")
    (running / "etc/group").write_text("root:x:0:\npostgres:x:109:\nalice:x:2000:\n")
    # the new image: postgres has other ids, its cluster's folder and pg_hba.conf are its own,
    # the share's folders for NFS do not exist yet
    (new / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\npostgres:x:106:110::/var/lib/postgresql:/bin/bash\n")
    (new / "etc/group").write_text("root:x:0:\npostgres:x:110:\n")
    (new / "etc/gshadow").write_text("root:*::\n")
    os.chmod(new / "etc/gshadow", 0o640)
    pg = new / "etc/postgresql/17/main"
    (pg / "conf.d").mkdir(parents=True)
    (pg / "pg_hba.conf").write_text("local all all peer\n")
    for path in (pg / "conf.d", pg / "pg_hba.conf"):
        os.chown(path, 106, 110)
    (new / "etc/samba").mkdir(parents=True)
    (new / "etc/samba/smb.conf").write_text("[global]\n")
    done = persist.seed_slot(running, new)
    for rel in persist.service_files():
        assert (new / rel).read_text() == files[rel].content, rel
        assert f"/{rel}" in done
    hba, conf = (new / dsm.PG_HBA.lstrip("/")).stat(), (new / dsm.PG_CONF.lstrip("/")).stat()
    assert (hba.st_uid, hba.st_gid, hba.st_mode & 0o777) == (106, 110, 0o640)
    assert (conf.st_uid, conf.st_gid) == (106, 110)  # its folder's owner
    assert (new / "etc/passwd").read_text().splitlines() == [
        "root:x:0:0:root:/root:/bin/bash", "postgres:x:106:110::/var/lib/postgresql:/bin/bash",
        "alice:x:2000:2000:twinbeat file share:/nonexistent:/usr/sbin/nologin"]
    assert (new / "etc/group").read_text().splitlines() == [
        "root:x:0:", "postgres:x:110:", "alice:x:2000:"]
    assert (new / "etc/shadow").read_text().splitlines() == [
        ROOT_LINE, "daemon:*:20100:0:99999:7:::", "newsvc:!:20100::::::",
        "alice:!:20060:0:99999:7:::"]
    assert (new / "etc/shadow").stat().st_mode & 0o777 == 0o640
    assert (new / "etc/gshadow").read_text() == "root:*::\n"  # alice has no line here
    assert "alice in /etc/passwd" in done and "alice in /etc/shadow" in done


def test_without_a_share_no_account_is_carried(tmp_path: Path) -> None:
    running = slot(tmp_path / "running", ROOT_LINE + "\nalice:!:1::::::\n", {}, {})
    new = slot(tmp_path / "new", SHADOW_NEW, {}, {})
    (running / "etc/twinbeat").mkdir(parents=True)
    (running / "etc/twinbeat/services.toml").write_text(
        dsm.dump(DataServices("/srv", "TWINBEAT", None, ALL_SERVICES.database)))
    persist.seed_slot(running, new)
    assert "alice" not in (new / "etc/shadow").read_text()


def test_account_lines_replace_the_entry_of_the_same_name_or_are_appended() -> None:
    text = "root:x:0:\nalice:x:1999:\nbob:x:3000:\n"
    assert persist.account_lines_with(text, ["alice:x:2000:", "carol:x:2001:"]) == (
        "root:x:0:\nalice:x:2000:\nbob:x:3000:\ncarol:x:2001:\n")
    assert persist.account_lines_with("", ["alice:x:2000:"]) == "alice:x:2000:\n"



def test_the_launcher_runs_persist_without_the_full_command_line() -> None:
    """/usr/bin/twinbeat persist skips supervisor.cli and asyncio: twinbeat-persist.service
    runs `persist prepare` on every boot before the bind mounts (its start-up held a
    rebooted node's network and supervisor up by 12.5 s under TCG)."""
    r = run_launcher(["persist", "--help"], ("supervisor.cli", "asyncio"))
    assert r.returncode == 0, r.stderr
    assert "{prepare,save,seed-slots}" in r.stdout
    assert "LOADED False False" in r.stdout


def test_persist_says_why_it_failed_and_exits_1(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("not a folder")
    assert persist.run_action("prepare", tmp_path / "file") == 1
    assert "twinbeat: persist prepare: " in capsys.readouterr().err


def test_the_full_command_line_runs_the_same_persist(monkeypatch) -> None:
    from supervisor.cli import main

    seen: list[str] = []

    def run_action(action: str) -> int:
        seen.append(action)
        return 3

    monkeypatch.setattr(persist, "run_action", run_action)
    assert main(["persist", "save"]) == 3
    assert seen == ["save"]


def test_a_new_slot_keeps_the_nodes_tls_key_and_certificate(tmp_path: Path) -> None:
    """The key made on the first boot reaches the new slot with its mode (0640) and the
    group of the new slot's /etc/ssl/private (ssl-cert's id there), so that the new slot's
    twinbeat-ssl-cert.service (ConditionPathExists=!key) makes no other key."""
    running = slot(tmp_path / "running", ROOT_LINE + "\n", {}, {})
    new = slot(tmp_path / "new", SHADOW_NEW, {}, {})
    key, cert = persist.TLS_FILES
    for base in (running, new):
        (base / key).parent.mkdir(parents=True)
        (base / cert).parent.mkdir(parents=True)
    os.chown(running / key.rsplit("/", 1)[0], 0, 111)
    os.chown(new / key.rsplit("/", 1)[0], 0, 112)  # ssl-cert has another id in the new image
    (running / key).write_text("-----BEGIN PRIVATE KEY-----\nnode1\n")
    os.chown(running / key, 0, 111)
    os.chmod(running / key, 0o640)
    (running / cert).write_text("-----BEGIN CERTIFICATE-----\nnode1\n")
    done = persist.seed_slot(running, new)
    assert (new / key).read_text() == "-----BEGIN PRIVATE KEY-----\nnode1\n"
    st = (new / key).stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 112, 0o640)
    assert (new / cert).read_text() == "-----BEGIN CERTIFICATE-----\nnode1\n"
    assert f"/{key}" in done and f"/{cert}" in done
    unit = (REPO / "mkosi.extra/usr/lib/systemd/system/twinbeat-ssl-cert.service").read_text()
    assert f"ConditionPathExists=!/{key}" in unit


def test_persist_prepare_as_the_unit_runs_it_imports_only_what_it_uses() -> None:
    """`twinbeat persist prepare` (twinbeat-persist.service, every boot, on the way to the
    network and the supervisor) parses no options and loads neither argparse nor the data
    services' code nor tempfile (it writes nothing once the first boot made the folders)."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "import supervisor.lifecycle.persist as p\n"
            "p.run_action = lambda action: print('RAN', action) or 0\n"
            "assert p.main(['prepare']) == 0\n"
            "print('LOADED', *(m in sys.modules for m in "
            "('argparse', 'supervisor.dataservices', 'tempfile', 'shutil', 'asyncio')))")
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                       check=False, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["RAN prepare", "LOADED False False False False False"]
