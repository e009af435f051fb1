"""The key file, ``/etc/twinbeat/authkeys``, in heartbeat's format.

::

    auth 1
    1 sha256 0123456789abcdef...

``auth N`` selects the key line ``N method secret``. A line whose first non-blank character is
``#`` is a comment. The secret is one word (heartbeat takes the first word and ignores the
rest), so a ``#`` inside a secret is part of the secret, as in heartbeat.

``scan`` splits a file into its lines as heartbeat reads them; two readers apply their own
rules to what it finds: ``parse_authkeys_text`` (the supervisor, the wizard: strict, every
doubt is an error) and ``twinbeat import-heartbeat`` (lenient: it carries over what heartbeat
would have used and says what it changed).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

METHODS = ("crc", "md5", "sha1", "sha256")


@dataclass(frozen=True)
class AuthKey:
    index: int
    method: str  # as written: crc, md5, sha1, sha256
    secret: bytes

    @property
    def insecure(self) -> bool:
        return self.method == "crc" or not self.secret


class AuthkeysError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# The lines of the file


@dataclass(frozen=True)
class AuthLine:
    """``auth N``: ``index`` is None when N is missing or not a number."""

    line: int
    text: str
    index: int | None
    rest: tuple[str, ...]  # the words after N


@dataclass(frozen=True)
class KeyLine:
    """``N method secret...``; ``swapped`` when written ``method N ...`` (heartbeat refuses)."""

    line: int
    text: str
    index: int
    method: str  # lower case; "" when missing; maybe not one of METHODS
    rest: tuple[str, ...]  # the words after the method: the secret, maybe a comment
    swapped: bool = False


@dataclass(frozen=True)
class OtherLine:
    """A line that is neither (an error for every reader)."""

    line: int
    text: str


Line = AuthLine | KeyLine | OtherLine


def scan(text: str) -> list[Line]:
    """The significant lines of a key file, numbered from 1 (comments and blanks skipped)."""
    out: list[Line] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        shown = raw.strip()
        if words[0] == "auth":
            index = int(words[1]) if len(words) >= 2 and words[1].isdigit() else None
            out.append(AuthLine(number, shown, index, tuple(words[2:])))
        elif words[0].isdigit():
            method = words[1].lower() if len(words) > 1 else ""
            out.append(KeyLine(number, shown, int(words[0]), method, tuple(words[2:])))
        elif words[0].lower() in METHODS and len(words) > 1 and words[1].isdigit():
            out.append(KeyLine(number, shown, int(words[1]), words[0].lower(), tuple(words[2:]),
                               swapped=True))
        else:
            out.append(OtherLine(number, shown))
    return out


def comment_or_nothing(words: tuple[str, ...]) -> bool:
    return not words or words[0].startswith("#")


# --------------------------------------------------------------------------------------------
# The strict reader


def parse_authkeys_text(text: str) -> AuthKey:
    """The key ``auth N`` selects; AuthkeysError (with its line) at the first doubt."""
    active: AuthLine | None = None
    keys: dict[int, KeyLine] = {}
    for item in scan(text):
        if isinstance(item, AuthLine):
            if item.index is None or not comment_or_nothing(item.rest):
                raise AuthkeysError(item.line, "expected 'auth N' with N a key number")
            active = item
            continue
        if isinstance(item, OtherLine):
            raise AuthkeysError(item.line, f"expected 'N method secret', not {item.text!r}")
        if item.swapped:
            method, number = item.text.split()[:2]
            raise AuthkeysError(
                item.line, f"expected 'N method secret', not {item.text!r} (the key number "
                f"comes first: '{number} {method} ...')"
            )
        if item.method not in METHODS:
            raise AuthkeysError(item.line,
                                f"unknown method {item.method!r} (crc, md5, sha1, sha256)")
        if item.method == "crc":
            if not comment_or_nothing(item.rest):
                raise AuthkeysError(item.line, "method crc takes no secret")
        elif not item.rest:
            raise AuthkeysError(item.line, f"method {item.method} needs a secret")
        elif not comment_or_nothing(item.rest[1:]):
            raise AuthkeysError(
                item.line, "the secret must be one word (heartbeat used only the first word)"
            )
        if item.index in keys:
            raise AuthkeysError(item.line, f"key {item.index} is defined twice")
        keys[item.index] = item
    if active is None or active.index is None:
        raise AuthkeysError(1, "no 'auth N' line")
    if active.index not in keys:
        raise AuthkeysError(active.line, f"'auth {active.index}' names no key line "
                            f"'{active.index} ...'")
    key = keys[active.index]
    secret = b"" if key.method == "crc" else key.rest[0].encode()
    return AuthKey(key.index, key.method, secret)


def load_authkeys(path: str | Path, *, check_mode: bool = True) -> AuthKey:
    """Load and check the key file; raises AuthkeysError (line 0: file-level problem)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AuthkeysError(0, f"{p} does not exist") from None
    except OSError as exc:
        raise AuthkeysError(0, f"{p}: {exc.strerror}") from None
    if check_mode and stat.S_IMODE(st.st_mode) & 0o077:
        raise AuthkeysError(
            0, f"{p} is mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 (chmod 600 {p})"
        )
    try:
        key = parse_authkeys_text(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise AuthkeysError(0, f"{p} is not text") from None
    if key.insecure:
        raise AuthkeysError(
            0, f"{p}: method crc gives no authentication; use sha256 with a secret"
        )
    return key
