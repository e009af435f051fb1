"""Write the configuration under a root directory, atomically, cluster.toml last.

Every file is written to a temporary file in its own directory, flushed, then renamed over
the old one, so a power cut leaves the old file or the new one, never half of one. The files
go in the order ``render`` gave (cluster.toml last), then the edits (root's password in
/etc/shadow, root's SSH key, the services the cluster owns taken out of the boot, twinbeat
enabled), and cluster.toml only at the very end: until it exists the node is unconfigured
and the wizard runs again at the next boot.

``apply`` ignores SIGINT, SIGTERM and SIGHUP while it writes: the few milliseconds of writing
are never cut in the middle.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from firstboot.accounts import Account, add_share_user
from firstboot.hardware import UNIT_DIRS
from firstboot.render import CLUSTER_TOML, DRBD_RES, MARKER, FileOut
from firstboot.secret import Rng, random_text
from supervisor import names
from supervisor.atomicfile import atomic_write
from supervisor.drbdconf import MARKER as GENERATED_MARKER
from supervisor.drivers.runner import run_sync

SAFE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SUPERVISOR_UNIT = "twinbeat.service"
_SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

Runner = Callable[[Sequence[str], str | None], str]


class WriteError(Exception):
    """Something could not be prepared or written; the message says what."""


def run(cmd: Sequence[str], input_text: str | None = None, timeout: float = 30.0) -> str:
    """Run a command through supervisor.drivers.runner (clean environment, own process group,
    killed and reaped on timeout); WriteError with the command and its stderr on failure
    (the caller shows it: the runner's own log line would land on the wizard's screen)."""
    r = run_sync(cmd, timeout=timeout, env={"PATH": SAFE_PATH, "LC_ALL": "C"},
                 input=input_text.encode() if input_text is not None else None,
                 log_failure=False)
    if not r.ok:
        raise WriteError(r.describe())
    return r.stdout


def can_hash_passwords() -> bool:
    return shutil.which("openssl", path=SAFE_PATH) is not None


def hash_password(password: str, rng: Rng, runner: Runner = run) -> str:
    """SHA-512 crypt hash (``$6$``) made by ``openssl passwd -6``; the password goes on stdin."""
    salt = random_text(rng, 16, _SALT_CHARS)
    out = runner(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], password + "\n").strip()
    if not out.startswith(f"$6${salt}$"):
        raise WriteError("openssl passwd -6 gave no SHA-512 hash")
    return out


@dataclass(frozen=True)
class Plan:
    files: list[FileOut]
    password_hash: str | None = None
    ssh_key: str | None = None
    disable_units: tuple[str, ...] = ()
    remove_if_ours: tuple[str, ...] = ()
    hostname: str = ""
    notes: list[str] = field(default_factory=list)
    #: the file share's Unix account (firstboot.accounts), created before cluster.toml
    share_account: Account | None = None


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def shadow_with_root_hash(text: str | None, password_hash: str, today: int) -> str:
    """/etc/shadow with root's password hash replaced (or a root line added)."""
    lines = text.splitlines() if text else []
    new_root = None
    for i, line in enumerate(lines):
        if line.startswith("root:"):
            fields = line.split(":")
            fields += [""] * (9 - len(fields))
            fields[1] = password_hash
            fields[2] = str(today)
            new_root = lines[i] = ":".join(fields)
    if new_root is None:
        lines.insert(0, f"root:{password_hash}:{today}:0:99999:7:::")
    return "\n".join(lines) + "\n"


def _write_shadow(root: Path, password_hash: str, today: int) -> None:
    path = root / "etc/shadow"
    try:
        st = path.stat()
        text: str | None = path.read_text(encoding="utf-8")
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    except FileNotFoundError:
        text, mode, uid, gid = None, 0o640, 0, 0
    content = shadow_with_root_hash(text, password_hash, today)
    atomic_write(path, content, mode=mode, uid=uid, gid=gid, mkdir=True)


def _write_ssh_key(root: Path, key: str) -> None:
    ssh = root / "root/.ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh, 0o700)
    path = ssh / "authorized_keys"
    try:
        existing = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        existing = []
    if key in (" ".join(line.split()) for line in existing):
        return
    atomic_write(path, "\n".join([*existing, key]) + "\n", mode=0o600, mkdir=True)


def _disable_units(root: Path, units: tuple[str, ...]) -> list[str]:
    """Take owned services out of the boot (what `systemctl disable` removes)."""
    removed: list[str] = []
    etc = root / "etc/systemd/system"
    if not etc.is_dir():
        return removed
    for d in sorted(etc.iterdir()):
        if not d.name.endswith((".wants", ".requires")):
            continue
        for unit in units:
            link = d / unit
            if link.is_symlink():
                link.unlink()
                removed.append(f"/etc/systemd/system/{d.name}/{unit}")
    return removed


def _wanted_by(unit_file: Path) -> list[str]:
    text = unit_file.read_text(encoding="utf-8", errors="replace")
    targets: list[str] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == "[Install]" and line.startswith("WantedBy="):
            targets += line.split("=", 1)[1].split()
    return targets


def _enable_unit(root: Path, unit: str) -> str:
    """Enable a unit the way `systemctl enable` does: a link in each WantedBy= target."""
    for d in UNIT_DIRS:
        unit_file = root / d / unit
        if unit_file.is_file():
            break
    else:
        return f"{unit} is not installed: not enabled"
    target_path = "/" + d + "/" + unit
    made = []
    for target in _wanted_by(unit_file) or ["multi-user.target"]:
        link = root / "etc/systemd/system" / f"{target}.wants" / unit
        if link.is_symlink() or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target_path)
        made.append(target)
    return f"{unit} enabled" + (f" ({', '.join(made)})" if made else " (it already was)")


def _remove_if_ours(root: Path, path: str) -> bool:
    p = _under(root, path)
    try:
        head = p.read_text(encoding="utf-8", errors="replace")[:200]
    except OSError:
        return False
    if MARKER not in head and GENERATED_MARKER not in head:  # neither ours nor twinbeat's
        return False
    p.unlink()
    return True


def apply(plan: Plan, root: Path, today: int) -> list[str]:
    """Write the plan under root; returns what was done, one line each."""
    if not plan.files or plan.files[-1].path != CLUSTER_TOML:
        raise WriteError("internal: cluster.toml must come last")
    handlers = {s: signal.signal(s, signal.SIG_IGN) for s in _SIGNALS}
    try:
        done: list[str] = []
        for f in plan.files[:-1]:
            atomic_write(_under(root, f.path), f.content, mode=f.mode, mkdir=True)
            done.append(f"wrote {f.path}")
        for path in plan.remove_if_ours:
            if _remove_if_ours(root, path):
                done.append(f"removed {path}")
        if plan.password_hash:
            _write_shadow(root, plan.password_hash, today)
            done.append("set root's password in /etc/shadow")
        if plan.ssh_key:
            _write_ssh_key(root, plan.ssh_key)
            done.append("added the SSH key to /root/.ssh/authorized_keys")
        if plan.share_account is not None:
            done.extend(add_share_user(root, plan.share_account, today))
        for link in _disable_units(root, plan.disable_units):
            done.append(f"removed {link} (twinbeat starts it)")
        done.append(_enable_unit(root, SUPERVISOR_UNIT))
        last = plan.files[-1]
        atomic_write(_under(root, last.path), last.content, mode=last.mode, mkdir=True)
        done.append(f"wrote {last.path}")
        return done
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def make_plan(
    files: list[FileOut],
    *,
    password_hash: str | None,
    ssh_key: str | None,
    services: tuple[str, ...],
    hostname: str,
    replicated: bool,
    share_account: Account | None = None,
) -> Plan:
    return Plan(
        share_account=share_account,
        files=files,
        password_hash=password_hash,
        ssh_key=ssh_key,
        disable_units=services,
        remove_if_ours=() if replicated else (DRBD_RES,),
        hostname=hostname,
    )


def apply_live(plan: Plan, *, first_boot: bool, runner: Runner = run) -> list[str]:
    """On the running appliance: set the hostname; at first boot also cancel the owned
    services' start (twinbeat starts them where it owns the group) and queue twinbeat.
    (On --reconfigure nothing is stopped: the node may be serving; a reboot applies it.)"""
    done: list[str] = []
    if plan.hostname and names.is_hostname(plan.hostname):
        try:
            socket.sethostname(plan.hostname)
            done.append(f"hostname set to {plan.hostname}")
        except OSError as exc:
            done.append(f"could not set the hostname now: {exc.strerror}")
    if first_boot and plan.disable_units:
        try:
            runner(["systemctl", "--no-block", "stop", *plan.disable_units], None)
        except WriteError as exc:
            done.append(f"could not stop {' '.join(plan.disable_units)}: {exc}")
    if first_boot:
        try:
            runner(["systemctl", "--no-block", "start", SUPERVISOR_UNIT], None)
            done.append(f"{SUPERVISOR_UNIT} starts when the boot continues")
        except WriteError as exc:
            done.append(f"could not queue {SUPERVISOR_UNIT}: {exc}")
    return done
