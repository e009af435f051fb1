"""The update bundles the QEMU update scenarios install, and the disk that brings them.

``make update-bundles`` writes images/twinbeat-<N+1>.raucb and twinbeat-<N+2>-broken.raucb
next to the image (N+1 and N+2 bump the image's last number). The replicated pair
(scenarios_replication.py, whose last scenarios are the update ones) gets them on a small
read-only ext4 disk made on the host, as from a USB stick.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


def bumped(image: Path, by: int) -> str:
    m = re.match(r"twinbeat-(\d+)\.(\d+)\.(\d+)\.raw$", image.name)
    if not m:
        raise AssertionError(f"{image.name}: not twinbeat-X.Y.Z.raw")
    return f"{m.group(1)}.{m.group(2)}.{int(m.group(3)) + by}"


def bundles_of(image: Path) -> tuple[Path, Path]:
    """The N+1 bundle and the broken N+2 one, next to the image."""
    return (image.with_name(f"twinbeat-{bumped(image, 1)}.raucb"),
            image.with_name(f"twinbeat-{bumped(image, 2)}-broken.raucb"))


def missing(image: Path) -> list[Path]:
    """The bundles of `image` that `make update-bundles` has not made."""
    return [b for b in bundles_of(image) if not b.exists()]


def bundle_disk(bundles: list[Path], dest: Path) -> Path:
    """An ext4 image holding the bundles (the nodes mount it as a USB stick)."""
    content = dest.parent / "bundles"
    content.mkdir()
    total = 0
    for b in bundles:
        shutil.copy(b, content / b.name)
        total += b.stat().st_size
    size = total + total // 5 + 64 * 2**20
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BUNDLES", "-d", str(content), str(dest),
                    str(size // 1024)], check=True, capture_output=True)
    shutil.rmtree(content)
    return dest


def bundles_drive(image: Path, workdir: Path) -> tuple[str, ...]:
    """QEMU arguments for the bundles' disk: the bundles that exist (an update scenario
    without its bundle fails at its start and says `make update-bundles`)."""
    present = [b for b in bundles_of(image) if b not in missing(image)]
    disk = bundle_disk(present, workdir / "bundles.img")
    return ("-drive", f"file={disk},format=raw,if=none,id=bundles,readonly=on",
            "-device", "virtio-blk-pci,drive=bundles,addr=0xa")
