"""The service agent: a bare resource NAME, resolved as heartbeat resolves it, adapted to systemd.

Resolution order (``resolution_order``, pure):

1. a script ``NAME`` in the first ``ctx.units_after`` resource directories
   (``/etc/twinbeat/resource.d``);
2. a systemd unit ``NAME`` (``NAME.service`` when NAME has no unit suffix) whose LoadState is
   ``loaded``;
3. a script ``NAME`` in the remaining directories (``/etc/init.d``).

Scripts are called heartbeat's way, ``SCRIPT [args...] start|stop|status`` (the ``::``
arguments before the operation). ``status`` exit 0 means running; 4 (LSB "unknown"), a timeout or
a script that cannot run means "cannot tell" (AgentError); any other status (3 is LSB's "not
running") means not running.

Idempotence: ``start`` asks ``status`` first and does nothing when running. ``stop`` always runs
``SCRIPT stop`` (a script whose status is unreliable must still be stopped); a failing stop is
accepted only when ``status`` then says "not running". Units: ``systemctl start``/``stop`` are
idempotent themselves; ``systemctl is-active`` gives the status.

A script that starts a daemon must redirect the daemon's output (``>/dev/null 2>&1 &``): see
``runner``.

Health probes (``probes``): a resource whose name has a probe (the data services: smbd,
nfs-server, postgresql) is running only when the probe answers too. ``status`` runs it once
the unit or script says running, and raises AgentError with the probe's reason when it fails
(the monitor then counts a failure, as for a stopped service); ``start`` waits up to
``ctx.probe_ready_wait`` for a first answer and fails the start when none comes, so a
started service is one that clients can use.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from supervisor.drivers import runner
from supervisor.drivers.agent_base import AgentContext, AgentError
from supervisor.drivers.probes import run_probe
from supervisor.resource_spec import ServiceSpec

_UNIT_SUFFIXES = (".service", ".target", ".mount", ".socket", ".timer", ".path", ".scope")
LSB_STATUS_UNKNOWN = 4


@dataclass(frozen=True)
class ScriptBackend:
    path: Path

    def describe(self) -> str:
        return f"script {self.path}"


@dataclass(frozen=True)
class UnitBackend:
    unit: str

    def describe(self) -> str:
        return f"systemd unit {self.unit}"


Backend = ScriptBackend | UnitBackend


def unit_name(name: str) -> str:
    return name if name.endswith(_UNIT_SUFFIXES) else f"{name}.service"


def resolution_order(name: str, resource_dirs: tuple[Path, ...], units_after: int
                     ) -> list[Backend]:
    """Every place NAME may live, in the order they are tried (pure)."""
    order: list[Backend] = [ScriptBackend(d / name) for d in resource_dirs[:units_after]]
    order.append(UnitBackend(unit_name(name)))
    order.extend(ScriptBackend(d / name) for d in resource_dirs[units_after:])
    return order


class ServiceAgent:
    def __init__(self, spec: ServiceSpec, ctx: AgentContext) -> None:
        self.spec = spec
        self.ctx = ctx
        self.backend: Backend | None = None

    def describe(self) -> str:
        where = f" ({self.backend.describe()})" if self.backend else ""
        return f"service {self.spec.describe()}{where}"

    async def _unit_loaded(self, unit: str) -> bool:
        r = await runner.run(
            [self.ctx.systemctl, "show", "-p", "LoadState", "--value", unit],
            timeout=self.ctx.command_timeout, log_failure=False,
        )
        if r.returncode in (126, 127):
            return False  # no systemctl on this machine: no units
        return r.ok and r.stdout.strip() == "loaded"

    async def resolve(self) -> Backend:
        """Find NAME now (it is looked up on every operation, so new scripts are seen)."""
        for backend in resolution_order(self.spec.name, self.ctx.resource_dirs,
                                        self.ctx.units_after):
            if isinstance(backend, ScriptBackend):
                if backend.path.is_file():
                    if not os.access(backend.path, os.X_OK):
                        raise AgentError(f"{backend.path} exists but is not executable")
                    self.backend = backend
                    return backend
            elif await self._unit_loaded(backend.unit):
                self.backend = backend
                return backend
        places = ", ".join(str(d) for d in self.ctx.resource_dirs)
        raise AgentError(
            f"service {self.spec.name}: no script in {places} and no systemd unit "
            f"{unit_name(self.spec.name)}"
        )

    async def _script(self, path: Path, op: str) -> runner.RunResult:
        return await runner.run(
            [str(path), *self.spec.args, op], timeout=self.ctx.command_timeout,
            log_failure=op != "status",
        )

    async def _systemctl(self, *args: str) -> runner.RunResult:
        return await runner.run([self.ctx.systemctl, *args], timeout=self.ctx.command_timeout,
                                log_failure=args[0] != "is-active")

    async def _probe(self) -> str | None:
        """None when the service answers its probe (or has none); else the reason."""
        probe = self.ctx.probes(self.spec.name)
        if probe is None:
            return None
        return await run_probe(probe, self.ctx.probe_timeout)

    async def _await_ready(self) -> None:
        probe = self.ctx.probes(self.spec.name)
        if probe is None:
            return
        deadline = time.monotonic() + self.ctx.probe_ready_wait
        while True:
            reason = await run_probe(probe, self.ctx.probe_timeout)
            if reason is None:
                return
            if not await self._running():
                raise AgentError(f"{self.spec.name} stopped right after its start: {reason}")
            if time.monotonic() >= deadline:
                raise AgentError(f"{self.spec.name} started but does not answer "
                                 f"{probe.describe()} within {self.ctx.probe_ready_wait:g} s: "
                                 f"{reason}")
            await asyncio.sleep(self.ctx.probe_interval)

    async def status(self) -> bool:
        if not await self._running():
            return False
        reason = await self._probe()
        if reason is not None:
            raise AgentError(f"{self.spec.name} is running but unhealthy: {reason}")
        return True

    async def _running(self) -> bool:
        backend = await self.resolve()
        if isinstance(backend, UnitBackend):
            r = await self._systemctl("is-active", backend.unit)
            state = r.stdout.strip()
            if r.ok:
                return True
            if r.timed_out or not state or r.returncode in (126, 127):
                raise AgentError(f"cannot tell whether {backend.unit} runs: {r.describe()}")
            return False
        r = await self._script(backend.path, "status")
        if r.ok:
            return True
        if r.timed_out or r.returncode in (None, 126, 127, LSB_STATUS_UNKNOWN) or (
            r.returncode is not None and r.returncode < 0
        ):
            raise AgentError(f"cannot tell whether {self.spec.name} runs: {r.describe()}")
        return False

    async def start(self, *, check_duplicates: bool = False) -> None:
        backend = await self.resolve()
        if isinstance(backend, UnitBackend):
            r = await self._systemctl("start", backend.unit)
            if not r.ok:
                raise AgentError(f"cannot start {backend.unit}: {r.describe()}")
        elif not await self._running():
            r = await self._script(backend.path, "start")
            if not r.ok:
                raise AgentError(f"cannot start {self.spec.describe()}: {r.describe()}")
        await self._await_ready()

    async def stop(self) -> None:
        backend = await self.resolve()
        if isinstance(backend, UnitBackend):
            r = await self._systemctl("stop", backend.unit)
            if not r.ok:
                raise AgentError(f"cannot stop {backend.unit}: {r.describe()}")
            return
        r = await self._script(backend.path, "stop")
        if r.ok:
            return
        try:
            running = await self._running()
        except AgentError:
            running = True
        if running:
            raise AgentError(f"cannot stop {self.spec.describe()}: {r.describe()}")
