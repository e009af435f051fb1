"""Drive resource agents inside a network namespace (``ip netns exec NS python THIS``).

Reads one JSON command per line on stdin and answers one JSON line on stdout:

    {"op": "start", "spec": "IPaddr::10.0.0.5", "check_duplicates": false}
    {"op": "stop", "spec": "..."}      {"op": "status", "spec": "..."}   {"op": "quit"}
    {"op": "routes", "family": 4}      (the routes the IPaddr agent reads, for comparison)
    {"op": "addresses", "family": 4}   (the address dump the monitor reads, with its flags)
    {"op": "dumps"}                    (how many address dumps the agents asked for so far)
    {"op": "known", "spec": "IPaddr::..."}  (the IPaddr monitor's answer without asking, or null)

Answer: ``{"ok": true, "result": ..., "t": <monotonic>}`` or ``{"ok": false, "error": "..."}``.
Agents live for the whole process, so announcements keep running between commands.
The takeover settings come from the TB_TAKEOVER environment variable (JSON), if set.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from typing import Any

from supervisor.config import TakeoverConfig
from supervisor.drivers.agents import AgentContext, AgentError, ResourceAgent, make_agent
from supervisor.drivers.ipaddr import IPaddrAgent, Netlink
from supervisor.drivers.netlink import Rtnetlink
from supervisor.resource_spec import parse_resource

#: the address dumps the agents asked for (Netlink.addresses, counted)
DUMPS = [0]
_addresses = Netlink.addresses


def _counted(self: Netlink, family: int, index: int = 0) -> list[Any]:
    DUMPS[0] += 1
    return _addresses(self, family, index)


Netlink.addresses = _counted  # type: ignore[method-assign]


async def main() -> None:
    takeover = TakeoverConfig(**json.loads(os.environ.get("TB_TAKEOVER", "{}")))
    ctx = AgentContext(takeover=takeover)
    agents: dict[str, ResourceAgent] = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        answer: dict[str, Any] = {"ok": True, "result": None}
        try:
            if cmd["op"] == "quit":
                print(json.dumps(answer), flush=True)
                break
            if cmd["op"] == "routes":
                family = socket.AF_INET if cmd["family"] == 4 else socket.AF_INET6
                routes = await asyncio.to_thread(Netlink().routes, family)
                answer["result"] = [[str(r.destination), r.interface, r.metric] for r in routes]
                answer["t"] = time.monotonic()
                print(json.dumps(answer), flush=True)
                continue
            if cmd["op"] == "dumps":
                answer["result"] = DUMPS[0]
                answer["t"] = time.monotonic()
                print(json.dumps(answer), flush=True)
                continue
            if cmd["op"] == "addresses":
                family = socket.AF_INET if cmd["family"] == 4 else socket.AF_INET6
                dump = Rtnetlink()
                try:
                    found = await asyncio.to_thread(dump.addresses, family)
                finally:
                    dump.close()
                answer["result"] = [list(entry) for entry in found]
                answer["t"] = time.monotonic()
                print(json.dumps(answer), flush=True)
                continue
            spec = cmd["spec"]
            agent = agents.get(spec) or agents.setdefault(spec, make_agent(
                parse_resource(spec), ctx))
            if cmd["op"] == "start":
                await agent.start(check_duplicates=bool(cmd.get("check_duplicates")))
                announcer = getattr(agent, "announcer", None)
                if announcer is not None:
                    answer["result"] = {"first_sent_at": announcer.first_sent_at}
            elif cmd["op"] == "stop":
                await agent.stop()
            elif cmd["op"] == "status":
                answer["result"] = await agent.status()
            elif cmd["op"] == "known" and isinstance(agent, IPaddrAgent):
                answer["result"] = agent.known_status()
            else:
                raise ValueError(f"unknown op {cmd['op']!r}")
        except AgentError as exc:
            answer = {"ok": False, "error": str(exc)}
        answer["t"] = time.monotonic()
        print(json.dumps(answer), flush=True)
    for agent in agents.values():
        announcer = getattr(agent, "announcer", None)
        if announcer is not None:
            await announcer.stop()


if __name__ == "__main__":
    asyncio.run(main())
