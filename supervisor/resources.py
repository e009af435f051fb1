"""The core's resource operations carried out: Start/Stop/CheckResource through the group's
resource agent, under the action's timeout, off the decision path; each outcome (a failure
with its sentence) is posted back to the loop as a ResourceResult. No decision is made here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from supervisor.core.actions import CheckResource, ResourceAction, StartResource, StopResource
from supervisor.core.events import Event, ResourceResult
from supervisor.drivers.agent_base import KnowsStatus
from supervisor.drivers.agents import AgentError, ResourceAgent
from supervisor.drivers.drbd import DrbdAgent
from supervisor.resource_spec import ResourceSpec

log = logging.getLogger("twinbeat")

AgentFactory = Callable[[ResourceSpec], ResourceAgent]
NOT_RUNNING = "status says it is not running"


class ResourceRunner:
    """One agent per (group, resource), made by ``factory`` when first used; ``feed``
    posts the result event to the loop."""

    def __init__(self, factory: AgentFactory, feed: Callable[[Event], object]) -> None:
        self.factory = factory
        self._feed = feed
        self.agents: dict[tuple[str, ResourceSpec], ResourceAgent] = {}

    def agent(self, group: str, spec: ResourceSpec) -> ResourceAgent:
        key = (group, spec)
        agent = self.agents.get(key)
        if agent is None:
            agent = self.factory(spec)
            self.agents[key] = agent
        return agent

    def known(self, action: CheckResource) -> ResourceResult | None:
        """The result of ``action`` when its agent knows it without asking (``KnowsStatus``:
        IPaddr's monitor while no address changed), to be stepped at once; None:
        ``run`` it (as for every other agent, and for an agent that cannot be made: ``run``
        reports that)."""
        try:
            agent = self.agent(action.group, action.spec)
        except Exception:
            return None
        running = agent.known_status() if isinstance(agent, KnowsStatus) else None
        if running is None:
            return None
        return ResourceResult(action.group, action.op_id, True, running,
                              "" if running else NOT_RUNNING)

    async def run(self, action: ResourceAction) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        running: bool | None = None
        ok, detail = True, ""
        try:
            agent = self.agent(action.group, action.spec)
            match action:
                case StartResource(check_duplicates=dad, force_data=force):
                    log.info("group %s: starting %s", action.group, agent.describe())
                    if force and isinstance(agent, DrbdAgent):
                        agent.force_next = True  # an admin's takeover --force-data
                    await asyncio.wait_for(agent.start(check_duplicates=dad), action.timeout)
                case StopResource():
                    log.info("group %s: stopping %s", action.group, agent.describe())
                    await asyncio.wait_for(agent.stop(), action.timeout)
                case CheckResource():
                    # (asyncio.timeout, not wait_for: no task of its own for the check, and
                    # not its wake-ups, on every monitor of an idle node)
                    async with asyncio.timeout(action.timeout):
                        running = await agent.status()
                    if not running:
                        detail = NOT_RUNNING
        except TimeoutError:
            ok, detail = False, f"timed out after {action.timeout:g} s"
        except AgentError as exc:
            ok, detail = False, str(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an agent bug is a failed operation, not a dead daemon
            log.exception("group %s: agent error", action.group)
            ok, detail = False, f"internal error: {exc!r}"
        elapsed = loop.time() - t0
        if not isinstance(action, CheckResource) or not ok:
            word = "done" if ok else f"FAILED: {detail}"
            log.info("group %s: %s %s %s (%.3f s)", action.group, type(action).__name__,
                     action.spec.describe(), word, elapsed)
        self._feed(ResourceResult(action.group, action.op_id, ok, running, detail))
