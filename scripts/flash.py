#!/usr/bin/env python3
"""Write the twinbeat image to a whole disk and verify it.

    flash.py [--yes] IMAGE DEVICE        (make flash DEV=/dev/sdX [YES=1])

Refuses (non-zero exit, nothing written) a DEVICE that is not a block device, is a
partition rather than a whole disk, is read-only or too small, is mounted or used as swap
(itself, one of its partitions or a device stacked on it), or holds the running system.
Shows the disk's model and size and asks for confirmation unless --yes. Writes with
progress, then reads the written bytes back and compares their SHA-256 with IMAGE.sha256.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 4 * 1024 * 1024
BLKFLSBUF = 0x1261  # flush the kernel's buffer cache for a block device


class Refusal(Exception):
    """The target must not be written; the message says why."""


@dataclass
class BlockDevice:
    path: str
    name: str  # kernel name, e.g. sdb, loop3, nvme0n1
    devno: str  # "major:minor"
    size: int  # bytes
    is_partition: bool
    read_only: bool
    model: str
    # major:minor of this disk's partitions and of devices stacked on it (dm, md, ...)
    related: set[str] = field(default_factory=set)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def _holders(sysdir: Path) -> Iterable[Path]:
    """Devices stacked on this one, recursively (device-mapper, md RAID, ...)."""
    for h in sorted((sysdir / "holders").glob("*")):
        hdir = Path("/sys/class/block") / h.name
        yield hdir
        yield from _holders(hdir)


def describe(path: str) -> BlockDevice:
    """Look the target up in /sys; refuse anything that is not a block device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Refusal(f"{path}: no such device") from None
    if not stat.S_ISBLK(st.st_mode):
        raise Refusal(f"{path} is not a block device: give a whole disk such as /dev/sdb")
    devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    sysdir = Path("/sys/dev/block") / devno
    if not sysdir.exists():
        raise Refusal(f"{path}: block device {devno} is unknown to /sys")
    sysdir = sysdir.resolve()
    name = sysdir.name
    is_partition = (sysdir / "partition").exists()
    related: set[str] = set()
    for part in sorted(sysdir.glob(f"{name}*")):
        if (part / "partition").exists() and (part / "dev").exists():
            related.add(_read(part / "dev"))
            related |= {_read(h / "dev") for h in _holders(part)}
    related |= {_read(h / "dev") for h in _holders(sysdir)}
    related.discard("")
    vendor = _read(sysdir / "device" / "vendor")
    model = " ".join(x for x in (vendor, _read(sysdir / "device" / "model")) if x)
    if not model and (sysdir / "loop").exists():
        model = f"loop device backed by {_read(sysdir / 'loop' / 'backing_file', '?')}"
    return BlockDevice(
        path=path, name=name, devno=devno,
        size=int(_read(sysdir / "size", "0")) * 512,
        is_partition=is_partition,
        read_only=_read(sysdir / "ro") == "1",
        model=model or "unknown model",
        related=related,
    )


def mounted_devnos() -> dict[str, str]:
    """major:minor of every mounted block device -> its mount point; swap areas too."""
    result: dict[str, str] = {}
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        fields = line.split()
        if len(fields) > 4:
            result.setdefault(fields[2], fields[4])
    for line in _read(Path("/proc/swaps")).splitlines()[1:]:
        src = line.split()[0] if line.split() else ""
        try:
            st = os.stat(src)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode):
            result.setdefault(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", "[swap]")
    return result


def running_system_devnos() -> set[str]:
    """major:minor of the device holding / (and of what it is built on, e.g. dm slaves)."""
    st = os.stat("/")
    devno = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    sysdir = Path("/sys/dev/block") / devno
    found = {devno}
    if not sysdir.exists():  # e.g. overlayfs or tmpfs root (containers): no disk below it
        return found
    todo = [sysdir.resolve()]
    while todo:
        d = todo.pop()
        found.add(_read(d / "dev"))
        if (d / "partition").exists():
            todo.append(d.parent)
        todo += [Path("/sys/class/block") / s.name for s in (d / "slaves").glob("*")]
    found.discard("")
    return found


def check_target(dev: BlockDevice, image_size: int, mounted: dict[str, str],
                 system: set[str]) -> None:
    """Raise Refusal unless dev may be overwritten with an image of image_size bytes."""
    if dev.is_partition:
        raise Refusal(f"{dev.path} is a partition, not a whole disk: give the disk itself "
                      f"(for example /dev/sdb, not /dev/sdb1)")
    own = {dev.devno} | dev.related
    if own & system:
        raise Refusal(f"{dev.path} holds the running system: refusing to overwrite it")
    busy = sorted(f"{mounted[d]}" for d in own if d in mounted)
    if busy:
        raise Refusal(f"{dev.path} is mounted (at {', '.join(busy)}): unmount it first")
    if dev.read_only:
        raise Refusal(f"{dev.path} is read-only")
    if dev.size < image_size:
        raise Refusal(f"{dev.path} is too small: {human(dev.size)}, the image needs "
                      f"{human(image_size)}")


def expected_sha256(image: Path) -> str:
    sums = image.with_name(image.name + ".sha256")
    if sums.exists():
        return sums.read_text().split()[0]
    print(f"==> no {sums.name}; computing the image's checksum")
    h = hashlib.sha256()
    with open(image, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class Progress:
    def __init__(self, what: str, total: int) -> None:
        self.what, self.total = what, total
        self.start = self.last = time.monotonic()
        self.tty = sys.stdout.isatty()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.tty else 5.0):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6)
        line = (f"    {self.what}: {human(done)} / {human(self.total)} "
                f"({100 * done // max(self.total, 1)}%, {human(rate)}/s)")
        if self.tty:
            print("\r" + line, end="\n" if final else "", flush=True)
        else:
            print(line, flush=True)


def write_image(image: Path, device: str, size: int) -> None:
    progress = Progress("written", size)
    done = 0
    # O_EXCL on a block device fails with EBUSY if the kernel has it in use (mounted...).
    fd = os.open(device, os.O_WRONLY | os.O_EXCL)
    try:
        with open(image, "rb") as src:
            while chunk := src.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                done += len(chunk)
                progress.update(done)
        os.fsync(fd)
        progress.update(done, final=True)
    finally:
        os.close(fd)


def read_back_sha256(device: str, size: int) -> str:
    progress = Progress("verified", size)
    h = hashlib.sha256()
    fd = os.open(device, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, BLKFLSBUF)  # read from the disk, not from the page cache
        done = 0
        while done < size:
            chunk = os.read(fd, min(CHUNK, size - done))
            if not chunk:
                raise OSError(f"{device}: unexpected end of device after {done} bytes")
            h.update(chunk)
            done += len(chunk)
            progress.update(done)
        progress.update(done, final=True)
    finally:
        os.close(fd)
    return h.hexdigest()


def confirm(dev: BlockDevice, ask: Callable[[str], str]) -> bool:
    try:
        answer = ask(f"Overwrite ALL data on {dev.path} ({dev.model}, {human(dev.size)})? "
                     f"Type 'yes' to continue: ")
    except EOFError:
        return False
    return answer.strip().lower() == "yes"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("image", type=Path)
    parser.add_argument("device")
    args = parser.parse_args(argv)

    image: Path = args.image
    if not image.is_file():
        print(f"flash: {image}: no such image (run `make image`)", file=sys.stderr)
        return 2
    size = image.stat().st_size
    try:
        dev = describe(args.device)
        check_target(dev, size, mounted_devnos(), running_system_devnos())
    except Refusal as e:
        print(f"flash: refusing: {e}", file=sys.stderr)
        return 1

    print(f"Image:  {image} ({human(size)})")
    print(f"Target: {dev.path} ({dev.name}): {dev.model}, {human(dev.size)}")
    if not args.yes and not confirm(dev, input):
        print("flash: aborted, nothing written", file=sys.stderr)
        return 1

    want = expected_sha256(image)
    print(f"==> writing {image.name} to {dev.path}")
    try:
        write_image(image, dev.path, size)
    except OSError as e:
        print(f"flash: writing {dev.path} failed: {e}", file=sys.stderr)
        return 1
    print("==> reading back and verifying")
    got = read_back_sha256(dev.path, size)
    if got != want:
        print(f"flash: VERIFY FAILED: {dev.path} holds sha256 {got}, the image is {want}",
              file=sys.stderr)
        return 1
    print(f"==> done: {dev.path} verified (sha256 {want})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
