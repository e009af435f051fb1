"""Start and drive one QEMU virtual machine running the twinbeat image.

Building block for the QEMU scenarios (qemu-tests/run.py): software emulation (TCG, q35),
a copy-on-write qcow2 overlay over the read-only image, boot by UEFI (OVMF), legacy BIOS
(SeaBIOS) or directly from the kernel and initrd that `make image` exports, the serial
console on a unix socket driven with pexpect and logged to a file, and a QMP socket for
fault injection (set_link, chardev-change, stop/cont, system_reset, quit).

Every QEMU process is started in its own session and killed by its PID on every exit path:
VM.close() (also via `with VM(...)`), and an atexit hook for VMs still running when the
interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO

import pexpect
from pexpect import fdpexpect

Firmware = Literal["uefi", "bios", "kernel"]

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
QEMU = "qemu-system-x86_64"

_running: dict[int, subprocess.Popen[bytes]] = {}


def _kill_all() -> None:
    for proc in list(_running.values()):
        _kill(proc)


atexit.register(_kill_all)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill one QEMU we started (by its PID; it leads its own process group)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    _running.pop(proc.pid, None)


class VMError(RuntimeError):
    pass


class QMPError(VMError):
    pass


def root_partuuid(image: Path) -> str:
    """PARTUUID of the image's root partition (for direct kernel boot with root=PARTUUID=)."""
    out = subprocess.run(["sfdisk", "--json", str(image)], check=True, capture_output=True,
                         text=True).stdout
    for part in json.loads(out)["partitiontable"]["partitions"]:
        if part.get("name", "").startswith("root"):
            return str(part["uuid"]).lower()
    raise VMError(f"{image}: no root partition in its partition table")


class QMP:
    """A minimal QMP client: JSON lines over a unix socket (QEMU's machine protocol)."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._file = self.sock.makefile("rb")
        self.events: list[dict[str, Any]] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise QMPError("QMP connection closed")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run one command and return its "return" value; raise QMPError on "error"."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
                continue
            if "error" in msg:
                raise QMPError(f"{command}: {msg['error'].get('desc', msg['error'])}")
            return msg.get("return")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self.sock.close()


class ConsolePump:
    """Read a VM's serial console socket all the time, on a thread.

    QEMU's emulated UART stalls the guest when nobody reads the console socket (the guest
    waits for its transmit buffer to drain), so a VM whose console a scenario is not
    watching at the moment, e.g. the peer during a failover, would hang. The pump copies
    every byte to the console log and to a pipe that pexpect reads, buffering in memory
    when pexpect is not reading; it never blocks on the socket's behalf.
    """

    def __init__(self, sock: socket.socket, log: BinaryIO) -> None:
        self.sock = sock
        self.log = log
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self._pending = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-pump", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        open_ = True
        while not self._stop.is_set() and (open_ or self._pending):
            wants_write = [self.write_fd] if self._pending else []
            readable, writable, _ = select.select([self.sock] if open_ else [], wants_write,
                                                  [], 0.2)
            if readable:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    open_ = False  # QEMU closed the console: pass on what is left, then EOF
                else:
                    self.log.write(data)
                    self.log.flush()
                    self._pending += data
            if writable or (self._pending and not wants_write):
                try:
                    n = os.write(self.write_fd, self._pending)
                    del self._pending[:n]
                except BlockingIOError:
                    pass
                except OSError:
                    break
        with contextlib.suppress(OSError):
            os.close(self.write_fd)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self.read_fd)


PANIC_RE = re.compile(r"Kernel panic - not syncing: [^\r\n]*")
OOPS_RE = re.compile(r"(?:Oops|BUG|general protection fault)[: ][^\r\n]*")
COMM_RE = re.compile(r"CPU: \d+ UID: \d+ PID: \d+ Comm: (\S+)")


def kernel_panic(console: str) -> str:
    """What a guest kernel panic printed on this console output, in one line, or "" when it
    did not panic (a scenario that waits on a dead console then says why it is dead)."""
    panic = PANIC_RE.search(console)
    if panic is None:
        return ""
    before = console[:panic.start()]
    oops = OOPS_RE.search(before)
    comm = COMM_RE.search(before)
    parts = [oops.group(0).strip()] if oops else []
    if comm:
        parts.append(f"in {comm.group(1)}")
    parts.append(panic.group(0).strip())
    return "guest kernel panic: " + ", ".join(parts)


@dataclass
class VMConfig:
    """What to start. `extra_args` are appended verbatim (devices, netdevs, chardevs...)."""

    image: Path
    name: str = "vm"
    firmware: Firmware = "uefi"
    memory_mib: int = 1024
    cpus: int = 1
    # Overlay size (e.g. "4G"); None keeps the image's size.
    disk_size: str | None = None
    # For firmware="kernel": defaults are the image's exported .vmlinuz/.initrd.
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    extra_args: Sequence[str] = field(default_factory=list)
    # Run QEMU through this command prefix (e.g. ["ip", "netns", "exec", NAME] so that tap
    # devices of a test's network namespace can be used); it must exec QEMU in place.
    wrapper: Sequence[str] = field(default_factory=list)
    # Keep the overlay across start/close: a VM started again (after a power-off) boots the
    # same disk, with what the guest wrote to it (e.g. its configuration). Default: a fresh
    # overlay on every start, deleted on close.
    reuse_overlay: bool = False
    # Append to the console and QEMU logs instead of starting them anew (restarts of a VM).
    append_logs: bool = False


class VM:
    """One running QEMU. Use as a context manager, or call close() yourself."""

    def __init__(self, config: VMConfig, workdir: Path | None = None) -> None:
        self.config = config
        self._own_workdir = workdir is None
        # Short paths: unix socket names are limited to 107 bytes.
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tb-{config.name}-")) if workdir is None \
            else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_socket = self.workdir / f"{config.name}.console"
        self.qmp_socket = self.workdir / f"{config.name}.qmp"
        self.console_log_path = self.workdir / f"{config.name}-console.log"
        self.qemu_log_path = self.workdir / f"{config.name}-qemu.log"
        self.overlay = self.workdir / f"{config.name}.qcow2"
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp: QMP | None = None
        self.console: fdpexpect.fdspawn[str] | None = None
        self._console_sock: socket.socket | None = None
        self._console_log: BinaryIO | None = None
        self._pump: ConsolePump | None = None
        self._qemu_log: TextIO | None = None
        self.started_at = 0.0
        self._log_offset = 0

    # -- life cycle -------------------------------------------------------------------

    def __enter__(self) -> VM:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self) -> list[str]:
        c = self.config
        image = c.image.resolve()
        cmd = [
            *c.wrapper,
            QEMU,
            "-name", c.name,
            "-machine", "q35", "-accel", "tcg",
            "-m", str(c.memory_mib), "-smp", str(c.cpus),
            "-nodefaults", "-display", "none", "-no-user-config",
            "-drive", f"file={self.overlay},format=qcow2,if=none,id=disk0,cache=unsafe",
            # (-kernel takes boot index 0 for itself)
            "-device", "virtio-blk-pci,drive=disk0"
            + (",bootindex=0" if c.firmware != "kernel" else ""),
            # Entropy from the host: without it the kernel's random pool takes a minute to
            # initialise under TCG and everything that needs random numbers waits.
            "-device", "virtio-rng-pci",
            # Console first, waiting for our client: no boot output is lost.
            "-chardev", f"socket,id=console,path={self.console_socket},server=on,wait=on",
            "-serial", "chardev:console",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
        ]
        if c.firmware == "uefi":
            vars_copy = self.workdir / f"{c.name}-OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, vars_copy)
            cmd += [
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            ]
        elif c.firmware == "kernel":
            kernel = c.kernel or image.with_suffix(".vmlinuz")
            initrd = c.initrd or image.with_suffix(".initrd")
            append = f"root=PARTUUID={root_partuuid(image)} rw console=ttyS0,115200n8"
            cmd += ["-kernel", str(kernel), "-initrd", str(initrd),
                    "-append", f"{append} {c.append}".strip()]
        cmd += list(c.extra_args)
        return cmd

    def start(self) -> None:
        c = self.config
        if not c.image.is_file():
            raise VMError(f"{c.image}: no such image (run `make image`)")
        for p in (self.console_socket, self.qmp_socket):
            p.unlink(missing_ok=True)
        if not (c.reuse_overlay and self.overlay.exists()):
            self.overlay.unlink(missing_ok=True)
            create = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                      "-b", str(c.image.resolve()), str(self.overlay)]
            if c.disk_size:
                create.append(c.disk_size)
            subprocess.run(create, check=True, capture_output=True)

        cmd = self.command()
        if c.append_logs:
            self._qemu_log = open(self.qemu_log_path, "a", encoding="utf-8")  # noqa: SIM115
        else:
            self._qemu_log = open(self.qemu_log_path, "w", encoding="utf-8")  # noqa: SIM115
        self._qemu_log.write(" ".join(cmd) + "\n")
        self._qemu_log.flush()
        self.started_at = time.monotonic()
        #: where this start's console output begins in the (appended) console log
        self._log_offset = self.console_log_path.stat().st_size \
            if c.append_logs and self.console_log_path.exists() else 0
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._qemu_log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _running[self.proc.pid] = self.proc
        try:
            self._console_sock = self._connect(self.console_socket)
            self._console_log = open(self.console_log_path,  # noqa: SIM115
                                     "ab" if c.append_logs else "wb")
            self._pump = ConsolePump(self._console_sock, self._console_log)
            # pexpect reads what the pump passes on; writes go to the socket (send()).
            self.console = fdpexpect.fdspawn(self._pump.read_fd, encoding="utf-8",
                                             codec_errors="replace", timeout=60)
            self.qmp = self._connect_qmp()
        except BaseException:
            self.close()
            raise

    def _connect(self, path: Path, timeout: float = 30.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise VMError(f"QEMU exited with {self.proc.returncode}: "
                              f"{self.qemu_log_path.read_text(errors='replace')[-2000:]}")
            if path.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(path))
                    return s
                except OSError:
                    s.close()
            if time.monotonic() > deadline:
                raise VMError(f"QEMU did not open {path} within {timeout:.0f} s")
            time.sleep(0.05)

    def _connect_qmp(self, timeout: float = 30.0) -> QMP:
        # QMP serves one client at a time, so connect for real (no probing connection).
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise VMError(f"QEMU exited with {self.proc.returncode}")
            if self.qmp_socket.exists():
                try:
                    return QMP(self.qmp_socket)
                except (OSError, QMPError):
                    pass
            if time.monotonic() > deadline:
                raise VMError(f"no QMP connection on {self.qmp_socket} within {timeout:.0f} s")
            time.sleep(0.1)

    def close(self, graceful_timeout: float = 5.0) -> None:
        """Stop QEMU (QMP quit, then SIGKILL by PID) and release everything. Idempotent."""
        if self.proc is not None and self.proc.poll() is None and self.qmp is not None:
            with contextlib.suppress(Exception):
                self.qmp.sock.settimeout(graceful_timeout)
                self.qmp.execute("quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=graceful_timeout)
        if self.proc is not None:
            _kill(self.proc)
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self._pump is not None:
            self._pump.close()
            self._pump = None
        if self._console_sock is not None:
            with contextlib.suppress(OSError):
                self._console_sock.close()
            self._console_sock = None
        for f in (self._console_log, self._qemu_log):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._console_log = self._qemu_log = None
        if not self.config.reuse_overlay:
            self.overlay.unlink(missing_ok=True)

    def kill(self) -> None:
        """Power loss: SIGKILL the QEMU process (by its PID), then release everything."""
        if self.proc is not None:
            _kill(self.proc)
        self.close()

    def remove_overlay(self) -> None:
        """Delete a kept overlay (reuse_overlay=True) once the VM is closed for good."""
        if not self.running:
            self.overlay.unlink(missing_ok=True)

    def remove_workdir(self) -> None:
        """Delete the working directory (logs included) if this VM created it."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def save_logs(self, dest: Path) -> list[Path]:
        """Copy the console and QEMU logs to dest (e.g. an artifacts folder)."""
        dest.mkdir(parents=True, exist_ok=True)
        saved = []
        for p in (self.console_log_path, self.qemu_log_path):
            if p.exists():
                saved.append(Path(shutil.copy(p, dest / p.name)))
        return saved

    # -- driving it -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def expect(self, pattern: str | list[str], timeout: float = 60.0) -> str:
        """Wait for a regex (or one of several) on the console; return the matched text."""
        if self.console is None:
            raise VMError("VM not started")
        patterns: list[str] = [pattern] if isinstance(pattern, str) else pattern
        try:
            self.console.expect(list(patterns), timeout=timeout)
        except pexpect.TIMEOUT:
            panic = self.kernel_panic()
            raise VMError(f"{self.config.name}: no {pattern!r} on the console within "
                          f"{timeout:.0f} s{f' ({panic})' if panic else ''} (log: "
                          f"{self.console_log_path})") from None
        except pexpect.EOF:
            raise VMError(f"{self.config.name}: console closed while waiting for "
                          f"{pattern!r} (QEMU exit: {self.proc and self.proc.poll()})") from None
        match = self.console.match
        return match.group(0) if isinstance(match, re.Match) else ""

    def kernel_panic(self) -> str:
        """A kernel panic on this start's console (see kernel_panic()), or ""."""
        try:
            with open(self.console_log_path, "rb") as f:
                f.seek(self._log_offset)
                return kernel_panic(f.read().decode(errors="replace"))
        except OSError:
            return ""

    def send(self, text: str) -> None:
        """Type on the serial console."""
        if self._console_sock is None:
            raise VMError("VM not started")
        self._console_sock.sendall(text.encode())

    def sendline(self, line: str = "") -> None:
        self.send(line + "\r")

    def powerdown(self, timeout: float = 120.0) -> bool:
        """ACPI power button; True if the guest shut down and QEMU exited within timeout.
        The console is read meanwhile (pexpect's logfile_read sees the shutdown)."""
        if self.qmp is None or self.proc is None or self.console is None:
            return False
        self.qmp.execute("system_powerdown")
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                self.console.expect(pexpect.EOF, timeout=1)
            except pexpect.TIMEOUT:
                continue
            break
        try:
            self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            return False
        return True
