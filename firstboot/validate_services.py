"""Validators of the data-service answers (file share, database); pure, like validate.py.

Shares and the database live on the replicated disk: without a disk only "none" is taken,
and the reason says so.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Interface, IPv4Network

from firstboot.validate import Context, Invalid, is_none
from supervisor.dataservices import (
    DB_NAME_RE,
    RESERVED_SHARES,
    SHARE_NAME_RE,
    USER_NAME_RE,
)

MIN_SERVICE_PASSWORD = 8
PROTOCOLS = ("smb", "nfs")
#: accounts of the image (and names that mean something to the services): not a share user
RESERVED_USERS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "_apt", "nobody", "nogroup", "messagebus",
    "systemd-network", "systemd-resolve", "systemd-timesync", "sshd", "statd", "postgres",
    "_rpc", "polkitd", "admin", "guest", "twinbeat",
})
#: PostgreSQL's own roles and databases
RESERVED_DB = frozenset({"postgres", "template0", "template1", "public", "pg_signal_backend"})
NO_DISK = "needs the replicated disk, and no disk was chosen: answer none (or choose a disk)"


def _needs_disk(ctx: Context, what: str) -> None:
    if ctx.need("disk") is None:
        raise Invalid(f"{what} {NO_DISK}")


def file_share(text: str, ctx: Context) -> tuple[str, ...]:
    """'smb', 'nfs', 'smb nfs' (or 'both'), or none."""
    if is_none(text):
        return ()
    words = [w.lower() for w in re.split(r"[\s,]+", text.strip()) if w]
    if words == ["both"]:
        words = list(PROTOCOLS)
    bad = [w for w in words if w not in PROTOCOLS]
    if bad or not words:
        raise Invalid(f"{' '.join(bad) or text.strip()!r}: answer smb, nfs, both or none")
    _needs_disk(ctx, "a file share")
    return tuple(p for p in PROTOCOLS if p in words)


def share_name(text: str, ctx: Context) -> str:
    t = text.strip()
    if not t:
        raise Invalid("the share name cannot be empty")
    if not SHARE_NAME_RE.match(t):
        raise Invalid(f"{t!r} is not a share name Samba and NFS both take: up to 32 letters, "
                      "digits, '-', '_' or '.', starting with a letter or digit")
    if t.lower() in RESERVED_SHARES:
        raise Invalid(f"{t!r} is one of Samba's own section names; choose another")
    return t


def share_user(text: str, ctx: Context) -> str:
    t = text.strip()
    if not USER_NAME_RE.match(t):
        raise Invalid(f"{t!r} is not a user name: lower-case letters, digits, '-' or '_' "
                      "(at most 32, starting with a letter)")
    if t in RESERVED_USERS:
        raise Invalid(f"{t} is a system account; choose another name")
    return t


def _password(text: str, names: list[str], what: str) -> str:
    if text == "":
        raise Invalid(f"the {what} cannot be empty")
    if len(text) < MIN_SERVICE_PASSWORD:
        raise Invalid(f"the {what} is too short (at least {MIN_SERVICE_PASSWORD} characters)")
    if not all(" " <= c <= "~" for c in text) or text != text.strip():
        raise Invalid(f"the {what} must be printable ASCII (letters, digits, punctuation), "
                      "without spaces at the ends")
    if any(len(n) >= 3 and n.lower() in text.lower() for n in names):
        raise Invalid(f"the {what} cannot contain the user's, share's or database's name")
    classes = sum(bool(re.search(p, text)) for p in (r"[a-z]", r"[A-Z]", r"\d", r"[^A-Za-z\d]"))
    if classes < 2 or len(set(text)) < 4:
        raise Invalid(f"the {what} is too weak: mix letters with digits or punctuation")
    return text


def share_password(text: str, ctx: Context) -> str:
    names = [str(ctx.answers.get("share_user") or ""), str(ctx.answers.get("share_name") or "")]
    return _password(text, names, "share password")


def nfs_clients(text: str, ctx: Context) -> str:
    t = text.strip()
    try:
        net = IPv4Network(t, strict=True)
    except ValueError as exc:
        hint = ""
        try:
            hint = f" (the network is {IPv4Interface(t).network})"
        except ValueError:
            pass
        raise Invalid(f"{t!r} is not a network such as 192.168.85.0/24: {exc}{hint}") from None
    if net.prefixlen < 8:
        raise Invalid(f"{net} is too wide: give the clients' own network")
    return str(net)


def database(text: str, ctx: Context) -> str | None:
    if is_none(text):
        return None
    t = text.strip()
    if not DB_NAME_RE.match(t):
        raise Invalid(f"{t!r} is not a database name: lower-case letters, digits and '_', "
                      "starting with a letter (at most 63)")
    if t in RESERVED_DB:
        raise Invalid(f"{t} is PostgreSQL's own; choose another name")
    _needs_disk(ctx, "a database")
    return t


def database_owner(text: str, ctx: Context) -> str:
    t = text.strip()
    if not DB_NAME_RE.match(t):
        raise Invalid(f"{t!r} is not a role name: lower-case letters, digits and '_', "
                      "starting with a letter")
    if t in RESERVED_DB or t.startswith("pg_"):
        raise Invalid(f"{t} is PostgreSQL's own; choose another name")
    return t


def database_password(text: str, ctx: Context) -> str:
    names = [str(ctx.answers.get("database") or ""), str(ctx.answers.get("database_owner") or "")]
    return _password(text, names, "database password")
