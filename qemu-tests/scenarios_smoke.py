"""Smoke scenarios: the image boots under QEMU (TCG) by UEFI and by legacy BIOS and
reaches the first-boot wizard's banner (or, before the wizard exists, a login prompt) on
the serial console."""

from __future__ import annotations

from harness import Context, scenario
from vm import Firmware

BOOT_TIMEOUT = 420.0


def _boot(ctx: Context, firmware: Firmware) -> str:
    vm = ctx.vm(f"smoke-{firmware}", firmware=firmware)
    seconds, matched = vm.wait_for_prompt(timeout=BOOT_TIMEOUT)
    what = "wizard" if "first-boot" in matched else "login prompt"
    return f"{what} after {seconds:.1f} s"


@scenario("uefi-boot-reaches-console-prompt")
def uefi_boot(ctx: Context) -> str:
    """OVMF -> systemd-boot -> kernel -> prompt on ttyS0."""
    return _boot(ctx, "uefi")


@scenario("bios-boot-reaches-console-prompt")
def bios_boot(ctx: Context) -> str:
    """SeaBIOS -> GRUB (BIOS boot partition) -> kernel -> prompt on ttyS0."""
    return _boot(ctx, "bios")
