"""Run /usr/bin/twinbeat (the image's launcher) from the repository and say which modules it
loaded: the light paths (fence-peer, persist) must skip the full command line's imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "mkosi.extra" / "usr" / "bin" / "twinbeat"


def run_launcher(args: list[str], modules: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """The launcher run with ``args``; its stdout ends with ``LOADED`` and, for each of
    ``modules``, whether it was imported (True/False) when the process exited."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            f"sys.argv = ['twinbeat', *{args!r}]\n"
            "import atexit\n"
            f"atexit.register(lambda: print('LOADED', *(m in sys.modules for m in {modules!r})))\n"
            f"exec(compile(open({str(LAUNCHER)!r}).read(), 'twinbeat', 'exec'))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=30)
