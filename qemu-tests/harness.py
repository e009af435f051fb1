"""Scenario registry for the QEMU tests (used by qemu-tests/run.py).

A scenario is a function decorated with @scenario("what-it-checks") in a module named
qemu-tests/scenarios_*.py. It receives a Context, starts VMs through ctx.vm(...), raises
(AssertionError, VMError, ...) on failure and may return a short detail line (for example
a measured time). run.py closes every VM the scenario started, whatever happened, and
keeps their console logs under the artifacts folder when it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass(frozen=True)
class Scenario:
    name: str
    func: ScenarioFunc


SCENARIOS: list[Scenario] = []
# Called once after the last scenario, whatever happened (e.g. to shut a shared pair down).
FINALIZERS: list[Callable[[], None]] = []


def at_end(func: Callable[[], None]) -> Callable[[], None]:
    """Register a clean-up that run.py calls after the last scenario (also on errors)."""
    if func not in FINALIZERS:
        FINALIZERS.append(func)
    return func


def scenario(name: str) -> Callable[[ScenarioFunc], ScenarioFunc]:
    """Register a scenario; its name says what it checks (it is printed on its result line)."""

    def register(func: ScenarioFunc) -> ScenarioFunc:
        if any(s.name == name for s in SCENARIOS):
            raise ValueError(f"duplicate scenario name {name!r}")
        SCENARIOS.append(Scenario(name, func))
        return func

    return register
