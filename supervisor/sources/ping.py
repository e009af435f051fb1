"""Ping nodes: asks each configured ping node once every ``ping_interval``.

Posts PingReply for each node that answered; a node that does not answer posts nothing (the
core judges silence against ``ping_timeout`` on its own clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from supervisor.config import Config
from supervisor.core.events import Event, PingReply
from supervisor.drivers.runner import run as run_command


class PingSource:
    def __init__(self, config: Callable[[], Config], post: Callable[[Event], object]) -> None:
        self.config = config  # read at every round: a reload may change the nodes
        self.post = post

    async def run(self) -> None:
        while True:
            cfg = self.config()
            wait = max(1, round(min(cfg.ping_timeout, 5.0)))
            nodes = list(cfg.ping_nodes)
            results = await asyncio.gather(
                *(
                    run_command(
                        ["ping", "-n", "-q", "-c", "1", "-W", str(wait), str(addr)],
                        timeout=wait + 2,
                        log_failure=False,
                    )
                    for addr in nodes
                )
            )
            for addr, res in zip(nodes, results, strict=True):
                if res.ok:
                    self.post(PingReply(str(addr)))
            await asyncio.sleep(cfg.ping_interval)
