"""The loop logs each sentence of a step once, at its level (warnings were logged as info,
and a warning that was not also a reason was never logged)."""

from __future__ import annotations

import logging

import pytest

from supervisor.core.actions import Log, SendFrame
from supervisor.core.events import FrameReceived, ResourceResult
from supervisor.core.step import Step, step
from supervisor.loop import log_step
from tests.sim import Sim, make_config


def test_each_sentence_once_at_its_level(caplog: pytest.LogCaptureFixture) -> None:
    result = Step(
        state=None,  # type: ignore[arg-type]  # log_step reads only reasons and actions
        actions=[Log("warning", "link serial down"), SendFrame(b"x"),
                 Log("error", "stopping x failed"), Log("warning", "ignoring a stale result")],
        reasons=["peer node2 is alive", "link serial down", "stopping x failed"],
    )
    with caplog.at_level(logging.DEBUG, logger="twinbeat"):
        said = log_step(result)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert logged == said == [
        (logging.INFO, "peer node2 is alive"),
        (logging.WARNING, "link serial down"),
        (logging.ERROR, "stopping x failed"),
        (logging.WARNING, "ignoring a stale result"),
    ]


def test_core_warnings_reach_the_log_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """Real steps: a peer declared dead (a warning and a reason) and a stale resource result
    (a warning only) are each logged once at warning level."""
    sim = Sim(make_config())
    sim.run(3.0)
    sim.kill("node1")
    state, now = sim.nodes["node2"].state, sim.now + 1.0
    with caplog.at_level(logging.DEBUG, logger="twinbeat"):
        log_step(step(state, FrameReceived("serial", b"garbage\n"), now))
        log_step(step(state, ResourceResult("web", 10**6, True), sim.now))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("peer node1 silent on all links") for w in warnings), warnings
    assert "ignoring a stale result for group web" in warnings
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(set(messages)), messages
