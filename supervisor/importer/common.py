"""What every part of the import shares: the result, the error, and the problems found
on the way (each with the heartbeat file:line it is about)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


def random_secret() -> str:
    return secrets.token_hex(32)


@dataclass
class ImportResult:
    config_text: str  # cluster.toml, with comments saying where each value came from
    authkeys_text: str  # "auth 1\n1 sha256 SECRET\n"
    notes: list[str] = field(default_factory=list)  # what was not carried over, and why
    warnings: list[str] = field(default_factory=list)  # what needs the admin's attention
    fresh_key: bool = False  # the secret is new (crc or no usable key in authkeys)


class HeartbeatImportError(ValueError):
    """The heartbeat files cannot be converted; ``problems`` are ``file:line: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def refname(name: str, line: int | None = None) -> str:
    return name if line is None else f"{name}:{line}"


class Problems:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def error(self, ref: str, message: str) -> None:
        self.errors.append(f"{ref}: {message}")

    def note(self, ref: str, message: str) -> None:
        self.notes.append(f"{ref}: {message}")

    def warn(self, ref: str, message: str) -> None:
        self.warnings.append(f"{ref}: {message}")
