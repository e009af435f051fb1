"""The control socket's mode comes from a private bind and a rename, never from the umask.

The umask is the whole process's: the daemon used to set 0177 around the bind and restore it
after an ``await``, so two servers starting in one event loop left 0177 set for good, and
anything forked meanwhile (a resource script, a browser in the test run) got it: chromium then
refused its own 0600 socket directory (CHECK failed, SIGTRAP) in the slow tier.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path
from typing import Any

from supervisor import control
from supervisor.atomicfile import bind_unix


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


async def echo(request: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "echo": request}


def test_two_servers_started_together_leave_the_umask_alone_and_answer(tmp_path: Path) -> None:
    before = current_umask()
    paths = [tmp_path / "a.sock", tmp_path / "b.sock"]

    async def main() -> list[dict[str, Any]]:
        servers = [control.ControlServer(p, echo) for p in paths]
        await asyncio.gather(*(s.start() for s in servers))
        assert current_umask() == before
        answers = await asyncio.gather(*(asyncio.to_thread(
            control.request, p, {"command": "status"}) for p in paths))
        for s in servers:
            await s.close()
        return answers

    answers = asyncio.run(main())
    assert answers == [{"ok": True, "echo": {"command": "status"}}] * 2
    assert current_umask() == before
    assert not any(p.exists() for p in paths)  # close() removes them


def test_socket_is_0600_even_with_no_umask_and_replaces_a_stale_one(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("stale")
    old = os.umask(0)
    try:
        sock = bind_unix(path)
    finally:
        os.umask(old)
    try:
        mode = path.lstat().st_mode
        assert stat.S_ISSOCK(mode), "the stale file was not replaced by the socket"
        assert stat.S_IMODE(mode) == 0o600
        assert sorted(os.listdir(tmp_path)) == ["control.sock"]  # no private folder left
    finally:
        sock.close()


def test_a_failed_bind_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.mkdir()
    (path / "x").write_text("a folder that is not empty cannot be replaced")
    try:
        bind_unix(path)
    except OSError:
        pass
    else:
        raise AssertionError("a socket replaced a non-empty folder")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_a_socket_path_near_the_address_limit_binds_and_answers(tmp_path: Path) -> None:
    """The temporary folder's name is longer than the socket's own: a final path that fits
    a Unix socket address (107 bytes) but whose temporary one would not still binds (CI's
    deeper pytest folders once hit this)."""
    folder = tmp_path / ("d" * max(1, 100 - len(str(tmp_path)) - len("/control.sock")))
    folder.mkdir()
    path = folder / "control.sock"
    assert len(str(path)) <= 107 and len(str(folder / ".bind-000000000000.tmp/socket")) > 107
    sock = bind_unix(path)
    try:
        sock.listen(1)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert sorted(os.listdir(folder)) == ["control.sock"]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
            peer, _ = sock.accept()
            with peer:
                client.sendall(b"x")
                assert peer.recv(1) == b"x"
    finally:
        sock.close()
