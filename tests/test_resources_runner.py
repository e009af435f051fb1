"""The loop's resource runner (supervisor.resources): an operation's outcome is posted as a
ResourceResult; a check that outlasts its timeout is a failed one, said so."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from typing import Any

from supervisor.config import TakeoverConfig
from supervisor.core.actions import CheckResource
from supervisor.core.events import Event, ResourceResult
from supervisor.drivers.agent_base import AgentContext
from supervisor.drivers.ipaddr import AddressEntry, IPaddrAgent
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


class WatchedNetlink:
    """The IPaddr agent's netlink as the monitor uses it: a count of address changes (the
    kernel's notifications) and address dumps, counted."""

    def __init__(self, held: bool) -> None:
        self.changes: int | None = 0
        self.dumps = 0
        self.held = held

    def address_changes(self) -> int | None:
        return self.changes

    def addresses(self, family: int, index: int = 0) -> list[AddressEntry]:
        self.dumps += 1
        address = ip_address("192.168.85.3")
        return [AddressEntry(2, "eth0", address, 24, "eth0:0")] if self.held else []


def known_runner(netlink: WatchedNetlink) -> tuple[ResourceRunner, CheckResource]:
    spec = parse_resource("IPaddr::192.168.85.3/24/eth0")
    agent = IPaddrAgent(spec, AgentContext(takeover=TakeoverConfig()),  # type: ignore[arg-type]
                        netlink=netlink)  # type: ignore[arg-type]
    runner = ResourceRunner(lambda _spec: agent, lambda _event: None)
    return runner, CheckResource("web", 0, spec, 7, 1.0)


def test_an_address_check_is_known_at_once_while_no_address_changed() -> None:
    """The idle owner's check of its floating address is answered without a task, a timeout
    or a dump while the kernel reports no address change since the monitor last asked; a
    change (or a watch that cannot count) sends it the long way (``run``: a dump)."""
    netlink = WatchedNetlink(held=True)
    runner, check = known_runner(netlink)
    assert runner.known(check) is None  # never asked: run it
    asyncio.run(runner.run(check))
    assert netlink.dumps == 1
    for _ in range(3):
        assert runner.known(check) == ResourceResult("web", 7, True, True, "")
    assert netlink.dumps == 1
    netlink.changes = 1  # an address changed somewhere
    assert runner.known(check) is None
    netlink.held = False
    asyncio.run(runner.run(check))
    assert netlink.dumps == 2
    assert runner.known(check) == ResourceResult(
        "web", 7, True, False, "status says it is not running")
    netlink.changes = None  # the watch failed: ask every time
    assert runner.known(check) is None


def test_only_an_agent_that_knows_its_status_answers_at_once() -> None:
    def broken(_spec: Any) -> Any:
        raise TypeError("no agent")

    def slow(_spec: Any) -> Any:
        return Agent(0.0)

    spec = parse_resource("IPaddr::192.168.85.3/24/eth0")
    check = CheckResource("web", 0, spec, 7, 1.0)
    assert ResourceRunner(slow, lambda _e: None).known(check) is None
    assert ResourceRunner(broken, lambda _e: None).known(check) is None  # (run says why)
