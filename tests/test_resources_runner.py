"""The loop's resource runner (supervisor.resources): an operation's outcome is posted as a
ResourceResult; a check that outlasts its timeout is a failed one, said so."""

from __future__ import annotations

import asyncio
from typing import Any

from supervisor.core.actions import CheckResource
from supervisor.core.events import Event, ResourceResult
from supervisor.resource_spec import parse_resource
from supervisor.resources import ResourceRunner


class Agent:
    def __init__(self, delay: float, running: bool = True) -> None:
        self.delay = delay
        self.running = running
        self.cancelled = False

    def describe(self) -> str:
        return "test agent"

    async def status(self) -> bool:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return self.running


def run_check(agent: Agent, timeout: float) -> list[Event]:
    fed: list[Event] = []
    spec = parse_resource("IPaddr::192.168.85.3/24/eth0")

    def factory(_spec: Any) -> Any:
        return agent

    runner = ResourceRunner(factory, fed.append)
    asyncio.run(runner.run(CheckResource("web", 0, spec, 7, timeout)))
    return fed


def test_a_check_that_answers_in_time_is_posted_with_its_answer() -> None:
    assert run_check(Agent(0.0, running=False), 1.0) == [
        ResourceResult("web", 7, True, False, "status says it is not running")]


def test_a_check_that_outlasts_its_timeout_is_cancelled_and_failed() -> None:
    agent = Agent(10.0)
    assert run_check(agent, 0.05) == [
        ResourceResult("web", 7, False, None, "timed out after 0.05 s")]
    assert agent.cancelled
