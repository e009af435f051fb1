"""Ping nodes: asks each configured ping node once every ``ping_interval``.

Posts PingReply for each node that answered; a node that does not answer posts nothing (the
core judges silence against ``ping_timeout`` on its own clock). Each ping waits up to
``ping_timeout`` for its answer and does not hold up the next round: an answer that comes
late (a loaded node, a slow path) still counts, it is not taken for a lost one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from supervisor.config import Config
from supervisor.core.events import Event, PingReply
from supervisor.drivers.runner import run as run_command


class PingSource:
    def __init__(self, config: Callable[[], Config], post: Callable[[Event], object]) -> None:
        self.config = config  # read at every round: a reload may change the nodes
        self.post = post

    async def run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                cfg = self.config()
                wait = max(1, math.ceil(cfg.ping_timeout))
                for addr in cfg.ping_nodes:
                    task = asyncio.get_running_loop().create_task(self._once(str(addr), wait))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(cfg.ping_interval)
        finally:
            for task in tasks:
                task.cancel()

    async def _once(self, addr: str, wait: int) -> None:
        res = await run_command(["ping", "-n", "-q", "-c", "1", "-W", str(wait), addr],
                                timeout=wait + 2, log_failure=False)
        if res.ok:
            self.post(PingReply(addr))
