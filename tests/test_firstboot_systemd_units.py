"""The wizard's systemd units: what boot relies on, checked without booting."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.firstboot_support import REPO

UNITS = REPO / "mkosi.extra/usr/lib/systemd/system"


def parse_unit(path: Path) -> dict[str, list[str]]:
    """section.Key -> every value (keys may repeat; space-separated lists are split)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def words(unit: dict[str, list[str]], key: str) -> list[str]:
    return [w for v in unit.get(key, []) for w in v.split()]


def test_umbrella_unit_runs_before_network_and_supervisor() -> None:
    u = parse_unit(UNITS / "twinbeat-firstboot.service")
    assert u["Unit.ConditionPathExists"] == ["!/etc/twinbeat/cluster.toml"]
    assert u["Unit.DefaultDependencies"] == ["no"]
    for name in ("sysinit.target", "systemd-networkd.service", "twinbeat.service"):
        assert name in words(u, "Unit.Before")
    consoles = ["twinbeat-firstboot@tty1.service", "twinbeat-firstboot@ttyS0.service"]
    assert words(u, "Unit.Wants") == consoles
    assert words(u, "Unit.After") == consoles
    assert u["Service.Type"] == ["oneshot"]
    assert u["Install.WantedBy"] == ["sysinit.target"]
    link = UNITS / "sysinit.target.wants/twinbeat-firstboot.service"
    assert link.is_symlink() and os.readlink(link) == "../twinbeat-firstboot.service"


def test_console_instances_own_their_tty_and_import_the_seed() -> None:
    u = parse_unit(UNITS / "twinbeat-firstboot@.service")
    assert "!/etc/twinbeat/cluster.toml" in u["Unit.ConditionPathExists"]
    assert "/dev/%I" in u["Unit.ConditionPathExists"]
    before = words(u, "Unit.Before")
    for name in ("sysinit.target", "systemd-networkd.service", "twinbeat.service",
                 "getty@%i.service", "serial-getty@%i.service"):
        assert name in before
    assert "systemd-udev-trigger.service" in words(u, "Unit.After")
    assert u["Service.ImportCredential"] == ["twinbeat.seed"]
    assert u["Service.ExecStart"] == ["/usr/bin/twinbeat-firstboot"]
    assert u["Service.StandardInput"] == ["tty"]
    assert u["Service.StandardOutput"] == ["tty"]
    assert u["Service.TTYPath"] == ["/dev/%I"]
    assert u["Service.TimeoutStartSec"] == ["infinity"]
    env = u["Service.Environment"]
    assert "TWINBEAT_FIRSTBOOT_CONSOLE=%I" in env
    assert "TWINBEAT_FIRSTBOOT_CLAIM=/run/twinbeat-firstboot.claim" in env


@pytest.mark.parametrize(
    ("console", "active", "runs"),
    [("tty1", "ttyS0", True), ("ttyS0", "tty1 ttyS0", True), ("ttyS0", "tty0", False),
     ("ttyS1", "tty1 ttyS0", False)],
)
def test_serial_instance_runs_only_on_a_kernel_console(
    tmp_path: Path, console: str, active: str, runs: bool
) -> None:
    u = parse_unit(UNITS / "twinbeat-firstboot@.service")
    (cmd,) = u["Service.ExecCondition"]
    active_file = tmp_path / "active"
    active_file.write_text(active + "\n")
    script = cmd.split(" -c ", 1)[1].strip("'")
    script = script.replace("%I", console).replace("/sys/class/tty/console/active",
                                                   str(active_file))
    result = subprocess.run(["/bin/sh", "-c", script], check=False)
    assert (result.returncode == 0) == runs


def test_systemd_analyze_verify_finds_nothing_but_the_missing_launcher(tmp_path: Path) -> None:
    # systemd (with systemd-analyze) is installed by `make deps`: its absence is a failure
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: run `make deps`"
    for name in ("twinbeat-firstboot.service", "twinbeat-firstboot@.service"):
        shutil.copy(UNITS / name, tmp_path / name)
    for console in ("tty1", "ttyS0"):
        (tmp_path / f"twinbeat-firstboot@{console}.service").symlink_to(
            "twinbeat-firstboot@.service"
        )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no",
         *(str(tmp_path / n) for n in ("twinbeat-firstboot.service",
                                        "twinbeat-firstboot@tty1.service",
                                        "twinbeat-firstboot@ttyS0.service"))],
        capture_output=True, text=True, check=False,
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/usr/bin/twinbeat-firstboot is not executable" not in line
    ]
    assert problems == []
