"""The configurations `twinbeat export pacemaker` is tested on, shared by the unit tests and the
real-tool tests: the documented example, the wizard's golden output and every heartbeat import
fixture (converted by the importer as `twinbeat import-heartbeat` converts them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from supervisor.config import Config, load_config
from supervisor.importer import import_heartbeat
from supervisor.pacemaker import Export, export

TESTS = Path(__file__).resolve().parent
HEARTBEAT = TESTS / "fixtures" / "heartbeat"
GOLDEN = TESTS / "golden" / "pacemaker"
#: the path the exported files name (as on a node), so golden copies do not depend on tmp
CONFIG_PATH = "/etc/twinbeat/cluster.toml"
SECRET = "0123456789abcdef" * 4


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _heartbeat(seed: str, ha_cf: str = "ha.cf", haresources: str = "haresources",
               *, line: str | None = None, **kw: object) -> Callable[[], str]:
    def text() -> str:
        folder = HEARTBEAT / seed
        res = line + "\n" if line is not None else _read(folder / haresources)
        result = import_heartbeat(_read(folder / ha_cf), res, _read(folder / "authkeys"),
                                  secret_factory=lambda: SECRET, **kw)  # type: ignore[arg-type]
        return result.config_text

    return text


def _variants() -> list[str]:
    text = _read(HEARTBEAT / "004_a6a32a1286f804d6" / "haresources.variants")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _file(path: Path) -> Callable[[], str]:
    return lambda: _read(path)


#: every heartbeat import fixture: (case name, seed folder, import arguments)
HEARTBEAT_CASES: list[tuple[str, str, dict[str, object]]] = [
    ("heartbeat-000", "000_a40e95f0af80fc5e", {"unflatten": True}),
    ("heartbeat-001", "001_a60c842bbe57b6fb", {}),
    ("heartbeat-002", "002_71a4c9711f4923ae", {}),
    ("heartbeat-002-active-active", "002_71a4c9711f4923ae",
     {"haresources": "haresources.active-active"}),
    ("heartbeat-003", "003_b0512b2d705e3c2e", {}),
    ("heartbeat-003-more-nodes", "003_b0512b2d705e3c2e",
     {"ha_cf": "ha.cf.more-nodes", "node": "primary", "peer": "secondary"}),
    ("heartbeat-004", "004_a6a32a1286f804d6", {}),
]
HEARTBEAT_CASES += [(f"heartbeat-004-variant-{i}", "004_a6a32a1286f804d6", {"line": line})
                    for i, line in enumerate(_variants(), start=1)]

CASES: dict[str, Callable[[], str]] = {
    "example": _file(TESTS / "fixtures" / "pacemaker" / "example.toml"),
    "firstboot-node1": _file(TESTS / "golden" / "firstboot" / "node1" / "etc" / "twinbeat"
                             / "cluster.toml"),
    **{name: _heartbeat(seed, **kw) for name, seed, kw in HEARTBEAT_CASES},  # type: ignore[arg-type]
}


def load(text: str) -> Config:
    return load_config(CONFIG_PATH, text=text, check_devices=False, check_authkeys=False)


def case_config(name: str) -> Config:
    return load(CASES[name]())


def case_export(name: str) -> Export:
    return export(case_config(name))


def write(result: Export, folder: Path) -> None:
    for rel, text in result.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def compare_golden(name: str, result: Export) -> list[str]:
    """Differences from tests/golden/pacemaker/NAME (TWINBEAT_UPDATE_GOLDEN=1 rewrites it)."""
    golden = GOLDEN / name
    if os.environ.get("TWINBEAT_UPDATE_GOLDEN") == "1":
        shutil.rmtree(golden, ignore_errors=True)
        write(result, golden)
    problems = []
    have = sorted(str(p.relative_to(golden)) for p in golden.rglob("*") if p.is_file())
    if have != sorted(result.files):
        problems.append(f"files {sorted(result.files)}, golden copy has {have}")
    for rel, text in result.files.items():
        g = golden / rel
        if g.is_file() and _read(g) != text:
            problems.append(f"{rel} differs from {g}")
    return problems
