"""The wizard's pure parts: codes, hardware discovery, validators, seeds, rendering, writing."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from firstboot import hardware, render, secret, seed, validate, writer
from firstboot.console import ConsoleClaim
from firstboot.existing import previous_answers, root_login_set
from firstboot.model import build_setup
from firstboot.questions import QUESTIONS, default_for
from firstboot.validate import Context, Invalid
from supervisor import atomicfile
from supervisor.config import load_config
from supervisor.settings import toml_string
from tests.firstboot_support import SSH_KEY, add_disk, make_root

# --------------------------------------------------------------------------------------------
# The shared secret code


def test_code_shape_and_round_trip() -> None:
    rng = secret.SeededRng(1)
    code = secret.generate_code(rng)
    groups = code.split("-")
    assert len(groups) == 6 and all(len(g) == 4 for g in groups)
    assert secret.parse_code(code) == code
    assert secret.parse_code(code.lower().replace("-", " ")) == code
    # the same seed, the same code (tests rely on it); another seed, another code
    assert secret.generate_code(secret.SeededRng(1)) == code
    assert secret.generate_code(secret.SeededRng(2)) != code


def test_confusable_letters_are_read_as_digits() -> None:
    data = "0011" * 5
    code = secret._group(data + secret.check_group(data))
    assert secret.parse_code(code.replace("0", "O").replace("1", "l")) == code


@pytest.mark.parametrize("seed_value", range(5))
def test_every_single_typo_and_swap_is_caught(seed_value: int) -> None:
    code = secret.generate_code(secret.SeededRng(seed_value))
    chars = code.replace("-", "")
    for i, c in enumerate(chars):
        for other in secret.ALPHABET:
            if other != c:
                typo = chars[:i] + other + chars[i + 1:]
                with pytest.raises(ValueError, match="check group"):
                    secret.parse_code(typo)
        if i + 1 < len(chars) and chars[i] != chars[i + 1]:
            swapped = chars[:i] + chars[i + 1] + chars[i] + chars[i + 2:]
            with pytest.raises(ValueError, match="check group"):
                secret.parse_code(swapped)


def test_code_length_and_alphabet_errors() -> None:
    with pytest.raises(ValueError, match="has 3 characters"):
        secret.parse_code("ABC")
    with pytest.raises(ValueError, match="'U' does not occur"):
        secret.parse_code("U" * 24)
    with pytest.raises(ValueError, match="type the code"):
        secret.parse_code("  - ")


# --------------------------------------------------------------------------------------------
# Hardware discovery


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


def test_discovers_the_fake_machine(root: Path) -> None:
    hw = hardware.discover(root)
    assert [(n.name, n.mac, n.driver, n.carrier) for n in hw.nics] == [
        ("eth0", "52:54:00:00:01:01", "virtio_net", True),
        ("eth1", "52:54:00:00:01:02", "virtio_net", True),
    ]
    assert [(p.name, p.is_console) for p in hw.serial_ports] == [
        ("ttyS0", True),
        ("ttyS1", False),
    ]  # ttyS2 has no UART
    assert hw.consoles == ("tty1", "ttyS0")
    disks = {d.name: d for d in hw.disks}
    assert set(disks) == {"vda", "vdb"}  # loop0 is never offered
    assert disks["vda"].in_use == "holds / (the running system)"
    assert disks["vda"].contents == "partitions (vda1, vda2)"
    assert disks["vdb"].in_use is None and disks["vdb"].contents is None
    assert disks["vdb"].size_bytes == 1 << 30 and disks["vdb"].model == "virtio disk"
    assert hw.offered_services == ("nginx.service",)
    assert "systemd-networkd.service" in hw.services
    assert "getty@.service" not in hw.services


def test_virtual_cards_are_not_listed(root: Path) -> None:
    (root / "sys/class/net/br0").mkdir()
    (root / "sys/class/net/br0/address").write_text("aa:bb:cc:dd:ee:ff\n")
    (root / "sys/class/net/lo").mkdir()
    assert [n.name for n in hardware.discover_nics(root)] == ["eth0", "eth1"]


def test_disk_under_lvm_root_is_in_use(tmp_path: Path) -> None:
    root = tmp_path / "r"
    add_disk(root, "sda", 1000, "8:0", model="SSD 1", partitions=[("sda1", "8:1")])
    add_disk(root, "sdb", 1000, "8:16", model="HDD 2")
    (root / "sys/block/dm-0/slaves").mkdir(parents=True)
    (root / "sys/block/dm-0/slaves/sda1").mkdir()
    (root / "sys/block/dm-0/dev").write_text("253:0\n")
    (root / "sys/block/dm-0/size").write_text("900\n")
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(
        "22 1 253:0 / / rw - ext4 /dev/mapper/vg-root rw\n"
    )
    disks = {d.name: d for d in hardware.discover_disks(root)}
    assert set(disks) == {"sda", "sdb"}
    assert disks["sda"].in_use == "holds / (the running system)"
    assert disks["sdb"].in_use is None
    assert disks["sdb"].model == "HDD 2"


def test_swap_and_holders_put_a_disk_in_use(tmp_path: Path) -> None:
    root = tmp_path / "r"
    add_disk(root, "sda", 1000, "8:0", model="A")
    add_disk(root, "sdb", 1000, "8:16", model="B")
    (root / "sys/block/sdb/holders/md0").mkdir(parents=True)
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc/swaps").write_text("Filename Type Size Used Priority\n/dev/sda partition 1 0 0\n")
    disks = {d.name: d for d in hardware.discover_disks(root)}
    assert disks["sda"].in_use == "is used as swap"
    assert disks["sdb"].in_use == "is used by md0"


@pytest.mark.parametrize(
    ("offset", "magic", "what"),
    [
        (1080, b"\x53\xef", "ext2/3/4"),
        (0, b"XFSB", "XFS"),
        (512, b"EFI PART", "GPT"),
        (510, b"\x55\xaa", "MBR"),
        (0x10040, b"_BHRfS_M", "Btrfs"),
        (4086, b"SWAPSPACE2", "swap"),
        (100, b"x", "unknown kind"),
    ],
)
def test_disk_contents_are_recognised(offset: int, magic: bytes, what: str) -> None:
    head = bytearray(0x10060)
    head[offset:offset + len(magic)] = magic
    found = hardware.identify_contents(bytes(head))
    assert found is not None and what in found
    assert hardware.identify_contents(bytes(0x10060)) is None


def test_disk_with_a_file_system_is_listed_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "r"
    add_disk(root, "vdb", 1000, "254:16", content=b"\0" * 1080 + b"\x53\xef")
    hw = hardware.discover(root)
    assert hw.disks[0].contents == "an ext2/3/4 file system"
    ctx = Context(hw)
    assert validate.disk("vdb", ctx) == "vdb"
    assert validate.disk_warnings("vdb", ctx) == [
        "vdb holds an ext2/3/4 file system: replication will overwrite it"
    ]
    # a disk with data is never the default
    q = next(q for q in QUESTIONS if q.key == "disk")
    assert default_for(q, ctx) == "none"


# --------------------------------------------------------------------------------------------
# Validators


def ctx_for(root: Path, **answers: Any) -> Context:
    return Context(hardware.discover(root), answers=dict(answers), generated_code="X")


def test_validators_accept_the_usual_forms(root: Path) -> None:
    ctx = ctx_for(root)
    assert validate.role("2", ctx) == "node2"
    assert validate.public_address(" 192.168.85.1/255.255.255.0 ", ctx) == IPv4Interface(
        "192.168.85.1/24"
    )
    ctx.answers["public_address"] = IPv4Interface("192.168.85.1/24")
    assert validate.gateway("none", ctx) is None
    assert validate.dns("1.1.1.1, 9.9.9.9 1.1.1.1", ctx) == (
        IPv4Address("1.1.1.1"),
        IPv4Address("9.9.9.9"),
    )
    assert validate.serial_port("/dev/ttyS1", ctx) == "ttyS1"
    assert validate.services("nginx, nginx.service", ctx) == ("nginx.service",)
    assert validate.yes_no("Y", ctx) is True
    assert validate.ssh_key(SSH_KEY, ctx) == SSH_KEY


@pytest.mark.parametrize(
    ("func", "text", "message"),
    [
        (validate.hostname, "", "cannot be empty"),
        (validate.hostname, "a" * 70, "too long"),
        (validate.hostname, "localhost", "cannot be a cluster node's name"),
        (validate.cluster_name, "my cluster", "not a valid name"),
        (validate.public_address, "fe80::1/64", "IPv4 addresses only"),
        (validate.public_address, "127.0.0.1/8", "loopback"),
        (validate.public_address, "192.168.85.0/24", "network address"),
        (validate.public_address, "192.168.85.1/30", "out of range (8-29)"),
        (validate.public_address, "192.168.85.1/255.0.255.0", "netmask"),
        (validate.public_address, "192.168.85.1/x", "is not a number"),
        (validate.dns, "1.1.1.1 1.0.0.1 8.8.8.8 9.9.9.9", "at most three"),
        (validate.role, "master", "is not a role"),
        (validate.yes_no, "maybe", "answer yes or no"),
        (validate.baud, "fast", "not a standard baud rate"),
        (validate.root_password_hash, "plain", "not a crypt(3) hash"),
        (validate.services, "foo.socket", "only services"),
    ],
)
def test_validators_reject(root: Path, func: Any, text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        func(text, ctx_for(root))


def test_floating_with_a_prefix_is_refused(root: Path) -> None:
    ctx = ctx_for(root, public_address=IPv4Interface("192.168.85.1/24"),
                  peer_public_address=IPv4Address("192.168.85.2"), gateway=None)
    with pytest.raises(Invalid, match="give the address alone"):
        validate.floating_addresses("192.168.85.3/24", ctx)
    with pytest.raises(Invalid, match="listed twice"):
        validate.floating_addresses("192.168.85.3 192.168.85.3", ctx)
    assert validate.floating_addresses("192.168.85.3,192.168.85.4", ctx) == (
        IPv4Address("192.168.85.3"),
        IPv4Address("192.168.85.4"),
    )


def test_defaults_follow_the_role(root: Path) -> None:
    ctx = ctx_for(root, role="node2", hostname="linuxha2")
    by = {q.key: q for q in QUESTIONS}
    assert default_for(by["peer_hostname"], ctx) == "linuxha1"
    assert default_for(by["public_address"], ctx) == "192.168.85.2/24"
    ctx.answers.update(public_address=IPv4Interface("10.0.0.7/8"), role="node2")
    assert default_for(by["gateway"], ctx) == "10.255.255.254"
    assert default_for(by["crossover_address"], ctx) == "172.16.0.2/24"  # 10/8 is taken
    ctx.answers["gateway"] = IPv4Address("10.0.0.6")
    assert default_for(by["peer_public_address"], ctx) == "10.0.0.5"  # skips the gateway
    ctx.answers["peer_public_address"] = IPv4Address("10.0.0.5")
    assert default_for(by["floating_addresses"], ctx) == "10.0.0.8"
    assert default_for(by["secret"], ctx) is None  # node2 types node1's code


# --------------------------------------------------------------------------------------------
# Seeds


def test_example_seed_is_valid_for_the_machine_it_describes(root: Path) -> None:
    text = seed.example_seed(secret.SeededRng(7))
    data, problems = seed.parse_seed_text(text)
    assert problems == [] and data is not None
    assert data["role"] == "node1"
    result = seed.apply_seed(data, ctx_for(root))
    assert result.problems == []
    assert result.answers["disk"] == "vdb"
    assert result.answers["serial_port"] == "ttyS1"
    for q in QUESTIONS:
        # smarthost is asked only with mail_to, which the example leaves at "none"; the
        # data services' details are shown commented out (they need choosing)
        if q.interactive and q.key not in ("baud", "smarthost"):
            assert f"\n{q.key} = " in text or f"\n#   {q.key} = " in text, q.key
    assert result.answers["mail_to"] is None and "smarthost" not in result.answers
    assert result.answers["ntp_server"] == "192.168.85.254"
    # ... and the commented example is valid as it stands
    lines = [line for line in text.splitlines()
             if not line.startswith(("file_share = ", "database = "))]
    uncommented = "\n".join(line.removeprefix("#   ") for line in lines) + "\n"
    data, problems = seed.parse_seed_text(uncommented)
    assert problems == [] and data is not None
    result = seed.apply_seed(data, ctx_for(root))
    assert result.problems == []
    assert result.answers["file_share"] == ("smb", "nfs")
    assert result.answers["database"] == "app"


def test_seed_problems_are_all_listed(root: Path) -> None:
    data, problems = seed.parse_seed_text(
        'role = "node3"\nhostnme = "x"\npublic_address = {a = 1}\n'
    )
    assert data is not None
    assert problems == ["hostnme: unknown key (did you mean 'hostname'?)"]
    result = seed.apply_seed(data, ctx_for(root))
    assert "role: 'node3' is not a role: type node1 or node2" in result.problems
    assert any(p.startswith("public_address: expected a string") for p in result.problems)
    assert seed.parse_seed_text("role = ")[0] is None


def test_seed_needs_a_role(root: Path) -> None:
    result = seed.apply_seed({"hostname": "a"}, ctx_for(root))
    assert "role: missing (this key is required)" in result.problems


def test_lsblk_listing_selects_esp_and_labelled_sticks() -> None:
    listing = json.dumps({"blockdevices": [
        {"path": "/dev/vda", "label": None, "parttype": None, "fstype": None, "children": [
            {"path": "/dev/vda1", "label": "ESP", "fstype": "vfat",
             "parttype": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},
            {"path": "/dev/vda2", "label": "root", "fstype": "ext4", "parttype": "x"},
        ]},
        {"path": "/dev/sdb", "label": None, "parttype": None, "fstype": None, "children": [
            {"path": "/dev/sdb1", "label": "twinbeat", "fstype": "vfat", "parttype": "0xc"},
        ]},
        {"path": "/dev/sdc", "label": "TWINBEAT", "parttype": None, "fstype": None},
    ]})
    assert seed.seed_partitions(listing) == ["/dev/vda1", "/dev/sdb1"]
    assert seed.seed_partitions("not json") == []


def test_seed_is_read_from_a_mounted_partition() -> None:
    calls: list[list[str]] = []

    def runner(cmd: Sequence[str], input_text: str | None) -> str:
        calls.append(list(cmd))
        if cmd[0] == "lsblk":
            return json.dumps({"blockdevices": [
                {"path": "/dev/sdb1", "label": "TWINBEAT", "fstype": "vfat", "parttype": None},
            ]})
        if cmd[0] == "mount":
            Path(cmd[-1], seed.SEED_FILE).write_text('role = "node2"\n')
        if cmd[0] == "umount":
            Path(cmd[-1], seed.SEED_FILE).unlink()
        return ""

    found = seed.from_partitions(runner)
    assert found is not None
    assert found.where == "twinbeat-seed.toml on /dev/sdb1"
    assert found.text == 'role = "node2"\n'
    assert [c[0] for c in calls] == ["lsblk", "mount", "umount"]
    assert "ro,nosuid,nodev,noexec" in calls[1]


def test_partition_kinds_tell_the_boot_partition_from_a_stick() -> None:
    listing = json.dumps({"blockdevices": [
        {"path": "/dev/vda1", "label": "TWINBEAT", "fstype": "vfat",
         "parttype": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},
        {"path": "/dev/sdb1", "label": "TWINBEAT", "fstype": "vfat", "parttype": "0xc"},
    ]})
    assert seed.partition_kinds(listing) == [("/dev/vda1", "esp"), ("/dev/sdb1", "usb")]


def test_seed_found_on_a_partition_knows_its_kind_and_device() -> None:
    def runner(cmd: Sequence[str], input_text: str | None) -> str:
        if cmd[0] == "lsblk":
            return json.dumps({"blockdevices": [
                {"path": "/dev/vda1", "label": None, "fstype": "vfat",
                 "parttype": "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"}]})
        if cmd[0] == "mount":
            Path(cmd[-1], seed.SEED_FILE).write_text('role = "node1"\n')
        if cmd[0] == "umount":
            Path(cmd[-1], seed.SEED_FILE).unlink()
        return ""

    found = seed.from_partitions(runner)
    assert found is not None
    assert (found.kind, found.device, found.path) == ("esp", "/dev/vda1", None)


SECRET_SEED = 'role = "node1"\nroot_password = "Hunter2-plain-text"\nsecret = "AAAA-BBBB"\n'


def test_overwrite_and_delete_zeroes_the_bytes_before_the_name_goes(tmp_path: Path) -> None:
    path = tmp_path / "twinbeat-seed.toml"
    path.write_text(SECRET_SEED * 5000)  # several blocks
    witness = tmp_path / "witness"
    os.link(path, witness)  # a second name for the same inode shows what was written
    assert atomicfile.overwrite_and_delete(path) == len(SECRET_SEED) * 5000
    assert not path.exists()
    assert witness.read_bytes() == bytes(len(SECRET_SEED) * 5000)


def test_applied_seed_on_the_root_dirs_is_overwritten_and_deleted(tmp_path: Path) -> None:
    (tmp_path / "efi").mkdir()
    path = tmp_path / "efi" / seed.SEED_FILE
    path.write_text(SECRET_SEED)
    witness = tmp_path / "efi" / "witness"
    os.link(path, witness)
    found = seed.from_root_dirs(tmp_path)
    assert found is not None and found.kind == "root"

    def no_runner(cmd: Sequence[str], input_text: str | None) -> str:
        raise AssertionError("nothing is mounted under --root")

    notes = seed.remove_applied(found, no_runner)
    assert notes == ["The seed was overwritten and deleted from /efi/twinbeat-seed.toml "
                     "(it holds the root password and the cluster secret in plain text)."]
    assert not path.exists()
    assert witness.read_bytes() == bytes(len(SECRET_SEED))


def test_applied_seed_on_the_boot_partition_leaves_no_secret_on_the_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ext4 file system (the host kernel has no vfat), mounted writable by the real
    runner: after the scrub, the secret's bytes are nowhere on the device."""
    monkeypatch.setattr(seed, "_MOUNT_BASE", str(tmp_path))
    content = tmp_path / "content"
    content.mkdir()
    (content / seed.SEED_FILE).write_text(SECRET_SEED)
    device = tmp_path / "esp.img"
    writer.run(["mkfs.ext4", "-q", "-F", "-d", str(content), str(device), "4M"])
    assert b"Hunter2-plain-text" in device.read_bytes()
    source = seed.SeedSource(f"{seed.SEED_FILE} on {device}", SECRET_SEED, kind="esp",
                             device=str(device))
    notes = seed.remove_applied(source, writer.run)
    assert notes[0].startswith("The seed was overwritten and deleted from "), notes
    data = device.read_bytes()
    assert b"Hunter2-plain-text" not in data and b"AAAA-BBBB" not in data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content", "esp.img"]  # unmounted
    # and the file is gone from the file system
    assert "File not found" in writer.run(
        ["sh", "-c", f"debugfs -R 'stat /{seed.SEED_FILE}' {device} 2>&1"])


def test_seed_that_cannot_be_removed_says_so_and_how() -> None:
    def failing(cmd: Sequence[str], input_text: str | None) -> str:
        raise writer.WriteError("mount: /dev/vda1: read-only medium")

    source = seed.SeedSource("twinbeat-seed.toml on /dev/vda1", SECRET_SEED, kind="esp",
                             device="/dev/vda1")
    [note] = seed.remove_applied(source, failing)
    assert note.startswith("warning: the seed could not be removed (cannot mount /dev/vda1 to "
                           "write: mount: /dev/vda1: read-only medium): delete "
                           "twinbeat-seed.toml on /dev/vda1 by hand"), note


def test_a_stick_a_credential_and_an_explicit_file_are_not_touched(tmp_path: Path) -> None:
    def no_runner(cmd: Sequence[str], input_text: str | None) -> str:
        raise AssertionError(f"nothing to run: {cmd}")

    stick = seed.SeedSource("twinbeat-seed.toml on /dev/sdb1", SECRET_SEED, kind="usb",
                            device="/dev/sdb1")
    assert seed.remove_applied(stick, no_runner) == [
        "REMOVE THE USB STICK NOW (/dev/sdb1, labelled TWINBEAT): its twinbeat-seed.toml was "
        "applied and it holds the root password and the cluster secret in plain text."]
    cred = seed.SeedSource("credential twinbeat.seed", SECRET_SEED, kind="credential")
    assert seed.remove_applied(cred, no_runner) == []
    mine = tmp_path / "my-seed.toml"
    mine.write_text(SECRET_SEED)
    found = seed.read_source(mine, str(mine))
    assert seed.remove_applied(found, no_runner) == [
        f"Delete {mine} when you no longer need it: it holds the root password and the "
        "cluster secret in plain text."]
    assert mine.read_text() == SECRET_SEED


def test_seed_sources_in_order(root: Path, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "twinbeat.seed").write_text("role = 'node1'\n")
    (root / "boot").mkdir()
    (root / "boot/twinbeat-seed.toml").write_text("role = 'node2'\n")

    def no_runner(cmd: Sequence[str], input_text: str | None) -> str:
        raise AssertionError("nothing is mounted under --root")

    def find(**kw: Any) -> seed.SeedSource | None:
        args: dict[str, Any] = {"explicit": None, "reconfigure": False, "live": False,
                                "environ": {"CREDENTIALS_DIRECTORY": str(creds)},
                                "runner": no_runner}
        args.update(kw)
        return seed.find_seed(root, **args)

    assert (s := find()) is not None and s.where == "credential twinbeat.seed"
    assert (s := find(environ={})) is not None and s.where == "/boot/twinbeat-seed.toml"
    assert find(reconfigure=True) is None
    missing = find(explicit=str(tmp_path / "nope.toml"))
    assert missing is not None and missing.text is None and "cannot read" in missing.error


# --------------------------------------------------------------------------------------------
# Rendering and writing


def node_answers(role: str) -> dict[str, Any]:
    one, two = ("1", "2") if role == "node1" else ("2", "1")
    return {
        "role": role, "hostname": f"n{one}", "peer_hostname": f"n{two}",
        "cluster_name": "c", "public_interface": "eth0",
        "public_address": IPv4Interface(f"192.168.85.{one}/24"), "gateway": None, "dns": (),
        "crossover_interface": "eth1", "crossover_address": IPv4Interface(f"10.0.0.{one}/24"),
        "peer_public_address": IPv4Address(f"192.168.85.{two}"),
        "peer_crossover_address": IPv4Address(f"10.0.0.{two}"),
        "public_heartbeat": False, "floating_addresses": (IPv4Address("192.168.85.9"),),
        "serial_port": None, "disk": None,
        "secret": secret.generate_code(secret.SeededRng(3)), "services": (),
    }


def test_both_roles_share_fingerprint_and_group(root: Path) -> None:
    hw = hardware.discover(root)
    s1, s2 = build_setup(node_answers("node1"), hw), build_setup(node_answers("node2"), hw)
    assert s1.fingerprint() == s2.fingerprint()
    assert s1.resources == s2.resources == ("IPaddr::192.168.85.9/24/eth0",)
    other = node_answers("node2")
    other["floating_addresses"] = (IPv4Address("192.168.85.10"),)
    assert build_setup(other, hw).fingerprint() != s1.fingerprint()


def test_minimal_setup_renders_a_valid_config(root: Path, tmp_path: Path) -> None:
    s = build_setup(node_answers("node1"), hardware.discover(root))
    files = render.render(s)
    render.check(files)
    paths = [f.path for f in files]
    assert render.DRBD_RES not in paths and paths[-1] == render.CLUSTER_TOML
    text = files[-1].content
    assert "ping_nodes" not in text and 'name = "serial"' not in text
    config = load_config(render.CLUSTER_TOML, text=text, check_authkeys=False)
    assert [li.name for li in config.links] == ["crossover"]
    assert [str(w.message) for w in config.warnings] == [
        "only one heartbeat link: a single cut cable will look like a dead peer"
    ]


def test_toml_strings_are_escaped() -> None:
    assert toml_string('a"b\\c\n') == '"a\\"b\\\\c\\n"'


def test_check_refuses_cluster_toml_before_other_files(root: Path) -> None:
    files = render.render(build_setup(node_answers("node1"), hardware.discover(root)))
    with pytest.raises(render.RenderError, match="last"):
        render.check([files[-1], *files[:-1]])


def test_shadow_edit_keeps_other_lines() -> None:
    text = "root:!:1:0:99999:7:::\nbin:*:1::::::\n"
    assert writer.shadow_with_root_hash(text, "$6$s$h", 20000) == (
        "root:$6$s$h:20000:0:99999:7:::\nbin:*:1::::::\n"
    )
    assert writer.shadow_with_root_hash(None, "$6$s$h", 5) == "root:$6$s$h:5:0:99999:7:::\n"


def test_hash_password_uses_openssl_on_stdin() -> None:
    seen: list[tuple[list[str], str | None]] = []

    def runner(cmd: Sequence[str], input_text: str | None) -> str:
        seen.append((list(cmd), input_text))
        return f"$6${cmd[4]}$HASH\n"

    out = writer.hash_password("pw secret", secret.SeededRng(1), runner)
    cmd, stdin = seen[0]
    assert cmd[:4] == ["openssl", "passwd", "-6", "-salt"] and cmd[-1] == "-stdin"
    assert "pw secret" not in cmd and stdin == "pw secret\n"
    assert out == f"$6${cmd[4]}$HASH" and len(cmd[4]) == 16


def test_failed_write_leaves_the_node_unconfigured(root: Path) -> None:
    files = render.render(build_setup(node_answers("node1"), hardware.discover(root)))
    plan = writer.make_plan(files, password_hash=None, ssh_key=None, services=(),
                            hostname="n1", replicated=False)
    (root / "etc/twinbeat/authkeys").mkdir(parents=True)  # os.replace onto a directory fails
    with pytest.raises(OSError):
        writer.apply(plan, root, today=1)
    assert not (root / "etc/twinbeat/cluster.toml").exists()
    assert not [p for p in (root / "etc/twinbeat").iterdir() if p.name.endswith(".tmp")]


def test_apply_writes_atomically_with_modes(root: Path) -> None:
    files = render.render(build_setup(node_answers("node1"), hardware.discover(root)))
    (root / "etc/drbd.d").mkdir(parents=True)
    (root / "etc/drbd.d/r0.res").write_text("# /etc/drbd.d/r0.res: written by twinbeat-firstboot\n")
    plan = writer.make_plan(files, password_hash="$6$a$b", ssh_key=SSH_KEY,
                            services=("nginx.service",), hostname="n1", replicated=False)
    done = writer.apply(plan, root, today=7)
    assert done[-1] == "wrote /etc/twinbeat/cluster.toml"
    assert "removed /etc/drbd.d/r0.res" in done
    assert stat.S_IMODE((root / "etc/twinbeat/authkeys").stat().st_mode) == 0o600
    assert (root / "etc/shadow").read_text().startswith("root:$6$a$b:7:")
    # a second run does not add the key twice
    writer.apply(plan, root, today=7)
    assert (root / "root/.ssh/authorized_keys").read_text() == SSH_KEY + "\n"


def test_apply_live_sets_hostname_and_queues_units(monkeypatch: pytest.MonkeyPatch) -> None:
    names: list[str] = []
    monkeypatch.setattr(socket, "sethostname", names.append)
    calls: list[list[str]] = []

    def runner(cmd: Sequence[str], input_text: str | None) -> str:
        calls.append(list(cmd))
        return ""

    plan = writer.Plan(files=[], disable_units=("nginx.service",), hostname="linuxha1")
    writer.apply_live(plan, first_boot=True, runner=runner)
    assert names == ["linuxha1"]
    assert calls == [
        ["systemctl", "--no-block", "stop", "nginx.service"],
        ["systemctl", "--no-block", "start", "twinbeat.service"],
    ]
    calls.clear()
    writer.apply_live(plan, first_boot=False, runner=runner)  # --reconfigure: hands off
    assert calls == [] and names == ["linuxha1", "linuxha1"]


# --------------------------------------------------------------------------------------------
# Reconfigure, claim


def test_previous_answers_read_back_a_configuration(root: Path) -> None:
    answers = node_answers("node1")
    answers.update(serial_port="ttyS1", baud=115200, disk="vdb", services=("nginx.service",),
                   public_heartbeat=True, gateway=IPv4Address("192.168.85.254"),
                   dns=(IPv4Address("192.168.85.254"),))
    s = build_setup(answers, hardware.discover(root))
    plan = writer.make_plan(render.render(s), password_hash=None, ssh_key=SSH_KEY,
                            services=(), hostname="n1", replicated=True)
    writer.apply(plan, root, today=1)
    (root / "etc/hostname").write_text("n1\n")
    prev = previous_answers(root)
    assert prev == {
        "hostname": "n1", "peer_hostname": "n2", "role": "node1", "cluster_name": "c",
        "public_interface": "eth0", "public_address": "192.168.85.1/24",
        "gateway": "192.168.85.254", "dns": "192.168.85.254",
        "crossover_interface": "eth1", "crossover_address": "10.0.0.1/24",
        "peer_public_address": "192.168.85.2", "peer_crossover_address": "10.0.0.2",
        "public_heartbeat": "yes", "serial_port": "ttyS1", "baud": "115200",
        "floating_addresses": "192.168.85.9", "services": "nginx.service", "disk": "vdb",
        "secret": answers["secret"],
        # no [notify] table and no timesyncd drop-in: neither was set up
        "mail_to": "none", "ntp_server": "none",
    }
    assert root_login_set(root)


def test_claim_is_exclusive_and_stale_claims_are_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "claim"
    a, b = ConsoleClaim(path, "tty1"), ConsoleClaim(path, "ttyS0")
    assert a.try_claim() and not b.try_claim()
    assert path.read_text() == f"{os.getpid()} tty1\n"
    assert b.other_owner() is None  # same pid: tests share one process
    a.release()
    assert not path.exists()
    path.write_text("999999999 ttyS0\n")  # a wizard that was killed
    assert b.try_claim() and b.mine
    b.release()
    done = ConsoleClaim(path, "tty1", finished=lambda: True)
    assert not done.try_claim() and not path.exists()


def test_twinbeat_units_are_base_units_except_the_demo_web_page(root: Path) -> None:
    units = root / "usr/lib/systemd/system"
    (units / "twinbeat-demo-web.service").write_text(
        "[Service]\nExecStart=/usr/bin/python3 -m http.server 80\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    hw = hardware.discover(root)
    assert hw.offered_services == ("nginx.service", "twinbeat-demo-web.service")
    assert "twinbeat.service" in hw.services
    ctx = ctx_for(root)
    assert validate.services("twinbeat-demo-web nginx", ctx) == (
        "twinbeat-demo-web.service",
        "nginx.service",
    )
    with pytest.raises(validate.Invalid, match="part of the base system"):
        validate.services("twinbeat", ctx)
    assert hardware.is_base_unit("twinbeat-firstboot.service")
    assert not hardware.is_base_unit("twinbeat-demo-web.service")


def test_drbd_service_is_never_offered(root: Path) -> None:
    """twinbeat drives DRBD itself (drbddisk::RES); drbd-utils' unit is not a service to own."""
    (root / "usr/lib/systemd/system/drbd.service").write_text(
        "[Service]\nExecStart=/lib/drbd/scripts/drbd start\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    hw = hardware.discover(root)
    assert "drbd.service" in hw.services
    assert "drbd.service" not in hw.offered_services
    with pytest.raises(validate.Invalid, match="part of the base system"):
        validate.services("drbd", ctx_for(root))


def test_alert_mail_and_ntp_answers(root: Path) -> None:
    ctx = ctx_for(root)
    assert validate.mail_to("none", ctx) is None
    assert validate.mail_to(" admin@example.com ", ctx) == "admin@example.com"
    assert validate.smarthost("mail.example.com", ctx) == "mail.example.com"
    assert validate.smarthost("192.168.85.25", ctx) == "192.168.85.25"
    assert validate.ntp_server("none", ctx) is None
    assert validate.ntp_server("ntp.example.com", ctx) == "ntp.example.com"
    for fn, text, message in (
        (validate.mail_to, "admin", "not an e-mail address"),
        (validate.mail_to, "a@b", "not an e-mail address"),
        (validate.smarthost, "", "give the mail relay"),
        (validate.smarthost, "mail_relay!", "not a host name"),
        (validate.ntp_server, "300.1.1.1", "not an IPv4 address"),
    ):
        with pytest.raises(validate.Invalid, match=message):
            fn(text, ctx)
