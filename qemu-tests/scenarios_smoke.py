"""Smoke scenarios: the image boots under QEMU (TCG) by UEFI and by legacy BIOS and the
first-boot wizard starts on the serial console: its banner, then its first question. A login
prompt instead (the wizard did not start, or it failed before asking) is a failure.

The two boots overlap: when both scenarios run, the UEFI one also powers on the BIOS VM,
whose console is read (and logged) from its first byte while the UEFI VM boots; the BIOS
scenario then takes that VM over. Each time is measured from its own VM's power-on."""

from __future__ import annotations

import time

from harness import Context, at_end, scenario
from vm import VM, Firmware, VMConfig

BOOT_TIMEOUT = 420.0
BANNER = r"twinbeat first-boot setup \(on ttyS0\)"
FIRST_QUESTION = r"Role \(node1 or node2\) \[node1\]: "
LOGIN = r"\blogin: "
BIOS_NAME = "bios-boot-reaches-console-prompt"

#: VMs powered on ahead of their scenario (the BIOS VM, by the UEFI scenario)
_early: dict[str, VM] = {}


@at_end
def _close_early() -> None:
    while _early:
        vm = _early.popitem()[1]
        vm.close()
        vm.remove_workdir()


def _power_on(ctx: Context, firmware: Firmware) -> VM:
    vm = _early.pop(firmware, None)
    if vm is None:
        return ctx.vm(f"smoke-{firmware}", firmware=firmware)
    ctx.vms.append(vm)  # this scenario closes it and keeps its logs on failure
    return vm


def _boot(ctx: Context, firmware: Firmware) -> str:
    vm = _power_on(ctx, firmware)
    if firmware == "uefi" and BIOS_NAME in ctx.remaining:
        early = VM(VMConfig(image=ctx.image, name="smoke-bios", firmware="bios"))
        _early["bios"] = early
        early.start()
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
    return f"wizard banner after {banner:.1f} s, its first question after {question:.1f} s"


@scenario("uefi-boot-reaches-console-prompt")
def uefi_boot(ctx: Context) -> str:
    """OVMF -> systemd-boot -> kernel -> the wizard's first question on ttyS0."""
    return _boot(ctx, "uefi")


@scenario(BIOS_NAME)
def bios_boot(ctx: Context) -> str:
    """SeaBIOS -> GRUB (BIOS boot partition) -> kernel -> the wizard's first question."""
    return _boot(ctx, "bios")
