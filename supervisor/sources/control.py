"""The control socket as a source: each request becomes an event, each answer comes back
from the core as a typed value (an AdminAnswer's Accepted/Refused, a FenceAnswer's exit code).

Requests (one JSON line; see ``supervisor.control`` for the socket itself)::

    {"command": "status"}
    {"command": "standby"|"takeover"|"cleanup", "group": null|NAME}
    {"command": "unpin", "group": NAME}
    {"command": "maintenance", "on": true|false, "node": null|NODE}
    {"command": "takeover", "group": NAME, "force_data": true}
    {"command": "resolve-split-brain", "discard": NODE, "resource": null|RES}
    {"command": "fence-peer", "resource": RES}      (answered once the peer has answered)
    {"command": "reload"}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from supervisor.control import ControlServer
from supervisor.core.actions import Accepted, AdminAnswer, FenceAnswer, Refused
from supervisor.core.events import AdminCommand, Event, FenceRequested

Answer = AdminAnswer | FenceAnswer


class Target(Protocol):
    """What the control source needs from the loop."""

    def status(self) -> dict[str, Any]: ...

    def ask(self, make: Callable[[int], Event]) -> Awaitable[Answer]:
        """Post the event made for a fresh request id; resolve with the core's answer."""
        ...

    def reload(self) -> None: ...


def admin_reply(answer: Answer) -> dict[str, Any]:
    """The JSON answer to an admin command, from the core's typed decision."""
    if isinstance(answer, FenceAnswer):  # the daemon stopped before the core answered
        return {"ok": False, "reasons": [], "error": answer.message}
    match answer.decision:
        case Refused(reason=reason, said=said):
            return {"ok": False, "reasons": list(said), "error": reason}
        case Accepted(reasons=reasons):
            return {"ok": True, "reasons": list(reasons), "error": None}


class ControlSource:
    def __init__(self, path: Path, target: Target) -> None:
        self.target = target
        self.server = ControlServer(path, self.handle)

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        group = request.get("group")
        if command == "status":
            return {"ok": True, "status": self.target.status()}
        if command == "resolve-split-brain":
            discard, resource = request.get("discard"), request.get("resource")
            if not isinstance(discard, str) or not isinstance(resource, str | None):
                return {"ok": False, "error": "discard must be a node name"}
            return admin_reply(await self.target.ask(lambda rid: AdminCommand(
                "resolve-split-brain", None, rid, discard=discard, resource=resource)))
        if command in ("standby", "takeover", "cleanup"):
            if group is not None and not isinstance(group, str):
                return {"ok": False, "error": "group must be a name"}
            name: str = command
            force = command == "takeover" and bool(request.get("force_data"))
            answer = await self.target.ask(lambda rid: AdminCommand(name, group, rid,
                                                                    force_data=force))
            return admin_reply(answer)
        if command == "unpin":
            if not isinstance(group, str):
                return {"ok": False, "error": "unpin needs a group name"}
            return admin_reply(await self.target.ask(lambda rid: AdminCommand("unpin", group,
                                                                              rid)))
        if command == "maintenance":
            on, node = request.get("on"), request.get("node")
            if not isinstance(on, bool) or not isinstance(node, str | None):
                return {"ok": False, "error": "maintenance needs on (true|false) and a node "
                                              "name or null"}
            return admin_reply(await self.target.ask(lambda rid: AdminCommand(
                "maintenance", None, rid, on=on, node=node)))
        if command == "fence-peer":
            resource = request.get("resource")
            if not isinstance(resource, str) or not resource:
                return {"ok": False, "error": "resource must be a DRBD resource name"}
            fence = await self.target.ask(lambda rid: FenceRequested(resource, rid))
            assert isinstance(fence, FenceAnswer)
            return {"ok": True, "code": fence.code, "message": fence.message}
        if command == "reload":
            self.target.reload()
            return {"ok": True, "reasons": ["reload requested (see the log)"]}
        return {"ok": False, "error": f"unknown command {command!r}"}
