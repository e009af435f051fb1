"""scripts/flash.py (`make flash DEV=...`): what it refuses, and a real write + verify on a
loop device (a file attached with losetup; needs root)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLASH = ROOT / "scripts" / "flash.py"
MiB = 1024 * 1024


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flash", FLASH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["flash"] = module
    spec.loader.exec_module(module)
    return module


flash = _load()


def disk(**kw):
    base = dict(path="/dev/sdz", name="sdz", devno="8:240", size=8 * 1024 * MiB,
                is_partition=False, read_only=False, model="ACME Stick", related={"8:241"})
    base.update(kw)
    return flash.BlockDevice(**base)


# -- the decision, without devices -------------------------------------------------------

def test_a_free_whole_disk_big_enough_is_accepted():
    # (check_target raises Refusal for a disk it refuses)
    assert flash.check_target(disk(), 2 * 1024 * MiB, mounted={"254:1": "/"},
                              system={"254:1"}) is None


def test_a_partition_is_refused():
    with pytest.raises(flash.Refusal, match="is a partition, not a whole disk"):
        flash.check_target(disk(path="/dev/sdz1", is_partition=True), MiB, {}, set())


def test_a_disk_whose_partition_is_mounted_is_refused():
    with pytest.raises(flash.Refusal, match=r"is mounted \(at /media/stick\)"):
        flash.check_target(disk(), MiB, mounted={"8:241": "/media/stick"}, system=set())


def test_the_disk_holding_the_running_system_is_refused():
    with pytest.raises(flash.Refusal, match="holds the running system"):
        flash.check_target(disk(), MiB, mounted={"8:241": "/"}, system={"8:241", "8:240"})


def test_too_small_and_read_only_disks_are_refused():
    with pytest.raises(flash.Refusal, match="too small"):
        flash.check_target(disk(size=MiB), 2 * MiB, {}, set())
    with pytest.raises(flash.Refusal, match="read-only"):
        flash.check_target(disk(read_only=True), MiB, {}, set())


def test_confirmation_needs_an_explicit_yes():
    assert flash.confirm(disk(), lambda prompt: "yes\n")
    assert not flash.confirm(disk(), lambda prompt: "y")
    assert not flash.confirm(disk(), lambda prompt: "")

    def eof(prompt):
        raise EOFError

    assert not flash.confirm(disk(), eof)


def run_flash(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FLASH), *args], input=stdin, text=True,
                          capture_output=True, timeout=120, check=False)


def test_a_regular_file_is_refused_with_a_clear_message(tmp_path):
    image = tmp_path / "img.raw"
    image.write_bytes(b"x" * 4096)
    target = tmp_path / "not-a-disk"
    target.write_bytes(b"\0" * 8192)
    r = run_flash("--yes", str(image), str(target))
    assert r.returncode == 1
    assert "is not a block device" in r.stderr
    assert target.read_bytes() == b"\0" * 8192


def test_a_missing_path_is_refused(tmp_path):
    image = tmp_path / "img.raw"
    image.write_bytes(b"x" * 4096)
    r = run_flash("--yes", str(image), str(tmp_path / "nope"))
    assert r.returncode == 1 and "no such device" in r.stderr


# -- real writes to loop devices (root) --------------------------------------------------

@pytest.fixture
def loopdev(tmp_path) -> Iterator[tuple[str, Path]]:
    if os.geteuid() != 0:
        pytest.fail("loop-device flash tests need root (run them through `make test`)")
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(24 * MiB)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        yield dev, backing
    finally:
        subprocess.run(["umount", dev], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", dev], check=True)


def make_image(tmp_path: Path, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    image = tmp_path / "twinbeat-test.raw"
    image.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "twinbeat-test.raw.sha256").write_text(f"{digest}  twinbeat-test.raw\n")
    return image, digest


# Loop-device tests need root: they run in the image tier (`pytest -m image`, `make test`).
pytestmark_root = pytest.mark.image


@pytestmark_root
def test_flash_writes_and_verifies_a_loop_device(tmp_path, loopdev):
    dev, backing = loopdev
    image, digest = make_image(tmp_path, 9 * MiB + 4096)
    r = run_flash("--yes", str(image), dev)
    assert r.returncode == 0, r.stderr
    assert "loop device backed by" in r.stdout and "24.0 MiB" in r.stdout
    assert "written:" in r.stdout and f"verified (sha256 {digest})" in r.stdout
    with open(dev, "rb") as f:
        assert hashlib.sha256(f.read(image.stat().st_size)).hexdigest() == digest
    assert backing.read_bytes()[: image.stat().st_size] == image.read_bytes()


@pytestmark_root
def test_flash_detects_a_checksum_mismatch(tmp_path, loopdev):
    dev, _ = loopdev
    image, _ = make_image(tmp_path, 2 * MiB)
    (tmp_path / "twinbeat-test.raw.sha256").write_text("0" * 64 + "  twinbeat-test.raw\n")
    r = run_flash("--yes", str(image), dev)
    assert r.returncode == 1 and "VERIFY FAILED" in r.stderr


@pytestmark_root
def test_flash_without_yes_asks_and_writes_nothing_unless_told_yes(tmp_path, loopdev):
    dev, backing = loopdev
    image, _ = make_image(tmp_path, MiB)
    r = run_flash(str(image), dev, stdin="no\n")
    assert r.returncode == 1
    assert "Type 'yes' to continue" in r.stdout and "aborted, nothing written" in r.stderr
    assert backing.read_bytes()[:MiB] == b"\0" * MiB


@pytestmark_root
def test_flash_refuses_a_mounted_device(tmp_path, loopdev):
    dev, _ = loopdev
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True)
    try:
        (mnt / "marker").write_text("still here")
        # the marker on the device before flash runs (syncfs of this file system alone,
        # not a sync of every one on a machine that may be writing an image meanwhile)
        subprocess.run(["sync", "--file-system", str(mnt / "marker")], check=True)
        image, _ = make_image(tmp_path, MiB)
        r = run_flash("--yes", str(image), dev)
        assert r.returncode == 1
        assert f"{dev} is mounted (at {mnt})" in r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # The file system survived: nothing was written. It is read from the device with
    # debugfs, not mounted again: a mount namespace made meanwhile by any other process
    # (`ip netns exec`, `unshare --mount` in a concurrent tier) keeps a copy of the mount,
    # and with it the read-write superblock, so a read-only mount would fail with EBUSY.
    # That is what failed in CI.
    out = subprocess.run(["debugfs", "-R", "cat /marker", dev], check=True,
                         capture_output=True, text=True)
    assert out.stdout == "still here"


@pytestmark_root
def test_flash_refuses_a_device_smaller_than_the_image(tmp_path, loopdev):
    dev, _ = loopdev
    image, _ = make_image(tmp_path, 25 * MiB)
    r = run_flash("--yes", str(image), dev)
    assert r.returncode == 1 and "too small" in r.stderr
