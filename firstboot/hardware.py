"""What the machine has: network cards, serial ports, disks, installed services.

Everything is read under a root directory (``/`` on the appliance, a scratch tree in tests):

=================================  ========================================================
``ROOT/sys/class/net/NAME/``       ``address`` (MAC), ``operstate``, ``carrier``,
                                   ``device/driver`` (a link whose name is the driver);
                                   cards without ``device`` are virtual and not listed
``ROOT/dev/ttyS*``, ``ttyUSB*``    serial ports; a ``ttyS`` whose
                                   ``ROOT/sys/class/tty/NAME/type`` is ``0`` has no UART
``ROOT/sys/class/tty/console/      the kernel consoles (``tty1 ttyS0``), also taken from
active``, ``ROOT/proc/cmdline``    ``console=`` on the kernel command line
``ROOT/sys/block/NAME/``           ``size`` (512-byte sectors), ``device/model``,
                                   ``removable``, ``dev`` (``MAJOR:MINOR``), partitions as
                                   sub-directories with a ``partition`` file, ``holders/``
``ROOT/proc/self/mountinfo``,      which block devices are in use: a disk that holds a
``ROOT/proc/swaps``                mounted file system (``/`` among them) or swap is the
                                   running system and is never offered for replication
``ROOT/dev/NAME``                  the first 68 KiB, to warn when a disk is not blank
``ROOT/{etc,usr/lib,lib}/systemd/  installed service units
system/*.service``
=================================  ========================================================
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_SKIP_DISKS = ("loop", "ram", "zram", "sr", "fd", "nbd", "drbd")
_SERIAL_PREFIXES = ("ttyS", "ttyUSB")

# Units of the base system that a cluster must never own; they are neither listed nor accepted.
BASE_UNIT_PREFIXES = (
    "systemd-", "getty", "serial-getty", "console-", "container-getty", "autovt", "twinbeat",
    "dbus", "emergency", "rescue", "initrd-", "kmod", "modprobe", "user-runtime-dir",
    "user@", "plymouth", "debug-shell", "ssh", "e2scrub", "fstrim", "apt-", "dpkg",
    "man-db", "logrotate", "networking", "ifup", "udev", "polkit", "getty-static",
    # DRBD is driven by twinbeat itself (drbddisk::RES), never as a unit of a group
    "drbd", "grub-",
)
# twinbeat's own units are base units, except the ones it ships for a cluster to own.
OWNABLE_UNITS = ("twinbeat-demo-web.service",)


def is_base_unit(unit: str) -> bool:
    """A unit of the base system that the cluster must never own."""
    return unit.startswith(BASE_UNIT_PREFIXES) and unit not in OWNABLE_UNITS

UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")


@dataclass(frozen=True)
class Nic:
    name: str
    mac: str
    driver: str
    operstate: str
    carrier: bool | None

    @property
    def link(self) -> str:
        if self.carrier is True:
            return "link up"
        if self.carrier is False:
            return "no link (cable?)"
        return "down"

    def describe(self) -> str:
        return f"{self.name:<10} {self.mac:<17}  {self.driver:<12} {self.link}"


@dataclass(frozen=True)
class SerialPort:
    name: str
    is_console: bool

    def describe(self) -> str:
        note = "  (the serial console)" if self.is_console else ""
        return f"{self.name}{note}"


@dataclass(frozen=True)
class Disk:
    name: str
    size_bytes: int
    model: str
    removable: bool
    in_use: str | None  # why it belongs to the running system, or None
    contents: str | None  # what is on it ("an ext4 file system"), None when blank

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"

    def describe(self) -> str:
        text = f"{self.name:<8} {format_size(self.size_bytes):>9}  {self.model}"
        if self.removable:
            text += " (removable)"
        if self.contents:
            text += f"  - holds {self.contents}"
        return text


@dataclass(frozen=True)
class Hardware:
    nics: tuple[Nic, ...] = ()
    serial_ports: tuple[SerialPort, ...] = ()
    disks: tuple[Disk, ...] = ()  # every disk, in use or not
    services: tuple[str, ...] = ()  # every installed, non-template .service unit
    offered_services: tuple[str, ...] = ()  # the ones worth listing
    consoles: tuple[str, ...] = ()

    def nic(self, name: str) -> Nic | None:
        return next((n for n in self.nics if n.name == name), None)

    def serial(self, name: str) -> SerialPort | None:
        return next((p for p in self.serial_ports if p.name == name), None)

    def disk(self, name: str) -> Disk | None:
        return next((d for d in self.disks if d.name == name), None)

    @property
    def free_disks(self) -> tuple[Disk, ...]:
        return tuple(d for d in self.disks if d.in_use is None)


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def natural_key(name: str) -> tuple[str, int, str]:
    m = re.match(r"^(.*?)(\d+)(.*)$", name)
    if not m:
        return (name, -1, "")
    return (m.group(1), int(m.group(2)), m.group(3))


# --------------------------------------------------------------------------------------------
# Network cards


def discover_nics(root: Path) -> tuple[Nic, ...]:
    base = root / "sys/class/net"
    out: list[Nic] = []
    try:
        names = sorted(os.listdir(base), key=natural_key)
    except OSError:
        return ()
    for name in names:
        d = base / name
        if name == "lo" or not (d / "device").exists():
            continue
        mac = (_read(d / "address") or "").lower()
        try:
            driver = os.path.basename(os.readlink(d / "device/driver"))
        except OSError:
            driver = "-"
        carrier_text = _read(d / "carrier")
        carrier = {"1": True, "0": False}.get(carrier_text or "")
        out.append(Nic(name, mac, driver, _read(d / "operstate") or "unknown", carrier))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Serial ports and consoles


def discover_consoles(root: Path) -> tuple[str, ...]:
    names: list[str] = []
    active = _read(root / "sys/class/tty/console/active") or ""
    names.extend(active.split())
    cmdline = _read(root / "proc/cmdline") or ""
    for word in cmdline.split():
        if word.startswith("console="):
            names.append(word.split("=", 1)[1].split(",", 1)[0])
    return tuple(dict.fromkeys(n for n in names if n))


def discover_serial_ports(root: Path, consoles: tuple[str, ...]) -> tuple[SerialPort, ...]:
    try:
        names = os.listdir(root / "dev")
    except OSError:
        return ()
    ports: list[SerialPort] = []
    for name in sorted(names, key=natural_key):
        if not any(name.startswith(p) and name[len(p):].isdigit() for p in _SERIAL_PREFIXES):
            continue
        uart = _read(root / "sys/class/tty" / name / "type")
        if name.startswith("ttyS") and uart == "0":
            continue  # the kernel reserves ttyS0-3, but no UART answers behind this one
        ports.append(SerialPort(name, name in consoles))
    return tuple(ports)


# --------------------------------------------------------------------------------------------
# Disks


@dataclass(frozen=True)
class _BlockNode:
    disk: str
    name: str
    majmin: str | None


def _block_nodes(root: Path) -> list[_BlockNode]:
    base = root / "sys/block"
    nodes: list[_BlockNode] = []
    try:
        disks = sorted(os.listdir(base), key=natural_key)
    except OSError:
        return []
    for disk in disks:
        d = base / disk
        nodes.append(_BlockNode(disk, disk, _read(d / "dev")))
        try:
            children = sorted(os.listdir(d), key=natural_key)
        except OSError:
            continue
        for child in children:
            if child.startswith(disk) and (d / child / "partition").exists():
                nodes.append(_BlockNode(disk, child, _read(d / child / "dev")))
    return nodes


def _mounted_sources(root: Path) -> list[tuple[str, str, str]]:
    """(MAJOR:MINOR, source device, mount point) of every mount."""
    out: list[tuple[str, str, str]] = []
    text = _read(root / "proc/self/mountinfo") or ""
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5:
            continue
        rfields = right.split()
        source = rfields[1] if len(rfields) > 1 else ""
        out.append((fields[2], source, fields[4]))
    return out


def _swap_sources(root: Path) -> list[str]:
    text = _read(root / "proc/swaps") or ""
    return [line.split()[0] for line in text.splitlines()[1:] if line.split()]


def _disk_usage(root: Path, nodes: list[_BlockNode]) -> dict[str, str]:
    """Disk name -> why it belongs to the running system (absent: free to use)."""
    by_majmin = {n.majmin: n for n in nodes if n.majmin}
    by_name = {n.name: n for n in nodes}
    usage: dict[str, str] = {}

    def note(disk: str, why: str) -> None:
        # holding / is the reason worth showing; otherwise keep the first one found
        if why.startswith("holds /") or disk not in usage:
            usage[disk] = why

    def mark(name: str, why: str, depth: int = 0) -> None:
        node = by_name.get(name)
        if node is not None and not name.startswith(("dm-", "md")):
            note(node.disk, why)
            return
        # a stacked device (dm-*, md*): whatever it sits on is in use too
        if depth > 4:
            return
        try:
            slaves = os.listdir(root / "sys/block" / name / "slaves")
        except OSError:
            return
        for slave in slaves:
            mark(slave, why, depth + 1)

    for majmin, source, mountpoint in _mounted_sources(root):
        why = "holds / (the running system)" if mountpoint == "/" else f"is mounted on {mountpoint}"
        node = by_majmin.get(majmin)
        if node is not None:
            mark(node.name, why)
        elif source.startswith("/dev/"):
            mark(os.path.basename(source), why)
    for source in _swap_sources(root):
        if source.startswith("/dev/"):
            mark(os.path.basename(source), "is used as swap")
    for n in nodes:
        sub = root / "sys/block" / n.disk
        if n.name != n.disk:
            sub = sub / n.name
        try:
            holders = sorted(os.listdir(sub / "holders"))
        except OSError:
            continue
        if holders:
            note(n.disk, f"is used by {holders[0]}")
    return usage


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"LUKS\xba\xbe", "a LUKS encrypted volume"),
    (0, b"XFSB", "an XFS file system"),
    (3, b"NTFS    ", "an NTFS file system"),
    (82, b"FAT32   ", "a FAT file system"),
    (54, b"FAT1", "a FAT file system"),
    (512, b"EFI PART", "a GPT partition table"),
    (512, b"LABELONE", "an LVM physical volume"),
    (1080, b"\x53\xef", "an ext2/3/4 file system"),
    (4086, b"SWAPSPACE2", "swap space"),
    (0x8001, b"CD001", "an ISO 9660 file system"),
    (0x10040, b"_BHRfS_M", "a Btrfs file system"),
)
_PROBE_BYTES = 0x10040 + 16


def identify_contents(head: bytes) -> str | None:
    """What the first bytes of a disk show, or None when they are all zero (blank)."""
    for offset, magic, what in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return what
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        return "an MBR partition table"
    if head.strip(b"\0"):
        return "data of an unknown kind (it is not blank)"
    return None


def _probe_contents(root: Path, disk: str, partitions: list[str]) -> str | None:
    if partitions:
        return f"partitions ({', '.join(partitions)})"
    try:
        with open(root / "dev" / disk, "rb") as f:
            head = f.read(_PROBE_BYTES)
    except OSError:
        return None
    return identify_contents(head)


def discover_disks(root: Path) -> tuple[Disk, ...]:
    nodes = _block_nodes(root)
    usage = _disk_usage(root, nodes)
    out: list[Disk] = []
    for n in nodes:
        if n.name != n.disk or n.disk.startswith(_SKIP_DISKS):
            continue
        if n.disk.startswith(("dm-", "md")):
            continue
        d = root / "sys/block" / n.disk
        try:
            size = int(_read(d / "size") or "0") * 512
        except ValueError:
            size = 0
        if size == 0:
            continue
        model = _read(d / "device/model") or _read(d / "device/name") or ""
        if not model:
            try:
                driver = os.path.basename(os.readlink(d / "device/driver"))
            except OSError:
                driver = ""
            model = "virtio disk" if driver.startswith("virtio") else "-"
        partitions = [p.name for p in nodes if p.disk == n.disk and p.name != p.disk]
        out.append(
            Disk(
                name=n.disk,
                size_bytes=size,
                model=" ".join(model.split()),
                removable=_read(d / "removable") == "1",
                in_use=usage.get(n.disk),
                contents=_probe_contents(root, n.disk, partitions),
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Installed services


def _has_install_section(path: Path) -> bool:
    text = _read(path) or ""
    return re.search(r"^\s*\[Install\]", text, re.MULTILINE) is not None


def discover_services(root: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every installed non-template .service, the subset worth offering)."""
    found: dict[str, Path] = {}
    for d in UNIT_DIRS:
        base = root / d
        try:
            entries = sorted(os.listdir(base))
        except OSError:
            continue
        for name in entries:
            if not name.endswith(".service") or name.endswith("@.service"):
                continue
            if name in found:
                continue
            found[name] = base / name
    installed = tuple(sorted(found))
    offered = tuple(
        n
        for n in installed
        if not is_base_unit(n)
        and not found[n].is_symlink()
        and _has_install_section(found[n])
    )
    return installed, offered


def discover(root: Path) -> Hardware:
    consoles = discover_consoles(root)
    services, offered = discover_services(root)
    return Hardware(
        nics=discover_nics(root),
        serial_ports=discover_serial_ports(root, consoles),
        disks=discover_disks(root),
        services=services,
        offered_services=offered,
        consoles=consoles,
    )
