"""What a booting node does about its system slot (pure): keep it, try it, or record that
the boot loader already rolled it back.

``twinbeat install`` / ``twinbeat upgrade`` leave a pending record on the state partition
when RAUC has written a slot: which slot, which version, the version it replaces and the
baseline for the health check. At the next boots ``on_boot`` compares it with the slot
that actually booted (``rauc.slot=`` on the kernel command line, set by grub.cfg):

* no pending record: an ordinary boot, marked good at once;
* the pending slot booted: a trial, kept only if the health check passes in time;
* another slot booted: the new slot never got to its health check (kernel panic,
  watchdog reset, power loss) and GRUB went back to the previous slot by itself; the
  failure is recorded, the failed slot marked bad, the running one made primary again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from supervisor.lifecycle.health import Baseline, baseline_from_json, baseline_to_json


@dataclass(frozen=True)
class Pending:
    slot: str  # bootname of the slot written (A or B)
    version: str
    from_slot: str
    from_version: str
    baseline: Baseline
    installed_at: float  # wall clock seconds
    # "installing" is written before RAUC starts writing the slot, "installed" after it
    # made the slot primary: a reset in between is told apart from a failed boot
    phase: str = "installed"

    def to_json(self) -> dict[str, Any]:
        return {"slot": self.slot, "version": self.version, "from_slot": self.from_slot,
                "from_version": self.from_version, "baseline": baseline_to_json(self.baseline),
                "installed_at": self.installed_at, "phase": self.phase}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Pending:
        return Pending(slot=str(d["slot"]), version=str(d["version"]),
                       from_slot=str(d["from_slot"]), from_version=str(d["from_version"]),
                       baseline=baseline_from_json(d.get("baseline") or {}),
                       installed_at=float(d.get("installed_at") or 0.0),
                       phase=str(d.get("phase") or "installed"))


@dataclass(frozen=True)
class Failure:
    """An update that did not stick: shown by `twinbeat status` until the next success."""

    version: str
    slot: str
    running_version: str
    reason: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "slot": self.slot,
                "running_version": self.running_version, "reason": self.reason, "at": self.at}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Failure:
        return Failure(version=str(d["version"]), slot=str(d["slot"]),
                       running_version=str(d.get("running_version", "?")),
                       reason=str(d["reason"]), at=float(d.get("at") or 0.0))

    def text(self) -> str:
        return (f"update to {self.version} FAILED on slot {self.slot} and was rolled back "
                f"(running {self.running_version}): {self.reason}")


Kind = Literal["good", "trial", "rolled-back"]


@dataclass(frozen=True)
class BootDecision:
    kind: Kind
    reason: str
    failure: Failure | None = None  # for "rolled-back": what to record
    bad_slot: str | None = None  # the slot to mark bad


def on_boot(booted: str, version: str, pending: Pending | None, now: float) -> BootDecision:
    if pending is None:
        return BootDecision("good", f"slot {booted} ({version}): an ordinary boot, marked good")
    if pending.slot == booted:
        if pending.version != version:
            return BootDecision(
                "good", f"slot {booted} runs {version}, not the {pending.version} that was "
                "installed there: the pending update record is stale; marked good")
        return BootDecision(
            "trial", f"slot {booted} runs the new {version} for the first time: kept only "
            "if the node is healthy in time")
    if pending.phase == "installing":
        why = (f"the installation of {pending.version} into slot {pending.slot} did not "
               f"finish (power loss or reset while writing it): slot {booted} ({version}) "
               "booted as before")
        return BootDecision("rolled-back", why,
                            failure=Failure(pending.version, pending.slot, version, why, now),
                            bad_slot=pending.slot)
    why = (f"{pending.version} on slot {pending.slot} did not come up to its health check "
           f"(kernel panic, watchdog reset or power loss): the boot loader returned to slot "
           f"{booted} ({version})")
    return BootDecision(
        "rolled-back", why,
        failure=Failure(pending.version, pending.slot, version, why, now),
        bad_slot=pending.slot)
