"""Settings every tier shares.

Hypothesis's per-example deadline (200 ms by default) measures wall time: on this 2-core
machine, loaded by QEMU guests, an example that takes a few milliseconds alone can take
longer, and the test then fails as flaky without any bug (seen on
test_unknown_key_line_survives_blank_and_comment_lines). The deadline is off for every test;
pytest-timeout (``timeout`` in pyproject.toml, or a test's own mark) bounds each test instead.
"""

from hypothesis import settings

settings.register_profile("twinbeat", deadline=None)
settings.load_profile("twinbeat")
