"""twinbeat boot-check with RAUC, systemd and the clock replaced: what it marks, what it
records for `twinbeat status`, and when it reboots into the previous slot."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.lifecycle import cli
from supervisor.lifecycle.bootdecide import Pending
from supervisor.lifecycle.health import Baseline, Probe
from supervisor.lifecycle.system import Records
from tests.launcher_support import LAUNCHER, run_launcher

BASE = Baseline(links=("serial", "crossover"), replicas=())


class World:
    def __init__(self, tmp: Path, booted: str, version: str, probes: list[Probe]) -> None:
        self.records = Records(tmp / "lifecycle")
        self.booted = booted
        self.version = version
        self.probes = probes
        self.marks: list[tuple[str, str]] = []
        self.commands: list[list[str]] = []
        self.now = 0.0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(cli, "Records", lambda: self.records)
        monkeypatch.setattr(cli, "booted_slot", lambda: self.booted)
        monkeypatch.setattr(cli, "running_version", lambda: self.version)
        monkeypatch.setattr(cli, "probe", lambda: self.probes.pop(0) if len(self.probes) > 1
                            else self.probes[0])
        monkeypatch.setattr(cli, "rauc_mark", lambda what, slot: self.marks.append((what, slot)))
        monkeypatch.setattr(cli, "run", lambda cmd, **kw: self.commands.append(list(cmd)))

    def check(self) -> int:
        def sleep(s: float) -> None:
            self.now += s

        return cli.cmd_boot_check(argparse.Namespace(bound=60.0), clock=lambda: self.now,
                                  sleep=sleep)


def pending(phase: str = "installed") -> Pending:
    return Pending(slot="B", version="0.1.1", from_slot="A", from_version="0.1.0",
                   baseline=BASE, installed_at=0.0, phase=phase)


def up() -> Probe:
    return Probe("active", status={"peer": {"name": "node1", "state": "alive"},
                                   "links": [{"name": "serial", "state": "up"},
                                             {"name": "crossover", "state": "up"}]})


def test_an_ordinary_boot_is_marked_good_at_once(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, "A", "0.1.0", [Probe("failed")])
    w.install(monkeypatch)
    assert w.check() == 0
    assert w.marks == [("mark-good", "booted")]


def test_a_healthy_trial_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, "B", "0.1.1", [Probe("activating"), Probe("active", error="x"), up()])
    w.install(monkeypatch)
    w.records.set_pending(pending())
    assert w.check() == 0
    assert w.marks == [("mark-good", "booted")]
    assert w.records.pending() is None and w.records.failure() is None
    assert w.now == 10.0  # two probes waited for
    assert "0.1.1 on slot B is healthy: kept" in w.records.history_path.read_text()
    assert w.commands == []


def test_a_trial_that_is_not_healthy_in_time_is_rolled_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, "B", "0.1.1", [Probe("active", error="no socket")])
    w.install(monkeypatch)
    w.records.set_pending(pending())
    assert w.check() == 1
    assert w.marks == [("mark-bad", "booted")]
    assert w.commands == [["systemctl", "reboot"]]
    assert w.now == 60.0
    f = w.records.failure()
    assert f is not None and f.version == "0.1.1" and f.running_version == "0.1.0"
    assert f.reason == ("not healthy within 60 s: the supervisor does not answer (no socket)")
    assert w.records.pending() is None  # the next boot does not record it a second time


def test_a_failed_supervisor_rolls_back_without_waiting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, "B", "0.1.1", [Probe("failed", "exit-code")])
    w.install(monkeypatch)
    w.records.set_pending(pending())
    assert w.check() == 1
    assert w.now == 0.0
    f = w.records.failure()
    assert f is not None and f.reason == "twinbeat.service failed (exit-code)"
    assert cli.status_lines(w.records)[-1] == (
        "update to 0.1.1 FAILED on slot B and was rolled back (running 0.1.0): "
        "twinbeat.service failed (exit-code)")


def test_back_on_the_old_slot_records_the_failure_and_repairs_the_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, "A", "0.1.0", [up()])
    w.install(monkeypatch)
    w.records.set_pending(pending())
    assert w.check() == 0
    assert w.marks == [("mark-bad", "rootfs.1"), ("mark-active", "booted"),
                       ("mark-good", "booted")]
    f = w.records.failure()
    assert f is not None and "did not come up to its health check" in f.reason


def test_not_booted_by_grub_marks_nothing(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    w = World(tmp_path, "", "0.1.0", [up()])
    w.install(monkeypatch)
    assert w.check() == 0
    assert w.marks == []


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_the_launcher_runs_the_updates_without_the_full_command_line(command: str) -> None:
    """/usr/bin/twinbeat boot-check and upgrade-agent start at every boot beside the
    supervisor: they load the lifecycle's modules only, with the same options."""
    from supervisor.cli.parser import build_parser

    r = run_launcher([command, "--help"], ("supervisor.cli", "supervisor.config"))
    assert r.returncode == 0, r.stderr
    assert "LOADED False False" in r.stdout
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    full = subparsers._group_actions[0].choices[command]  # type: ignore[index]
    for option in full._option_string_actions:
        assert re.search(rf"{re.escape(option)}\b", r.stdout), (option, r.stdout)
    bad = run_launcher([command, "--no-such-option"], ("supervisor.cli",))
    full_bad = subprocess.run(
        [sys.executable, "-c", "import sys; from supervisor.cli import main; sys.exit(main())",
         command, "--no-such-option"], capture_output=True, text=True, timeout=30, check=False,
        cwd=Path(__file__).resolve().parent.parent)
    assert bad.returncode == full_bad.returncode == 2
    assert bad.stderr == full_bad.stderr and "error: " in bad.stderr


def test_the_launcher_hands_every_update_command_to_the_lifecycle_and_nothing_else() -> None:
    """cli.COMMANDS is what /usr/bin/twinbeat sends to the lifecycle's main: every update
    command but persist (which has its own lighter path), and a command of the full command
    line still loads it."""
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_parsers(parser.add_subparsers(dest="command"))
    subparsers = parser._subparsers
    assert subparsers is not None
    names = set(subparsers._group_actions[0].choices)  # type: ignore[arg-type]
    assert set(cli.COMMANDS) == names - {"persist"}
    launcher = LAUNCHER.read_text()
    assert "in (" + ", ".join(f'"{c}"' for c in cli.COMMANDS) + ")" in launcher
    r = run_launcher(["status", "--help"], ("supervisor.cli",))
    assert r.returncode == 0 and "LOADED True" in r.stdout, r.stderr
