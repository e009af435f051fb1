"""fence-peer through the real loops: two supervisors in one process, joined by a serial
"null modem" (two ptys and a relay between their master ends), a fake outdater on node2, and
``twinbeat fence-peer`` (the CLI, in a thread) talking to node1's control socket."""

from __future__ import annotations

import asyncio
import os
import pty
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor import cli, fencepeer
from supervisor.config import load_config
from supervisor.control import request
from supervisor.core.events import ShutdownRequested
from supervisor.loop import Supervisor
from supervisor.statefiles import CONTROL_SOCKET
from tests.launcher_support import run_launcher


def write_config(tmp: Path, node: str, tty: str) -> Path:
    etc = tmp / f"etc-{node}"
    etc.mkdir()
    keys = etc / "authkeys"
    keys.write_text("auth 1\n1 sha256 fence-loop-secret\n")
    keys.chmod(0o600)
    cfg = etc / "cluster.toml"
    cfg.write_text(f"""
[cluster]
name = "fenceloop"

[timing]
keepalive = "50ms"
warntime = "150ms"
deadtime = "300ms"
initdead = "1s"

[watchdog]
mode = "off"

[[node]]
name = "node1"

[[node]]
name = "node2"

[[link]]
type = "serial"
device = "{tty}"

[[group]]
name = "app"
preferred = "node1"
resources = ["noop::app"]
""")
    return cfg


async def until(what: str, predicate: Callable[[], bool], timeout: float = 10) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)




@pytest.fixture
def null_modem():
    """Two pty pairs; the test relays between the master ends. Yields the slave paths."""
    m1, s1 = pty.openpty()
    m2, s2 = pty.openpty()
    for fd in (m1, m2):
        os.set_blocking(fd, False)
    try:
        yield (m1, m2), (os.ttyname(s1), os.ttyname(s2))
    finally:
        for fd in (m1, s1, m2, s2):
            os.close(fd)


def relay(loop: asyncio.AbstractEventLoop, a: int, b: int) -> None:
    def copy(src: int, dst: int) -> None:
        try:
            data = os.read(src, 65536)
            os.write(dst, data)
        except OSError:
            pass  # a full buffer or a port being reopened: heartbeats are periodic

    loop.add_reader(a, copy, a, b)
    loop.add_reader(b, copy, b, a)


# Two real loops in real time (beats every 50 ms, a 300 ms deadtime): a loaded machine that
# stalls the process for a deadtime makes the peers see each other dead mid-request, and the
# answer changes (seen flaky in the unit tier under QEMU load); the slow tier runs it.
@pytest.mark.slow
def test_fence_peer_command_returns_the_peers_answer(tmp_path, null_modem, capsys):
    (m1, m2), (tty1, tty2) = null_modem
    gate = asyncio.Event()
    asked: list[tuple[str, float]] = []

    async def outdater(resource: str, timeout: float) -> str:
        asked.append((resource, timeout))
        await gate.wait()
        return "outdated"

    async def never(resource: str, timeout: float) -> str:
        raise AssertionError("node1 was asked to outdate")

    sup1 = Supervisor(load_config(write_config(tmp_path, "node1", tty1)), "node1",
                      tmp_path / "state1", outdater=never)
    sup2 = Supervisor(load_config(write_config(tmp_path, "node2", tty2)), "node2",
                      tmp_path / "state2", outdater=outdater)
    sock1 = tmp_path / "state1" / CONTROL_SOCKET
    results: dict[str, object] = {}

    def fence_peer() -> int:
        return cli.main(["fence-peer", "r0", "--state-dir", str(tmp_path / "state1")])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        relay(loop, m1, m2)
        t1, t2 = asyncio.create_task(sup1.run()), asyncio.create_task(sup2.run())
        try:
            await until("both nodes to see each other", lambda: (
                sup1.state is not None and sup2.state is not None
                and sup1.status()["peer"]["state"] == "alive"
                and sup2.status()["peer"]["state"] == "alive"))
            handler = asyncio.create_task(asyncio.to_thread(fence_peer))
            await until("node2 to run its outdater", lambda: bool(asked))
            # The handler waits; the control socket still answers other requests.
            status = await asyncio.to_thread(request, sock1, {"command": "status"})
            results["pending"] = status["status"]["fencing"]["pending"]
            assert not handler.done()
            gate.set()
            results["code"] = await asyncio.wait_for(handler, 10)
            results["status1"] = sup1.status()["fencing"]
            results["status2"] = sup2.status()["fencing"]
            # node2 leaves: a new request is answered 5 at once.
            sup2.feed(ShutdownRequested())
            await asyncio.wait_for(t2, 30)
            await until("node1 to see node2 gone",
                        lambda: sup1.status()["peer"]["state"] == "dead")
            t0 = time.monotonic()
            results["code_dead"] = await asyncio.to_thread(fence_peer)
            results["dead_seconds"] = time.monotonic() - t0
        finally:
            loop.remove_reader(m1)
            loop.remove_reader(m2)
            for sup, task in ((sup1, t1), (sup2, t2)):
                if not task.done():
                    if sup.state is not None:
                        sup.feed(ShutdownRequested())
                    await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert asked == [("r0", 15.0)]  # half of max(2 x deadtime, 30 s)
    pending = results["pending"]
    assert isinstance(pending, list) and [p["resource"] for p in pending] == ["r0"]
    assert results["code"] == 4
    status1 = results["status1"]
    assert isinstance(status1, dict) and status1["last"]["code"] == 4
    status2 = results["status2"]
    assert isinstance(status2, dict)
    assert status2["peer_requests"][0]["result"] == "outdated"
    assert results["code_dead"] == 5
    assert isinstance(results["dead_seconds"], float) and results["dead_seconds"] < 5
    err = capsys.readouterr().err
    assert "node2 outdated its replica; exit 4" in err
    assert "exit 5 (peer unreachable)" in err


# the two ways in: the full command line, and the launcher's light path
ENTRIES = {
    "cli": lambda argv: cli.main(["fence-peer", *argv]),
    "light": fencepeer.main,
}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_fence_peer_without_a_daemon_exits_5(tmp_path, capsys, entry):
    assert ENTRIES[entry](["r0", "--state-dir", str(tmp_path)]) == 5
    assert "cannot ask the twinbeat daemon" in capsys.readouterr().err


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_fence_peer_takes_the_resource_from_drbd(tmp_path, capsys, monkeypatch, entry):
    monkeypatch.delenv("DRBD_RESOURCE", raising=False)
    assert ENTRIES[entry](["--state-dir", str(tmp_path)]) == 2
    assert "DRBD_RESOURCE is not set" in capsys.readouterr().err
    monkeypatch.setenv("DRBD_RESOURCE", "r7")
    assert ENTRIES[entry](["--state-dir", str(tmp_path)]) == 5
    assert "fence-peer r7: cannot ask" in capsys.readouterr().err


def test_the_launcher_answers_fence_peer_without_the_full_command_line(tmp_path):
    """/usr/bin/twinbeat fence-peer skips supervisor.cli (and the configuration code): its
    start-up is part of DRBD's frozen-write window and of a replicated failover."""
    r = run_launcher(["fence-peer", "r0", "--state-dir", str(tmp_path)],
                     ("supervisor.cli", "supervisor.config", "asyncio"))
    assert r.returncode == 5, r.stderr
    assert "cannot ask the twinbeat daemon" in r.stderr
    assert "LOADED False False False" in r.stdout


def test_fence_peer_help_says_it_is_drbds_handler(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fence-peer", "--help"])
    out = capsys.readouterr().out
    assert "DRBD's fence-peer handler" in out
    assert "4 peer's disk now Outdated" in " ".join(out.split())


def test_the_light_handler_finds_the_daemon_where_the_daemon_is():
    from supervisor.statefiles import DEFAULT_STATE_DIR

    assert str(DEFAULT_STATE_DIR) == fencepeer.DEFAULT_STATE_DIR
    assert fencepeer.CONTROL_SOCKET == CONTROL_SOCKET
