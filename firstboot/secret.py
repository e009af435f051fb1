"""The cluster's shared secret as a code a person can read off one screen and type on another.

node1 makes the code and shows it; node2's operator types it. The code is six groups of four
characters from Crockford's base 32 alphabet (digits and capitals without I, L, O, U)::

    7KQ2-M9XD-4HTB-0WZC-PR6E-3NFA
    \\____________ ____________/ \\__/
                 V                 check group
      100 random bits

The last group is a check computed from the five others (20 bits of SHA-256), so a mistyped
or swapped character is caught with a probability of 1 - 2**-20 before anything is written.
Reading is forgiving: case, spaces and dashes do not matter, and O/I/L are read as 0/1/1.

The secret in ``/etc/twinbeat/authkeys`` is the canonical code itself, so an operator can
compare the file with what was shown.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from typing import Protocol

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUP = 4
DATA_GROUPS = 5
CODE_CHARS = GROUP * (DATA_GROUPS + 1)
_ALIASES = {"O": "0", "I": "1", "L": "1"}


class Rng(Protocol):
    """The randomness the wizard uses (secrets in production; seeded in tests)."""

    def randbelow(self, n: int) -> int: ...


class SystemRng:
    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)


class SeededRng:
    """Deterministic randomness, for tests only (see cli.TEST_RANDOM_ENV)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self._random.randrange(n)


def check_group(data: str) -> str:
    digest = hashlib.sha256(b"twinbeat-code:" + data.encode("ascii")).digest()
    bits = int.from_bytes(digest[:3], "big") >> 4  # 20 bits
    out = ""
    for _ in range(GROUP):
        out = ALPHABET[bits & 31] + out
        bits >>= 5
    return out


def _group(text: str) -> str:
    return "-".join(text[i:i + GROUP] for i in range(0, len(text), GROUP))


def generate_code(rng: Rng) -> str:
    data = "".join(ALPHABET[rng.randbelow(32)] for _ in range(GROUP * DATA_GROUPS))
    return _group(data + check_group(data))


def parse_code(text: str) -> str:
    """The canonical code (``XXXX-XXXX-...``), or ValueError with a one-line reason."""
    chars: list[str] = []
    for typed in text.upper():
        if typed in " -\t":
            continue
        c = _ALIASES.get(typed, typed)
        if c not in ALPHABET:
            raise ValueError(
                f"{c!r} does not occur in codes (they use 0-9 and A-Z without I, L, O, U)"
            )
        chars.append(c)
    if not chars:
        raise ValueError("type the code shown on node1 (six groups of four characters)")
    if len(chars) != CODE_CHARS:
        raise ValueError(
            f"the code has {len(chars)} characters; it needs {CODE_CHARS} (six groups of four)"
        )
    data, check = "".join(chars[:-GROUP]), "".join(chars[-GROUP:])
    if check_group(data) != check:
        raise ValueError("the check group does not match: a character was mistyped")
    return _group(data + check)


def random_text(rng: Rng, length: int, alphabet: str) -> str:
    return "".join(alphabet[rng.randbelow(len(alphabet))] for _ in range(length))
