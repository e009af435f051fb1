"""``python -m supervisor`` is the ``twinbeat`` command."""

import sys

from supervisor.cli import main

sys.exit(main())
