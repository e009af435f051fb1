"""The subprocess wrapper: exit codes, stderr, missing programs, timeouts that kill the group."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from supervisor.drivers.runner import CLEAN_PATH, RunResult, run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_success_captures_stdout_and_stderr():
    r = asyncio.run(run(["sh", "-c", "echo out; echo err >&2"], timeout=5))
    assert r.ok
    assert r.returncode == 0
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"
    assert r.argv == ("sh", "-c", "echo out; echo err >&2")
    assert not r.timed_out


def test_exit_code_and_describe(caplog):
    caplog.set_level(logging.WARNING, logger="twinbeat.run")
    r = asyncio.run(run(["sh", "-c", "echo 'disk on fire' >&2; exit 3"], timeout=5))
    assert not r.ok
    assert r.returncode == 3
    text = r.describe()
    assert "sh -c" in text
    assert "exited with status 3" in text
    assert "disk on fire" in text
    # the failure is logged with the full command and stderr
    assert any("disk on fire" in rec.getMessage() and "status 3" in rec.getMessage()
               for rec in caplog.records)


def test_missing_executable_is_a_failed_result():
    r = asyncio.run(run(["/nonexistent/tb-no-such-program", "x"], timeout=5))
    assert isinstance(r, RunResult)
    assert not r.ok
    assert r.returncode == 127
    assert "No such file" in r.stderr
    assert "tb-no-such-program" in r.describe()


def test_not_executable_is_126(tmp_path):
    script = tmp_path / "s"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    r = asyncio.run(run([str(script)], timeout=5))
    assert r.returncode == 126
    assert not r.ok


def test_clean_environment_and_extra_env(monkeypatch):
    monkeypatch.setenv("TB_LEAK", "secret")
    r = asyncio.run(run(["sh", "-c", "env"], timeout=5, env={"TB_EXTRA": "1"}))
    lines = set(r.stdout.splitlines())
    assert f"PATH={CLEAN_PATH}" in lines
    assert "LANG=C.UTF-8" in lines
    assert "TB_EXTRA=1" in lines
    assert not any(line.startswith("TB_LEAK=") for line in lines)


def test_input_and_cwd(tmp_path):
    r = asyncio.run(run(["sh", "-c", "pwd; cat"], timeout=5, input=b"hello", cwd=str(tmp_path)))
    assert r.stdout == f"{tmp_path}\nhello"


def test_own_session():
    r = asyncio.run(run([sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid())"],
                        timeout=5))
    assert r.stdout.strip() == "True"


@pytest.mark.slow  # real processes, a 0.5 s timeout and grace
def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    # The child starts a grandchild that ignores SIGTERM, then waits; both must die.
    script = (
        f"sh -c 'trap \"\" TERM; echo $$ > {pidfile}; exec sleep 60' & "
        "wait"
    )
    t0 = time.monotonic()
    r = asyncio.run(run(["sh", "-c", script], timeout=0.5, grace=0.5))
    elapsed = time.monotonic() - t0
    assert r.timed_out
    assert not r.ok
    assert "timed out" in r.describe()
    assert elapsed < 5
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(grandchild)


def test_daemon_left_behind_is_not_killed_and_does_not_block(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    # A script that leaves a daemon running with our pipes still open (bad manners).
    script = f"sleep 30 & echo $! > {pidfile}; echo started"
    t0 = time.monotonic()
    r = asyncio.run(run(["sh", "-c", script], timeout=10))
    elapsed = time.monotonic() - t0
    daemon = int(pidfile.read_text())
    try:
        assert r.ok
        assert r.stdout == "started\n"
        assert elapsed < 3
        assert _alive(daemon)
    finally:
        os.kill(daemon, signal.SIGKILL)


@pytest.mark.slow  # real processes and a 0.5 s wait for the reaper
def test_caller_cancellation_kills_group(tmp_path):
    pidfile = tmp_path / "child.pid"

    async def main():
        task = asyncio.ensure_future(
            run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout=60, grace=0.2)
        )
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline, "the child never wrote its pid"
            await asyncio.sleep(0.02)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(task, 0.2)
        await asyncio.sleep(0.5)  # let the background reaper finish

    asyncio.run(main())
    pid = int(pidfile.read_text())
    assert not _alive(pid)
