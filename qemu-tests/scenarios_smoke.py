"""Smoke scenarios: the image boots under QEMU (TCG) by UEFI and by legacy BIOS, through
GRUB's A/B slot selection (slot A on a fresh node), and the first-boot wizard starts on the
serial console: its banner, then its first question. A login prompt instead (the wizard did
not start, or it failed before asking) is a failure. The first boot, on a disk larger than the
image, creates slot B and grows the state partition over the rest of the disk (read back from
the disk after QEMU quit).

The two boots overlap: when both scenarios run, the UEFI one also powers on the BIOS VM,
whose console is read (and logged) from its first byte while the UEFI VM boots; the BIOS
scenario then takes that VM over. Each time is measured from its own VM's power-on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from harness import Context, at_end, scenario
from vm import VM, Firmware, VMConfig

BOOT_TIMEOUT = 420.0
BANNER = r"twinbeat first-boot setup \(on ttyS0\)"
FIRST_QUESTION = r"Role \(node1 or node2\) \[node1\]: "
LOGIN = r"\blogin: "
BIOS_NAME = "bios-boot-reaches-console-prompt"
DISK = "8G"
GIB = 1024**3

#: VMs powered on ahead of their scenario (the BIOS VM, by the UEFI scenario)
_early: dict[str, VM] = {}


@at_end
def _close_early() -> None:
    while _early:
        vm = _early.popitem()[1]
        vm.close()
        vm.remove_workdir()


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


def _power_on(ctx: Context, firmware: Firmware) -> VM:
    vm = _early.pop(firmware, None)
    if vm is None:
        return ctx.vm(f"smoke-{firmware}", firmware=firmware, disk_size=DISK,
                      reuse_overlay=True)
    ctx.vms.append(vm)  # this scenario closes it and keeps its logs on failure
    return vm


def _boot(ctx: Context, firmware: Firmware) -> str:
    vm = _power_on(ctx, firmware)
    if firmware == "uefi" and BIOS_NAME in ctx.remaining:
        early = VM(VMConfig(image=ctx.image, name="smoke-bios", firmware="bios",
                            disk_size=DISK, reuse_overlay=True))
        _early["bios"] = early
        early.start()
    slot = vm.expect(r"twinbeat: booting slot [AB]", timeout=BOOT_TIMEOUT)
    assert slot.endswith("A"), f"a fresh node booted {slot!r}"
    got = vm.expect([BANNER, LOGIN], timeout=BOOT_TIMEOUT)
    banner = time.monotonic() - vm.started_at
    if not got.startswith("twinbeat"):
        raise AssertionError(f"a login prompt on ttyS0 {banner:.0f} s after power-on and no "
                             "first-boot wizard: the wizard did not start on a new image")
    # the wizard lists the hardware it found, then asks its first question
    got = vm.expect([FIRST_QUESTION, LOGIN], timeout=120)
    if not got.startswith("Role"):
        raise AssertionError("the wizard's banner, then a login prompt instead of its first "
                             "question: the wizard ended before asking")
    question = time.monotonic() - vm.started_at
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
    return (f"wizard banner after {banner:.1f} s, its first question after {question:.1f} s; "
            f"first boot made slot B (2 GiB) and grew the state partition to "
            f"{state / GIB:.1f} GiB of the {DISK} disk")


@scenario("uefi-boot-reaches-console-prompt")
def uefi_boot(ctx: Context) -> str:
    """OVMF -> GRUB (EFI) -> slot A's kernel -> the wizard's first question on ttyS0;
    partitions grown."""
    return _boot(ctx, "uefi")


@scenario(BIOS_NAME)
def bios_boot(ctx: Context) -> str:
    """SeaBIOS -> GRUB (BIOS boot partition) -> slot A's kernel -> the wizard's first
    question; partitions grown."""
    return _boot(ctx, "bios")


if __name__ == "__main__":
    sys.exit("run through qemu-tests/run.py")
