"""Smoke scenarios: the image boots under QEMU (TCG) by UEFI and by legacy BIOS, through
GRUB's A/B slot selection, and reaches the first-boot wizard's banner (or, before the
wizard exists, a login prompt) on the serial console; its first boot, on a disk larger
than the image, creates slot B and grows the state partition over the rest of the disk
(read back from the disk after QEMU quit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import Context, scenario
from vm import Firmware

BOOT_TIMEOUT = 420.0
DISK = "8G"
GIB = 1024**3


def layout(overlay: Path, scratch: Path) -> dict[str, tuple[int, int]]:
    """{partition name: (start, size)} in bytes, read from a copy of the VM's disk."""
    raw = scratch / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(overlay), str(raw)], check=True,
                   capture_output=True, timeout=600)
    try:
        table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], check=True,
                                          capture_output=True, text=True).stdout)
        parts = table["partitiontable"]["partitions"]
        return {p.get("name", ""): (p["start"] * 512, p["size"] * 512) for p in parts}
    finally:
        raw.unlink(missing_ok=True)


def _boot(ctx: Context, firmware: Firmware) -> str:
    vm = ctx.vm(f"smoke-{firmware}", firmware=firmware, disk_size=DISK, reuse_overlay=True)
    slot = vm.expect(r"twinbeat: booting slot [AB]", timeout=BOOT_TIMEOUT)
    assert slot.endswith("A"), f"a fresh node booted {slot!r}"
    seconds, matched = vm.wait_for_prompt(timeout=BOOT_TIMEOUT)
    what = "wizard" if "first-boot" in matched else "login prompt"
    vm.close()  # QMP quit: QEMU writes everything to the overlay
    parts = layout(vm.overlay, ctx.workdir)
    vm.remove_overlay()
    names = list(parts)
    assert names == ["esp", "bios-boot", "rootfs-a", "twinbeat-state", "rootfs-b"], names
    assert parts["rootfs-b"][1] == parts["rootfs-a"][1] == 2 * GIB, parts
    state = parts["twinbeat-state"][1]
    end = parts["rootfs-b"][0] + parts["rootfs-b"][1]
    assert state > 3 * GIB, f"the state partition did not grow: {state} bytes"
    assert end > 8 * GIB - 2**20 - 34 * 512, f"the disk is not used to its end: {end}"
    return (f"{what} after {seconds:.1f} s; first boot made slot B (2 GiB) and grew the state "
            f"partition to {state / GIB:.1f} GiB of the {DISK} disk")


@scenario("uefi-boot-reaches-console-prompt")
def uefi_boot(ctx: Context) -> str:
    """OVMF -> GRUB (EFI) -> slot A's kernel -> prompt on ttyS0; partitions grown."""
    return _boot(ctx, "uefi")


@scenario("bios-boot-reaches-console-prompt")
def bios_boot(ctx: Context) -> str:
    """SeaBIOS -> GRUB (BIOS boot partition) -> slot A's kernel -> prompt on ttyS0."""
    return _boot(ctx, "bios")


if __name__ == "__main__":
    sys.exit("run through qemu-tests/run.py")
