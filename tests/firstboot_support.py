"""A fake machine for the first-boot wizard's tests, and helpers to drive the wizard.

``make_root(path, node=1)`` builds the tree the wizard discovers hardware from (see
firstboot/hardware.py):

- two virtio network cards, eth0 (link up) and eth1 (link up), MACs 52:54:00:00:0N:01/02;
- serial ports ttyS0 (the serial console, per /sys/class/tty/console/active and the kernel
  command line) and ttyS1, plus ttyS2 whose UART is missing (type 0: never offered);
- disks vda (8 GiB: vda1 on /efi, vda2 on /, the running system) and vdb (1 GiB, blank);
- services nginx.service (enabled in multi-user.target.wants), twinbeat.service, and base
  units that must not be offered;
- /etc/shadow with a locked root, /etc/hostname "twinbeat".
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import pexpect

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "firstboot"
TEST_RANDOM = "4242"


def _write(path: Path, text: str | bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    if mode is not None:
        os.chmod(path, mode)


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def add_nic(
    root: Path, name: str, mac: str, carrier: str = "1", driver: str = "virtio_net"
) -> None:
    dev = root / "sys/devices/pci0000:00" / f"virtio-{name}"
    drv = root / "sys/bus/virtio/drivers" / driver
    drv.mkdir(parents=True, exist_ok=True)
    dev.mkdir(parents=True, exist_ok=True)
    _link(dev / "driver", os.path.relpath(drv, dev))
    net = root / "sys/class/net" / name
    net.mkdir(parents=True, exist_ok=True)
    _link(net / "device", os.path.relpath(dev, net))
    _write(net / "address", mac + "\n")
    _write(net / "operstate", ("up" if carrier == "1" else "down") + "\n")
    _write(net / "carrier", carrier + "\n")


def add_disk(
    root: Path,
    name: str,
    sectors: int,
    majmin: str,
    *,
    model: str | None = None,
    partitions: Iterable[tuple[str, str]] = (),
    content: bytes = b"",
) -> None:
    d = root / "sys/block" / name
    _write(d / "size", f"{sectors}\n")
    _write(d / "dev", majmin + "\n")
    _write(d / "removable", "0\n")
    (d / "holders").mkdir(parents=True, exist_ok=True)
    if model is not None:
        _write(d / "device/model", model + "\n")
    else:
        drv = root / "sys/bus/virtio/drivers/virtio_blk"
        drv.mkdir(parents=True, exist_ok=True)
        (d / "device").mkdir(parents=True, exist_ok=True)
        _link(d / "device/driver", os.path.relpath(drv, d / "device"))
    for part, part_majmin in partitions:
        _write(d / part / "partition", part[-1] + "\n")
        _write(d / part / "dev", part_majmin + "\n")
    _write(root / "dev" / name, content + b"\0" * (80 * 1024 - len(content)))


def make_root(root: Path, node: int = 1) -> Path:
    add_nic(root, "eth0", f"52:54:00:00:0{node}:01")
    add_nic(root, "eth1", f"52:54:00:00:0{node}:02")
    for tty in ("ttyS0", "ttyS1", "ttyS2", "tty1"):
        _write(root / "dev" / tty, "")
    _write(root / "sys/class/tty/ttyS0/type", "4\n")
    _write(root / "sys/class/tty/ttyS1/type", "4\n")
    _write(root / "sys/class/tty/ttyS2/type", "0\n")
    _write(root / "sys/class/tty/console/active", "tty1 ttyS0\n")
    _write(root / "proc/cmdline", "BOOT_IMAGE=/vmlinuz console=tty1 console=ttyS0,115200n8\n")
    add_disk(root, "vda", 16777216, "254:0", partitions=[("vda1", "254:1"), ("vda2", "254:2")],
             content=b"\0" * 510 + b"\x55\xaa")
    add_disk(root, "vdb", 2097152, "254:16")
    add_disk(root, "loop0", 1024, "7:0")
    _write(
        root / "proc/self/mountinfo",
        "23 1 254:2 / / rw,relatime shared:1 - ext4 /dev/vda2 rw\n"
        "24 23 254:1 / /efi rw,relatime shared:2 - vfat /dev/vda1 rw\n"
        "25 23 0:22 / /run rw,nosuid,nodev shared:3 - tmpfs tmpfs rw\n",
    )
    _write(root / "proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n")
    units = root / "usr/lib/systemd/system"
    _write(units / "twinbeat.service",
           "[Unit]\nDescription=twinbeat\n\n[Service]\nExecStart=/usr/bin/twinbeat run\n\n"
           "[Install]\nWantedBy=multi-user.target\n")
    _write(units / "nginx.service",
           "[Unit]\nDescription=nginx\n\n[Service]\nExecStart=/usr/sbin/nginx\n\n"
           "[Install]\nWantedBy=multi-user.target\n")
    _write(units / "static-helper.service", "[Unit]\nDescription=static\n\n[Service]\n"
           "ExecStart=/bin/true\n")
    _write(units / "systemd-networkd.service",
           "[Service]\nExecStart=/x\n[Install]\nWantedBy=multi-user.target\n")
    _write(units / "getty@.service", "[Service]\nExecStart=/x\n[Install]\nWantedBy=getty.target\n")
    _link(root / "etc/systemd/system/multi-user.target.wants/nginx.service",
          "/usr/lib/systemd/system/nginx.service")
    _write(root / "etc/shadow", "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n", 0o640)
    _write(root / "etc/hostname", "twinbeat\n")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under root: type, mode and content hash (or link target)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = f"link {os.readlink(p)}"
            elif p.is_dir():
                out[rel] = f"dir {st.st_mode:o}"
            else:
                out[rel] = f"file {st.st_mode:o} {hashlib.sha256(p.read_bytes()).hexdigest()}"
    return out


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("TWINBEAT_", "CREDENTIALS"))}
    e["PYTHONPATH"] = str(REPO)
    e["TWINBEAT_FIRSTBOOT_TEST_RANDOM"] = TEST_RANDOM
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    e["TERM"] = "dumb"
    e.update(extra or {})
    return e


def spawn(root: Path, *args: str, extra_env: dict[str, str] | None = None) -> pexpect.spawn[str]:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "firstboot", "--root", str(root), *args],
        cwd=str(REPO),
        env=env(extra_env),
        encoding="utf-8",
        timeout=30,
        dimensions=(50, 200),
    )
    # pexpect sleeps 50 ms before every send (for programs that flush their input when
    # they turn echo off; the wizard does not: console.py changes the terminal with
    # TCSADRAIN, and the tests wait for each prompt before they answer it) and ptyprocess
    # 100 ms in close(), after the wizard has exited: both only cost time here.
    child.delaybeforesend = None
    cast(Any, child).ptyproc.delayafterclose = 0.0  # (not in pexpect's type stubs)
    return child


# --------------------------------------------------------------------------------------------
# Driving the wizard

PASSWORD = "s3cret-pass"


def ssh_key_line(comment: str = "admin@laptop") -> str:
    import base64

    blob = b""
    for part in (b"ssh-ed25519", bytes(range(32))):
        blob += len(part).to_bytes(4, "big") + part
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


SSH_KEY = ssh_key_line()

# The prompts in order, with the answers typed for node1 ("" = Enter, the default).
NODE1: list[tuple[str, str]] = [
    ("Role (node1 or node2) [node1]: ", ""),
    ("Hostname of this node [node1]: ", "linuxha1"),
    ("Hostname of the peer node [linuxha2]: ", ""),
    ("Cluster name [twinbeat]: ", ""),
    ("Public interface [eth0]: ", ""),
    ("Public address/prefix [192.168.85.1/24]: ", ""),
    ("Gateway ('none' for no gateway) [192.168.85.254]: ", ""),
    ("DNS servers ('none' for none) [192.168.85.254]: ", ""),
    ("Crossover interface [eth1]: ", ""),
    ("Crossover address/prefix [10.0.0.1/24]: ", ""),
    ("Peer's public address [192.168.85.2]: ", ""),
    ("Peer's crossover address [10.0.0.2]: ", ""),
    ("Heartbeats over the public LAN too? (yes/no) [yes]: ", ""),
    ("Floating address(es) [192.168.85.3]: ", ""),
    ("Null-modem serial port ('none' for none) [ttyS1]: ", ""),
    ("Serial baud rate [115200]: ", ""),
    ("Disk to replicate ('none' for none) [vdb]: ", ""),
    ("Shared secret code [", ""),
    ("File share (smb, nfs, both or none) [none]: ", ""),
    ("PostgreSQL database ('none' for none) [none]: ", ""),
    ("Services to own ('none' for none) [none]: ", "nginx"),
    ("Root password [none]: ", PASSWORD),
    ("Repeat the root password: ", PASSWORD),
    ("SSH public key for root ('none' for none) [none]: ", SSH_KEY),
    ("NTP server ('none' for none) [192.168.85.254]: ", ""),
    ("E-mail for alerts ('none' for none) [none]: ", "admin@example.com"),
    ("Mail relay (smarthost): ", "mail.example.com"),
    ("Write this configuration? (yes/no) [yes]: ", ""),
]


def node2_steps(code: str) -> list[tuple[str, str]]:
    return [
        ("Role (node1 or node2) [node1]: ", "node2"),
        ("Hostname of this node [node2]: ", "linuxha2"),
        ("Hostname of the peer node [linuxha1]: ", ""),
        ("Cluster name [twinbeat]: ", ""),
        ("Public interface [eth0]: ", ""),
        ("Public address/prefix [192.168.85.2/24]: ", ""),
        ("Gateway ('none' for no gateway) [192.168.85.254]: ", ""),
        ("DNS servers ('none' for none) [192.168.85.254]: ", ""),
        ("Crossover interface [eth1]: ", ""),
        ("Crossover address/prefix [10.0.0.2/24]: ", ""),
        ("Peer's public address [192.168.85.1]: ", ""),
        ("Peer's crossover address [10.0.0.1]: ", ""),
        ("Heartbeats over the public LAN too? (yes/no) [yes]: ", ""),
        ("Floating address(es) [192.168.85.3]: ", ""),
        ("Null-modem serial port ('none' for none) [ttyS1]: ", ""),
        ("Serial baud rate [115200]: ", ""),
        ("Disk to replicate ('none' for none) [vdb]: ", ""),
        ("Shared secret code from node1: ", code.lower().replace("-", " ")),
        ("File share (smb, nfs, both or none) [none]: ", ""),
        ("PostgreSQL database ('none' for none) [none]: ", ""),
        ("Services to own ('none' for none) [none]: ", "nginx"),
        ("Root password [none]: ", PASSWORD),
        ("Repeat the root password: ", PASSWORD),
        ("SSH public key for root ('none' for none) [none]: ", ""),
        ("NTP server ('none' for none) [192.168.85.254]: ", ""),
        ("E-mail for alerts ('none' for none) [none]: ", ""),
        ("Write this configuration? (yes/no) [yes]: ", ""),
    ]


def drive(
    child: pexpect.spawn[str], steps: list[tuple[str, str]], stop_before: int | None = None
) -> None:
    """Answer the prompts in order; stop (without answering) at index stop_before."""
    for i, (prompt, answer) in enumerate(steps):
        child.expect_exact(prompt)
        if i == stop_before:
            return
        child.sendline(answer)


def finish(child: pexpect.spawn[str]) -> int:
    child.expect(pexpect.EOF)
    child.close()
    status = child.exitstatus
    assert status is not None, f"killed by signal {child.signalstatus}"
    return int(status)


# --------------------------------------------------------------------------------------------
# Golden files: what the wizard changed in the scratch root


def changes(before: dict[str, str], root: Path) -> dict[str, str]:
    """Paths added or changed since `before`, each with its manifest line."""
    after = tree_digest(root)
    out: dict[str, str] = {}
    for path, desc in after.items():
        if before.get(path) != desc and not desc.startswith("dir "):
            out[path] = desc
    for path in before:
        if path not in after:
            out[path] = "removed"
    return out


def normalized(root: Path, rel: str) -> str:
    text = (root / rel).read_text(encoding="utf-8")
    if rel == "etc/shadow":  # the day of the last password change is today's
        text = "\n".join(
            ":".join([*f[:2], "DAYS", *f[3:]]) if (f := line.split(":"))[0] == "root" else line
            for line in text.splitlines()
        ) + "\n"
    return text


def manifest(root: Path, changed: dict[str, str]) -> str:
    lines = []
    for rel, desc in sorted(changed.items()):
        if desc.startswith("file "):
            lines.append(f"{rel} mode {desc.split()[1][-3:]}")
        else:
            lines.append(f"{rel} {desc}")
    return "\n".join(lines) + "\n"


def compare_golden(name: str, root: Path, changed: dict[str, str]) -> list[str]:
    """Differences from tests/golden/firstboot/NAME (TWINBEAT_UPDATE_GOLDEN=1 rewrites it)."""
    golden = GOLDEN / name
    files = sorted(r for r, d in changed.items() if d.startswith("file "))
    if os.environ.get("TWINBEAT_UPDATE_GOLDEN") == "1":
        import shutil

        shutil.rmtree(golden, ignore_errors=True)
        for rel in files:
            _write(golden / rel, normalized(root, rel))
        _write(golden / "MANIFEST", manifest(root, changed))
    problems = []
    expected_manifest = (golden / "MANIFEST").read_text(encoding="utf-8")
    if manifest(root, changed) != expected_manifest:
        problems.append(f"MANIFEST differs:\n{manifest(root, changed)}\nexpected:\n"
                        f"{expected_manifest}")
    for rel in files:
        g = golden / rel
        if not g.exists():
            problems.append(f"{rel}: no golden copy")
        elif normalized(root, rel) != g.read_text(encoding="utf-8"):
            problems.append(f"{rel} differs from {g}")
    return problems


def before(child: pexpect.spawn[str]) -> str:
    """The text before the last match (typed: pexpect's attribute may be None)."""
    return child.before if isinstance(child.before, str) else ""


def matched(child: pexpect.spawn[str]) -> re.Match[str]:
    m = child.match
    assert isinstance(m, re.Match), m
    return m
