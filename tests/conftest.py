"""Settings every tier shares.

Hypothesis's per-example deadline (200 ms by default) measures wall time: on this 2-core
machine, loaded by QEMU guests, an example that takes a few milliseconds alone can take
longer, and the test then fails as flaky without any bug (seen on
test_unknown_key_line_survives_blank_and_comment_lines). The deadline is off for every test;
pytest-timeout (``timeout`` in pyproject.toml, or a test's own mark) bounds each test instead.
"""

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

settings.register_profile("twinbeat", deadline=None)
settings.load_profile("twinbeat")


@pytest.fixture(autouse=True)
def _umask_unchanged() -> Iterator[None]:
    """Every test leaves the process's umask as it found it: a leaked umask is inherited by
    everything the later tests start (chromium refused its own socket folder once, under the
    0177 that two control servers started in one loop left behind)."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    after = os.umask(before)
    assert after == before, f"the test left the umask {after:04o} (was {before:04o})"
