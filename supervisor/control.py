"""The daemon's control socket: one JSON request line in, one JSON response line out.

The socket lives in the state directory (mode 0700) with mode 0600, and the server also
checks the caller's credentials (SO_PEERCRED): only root or the daemon's own user may talk to
it. Requests: ``{"command": "status"}``, ``{"command": "standby", "group": null}``, ...

Each connection is served by its own task, so a request that waits (``{"command":
"fence-peer", "resource": "r0"}`` is answered ``{"ok": true, "code": 4, "message": ...}`` only
once the peer has answered or the core gave up) does not hold up the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from supervisor.atomicfile import bind_unix

log = logging.getLogger("twinbeat.control")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 65536


class ControlError(Exception):
    pass


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", data)
    return int(uid)


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._serve, sock=bind_unix(self.path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = _peer_uid(writer)
            if uid is not None and uid not in (0, os.getuid()):
                await self._reply(writer, {"ok": False, "error": "permission denied"})
                return
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            if not line or len(line) > MAX_REQUEST:
                return
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                await self._reply(writer, {"ok": False, "error": f"bad request: {exc}"})
                return
            response = await self.handler(request)
            await self._reply(writer, response)
        except (TimeoutError, ConnectionError):
            pass
        except Exception:  # a bug in a handler must not take the daemon down
            log.exception("control request failed")
            try:
                await self._reply(writer, {"ok": False, "error": "internal error (see the log)"})
            except ConnectionError:
                pass
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
        writer.write(json.dumps(response, default=str).encode() + b"\n")
        await writer.drain()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def request(path: Path, command: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the daemon (blocking client, used by the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(
                f"no daemon: {path} does not exist (is twinbeat running? see "
                "`systemctl status twinbeat`)"
            ) from None
        except PermissionError:
            raise ControlError(f"permission denied on {path} (run as root)") from None
        except ConnectionRefusedError:
            raise ControlError(f"no daemon listening on {path}") from None
        sock.sendall(json.dumps(command).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise ControlError(f"no answer from the daemon within {timeout:.0f} s") from None
            if not chunk:
                break
            data += chunk
    if not data:
        raise ControlError("the daemon closed the connection without answering")
    result = json.loads(data)
    if not isinstance(result, dict):
        raise ControlError("unexpected answer from the daemon")
    return result
