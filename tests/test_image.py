"""The built image, inspected without booting it (needs root).

The image is built or reused through `make image`. Its root partition is mounted read-only
from a loop device at the partition's byte offset (read with sfdisk --json) and inspected
directly and through chroot; the ESP (vfat, which this host kernel cannot mount) is read
with mtools at its offset; the GRUB BIOS boot code is read from the raw bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# (hashing and reading the 2.5 GB image under load)
pytestmark = [pytest.mark.image, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
ROOT_X86_64_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
LINUX_GENERIC_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@dataclass(frozen=True)
class Part:
    type: str
    start: int  # bytes
    size: int  # bytes
    name: str


@dataclass(frozen=True)
class Image:
    raw: Path
    parts: list[Part]
    root: Path  # the root file system, mounted read-only

    def part(self, type_: str) -> Part:
        matches = [p for p in self.parts if p.type.upper() == type_]
        assert len(matches) == 1, f"expected one partition of type {type_}: {self.parts}"
        return matches[0]

    def chroot(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["chroot", str(self.root), *cmd], capture_output=True, text=True,
                              check=False, timeout=60,
                              env={"PATH": "/usr/bin:/usr/sbin", "LANG": "C.UTF-8"})

    def esp(self, tool: str, *args: str) -> str:
        esp = self.part(ESP_TYPE)
        r = subprocess.run([tool, "-i", f"{self.raw}@@{esp.start}", *args], capture_output=True,
                           text=True, timeout=60, check=False)
        assert r.returncode == 0, f"{tool} {args}: {r.stderr}"
        return r.stdout


def partitions(raw: Path) -> list[Part]:
    out = subprocess.run(["sfdisk", "--json", str(raw)], check=True, capture_output=True,
                         text=True).stdout
    table = json.loads(out)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return [Part(p["type"], p["start"] * sector, p["size"] * sector, p.get("name", ""))
            for p in table["partitions"]]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    if os.geteuid() != 0:
        pytest.fail("the image tests need root (loop devices, mount, chroot): run `make test`")
    subprocess.run(["make", "--no-print-directory", "image"], cwd=ROOT, check=True)
    raw = ROOT / "images" / f"twinbeat-{version()}.raw"
    parts = partitions(raw)
    root_part = next(p for p in parts if p.name == "rootfs-a")
    mnt = tmp_path_factory.mktemp("imgroot")
    loop = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", "--offset", str(root_part.start),
         "--sizelimit", str(root_part.size), str(raw)],
        check=True, capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["mount", "-o", "ro,noload", loop, str(mnt)], check=True)
        try:
            yield Image(raw, parts, mnt)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


def test_partition_table_has_esp_bios_boot_slot_a_and_state(image: Image) -> None:
    assert [(p.type.upper(), p.name) for p in image.parts] == [
        (ESP_TYPE, "esp"), (BIOS_BOOT_TYPE, "bios-boot"), (ROOT_X86_64_TYPE, "rootfs-a"),
        (LINUX_GENERIC_TYPE, "twinbeat-state")]
    sizes = {p.name: p.size for p in image.parts}
    assert sizes["rootfs-a"] == 2 * 1024**3
    # small in the image: the first boot grows it over the disk (and adds slot B)
    assert sizes["twinbeat-state"] == 256 * 1024**2


def test_checksum_file_matches_the_image(image: Image) -> None:
    want = image.raw.with_name(image.raw.name + ".sha256").read_text().split()
    assert want[1] == image.raw.name
    h = hashlib.sha256()
    with open(image.raw, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            h.update(chunk)
    assert h.hexdigest() == want[0]


def test_kernel_and_initrd_are_exported_next_to_the_image(image: Image) -> None:
    kernel = image.raw.with_suffix(".vmlinuz")
    initrd = image.raw.with_suffix(".initrd")
    with open(kernel, "rb") as f:
        f.seek(0x202)
        assert f.read(4) == b"HdrS", "the .vmlinuz is not an x86 bzImage"
    assert initrd.stat().st_size > 1024 * 1024
    # The same kernel as in the image, and in slot A's /boot where GRUB loads it from.
    kernels = list((image.root / "usr/lib/modules").glob("*/vmlinuz"))
    assert len(kernels) == 1
    assert kernels[0].read_bytes() == kernel.read_bytes()
    boot = image.root / "boot"
    assert (boot / "vmlinuz").read_bytes() == kernel.read_bytes()
    assert (boot / "kernel-version").read_text().strip() == kernels[0].parent.name
    # GRUB boots the exported initrd: initramfs-tools' (its init script mounts the root), not
    # a systemd initrd, with the modules of a PC's and QEMU's disks
    assert (boot / "initrd").read_bytes() == initrd.read_bytes()
    listing = image.chroot("lsinitramfs", "/boot/initrd")
    assert listing.returncode == 0, listing.stderr
    files = listing.stdout.split()
    assert "init" in files and "scripts/local" in files, files[:40]
    assert not [f for f in files if f.endswith("lib/systemd/systemd")], "a systemd initrd"
    for module in ("virtio_blk.ko", "ahci.ko", "nvme.ko", "usb-storage.ko", "ext4.ko"):
        assert any(f"/{module}" in f for f in files), module
    # kept for earlier images' grub.cfg, which loads it after the initrd: an empty cpio archive
    empty = (boot / "kernel-modules.initrd").read_bytes()
    assert empty.startswith(b"070701") and b"TRAILER!!!" in empty and len(empty) <= 512


def test_uefi_boot_loader_grub_is_on_the_esp_without_kernels(image: Image,
                                                            tmp_path: Path) -> None:
    listing = image.esp("mdir", "-b", "-/", "::/")
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing
    image.esp("mcopy", "::/EFI/BOOT/BOOTX64.EFI", str(tmp_path / "boot.efi"))
    efi = (tmp_path / "boot.efi").read_bytes()
    assert efi.startswith(b"MZ") and b"GRUB" in efi
    # the kernels live in the slots; nothing of systemd-boot is left
    assert "vmlinuz" not in listing and "::/twinbeat/" not in listing, listing
    assert "systemd-boot" not in listing
    # GRUB loads ext2 (slots), regexp and loadenv (the slot choice) from the ESP
    for target in ("i386-pc", "x86_64-efi"):
        for mod in ("ext2", "regexp", "loadenv", "part_gpt", "serial", "linux"):
            assert f"::/grub/{target}/{mod}.mod" in listing, (target, mod)


def test_grub_cfg_chooses_the_slot_from_grubenv(image: Image) -> None:
    grub_cfg = image.esp("mtype", "::/grub/grub.cfg")
    assert grub_cfg == (image.root / "usr/lib/twinbeat/grub.cfg").read_text()
    assert re.search(r'^set cmdline=".*console=ttyS0,115200n8.* panic=10"$', grub_cfg, re.M)
    assert re.search(r"^\s*if linux \(\$disk,\$part\)/boot/vmlinuz root=PARTLABEL=\$label rw "
                     r"rauc\.slot=\$1 \$cmdline; then$", grub_cfg, re.M), grub_cfg
    assert re.search(r"^\s*set part=gpt3\n\s*set label=rootfs-a$", grub_cfg, re.M)
    assert re.search(r"^\s*set part=gpt5\n\s*set label=rootfs-b$", grub_cfg, re.M)
    assert re.search(r"^save_env A_TRY B_TRY$", grub_cfg, re.M)
    env = image.esp("mtype", "::/grub/grubenv")
    assert len(env.encode()) == 1024, "grubenv must be GRUB's 1024-byte block"
    values = dict(line.split("=", 1) for line in env.splitlines()
                  if "=" in line and not line.startswith("#"))
    assert values == {"ORDER": "A B", "A_OK": "1", "A_TRY": "0", "B_OK": "0", "B_TRY": "0"}


def test_our_units_are_present_and_enabled(image: Image) -> None:
    for unit in ("twinbeat.service", "twinbeat-ssh-keygen.service", "ssh.service",
                 "systemd-networkd.service", "twinbeat-boot-check.service",
                 "twinbeat-upgrade-agent.service", "twinbeat-upgrade.service"):
        r = subprocess.run(["systemctl", f"--root={image.root}", "is-enabled", unit],
                           capture_output=True, text=True, check=False)
        assert r.stdout.strip() == "enabled", f"{unit}: {r.stdout}{r.stderr}"
    # drbd.service would bring DRBD up (and wait for the peer) behind the supervisor's
    # back: twinbeat owns DRBD
    for unit in ("drbd.service",):
        r = subprocess.run(["systemctl", f"--root={image.root}", "is-enabled", unit],
                           capture_output=True, text=True, check=False)
        assert r.stdout.strip() == "disabled", f"{unit}: {r.stdout}{r.stderr}"
    # systemd-repart (first boot: slot B, state grown) runs at every boot, before local-fs
    wants = image.root / "usr/lib/systemd/system/sysinit.target.wants"
    assert (wants / "systemd-repart.service").resolve().name == "systemd-repart.service"
    assert (image.root / "usr/lib/systemd/system/systemd-repart.service").exists()
    preset = (image.root / "usr/lib/systemd/system-preset/40-twinbeat.preset").read_text()
    assert "enable twinbeat-firstboot.service" in preset
    firstboot = image.root / "usr/lib/systemd/system/twinbeat-firstboot.service"
    if firstboot.exists():  # written by the first-boot wizard's work
        r = subprocess.run(["systemctl", f"--root={image.root}", "is-enabled",
                            "twinbeat-firstboot.service"], capture_output=True, text=True,
                           check=False)
        assert r.stdout.strip() == "enabled", r.stdout + r.stderr


def test_demo_web_service_is_shipped_disabled(image: Image) -> None:
    """A service a user may choose in the wizard: twinbeat starts it, the boot does not."""
    unit = image.root / "usr/lib/systemd/system/twinbeat-demo-web.service"
    assert "ExecStart=/usr/bin/python3 -m http.server 80" in unit.read_text()
    r = subprocess.run(["systemctl", f"--root={image.root}", "is-enabled",
                        "twinbeat-demo-web.service"], capture_output=True, text=True,
                       check=False)
    assert r.stdout.strip() == "disabled", r.stdout + r.stderr


def test_supervisor_unit_is_skipped_until_the_node_is_configured(image: Image) -> None:
    unit = (image.root / "usr/lib/systemd/system/twinbeat.service").read_text()
    for line in ("ConditionPathExists=/etc/twinbeat/cluster.toml", "Type=notify",
                 "ExecStart=/usr/bin/twinbeat run", "Restart=on-failure",
                 # (a hardware watchdog's driver comes with udev's coldplug: wait for it)
                 "ExecStartPre=-/usr/bin/udevadm settle --timeout=60",
                 "Wants=network-online.target", "CPUSchedulingPolicy=rr",
                 "CPUSchedulingResetOnFork=yes", "LimitMEMLOCK=infinity"):
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), line
    assert re.search(r"^CPUSchedulingPriority=[1-9]\d*$", unit, re.M)
    assert re.search(r"^WatchdogSec=\d+", unit, re.M)
    assert not (image.root / "etc/twinbeat/cluster.toml").exists()


def test_python_libraries_import_in_the_image(image: Image) -> None:
    r = image.chroot("python3", "-B", "-c", "import pyroute2, serial, pyinotify, jinja2, pexpect")
    assert r.returncode == 0, r.stderr


def test_operations_dependencies_are_in_the_image(image: Image) -> None:
    """Debian's prometheus client serves the metrics (imported only where they are served);
    systemd-timesyncd sets the clock from the wizard's NTP server."""
    r = image.chroot("python3", "-I", "-B", "-c",
                     "import sys; sys.path.insert(0, '/usr/lib/twinbeat'); "
                     "from supervisor import metrics; print(metrics.CONTENT_TYPE)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("text/plain; version=0.0.4")
    assert (image.root / "usr/lib/systemd/system/systemd-timesyncd.service").exists()
    assert (image.root / "usr/lib/systemd/systemd-timesyncd").exists()


def test_our_packages_are_private_and_import_in_the_image(image: Image) -> None:
    r = image.chroot("python3", "-I", "-B", "-c",
                     "import sys; sys.path.insert(0, '/usr/lib/twinbeat'); "
                     "import supervisor.config, firstboot; print(supervisor.config.__file__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/usr/lib/twinbeat/supervisor/config/__init__.py"
    assert not list((image.root / "usr/lib/python3/dist-packages").glob("supervisor/config"))
    # Byte-compiled by the image's Python, nothing from the host.
    tags = {p.name.split(".")[1] for p in (image.root / "usr/lib/twinbeat").rglob("*.pyc")}
    assert len(tags) == 1 and tags != {"cpython-311"}, tags


def test_launchers_run_our_entry_points(image: Image) -> None:
    for name, module in (("twinbeat", "supervisor.cli"), ("twinbeat-firstboot", "firstboot.cli")):
        launcher = image.root / "usr/bin" / name
        text = launcher.read_text()
        assert text.startswith("#!/usr/bin/python3 -I\n")
        assert 'sys.path.insert(0, "/usr/lib/twinbeat")' in text
        assert f"from {module} import main" in text
        assert os.access(launcher, os.X_OK)
        path = ROOT / module.replace(".", "/")
        if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
            r = image.chroot(f"/usr/bin/{name}", "--help")
            assert r.returncode == 0, r.stdout + r.stderr


def test_softdog_is_loaded_at_boot(image: Image) -> None:
    conf = (image.root / "usr/lib/modules-load.d/softdog.conf").read_text()
    assert "softdog" in [line.strip() for line in conf.splitlines()]
    assert list((image.root / "usr/lib/modules").glob("*/kernel/drivers/watchdog/softdog.ko*"))
    assert list((image.root / "usr/lib/modules").glob("*/kernel/drivers/block/drbd/drbd.ko*"))


#: generators the appliance has no use for, masked (/etc/systemd/system-generators/NAME ->
#: /dev/null): each costs a fork and an exec on every boot and every daemon-reload (about
#: 0.1-0.4 s each in a TCG guest); see mkosi.extra/etc/systemd/system-generators
MASKED_GENERATORS = {
    "systemd-gpt-auto-generator",  # the ESP and /persist are in /etc/fstab, root= is given
    "systemd-hibernate-resume-generator",  # no swap, no hibernation
    "systemd-rc-local-generator",  # no /etc/rc.local
    "systemd-run-generator",  # systemd.run= on the kernel command line: not used
    "systemd-ssh-generator",  # sshd over AF_VSOCK/AF_UNIX: not used (failed on every boot)
    "systemd-system-update-generator",  # offline updates: RAUC's slots instead
    "systemd-sysv-generator",  # every /etc/init.d script has a native unit (tested below)
    "systemd-tpm2-generator",  # nothing uses a TPM
}
#: generators the appliance needs: systemd.mask= from the QEMU tests' kernel command line,
#: /etc/fstab, the serial getty, the NFS server and PostgreSQL's clusters
NEEDED_GENERATORS = {"systemd-debug-generator", "systemd-fstab-generator",
                     "systemd-getty-generator", "nfs-server-generator",
                     "rpc-pipefs-generator", "postgresql-generator"}


def test_unused_generators_are_masked_and_the_needed_ones_run(image: Image) -> None:
    shipped = {p.name for p in (image.root / "usr/lib/systemd/system-generators").iterdir()}
    assert shipped >= MASKED_GENERATORS | NEEDED_GENERATORS, shipped
    masks = image.root / "etc/systemd/system-generators"
    masked = {p.name for p in masks.iterdir() if os.readlink(p) == "/dev/null"}
    assert masked == MASKED_GENERATORS
    assert not masked & NEEDED_GENERATORS
    # with the SysV generator masked, an init script without a unit would never start
    for script in (image.root / "etc/init.d").iterdir():
        units = [image.root / d / f"{script.name}.service"
                 for d in ("usr/lib/systemd/system", "etc/systemd/system")]
        assert any(u.is_symlink() or u.exists() for u in units), (
            f"/etc/init.d/{script.name} has no native unit")


#: units of the image's packages that would only cost boot time on the appliance
MASKED_UNITS = {
    "systemd-binfmt.service",  # no foreign binary formats
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
}
DISABLED_UNITS = {"e2scrub_reap.service": "multi-user.target.wants",  # no LVM snapshots
                  "e2scrub_all.timer": "timers.target.wants"}


def test_boot_skips_work_the_appliance_does_not_need(image: Image) -> None:
    units = image.root / "etc/systemd/system"
    masked = {p.name for p in units.iterdir() if p.is_symlink() and os.readlink(p) == "/dev/null"}
    assert masked == MASKED_UNITS
    for unit, wants in DISABLED_UNITS.items():
        assert (image.root / "usr/lib/systemd/system" / unit).exists(), unit
        assert not (units / wants / unit).is_symlink(), f"{unit} is enabled"
    # /etc and /var are as new as /usr: ConditionNeedsUpdate= (ldconfig, the journal's
    # catalog, systemd-update-done) does not redo the build's work at a slot's first boot
    usr = (image.root / "usr").stat().st_mtime_ns
    for stamp in ("etc/.updated", "var/.updated"):
        assert (image.root / stamp).stat().st_mtime_ns >= usr, stamp
    assert (image.root / "etc/ld.so.cache").stat().st_size > 0


def test_no_node_specific_identity_is_baked_in(image: Image) -> None:
    machine_id = image.root / "etc/machine-id"
    assert machine_id.exists() and machine_id.stat().st_size == 0
    assert not list((image.root / "etc/ssh").glob("ssh_host_*"))
    assert not list((image.root / "etc/ssh/host-keys").iterdir())
    assert not (image.root / "var/lib/systemd/random-seed").exists()


def test_root_is_locked_and_sshd_refuses_passwords(image: Image) -> None:
    shadow = {line.split(":")[0]: line.split(":")[1]
              for line in (image.root / "etc/shadow").read_text().splitlines()}
    assert shadow["root"][:1] in ("!", "*"), "root has a usable password in the image"
    conf = (image.root / "etc/ssh/sshd_config.d/twinbeat.conf").read_text()
    assert re.search(r"^PasswordAuthentication no$", conf, re.M)
    assert re.search(r"^KbdInteractiveAuthentication no$", conf, re.M)


def test_console_login_and_drbd_tools_are_installed(image: Image) -> None:
    for tool in ("usr/bin/login", "usr/sbin/agetty", "usr/sbin/drbdadm", "usr/bin/arping",
                 "usr/sbin/ip", "usr/sbin/sshd"):
        assert (image.root / tool).exists(), tool
    # base-files' /var/lock -> /run/lock survived the drbd-utils installation (mkosi.prepare).
    assert os.readlink(image.root / "var/lock") == "/run/lock"


# --------------------------------------------------------------------------------------------
# DRBD resource files: rendered by the image's own twinbeat, parsed by the image's drbdadm-84.
# (Here rather than in the unit tier: drbd-utils' trixie binaries need a newer C library than
# the Debian 12 host has, and the image is what runs them.)

DRBD_CLUSTER_TOML = """\
[cluster]
name = "web"
authkeys = "authkeys"

[[node]]
name = "{node1}"
crossover_address = "10.0.0.1"

[[node]]
name = "{node2}"
crossover_address = "10.0.0.2"

[[link]]
name = "crossover"
type = "udp"
interface = "eth1"

[[group]]
name = "web"
preferred = "{node1}"
resources = ["drbddisk::r0", "Filesystem::/dev/drbd0::/srv::ext4"]

[[replicated]]
name = "r0"
disk = "/dev/vdb"
mount_point = "/srv"
split_brain = "discard-node {node2}"
"""


@pytest.fixture
def image_tmp(image: Image, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A scratch folder of the host, seen as /tmp/twinbeat-test inside the image's chroot."""
    inside = "/tmp/twinbeat-test"
    work = tmp_path / "work"
    work.mkdir()
    (work / "twinbeat-test").mkdir()
    subprocess.run(["mount", "--bind", str(work), str(image.root / "tmp")], check=True)
    try:
        yield work / "twinbeat-test", inside
    finally:
        subprocess.run(["umount", str(image.root / "tmp")], check=True)


def _drbd_site(host: Path, node1: str, node2: str) -> None:
    (host / "cluster.toml").write_text(DRBD_CLUSTER_TOML.format(node1=node1, node2=node2))
    fd = os.open(host / "authkeys", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"auth 1\n1 sha256 0123456789abcdef0123\n")
    os.close(fd)


def test_drbd_template_is_shipped_with_the_supervisor(image: Image) -> None:
    shipped = image.root / "usr/lib/twinbeat/supervisor/templates/drbd.res.j2"
    assert shipped.read_text() == (ROOT / "supervisor/templates/drbd.res.j2").read_text()


def test_rendered_resource_file_parses_with_drbdadm_84(
    image: Image, image_tmp: tuple[Path, str]
) -> None:
    host, inside = image_tmp
    _drbd_site(host, "alpha", "beta")  # not this host: drbdadm parses it all, binds nothing
    r = image.chroot("/usr/bin/twinbeat", "drbd-config", "--write", "--config",
                     f"{inside}/cluster.toml", "--drbd-dir", f"{inside}/drbd.d")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == f"wrote {inside}/drbd.d/r0.res\n"
    r = image.chroot("/usr/lib/drbd/drbdadm-84", "-c", f"{inside}/drbd.d/r0.res", "dump")
    assert r.returncode == 0, r.stdout + r.stderr
    dump = " ".join(r.stdout.split())
    for wanted in ("on alpha { device /dev/drbd0 minor 0; disk /dev/vdb; meta-disk internal; "
                   "address ipv4 10.0.0.1:7788; }",
                   "address ipv4 10.0.0.2:7788;",
                   "net { protocol C; ping-int 1; ping-timeout 10; after-sb-0pri "
                   "discard-node-beta; after-sb-1pri consensus; after-sb-2pri disconnect; }",
                   "disk { fencing resource-and-stonith; resync-rate 100M; c-max-rate 100M; }",
                   'handlers { fence-peer "/usr/bin/twinbeat fence-peer"; }'):
        assert wanted in dump, f"{wanted!r} not in drbdadm's dump:\n{r.stdout}"
    r = image.chroot("/usr/bin/twinbeat", "check-config", "--config", f"{inside}/cluster.toml",
                     "--drbd-dir", f"{inside}/drbd.d")
    assert r.returncode == 0, r.stdout + r.stderr


def test_drbdadm_84_turns_the_rendered_file_into_the_intended_options(
    image: Image, image_tmp: tuple[Path, str]
) -> None:
    """With this host as a node, drbdadm's dry run shows what it would pass to drbdsetup."""
    host, inside = image_tmp
    me = os.uname().nodename
    _drbd_site(host, me, "peer")
    r = image.chroot("/usr/bin/twinbeat", "drbd-config", "--write", "--config",
                     f"{inside}/cluster.toml", "--drbd-dir", f"{inside}/drbd.d")
    assert r.returncode == 0, r.stdout + r.stderr
    r = image.chroot("/usr/lib/drbd/drbdadm-84", "-c", f"{inside}/drbd.d/r0.res", "-d", "up",
                     "r0")
    assert r.returncode == 0, r.stdout + r.stderr
    attach = next(line for line in r.stdout.splitlines() if " attach " in line)
    connect = next(line for line in r.stdout.splitlines() if " connect " in line)
    for option in ("--fencing=resource-and-stonith", "--resync-rate=100M",
                   "--c-max-rate=100M"):
        assert option in attach.split(), attach
    assert "/dev/vdb" in attach.split()
    # discard-node-peer on this host: the peer's changes are the ones discarded
    for option in ("ipv4:10.0.0.1:7788", "ipv4:10.0.0.2:7788", "--protocol=C",
                   "--after-sb-0pri=discard-remote", "--after-sb-1pri=consensus",
                   "--after-sb-2pri=disconnect", "--ping-int=1", "--ping-timeout=10"):
        assert option in connect.split(), connect


def test_drbdadm_84_passes_a_forced_disconnect_to_drbdsetup(
    image: Image, image_tmp: tuple[Path, str]
) -> None:
    """The promotion machine drops DRBD's connection to a dead peer with `drbdadm
    disconnect --force` (a graceful disconnect waits for the dead peer's answer, i.e. for
    DRBD's ping): the image's drbdadm-84 must hand --force to drbdsetup."""
    host, inside = image_tmp
    _drbd_site(host, os.uname().nodename, "peer")
    r = image.chroot("/usr/bin/twinbeat", "drbd-config", "--write", "--config",
                     f"{inside}/cluster.toml", "--drbd-dir", f"{inside}/drbd.d")
    assert r.returncode == 0, r.stdout + r.stderr
    r = image.chroot("/usr/lib/drbd/drbdadm-84", "-c", f"{inside}/drbd.d/r0.res", "-d",
                     "disconnect", "--force", "r0")
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if " disconnect " in x)
    assert "--force" in line.split(), line
# --------------------------------------------------------------------------------------------
# A/B updates: the layout the first boot makes, the identity on /persist, RAUC's slots and
# the image's own RAUC against good and bad bundles.

GIB = 1024**3


def bwrap(image: Image, work: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a tool of the image (its own binaries and libraries), `work` bound on its /mnt
    (the host's /dev: RAUC checks that it has the bundle's file system to itself)."""
    return subprocess.run(
        ["bwrap", "--ro-bind", str(image.root), "/", "--dev-bind", "/dev", "/dev",
         "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run", "--bind", str(work), "/mnt",
         *cmd],
        capture_output=True, text=True, check=False, timeout=600,
        env={"PATH": "/usr/bin:/usr/sbin", "LANG": "C.UTF-8"})


def test_first_boot_repart_makes_slot_b_and_grows_the_state(image: Image,
                                                            tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(image.raw), str(disk)], check=True)
    # a disk exactly the image's size: no room for slot B; nothing is changed
    r = bwrap(image, tmp_path, "systemd-repart", "--dry-run=no", "/mnt/disk.raw")
    assert r.returncode != 0 and "Can't fit" in r.stderr, r.stderr
    assert partitions(disk) == image.parts
    # an 8 GiB disk: slot B after the state partition, which grows over the rest
    os.truncate(disk, 8 * GIB)
    r = bwrap(image, tmp_path, "systemd-repart", "--dry-run=no", "/mnt/disk.raw")
    assert r.returncode == 0, r.stderr
    after = partitions(disk)
    assert [p.name for p in after] == ["esp", "bios-boot", "rootfs-a", "twinbeat-state",
                                       "rootfs-b"]
    assert after[:3] == image.parts[:3]  # the ESP and slot A are not moved
    sizes = {p.name: p for p in after}
    assert sizes["rootfs-b"].size == 2 * GIB
    assert sizes["rootfs-b"].type.upper() == ROOT_X86_64_TYPE
    assert sizes["twinbeat-state"].start == image.parts[3].start
    assert sizes["twinbeat-state"].size > 3 * GIB
    assert sizes["rootfs-b"].start + sizes["rootfs-b"].size > 8 * GIB - 2 * 2**20
    # grub.cfg boots slot B from partition 5
    assert after.index(sizes["rootfs-b"]) == 4
    # a second boot changes nothing
    r = bwrap(image, tmp_path, "systemd-repart", "--dry-run=no", "/mnt/disk.raw")
    assert r.returncode == 0, r.stderr
    assert partitions(disk) == after


def fstab(image: Image) -> list[list[str]]:
    return [line.split() for line in (image.root / "etc/fstab").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_fstab_mounts_esp_state_and_binds_the_identity_from_it(image: Image) -> None:
    from supervisor.lifecycle.persist import BOUND

    rows = {row[1]: row for row in fstab(image)}
    assert rows["/efi"][:3] == ["PARTLABEL=esp", "/efi", "vfat"]
    state = rows["/persist"]
    assert state[:3] == ["PARTLABEL=twinbeat-state", "/persist", "ext4"]
    assert "x-systemd.growfs" in state[3].split(",")
    binds = {row[1]: row for row in rows.values() if row[2] == "none"}
    assert sorted(binds) == sorted("/" + rel for rel, _ in BOUND)
    for target, row in binds.items():
        assert row[0] == "/persist" + target
        opts = row[3].split(",")
        assert "bind" in opts and "x-systemd.requires=twinbeat-persist.service" in opts
        assert (image.root / target.lstrip("/")).is_dir(), f"no mount point {target}"
    unit = (image.root / "usr/lib/systemd/system/twinbeat-persist.service").read_text()
    assert "ExecStart=/usr/bin/twinbeat persist prepare" in unit
    assert "RequiresMountsFor=/persist" in unit
    conf = (image.root / "etc/ssh/sshd_config.d/twinbeat.conf").read_text()
    assert "HostKey /etc/ssh/host-keys/ssh_host_ed25519_key" in conf


def test_rauc_slots_are_the_partitions_grub_boots(image: Image) -> None:
    import configparser

    conf = configparser.ConfigParser()
    conf.read_string((image.root / "etc/rauc/system.conf").read_text())
    assert conf["system"]["bootloader"] == "grub"
    assert conf["system"]["grubenv"] == "/efi/grub/grubenv"
    assert conf["system"]["compatible"] == "twinbeat-x86-64"
    labels = {}
    for path in sorted((image.root / "usr/lib/repart.d").glob("*.conf")):
        m = re.search(r"^Label=(\S+)$", path.read_text(), re.M)
        assert m, path
        labels[path.name] = m.group(1)
    assert {"rootfs-a", "rootfs-b", "twinbeat-state", "esp"} <= set(labels.values())
    slots = {conf[s]["bootname"]: conf[s]["device"] for s in conf.sections()
             if s.startswith("slot.rootfs.")}
    assert slots == {"A": "/dev/disk/by-partlabel/rootfs-a",
                     "B": "/dev/disk/by-partlabel/rootfs-b"}
    for section in ("slot.rootfs.0", "slot.rootfs.1"):
        assert conf[section]["type"] == "ext4" and conf[section]["resize"] == "true"
    for handler in ("pre-install", "post-install"):
        path = image.root / conf["handlers"][handler].lstrip("/")
        assert os.access(path, os.X_OK), path
    # the keyring is the CA of the key that signs bundles on this build machine
    keys = subprocess.run([str(ROOT / "scripts/signing-key.sh")], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert (image.root / "etc/rauc/keyring.pem").read_bytes() == \
        (Path(keys) / "ca.cert.pem").read_bytes()
    assert not list(ROOT.glob("**/*.key.pem")), "a signing key inside the repository"
    assert (image.root / "usr/lib/twinbeat/VERSION").read_text().strip() == version()


def _bundle(image: Image) -> Path:
    return image.raw.with_suffix(".raucb")


def test_bundle_is_next_to_the_image_with_its_checksum(image: Image) -> None:
    bundle = _bundle(image)
    want = bundle.with_name(bundle.name + ".sha256").read_text().split()
    assert want[1] == bundle.name
    h = hashlib.sha256()
    with open(bundle, "rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            h.update(chunk)
    assert h.hexdigest() == want[0]


def test_the_images_rauc_accepts_its_bundle(image: Image, tmp_path: Path) -> None:
    os.link(_bundle(image), tmp_path / "good.raucb")
    r = bwrap(image, tmp_path, "rauc", "info", "--output-format=json", "/mnt/good.raucb")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["compatible"], info["version"]) == ("twinbeat-x86-64", version())


def _flip(src: Path, dest: Path, offset: int) -> None:
    subprocess.run(["cp", str(src), str(dest)], check=True)
    with open(dest, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_the_images_rauc_refuses_a_tampered_payload(image: Image, tmp_path: Path) -> None:
    bundle = _bundle(image)
    _flip(bundle, tmp_path / "bad.raucb", bundle.stat().st_size // 3)
    r = bwrap(image, tmp_path, "rauc", "extract", "/mnt/bad.raucb", "/tmp/out")
    assert r.returncode != 0
    assert "corrupted" in r.stderr + r.stdout, r.stderr


def test_the_images_rauc_refuses_a_tampered_signature(image: Image, tmp_path: Path) -> None:
    bundle = _bundle(image)
    _flip(bundle, tmp_path / "bad.raucb", bundle.stat().st_size - 600)
    r = bwrap(image, tmp_path, "rauc", "info", "/mnt/bad.raucb")
    assert r.returncode != 0, r.stdout
    assert re.search(r"signature|CMS|verif", r.stderr, re.I), r.stderr


def _small_bundle(tmp_path: Path, name: str, key: Path | None, cert: Path | None) -> Path:
    content = tmp_path / f"{name}-content"
    content.mkdir()
    (content / "rootfs.ext4").write_bytes(os.urandom(1 << 20))
    (content / "manifest.raucm").write_text(
        "[update]\ncompatible=twinbeat-x86-64\nversion=99.0\n\n[bundle]\nformat=verity\n\n"
        "[image.rootfs]\nfilename=rootfs.ext4\n")
    out = tmp_path / f"{name}.raucb"
    if key is None or cert is None:  # unsigned: the squashfs alone
        subprocess.run(["mksquashfs", str(content), str(out), "-all-root", "-noappend",
                        "-quiet"], check=True, capture_output=True)
    else:
        subprocess.run(["rauc", "bundle", f"--cert={cert}", f"--key={key}", str(content),
                        str(out)], check=True, capture_output=True)
    return out


def test_the_images_rauc_refuses_foreign_and_unsigned_bundles(image: Image,
                                                             tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=someone else"],
                   check=True, capture_output=True)
    _small_bundle(tmp_path, "foreign", key, cert)
    r = bwrap(image, tmp_path, "rauc", "info", "/mnt/foreign.raucb")
    assert r.returncode != 0, r.stdout
    assert re.search(r"signature|verif|certificate", r.stderr, re.I), r.stderr
    _small_bundle(tmp_path, "unsigned", None, None)
    r = bwrap(image, tmp_path, "rauc", "info", "/mnt/unsigned.raucb")
    assert r.returncode != 0, r.stdout
    assert r.stderr.strip(), "no message"
