"""The one subprocess wrapper every driver uses.

``run()`` starts a command with a clean environment in its own session (so its process group
can be signalled as a whole), collects stdout and stderr, and enforces a timeout: on expiry the
whole group gets SIGTERM, then SIGKILL after a short grace period. When the caller cancels the
awaiting task (its own ``asyncio.timeout``), the group is terminated the same way.

A command that cannot be started (missing executable, no permission) is a failed ``RunResult``
with returncode 127 or 126 (the shell's conventions), never an exception. Every failure is
logged on ``twinbeat.run`` with the full command, the exit status and the tail of stderr
(mkosi's ``run.py`` and keepalived's ``notify.c`` do the same).

Long-lived children (``spawn()``, e.g. ``drbdsetup events2``) get the same environment and
session; their stdout is read line by line, their stderr kept (its tail); ``stop()`` sends
SIGTERM to the group, SIGKILL after the grace period, and reaps the child, and ``wait()``
reaps a child that ended by itself. Both return a ``RunResult`` and log a failure the same way.

``in_child()`` runs a Python function in a forked child and returns its answer (JSON through
a pipe): for a check made once whose imports the daemon must not keep (the DRBD resource
files' templates, see ``cli.daemon``).

``run_sync()`` is ``run()`` for code without an event loop (the first-boot wizard, the reboot
fallback): same environment, session, timeout, TERM then KILL to the group, reaping and log.

Background processes: a script that starts a daemon (``daemon &``) returns while the daemon
lives on in the script's process group. ``run()`` does not kill the group after a normal exit;
it waits for the leader, reads what the pipes hold for up to ``DRAIN_AFTER_EXIT`` seconds and
closes them. A daemon left behind must therefore send its own output elsewhere (as init scripts
do with ``>/dev/null 2>&1``); its writes to our closed pipes would fail with EPIPE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import shlex
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("twinbeat.run")

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: seconds between SIGTERM and SIGKILL to the process group
KILL_GRACE = 2.0
#: after the leader exits, how long to keep reading output held open by a grandchild
DRAIN_AFTER_EXIT = 0.3
#: bytes of each stream kept in the result (the tail is kept)
MAX_OUTPUT = 1 << 20
STDERR_TAIL = 800

# Tasks finishing a kill after the caller was cancelled (kept referenced until done).
_reapers: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def stderr_tail(self, limit: int = STDERR_TAIL) -> str:
        text = self.stderr.strip()
        if len(text) > limit:
            text = "..." + text[-limit:]
        return text

    def status_text(self) -> str:
        if self.timed_out:
            return f"timed out after {self.duration:.1f} s and was killed"
        if self.returncode is None:
            return "did not finish"
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            return f"was killed by {name}"
        return f"exited with status {self.returncode}"

    def describe(self) -> str:
        """One line for logs and status: the command, how it ended, and its stderr tail."""
        text = f"`{self.command}` {self.status_text()} ({self.duration:.2f} s)"
        tail = self.stderr_tail()
        if tail:
            text += ": " + " | ".join(tail.splitlines())
        return text


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8"}
    if extra:
        env.update(extra)
    return env


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("no permission to send %s to process group %d", signal.Signals(sig).name, pgid)
        return False
    return True


async def _terminate_group(
    proc: asyncio.subprocess.Process, grace: float, *, term_sent: bool = False
) -> None:
    """SIGTERM the process group, wait up to ``grace`` for the leader, then SIGKILL the group."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    if not term_sent:
        _signal_group(pgid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace)
    # Grandchildren may outlive the leader; the group id stays valid while any member lives.
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()


async def _open_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.ReadTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def _read_stream(stream: asyncio.StreamReader, sink: bytearray) -> None:
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return
        sink += chunk
        if len(sink) > MAX_OUTPUT:
            del sink[: len(sink) - MAX_OUTPUT]


def _decode(data: bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


async def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    cwd: str | None = None,
    grace: float = KILL_GRACE,
    log_failure: bool = True,
) -> RunResult:
    """Run ``argv`` and return how it ended; see the module docstring for the rules.

    ``log_failure=False`` is for commands whose non-zero exit is an ordinary answer (a status
    query, a ping): the caller decides what is worth logging.
    """
    args = tuple(str(a) for a in argv)
    started = time.monotonic()
    # Our own pipes (not asyncio's) so we can close our ends even while a grandchild that the
    # command left running still holds the write ends.
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            env=clean_env(env),
            cwd=cwd,
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        result = RunResult(
            args, code, "", f"cannot execute: {exc}", time.monotonic() - started, False
        )
        log.warning("%s", result.describe())
        return result
    finally:
        # The child has its copies; ours would keep the pipes open forever.
        for fd in (out_w, err_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    out = bytearray()
    err = bytearray()
    out_reader, out_transport = await _open_reader(out_r)
    err_reader, err_transport = await _open_reader(err_r)
    readers = [
        asyncio.ensure_future(_read_stream(out_reader, out)),
        asyncio.ensure_future(_read_stream(err_reader, err)),
    ]
    timed_out = False
    try:
        if input is not None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(input)
                await proc.stdin.drain()
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), max(0.0, timeout - (time.monotonic() - started)))
        except TimeoutError:
            timed_out = True
            await _terminate_group(proc, grace)
        # Output may be held open by a grandchild (a daemon the command started): read what is
        # there, but do not wait for it to exit.
        await asyncio.wait(readers, timeout=DRAIN_AFTER_EXIT)
    except asyncio.CancelledError:
        # The caller gave up (its own timeout): kill the group in the background, re-raise.
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            reaper = asyncio.ensure_future(_terminate_group(proc, grace, term_sent=True))
            _reapers.add(reaper)
            reaper.add_done_callback(_reapers.discard)
        log.warning(
            "`%s` was cancelled by its caller; its process group is terminated", shlex.join(args)
        )
        raise
    finally:
        for reader in readers:
            reader.cancel()
        out_transport.close()
        err_transport.close()

    result = RunResult(
        argv=args,
        returncode=proc.returncode,
        stdout=_decode(out),
        stderr=_decode(err),
        duration=time.monotonic() - started,
        timed_out=timed_out,
    )
    if not result.ok and log_failure:
        log.warning("%s", result.describe())
    return result


# --------------------------------------------------------------------------------------------
# Long-lived children


class Spawned:
    """A long-lived child started by ``spawn()``: its stdout line by line, then how it ended."""

    def __init__(self, argv: tuple[str, ...], proc: asyncio.subprocess.Process,
                 grace: float, log_failure: bool) -> None:
        self.argv = argv
        self.proc = proc
        self.grace = grace
        self.log_failure = log_failure
        self.started = time.monotonic()
        self._err = bytearray()
        assert proc.stderr is not None
        self._err_task = asyncio.ensure_future(_read_stream(proc.stderr, self._err))
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    async def lines(self) -> AsyncIterator[str]:
        """stdout, one decoded line at a time, until the child closes it."""
        assert self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                return
            yield raw.decode("utf-8", errors="replace")

    async def wait(self) -> RunResult:
        """Reap the child once it ends by itself (its stdout at EOF); log a failure."""
        await self.proc.wait()
        return await self._result(timed_out=False)

    async def stop(self) -> RunResult:
        """SIGTERM the group, SIGKILL after the grace period, reap the child."""
        self._stopped = True
        if self.proc.returncode is None:
            await _terminate_group(self.proc, self.grace)
        else:  # the leader is gone; whatever it left in its group goes too
            _signal_group(self.proc.pid, signal.SIGKILL)
        return await self._result(timed_out=False)

    async def _result(self, *, timed_out: bool) -> RunResult:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._err_task), DRAIN_AFTER_EXIT)
        self._err_task.cancel()
        result = RunResult(self.argv, self.proc.returncode, "", _decode(self._err),
                           time.monotonic() - self.started, timed_out)
        if not self._stopped and not result.ok and self.log_failure:
            log.warning("%s", result.describe())
        return result


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    grace: float = KILL_GRACE,
    log_failure: bool = True,
) -> Spawned:
    """Start a long-lived child in its own session with a clean environment.

    OSError if it cannot be started (the caller says why and retries later). The caller must
    end it with ``stop()`` (a cancelled caller too) or reap it with ``wait()``.
    """
    args = tuple(str(a) for a in argv)
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=clean_env(env), start_new_session=True,
    )
    return Spawned(args, proc, grace, log_failure)


# --------------------------------------------------------------------------------------------
# Without an event loop


def run_sync(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    grace: float = KILL_GRACE,
    log_failure: bool = True,
) -> RunResult:
    """``run()`` for code without an event loop; see the module docstring.

    Unlike ``run()`` it waits for the output pipes to close: a command that leaves a daemon
    holding them open runs into its timeout (the wizard's commands leave none).
    """
    args = tuple(str(a) for a in argv)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(env),
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        result = RunResult(args, code, "", f"cannot execute: {exc}",
                           time.monotonic() - started, False)
        if log_failure:
            log.warning("%s", result.describe())
        return result
    timed_out = False
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()  # the group is dead: the pipes close
        _signal_group(proc.pid, signal.SIGKILL)  # what outlived the leader
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    result = RunResult(args, proc.returncode, out[-MAX_OUTPUT:].decode("utf-8", "replace"),
                       err[-MAX_OUTPUT:].decode("utf-8", "replace"),
                       time.monotonic() - started, timed_out)
    if not result.ok and log_failure:
        log.warning("%s", result.describe())
    return result


class ChildFailed(RuntimeError):
    """``in_child``'s function raised (its type and message are this one's), or the child
    died without an answer."""


def in_child(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``fn()`` in a forked child, its answer (what JSON carries) returned here: what the
    child imports and allocates stays in the child. Call it before any thread or event loop
    exists (a fork copies only the calling thread). ChildFailed when ``fn`` raises an
    Exception, its answer is not what JSON carries, the child ends without an answer
    (killed), or it has not answered within ``timeout`` seconds (then it is killed and
    reaped, as ``run`` does with a command)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, then leave without running the parent's exit code
        try:
            os.close(read_end)
            try:
                answer = json.dumps({"answer": fn()})
            except Exception as exc:  # (an answer JSON cannot carry too)
                answer = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
            with os.fdopen(write_end, "wb") as out:
                out.write(answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with os.fdopen(read_end, "rb", buffering=0) as answer_in:
        waiter = select.poll()  # (not select.select: no limit on the descriptor's number)
        waiter.register(answer_in, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not waiter.poll(left * 1000):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise ChildFailed(f"no answer within {timeout:g} s: the child was killed")
            chunk = answer_in.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    _, status = os.waitpid(pid, 0)
    try:
        reply = json.loads(data)
        if "error" in reply:
            raise ChildFailed(reply["error"])
        return reply["answer"]
    except (ValueError, KeyError, TypeError):
        raise ChildFailed(f"the child ended with status {os.waitstatus_to_exitcode(status)} "
                          "and no answer") from None
