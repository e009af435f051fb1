"""Whether an update bundle may be installed on this node (pure), with the reason.

RAUC checks the signature (against the image's keyring) and the compatible string
itself; this module turns what ``rauc info`` says, or the error it gives, into the
sentences the user reads, and adds the checks RAUC leaves to us: not older than the
running version unless asked, a slot to write it to, room for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BundleInfo:
    compatible: str
    version: str
    image_bytes: int  # the root file system image's size (what is written to the slot)


class BundleRefused(Exception):
    """A bundle that must not be installed; the message says why."""


def parse_info(d: Mapping[str, Any]) -> BundleInfo:
    """`rauc info --output-format=json` (RAUC 1.8 to 1.13 shapes)."""
    size = 0
    for entry in d.get("images") or []:
        if not isinstance(entry, Mapping):
            continue
        # 1.8: [{"rootfs": {...}}]; later: [{"slot-class": "rootfs", "size": ...}]
        inner = [v for v in entry.values() if isinstance(v, Mapping)] or [entry]
        for img in inner:
            try:
                size += int(img.get("size") or 0)
            except (TypeError, ValueError):
                pass
    return BundleInfo(compatible=str(d.get("compatible") or ""),
                      version=str(d.get("version") or ""), image_bytes=size)


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Order versions like 0.1.9 < 0.1.10 < 0.2.0 (numbers as numbers)."""
    return tuple((int(p), "") if p.isdigit() else (-1, p)
                 for p in re.split(r"[.\-+~]", version.strip()) if p)


def explain_rauc_error(stderr: str) -> str:
    """RAUC's refusal of a bundle (its last error lines) as a sentence for the user."""
    text = " ".join(line.strip() for line in stderr.splitlines() if line.strip()
                    and "rauc-Message" not in line)
    low = stderr.lower()
    if ("signature" in low or "cms" in low or "certificate" in low or "verify" in low
            or "verification" in low):
        return ("the bundle's signature does not check out against this node's key "
                "(unsigned, tampered with, or signed by another build machine's key); "
                f"nothing was installed. RAUC: {text}")
    if "payload" in low or "corrupt" in low or "hash" in low:
        return (f"the bundle is corrupted (its contents do not match its signed hash); "
                f"nothing was installed. RAUC: {text}")
    if "compatible" in low:
        return f"the bundle is for another system; nothing was installed. RAUC: {text}"
    return f"RAUC refused the bundle; nothing was installed: {text}"


def refusals(info: BundleInfo, *, node_compatible: str, running: str, allow_downgrade: bool,
             slot_bytes: int | None, target_exists: bool) -> list[str]:
    """Every reason not to install this bundle here (empty: go ahead)."""
    out: list[str] = []
    if info.compatible != node_compatible:
        out.append(f"the bundle is for {info.compatible or 'an unnamed system'}, this node "
                   f"takes {node_compatible} bundles (another architecture or product)")
    if not info.version:
        out.append("the bundle names no version")
    elif running and not allow_downgrade:
        new, old = version_key(info.version), version_key(running)
        if new < old:
            out.append(f"the bundle is version {info.version}, older than the running "
                       f"{running} (--allow-downgrade installs it anyway)")
        elif new == old:
            out.append(f"this node already runs {running} (--allow-downgrade reinstalls it)")
    if not target_exists:
        out.append("this node has no other slot to install to (slot B is created at the "
                   "first boot when the disk has room for it: 5 GiB or more)")
    elif slot_bytes is not None and info.image_bytes > slot_bytes:
        out.append(f"the bundle's system ({info.image_bytes // 2**20} MiB) does not fit "
                   f"the slot ({slot_bytes // 2**20} MiB)")
    return out
