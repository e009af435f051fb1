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


# --------------------------------------------------------------------------------------------
# Kill and reap: nothing of ours is left in /proc


def _gone(pid: int) -> bool:
    """Our own child: reaped, so not even a zombie in /proc."""
    return not Path(f"/proc/{pid}").exists()


def _dies(pid: int, within: float = 3.0) -> bool:
    """A grandchild (not ours to reap): SIGKILL is delivered asynchronously, so it may run
    for a moment after the group was killed; it must be dead (or a zombie) soon after."""
    deadline = time.monotonic() + within
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_timeout_reaps_the_leader_it_killed(tmp_path):
    r = asyncio.run(run(["sh", "-c", "echo $$; exec sleep 30"], timeout=0.2, grace=0.1))
    assert r.timed_out and r.returncode == -signal.SIGTERM
    assert _gone(int(r.stdout))


def test_spawn_streams_lines_and_reaps_a_child_that_ends(caplog):
    from supervisor.drivers.runner import spawn

    caplog.set_level(logging.WARNING, logger="twinbeat.run")

    async def main() -> tuple[list[str], RunResult, int]:
        child = await spawn(["sh", "-c", "echo $$; echo one; echo 'it broke' >&2; exit 4"])
        lines = [line async for line in child.lines()]
        return lines, await child.wait(), child.pid

    lines, result, pid = asyncio.run(main())
    assert lines[1:] == ["one\n"] and int(lines[0]) == pid
    assert result.returncode == 4 and "it broke" in result.stderr_tail()
    assert _gone(pid)
    assert any("it broke" in rec.getMessage() and "sh -c" in rec.getMessage()
               for rec in caplog.records)


def test_spawn_stop_kills_the_group_after_the_grace_and_reaps(tmp_path):
    from supervisor.drivers.runner import spawn

    pidfile = tmp_path / "grandchild.pid"
    script = (f"trap '' TERM; sh -c 'trap \"\" TERM; echo $$ > {pidfile}; exec sleep 60' & "
              "echo $$; wait")

    async def main() -> tuple[RunResult, int, float]:
        child = await spawn(["sh", "-c", script], grace=0.3)
        async for _ in child.lines():
            break
        while not pidfile.exists() or not pidfile.read_text().strip():
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        result = await child.stop()
        return result, child.pid, time.monotonic() - t0

    result, pid, took = asyncio.run(main())
    assert result.returncode == -signal.SIGKILL  # TERM was ignored: KILL after the grace
    assert 0.3 <= took < 3
    assert _gone(pid)
    assert _dies(int(pidfile.read_text()))


def test_spawn_of_a_missing_program_raises():
    from supervisor.drivers.runner import spawn

    with pytest.raises(FileNotFoundError):
        asyncio.run(spawn(["/nonexistent/tb-no-such-program"]))


def test_run_sync_output_input_and_clean_environment(monkeypatch):
    from supervisor.drivers.runner import run_sync

    monkeypatch.setenv("TB_LEAK", "secret")
    r = run_sync(["sh", "-c", "cat; env"], timeout=5, input=b"hi\n", env={"TB_X": "1"})
    assert r.ok and r.stdout.startswith("hi\n")
    assert "TB_X=1" in r.stdout and "TB_LEAK" not in r.stdout
    missing = run_sync(["/nonexistent/tb-no-such-program"], timeout=5)
    assert missing.returncode == 127 and not missing.ok


def test_run_sync_timeout_kills_the_group_and_reaps(tmp_path):
    from supervisor.drivers.runner import run_sync

    pidfile = tmp_path / "grandchild.pid"
    script = f"sh -c 'echo $$ > {pidfile}; exec sleep 60' & echo $$; wait"
    t0 = time.monotonic()
    r = run_sync(["sh", "-c", script], timeout=0.2, grace=0.2)
    assert r.timed_out and not r.ok and "timed out" in r.describe()
    assert time.monotonic() - t0 < 3
    assert _gone(int(r.stdout.split()[0]))
    assert _dies(int(pidfile.read_text()))


def test_no_child_is_started_outside_the_runner():
    """Every process goes through supervisor/drivers/runner.py."""
    import ast

    repo = Path(__file__).resolve().parent.parent
    found = []
    for folder in ("supervisor", "firstboot"):
        for path in sorted((repo / folder).rglob("*.py")):
            if path.name == "runner.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    mods = [a.name for a in node.names] if isinstance(node, ast.Import) \
                        else [node.module or ""]
                    if "subprocess" in mods:
                        found.append(f"{path.relative_to(repo)}:{node.lineno}: imports subprocess")
                if isinstance(node, ast.Attribute) and node.attr in (
                        "create_subprocess_exec", "create_subprocess_shell", "system", "popen",
                        "spawnv", "execv", "execvp", "fork"):
                    found.append(f"{path.relative_to(repo)}:{node.lineno}: {node.attr}")
    assert found == []


def test_in_child_answers_and_keeps_the_childs_imports_there():
    import sys

    from supervisor.drivers.runner import in_child

    assert "colorsys" not in sys.modules

    def child() -> list[object]:
        import colorsys

        return [os.getpid(), list(colorsys.rgb_to_hsv(1.0, 0.0, 0.0))]

    pid, hsv = in_child(child)
    assert pid != os.getpid() and hsv == [0.0, 1.0, 1.0]
    assert "colorsys" not in sys.modules


def test_in_child_reports_what_failed_there():
    from supervisor.drivers.runner import ChildFailed, in_child

    def raises() -> None:
        raise ValueError("no template")

    def dies() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def unanswerable() -> object:
        return object()

    with pytest.raises(ChildFailed, match=r"^ValueError: no template$"):
        in_child(raises)
    with pytest.raises(ChildFailed, match=r"ended with status -9 and no answer"):
        in_child(dies)
    with pytest.raises(ChildFailed, match=r"TypeError: Object of type object"):
        in_child(unanswerable)


def test_in_child_kills_and_reaps_a_child_that_does_not_answer(tmp_path):
    from supervisor.drivers.runner import ChildFailed, in_child

    pid_file = tmp_path / "pid"

    def hangs() -> None:
        pid_file.write_text(str(os.getpid()))
        time.sleep(60)

    t0 = time.monotonic()
    # (1 s: long enough for the child to write its pid first, even on a loaded machine)
    with pytest.raises(ChildFailed, match=r"^no answer within 1 s: the child was killed$"):
        in_child(hangs, timeout=1.0)
    assert time.monotonic() - t0 < 10
    # killed and reaped: no process, not even a zombie, is left under that pid
    assert not Path(f"/proc/{pid_file.read_text()}").exists()
