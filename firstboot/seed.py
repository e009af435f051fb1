"""Preseeding: the wizard's answers as a TOML file, validated exactly like typed answers.

Where the wizard looks, first found wins:

1. ``twinbeat-firstboot --seed FILE``;
2. the systemd credential ``twinbeat.seed`` (``$CREDENTIALS_DIRECTORY/twinbeat.seed``; QEMU
   passes one with ``-smbios type=11,value=io.systemd.credential:twinbeat.seed=...`` or,
   for a multi-line file, ``io.systemd.credential.binary:twinbeat.seed=BASE64``);
3. a file named ``twinbeat-seed.toml`` at the top of the appliance's boot partition (the FAT
   EFI system partition, which any PC can write after flashing) or of a USB stick whose file
   system is labelled ``TWINBEAT``. Under ``--root DIR`` the wizard does not mount anything
   and looks at ``DIR/efi``, ``DIR/boot/efi`` and ``DIR/boot`` instead.

With ``--reconfigure`` only ``--seed`` is used.

A seed holds the root password and the cluster secret in plain text. Once it has been applied
(the node is configured), ``remove_applied`` takes it away where the appliance can: a seed on
the boot partition (or, under ``--root``, in ``DIR/efi``...) is overwritten with zeros and
deleted; for a USB stick the console tells the user to remove it; a credential lives only in
the running system's memory and needs nothing; a ``--seed FILE`` is the user's own file and is
only pointed at.

A seed holds one key per question (see questions.py and ``--example-seed``); strings,
lists (joined with spaces), booleans and numbers are turned into the text one would type.
Every key is optional except ``role`` and, on node2, ``secret``; a missing key takes the
wizard's default, as pressing Enter would. Root access needs ``root_password``,
``root_password_hash`` or ``ssh_key``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firstboot import questions as qs
from firstboot.questions import QUESTIONS, default_for, should_ask
from firstboot.secret import Rng, generate_code, random_text
from firstboot.validate import Context, Invalid, NeedsEarlier
from supervisor.atomicfile import overwrite_and_delete

CREDENTIAL = "twinbeat.seed"
SEED_FILE = "twinbeat-seed.toml"
USB_LABEL = "TWINBEAT"
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
ROOT_SEED_DIRS = ("efi", "boot/efi", "boot")
REQUIRED = ("role",)
MAX_SEED_BYTES = 64 * 1024
_MOUNT_BASE = "/run"
_PLAIN = "it holds the root password and the cluster secret in plain text"


@dataclass(frozen=True)
class SeedSource:
    where: str  # shown to the user: a path, "credential twinbeat.seed", ...
    text: str | None  # None: could not be read
    error: str = ""
    # where it lives: "file" (--seed), "credential", "root" (under --root), "esp", "usb"
    kind: str = "file"
    path: Path | None = None  # the file ("file", "root")
    device: str = ""  # the partition ("esp", "usb")


@dataclass
class SeedResult:
    answers: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _to_text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value) if value else "none"
    raise ValueError(f"expected a string, a list of strings, a number or true/false, "
                     f"not {json.dumps(value, default=str)[:40]}")


def parse_seed_text(text: str) -> tuple[dict[str, object] | None, list[str]]:
    """The seed's keys (None when it is not TOML) and the unknown keys."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [f"not valid TOML: {exc}"]
    problems = []
    known = [q.key for q in QUESTIONS]
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{key}: unknown key{hint}")
    return data, problems


def apply_seed(data: dict[str, object], ctx: Context) -> SeedResult:
    """Validate a seed question by question, with the wizard's own validators."""
    result = SeedResult()
    for key in REQUIRED:
        if key not in data:
            result.problems.append(f"{key}: missing (this key is required)")
    for q in QUESTIONS:
        if not should_ask(q, ctx):
            continue
        if q.key in data:
            try:
                text = _to_text(data[q.key])
            except ValueError as exc:
                result.problems.append(f"{q.key}: {exc}")
                continue
        else:
            if q.key in REQUIRED:
                continue
            try:
                default = default_for(q, ctx)
            except NeedsEarlier:
                continue
            if default is None:
                result.problems.append(f"{q.key}: missing, and it has no default")
                continue
            text = default
        try:
            value = q.validate(text, ctx)
        except Invalid as exc:
            result.problems.append(f"{q.key}: {exc}")
            continue
        except NeedsEarlier:
            continue
        ctx.answers[q.key] = value
        result.answers[q.key] = value
        result.raw[q.key] = text
        result.warnings.extend(f"{q.key}: {w}" for w in q.warnings(value, ctx))
    return result


# --------------------------------------------------------------------------------------------
# Where seeds come from


def _read_limited(path: Path) -> str:
    with open(path, "rb") as f:
        data = f.read(MAX_SEED_BYTES + 1)
    if len(data) > MAX_SEED_BYTES:
        raise ValueError(f"larger than {MAX_SEED_BYTES // 1024} KiB")
    return data.decode("utf-8")


def read_source(path: Path, where: str, *, kind: str = "file", device: str = "") -> SeedSource:
    keep = path if kind in ("file", "root") else None
    try:
        return SeedSource(where, _read_limited(path), kind=kind, path=keep, device=device)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return SeedSource(where, None, f"cannot read {where}: {reason}", kind=kind, path=keep,
                          device=device)


def from_credentials(environ: dict[str, str] | os._Environ[str]) -> SeedSource | None:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / CREDENTIAL
    if not path.exists():
        return None
    return read_source(path, f"credential {CREDENTIAL}", kind="credential")


def from_root_dirs(root: Path) -> SeedSource | None:
    for d in ROOT_SEED_DIRS:
        path = root / d / SEED_FILE
        if path.is_file():
            return read_source(path, f"/{d}/{SEED_FILE}", kind="root")
    return None


def seed_partitions(lsblk_json: str) -> list[str]:
    """Devices to look at, from `lsblk --json -o PATH,LABEL,PARTTYPE,FSTYPE`: the EFI system
    partition(s) and file systems labelled TWINBEAT, in that order."""
    return [path for path, _ in partition_kinds(lsblk_json)]


def partition_kinds(lsblk_json: str) -> list[tuple[str, str]]:
    """``seed_partitions`` with the kind of each: "esp" or "usb" (a TWINBEAT label)."""
    try:
        devices = json.loads(lsblk_json).get("blockdevices", [])
    except (ValueError, AttributeError):
        return []
    flat: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            flat.append(item)
            walk(item.get("children") or [])

    walk(devices)
    esp = [(d["path"], "esp") for d in flat
           if str(d.get("parttype") or "").lower() == ESP_TYPE]
    usb = [(d["path"], "usb") for d in flat if str(d.get("label") or "").upper() == USB_LABEL]
    found: dict[str, str] = {}
    for path, kind in esp + usb:
        if path and path not in found and _has_fs(flat, path):
            found[path] = kind
    return list(found.items())


def _has_fs(flat: list[dict[str, Any]], path: str) -> bool:
    return any(d.get("path") == path and d.get("fstype") for d in flat)


Runner = Callable[[Sequence[str], str | None], str]


@contextlib.contextmanager
def _mounted(device: str, runner: Runner, *, writable: bool = False,
             errors: list[str] | None = None) -> Iterator[Path | None]:
    """Mount device (read-only unless ``writable``) on a fresh directory in /run; never
    delete below it (rmdir only, so a mount that refuses to go away loses nothing). Yields
    None when the mount fails (its error appended to ``errors``)."""
    mnt = tempfile.mkdtemp(prefix="twinbeat-seed.", dir=_MOUNT_BASE)
    try:
        try:
            runner(["mount", "-o", ("rw" if writable else "ro") + ",nosuid,nodev,noexec",
                    device, mnt], None)
        except Exception as exc:
            if errors is not None:
                errors.append(str(exc))
            yield None
            return
        try:
            yield Path(mnt)
        finally:
            with contextlib.suppress(Exception):
                runner(["umount", mnt], None)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(mnt)


def from_partitions(runner: Runner) -> SeedSource | None:
    """Mount (read-only) the boot partition and TWINBEAT sticks in turn; look for the file."""
    try:
        listing = runner(["lsblk", "--json", "-o", "PATH,LABEL,PARTTYPE,FSTYPE"], None)
    except Exception:
        return None
    for device, kind in partition_kinds(listing):
        with _mounted(device, runner) as mnt:
            if mnt is not None and (mnt / SEED_FILE).is_file():
                return read_source(mnt / SEED_FILE, f"{SEED_FILE} on {device}", kind=kind,
                                   device=device)
    return None


def remove_applied(source: SeedSource, runner: Runner) -> list[str]:
    """Take an applied seed away (see the module docstring); the lines to show."""
    if source.kind == "credential":
        return []
    if source.kind == "file":
        return [f"Delete {source.where} when you no longer need it: {_PLAIN}."]
    if source.kind == "usb":
        return [f"REMOVE THE USB STICK NOW ({source.device}, labelled {USB_LABEL}): its "
                f"{SEED_FILE} was applied and {_PLAIN}."]
    errors: list[str] = []
    try:
        if source.kind == "root":
            if source.path is None:
                raise OSError(f"{source.where}: no path")
            overwrite_and_delete(source.path)
        else:
            with _mounted(source.device, runner, writable=True, errors=errors) as mnt:
                if mnt is None:
                    raise OSError(f"cannot mount {source.device} to write: "
                                  + "; ".join(errors))
                overwrite_and_delete(mnt / SEED_FILE)
    except OSError as exc:
        reason = exc.strerror if exc.strerror else str(exc)
        return [f"warning: the seed could not be removed ({reason}): delete {source.where} "
                f"by hand; {_PLAIN}."]
    return [f"The seed was overwritten and deleted from {source.where} ({_PLAIN})."]


def find_seed(
    root: Path,
    *,
    explicit: str | None,
    reconfigure: bool,
    live: bool,
    environ: dict[str, str] | os._Environ[str],
    runner: Runner,
) -> SeedSource | None:
    if explicit:
        return read_source(Path(explicit), explicit)
    if reconfigure:
        return None
    found = from_credentials(environ)
    if found is None:
        found = from_partitions(runner) if live else from_root_dirs(root)
    return found


# --------------------------------------------------------------------------------------------
# The example


SEED_DOC = {
    "role": "node1 (the preferred owner of the service) or node2",
    "hostname": "this node's name (letters, digits, '-'); also its [[node]] name",
    "peer_hostname": "the other node's name; the same two names on both nodes",
    "cluster_name": "the same on both nodes",
    "public_interface": "the card on the LAN the clients use",
    "public_address": "this node's address on it, ADDRESS/PREFIX (prefix 8-29)",
    "gateway": 'the LAN\'s router, also pinged to know the node sees the world; or "none"',
    "dns": "name servers (a list; [] for none)",
    "crossover_interface": "the card with the crossover cable to the peer",
    "crossover_address": "this node's address on it, in a private subnet of its own",
    "peer_public_address": "the peer's public address",
    "peer_crossover_address": "the peer's crossover address",
    "public_heartbeat": "heartbeats over the public LAN too (serial and crossover always)",
    "floating_addresses": "service addresses in the public subnet, not a node's own",
    "serial_port": 'the null-modem port (ttyS1, ttyUSB0, ...), or "none"',
    "baud": "the serial speed; the same on both nodes",
    "disk": 'a disk not holding the system, mirrored with DRBD onto /srv; or "none"',
    "secret": "the shared code; node1 makes one when it is missing, node2 must have it",
    "file_share": 'a share on the replicated disk: ["smb"], ["nfs"], ["smb", "nfs"] or "none"',
    "share_name": "the share's name (letters, digits, '-', '_', '.')",
    "share_user": "the user owning the files; SMB clients log in as it (same uid on both)",
    "share_password": "the share user's SMB password (hashed at setup; 8+ characters)",
    "nfs_clients": "the network whose machines may mount the share over NFS",
    "database": 'a PostgreSQL database on the replicated disk, or "none"',
    "database_owner": "the role owning it; clients log in as it",
    "database_password": "the owner's password (hashed at setup; 8+ characters)",
    "services": "installed .service units the cluster starts, in order ([] for none)",
    "root_password": "root's console password, hashed at setup (or root_password_hash)",
    "ssh_key": 'one line of an id_*.pub file for root\'s SSH logins, or "none"',
    "ntp_server": 'the NTP server both nodes set their clocks from (default the gateway), '
                  'or "none"',
    "mail_to": 'an address mailed when the pair fails over or degrades, or "none"',
    "smarthost": "the SMTP relay for that mail (STARTTLS on port 587)",
}


def _toml(value: str) -> str:
    return json.dumps(value)


def example_seed(rng: Rng) -> str:
    """A complete, commented seed for node1 of a machine with eth0, eth1, ttyS1 and vdb."""
    code = generate_code(rng)
    password = random_text(rng, 16, "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY3479")
    values: dict[str, str] = {
        "role": _toml("node1"),
        "hostname": _toml("node1"),
        "peer_hostname": _toml("node2"),
        "cluster_name": _toml(qs.DEFAULT_CLUSTER),
        "public_interface": _toml("eth0"),
        "public_address": _toml("192.168.85.1/24"),
        "gateway": _toml("192.168.85.254"),
        "dns": '["192.168.85.254"]',
        "crossover_interface": _toml("eth1"),
        "crossover_address": _toml("10.0.0.1/24"),
        "peer_public_address": _toml("192.168.85.2"),
        "peer_crossover_address": _toml("10.0.0.2"),
        "public_heartbeat": "true",
        "floating_addresses": '["192.168.85.3"]',
        "serial_port": _toml("ttyS1"),
        "baud": str(qs.DEFAULT_BAUD),
        "disk": _toml("vdb"),
        "secret": _toml(code),
        "file_share": _toml("none"),
        "database": _toml("none"),
        "services": "[]",
        "root_password": _toml(password),
        "ssh_key": _toml("none"),
        "ntp_server": _toml("192.168.85.254"),
        "mail_to": _toml("none"),
    }
    lines = [
        "# twinbeat first-boot seed: the wizard's answers, so a node configures itself at",
        "# first boot without a question. Checked exactly like typed answers; when anything",
        "# is wrong the console lists the problems and the wizard asks instead.",
        "#",
        "# Where the wizard looks (first found wins): `twinbeat-firstboot --seed FILE`; the",
        f"# systemd credential {CREDENTIAL} (QEMU: -smbios type=11,value=io.systemd.credential.",
        f"# binary:{CREDENTIAL}=BASE64); a file {SEED_FILE} at the top of the boot partition",
        f"# (FAT) or of a USB stick labelled {USB_LABEL}.",
        "#",
        "# Every key is optional except role (and secret on node2): a missing key takes the",
        "# wizard's default, as Enter would. Root access needs root_password,",
        "# root_password_hash or ssh_key. This example suits a machine with network cards",
        "# eth0 and eth1, a serial port ttyS1 and a second disk vdb. For node2: role,",
        "# hostname and peer_hostname swapped, .1 and .2 swapped in the four addresses,",
        "# and the SAME secret.",
        "",
    ]
    share_password = random_text(rng, 16, "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY3479")
    db_password = random_text(rng, 16, "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY3479")
    data_example = {
        "file_share": '["smb", "nfs"]',
        "share_name": _toml("data"),
        "share_user": _toml("share"),
        "share_password": _toml(share_password),
        "nfs_clients": _toml("192.168.85.0/24"),
        "database": _toml("app"),
        "database_owner": _toml("app"),
        "database_password": _toml(db_password),
    }
    for q in QUESTIONS:
        if q.key in values:
            lines.append(f"# {SEED_DOC[q.key]}")
            lines.append(f"{q.key} = {values[q.key]}")
        if q.key == "database":
            lines += [
                "# The data services need the replicated disk (disk above). To serve a file",
                "# share over SMB and NFS and a PostgreSQL database, put these instead of the",
                '# two "none" lines (the same on both nodes, passwords included):',
            ]
            lines += [f"#   {key} = {value}" for key, value in data_example.items()]
            lines += [
                "# share_user owns the share's files (the same uid on both nodes) and SMB",
                "# clients log in as it; nfs_clients may mount it over NFS; database_owner",
                "# owns the database. Passwords: 8 characters or more, hashed at setup.",
            ]
    lines += [
        "",
        "# Instead of root_password, a crypt(3) hash (openssl passwd -6):",
        '# root_password_hash = "$6$..."',
        "",
        "# Heartbeat timing is not asked: a beat every 200ms on each link, late after 600ms,",
        "# the peer dead after 2s of silence on every link (ten missed beats, room for a busy",
        "# node's hiccups), 20s right after start while the other node boots. Change it in",
        "# /etc/twinbeat/cluster.toml ([timing]) on both nodes.",
    ]
    return "\n".join(lines) + "\n"
