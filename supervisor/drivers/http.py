"""A tiny read-only HTTP/1.1 server on the supervisor's asyncio loop (GET and HEAD only).

Enough for Prometheus scrapes and a browser: one request per connection, a bounded request
head (8 KiB, 10 s), ``Connection: close``. Each route returns (content type, body); the body
is built by the caller from the status it already has, so a request costs the loop a few
milliseconds and never waits for I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

log = logging.getLogger("twinbeat.http")

MAX_HEAD = 8192
HEAD_TIMEOUT = 10.0

Route = Callable[[], tuple[str, bytes]]


class HttpServer:
    def __init__(self, host: str, port: int, routes: Mapping[str, Route], *,
                 name: str = "http") -> None:
        self.host = host
        self.port = port
        self.routes = dict(routes)
        self.name = name
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True)
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("%s listening on %s:%d", self.name, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if len(head) > MAX_HEAD:
                await self._send(writer, 431, "text/plain", b"request head too large\n")
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await self._send(writer, 400, "text/plain", b"bad request\n")
                return
            method, target = parts[0], parts[1].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await self._send(writer, 405, "text/plain", b"only GET and HEAD\n",
                                 extra="Allow: GET, HEAD\r\n")
                return
            route = self.routes.get(target)
            if route is None:
                known = " ".join(sorted(self.routes))
                await self._send(writer, 404, "text/plain", f"not found; try {known}\n".encode())
                return
            try:
                ctype, body = route()
            except Exception:  # a rendering bug answers 500, the daemon goes on
                log.exception("%s: rendering %s failed", self.name, target)
                await self._send(writer, 500, "text/plain", b"internal error\n")
                return
            self.requests += 1
            await self._send(writer, 200, ctype, body, head_only=method == "HEAD")
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, code: int, ctype: str, body: bytes, *,
                    head_only: bool = False, extra: str = "") -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large", 500: "Internal Server Error"}[code]
        head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                f"X-Content-Type-Options: nosniff\r\n{extra}Connection: close\r\n\r\n")
        writer.write(head.encode("latin-1") + (b"" if head_only else body))
        await writer.drain()
