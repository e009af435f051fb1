"""Smoke scenarios: the image boots under QEMU (TCG) by UEFI and by legacy BIOS and the
first-boot wizard starts on the serial console: its banner, then its first question. A login
prompt instead (the wizard did not start, or it failed before asking) is a failure."""

from __future__ import annotations

import time

from harness import Context, scenario
from vm import Firmware

BOOT_TIMEOUT = 420.0
BANNER = r"twinbeat first-boot setup \(on ttyS0\)"
FIRST_QUESTION = r"Role \(node1 or node2\) \[node1\]: "
LOGIN = r"\blogin: "


def _boot(ctx: Context, firmware: Firmware) -> str:
    vm = ctx.vm(f"smoke-{firmware}", firmware=firmware)
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


@scenario("bios-boot-reaches-console-prompt")
def bios_boot(ctx: Context) -> str:
    """SeaBIOS -> GRUB (BIOS boot partition) -> kernel -> the wizard's first question."""
    return _boot(ctx, "bios")
