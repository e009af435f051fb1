"""``python -m firstboot``: the same as ``twinbeat-firstboot``."""

import sys

from firstboot.cli import main

sys.exit(main())
