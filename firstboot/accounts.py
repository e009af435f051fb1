"""The file share's Unix account: the same name, uid and gid on both nodes.

Files on the replicated disk carry numeric ids, so the share user must have the same uid on
the two nodes (``dataservices.SHARE_UID``); both wizards create it with that uid. It cannot
log in (no password, ``nologin``): Samba keeps its own password (passdb, on the replicated
disk), and NFS clients are mapped to it (``all_squash``).

The edits are pure functions on the files' texts (``/etc/passwd``, ``/etc/group``,
``/etc/shadow``, ``/etc/gshadow``); ``add_share_user`` writes them under a root directory,
atomically, keeping each file's mode and owner.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.atomicfile import atomic_write

GECOS = "twinbeat file share"
HOME = "/nonexistent"
SHELL = "/usr/sbin/nologin"


class AccountError(ValueError):
    """The account cannot be made as both nodes need it; the message says why."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def _entries(text: str | None) -> list[list[str]]:
    return [line.split(":") for line in (text or "").splitlines() if line.strip()]


def _with_line(text: str | None, line: str) -> str:
    body = (text or "").rstrip("\n")
    return (body + "\n" if body else "") + line + "\n"


def passwd_with(text: str | None, a: Account) -> str:
    for fields in _entries(text):
        if fields[0] == a.name:
            if fields[2:4] != [str(a.uid), str(a.gid)]:
                raise AccountError(
                    f"user {a.name} exists with uid {fields[2]} and gid {fields[3]}, not "
                    f"{a.uid}:{a.gid}: the share user must have the same ids on both nodes")
            return text or ""
        if len(fields) > 2 and fields[2] == str(a.uid):
            raise AccountError(f"uid {a.uid} already belongs to {fields[0]}")
    return _with_line(text, f"{a.name}:x:{a.uid}:{a.gid}:{GECOS}:{HOME}:{SHELL}")


def group_with(text: str | None, a: Account) -> str:
    for fields in _entries(text):
        if fields[0] == a.name:
            if fields[2] != str(a.gid):
                raise AccountError(f"group {a.name} exists with gid {fields[2]}, not {a.gid}")
            return text or ""
        if len(fields) > 2 and fields[2] == str(a.gid):
            raise AccountError(f"gid {a.gid} already belongs to group {fields[0]}")
    return _with_line(text, f"{a.name}:x:{a.gid}:")


def shadow_with(text: str | None, a: Account, today: int) -> str:
    if any(fields[0] == a.name for fields in _entries(text)):
        return text or ""
    return _with_line(text, f"{a.name}:!:{today}:0:99999:7:::")


def gshadow_with(text: str | None, a: Account) -> str:
    if any(fields[0] == a.name for fields in _entries(text)):
        return text or ""
    return _with_line(text, f"{a.name}:!::")


def _read(path: Path) -> tuple[str | None, int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, 0o644, 0, 0
    return path.read_text(encoding="utf-8"), st.st_mode & 0o7777, st.st_uid, st.st_gid


def check_share_user(root: Path, account: Account) -> None:
    """AccountError when the account cannot be created under root as it must be (a user or
    group of that name with other ids, or the ids taken); checked before anything is
    written."""
    passwd_with(_read(root / "etc/passwd")[0], account)
    group_with(_read(root / "etc/group")[0], account)


def add_share_user(root: Path, account: Account, today: int) -> list[str]:
    """Create the account under root (nothing when it exists with the same ids)."""

    edits: tuple[tuple[str, Callable[[str | None], str], int], ...] = (
             ("etc/passwd", lambda t: passwd_with(t, account), 0o644),
             ("etc/group", lambda t: group_with(t, account), 0o644),
             ("etc/shadow", lambda t: shadow_with(t, account, today), 0o640),
             ("etc/gshadow", lambda t: gshadow_with(t, account), 0o640))
    new: list[tuple[Path, str, int, int, int]] = []
    for rel, edit, default_mode in edits:
        path = root / rel
        text, mode, uid, gid = _read(path)
        if text is None and rel == "etc/gshadow":
            continue  # a system without gshadow keeps none
        updated = edit(text)  # every check runs before anything is written
        if updated != text:
            new.append((path, updated, mode if text is not None else default_mode, uid, gid))
    for path, updated, mode, uid, gid in new:
        atomic_write(path, updated, mode=mode, uid=uid, gid=gid)
    if not new:
        return [f"user {account.name} (uid {account.uid}) already exists"]
    return [f"created user {account.name} (uid {account.uid}, no login) in "
            + ", ".join("/" + os.path.relpath(p, root) for p, *_ in new)]
