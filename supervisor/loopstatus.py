"""What the loop measures about itself, and the status it answers `twinbeat status` with.

``LoopStats`` holds the loop's own figures (steps and their time, its worst lag, frames the
core failed on, the worst gap between two frames per link, its recent decisions);
``assemble_status`` adds them and the edges' figures (transports, watchdog device, scheduling,
replication) to the core's typed view (``supervisor.core.view``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.core.state import CoreState
from supervisor.core.view import status as core_status
from supervisor.drivers.links import Transport
from supervisor.drivers.watchdog import Watchdog

HISTORY = 100  # recent decisions kept for `twinbeat status` (monotonic time, reason)


@dataclass
class LoopStats:
    steps: int = 0
    step_time: float = 0.0
    lag_max: float = 0.0
    #: frames dropped because the core raised on them (counted as "core_error")
    frame_errors: int = 0
    #: (monotonic time, reason) of the recent decisions, at most HISTORY
    history: list[tuple[float, str]] = field(default_factory=list)
    #: per link: (monotonic time of the last frame, worst gap between two frames)
    frame_gaps: dict[str, tuple[float, float]] = field(default_factory=dict)

    def stepped(self, now: float, seconds: float, reasons: list[str]) -> None:
        """One step of the core took ``seconds`` and gave ``reasons``."""
        self.step_time += seconds
        self.steps += 1
        if reasons:
            self.history.extend((now, r) for r in reasons)
            if len(self.history) > HISTORY:
                del self.history[: len(self.history) - HISTORY]

    def frames(self, links: list[str], arrivals: list[float | None], now: float) -> None:
        """Beat frames arrived on ``links`` (in the order read), each at its arrival, or at
        ``now`` when it has none (a quiet wake-up's, in one call)."""
        gaps = self.frame_gaps
        for link, arrived in zip(links, arrivals, strict=True):
            at = now if arrived is None else arrived
            last, worst = gaps.get(link, (at, 0.0))
            gaps[link] = (at, max(worst, at - last))

    def frame(self, link: str, now: float) -> None:
        """A beat frame arrived on ``link`` at ``now``."""
        self.frames([link], [now], now)


def assemble_status(
    state: CoreState,
    now: float,
    stats: LoopStats,
    *,
    transports: Mapping[str, Transport],
    watchdog: Watchdog,
    realtime: dict[str, Any],
    replication: list[dict[str, Any]] | None,
    config_path: str,
) -> dict[str, Any]:
    """The status at ``now`` (CLOCK_MONOTONIC, the clock asyncio's loop.time() reads)."""
    st = core_status(state, now)
    if stats.frame_errors:
        st["dropped"]["core_error"] = stats.frame_errors
    for link in st["links"]:
        transport = transports.get(link["name"])
        if transport is not None:
            link["transport"] = transport.info()
        gaps = stats.frame_gaps.get(link["name"])
        # the longest silence between two frames on this link since start (ms)
        link["worst_gap_ms"] = None if gaps is None else round(gaps[1] * 1000, 1)
    st["realtime"] = realtime
    st["watchdog"] = {**st["watchdog"], **watchdog.status(now)}
    if replication is not None:
        st["replication"] = replication
    st["config"] = config_path
    st["pid"] = os.getpid()
    st["now"] = now  # CLOCK_MONOTONIC, the clock of the history below
    st["history"] = [{"t": round(t, 6), "reason": r} for t, r in stats.history]
    st["loop"] = {
        "steps": stats.steps,
        "mean_step_us": round(stats.step_time / stats.steps * 1e6, 1) if stats.steps else None,
        "max_lag_ms": round(stats.lag_max * 1000, 1),
    }
    return st
