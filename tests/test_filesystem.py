"""Filesystem agent: mount table parsing (pure) and a real loop-mounted ext4 image (root)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.config import TakeoverConfig
from supervisor.drivers.agents import AgentContext, AgentError, FilesystemAgent
from supervisor.drivers.filesystem import find_holders, maps_devices, parse_mountinfo
from supervisor.resource_spec import FilesystemSpec

MOUNTINFO = (
    "22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw\n"
    "36 22 7:0 / /srv/my\\040data rw,relatime shared:5 master:2 - ext4 /dev/loop0 rw\n"
    "37 22 0:45 / /run/user/0 rw,nosuid - tmpfs tmpfs rw,size=100k\n"
    "38 22 147:0 /sub /mnt/drbd rw - xfs /dev/drbd0 rw\n"
)


def test_parse_mountinfo():
    entries = parse_mountinfo(MOUNTINFO)
    assert [(e.devno, e.mountpoint, e.fstype, e.source) for e in entries] == [
        ((253, 1), "/", "ext4", "/dev/mapper/root"),
        ((7, 0), "/srv/my data", "ext4", "/dev/loop0"),  # \040 is a space
        ((0, 45), "/run/user/0", "tmpfs", "tmpfs"),
        ((147, 0), "/mnt/drbd", "xfs", "/dev/drbd0"),
    ]
    assert entries[3].root == "/sub"


def test_maps_devices():
    maps = (
        "55d0c000-55d0d000 r--p 00000000 07:00 12 /srv/data/lib.so\n"
        "7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]\n"
        "7f000000-7f001000 r-xp 00001000 fd:01 3456 /usr/lib/libc.so.6\n"
    )
    assert maps_devices(maps) == {(7, 0), (253, 1)}


def test_find_holders_sees_our_own_cwd(tmp_path):
    # our own process has its cwd on the file system of tmp_path's parent
    st = os.stat(os.getcwd())
    holders = find_holders(Path("/proc"), (os.major(st.st_dev), os.minor(st.st_dev)), set())
    assert os.getpid() in holders


def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mount)")


def _sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def _mounted_at(path: Path) -> list[str]:
    real = os.path.realpath(path)
    return [e.source for e in parse_mountinfo(Path("/proc/self/mountinfo").read_text())
            if e.mountpoint == real]


@pytest.fixture
def loopdev(tmp_path):
    _root()
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    _sh("mkfs.ext4", "-q", "-F", str(image))
    dev = _sh("losetup", "--find", "--show", str(image))
    try:
        yield dev
    finally:
        for e in reversed(parse_mountinfo(Path("/proc/self/mountinfo").read_text())):
            if e.source == dev:
                subprocess.run(["umount", "-l", e.mountpoint], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)


def _ctx(grace: float = 0.5) -> AgentContext:
    return AgentContext(TakeoverConfig(), kill_grace=grace, command_timeout=30)


@pytest.mark.netns
def test_mount_status_unmount_idempotent(loopdev, tmp_path):
    target = tmp_path / "mnt" / "data"  # created by start()
    agent = FilesystemAgent(FilesystemSpec(loopdev, str(target), "ext4", "noatime"), _ctx())

    async def scenario():
        before = await agent.status()
        await agent.start()
        await agent.start()
        during = await agent.status()
        (target / "hello").write_text("hi")
        await agent.stop()
        await agent.stop()
        return before, during, await agent.status()

    assert asyncio.run(scenario()) == (False, True, False)
    assert _mounted_at(target) == []


@pytest.mark.netns
def test_stop_kills_processes_holding_the_mount(loopdev, tmp_path):
    target = tmp_path / "mnt"
    agent = FilesystemAgent(FilesystemSpec(loopdev, str(target), "ext4"), _ctx(grace=0.5))
    asyncio.run(agent.start())
    ready = tmp_path / "ready"
    # one holds a file open; the other ignores SIGTERM and sits in the mount (cwd)
    holder = subprocess.Popen([sys.executable, "-c",
                               f"f = open({str(target / 'log')!r}, 'w'); "
                               f"open({str(ready) + '1'!r}, 'w').close(); "
                               "import time; time.sleep(60)"])
    stubborn = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         f"open({str(ready) + '2'!r}, 'w').close(); time.sleep(60)"],
        cwd=target)
    try:
        deadline = time.monotonic() + 10
        while not (Path(str(ready) + "1").exists() and Path(str(ready) + "2").exists()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        t0 = time.monotonic()
        asyncio.run(agent.stop())
        elapsed = time.monotonic() - t0
        assert holder.wait(5) == -signal.SIGTERM
        assert stubborn.wait(5) == -signal.SIGKILL
        assert elapsed >= 0.5  # the grace period before SIGKILL was honoured
        assert _mounted_at(target) == []
        assert not asyncio.run(agent.status())
    finally:
        for p in (holder, stubborn):
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.netns
def test_refuses_device_mounted_elsewhere(loopdev, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _sh("mount", "-t", "ext4", loopdev, str(elsewhere))
    target = tmp_path / "target"
    agent = FilesystemAgent(FilesystemSpec(loopdev, str(target), "ext4"), _ctx())
    with pytest.raises(AgentError, match=f"already mounted on {elsewhere}"):
        asyncio.run(agent.start())
    assert _mounted_at(target) == []
    assert not asyncio.run(agent.status())
    # stop() of a resource that is not mounted on its target leaves the other mount alone
    asyncio.run(agent.stop())
    assert _mounted_at(elsewhere) == [loopdev]


@pytest.mark.netns
def test_refuses_target_with_something_else_mounted(loopdev, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    _sh("mount", "-t", "tmpfs", "-o", "size=1m", "tbtmpfs", str(target))
    try:
        agent = FilesystemAgent(FilesystemSpec(loopdev, str(target), "ext4"), _ctx())
        with pytest.raises(AgentError, match="tbtmpfs is already mounted there"):
            asyncio.run(agent.start())
    finally:
        subprocess.run(["umount", str(target)], check=False)


@pytest.mark.netns
def test_mount_failure_reports_stderr(loopdev, tmp_path):
    agent = FilesystemAgent(FilesystemSpec(loopdev, str(tmp_path / "t"), "xfs"), _ctx())
    with pytest.raises(AgentError, match=r"cannot mount .*mount -t xfs"):
        asyncio.run(agent.start())


@pytest.fixture
def blankdev(tmp_path):
    _root()
    image = tmp_path / "blank.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    dev = _sh("losetup", "--find", "--show", str(image))
    try:
        yield dev
    finally:
        for e in reversed(parse_mountinfo(Path("/proc/self/mountinfo").read_text())):
            if e.source == dev:
                subprocess.run(["umount", "-l", e.mountpoint], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)


def _marked_ctx(tmp_path: Path, dev: str) -> AgentContext:
    from supervisor.drivers.drbd import fresh_marker

    ctx = AgentContext(TakeoverConfig(), command_timeout=60, run_dir=tmp_path / "run")
    marker = fresh_marker(ctx.run_dir, dev)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("r0\n")
    return ctx


@pytest.mark.netns
def test_a_fresh_blank_device_is_formatted_once(blankdev, tmp_path):
    target = tmp_path / "srv"
    ctx = _marked_ctx(tmp_path, blankdev)
    agent = FilesystemAgent(FilesystemSpec(blankdev, str(target), "ext4"), ctx)
    asyncio.run(agent.start())
    assert _mounted_at(target) == [blankdev]
    assert not list((tmp_path / "run").iterdir())  # the note is used up
    (target / "data").write_text("kept")
    asyncio.run(agent.stop())
    asyncio.run(agent.start())  # no note any more: mounted as it is, not formatted again
    assert (target / "data").read_text() == "kept"
    asyncio.run(agent.stop())


@pytest.mark.netns
def test_a_blank_device_without_the_note_is_never_formatted(blankdev, tmp_path):
    target = tmp_path / "srv"
    ctx = AgentContext(TakeoverConfig(), command_timeout=60, run_dir=tmp_path / "run")
    agent = FilesystemAgent(FilesystemSpec(blankdev, str(target), "ext4"), ctx)
    with pytest.raises(AgentError, match="cannot mount"):
        asyncio.run(agent.start())
    probe = subprocess.run(["blkid", "-p", blankdev], capture_output=True, check=False)
    assert probe.returncode == 2  # still no file system on it


@pytest.mark.netns
def test_a_device_with_a_file_system_is_never_reformatted(loopdev, tmp_path):
    target = tmp_path / "srv"
    ctx = AgentContext(TakeoverConfig(), command_timeout=60)
    plain = FilesystemAgent(FilesystemSpec(loopdev, str(target), "ext4"), ctx)
    asyncio.run(plain.start())
    (target / "data").write_text("precious")
    asyncio.run(plain.stop())
    agent = FilesystemAgent(FilesystemSpec(loopdev, str(target), "ext4"),
                            _marked_ctx(tmp_path, loopdev))
    asyncio.run(agent.start())
    assert (target / "data").read_text() == "precious"
    assert not list((tmp_path / "run").iterdir())
    asyncio.run(agent.stop())
