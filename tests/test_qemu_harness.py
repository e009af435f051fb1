"""The QEMU harness's own logic, without QEMU: a scenario's time limit, -k selection."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "qemu-tests"))

import harness
import run


def test_a_scenario_over_its_time_limit_fails_and_the_next_one_runs(tmp_path):
    calls: list[str] = []

    def stuck(ctx: harness.Context) -> str:
        calls.append("stuck")
        try:
            while True:  # a wait that would never end
                time.sleep(0.05)
        except Exception:  # a broad except on the way does not swallow the time-out
            calls.append("swallowed")
            raise

    def quick(ctx: harness.Context) -> str:
        calls.append("quick")
        return "done"

    t0 = time.monotonic()
    ok, detail = run.run_one(harness.Scenario("stuck", stuck, timeout=0.3), tmp_path / "img",
                             tmp_path / "artifacts")
    took = time.monotonic() - t0
    assert not ok
    assert detail.startswith("ScenarioTimeout: over its limit of 0 s")
    assert took < 5
    assert (tmp_path / "artifacts" / "stuck" / "traceback.txt").exists()
    assert run.run_one(harness.Scenario("quick", quick, timeout=5), tmp_path / "img",
                       tmp_path / "artifacts") == (True, "done")
    assert calls == ["stuck", "quick"]


def test_extend_deadline_gives_the_running_scenario_more_time(tmp_path):
    def boots_first(ctx: harness.Context) -> str:
        harness.extend_deadline(1.0)  # e.g. the shared pair boots in this scenario
        time.sleep(0.5)  # longer than its own limit, shorter than limit + extension
        return "ok"

    assert run.run_one(harness.Scenario("boots", boots_first, timeout=0.3), tmp_path / "img",
                       tmp_path / "artifacts") == (True, "ok")


def test_time_limit_is_disarmed_after_the_block():
    with harness.time_limit(0.2):
        pass
    time.sleep(0.4)  # no ScenarioTimeout after the block


def test_select_any_of_several_substrings(capsys):
    assert run.main(["--list", "-k", "bios", "-k", "uefi"]) == 0
    assert capsys.readouterr().out.split() == ["uefi-boot-reaches-console-prompt",
                                               "bios-boot-reaches-console-prompt"]


def test_scenario_timeout_is_not_an_exception():
    # so that no `except Exception` in a scenario or a retry loop can swallow it
    assert issubclass(harness.ScenarioTimeout, BaseException)
    assert not issubclass(harness.ScenarioTimeout, Exception)
