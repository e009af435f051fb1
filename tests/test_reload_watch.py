"""The configuration reload's watch (supervisor.sources.reload, supervisor.sources.inotify):
which changes of cluster.toml and authkeys schedule a reload, on real inotify in a temporary
directory (no sleeps: each step waits for the reload it must schedule, and the count of
reloads shows that nothing else scheduled one)."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from supervisor.sources import inotify
from supervisor.sources.reload import ReloadSource


def record(wd: int, mask: int, name: bytes, size: int | None = None) -> bytes:
    size = len(name) if size is None else size
    return struct.pack("iIII", wd, mask, 0, size) + name.ljust(size, b"\0")


def test_events_are_parsed_with_their_padded_names_and_a_cut_record_ends_them():
    data = (record(1, inotify.IN_CLOSE_WRITE, b"cluster.toml", 16)
            + record(2, inotify.IN_MOVED_TO, b"authkeys")
            + record(-1, inotify.IN_Q_OVERFLOW, b"")
            + record(1, inotify.IN_DELETE, b"cut", 16)[:-4])
    assert inotify.parse_events(data) == [(1, inotify.IN_CLOSE_WRITE, "cluster.toml"),
                                          (2, inotify.IN_MOVED_TO, "authkeys"),
                                          (-1, inotify.IN_Q_OVERFLOW, "")]
    assert inotify.parse_events(b"") == []


class Scheduled:
    """Counts ReloadSource.schedule calls; ``wait(n)`` until there are n."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.changed.set()

    async def wait(self, n: int) -> None:
        while self.count < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout=10)
        assert self.count == n


def test_a_write_a_rename_over_and_a_delete_of_either_file_schedule_a_reload(tmp_path: Path):
    etc, keys = tmp_path / "etc", tmp_path / "keys"
    etc.mkdir()
    keys.mkdir()
    config, authkeys = etc / "cluster.toml", keys / "authkeys"
    config.write_text("old\n")
    authkeys.write_text("old\n")

    async def scenario() -> None:
        cfg: Any = SimpleNamespace(path=str(config), authkeys_path=str(authkeys))
        source = ReloadSource(lambda: cfg, "node1", lambda c, k: None)
        scheduled = Scheduled()
        source.schedule = scheduled  # type: ignore[method-assign]
        source.start()
        assert source._inotify is not None
        try:
            (etc / "notes.txt").write_text("another file in the directory\n")
            config.write_text("edited in place\n")
            await scheduled.wait(1)
            # an atomic write: a temporary name, then renamed over the file
            (etc / ".cluster.toml.new").write_text("replaced\n")
            os.replace(etc / ".cluster.toml.new", config)
            await scheduled.wait(2)
            authkeys.write_text("new key\n")
            await scheduled.wait(3)
            authkeys.unlink()
            await scheduled.wait(4)
            (keys / "cluster.toml.bak").write_text("a name that only looks like it\n")
            config.write_text("last\n")  # the notes and the backup scheduled nothing
            await scheduled.wait(5)
        finally:
            source.close()
        assert source._inotify is None

    asyncio.run(scenario())


def test_a_directory_that_cannot_be_watched_is_an_os_error(tmp_path: Path):
    async def scenario() -> None:
        watch = inotify.DirectoryWatch([str(tmp_path / "missing")], inotify.IN_CLOSE_WRITE,
                                       lambda name: None)
        with pytest.raises(FileNotFoundError, match="inotify_add_watch"):
            watch.start(asyncio.get_running_loop())
        assert watch.fd is None

    asyncio.run(scenario())


def test_the_watch_brings_no_pyinotify_or_asyncore_into_the_daemon(tmp_path: Path):
    """pyinotify imported asyncore and glob into every supervisor (about 2.5 MB of its
    memory, issue 12) for this one watch; a watch started in a fresh interpreter leaves them
    out."""
    import subprocess
    import sys

    (tmp_path / "cluster.toml").write_text("")
    code = (
        "import asyncio, sys\n"
        "from types import SimpleNamespace\n"
        "import supervisor.cli, supervisor.cli.daemon, supervisor.loop\n"
        "from supervisor.sources.reload import ReloadSource\n"
        f"cfg = SimpleNamespace(path={str(tmp_path / 'cluster.toml')!r},\n"
        f"                      authkeys_path={str(tmp_path / 'authkeys')!r})\n"
        "async def main():\n"
        "    source = ReloadSource(lambda: cfg, 'node1', lambda c, k: None)\n"
        "    source.start()\n"
        "    print(source._inotify is not None)\n"
        "    source.close()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m in ('pyinotify', 'asyncore', 'glob')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent,
                         check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "[]"], out.stderr
