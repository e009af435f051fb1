"""Updates of one node through the real boot loader (UEFI, GRUB's A/B choice, RAUC):

a node on version N (the image under test), configured by a seed as node1 of a pair whose
peer is not there, installs the bundle of N+1 built from the same tree
(images/twinbeat-<N+1>.raucb: ``make image VERSION=<N+1>``) with ``twinbeat install
--reboot``: it boots slot B, passes its health check and keeps it, with its identity (machine
ID, host name, cluster configuration, SSH host keys) carried over. Then it installs a broken
N+2 (``make image VERSION=<N+2> TEST_BREAK=supervisor``: its supervisor never starts): the
node boots it, the health check fails, and the node goes back to N+1 by itself and says so
in ``twinbeat status``.

The bundles reach the node on a small ext4 disk made on the host (vdb), as from a USB stick.
The versions are found from the image's name: N+1 and N+2 bump its last number.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from guest import Shell  # noqa: E402
from harness import Context, scenario  # noqa: E402
from pair import PASSWORD, Layout, seed_text  # noqa: E402

from firstboot.secret import SystemRng, generate_code  # noqa: E402

BOOT_TIMEOUT = 900.0


def bumped(image: Path, by: int) -> str:
    m = re.match(r"twinbeat-(\d+)\.(\d+)\.(\d+)\.raw$", image.name)
    if not m:
        raise AssertionError(f"{image.name}: not twinbeat-X.Y.Z.raw")
    return f"{m.group(1)}.{m.group(2)}.{int(m.group(3)) + by}"


def bundle_disk(bundles: list[Path], dest: Path) -> Path:
    """An ext4 image holding the bundles (the node mounts it as a USB stick)."""
    content = dest.parent / "bundles"
    content.mkdir()
    total = 0
    for b in bundles:
        if not b.exists():
            raise AssertionError(f"{b}: missing (make image VERSION=... first)")
        shutil.copy(b, content / b.name)
        total += b.stat().st_size
    size = total + total // 5 + 64 * 2**20
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BUNDLES", "-d", str(content), str(dest),
                    str(size // 1024)], check=True, capture_output=True)
    shutil.rmtree(content)
    return dest


def install_and_reboot(shell: Shell, bundle: str) -> float:
    """`twinbeat install` (checked), then a reboot typed without waiting for an answer;
    returns how long the install took."""
    t = time.monotonic()
    code, text = shell.run(f"twinbeat install {bundle}", timeout=1800, check=False)
    assert code == 0, text
    took = time.monotonic() - t
    shell.vm.sendline("systemctl reboot")
    shell.logged_in = False
    return took


@scenario("update-keeps-a-healthy-slot-and-rolls-back-a-broken-one")
def update_and_rollback(ctx: Context) -> str:
    n1, n2 = bumped(ctx.image, 1), bumped(ctx.image, 2)
    good = ctx.image.with_name(f"twinbeat-{n1}.raucb")
    broken = ctx.image.with_name(f"twinbeat-{n2}-broken.raucb")
    disk = bundle_disk([good, broken], ctx.workdir / "bundles.img")
    seed = seed_text(Layout("node1", 1, ""), generate_code(SystemRng()))
    b64 = base64.b64encode(seed.encode()).decode()
    extra = [
        # the NICs the seed names (enp0s5, enp0s6), the null-modem port; no peer on them
        "-netdev", "user,id=pub", "-device", "virtio-net-pci,netdev=pub,addr=0x5",
        "-netdev", "user,id=xo", "-device", "virtio-net-pci,netdev=xo,addr=0x6",
        "-chardev", "null,id=nm", "-serial", "chardev:nm",
        "-drive", f"file={disk},format=raw,if=none,id=bundles,readonly=on",
        "-device", "virtio-blk-pci,drive=bundles,addr=0x8",
        "-smbios", f"type=11,value=io.systemd.credential.binary:twinbeat.seed={b64}",
    ]
    vm = ctx.vm("update", firmware="uefi", disk_size="8G", memory_mib=1024,
                extra_args=extra)
    vm.expect(r"twinbeat: booting slot A", timeout=BOOT_TIMEOUT)
    shell = Shell(vm, PASSWORD)
    shell.login(timeout=BOOT_TIMEOUT)
    before = {f: shell.out(f"cat {f}").strip() for f in (
        "/etc/machine-id", "/etc/hostname", "/etc/ssh/host-keys/ssh_host_ed25519_key.pub")}
    toml = shell.out("sha256sum /etc/twinbeat/cluster.toml").split()[0]
    shell.run("systemctl is-active twinbeat.service", timeout=300)
    shell.run("mkdir -p /mnt/b && mount -o ro /dev/vdb /mnt/b")
    shell.run("systemctl is-system-running --wait; true", timeout=600)
    out = shell.out("twinbeat status", timeout=120)
    assert f"system: twinbeat {ctx.image.name[9:-4]} on slot A" in out, out

    # N -> N+1: kept
    t0 = time.monotonic()
    install_s = install_and_reboot(shell, f"/mnt/b/{good.name}")
    vm.expect(r"twinbeat: booting slot B", timeout=BOOT_TIMEOUT)
    shell.login(timeout=BOOT_TIMEOUT)
    shell.run("systemctl is-active twinbeat.service", timeout=300)
    deadline = time.monotonic() + 600
    while True:
        out = shell.out("twinbeat status", timeout=120)
        if f"system: twinbeat {n1} on slot B" in out and "update:" not in out:
            break
        assert time.monotonic() < deadline, f"slot B not kept within 600 s:\n{out}"
        time.sleep(5)
    kept_s = time.monotonic() - t0
    after = {f: shell.out(f"cat {f}").strip() for f in before}
    assert after == before, (before, after)
    assert shell.out("sha256sum /etc/twinbeat/cluster.toml").split()[0] == toml
    env = shell.out("grub-editenv /efi/grub/grubenv list")
    assert "ORDER=B A" in env and "B_OK=1" in env and "B_TRY=0" in env, env

    # N+1 -> broken N+2: rolled back by itself
    shell.run("mkdir -p /mnt/b && mount -o ro /dev/vdb /mnt/b")
    t1 = time.monotonic()
    install_and_reboot(shell, f"/mnt/b/{broken.name}")
    vm.expect(r"twinbeat: booting slot A", timeout=BOOT_TIMEOUT)
    t_broken = time.monotonic()
    vm.expect(r"twinbeat: booting slot B", timeout=BOOT_TIMEOUT)
    back_s = time.monotonic() - t_broken
    shell.login(timeout=BOOT_TIMEOUT)
    shell.run("systemctl is-active twinbeat.service", timeout=300)
    deadline = time.monotonic() + 300
    while True:
        out = shell.out("twinbeat status", timeout=120)
        if f"system: twinbeat {n1} on slot B" in out and "FAILED" in out:
            break
        assert time.monotonic() < deadline, f"no rollback report within 300 s:\n{out}"
        time.sleep(5)
    rollback_s = time.monotonic() - t_broken
    want = (f"update to {n2} FAILED on slot A and was rolled back (running {n1}): "
            "twinbeat.service failed")
    assert want in out, out
    env = shell.out("grub-editenv /efi/grub/grubenv list")
    assert "A_OK=0" in env and "B_OK=1" in env, env
    return (f"N+1 installed in {install_s:.0f} s, kept {kept_s:.0f} s after the install "
            f"started; broken N+2 booted and rolled back: back in slot B's boot loader "
            f"{back_s:.0f} s after it booted, serving N+1 again {rollback_s:.0f} s after "
            f"(whole N+2 attempt {time.monotonic() - t1:.0f} s)")
