"""asyncio without its TLS half, for the ``twinbeat`` command (imported first by
``supervisor.cli``).

asyncio imports ``ssl`` at its own import (for ``create_connection(ssl=...)``, ``start_tls``
and the like): the ssl module, ``_ssl`` and libssl, about 0.9 MiB of a supervisor's PSS on
the image's python3.13 (bench.idle), for a daemon that opens no TLS connection through
asyncio. So asyncio is imported here while ``ssl`` is marked missing (asyncio then keeps
``ssl = None`` and its TLS calls refuse), and the mark is taken away at once: a later
``import ssl`` (the mailer's STARTTLS, through smtplib in a thread) loads it as usual.
Nothing is done when asyncio or ssl is imported already (a test run that imported asyncio
first, a caller that uses asyncio's TLS).
"""

from __future__ import annotations

import sys


def asyncio_without_tls() -> bool:
    """Import asyncio with its TLS off; False (nothing done) if asyncio or ssl is imported
    already."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return False
    sys.modules["ssl"] = None  # type: ignore[assignment]  # "import ssl" raises ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]
    return True


asyncio_without_tls()
