"""The health check that decides whether a newly installed system slot is kept (pure).

A node that boots a slot just written by an update keeps it only once it is healthy: the
supervisor runs, the peer is alive and heard on every link that was up before the update,
every replicated disk that was attached before is attached again, and no group failed
here. ``judge`` turns one observation into a verdict, with the reasons; the caller probes
again while the verdict is "waiting" and gives up at the bound (then the verdict is
"failed" and the slot is rolled back). No I/O here: the caller reads systemd and the
supervisor's status and passes the elapsed time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: DRBD disk states of a local disk that is attached (it holds data, possibly resyncing)
ATTACHED = ("UpToDate", "Consistent", "Outdated", "Inconsistent")

State = Literal["healthy", "waiting", "failed"]


@dataclass(frozen=True)
class Baseline:
    """What held before the update (recorded when it was installed)."""

    links: tuple[str, ...] = ()  # links that were up
    replicas: tuple[str, ...] = ()  # DRBD resources that were attached
    peer: bool = True  # the peer was alive (a lone node does not wait for one)
    supervisor: bool = True  # twinbeat ran (False: an unconfigured node, nothing to wait for)


@dataclass(frozen=True)
class Probe:
    """One observation of the booted node."""

    unit_state: str  # twinbeat.service's ActiveState (active, activating, failed, ...)
    unit_result: str = ""  # its Result (e.g. exit-code) when it failed
    status: Mapping[str, Any] | None = None  # `twinbeat status --json`, None: no answer
    error: str = ""  # why there is no status


@dataclass(frozen=True)
class Verdict:
    state: State
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        return "; ".join(self.reasons)


def problems(baseline: Baseline, probe: Probe) -> list[str]:
    """Everything that keeps the node from being healthy now (empty: healthy)."""
    if not baseline.supervisor:
        return []
    if probe.unit_state == "failed":
        return [f"twinbeat.service failed ({probe.unit_result or 'no result'})"]
    if probe.unit_state not in ("active", "reloading"):
        return [f"twinbeat.service is {probe.unit_state or 'unknown'}, not running"]
    st = probe.status
    if st is None:
        return [f"the supervisor does not answer ({probe.error or 'no status'})"]
    found: list[str] = []
    peer = st.get("peer") or {}
    if baseline.peer and peer.get("state") != "alive":
        found.append(f"the peer {peer.get('name', '?')} is {peer.get('state', 'unknown')}")
    links = {str(link.get("name")): str(link.get("state")) for link in st.get("links") or []}
    for name in baseline.links:
        state = links.get(name)
        if state is None:
            found.append(f"link {name} (up before the update) is not configured")
        elif state != "up":
            found.append(f"link {name} is {state} (it was up before the update)")
    replicas = {str(r.get("name")): r for r in st.get("replication") or []}
    for name in baseline.replicas:
        r = replicas.get(name)
        if r is None:
            found.append(f"DRBD resource {name} (attached before the update) is not running")
        elif r.get("disk") not in ATTACHED:
            found.append(f"DRBD resource {name} is not attached (disk {r.get('disk')})")
    for g in st.get("groups") or []:
        if g.get("failed"):
            found.append(f"group {g.get('name')} failed here: {g.get('failed_reason')}")
    return found


def judge(baseline: Baseline, probe: Probe, elapsed: float, bound: float) -> Verdict:
    """Healthy, still waiting (within the bound), or failed (with the reasons)."""
    found = problems(baseline, probe)
    if not found:
        parts = ["twinbeat.service running" if baseline.supervisor else "the system is up"]
        if baseline.peer:
            parts.append("peer alive")
        if baseline.links:
            parts.append("links " + ", ".join(baseline.links) + " up")
        if baseline.replicas:
            parts.append("DRBD " + ", ".join(baseline.replicas) + " attached")
        return Verdict("healthy", (f"healthy after {elapsed:.0f} s: " + ", ".join(parts),))
    if probe.unit_state == "failed":
        return Verdict("failed", tuple(found))
    if elapsed >= bound:
        return Verdict("failed", tuple(f"not healthy within {bound:.0f} s: {p}"
                                       for p in found))
    return Verdict("waiting", tuple(found))


def baseline_from_status(st: Mapping[str, Any] | None) -> Baseline:
    """The baseline to record before installing: what is up and attached now."""
    if not st:
        return Baseline(peer=False, supervisor=False)
    links = tuple(str(link["name"]) for link in st.get("links") or []
                  if link.get("state") == "up")
    replicas = tuple(str(r["name"]) for r in st.get("replication") or []
                     if r.get("disk") in ATTACHED)
    alive = (st.get("peer") or {}).get("state") == "alive"
    return Baseline(links=links if alive else (), replicas=replicas, peer=alive)


def baseline_to_json(b: Baseline) -> dict[str, Any]:
    return {"links": list(b.links), "replicas": list(b.replicas), "peer": b.peer,
            "supervisor": b.supervisor}


def baseline_from_json(d: Mapping[str, Any]) -> Baseline:
    def names(key: str) -> tuple[str, ...]:
        v = d.get(key) or []
        return tuple(str(x) for x in v) if isinstance(v, Sequence) else ()

    return Baseline(links=names("links"), replicas=names("replicas"),
                    peer=bool(d.get("peer", True)), supervisor=bool(d.get("supervisor", True)))
