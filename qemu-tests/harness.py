"""Scenario registry for the QEMU tests (used by qemu-tests/run.py).

A scenario is a function decorated with @scenario("what-it-checks") in a module named
qemu-tests/scenarios_*.py. It receives a Context, starts VMs through ctx.vm(...), raises
(AssertionError, VMError, ...) on failure and may return a short detail line (for example
a measured time). run.py closes every VM the scenario started, whatever happened, and
keeps their console logs under the artifacts folder when it fails.

Every scenario has a time limit (``@scenario(name, timeout=...)``, DEFAULT_TIMEOUT unless it
says otherwise): when it runs out, ScenarioTimeout is raised wherever the scenario is waiting
and the scenario fails. A scenario that must boot a shared pair first gets the boot's time on
top (extend_deadline).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from vm import VM, VMConfig


@dataclass
class Context:
    image: Path
    workdir: Path
    vms: list[VM] = field(default_factory=list)
    # This scenario's artifacts folder (artifacts/qemu/<scenario>/): scenarios that keep VMs
    # of their own beyond ctx.vms (a pair shared by several scenarios) save logs there.
    artifacts: Path | None = None
    # Names of the scenarios that will run after this one (e.g. to shut a shared pair down
    # once no later scenario needs it).
    remaining: tuple[str, ...] = ()

    def vm(self, name: str, **config: Any) -> VM:
        """Start a VM of this image (VMConfig fields as keywords) and track it for cleanup."""
        vm = VM(VMConfig(image=self.image, name=name, **config), workdir=self.workdir)
        self.vms.append(vm)
        vm.start()
        return vm


ScenarioFunc = Callable[[Context], "str | None"]

#: seconds a scenario may take unless it says otherwise (the longest took ~6 min under TCG)
DEFAULT_TIMEOUT = 900.0


@dataclass(frozen=True)
class Scenario:
    name: str
    func: ScenarioFunc
    timeout: float = DEFAULT_TIMEOUT


class ScenarioTimeout(BaseException):
    """The running scenario's time is up. A BaseException, so that no `except Exception`
    on the way (a retry loop, a clean-up) can swallow it; run.py and SharedPair catch it."""


def _time_up(signum: int, frame: FrameType | None) -> None:
    raise ScenarioTimeout("the scenario's time limit ran out")


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ScenarioTimeout in the main thread after `seconds` (SIGALRM), unless the block
    ends first."""
    previous = signal.signal(signal.SIGALRM, _time_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def extend_deadline(seconds: float) -> None:
    """Give the running scenario `seconds` more (e.g. it boots the shared pair first)."""
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    if left > 0:
        signal.setitimer(signal.ITIMER_REAL, left + seconds)


SCENARIOS: list[Scenario] = []
# Called once after the last scenario, whatever happened (e.g. to shut a shared pair down).
FINALIZERS: list[Callable[[], None]] = []


def at_end(func: Callable[[], None]) -> Callable[[], None]:
    """Register a clean-up that run.py calls after the last scenario (also on errors)."""
    if func not in FINALIZERS:
        FINALIZERS.append(func)
    return func


def scenario(name: str, timeout: float = DEFAULT_TIMEOUT,
             ) -> Callable[[ScenarioFunc], ScenarioFunc]:
    """Register a scenario; its name says what it checks (it is printed on its result line).
    It fails if it takes longer than `timeout` seconds."""

    def register(func: ScenarioFunc) -> ScenarioFunc:
        if any(s.name == name for s in SCENARIOS):
            raise ValueError(f"duplicate scenario name {name!r}")
        SCENARIOS.append(Scenario(name, func, timeout))
        return func

    return register
