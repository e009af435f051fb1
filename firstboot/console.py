"""The console: printing, reading a line, reading a password, sharing two consoles.

The appliance runs one wizard per console (tty1 and the serial console, see
twinbeat-firstboot@.service). Both show the questions; the first console on which someone
answers claims the setup by creating a claim file (O_EXCL, so exactly one wins). The other
notices the claim while it waits for input, says where setup continues and waits for that
wizard to end. Without a claim file (a wizard started by hand, the tests) nothing is shared.

Lines are read with os.read on the descriptor, not through Python's buffered stdin, so that
waiting for input can also watch the claim file (select with a timeout).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

POLL_SECONDS = 0.25


class OtherConsole(Exception):
    """The setup was claimed by the wizard on another console."""

    def __init__(self, console: str) -> None:
        self.console = console
        super().__init__(console)


class ConsoleClaim:
    """First console to answer wins: a claim file holding "PID CONSOLE"."""

    def __init__(
        self, path: Path, console: str, finished: Callable[[], bool] | None = None
    ) -> None:
        self.path = path
        self.console = console
        self.mine = False
        # once the node is configured (by the other console), nobody claims any more
        self.finished = finished or (lambda: False)

    def _read(self) -> tuple[int, str] | None:
        try:
            words = self.path.read_text(encoding="utf-8").split()
        except FileNotFoundError:
            return None
        except OSError:
            return (0, "another console")
        if len(words) < 2 or not words[0].isdigit():
            return (0, "another console")  # being written right now
        return (int(words[0]), words[1])

    @staticmethod
    def _alive(pid: int) -> bool:
        if pid <= 0:
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def other_owner(self) -> str | None:
        """The console of another live wizard holding the claim, if any."""
        if self.mine:
            return None
        owner = self._read()
        if owner is None:
            return None
        pid, console = owner
        if pid == os.getpid():
            return None
        if not self._alive(pid):
            return None
        return console

    def try_claim(self) -> bool:
        if self.mine:
            return True
        if self.finished():
            return False
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._read()
                if owner is not None and owner[0] > 0 and not self._alive(owner[0]):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # left by a wizard that was killed
                    continue
                return False
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {self.console}\n")
            self.mine = True
            if self.finished():  # the other wizard finished just before we claimed
                self.release()
                return False
            return True
        return False

    def release(self) -> None:
        if self.mine:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.mine = False


class Console:
    """Thin console I/O. ``claim`` (optional) is checked while waiting and on each answer."""

    def __init__(
        self,
        infd: int = 0,
        out: TextIO | None = None,
        claim: ConsoleClaim | None = None,
    ) -> None:
        self.infd = infd
        self.out = out if out is not None else sys.stdout
        self.claim = claim
        self._buf = b""

    def say(self, text: str = "") -> None:
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except OSError:
            pass  # the console is gone; reading will tell (EOF)

    def _check_claim(self) -> None:
        if self.claim is not None:
            other = self.claim.other_owner()
            if other is not None:
                raise OtherConsole(other)

    def _readline(self) -> str:
        while b"\n" not in self._buf:
            if self.claim is not None and not self.claim.mine:
                ready, _, _ = select.select([self.infd], [], [], POLL_SECONDS)
                if not ready:
                    self._check_claim()
                    continue
            chunk = os.read(self.infd, 4096)
            if not chunk:
                raise EOFError
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    def _answered(self) -> None:
        if self.claim is not None and not self.claim.mine:
            self._check_claim()
            if not self.claim.try_claim():
                other = self.claim.other_owner()
                raise OtherConsole(other or "another console")

    def ask(self, prompt: str, hidden: bool = False) -> str:
        if hidden:
            with _no_echo(self.infd):  # before the prompt: an answer may follow it at once
                self._write(prompt)
                line = self._readline()
            self._write("\n")
        else:
            self._write(prompt)
            line = self._readline()
        self._answered()
        return line

    def wait_for(self, done: Callable[[], bool]) -> None:
        """Block until done() is true, ignoring typed input."""
        while not done():
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def _no_echo(fd: int) -> Iterator[None]:
    try:
        old = termios.tcgetattr(fd)
    except (termios.error, OSError):
        yield
        return
    new = list(old)
    new[3] = new[3] & ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSADRAIN, new)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
