"""A root shell on a VM's serial console (ttyS0), driven with pexpect.

Log in as root with the password the wizard (or the seed) set, then make the shell easy to
read: no echo, no line editing, kernel messages off the console, and a unique prompt
(``PS1='@@''PROMPT@@ '``: the split quote keeps the typed command from matching). Each
command is framed by numbered markers and ends with its exit status::

    echo @@B''EG7@@; COMMAND; echo @@E''ND7 $?@@

so that output of an earlier command, a boot message or a stale prompt never passes for
the answer. Every wait names what it waited for when it times out.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import pexpect
from vm import VM, VMError

PROMPT = "@@PROMPT@@ "
PROMPT_RE = re.escape(PROMPT)
LOGIN_RE = r"\S+ login: $|\S+ login: "
PASSWORD_RE = r"Password: "
ROOT_PROMPT_RE = r"root@[\w.-]+:[^\r\n]*# "


# `twinbeat status --json` costs seconds under TCG (the CLI imports asyncio); for polling, a
# tiny client asks the daemon's control socket the same question (the CLI prints exactly
# its "status" answer). Installed in /run at each login.
#: base64 characters per command line when writing a file (write_file)
LINE_MAX = 1024

FAST_STATUS = """\
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
try:
    s.connect("/var/lib/twinbeat/control.sock")
except OSError as e:
    sys.exit(f"no daemon: {e}")
s.sendall(b'{"command": "status"}\\n')
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
answer = json.loads(data)
if not answer.get("ok"):
    sys.exit(f"error: {answer.get('error')}")
print(json.dumps(answer["status"]))
"""
FAST_STATUS_PATH = "/run/tbq-status.py"


class ShellError(VMError):
    pass


class Shell:
    def __init__(self, vm: VM, password: str) -> None:
        self.vm = vm
        self.password = password
        self.logged_in = False
        self._n = 0

    @property
    def name(self) -> str:
        return self.vm.config.name

    def drain(self, quiet: float = 0.05, limit: float = 1.0) -> None:
        """Throw away console output nobody waited for (so it cannot match later)."""
        con = self.vm.console
        if con is None:
            raise ShellError(f"{self.name}: VM not started")
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                con.read_nonblocking(65536, timeout=quiet)
            except pexpect.TIMEOUT:
                break
            except pexpect.EOF:
                break
        con.buffer = ""

    def login(self, timeout: float = 600.0) -> float:
        """Wait for the login prompt (boot included), log in, set the shell up.

        Returns the seconds spent waiting. Also works when a shell is already open (it is
        left with exit and logged in again) or when the login prompt was already printed.
        """
        start = time.monotonic()
        self.logged_in = False
        self.drain()
        self.vm.sendline("")
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ShellError(f"{self.name}: no login prompt on the console within "
                                 f"{timeout:.0f} s")
            try:
                matched = self.vm.expect([LOGIN_RE, PROMPT_RE, ROOT_PROMPT_RE, PASSWORD_RE],
                                         timeout=min(left, 30.0))
            except VMError:
                if not self.vm.running:
                    raise
                self.vm.sendline("")  # the prompt may have been printed before we looked
                continue
            if matched.startswith("@@PROMPT") or re.fullmatch(ROOT_PROMPT_RE, matched):
                self.vm.sendline("exit")  # a shell from before: start from a clean login
                continue
            if matched == "Password: ":
                self.vm.sendline("")  # a login half typed: fail it, get a new prompt
                continue
            break
        self.vm.sendline("root")
        self.vm.expect(PASSWORD_RE, timeout=60)
        self.vm.sendline(self.password)
        got = self.vm.expect([ROOT_PROMPT_RE, r"Login incorrect"], timeout=120)
        if got.startswith("Login incorrect"):
            raise ShellError(f"{self.name}: root login refused (wrong password?)")
        self.vm.sendline("stty -echo; set +o emacs; set +o vi; export TERM=dumb; "
                         "dmesg -n 1; unset PROMPT_COMMAND; PS1='@@''PROMPT@@ '")
        self.vm.expect(PROMPT_RE, timeout=60)
        self.logged_in = True
        b64 = base64.b64encode(FAST_STATUS.encode()).decode()
        self.run(f"echo {b64} | base64 -d > {FAST_STATUS_PATH}")
        return time.monotonic() - start

    def run(self, command: str, timeout: float = 120.0, check: bool = True) -> tuple[int, str]:
        """Run one shell command line; return (exit status, output with \\n line ends)."""
        if not self.logged_in:
            raise ShellError(f"{self.name}: not logged in (to run {command!r})")
        self._n += 1
        n = self._n
        self.drain()
        self.vm.sendline(f"echo @@B''EG{n}@@; {command}; echo @@E''ND{n} $?@@")
        try:
            self.vm.expect(rf"@@BEG{n}@@\r?\n", timeout=timeout)
            self.vm.expect(rf"@@END{n} (\d+)@@", timeout=timeout)
        except VMError as e:
            self.logged_in = False  # the shell's state is unknown now
            raise ShellError(f"{self.name}: command {command!r} did not finish: {e}") from None
        con = self.vm.console
        assert con is not None
        output = str(con.before).replace("\r\n", "\n").replace("\r", "")
        match = con.match
        rc = int(match.group(1)) if isinstance(match, re.Match) else -1
        if check and rc != 0:
            raise ShellError(f"{self.name}: `{command}` exited with {rc}: {output[-1500:]}")
        return rc, output

    def write_file(self, path: str, data: bytes, timeout: float = 120.0) -> None:
        """Write `data` to `path` on the guest, in base64 lines of LINE_MAX characters: the
        console's line discipline takes at most 4095 characters per line, and a longer
        command line never completes (a cluster.toml of 3.4 KB did not)."""
        b64 = base64.b64encode(data).decode()
        part = f"{path}.b64"
        self.run(f": > {part}", timeout=timeout)
        for i in range(0, len(b64), LINE_MAX):
            self.run(f"echo {b64[i:i + LINE_MAX]} >> {part}", timeout=timeout)
        self.run(f"base64 -d {part} > {path} && rm -f {part}", timeout=timeout)

    def out(self, command: str, timeout: float = 120.0) -> str:
        return self.run(command, timeout=timeout)[1]

    def status(self, timeout: float = 60.0, cli: bool = False) -> dict[str, Any]:
        """This node's status: `twinbeat status --json` (cli=True) or the same answer read
        from the control socket by a small client (fast)."""
        command = "twinbeat status --json" if cli else f"python3 -I -S {FAST_STATUS_PATH}"
        text = self.out(command, timeout=timeout)
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end < 0:
            raise ShellError(f"{self.name}: no JSON from `{command}`: {text[-800:]}")
        try:
            data: dict[str, Any] = json.loads(text[start:end + 1])
        except json.JSONDecodeError as e:
            raise ShellError(f"{self.name}: bad JSON from twinbeat status ({e}): "
                             f"{text[-800:]}") from None
        return data
