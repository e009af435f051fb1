"""The first-boot wizard driven on a pty (pexpect) against a scratch root."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from supervisor.config import load_config
from tests.firstboot_support import (
    NODE1,
    PASSWORD,
    REPO,
    SSH_KEY,
    before,
    changes,
    compare_golden,
    drive,
    env,
    finish,
    make_root,
    matched,
    node2_steps,
    spawn,
    tree_digest,
)

# Every test starts the wizard as a process on a pty (about 0.5 s of Python start-up each)
# and types at it: the slow tier (make test-slow). The wizard's logic is unit-tested in
# process by test_firstboot_units.py.
pytestmark = pytest.mark.slow

CODE_RE = re.compile(r"Shared secret code \[([0-9A-Z-]{29})\]")


def configure_node1(root: Path) -> str:
    child = spawn(root)
    drive(child, NODE1[:17])
    child.expect(CODE_RE)
    code = matched(child).group(1)
    child.sendline("")
    drive(child, NODE1[18:])
    child.expect_exact("wrote /etc/twinbeat/cluster.toml")
    assert finish(child) == 0
    return str(code)


def fingerprint(root: Path) -> str:
    text = (root / "etc/twinbeat/cluster.toml").read_text()
    m = re.search(r"Fingerprint of the shared part: (\S+)", text)
    assert m
    return m.group(1)


@pytest.fixture
def root1(tmp_path: Path) -> Path:
    return make_root(tmp_path / "node1", node=1)


@pytest.fixture
def root2(tmp_path: Path) -> Path:
    return make_root(tmp_path / "node2", node=2)


# --------------------------------------------------------------------------------------------
# The two nodes, against golden copies


def test_first_line_is_the_banner(root1: Path) -> None:
    child = spawn(root1)
    child.expect_exact("Role (node1 or node2)")
    assert before(child).splitlines()[0].strip() == "twinbeat first-boot setup"
    child.sendeof()
    assert finish(child) == 1


def test_node1_and_node2_render_the_golden_files(root1: Path, root2: Path) -> None:
    before1, before2 = tree_digest(root1), tree_digest(root2)
    code = configure_node1(root1)
    changed1 = changes(before1, root1)
    assert compare_golden("node1", root1, changed1) == []

    child = spawn(root2)
    drive(child, node2_steps(code))
    child.expect_exact("wrote /etc/twinbeat/cluster.toml")
    assert finish(child) == 0
    changed2 = changes(before2, root2)
    assert compare_golden("node2", root2, changed2) == []

    # what twinbeat check-config runs
    c1 = load_config(root1 / "etc/twinbeat/cluster.toml", root=root1)
    c2 = load_config(root2 / "etc/twinbeat/cluster.toml", root=root2)
    assert c1.cluster_name == c2.cluster_name == "twinbeat"
    assert c1.nodes == c2.nodes
    assert c1.groups == c2.groups
    assert c1.groups[0].resource_texts == (
        "IPaddr::192.168.85.3/24/eth0",
        "drbddisk::r0",
        "Filesystem::/dev/drbd0::/srv::ext4",
        "nginx.service",
    )
    assert [(li.name, getattr(li, "peer", None)) for li in c1.links] == [
        ("serial", None),
        ("crossover", c2.node("linuxha2").crossover_address),
        ("public", c2.node("linuxha2").address),
    ]
    assert fingerprint(root1) == fingerprint(root2)
    for root in (root1, root2):
        keys = root / "etc/twinbeat/authkeys"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o600
        assert keys.read_text().splitlines()[-1] == f"1 sha256 {code}"
        # owned services are out of the boot, the supervisor is in
        wants = root / "etc/systemd/system/multi-user.target.wants"
        assert not (wants / "nginx.service").is_symlink()
        assert os.readlink(wants / "twinbeat.service") == "/usr/lib/systemd/system/twinbeat.service"


def test_root_password_hash_is_sha512_crypt_of_the_password(root1: Path) -> None:
    configure_node1(root1)
    line = next(x for x in (root1 / "etc/shadow").read_text().splitlines() if x.startswith("root:"))
    fields = line.split(":")
    assert fields[1].startswith("$6$")
    salt = fields[1].split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                           input=PASSWORD + "\n", capture_output=True, text=True, check=True)
    assert again.stdout.strip() == fields[1]
    assert stat.S_IMODE((root1 / "etc/shadow").stat().st_mode) == 0o640
    assert (root1 / "etc/shadow").read_text().splitlines()[1].startswith("daemon:*:")
    keys = root1 / "root/.ssh/authorized_keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert stat.S_IMODE((root1 / "root/.ssh").stat().st_mode) == 0o700
    assert keys.read_text().startswith("ssh-ed25519 ")


def test_reconfigure_with_every_default_rewrites_the_same_files(root1: Path) -> None:
    configure_node1(root1)
    snapshot = tree_digest(root1)
    child = spawn(root1, "--reconfigure")
    steps = []
    for first_prompt, _ in NODE1:
        prompt = {
            "Hostname of this node [node1]: ": "Hostname of this node [linuxha1]: ",
            "Services to own ('none' for none) [none]: ":
                "Services to own ('none' for none) [nginx.service]: ",
            "Root password [none]: ": "Root password [keep]: ",
            # the alert answers are read back from [notify]
            "E-mail for alerts ('none' for none) [none]: ":
                "E-mail for alerts ('none' for none) [admin@example.com]: ",
            "Mail relay (smarthost): ": "Mail relay (smarthost) [mail.example.com]: ",
        }.get(first_prompt, first_prompt)
        if prompt != "Repeat the root password: ":
            steps.append((prompt, ""))
    drive(child, steps)
    child.expect_exact("wrote /etc/twinbeat/cluster.toml")
    assert finish(child) == 0
    assert tree_digest(root1) == snapshot


def test_already_configured_node_exits_0_without_asking(root1: Path) -> None:
    configure_node1(root1)
    snapshot = tree_digest(root1)
    child = spawn(root1)
    child.expect_exact("already configured")
    assert finish(child) == 0
    assert tree_digest(root1) == snapshot


def test_a_boot_console_that_starts_after_the_other_configured_the_node_says_so(
        root1: Path, tmp_path: Path) -> None:
    # the boot's units start both consoles' wizards while the node is unconfigured; when
    # one console applied a seed before the other's wizard got going, the latter finds the
    # configuration written: the setup finished there, nothing to change here
    configure_node1(root1)
    snapshot = tree_digest(root1)
    child = spawn(root1, extra_env={"TWINBEAT_FIRSTBOOT_CLAIM": str(tmp_path / "claim"),
                                    "TWINBEAT_FIRSTBOOT_CONSOLE": "ttyS0"})
    child.expect_exact("Setup finished on another console: this node is configured.")
    assert finish(child) == 0
    assert "--reconfigure" not in str(child.before)
    assert tree_digest(root1) == snapshot
    assert not (tmp_path / "claim").exists()


def test_no_at_the_confirmation_asks_again_with_the_answers_as_defaults(root1: Path) -> None:
    child = spawn(root1)
    steps = list(NODE1)
    steps[-1] = (steps[-1][0], "no")
    drive(child, steps)
    child.expect_exact("Once more then: your answers are now the defaults.")
    child.expect_exact("Role (node1 or node2) [node1]: ")
    child.sendline("")
    child.expect_exact("Hostname of this node [linuxha1]: ")
    child.sendline("")
    child.expect_exact("Hostname of the peer node [linuxha2]: ")
    child.sendintr()
    child.expect_exact("nothing was written")
    assert finish(child) == 130


# --------------------------------------------------------------------------------------------
# Bad answers: an error line, the same prompt again, nothing written

BAD = [
    # (index of the prompt in NODE1, answer, expected error)
    (1, " ", "the hostname cannot be empty"),
    (1, "node_1!", "is not a valid hostname"),
    (1, "-node1", "is not a valid hostname"),
    (2, "linuxha1", "the peer cannot have this node's name"),
    (5, "192.168.85.300/24", "is not an IPv4 address"),
    (5, "192.168.85/24", "is not an IPv4 address"),
    (5, "192.168.85.1", "add the prefix length"),
    (5, "192.168.85.1/33", "prefix /33 is out of range"),
    (5, "192.168.85.1/4", "prefix /4 is out of range"),
    (6, "10.1.1.1", "is outside the public subnet 192.168.85.0/24"),
    (8, "eth0", "eth0 is already the public interface"),
    (8, "eth7", "there is no network card named 'eth7'"),
    (9, "192.168.85.9/24", "overlaps the public subnet"),
    (10, "192.168.85.1", "is this node's own address; the peer needs its own"),
    (10, "192.168.85.254", "is the gateway"),
    (11, "10.0.0.1", "is this node's own address; the peer needs its own"),
    (13, "192.168.86.3", "is outside the public subnet 192.168.85.0/24"),
    (13, "192.168.85.1", "is this node's own address; a floating address must differ"),
    (13, "192.168.85.2", "is the peer's address; a floating address must differ"),
    (13, "192.168.85.255", "is the broadcast address"),
    (14, "ttyS7", "there is no serial port 'ttyS7'"),
    (14, "ttyS2", "there is no serial port 'ttyS2'"),  # no UART behind it
    (15, "12345", "is not a standard baud rate"),
    (16, "vda", "vda holds / (the running system)"),
    (16, "sdz", "there is no disk named 'sdz'"),
    (17, "T81R-RMHB-Z1YA-9Y71-89BN-1H9R", "the check group does not match"),
    (18, "ftp", "'ftp': answer smb, nfs, both or none"),
    (19, "postgres", "postgres is PostgreSQL's own"),
    (19, "my-db", "'my-db' is not a database name"),
    (20, "ssh", "part of the base system"),
    (20, "apache2", "apache2.service is not installed"),
    (21, "abc", "the password is too short"),
    (23, "ssh-ed25519 AAAA", "the key's"),
    (23, "hello", "is not an SSH key type"),
]


@pytest.mark.parametrize(("index", "answer", "error"), BAD, ids=[f"{i}:{a}" for i, a, _ in BAD])
def test_bad_answer_is_reprompted_and_nothing_written(
    root1: Path, index: int, answer: str, error: str
) -> None:
    snapshot = tree_digest(root1)
    child = spawn(root1)
    drive(child, NODE1, stop_before=index)
    child.sendline(answer)
    child.expect_exact("  error: ")
    child.expect_exact("\r\n")  # a one-line message
    assert error in before(child)
    # then the same prompt again, and nothing else in between
    child.expect_exact(NODE1[index][0].split("[")[0])
    assert before(child) == ""
    child.sendintr()
    child.expect_exact("Interrupted: nothing was written.")
    assert finish(child) == 130
    assert tree_digest(root1) == snapshot


def test_mistyped_secret_on_node2_is_caught(root2: Path) -> None:
    snapshot = tree_digest(root2)
    code = "T81R-RMHB-Z1YA-9Y71-89BN-1H9Q"
    typo = code[:5] + ("S" if code[5] != "S" else "T") + code[6:]
    swapped = code[:5] + code[6] + code[5] + code[7:]
    child = spawn(root2)
    steps = node2_steps(code)
    drive(child, steps, stop_before=17)
    for bad, error in (
        (typo, "the check group does not match: a character was mistyped"),
        (swapped, "the check group does not match"),
        (code[:-1], "the code has 23 characters; it needs 24"),
        ("", "type the code shown on node1"),
        (code.replace("R", "U", 1), "'U' does not occur in codes"),
    ):
        child.sendline(bad)
        child.expect_exact(f"  error: {error}")
        child.expect_exact("Shared secret code from node1: ")
    child.sendeof()
    child.expect_exact("The console closed: nothing was written.")
    assert finish(child) == 1
    assert tree_digest(root2) == snapshot


def test_repeated_password_must_match(root1: Path) -> None:
    child = spawn(root1)
    drive(child, NODE1, stop_before=22)
    child.sendline("something-else")
    child.expect_exact("  error: the two passwords differ; type it again")
    child.expect_exact("Root password [none]: ")
    child.sendintr()
    assert finish(child) == 130


def test_no_password_and_no_key_is_refused(root1: Path) -> None:
    child = spawn(root1)
    drive(child, NODE1, stop_before=21)
    child.sendline("")
    child.expect_exact("SSH public key for root ('none' for none) [none]: ")
    child.sendline("")
    child.expect_exact("  error: give a root password or an SSH key")
    child.sendintr()
    assert finish(child) == 130


# --------------------------------------------------------------------------------------------
# Interrupts at every question: nothing written

PROMPTS_NODE1 = list(range(len(NODE1)))


@pytest.mark.timeout(180)  # the wizard started 23 times
@pytest.mark.parametrize("how", ["sigint", "eof"])
def test_interrupt_at_every_question_writes_nothing(root1: Path, how: str) -> None:
    snapshot = tree_digest(root1)
    for index in PROMPTS_NODE1:
        child = spawn(root1)
        drive(child, NODE1, stop_before=index)
        if how == "sigint":
            child.sendintr()
            child.expect_exact("Interrupted: nothing was written.")
            expected = 130
        else:
            child.sendeof()
            child.expect_exact("The console closed: nothing was written.")
            expected = 1
        assert finish(child) == expected, NODE1[index][0]
        assert tree_digest(root1) == snapshot, f"changed after {how} at {NODE1[index][0]!r}"


@pytest.mark.parametrize("how", ["sigint", "eof"])
def test_interrupt_at_node2_secret_writes_nothing(root2: Path, how: str) -> None:
    snapshot = tree_digest(root2)
    child = spawn(root2)
    drive(child, node2_steps("X"), stop_before=17)
    if how == "sigint":
        child.sendintr()
    else:
        child.sendeof()
    child.expect_exact("nothing was written")
    assert finish(child) == (130 if how == "sigint" else 1)
    assert tree_digest(root2) == snapshot


# --------------------------------------------------------------------------------------------
# Seeds

SEED_NODE1 = f"""
role = "node1"
hostname = "linuxha1"
public_interface = "eth0"
public_address = "192.168.85.1/24"
gateway = "192.168.85.254"
dns = ["192.168.85.254"]
crossover_interface = "eth1"
crossover_address = "10.0.0.1/24"
peer_public_address = "192.168.85.2"
peer_crossover_address = "10.0.0.2"
public_heartbeat = true
floating_addresses = ["192.168.85.3"]
serial_port = "ttyS1"
baud = 115200
disk = "vdb"
services = ["nginx"]
root_password = "{PASSWORD}"
ssh_key = "{SSH_KEY}"
mail_to = "admin@example.com"
smarthost = "mail.example.com"
"""


def run_seeded(root: Path, *args: str, extra_env: dict[str, str] | None = None) -> tuple[int, str]:
    child = spawn(root, *args, extra_env=extra_env)
    child.expect(pexpect.EOF)
    out = before(child)
    child.close()
    return int(child.exitstatus or 0) if child.exitstatus is not None else -1, out


def test_valid_seed_configures_without_a_prompt(root1: Path, tmp_path: Path) -> None:
    snapshot = tree_digest(root1)
    seed = tmp_path / "seed.toml"
    seed.write_text(SEED_NODE1)
    status, out = run_seeded(root1, "--seed", str(seed))
    assert status == 0, out
    assert "[" not in "".join(line for line in out.splitlines() if line.endswith(": "))
    assert "Role (node1" not in out
    # the same answers as typed: the same files as the interactive node1
    assert compare_golden("node1", root1, changes(snapshot, root1)) == []


def test_seed_from_the_systemd_credential(root1: Path, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "twinbeat.seed").write_text(SEED_NODE1)
    status, out = run_seeded(root1, extra_env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert status == 0, out
    assert "Seed found: credential twinbeat.seed" in out
    load_config(root1 / "etc/twinbeat/cluster.toml", root=root1)


def test_seed_from_the_boot_partition(root1: Path) -> None:
    (root1 / "efi/twinbeat-seed.toml").parent.mkdir(parents=True, exist_ok=True)
    (root1 / "efi/twinbeat-seed.toml").write_text(SEED_NODE1)
    status, out = run_seeded(root1)
    assert status == 0, out
    assert "Seed found: /efi/twinbeat-seed.toml" in out
    load_config(root1 / "etc/twinbeat/cluster.toml", root=root1)
    # applied: its plain-text secrets are gone from the boot partition, and the user is told
    assert not (root1 / "efi/twinbeat-seed.toml").exists()
    assert "The seed was overwritten and deleted from /efi/twinbeat-seed.toml" in out


def test_invalid_seed_lists_errors_writes_nothing_and_falls_back(
    root1: Path, tmp_path: Path
) -> None:
    snapshot = tree_digest(root1)
    seed = tmp_path / "seed.toml"
    bad = (SEED_NODE1.replace('"192.168.85.3"', '"10.9.9.9"')
           .replace('disk = "vdb"', 'disk = "vda"')
           .replace('hostname = "linuxha1"', 'hostname = ""') + 'colour = "blue"\n')
    seed.write_text(bad)
    child = spawn(root1, "--seed", str(seed))
    child.expect_exact("The seed cannot be used (4 problems):")
    child.expect_exact("Role (node1 or node2) [node1]: ")
    listing = before(child)
    for expected in (
        "colour: unknown key",
        "hostname: the hostname cannot be empty",
        "floating_addresses: 10.9.9.9 is outside the public subnet",
        "disk: vda holds / (the running system)",
        "Nothing was written. Answer the questions instead.",
    ):
        assert expected in listing
    child.sendeof()
    assert finish(child) == 1
    assert tree_digest(root1) == snapshot
    assert seed.read_text() == bad  # not applied: left as it was


def test_node2_seed_without_the_secret_is_invalid(root2: Path, tmp_path: Path) -> None:
    snapshot = tree_digest(root2)
    seed = tmp_path / "seed.toml"
    seed.write_text('role = "node2"\nroot_password = "abcdefgh"\n')
    child = spawn(root2, "--seed", str(seed))
    child.expect_exact("secret: missing, and it has no default")
    child.expect_exact("Role (node1 or node2)")
    child.sendintr()
    assert finish(child) == 130
    assert tree_digest(root2) == snapshot


def test_example_seed_configures_a_matching_machine(root1: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "firstboot", "--example-seed"],
        cwd=REPO, env=env(), capture_output=True, text=True, check=True,
    ).stdout
    assert out.startswith("# twinbeat first-boot seed")
    seed = tmp_path / "example.toml"
    seed.write_text(out)
    status, text = run_seeded(root1, "--seed", str(seed))
    assert status == 0, text
    config = load_config(root1 / "etc/twinbeat/cluster.toml", root=root1)
    assert [n.name for n in config.nodes] == ["node1", "node2"]
    assert (root1 / "etc/drbd.d/r0.res").exists()


def test_credential_as_qemu_passes_it_in_base64(root1: Path, tmp_path: Path) -> None:
    # io.systemd.credential.binary:twinbeat.seed=BASE64 arrives decoded in the directory
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "twinbeat.seed").write_bytes(base64.b64decode(base64.b64encode(SEED_NODE1.encode())))
    status, out = run_seeded(root1, extra_env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert status == 0, out


# --------------------------------------------------------------------------------------------
# Two consoles, one claim


def test_first_console_to_answer_wins_and_the_other_waits(root1: Path, tmp_path: Path) -> None:
    claim = str(tmp_path / "claim")
    a = spawn(root1, extra_env={"TWINBEAT_FIRSTBOOT_CLAIM": claim,
                                "TWINBEAT_FIRSTBOOT_CONSOLE": "ttyS0"})
    b = spawn(root1, extra_env={"TWINBEAT_FIRSTBOOT_CLAIM": claim,
                                "TWINBEAT_FIRSTBOOT_CONSOLE": "tty1"})
    a.expect_exact("twinbeat first-boot setup (on ttyS0)")
    b.expect_exact("twinbeat first-boot setup (on tty1)")
    a.expect_exact(NODE1[0][0])
    b.expect_exact(NODE1[0][0])
    a.sendline("")
    b.expect_exact("Setup continues on ttyS0; this console waits for it to finish.")
    a.sendline("linuxha1")
    drive(a, NODE1[2:])
    a.expect_exact("wrote /etc/twinbeat/cluster.toml")
    assert finish(a) == 0
    b.expect_exact("Setup finished on ttyS0: this node is configured.")
    assert finish(b) == 0
    assert not Path(claim).exists()


def test_other_console_reports_when_the_owner_gives_up(root1: Path, tmp_path: Path) -> None:
    snapshot = tree_digest(root1)
    claim = str(tmp_path / "claim")
    a = spawn(root1, extra_env={"TWINBEAT_FIRSTBOOT_CLAIM": claim,
                                "TWINBEAT_FIRSTBOOT_CONSOLE": "tty1"})
    b = spawn(root1, extra_env={"TWINBEAT_FIRSTBOOT_CLAIM": claim,
                                "TWINBEAT_FIRSTBOOT_CONSOLE": "ttyS0"})
    a.expect_exact(NODE1[0][0])
    b.expect_exact(NODE1[0][0])
    b.sendline("node1")
    a.expect_exact("Setup continues on ttyS0")
    b.expect_exact(NODE1[1][0])
    b.sendintr()
    assert finish(b) == 130
    a.expect_exact("Setup on ttyS0 ended without writing anything.")
    assert finish(a) == 1
    assert tree_digest(root1) == snapshot


def test_two_seeded_consoles_write_once(root1: Path, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "twinbeat.seed").write_text(SEED_NODE1)
    claim = str(tmp_path / "claim")
    children = [
        spawn(root1, extra_env={"TWINBEAT_FIRSTBOOT_CLAIM": claim,
                                "TWINBEAT_FIRSTBOOT_CONSOLE": name,
                                "CREDENTIALS_DIRECTORY": str(creds)})
        for name in ("tty1", "ttyS0")
    ]
    outputs = []
    for child in children:
        child.expect(pexpect.EOF, timeout=30)
        outputs.append(before(child))
        child.close()
        assert child.exitstatus == 0, before(child)
    assert sum("wrote /etc/twinbeat/cluster.toml" in o for o in outputs) == 1
