"""A real SMTP server for the namespace tests (Debian's aiosmtpd, run by /usr/bin/python3):
every message it accepts is written to DIR as NNNN.json with the CLOCK_MONOTONIC time of its
acceptance (the same clock in every network namespace of the machine).

    python3 tests/smtp_sink.py HOST PORT DIR
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from aiosmtpd.smtp import SMTP  # type: ignore[import-not-found,unused-ignore]


class Sink:
    def __init__(self, out: str) -> None:
        self.out = out
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        accepted = time.monotonic()
        self.count += 1
        path = os.path.join(self.out, f"{self.count:04d}.json")
        data = envelope.content
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"accepted_mono": accepted, "mail_from": envelope.mail_from,
                       "rcpt_tos": list(envelope.rcpt_tos), "message": text}, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


async def main(host: str, port: int, out: str) -> None:
    loop = asyncio.get_running_loop()
    sink = Sink(out)
    server = await loop.create_server(lambda: SMTP(sink), host, port)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
